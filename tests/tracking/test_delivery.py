"""Tracking never kills a trial: the server dies mid-trial, comes back, and every metric point arrives."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tracking.client import CampaignTracker, TrialLogger
from tracking.server import free_port, healthy, start_server, stop_group

pytestmark = pytest.mark.slow


def test_server_down_mid_trial_then_back(tmp_path: Path) -> None:
    port = free_port()
    server = start_server(directory=tmp_path, port=port)
    tracker = CampaignTracker(server.uri, "flap", "flap", uid="u1")
    config = tmp_path / "campaign.yaml"
    config.write_text("name: flap\n")
    parent = tracker.start_campaign(config_file=config, resolved={"name": "flap"}, search_space={}, objectives=[
        {"metric": "loss", "mode": "min"}], data_files=[str(config)])
    logger = TrialLogger(server.uri, tracker.experiment, parent, "flap", "t1", {"lr": 0.1}, retry_s=0.5, uid="u1", max_retry_s=2.0)
    for epoch in (1, 2):
        logger.log_epoch(epoch, {"loss": 1.0 / epoch, "acc": 0.5 + epoch / 10})
    deadline = time.time() + 60
    while logger.report.delivered < 3 and time.time() < deadline:  # run creation + 2 batches
        time.sleep(0.2)
    stop_group(server.pid)
    assert not healthy(server.uri)
    started = time.perf_counter()
    for epoch in (3, 4, 5):  # the trial goes on while the server is down; logging does not block it
        logger.log_epoch(epoch, {"loss": 1.0 / epoch, "acc": 0.5 + epoch / 10})
    logger.finish("FINISHED")
    assert time.perf_counter() - started < 0.5
    time.sleep(2)
    server = start_server(directory=tmp_path, port=port)  # same port, same store
    report = logger.close(timeout=120)
    assert report.complete, report
    assert report.errors  # the outage was noticed and reported
    c = MlflowClient(server.uri)
    run = c.get_run(logger.run_id)
    assert run.info.status == "FINISHED"
    for metric in ("loss", "acc"):
        assert sorted(m.step for m in c.get_metric_history(logger.run_id, metric)) == [1, 2, 3, 4, 5]
    # a retried trial reattaches to the same run instead of creating another
    again = TrialLogger(server.uri, tracker.experiment, parent, "flap", "t1", {"lr": 0.1}, uid="u1")
    again.log_epoch(6, {"loss": 1 / 6})
    assert again.close(timeout=60).complete
    assert again.run_id == logger.run_id
    assert len(c.search_runs([tracker.experiment], "tags.`hpo.role` = 'trial'")) == 1
    stop_group(server.pid)
