"""The tracking server's store, on SQLite and on PostgreSQL: many trials logging at once, and an older schema.

Real components: ``mlflow server`` subprocesses over a SQLite file and over a database of the session's own
PostgreSQL server (``tests/services.py``), trials logging from separate processes.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from tracking.client import CampaignTracker
from tracking.server import ServerInfo, healthy, start_server, stop_group

pytestmark = pytest.mark.slow

#: What a store under concurrent writers must never answer with.
LOCK_ERRORS = ("database is locked", "deadlock", "could not serialize", "SQLITE_BUSY", "OperationalError")

TRIALS, EPOCHS = 8, 10

ONE_TRIAL = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from tracking.client import TrialLogger
    uri, experiment, parent, trial, spool, start_at = sys.argv[1:7]
    EPOCHS = int(sys.argv[7])
    time.sleep(max(0.0, float(start_at) - time.time()))  # every trial starts at the same moment
    logger = TrialLogger(uri, experiment, parent, "stores", trial, {"lr": 0.01, "filters": 8, "trial": trial},
                         uid="stores-uid", spool_dir=spool, retry_s=0.2, max_retry_s=1.0)
    logger.set_tags({"hpo.hosts": "node"})
    stage = Path(spool) / f"plot-{trial}.txt"
    stage.write_text("a plot\\n")
    for epoch in range(1, EPOCHS + 1):
        logger.log_epoch(epoch, {"loss": 1.0 / epoch, "val_loss": 2.0 / epoch, "val_auc": epoch / 20,
                                 "hpo.epoch_time_s": 0.1, "system.cpu_percent": 50.0})
    logger.log_artifact(stage, "plots")
    logger.finish("FINISHED")
    report = logger.close(timeout=120)
    print(json.dumps({"run": logger.run_id, "complete": report.complete, "errors": report.errors,
                      "orphan_errors": logger.orphans.errors}))
""")


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerInfo]:
    """A server of its own (its log is this test's alone) on a new SQLite file or a new PostgreSQL database."""
    store = None
    if request.param == "postgresql":
        store = request.getfixturevalue("postgres").create_database(f"concurrent_{uuid.uuid4().hex[:8]}")
    info = start_server(directory=tmp_path / "mlflow", backend_store_uri=store)
    yield info
    stop_group(info.pid)


def test_eight_trials_logging_at_once_meet_no_lock_errors(fresh_server: ServerInfo, tmp_path: Path) -> None:
    """8 trials, each in its own process, create their runs and log 10 epochs, tags, a plot and their end at the
    same moment: every operation arrives at the first try (no retried 5xx) and the server logs no lock error."""
    uri = fresh_server.uri
    tracker = CampaignTracker(uri, "stores", "stores", uid="stores-uid")
    config = tmp_path / "stores.yaml"
    config.write_text("name: stores\n")
    parent = tracker.start_campaign(config_file=config, resolved={"name": "stores"}, search_space={},
                                    objectives=[{"metric": "val_auc", "mode": "max"}], data_files=[str(config)])
    spool = tmp_path / "spool"
    spool.mkdir()
    start_at = time.time() + 8  # time for 8 interpreters to import MLflow
    procs = [subprocess.Popen([sys.executable, "-c", ONE_TRIAL, uri, tracker.experiment, parent, f"t{i}", str(spool),
                               str(start_at), str(EPOCHS)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(TRIALS)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    for result in results:
        assert result["complete"] and not result["errors"] and not result["orphan_errors"], result
    server_log = Path(fresh_server.log).read_text(errors="replace")
    found = [needle for needle in LOCK_ERRORS if needle.lower() in server_log.lower()]
    assert not found, f"lock errors in the server log: {found}\n{server_log[-3000:]}"

    database = Path(fresh_server.log).parent / "mlflow.db"
    if fresh_server.backend_store_uri.startswith("sqlite"):  # readers do not wait for the writer
        with sqlite3.connect(database) as connection:
            assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    c = MlflowClient(uri)
    runs = c.search_runs([tracker.experiment], filter_string="tags.`hpo.role` = 'trial'", max_results=50)
    assert sorted(r.data.tags["hpo.trial_id"] for r in runs) == sorted(f"t{i}" for i in range(TRIALS))
    for run in runs:
        assert run.info.status == "FINISHED" and run.data.tags["hpo.state"] == "FINISHED"
        assert run.data.params["filters"] == "8" and run.data.tags["hpo.hosts"] == "node"
        for metric in ("loss", "val_loss", "val_auc", "hpo.epoch_time_s", "system.cpu_percent"):
            assert [m.step for m in c.get_metric_history(run.info.run_id, metric)] == list(range(1, EPOCHS + 1))
        assert [a.path for a in c.list_artifacts(run.info.run_id, "plots")] == [f"plots/plot-{run.data.tags['hpo.trial_id']}.txt"]


def _downgrade_one_revision(store: str) -> tuple[str, str]:
    """Take a store of this MLflow's schema one revision back, as an older MLflow would have left it; returns
    (the revision it is at now, this MLflow's)."""
    from alembic import command
    from mlflow.store.db.utils import (
        _get_alembic_config,
        _get_latest_schema_revision,
        _get_schema_version,
        create_sqlalchemy_engine,
    )

    from tracking.server import store_uri

    engine = create_sqlalchemy_engine(store_uri(store))
    try:
        config = _get_alembic_config(str(engine.url.render_as_string(hide_password=False)))
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "-1")
        return str(_get_schema_version(engine)), str(_get_latest_schema_revision())
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def old_store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str, dict[str, str]]:
    """(store URI, the older revision it holds, environment for ``hpo server``): a store with a run in it, created
    by this MLflow's server, then taken one schema revision back."""
    directory = tmp_path / "mlflow"
    if request.param == "postgresql":
        store = request.getfixturevalue("postgres").create_database(f"old_{uuid.uuid4().hex[:8]}")
    else:
        store = f"sqlite:///{directory / 'mlflow.db'}"
    info = start_server(directory=directory, backend_store_uri=store)
    try:
        c = MlflowClient(info.uri)
        run = c.create_run(c.create_experiment("kept")).info.run_id
        c.log_metric(run, "val_auc", 0.75)
    finally:
        stop_group(info.pid)
    old, latest = _downgrade_one_revision(store)
    assert old != latest
    env = {**os.environ, "HPO_HOME": str(tmp_path / "home"), "MLFLOW_BACKEND_STORE_URI": store}
    return store, old, env


def test_hpo_server_upgrades_an_older_schema_before_it_starts(old_store: tuple[str, str, dict[str, str]],
                                                              hpo: Callable[..., Any]) -> None:
    from mlflow.store.db.utils import _get_latest_schema_revision

    from tracking.credentials import redact
    from tracking.server import store_uri

    store, old, env = old_store
    started = hpo("server", "--detach", env=env, timeout=300)
    try:
        assert started.returncode == 0, started.stderr[-2000:]
        latest = _get_latest_schema_revision()
        assert f"upgraded the MLflow store {redact(store_uri(store))} from schema {old} to {latest}" in started.stderr
        assert "hpo-test-secret" not in started.stdout + started.stderr
        uri = next(w for w in started.stdout.split() if w.startswith("http://")).rstrip(";")
        assert healthy(uri)
        c = MlflowClient(uri)
        kept = c.get_experiment_by_name("kept")
        assert kept is not None
        [run] = c.search_runs([kept.experiment_id])
        assert run.data.metrics["val_auc"] == 0.75  # the runs an older MLflow wrote are all there
    finally:
        stopped = hpo("server", "--stop", env=env, timeout=120)
        assert stopped.returncode == 0, stopped.stderr
