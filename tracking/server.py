"""The embedded MLflow tracking server, and where tracking goes.

The embedded default is a real ``mlflow server`` bound to 127.0.0.1 (on a Ray cluster of several nodes: the
head's cluster address, which every node reaches) with a SQLite backend store and a
local artifact directory under ``./.hpo/mlflow/`` (``HPO_HOME`` moves it): ``mlflow.db``, ``artifacts/``,
``server.log`` and ``server.json`` (pid, port, URI). It runs in its own process group, because killing
only the ``mlflow server`` parent leaves its uvicorn and job-queue children behind (STACK.md).

:func:`resolve_tracking_uri` decides where a campaign logs: the campaign's ``tracking.uri``, else
``$MLFLOW_TRACKING_URI``, else the embedded server (reused when healthy, started otherwise).
"""

from __future__ import annotations

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

from trainables.errors import HpoError

START_TIMEOUT_S = 90.0


def state_dir() -> Path:
    """Where the embedded server keeps its store, artifacts and record."""
    return Path(os.environ.get("HPO_HOME", ".hpo")).absolute() / "mlflow"


@dataclass(frozen=True)
class ServerInfo:
    """A running server: its address and process group."""

    uri: str
    port: int
    pid: int
    backend_store_uri: str
    artifacts_destination: str
    log: str
    host: str = "127.0.0.1"  # the address it listens on


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
        return ServerInfo(**json.loads(path.read_text()))
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None


def start_server(*, port: int | None = None, backend_store_uri: str | None = None,
                 artifacts_destination: str | None = None, directory: Path | None = None,
                 timeout: float = START_TIMEOUT_S, host: str = "127.0.0.1") -> ServerInfo:
    """Start ``mlflow server`` on ``host`` in its own process group and wait for ``/health``.

    Raises:
        HpoError: it did not answer within ``timeout`` (the message names the log file).
    """
    directory = directory or state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host)
    backend = backend_store_uri or f"sqlite:///{directory / 'mlflow.db'}"
    artifacts = artifacts_destination or str(directory / "artifacts")
    log = directory / "server.log"
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    command = [str(mlflow_bin if mlflow_bin.exists() else "mlflow"), "server", "--host", host, "--port", str(port),
               "--backend-store-uri", backend, "--artifacts-destination", artifacts, "--workers", "1"]
    if host != "127.0.0.1":
        # MLflow's Host-header check allows loopback and RFC 1918 addresses by default; a cluster address outside
        # those (a site's public range, the 198.18.0.0/15 test range) must be named, or every request gets 403
        names = (host, "localhost", "127.0.0.1")
        command += ["--allowed-hosts", ",".join(f"{n},{n}:{port}" for n in names)]
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://{host}:{port}"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if healthy(uri):
            info = ServerInfo(uri=uri, port=port, pid=process.pid, backend_store_uri=backend,
                              artifacts_destination=artifacts, log=str(log), host=host)
            (directory / "server.json").write_text(json.dumps(info.__dict__, indent=2))
            return info
        if process.poll() is not None:
            break
        time.sleep(0.5)
    stop_group(process.pid)
    raise HpoError(f"the MLflow server on port {port} did not answer /health within {timeout:g} s; see {log}")


def stop_group(pid: int, timeout: float = 15.0) -> None:
    """Terminate a server's whole process group (SIGTERM, then SIGKILL)."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


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
    if info is not None:
        stop_group(info.pid)  # a stale record: whatever is left of it goes
    return start_server(directory=directory, host=host)


def stop_server(directory: Path | None = None) -> str:
    """Stop the recorded embedded server; returns a one-line message."""
    info = recorded(directory)
    if info is None:
        return "no embedded MLflow server is recorded"
    stop_group(info.pid)
    (directory or state_dir()).joinpath("server.json").unlink(missing_ok=True)
    return f"stopped the MLflow server at {info.uri} (pid {info.pid})"


def resolve_tracking_uri(explicit: str | None = None, *, start_embedded: bool = True, host: str = "127.0.0.1") -> str:
    """Where to track: ``explicit`` > ``$MLFLOW_TRACKING_URI`` > the embedded server (started if needed, on
    ``host``)."""
    uri = explicit or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        if uri.startswith("http") and not healthy(uri, timeout=5):
            raise HpoError(f"the MLflow tracking server {uri} does not answer /health; start it, or unset tracking.uri "
                           "and MLFLOW_TRACKING_URI to use the embedded server")
        return uri
    if not start_embedded:
        info = recorded()
        if info is None or not healthy(info.uri):
            raise HpoError("no tracking server: pass --tracking-uri, set MLFLOW_TRACKING_URI, or start one with `hpo server --detach`")
        return info.uri
    return ensure_server(host=host).uri
