"""The embedded MLflow tracking server, and where tracking goes.

The embedded default is a real ``mlflow server`` bound to 127.0.0.1 (on a Ray cluster of several nodes: the
head's cluster address, which every node reaches) with a SQLite backend store and a
local artifact directory under ``./.hpo/mlflow/`` (``HPO_HOME`` moves it): ``mlflow.db``, ``artifacts/``,
``server.log`` and ``server.json`` (pid, start time and command line, port, URI). It runs in its own process
group, because killing only the ``mlflow server`` parent leaves its uvicorn and job-queue children behind
(STACK.md); that group is signalled only while its leader is still the recorded process (:mod:`tracking.procs`).

Store and artifact URIs reach ``mlflow server`` through its environment (``MLFLOW_BACKEND_STORE_URI``,
``MLFLOW_ARTIFACTS_DESTINATION``), never its arguments, which every user of the machine can read; what is
written to ``server.json`` or printed is redacted (:mod:`tracking.credentials`).

:func:`resolve_tracking_uri` decides where a campaign logs: the campaign's ``tracking.uri``, else
``$MLFLOW_TRACKING_URI``, else the embedded server (reused when healthy, started otherwise).

Before it starts a server, :func:`prepare_store` brings the store up to date: a SQLite store is put in WAL
mode (readers no longer wait for writers; MLflow sets a busy timeout on every session), and a store whose
schema an older MLflow wrote is upgraded as ``mlflow db upgrade`` would, with the URI kept out of any
command line. With :class:`ServerAuth` the server runs MLflow's basic-auth app (``--app-name basic-auth``):
its admin password comes from ``MLFLOW_AUTH_ADMIN_PASSWORD`` in the environment, never from a file or an
argument, and clients authenticate with ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

from tracking.credentials import redact, redact_text
from tracking.procs import ProcessRecord, group_alive, mismatch, record
from trainables.errors import HpoError

START_TIMEOUT_S = 90.0


#: Where MLflow's basic-auth app reads the admin's password; ``hpo server --auth`` requires it to be set.
ADMIN_PASSWORD_ENV = "MLFLOW_AUTH_ADMIN_PASSWORD"
#: The permissions MLflow's basic-auth app knows, for ``default_permission``.
PERMISSIONS = ("READ", "EDIT", "MANAGE", "NO_PERMISSIONS")


def state_dir() -> Path:
    """Where the embedded server keeps its store, artifacts and record."""
    return Path(os.environ.get("HPO_HOME", ".hpo")).absolute() / "mlflow"


@dataclass(frozen=True)
class ServerInfo:
    """A running server: its address and process group, as recorded in ``server.json``.

    ``backend_store_uri`` and ``artifacts_destination`` are redacted (no password). ``create_time`` and
    ``cmdline`` identify the process-group leader; a record without them (an older ``hpo``) is never signalled.
    """

    uri: str
    port: int
    pid: int
    backend_store_uri: str
    artifacts_destination: str
    log: str
    host: str = "127.0.0.1"  # the address it listens on
    create_time: float | None = None
    cmdline: tuple[str, ...] | None = None
    auth: bool = False  # whether it runs MLflow's basic-auth app (clients then need MLFLOW_TRACKING_USERNAME/PASSWORD)

    @property
    def process(self) -> ProcessRecord | None:
        """The leader's record, or ``None`` for an unverifiable (older) record."""
        return ProcessRecord.from_fields(self.pid, self.create_time, self.cmdline)


