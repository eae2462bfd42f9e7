"""Faults injected into real campaigns, one per test; each must keep the promise :func:`check_invariants` checks.

Slow (each is a whole campaign, about a minute or two on 2 cores) and run in CI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from tests.chaos.harness import ChaosCampaign, check_invariants
from tracking.server import ServerInfo, free_port, start_server, stop_group

pytestmark = pytest.mark.slow


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Callable[[], ServerInfo]]:
    """``own_server()``: (re)start this test's own MLflow server, always on the same port and store."""
    port = free_port()
    started: list[ServerInfo] = []

    def start() -> ServerInfo:
        started.append(start_server(directory=tmp_path / "mlflow", port=port))
        return started[-1]

    yield start
    for info in started:
        stop_group(info.pid)


def run_errors(uri: str, name: str) -> list[str]:
    """Every attempt error MLflow recorded on the campaign's trial runs."""
    c = MlflowClient(uri)
    experiment = c.get_experiment_by_name(name).experiment_id
    errors: list[str] = []
    for run in c.search_runs([experiment], "tags.`hpo.role` = 'trial'"):
        errors += json.loads(run.data.tags.get("hpo.attempt_errors", "[]"))
        errors += [run.data.tags["hpo.error"]] if "hpo.error" in run.data.tags else []
    return errors


def test_a_killed_rank_resumes_from_its_checkpoint(chaos_campaign: Any, mlflow_server: str) -> None:
    campaign: ChaosCampaign = chaos_campaign("rankkill", mlflow_server)
    campaign.launch()
    trial = campaign.running_epoch(1)
    time.sleep(0.5)  # into the next epoch
    victim = campaign.ranks()[-1]
    victim.send_signal(signal.SIGKILL)
    assert campaign.wait() == 0, campaign.output()[-4000:]
    record = campaign.records()[trial]
    assert record["state"] == "FINISHED" and record["retries"] >= 1, record
    check_invariants(mlflow_server, campaign, epochs=3)  # steps 1, 2, 3 once each: the retry did not restart at 0
    assert any("died" in e for e in run_errors(mlflow_server, campaign.name)), run_errors(mlflow_server, campaign.name)


def test_a_killed_trainable_actor_is_retried(chaos_campaign: Any, mlflow_server: str) -> None:
    campaign: ChaosCampaign = chaos_campaign("actorkill", mlflow_server)
    campaign.launch()
    trial = campaign.running_epoch(1)
    campaign.trainable_actor().kill()
    assert campaign.wait() == 0, campaign.output()[-4000:]
    assert campaign.records()[trial]["retries"] >= 1
    check_invariants(mlflow_server, campaign, epochs=3)


def test_a_hung_rank_misses_the_epoch_deadline_and_the_retry_proceeds(chaos_campaign: Any, mlflow_server: str) -> None:
    campaign: ChaosCampaign = chaos_campaign("hang", mlflow_server, epoch_timeout="20s", trials=1)
    campaign.launch()
    trial = campaign.running_epoch(1)
    victim = campaign.ranks()[-1]
    victim.send_signal(signal.SIGSTOP)
    assert campaign.wait() == 0, campaign.output()[-4000:]
    assert campaign.records()[trial]["state"] == "FINISHED"
    check_invariants(mlflow_server, campaign, epochs=3)
    errors = run_errors(mlflow_server, campaign.name)
    assert any("within 20 s (trial.epoch_timeout)" in e and "stopped" in e and f"pid {victim.pid}" in e
               for e in errors), errors
    assert not victim.is_running() or victim.status() == "zombie"  # the hung rank was killed, not left behind


def test_a_killed_driver_then_hpo_resume(chaos_campaign: Any, mlflow_server: str) -> None:
    campaign: ChaosCampaign = chaos_campaign("driverkill", mlflow_server, trials=3, workers=1)
    campaign.launch()
    campaign.until("a finished trial and a running one", lambda r: any(x["state"] == "FINISHED" for x in r.values())
                   and any(x["state"] == "RUNNING" and x.get("epoch", 0) >= 1 for x in r.values()))
    campaign.kill_driver()
    before = campaign.records()
    finished = {t: r["ended"] for t, r in before.items() if r["state"] == "FINISHED"}
    resumed = campaign.resume()
    assert campaign.wait() == 0, campaign.output()[-4000:]
    assert resumed.returncode == 0
    after = campaign.records()
    assert all(after[t]["ended"] == ended for t, ended in finished.items())  # finished trials kept, not re-run
    assert sum(r["state"] == "FINISHED" for r in after.values()) == 3  # the budget, in finished trials
    # a trial started after Tune's last snapshot of the run cannot be resumed: it is said so, not left RUNNING
    assert all(r["state"] == "FINISHED" or r["error"].startswith("lost: ") for r in after.values()), after
    check_invariants(mlflow_server, campaign, epochs=3)
    assert "resume of campaign 'driverkill'" in (campaign.root / "driverkill" / "driver.log").read_text()


def test_the_tracking_server_killed_for_30_s_mid_campaign(chaos_campaign: Any, own_server: Any) -> None:
    server = own_server()
    campaign: ChaosCampaign = chaos_campaign("flap", server.uri, workers=1, trials=3, epoch_sleep=8)
    campaign.launch()
    campaign.running_epoch(1)
    stop_group(server.pid)
    time.sleep(30)  # the campaign goes on; its tracking is journaled and retried
    server = own_server()
    assert campaign.driver is not None and campaign.driver.poll() is None, "the campaign ended during the outage"
    assert campaign.wait() == 0, campaign.output()[-4000:]
    check_invariants(server.uri, campaign, epochs=3)


