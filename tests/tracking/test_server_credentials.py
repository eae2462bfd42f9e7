"""The embedded server's hardening: no password in its arguments, on disk or in output, and signals only to the
recorded process (a recycled pid is left alone).

Real ``mlflow server`` processes (over SQLite, and over the session's PostgreSQL with the password in the store
URI) check what ``ps`` would show and a verified stop; a ``sleep`` stands in for the unrelated process that
inherited a recorded pid.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

import tracking.server as server
from tracking.credentials import has_password, redact, redact_text
from tracking.procs import ProcessRecord, group_alive, is_ours, mismatch, record

SECRET = "S3cr3t-pw"
STORE = f"postgresql://mlflow:{SECRET}@db.example.org:5432/mlflow"

Hpo = Callable[..., subprocess.CompletedProcess[str]]


# --- redact --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("uri", "shown"), [
    (STORE, "postgresql://mlflow:***@db.example.org:5432/mlflow"),
    ("mysql+pymysql://u:p%40ss@h/db?charset=utf8", "mysql+pymysql://u:***@h/db?charset=utf8"),
    ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),  # an unencoded "@" in the password
    ("https://user:tok@mlflow.example.org/#/x", "https://user:***@mlflow.example.org/#/x"),
    ("postgresql://u@h/db?sslmode=require&password=pw&x=1", "postgresql://u@h/db?sslmode=require&password=***&x=1"),
    ("postgresql://u:@h/db", "postgresql://u:***@h/db"),  # an empty password still says nothing
])
def test_redact_hides_the_password(uri: str, shown: str) -> None:
    assert redact(uri) == shown
    assert has_password(uri)


@pytest.mark.parametrize("uri", [
    "postgresql://mlflow@db.example.org/mlflow",  # user, no password
    "http://127.0.0.1:5000",  # no user info
    "sqlite:////abs/mlflow.db", "sqlite:///rel.db", "file:///tmp/mlruns",
    "/tmp/artifacts", "relative/dir", "s3://bucket/path@v1", "", "not a uri: at all", "http://[::1",
])
def test_redact_keeps_what_has_no_password(uri: str) -> None:
    assert redact(uri) == uri
    assert not has_password(uri)


def test_redact_text_finds_uris_inside_arguments() -> None:
    arg = f"tracking.uri=https://me:{SECRET}@mlflow.example.org"
    assert redact_text(arg) == "tracking.uri=https://me:***@mlflow.example.org"
    assert redact_text(f"store {STORE}; log x") == "store postgresql://mlflow:***@db.example.org:5432/mlflow; log x"


# --- the command line --------------------------------------------------------------------------------------------


def test_server_command_passes_the_store_in_the_environment_only() -> None:
    argv, env = server.server_command(host="127.0.0.1", port=5000, backend_store_uri=STORE,
                                      artifacts_destination="s3://bucket/mlflow")
    assert not any(SECRET in a or "postgresql" in a or "s3://" in a for a in argv)
    assert argv[:2] == ["mlflow", "server"] and "--backend-store-uri" not in argv
    assert env == {"MLFLOW_BACKEND_STORE_URI": STORE, "MLFLOW_ARTIFACTS_DESTINATION": "s3://bucket/mlflow"}
    cluster, _ = server.server_command(host="10.1.2.3", port=5000, backend_store_uri=STORE, artifacts_destination="/a")
    assert "--allowed-hosts" in cluster and not any(SECRET in a for a in cluster)


# --- start, status, stop ------------------------------------------------------------------------------------------


def _hpo_home(directory: Path) -> dict[str, str]:
    return {**os.environ, "HPO_HOME": str(directory.parent)}


def test_a_password_never_reaches_arguments_record_or_output(tmp_path: Path, postgres: Any, hpo: Hpo) -> None:
    """A real server over a real PostgreSQL store whose URI carries the password: no process of its group shows
    it in its arguments; server.json, ``hpo server --status`` and the returned record show ***; then stopped."""
    store = postgres.create_database("credentials")
    secret = store.split(":")[2].split("@")[0]
    directory = tmp_path / "mlflow"
    info = server.start_server(directory=directory, backend_store_uri=store)
    try:
        members = [p for p in psutil.process_iter(["pid"]) if _group_of(p.pid) == info.pid]
        assert members, "the server's process group is empty"
        for member in members:
            argv = " ".join(member.cmdline())
            assert secret not in argv and "postgresql" not in argv, argv
        assert info.backend_store_uri == redact(server.store_uri(store)) and secret not in info.backend_store_uri
        text = (directory / "server.json").read_text()
        assert secret not in text and "***" in text
        assert json.loads(text)["cmdline"] and info.process is not None

        shown = hpo("server", "--status", env=_hpo_home(directory), timeout=120)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert secret not in shown.stdout + shown.stderr and "hpo:***@127.0.0.1" in shown.stdout
    finally:
        assert server.stop_server(directory).startswith("stopped the MLflow server")
    assert not group_alive(info.pid)
    assert not (directory / "server.json").exists()


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def test_an_inline_password_on_the_command_line_is_warned_about(tmp_path: Path, hpo: Hpo) -> None:
    env = _hpo_home(tmp_path / "mlflow")
    given = hpo("server", "--status", "--backend-store-uri", STORE, env=env, timeout=120)
    warnings = [line for line in given.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "PGPASSWORD" in warnings[0] and redact(STORE) in warnings[0], given.stderr
    assert SECRET not in given.stdout + given.stderr
    from_env = hpo("server", "--status", env={**env, "MLFLOW_BACKEND_STORE_URI": STORE}, timeout=120)
    assert "warning" not in from_env.stderr and SECRET not in from_env.stdout + from_env.stderr


def test_a_real_server_shows_no_store_in_its_arguments_and_stops_when_verified(tmp_path: Path, hpo: Hpo) -> None:
    directory = tmp_path / "mlflow"
    store = f"sqlite:///{directory / 'mlflow.db'}"
    info = server.start_server(directory=directory, backend_store_uri=store)
    try:
        argv = Path(f"/proc/{info.pid}/cmdline").read_bytes().decode().split("\0")
        assert not any("sqlite" in a or str(directory) in a for a in argv), argv
        assert info.process is not None and is_ours(info.process, group=True)
        recorded = json.loads((directory / "server.json").read_text())
        assert tuple(recorded["cmdline"]) == info.process.cmdline and recorded["create_time"] == info.create_time

        shown = hpo("server", "--status", env=_hpo_home(directory), timeout=120)
        assert shown.returncode == 0 and " up;" in shown.stdout, shown.stdout + shown.stderr
        stopped = hpo("server", "--stop", env=_hpo_home(directory), timeout=120)
        assert stopped.stdout.startswith(f"stopped the MLflow server at {info.uri} (pid {info.pid})"), stopped.stdout
        assert not group_alive(info.pid)  # the whole group: uvicorn and job workers too
    finally:
        server.stop_group(info.pid)


def _fake_record(directory: Path, pid: int, **changes: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    data = {"uri": "http://127.0.0.1:9", "port": 9, "pid": pid, "backend_store_uri": "sqlite:///x.db",
            "artifacts_destination": "/a", "log": "/dev/null", "host": "127.0.0.1",
            "create_time": time.time() - 3600, "cmdline": [sys.executable, "mlflow", "server", "--port", "9"]}
    path = directory / "server.json"
    path.write_text(json.dumps({**data, **changes}))
    return path


@pytest.mark.parametrize("recycled", ["other start time", "other command line"])
def test_stop_server_leaves_a_recycled_pid_alone(tmp_path: Path, stranger: subprocess.Popen[bytes],
                                                 recycled: str) -> None:
    """The recorded pid now belongs to an unrelated process (it even leads its own group): not signalled, and
    the stale record goes."""
    actual = record(stranger.pid)
    changes = ({"cmdline": list(actual.cmdline)} if recycled == "other start time"
               else {"create_time": actual.create_time})
    path = _fake_record(tmp_path, stranger.pid, **changes)
    message = server.stop_server(tmp_path)
    assert message.startswith(f"pid {stranger.pid} is no longer the MLflow server: it is now `sleep 60`"), message
    assert message.endswith("not signalled; record removed") and "\n" not in message
    time.sleep(0.3)
    assert stranger.poll() is None
    assert not path.exists()


def test_an_old_record_without_start_time_is_never_signalled(tmp_path: Path, stranger: subprocess.Popen[bytes]) -> None:
    path = _fake_record(tmp_path, stranger.pid, create_time=None, cmdline=None)
    message = server.stop_server(tmp_path)
    assert "cannot be verified" in message and "not signalled" in message and "\n" not in message
    time.sleep(0.3)
    assert stranger.poll() is None and path.exists()  # still alive: the record stays for the user to check
    stranger.kill()
    stranger.wait()
    assert "not running; record removed" in server.stop_server(tmp_path) and not path.exists()


def test_stop_group_refuses_a_bare_pid_it_did_not_start(stranger: subprocess.Popen[bytes]) -> None:
    message = server.stop_group(stranger.pid)
    assert message is not None and "cannot be verified" in message
    time.sleep(0.3)
    assert stranger.poll() is None


def test_process_records_tell_a_group_leader_from_a_member(stranger: subprocess.Popen[bytes]) -> None:
    mine = record(os.getpid())
    assert is_ours(mine) and mismatch(mine) is None
    if os.getpgid(0) != os.getpid():  # under pytest this process is rarely its own group's leader
        assert mismatch(mine, group=True) == "it no longer leads its own process group"
    theirs = record(stranger.pid)
    assert is_ours(theirs, group=True)
    assert ProcessRecord.read(theirs.fields("driver_"), "driver_") == theirs
    assert ProcessRecord.read({"driver_pid": stranger.pid}, "driver_") is None  # an older record: unverifiable
    stranger.kill()
    stranger.wait()
    assert mismatch(theirs) == "no process has that pid now"
