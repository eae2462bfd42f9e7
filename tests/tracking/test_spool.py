"""The tracking spool: what a killed process logged reaches MLflow once, in order; hopeless errors are not retried.

Real components: ``mlflow server`` subprocesses, a logging process killed with SIGKILL, the ``hpo sync`` CLI.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from tracking.client import CampaignTracker, TrialLogger
from tracking.server import free_port, start_server, stop_group
from tracking.spool import journals, pending_count, read

pytestmark = pytest.mark.slow


def parent_run(uri: str, tmp_path: Path, name: str) -> tuple[str, str]:
    tracker = CampaignTracker(uri, name, name, uid=f"{name}-uid")
    config = tmp_path / f"{name}.yaml"
    config.write_text(f"name: {name}\n")
    parent = tracker.start_campaign(config_file=config, resolved={"name": name}, search_space={},
                                    objectives=[{"metric": "loss", "mode": "min"}], data_files=[str(config)])
    return tracker.experiment, parent


KILLED_TRIAL = textwrap.dedent("""
    import os, signal, sys, time
    from tracking.client import TrialLogger
    uri, experiment, parent, spool, stage, campaign = sys.argv[1:7]
    logger = TrialLogger(uri, experiment, parent, campaign, "t1", {"lr": 0.1}, uid=f"{campaign}-uid", spool_dir=spool,
                         stage=stage, retry_s=0.2, max_retry_s=0.5)
    for epoch in (1, 2, 3):
        logger.log_epoch(epoch, {"loss": 1.0 / epoch})
    logger.log_artifact(os.path.join(stage, "plot.txt"), "plots")
    if campaign == "spool":
        os.kill(os.getpid(), signal.SIGKILL)  # before anything could be delivered: the server is down
    logger.finish("FINISHED")
    assert not logger.close(timeout=2).complete  # gives up waiting; the journal stays