def test_tracking_unreachable_at_launch_starts_nothing(chaos_campaign: Any) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    campaign: ChaosCampaign = chaos_campaign("nolaunch", dead)
    campaign.launch()
    assert campaign.wait(120) == 2
    assert "does not answer" in campaign.output() and "Traceback" not in campaign.output()
    assert not (campaign.root / "nolaunch").exists()


def test_tracking_unreachable_at_the_end_then_hpo_sync(chaos_campaign: Any, own_server: Any) -> None:
    server = own_server()
    campaign: ChaosCampaign = chaos_campaign("lateloss", server.uri, workers=1, trials=2, epochs=2)
    campaign.launch()
    campaign.running_epoch(1)
    stop_group(server.pid)  # and it stays down until the campaign has ended
    assert campaign.wait() == 0, campaign.output()[-4000:]
    out = campaign.output()
    assert "have not reached MLflow yet" in out and "hpo sync lateloss" in out, out[-3000:]
    assert all(r["state"] == "FINISHED" for r in campaign.records().values())
    server = own_server()
    synced = campaign.hpo("sync", "lateloss")
    assert synced.returncode == 0, synced.stdout + synced.stderr
    check_invariants(server.uri, campaign, epochs=2)


def test_a_workload_that_raises_fails_its_trial_and_the_campaign_goes_on(chaos_campaign: Any, mlflow_server: str) -> None:
    campaign: ChaosCampaign = chaos_campaign(
        "userbug", mlflow_server, workers=1, trials=2, retries=1, sampler="grid", fail=None,
        space="    fail_at_epoch: {type: categorical, choices: [2, 0]}\n",
    )
    campaign.launch()
    assert campaign.wait() == 0, campaign.output()[-4000:]
    states = sorted(r["state"] for r in campaign.records().values())
    assert states == ["FAILED", "FINISHED"], campaign.records()
    failed = next(r for r in campaign.records().values() if r["state"] == "FAILED")
    assert "injected fault" in failed["error"] and "epoch 2" in failed["error"]
    check_invariants(mlflow_server, campaign, epochs=3)


def test_every_trial_failing_exits_1_with_the_first_error(chaos_campaign: Any, mlflow_server: str) -> None:
    campaign: ChaosCampaign = chaos_campaign("allbugs", mlflow_server, workers=1, trials=2, retries=0, fail=2, epochs=2)
    campaign.launch()
    assert campaign.wait() == 1, campaign.output()[-4000:]
    out = campaign.output()
    assert "all 2 trials failed; first error: rank 0 on " in out and "injected fault" in out, out[-3000:]
    check_invariants(mlflow_server, campaign, epochs=2, parent_status="FAILED")  # the campaign failed, and says so


def test_a_data_file_replaced_mid_campaign_stops_new_trials(tmp_path: Path, calo_file: Path, mlflow_server: str) -> None:
    """The data file is replaced while the first trial trains: that trial finishes as it was, the next one fails at
    its start naming the file and both checksums, and the campaign stops there (no third trial), exit 1."""
    from tests.chaos.harness import kill_session, new_campaign
    from trainables.data.generate import write_calo

    data = tmp_path / "calo.h5"
    shutil.copyfile(calo_file, data)  # the session's file stays as it is
    campaign = new_campaign(tmp_path, "swapped", mlflow_server, data, workers=1, trials=3, epochs=2, retries=1,
                            fail=None, epoch_sleep=2)
    campaign.launch()
    try:
        first = campaign.running_epoch(1)
        write_calo(tmp_path / "other.h5", events=1200, seed=99, progress=False)
        os.replace(tmp_path / "other.h5", data)  # as a copy that lands under the same name would
        assert campaign.wait() == 1, campaign.output()[-4000:]
    finally:
        if campaign.driver is not None and campaign.driver.poll() is None:
            kill_session(campaign.driver.pid)
    out = campaign.output()
    records = campaign.records()
    assert records[first]["state"] == "FINISHED" and records[first]["epoch"] == 2
    assert len(records) == 2, records  # the third trial never started
    failed = next(r for t, r in records.items() if t != first)
    assert failed["state"] == "FAILED", failed
    reason = re.fullmatch(rf"{re.escape(str(data))}: replaced since the campaign started: SHA-256 ([0-9a-f]{{64}}) now, "
                          r"([0-9a-f]{64}) at launch; put the original file back, or start a new campaign for the new data",
                          failed["error"])
    assert reason and reason.group(1) != reason.group(2), failed["error"]
    state = json.loads((campaign.root / "swapped" / "state.json").read_text())
    assert state["status"] == "failed" and state["message"] == f"campaign 'swapped' stopped, no new trials: {failed['error']}"
    flat = " ".join(out.split())  # the printed table and last line wrap at the terminal's width
    assert "campaign 'swapped' stopped, no new trials:" in flat and reason.group(2) in out, out[-3000:]
    c = MlflowClient(mlflow_server)
    experiment = c.get_experiment_by_name("swapped").experiment_id
    [run] = c.search_runs([experiment], f"tags.`hpo.trial_id` = '{first}'")
    assert run.info.status == "FINISHED" and len(c.get_metric_history(run.info.run_id, "val_auc")) == 2
