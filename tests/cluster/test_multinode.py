"""Campaigns on an emulated 3-node cluster (tests/cluster/conftest.py): trials whose ranks span nodes, every
bad cluster input refused before anything starts, a campaign whose trials all fail, and a node lost mid-trial.

The driver runs on node 1 (the head) with its campaigns directory and the embedded MLflow server's store in
node 1's own /tmp, and Tune's storage on the shared file system: anything that crossed nodes by a local path
would be missing, and a loopback tracking URI would reach the wrong node.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.cluster.conftest import HEAD, Emulated

pytestmark = pytest.mark.slow

CAMPAIGN = """\
name: {name}
workload:
  name: lhc_cnn
  data: {{path: {data}}}
  params: {{batch_size: 32, conv_blocks: 2, filters: 8, dense_units: 16}}
search:
  space:
    learning_rate: {{type: float, low: 1.0e-3, high: 3.0e-3, log: true}}
  sampler: {{name: random}}
  objective: {{metric: val_auc, mode: max}}
budget: {{trials: {trials}}}
trial: {{workers: 2, epochs: {epochs}, max_failures: 2}}
storage: {storage}
seed: 3
"""
CAMPAIGNS = "/tmp/campaigns"  # node 1's own /tmp
NODE_ENV = {"HPO_HOME": "/tmp/hpo"}  # the embedded MLflow server's store, on node 1 only


def write_campaign(emulated: Emulated, data: Path, name: str, *, trials: int = 2, epochs: int = 2,
                   storage: str | None = None) -> str:
    path = emulated.shared / f"{name}.yaml"
    path.write_text(CAMPAIGN.format(name=name, data=data, trials=trials, epochs=epochs,
                                    storage=storage or str(emulated.shared / "tune")))
    return path.name


def launch(emulated: Emulated, file: str, *args: str, env: dict[str, str] | None = None,
           timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return emulated.hpo(1, "launch", file, "--address", HEAD, "--no-progress", "--campaigns-dir", CAMPAIGNS, *args,
                        env={**NODE_ENV, **(env or {})}, timeout=timeout)


def mlflow_client(emulated: Emulated, name: str) -> tuple[Any, str, str]:
    from mlflow.tracking import MlflowClient

    tracking = emulated.campaign_file(1, CAMPAIGNS, name, "tracking.json")
    client = MlflowClient(tracking["uri"])
    return client, tracking["uri"], client.get_experiment_by_name(name).experiment_id


def trial_runs(client: Any, experiment: str) -> list[Any]:
    return [r for r in client.search_runs([experiment], max_results=100) if r.data.tags.get("hpo.role") == "trial"]


def refused(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    """Exit 2 with a last line 'error: ...' naming ``words``; returns that line."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-3000:])
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: "), proc.stderr[-3000:]
    for word in words:
        assert word in line, line
    return line


# --- bad input: one line, exit 2, nothing started -------------------------------------------------------


@pytest.mark.parametrize(("case", "args", "env", "words"), [
    ("unreachable", ["--address", "198.18.0.1:6399"], {}, ["cannot reach", "198.18.0.1:6399", "Connection refused"]),
    ("token", [], {"RAY_AUTH_TOKEN": "0" * 64}, ["refused this process", "RAY_AUTH_MODE=token", "auth_token"]),
    ("too-small", ["--set", "trial.workers=4"], {}, ["trial.workers × trial.cpus_per_worker", "has 3"]),
    ("strict-pack", ["--set", "trial.placement_strategy=STRICT_PACK"], {}, ["STRICT_PACK", "largest node holds 1"]),
    ("local-storage", ["--set", "storage=null"], {}, ["storage (default: the campaigns directory)", "/tmp/campaigns",
                                                      "do not see it", "s3://"]),
    ("loopback-tracking", ["--set", "tracking.uri=http://127.0.0.1:5000"], {}, ["loopback", "cannot reach"]),
    ("local-data", ["--set", "workload.data.path=/tmp/local-calo.h5"], {},
     ["workload.data.path", "/tmp/local-calo.h5", "not the same file on 2 of", "not found", "every node mounts"]),
])
def test_bad_cluster_input_is_refused_before_anything_starts(emulated: Emulated, shared_calo: Path, case: str,
                                                              args: list[str], env: dict[str, str], words: list[str]) -> None:
    name = f"bad-{case}"
    file = write_campaign(emulated, shared_calo, name)
    if case == "local-data":  # on the driver's node only: its /tmp is its own
        shutil.copyfile(shared_calo, emulated.node_tmp(1) / "local-calo.h5")
    if "--address" in args:  # replaces the head's address given by launch()
        proc = emulated.hpo(1, "launch", file, "--no-progress", "--campaigns-dir", CAMPAIGNS, *args, env=NODE_ENV, timeout=300)
    else:
        proc = launch(emulated, file, *args, env=env, timeout=300)
    refused(proc, *words)
    assert not (emulated.node_tmp(1) / "campaigns" / name).exists(), "a refused launch left a campaign behind"


