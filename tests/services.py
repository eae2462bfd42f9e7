"""Real services the tests start themselves: a PostgreSQL server in a temporary directory.

Debian's ``postgresql`` package (``scripts/install-system.sh`` installs it for ``make test``) provides
``initdb`` and ``pg_ctl``; we never touch its own cluster. The server runs as the unprivileged ``postgres``
user when the tests run as root (PostgreSQL refuses to run as root), listens on a free port on 127.0.0.1
only, and authenticates TCP clients by password (SCRAM), as a group's server would.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tracking.server import free_port

#: The superuser the tests' cluster is created with, and its password (a throwaway, for a throwaway server).
PG_USER = "hpo"
PG_PASSWORD = "hpo-test-secret"


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's ``bin`` directory (Debian's layout), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    return Path(found[-1]).parent if found else None


def why_no_postgres() -> str | None:
    """One line saying why a PostgreSQL server cannot be started here, or None when it can."""
    if postgres_bin() is None:
        return "PostgreSQL is not installed (scripts/install-system.sh installs Debian's postgresql; needs root)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a 'postgres' user to run PostgreSQL as (it refuses to run as root)"
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "psycopg2 is not installed (pip install -e '.[cluster]')"
    return None


@dataclass
class PostgresServer:
    """A running PostgreSQL server of the tests' own."""

    directory: Path
    port: int
    bin: Path
    user: str | None  # the OS user it runs as (None: the current one)

    def uri(self, database: str, *, password: bool = True) -> str:
        """SQLAlchemy URI of ``database`` (with the password in it, or without it for ``PGPASSWORD``)."""
        secret = f":{PG_PASSWORD}" if password else ""
        return f"postgresql://{PG_USER}{secret}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create database ``name`` (a fresh MLflow store); returns its URI (with the password)."""
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=self.port, user=PG_USER, password=PG_PASSWORD,
                                      dbname="postgres", connect_timeout=10)
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()
        return self.uri(name)

    def log(self) -> str:
        """The server's log (for assertion messages)."""
        path = self.directory / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Stop it at once and delete its directory."""
        self._run("pg_ctl", "-D", str(self.directory / "data"), "-m", "immediate", "-w", "-t", "30", "stop", check=False)
        shutil.rmtree(self.directory, ignore_errors=True)

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin / tool), *args], capture_output=True, text=True, timeout=120, check=check,
                              user=self.user, cwd=self.directory)

    @classmethod
    def start(cls) -> PostgresServer:
        """initdb into a new temporary directory, then ``pg_ctl start`` on a free port of 127.0.0.1."""
        why = why_no_postgres()
        if why is not None:
            raise RuntimeError(why)
        bin_dir = postgres_bin()
        assert bin_dir is not None
        user = "postgres" if os.geteuid() == 0 else None
        # /tmp itself, not pytest's per-user directory (mode 700), which the postgres user could not enter
        directory = Path(tempfile.mkdtemp(prefix="hpo-pg-"))
        server = cls(directory=directory, port=free_port(), bin=bin_dir, user=user)
        (directory / "pwfile").write_text(PG_PASSWORD + "\n")
        if user is not None:
            account = pwd.getpwnam(user)
            os.chown(directory, account.pw_uid, account.pw_gid)
            os.chown(directory / "pwfile", account.pw_uid, account.pw_gid)
        try:
            server._run("initdb", "-D", str(directory / "data"), "-U", PG_USER, f"--pwfile={directory / 'pwfile'}",
                        "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8", "--no-instructions")
            options = (f"-c listen_addresses=127.0.0.1 -p {server.port} -k {directory} -c fsync=off "
                       "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
            server._run("pg_ctl", "-D", str(directory / "data"), "-o", options, "-l", str(directory / "server.log"),
                        "-w", "-t", "60", "start")
        except subprocess.CalledProcessError as exc:
            log = server.log()
            server.stop()
            raise RuntimeError(f"PostgreSQL did not start: {exc.stderr.strip()[-500:]} {log[-500:]}") from None
        server._wait_ready()
        return server

    def _wait_ready(self, timeout: float = 30) -> None:
        import psycopg2

        deadline = time.time() + timeout
        while True:
            try:
                psycopg2.connect(host="127.0.0.1", port=self.port, user=PG_USER, password=PG_PASSWORD,
                                 dbname="postgres", connect_timeout=5).close()
                return
            except psycopg2.OperationalError:
                if time.time() > deadline:
                    raise
                time.sleep(0.3)

