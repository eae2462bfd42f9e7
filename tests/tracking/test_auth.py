"""``hpo server --auth``: a group's server that requires users and passwords (MLflow's basic-auth app).

Real components: ``hpo server --auth --detach`` (a real ``mlflow server --app-name basic-auth``), MLflow's own
auth client creating users and permissions, and a real campaign (``hpo launch``, Horovod ranks) logging as one
of those users.
"""

from __future__ import annotations

import os
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.tracking.campaigns import small_campaign

pytestmark = pytest.mark.slow

ADMIN_PASSWORD = "admin-pass-for-tests-0123"
USERS = {"alice": "alice-pass-for-tests-0123", "bob": "bob-pass-for-tests-0123"}



def as_user(name: str | None) -> dict[str, str]:
    """This process's environment as ``name`` would run a client (no credentials for None)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    if name is not None:
        env.update(MLFLOW_TRACKING_USERNAME=name,
                   MLFLOW_TRACKING_PASSWORD=ADMIN_PASSWORD if name == "admin" else USERS[name])
    return env


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, hpo: Callable[..., Any]) -> Iterator[dict[str, Any]]:
    """A server started with ``hpo server --auth --detach``; alice and bob are users (default permission READ)."""
    from mlflow.server.auth.client import AuthServiceClient

    home = tmp_path_factory.mktemp("auth-home")
    env = {**as_user(None), "HPO_HOME": str(home), "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD}
    started = hpo("server", "--auth", "--detach", env=env, timeout=300)
    assert started.returncode == 0, started.stderr[-2000:]
    uri = next(w for w in started.stdout.split() if w.startswith("http://")).rstrip(";")
    try:
        with pytest.MonkeyPatch.context() as patch:
            for key, value in as_user("admin").items():
                patch.setenv(key, value)
            admin = AuthServiceClient(uri)
            for name, password in USERS.items():
                admin.create_user(name, password)
        yield {"uri": uri, "env": env, "home": home, "started": started}
    finally:
        hpo("server", "--stop", env=env, timeout=120)


def test_the_server_says_authentication_is_on_and_keeps_no_password(guarded: dict[str, Any], hpo: Callable[..., Any]) -> None:
    assert "users: --auth (admin admin, others READ)" in guarded["started"].stdout
    status = hpo("server", "--status", env=guarded["env"], timeout=120)
    assert status.returncode == 0 and "authentication on" in status.stdout, status.stdout
    ini = guarded["home"] / "mlflow" / "basic_auth.ini"
    assert ini.stat().st_mode & 0o077 == 0  # only its owner reads it
    for path in (guarded["home"] / "mlflow").rglob("*"):
        if path.is_file() and path.suffix in (".ini", ".json", ".log"):
            assert ADMIN_PASSWORD not in path.read_text(errors="replace"), path


def test_an_unauthenticated_request_is_refused(guarded: dict[str, Any]) -> None:
    with urllib.request.urlopen(f"{guarded['uri']}/health", timeout=10) as response:
        assert response.status == 200  # health checks need no account
    request = f"{guarded['uri']}/api/2.0/mlflow/experiments/search?max_results=1"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401


def test_a_campaign_without_credentials_stops_with_one_line(guarded: dict[str, Any], calo_file: Path, tmp_path: Path,
                                                            hpo: Callable[..., Any]) -> None:
    path = small_campaign(tmp_path, "guarded", calo_file, guarded["uri"])
    result = hpo("launch", str(path), "--campaigns-dir", str(tmp_path / "campaigns"), "--no-progress",
                 env=as_user(None), timeout=600)
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "MLFLOW_TRACKING_USERNAME" in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_an_authenticated_campaign_logs_and_a_reader_cannot_write(guarded: dict[str, Any], calo_file: Path,
                                                                  tmp_path: Path, hpo: Callable[..., Any],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.client import AuthServiceClient
    from mlflow.tracking import MlflowClient

    path = small_campaign(tmp_path, "guarded", calo_file, guarded["uri"])
    result = hpo("launch", str(path), "--campaigns-dir", str(tmp_path / "campaigns"), "--no-progress",
                 env=as_user("alice"), timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert USERS["alice"] not in result.stdout + result.stderr

    for key, value in as_user("alice").items():
        monkeypatch.setenv(key, value)
    alice = MlflowClient(guarded["uri"])
    experiment = alice.get_experiment_by_name("guarded")
    assert experiment is not None
    runs = alice.search_runs([experiment.experiment_id], max_results=10)
    trials = [r for r in runs if r.data.tags.get("hpo.role") == "trial"]
    assert len(trials) == 2 and all(r.data.tags["hpo.state"] == "FINISHED" for r in trials)
    assert all("val_auc" in r.data.metrics for r in trials)
    assert all(r.data.tags.get("mlflow.user") in (None, "alice") for r in runs)

    for key, value in as_user("admin").items():
        monkeypatch.setenv(key, value)
    AuthServiceClient(guarded["uri"]).grant_user_permission("bob", "experiment", experiment.experiment_id, "READ")
    for key, value in as_user("bob").items():
        monkeypatch.setenv(key, value)
    bob = MlflowClient(guarded["uri"])
    seen = bob.search_runs([experiment.experiment_id], max_results=10)  # he reads it
    assert {r.info.run_id for r in seen} == {r.info.run_id for r in runs}
    with pytest.raises(MlflowException) as refused:
        bob.log_metric(trials[0].info.run_id, "val_auc", 1.0)  # and may not write it
    assert "error code 403" in str(refused.value) and "Permission denied" in str(refused.value)
    assert alice.get_run(trials[0].info.run_id).data.metrics["val_auc"] == trials[0].data.metrics["val_auc"]


def test_auth_needs_the_admin_password_from_the_environment(tmp_path: Path, hpo: Callable[..., Any]) -> None:
    env = {**as_user(None), "HPO_HOME": str(tmp_path)}
    env.pop("MLFLOW_AUTH_ADMIN_PASSWORD", None)
    result = hpo("server", "--auth", "--detach", env=env, timeout=120)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "MLFLOW_AUTH_ADMIN_PASSWORD" in result.stderr and "never on the command line" in result.stderr
    assert not (tmp_path / "mlflow" / "server.json").exists()


def test_serving_another_address_without_auth_warns(tmp_path: Path, hpo: Callable[..., Any]) -> None:
    """The warning comes before the server starts; the port is taken on purpose, so that nothing ever listens on
    the wildcard address (the test machine's network stays closed) and the server exits at once."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = hpo("server", "--host", "0.0.0.0", "--port", str(port), "--detach",
                     env={**as_user(None), "HPO_HOME": str(tmp_path)}, timeout=200)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "without authentication" in warnings[0] and "--auth" in warnings[0], result.stderr
    assert result.returncode == 2 and "exited at start" in result.stderr, result.stderr
    quiet = hpo("server", "--host", "127.0.0.1", "--status", env={**as_user(None), "HPO_HOME": str(tmp_path)},
                timeout=120)
    assert "warning" not in quiet.stderr