# --- trials across nodes -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spanning(emulated: Emulated, shared_calo: Path) -> dict[str, Any]:
    """A 2-trial campaign, 2 ranks per trial on 1-CPU nodes: every trial spans two nodes."""
    file = write_campaign(emulated, shared_calo, "span", trials=2, epochs=2)
    started = time.time()
    proc = launch(emulated, file)
    return {"proc": proc, "seconds": time.time() - started}


def test_a_campaign_whose_ranks_span_nodes_finishes(emulated: Emulated, spanning: dict[str, Any]) -> None:
    proc = spanning["proc"]
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    assert "finished: 2 trials" in proc.stdout
    records = emulated.campaign_file(1, CAMPAIGNS, "span", "trials.json")
    assert [r["state"] for r in records.values()] == ["FINISHED", "FINISHED"], records
    state = emulated.campaign_file(1, CAMPAIGNS, "span", "state.json")
    assert state["tracking_uri"].startswith("http://198.18.0.1:"), state  # the embedded server on the head's address
    assert state["storage"] == str(emulated.shared / "tune" / "span")


def test_every_trials_ranks_ran_on_two_hosts_and_every_epoch_is_in_mlflow(emulated: Emulated,
                                                                         spanning: dict[str, Any]) -> None:
    assert spanning["proc"].returncode == 0, spanning["proc"].stderr[-3000:]
    client, _, experiment = mlflow_client(emulated, "span")
    runs = trial_runs(client, experiment)
    assert len(runs) == 2
    for run in runs:
        tags = run.data.tags
        hosts = tags["hpo.hosts"].split(",")
        assert len(hosts) == 2 and len(set(hosts)) == 2 and set(hosts) <= {"node1", "node2", "node3"}, tags
        for rank in (0, 1):
            host, address, interface, *_ = tags[f"hpo.rank.{rank}"].split()
            assert host == hosts[rank] and address == f"198.18.0.{host[-1]}", tags
            assert interface == ("eth0" if host == "node1" else f"ens{int(host[-1]) + 2}"), tags  # names differ
        assert tags["hpo.state"] == "FINISHED"
        for metric in ("train_loss", "val_auc", "hpo.epoch_time_s"):
            assert [m.step for m in client.get_metric_history(run.info.run_id, metric)] == [1, 2], metric
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"model", "plots", "checkpoints"} <= artifacts, artifacts  # sent as bytes from the ranks' nodes
        assert "roc.png" in {a.path.rsplit("/", 1)[-1] for a in client.list_artifacts(run.info.run_id, "plots")}