def healthy(uri: str, timeout: float = 2.0) -> bool:
    """Whether ``uri`` answers MLflow's ``/health`` with OK."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A free TCP port on ``host``."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def recorded(directory: Path | None = None) -> ServerInfo | None:
    """The server recorded in ``server.json``, if that file exists."""
    path = (directory or state_dir()) / "server.json"
    try:
        data = json.loads(path.read_text())
        if isinstance(data.get("cmdline"), list):
            data["cmdline"] = tuple(data["cmdline"])
        return ServerInfo(**data)
    except (FileNotFoundError, json.JSONDecodeError, TypeError, AttributeError):
        return None


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) is a loopback address that only this machine reaches."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerAuth:
    """MLflow's basic-auth app for a server: users, passwords and per-experiment permissions.

    The admin account is created the first time the app starts on an empty user store, with the password
    MLflow reads from ``$MLFLOW_AUTH_ADMIN_PASSWORD``; the file this writes (``basic_auth.ini``) holds
    neither password. ``database_uri`` is where users and permissions live (default: ``basic_auth.db`` beside
    the server's record); ``default_permission`` is what every user may do on experiments nobody granted
    them anything on (READ: look, not write).
    """

    admin_username: str = "admin"
    default_permission: str = "READ"
    database_uri: str | None = None

    def config_file(self, directory: Path) -> Path:
        """Write the app's configuration (no secrets) into ``directory``; returns its path.

        Raises:
            HpoError: ``$MLFLOW_AUTH_ADMIN_PASSWORD`` is unset or empty, or ``default_permission`` is unknown.
        """
        if not os.environ.get(ADMIN_PASSWORD_ENV):
            raise HpoError(f"--auth needs the admin's password in ${ADMIN_PASSWORD_ENV} (never on the command line): "
                           f"`read -rs {ADMIN_PASSWORD_ENV} && export {ADMIN_PASSWORD_ENV}`, then run it again")
        if self.default_permission not in PERMISSIONS:
            raise HpoError(f"--default-permission {self.default_permission}: must be one of {', '.join(PERMISSIONS)}")
        database = self.database_uri or f"sqlite:///{directory / 'basic_auth.db'}"
        database = store_uri(database)
        path = directory / "basic_auth.ini"
        path.write_text(
            "# written by `hpo server --auth`; the admin password comes from $MLFLOW_AUTH_ADMIN_PASSWORD\n"
            "[mlflow]\n"
            f"default_permission = {self.default_permission}\n"
            f"database_uri = {database.replace('%', '%%')}\n"
            f"admin_username = {self.admin_username}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        path.chmod(0o600)  # the user store's URI may carry a password of its own
        return path


def is_database(uri: str) -> bool:
    """Whether ``uri`` names a SQL database store (SQLite, PostgreSQL, MySQL, ...) rather than a file store."""
    scheme = uri.split("://", 1)[0].split("+", 1)[0] if "://" in uri else ""
    return scheme in ("sqlite", "postgresql", "postgres", "mysql", "mssql")


def store_uri(uri: str) -> str:
    """``uri`` with the PostgreSQL driver that is installed named in it.

    SQLAlchemy 2.1 reads a plain ``postgresql://`` as psycopg 3; the ``cluster`` extra installs psycopg2, so a
    plain URI is pointed at it (``postgresql+psycopg2://``) when psycopg 3 is not there. A URI naming its
    driver, and every other URI, is kept as it is.
    """
    import importlib.util

    scheme, sep, rest = uri.partition("://")
    if sep and scheme in ("postgresql", "postgres") and importlib.util.find_spec("psycopg") is None \
            and importlib.util.find_spec("psycopg2") is not None:
        return f"postgresql+psycopg2://{rest}"
    return uri


def prepare_store(backend_store_uri: str) -> str | None:
    """Bring a database store up to date before a server opens it; returns what was done (one line) or None.

    SQLite goes into WAL mode (persistent in the file), so that trials reading while others write no longer
    wait on one lock. A store whose schema an older MLflow wrote is upgraded to this MLflow's (``mlflow db
    upgrade``, in this process: the URI never appears on a command line). A new, empty store is left to the
    server, which creates its tables.

    Raises:
        HpoError: the store cannot be reached or upgraded (the message names it, password masked).
    """
    if not is_database(backend_store_uri):
        return None
    from mlflow.store.db.utils import (
        _get_latest_schema_revision,
        _get_schema_version,
        _is_empty_database,
        _upgrade_db,
        create_sqlalchemy_engine,
    )

    if backend_store_uri.startswith("sqlite:///"):
        import sqlite3

        path = Path(backend_store_uri.removeprefix("sqlite:///").split("?", 1)[0])
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
    engine = create_sqlalchemy_engine(store_uri(backend_store_uri))
    try:
        if _is_empty_database(engine):
            return None
        current, latest = _get_schema_version(engine), _get_latest_schema_revision()
        if current == latest:
            return None
        _upgrade_db(engine)
        return f"upgraded the MLflow store {redact(backend_store_uri)} from schema {current} to {latest}"
    except Exception as exc:
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise HpoError(f"cannot open or upgrade the MLflow store {redact(backend_store_uri)}: {redact_text(first)[:300]}; "
                       "check that the database server answers and the user may create tables there") from None
    finally:
        engine.dispose()


def server_command(*, host: str, port: int, backend_store_uri: str, artifacts_destination: str,
                   mlflow: str = "mlflow", auth_config: Path | None = None) -> tuple[list[str], dict[str, str]]:
    """The ``mlflow server`` command line and the environment variables to add for it.

    The store and artifact URIs go in the environment (``mlflow server`` reads ``MLFLOW_BACKEND_STORE_URI``
    and ``MLFLOW_ARTIFACTS_DESTINATION`` for its options), so that a password in them never appears in
    the arguments, which ``ps`` shows every user of the machine.
    """
    argv = [mlflow, "server", "--host", host, "--port", str(port), "--workers", "1"]
    if host != "127.0.0.1":
        # MLflow's Host-header check allows loopback and RFC 1918 addresses by default; a cluster address outside
        # those (a site's public range, the 198.18.0.0/15 test range) must be named, or every request gets 403
        names = (host, "localhost", "127.0.0.1")
        argv += ["--allowed-hosts", ",".join(f"{n},{n}:{port}" for n in names)]
    env = {"MLFLOW_BACKEND_STORE_URI": backend_store_uri, "MLFLOW_ARTIFACTS_DESTINATION": artifacts_destination}
    if auth_config is not None:
        argv += ["--app-name", "basic-auth"]
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(auth_config)
        env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = flask_secret(auth_config.parent)
    return argv, env


def flask_secret(directory: Path) -> str:
    """The key the basic-auth app signs its CSRF tokens with: ``$MLFLOW_FLASK_SERVER_SECRET_KEY`` when set (several
    servers behind one proxy must share it), else a random one kept in ``directory/flask_secret`` (mode 600) so
    that a restarted server accepts the forms its UI handed out before."""
    given = os.environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY")
    if given:
        return given
    path = directory / "flask_secret"
    if not path.exists():
        import secrets

        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(secrets.token_hex(32))
    return path.read_text().strip()


def start_server(*, port: int | None = None, backend_store_uri: str | None = None,
                 artifacts_destination: str | None = None, directory: Path | None = None,
                 timeout: float = START_TIMEOUT_S, host: str = "127.0.0.1", auth: ServerAuth | None = None) -> ServerInfo:
    """Start ``mlflow server`` on ``host`` in its own process group and wait for ``/health``.

    The store is prepared first (:func:`prepare_store`: WAL for SQLite, an older schema upgraded). The store
    and artifact URIs reach the server through its environment (:func:`server_command`); ``server.json`` and
    the returned record hold them redacted. With ``auth`` it runs MLflow's basic-auth app.

    Raises:
        HpoError: the store cannot be prepared, ``auth`` lacks its admin password, or the server did not answer
            within ``timeout`` (the message names the log file).
    """
    directory = directory or state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host)
    backend = store_uri(backend_store_uri or f"sqlite:///{directory / 'mlflow.db'}")
    artifacts = artifacts_destination or str(directory / "artifacts")
    auth_config = auth.config_file(directory) if auth is not None else None
    done = prepare_store(backend)
    if done:  # printed, not logged: MLflow's migrations configure logging and silence the loggers that exist
        print(f"note: {done}", file=sys.stderr, flush=True)
    log_file = directory / "server.log"
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    argv, env = server_command(host=host, port=port, backend_store_uri=backend, artifacts_destination=artifacts,
                               mlflow=str(mlflow_bin if mlflow_bin.exists() else "mlflow"), auth_config=auth_config)
    with log_file.open("ab") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                   env={**os.environ, **env})
    uri = f"http://{host}:{port}"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if healthy(uri):
            try:
                leader = record(process.pid)  # once it answers: the command line is final by then
            except psutil.NoSuchProcess:
                break
            _STARTED[process.pid] = leader
            info = ServerInfo(uri=uri, port=port, pid=process.pid, backend_store_uri=redact(backend),
                              artifacts_destination=redact(artifacts), log=str(log_file), host=host,
                              create_time=leader.create_time, cmdline=leader.cmdline, auth=auth is not None)
            data = {**info.__dict__, "cmdline": list(leader.cmdline)}
            (directory / "server.json").write_text(json.dumps(data, indent=2))
            return info
        if process.poll() is not None:
            break
        time.sleep(0.5)
    # Our own group (start_new_session): its id stays taken while any member lives, so this reaches only what is
    # left of this server, also after poll() reaped the leader.
    _terminate_group(process.pid)
    code = process.poll()
    if code is not None and time.time() < deadline:
        lines = [ln.strip() for ln in log_file.read_text(errors="replace").splitlines() if ln.strip()]
        last = redact_text(lines[-1])[:300] if lines else "nothing logged"
        raise HpoError(f"the MLflow server on port {port} exited at start (status {code}): {last}; see {log_file}")
    raise HpoError(f"the MLflow server on port {port} did not answer /health within {timeout:g} s; see {log_file}")


def stop_group(server: ProcessRecord | int, timeout: float = 15.0) -> str | None:
    """Terminate a server's whole process group (SIGTERM, then SIGKILL), if its leader is verified.

    Args:
        server: the leader's record (from ``server.json``: :attr:`ServerInfo.process`), or the pid of a server
            this process started (:func:`start_server` kept its record).
        timeout: seconds to wait after each signal for the group to go.

    Returns:
        ``None`` when the group was signalled (it is gone now), else why it was left alone (one line, e.g.
        "pid 4242 is no longer the MLflow server: it is now `sleep 60`, ...; not signalled").
    """
    expected = server if isinstance(server, ProcessRecord) else _STARTED.get(server)
    if expected is None:
        return (f"pid {server} was not started by this process and comes without its start time and command "
                "line, so it cannot be verified as the MLflow server; not signalled")
    why = mismatch(expected, group=True)
    if why is not None:
        return f"pid {expected.pid} is no longer the MLflow server: {why}; not signalled"
    _terminate_group(expected.pid, timeout)
    _STARTED.pop(expected.pid, None)
    return None


def _terminate_group(pgid: int, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL, to process group ``pgid`` until it is gone. Unchecked: callers verify first."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not group_alive(pgid):
                return
            time.sleep(0.2)


#: Servers this process started: leader pid -> its record (so that ``stop_group(pid)`` can verify it).
_STARTED: dict[int, ProcessRecord] = {}


def ensure_server(directory: Path | None = None, host: str = "127.0.0.1") -> ServerInfo:
    """The embedded server: the recorded one when healthy, else a new one on ``host`` (the record is replaced).

    Raises:
        HpoError: the recorded server is healthy but listens only on loopback, where ``host`` is another
            address (trials on other nodes could not reach it).
    """
    info = recorded(directory)
    if info is not None and healthy(info.uri):
        if info.host == host or host == "127.0.0.1":
            return info
        raise HpoError(
            f"the embedded MLflow server {info.uri} listens on {info.host} only, which the other nodes of the Ray "
            f"cluster cannot reach; stop it (`hpo server --stop`) so that the launch starts it on {host}, or set "
            "tracking.uri to a server every node reaches"
        )
    if info is not None and info.process is not None:
        stop_group(info.process)  # a stale record: what is left of it goes, if it is still that server
    return start_server(directory=directory, host=host)


def stop_server(directory: Path | None = None) -> str:
    """Stop the recorded embedded server, if the recorded pid is still that server; returns a one-line message.

    A pid that now belongs to another process is left alone and its record removed; a record too old to
    carry the start time and command line is left alone, record included, while its pid lives.
    """
    path = (directory or state_dir()) / "server.json"
    info = recorded(directory)
    if info is None:
        return "no embedded MLflow server is recorded"
    if info.process is None:
        if not psutil.pid_exists(info.pid):
            path.unlink(missing_ok=True)
            return f"the recorded MLflow server (pid {info.pid}) is not running; record removed"
        return (f"{path} records pid {info.pid} without its start time and command line (an older hpo wrote it), "
                f"so it cannot be verified as the MLflow server; not signalled: check `ps -o pid,pgid,args -p "
                f"{info.pid}` and stop it yourself, then delete {path}")
    why = stop_group(info.process)
    path.unlink(missing_ok=True)
    if why is not None:
        return f"{why}; record removed"
    return f"stopped the MLflow server at {info.uri} (pid {info.pid})"


def resolve_tracking_uri(explicit: str | None = None, *, start_embedded: bool = True, host: str = "127.0.0.1") -> str:
    """Where to track: ``explicit`` > ``$MLFLOW_TRACKING_URI`` > the embedded server (started if needed, on
    ``host``)."""
    uri = explicit or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        if uri.startswith("http") and not healthy(uri, timeout=5):
            raise HpoError(f"the MLflow tracking server {redact(uri)} does not answer /health; start it, or unset tracking.uri "
                           "and MLFLOW_TRACKING_URI to use the embedded server")
        return uri
    if not start_embedded:
        info = recorded()
        if info is None or not healthy(info.uri):
            raise HpoError("no tracking server: pass --tracking-uri, set MLFLOW_TRACKING_URI, or start one with `hpo server --detach`")
    else:
        info = ensure_server(host=host)
    if info.auth and not (os.environ.get("MLFLOW_TRACKING_USERNAME") and os.environ.get("MLFLOW_TRACKING_PASSWORD")):
        raise HpoError(f"the MLflow server {info.uri} requires a user name and password (hpo server --auth): set "
                       "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD in the environment")
    return info.uri