""")


def log_in_a_process(server: Any, experiment: str, parent: str, spool: Path, campaign: str) -> subprocess.CompletedProcess[str]:
    """Log three epochs and a plot to trial t1 in a child process while the server is down."""
    stage = spool / "stage" / "t1-a"
    stage.mkdir(parents=True)
    (stage / "plot.txt").write_text("a plot\n")
    return subprocess.run([sys.executable, "-c", KILLED_TRIAL, server.uri, experiment, parent, str(spool), str(stage),
                           campaign], capture_output=True, text=True, timeout=120)


def test_a_killed_trials_journal_is_delivered_by_the_next_attempt(tmp_path: Path) -> None:
    port = free_port()
    server = start_server(directory=tmp_path / "mlflow", port=port)
    experiment, parent = parent_run(server.uri, tmp_path, "spool")
    stop_group(server.pid)  # down while the first attempt logs; it is killed before the server returns
    spool = tmp_path / "spool"
    killed = log_in_a_process(server, experiment, parent, spool, "spool")
    assert killed.returncode == -9, killed.stderr[-2000:]
    [journal] = journals(spool)
    held = read(journal)
    assert held is not None and [op["op"] for op in held.ops] == ["metrics", "metrics", "metrics", "artifact"]
    assert pending_count(spool) == (4, 1)

    server = start_server(directory=tmp_path / "mlflow", port=port)  # same port, same store
    try:
        retry = TrialLogger(server.uri, experiment, parent, "spool", "t1", {"lr": 0.1}, uid="spool-uid", spool_dir=spool)
        for epoch in (4, 5):
            retry.log_epoch(epoch, {"loss": 1.0 / epoch})
        retry.finish("FINISHED")
        assert retry.close(timeout=120).complete
        assert retry.orphans.delivered == 4 and retry.orphans.complete
        assert journals(spool) == [] and not (spool / "stage" / "t1-a").exists()  # delivered journals and their staged files are gone
        c = MlflowClient(server.uri)
        runs = c.search_runs([experiment], "tags.`hpo.role` = 'trial'")
        assert [r.info.run_id for r in runs] == [retry.run_id]
        assert [m.step for m in c.get_metric_history(retry.run_id, "loss")] == [1, 2, 3, 4, 5]  # once each, in order
        assert [a.path for a in c.list_artifacts(retry.run_id, "plots")] == ["plots/plot.txt"]
        assert c.get_run(retry.run_id).info.status == "FINISHED"
    finally:
        stop_group(server.pid)


def test_errors_that_cannot_succeed_are_dropped_at_once_and_the_rest_arrives(store_server: str, tmp_path: Path) -> None:
    experiment, parent = parent_run(store_server, tmp_path, "hopeless")
    logger = TrialLogger(store_server, experiment, parent, "hopeless", "t1", {}, uid="hopeless-uid",
                         spool_dir=tmp_path / "spool", retry_s=5, max_retry_s=30)
    started = time.perf_counter()
    logger.log_epoch(1, {"loss": 1.0})
    logger.log_artifact(tmp_path / "missing.png", "plots")  # a missing file never appears by retrying
    logger.set_tags({"x" * 300: "a key longer than MLflow's limit"})  # HTTP 400 from the server
    logger.log_epoch(2, {"loss": 0.5})
    logger.finish("FINISHED")
    report = logger.close(timeout=60)
    assert time.perf_counter() - started < 20  # no back-off of 5, 10, 20, 30 s on them
    assert report.complete and report.dropped == 2, report
    assert any("missing.png" in e and "not retried" in e for e in report.errors), report.errors
    assert any("400" in e or "INVALID_PARAMETER_VALUE" in e or "key" in e.lower() for e in report.errors), report.errors
    c = MlflowClient(store_server)
    assert [m.step for m in c.get_metric_history(logger.run_id, "loss")] == [1, 2]
    assert journals(tmp_path / "spool") == []


def test_the_delivery_thread_ends_with_the_trial(store_server: str, tmp_path: Path) -> None:
    experiment, parent = parent_run(store_server, tmp_path, "threads")
    before = threading.active_count()
    loggers = []
    for trial in range(5):  # a warm worker runs trial after trial
        logger = TrialLogger(store_server, experiment, parent, "threads", f"t{trial}", {}, uid="threads-uid",
                             spool_dir=tmp_path / "spool")
        logger.log_epoch(1, {"loss": 1.0})
        logger.finish("FINISHED")
        loggers.append(logger)
    deadline = time.time() + 60
    while any(lg.alive for lg in loggers) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(lg.alive for lg in loggers)  # no close() call needed: finish() ends the thread
    assert threading.active_count() <= before


def test_a_retry_that_finishes_moves_the_earlier_error_aside(store_server: str, tmp_path: Path) -> None:
    experiment, parent = parent_run(store_server, tmp_path, "attempts")
    args: dict[str, Any] = {"uid": "attempts-uid", "spool_dir": tmp_path / "spool"}
    first = TrialLogger(store_server, experiment, parent, "attempts", "t1", {}, **args)
    first.log_epoch(1, {"loss": 1.0})
    first.finish("FAILED", "rank 1 on node2 died: Killed")
    assert first.close(60).complete
    second = TrialLogger(store_server, experiment, parent, "attempts", "t1", {}, **args)
    second.log_epoch(2, {"loss": 0.5})
    second.finish("FINISHED")
    assert second.close(60).complete
    run = MlflowClient(store_server).get_run(second.run_id)
    assert run.info.status == "FINISHED" and second.run_id == first.run_id
    assert "hpo.error" not in run.data.tags
    assert json.loads(run.data.tags["hpo.attempt_errors"]) == ["rank 1 on node2 died: Killed"]


def test_hpo_sync_delivers_what_a_campaign_holds(tmp_path: Path, hpo: Any) -> None:
    port = free_port()
    server = start_server(directory=tmp_path / "mlflow", port=port)
    experiment, parent = parent_run(server.uri, tmp_path, "syncme")
    stop_group(server.pid)
    root = tmp_path / "campaigns" / "syncme"
    (root / "spool").mkdir(parents=True)
    (root / "state.json").write_text(json.dumps({"name": "syncme", "status": "finished"}))
    gave_up = log_in_a_process(server, experiment, parent, root / "spool", "syncme")
    assert gave_up.returncode == 0, gave_up.stderr[-2000:]
    assert pending_count(root / "spool") == (5, 1)
    env_dir = ["--campaigns-dir", str(tmp_path / "campaigns")]
    down = hpo("sync", "syncme", "--timeout", "3", *env_dir)
    assert down.returncode == 1 and "still held" in down.stderr, down.stdout + down.stderr
    server = start_server(directory=tmp_path / "mlflow", port=port)
    try:
        up = hpo("sync", "syncme", *env_dir)
        assert up.returncode == 0 and "the spool is empty" in up.stdout, up.stdout + up.stderr
        c = MlflowClient(server.uri)
        [run] = c.search_runs([experiment], "tags.`hpo.role` = 'trial'")
        assert run.info.status == "FINISHED"
        assert [m.step for m in c.get_metric_history(run.info.run_id, "loss")] == [1, 2, 3]
        again = hpo("sync", "syncme", *env_dir)
        assert again.returncode == 0 and "nothing to deliver" in again.stdout
    finally:
        stop_group(server.pid)


def test_an_epoch_trained_again_after_an_older_checkpoint_keeps_its_first_values(store_server: str, tmp_path: Path) -> None:
    experiment, parent = parent_run(store_server, tmp_path, "repeat")
    args: dict[str, Any] = {"uid": "repeat-uid", "spool_dir": tmp_path / "spool"}
    first = TrialLogger(store_server, experiment, parent, "repeat", "t1", {}, **args)
    for epoch in (1, 2):
        first.log_epoch(epoch, {"hpo.epoch": epoch, "loss": 1.0 / epoch})
    first.finish("FAILED", "the driver was killed")
    assert first.close(60).complete
    second = TrialLogger(store_server, experiment, parent, "repeat", "t1", {}, **args)  # restored from epoch 0
    for epoch in (1, 2, 3):
        second.log_epoch(epoch, {"hpo.epoch": epoch, "loss": 10.0 / epoch})
    second.log_metrics(2, {"hpo.pbt.learning_rate": 0.01})  # not an epoch's results: logged at a step it already has
    second.finish("FINISHED")
    assert second.close(60).complete
    c = MlflowClient(store_server)
    assert [(m.step, m.value) for m in c.get_metric_history(second.run_id, "loss")] == [(1, 1.0), (2, 0.5), (3, 10 / 3)]
    assert [m.step for m in c.get_metric_history(second.run_id, "hpo.pbt.learning_rate")] == [2]