def test_the_best_model_is_promoted_and_loads_from_another_machine(emulated: Emulated, spanning: dict[str, Any]) -> None:
    import mlflow

    assert spanning["proc"].returncode == 0, spanning["proc"].stderr[-3000:]
    proc = emulated.hpo(1, "promote", "span", "--model", "span-cnn", "--campaigns-dir", CAMPAIGNS, env=NODE_ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "registered as span-cnn version 1" in proc.stdout
    _, uri, _ = mlflow_client(emulated, "span")
    mlflow.set_tracking_uri(uri)  # this test process is outside the cluster's nodes (the host, 198.18.0.254)
    try:
        model = mlflow.pyfunc.load_model("models:/span-cnn@champion")
    finally:
        mlflow.set_tracking_uri(None)
    prediction = np.asarray(model.predict(np.random.default_rng(0).random((3, 64, 64, 3), dtype=np.float32)))
    assert prediction.shape == (3, 1) and ((prediction >= 0) & (prediction <= 1)).all()


def test_a_campaign_whose_trials_all_fail_exits_1_with_the_ranks_error(emulated: Emulated, shared_calo: Path) -> None:
    file = write_campaign(emulated, shared_calo, "allfail", trials=2, epochs=1)
    proc = launch(emulated, file, "--set", "trial.nics=[ib0]", "--set", "trial.max_failures=0")
    assert proc.returncode == 1, (proc.stdout[-3000:], proc.stderr[-3000:])
    assert "failed: all 2 trials failed; first error:" in proc.stdout, proc.stdout[-3000:]
    records = emulated.campaign_file(1, CAMPAIGNS, "allfail", "trials.json")
    assert [r["state"] for r in records.values()] == ["FAILED", "FAILED"]
    for record in records.values():  # the rank's own words, where it ran: not Ray's boilerplate
        assert "rank " in record["error"] and "(198.18.0." in record["error"], record["error"]
        assert "trial.nics ['ib0']: none of these interfaces exists" in record["error"], record["error"]
    client, _, experiment = mlflow_client(emulated, "allfail")
    for run in trial_runs(client, experiment):
        assert run.data.tags["hpo.state"] == "FAILED"
        assert "trial.nics ['ib0']" in run.data.tags["hpo.error"], run.data.tags


# --- a node lost mid-trial (last: the cluster has one node fewer afterwards) --------------------------------


def test_zz_a_trial_survives_losing_a_node_and_resumes_from_its_checkpoint(emulated: Emulated, shared_calo: Path) -> None:
    epochs = 5
    file = write_campaign(emulated, shared_calo, "loss", trials=1, epochs=epochs)
    driver = subprocess.Popen(emulated.hpo_command(1, "launch", file, "--address", HEAD, "--no-progress",
                                                   "--campaigns-dir", CAMPAIGNS, env=NODE_ENV),
                              cwd=emulated.shared, env=emulated.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        victim = None
        while time.time() < deadline and driver.poll() is None:  # bounded: until epoch 1 is in and we know the hosts
            records = emulated.campaign_file(1, CAMPAIGNS, "loss", "trials.json") or {}
            if any(r.get("epoch", 0) >= 1 for r in records.values()):
                client, _, experiment = mlflow_client(emulated, "loss")
                runs = trial_runs(client, experiment)
                hosts = runs[0].data.tags.get("hpo.hosts", "") if runs else ""
                remote = [h for h in hosts.split(",") if h and h != "node1"]
                if remote:
                    victim = remote[0]
                    break
            time.sleep(0.5)
        assert victim is not None, "the trial never reported an epoch with its hosts"
        killed = emulated.kill_node(int(victim[-1]))
        assert killed > 0
        out, err = driver.communicate(timeout=600)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.communicate()
    assert driver.returncode == 0, (out[-3000:], err[-3000:])
    records = emulated.campaign_file(1, CAMPAIGNS, "loss", "trials.json")
    (record,) = records.values()
    assert record["state"] == "FINISHED" and record["epoch"] == epochs, record
    assert record.get("retries", 0) >= 1, record
    client, _, experiment = mlflow_client(emulated, "loss")
    (run,) = trial_runs(client, experiment)  # the same MLflow run, reattached by the retry
    assert run.data.tags["hpo.state"] == "FINISHED"
    assert victim not in run.data.tags["hpo.hosts"].split(","), run.data.tags  # it ended on the remaining nodes
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "hpo.epoch")]
    assert sorted(steps) == list(range(1, epochs + 1)), steps  # continued from its checkpoint: no epoch twice
