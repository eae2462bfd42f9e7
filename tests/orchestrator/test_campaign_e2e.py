"""A real campaign on local Ray: 4 trials of 2 Horovod ranks, ASHA, a conditional parameter, tracked in
a real MLflow server; then the registry: best, promote (twice), --require, load and predict.

The whole module runs twice: with the server's store on SQLite (the embedded default) and on PostgreSQL
(a group's server), each a real database server the session started."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from orchestrator.cli import main
from orchestrator.config import load_campaign
from orchestrator.runner import launch
from orchestrator.state import CampaignDir

pytestmark = pytest.mark.slow

CAMPAIGN = """\
name: e2e
workload:
  name: lhc_cnn
  data: {{path: {data}}}
  params: {{batch_size: 32, conv_blocks: 2, filters: 8, dense_units: 16}}
search:
  space:
    learning_rate: {{type: categorical, choices: [0.002, 1.0e-7]}}
    optimizer: {{type: categorical, choices: [adam, sgd]}}
    momentum: {{type: float, low: 0.5, high: 0.9, when: {{optimizer: sgd}}}}
  sampler: {{name: random}}
  scheduler: {{name: asha, grace_period: 1, reduction_factor: 2}}
  objective: {{metric: val_auc, mode: max}}
budget: {{trials: 4}}
trial: {{workers: 2, epochs: 3}}
tracking: {{uri: {uri}}}
seed: 11
"""


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory, calo_file: Path, store_server: str) -> Iterator[dict[str, Any]]:
    import ray

    root = tmp_path_factory.mktemp("campaigns")
    path = root / "e2e.yaml"
    path.write_text(CAMPAIGN.format(data=calo_file, uri=store_server))
    spec = load_campaign(path)
    outcome = launch(spec, campaigns_dir=root, progress=False)
    yield {"outcome": outcome, "dir": CampaignDir.of("e2e", root), "root": root, "uri": store_server, "spec": spec}
    ray.shutdown()


def test_campaign_finishes_with_early_stopping(campaign: dict[str, Any]) -> None:
    outcome = campaign["outcome"]
    assert outcome.status == "finished", outcome.message
    records = campaign["dir"].trials()
    assert len(records) == 4
    states = [r["state"] for r in records.values()]
    assert set(states) <= {"FINISHED", "STOPPED"} and "STOPPED" in states, states
    assert "FINISHED" in states
    assert campaign["dir"].state()["status"] == "finished"


def test_conditional_parameter_only_where_condition_holds(campaign: dict[str, Any]) -> None:
    records = campaign["dir"].trials().values()
    for r in records:
        assert ("momentum" in r["params"]) == (r["params"]["optimizer"] == "sgd"), r["params"]


def test_mlflow_parent_and_nested_runs(campaign: dict[str, Any]) -> None:
    from mlflow.tracking import MlflowClient

    c = MlflowClient(campaign["uri"])
    exp = c.get_experiment_by_name("e2e").experiment_id
    runs = c.search_runs([exp], max_results=100)
    parents = [r for r in runs if r.data.tags.get("hpo.role") == "campaign"]
    trials = [r for r in runs if r.data.tags.get("hpo.role") == "trial"]
    assert len(parents) == 1 and len(trials) == 4
    parent = parents[0].info.run_id
    records = campaign["dir"].trials()
    assert {r.data.tags["hpo.trial_id"] for r in trials} == set(records)
    for run in trials:
        assert run.data.tags["mlflow.parentRunId"] == parent
        epochs = records[run.data.tags["hpo.trial_id"]]["epoch"]
        for metric in ("train_loss", "val_loss", "val_auc", "hpo.epoch_time_s"):
            history = c.get_metric_history(run.info.run_id, metric)
            assert [m.step for m in history] == list(range(1, epochs + 1)), (metric, history)  # each step once
        params = run.data.params
        assert params["hpo.workers"] == "2" and "learning_rate" in params and "batch_size" in params
        assert ("momentum" in params) == (params["optimizer"] == "sgd")
        state = run.data.tags["hpo.state"]
        assert state == records[run.data.tags["hpo.trial_id"]]["state"]
        if state == "FINISHED":
            assert {a.path for a in c.list_artifacts(run.info.run_id)} >= {"model", "plots"}
        # finished and early-stopped trials alike: the state of their last epoch, resumable
        last = f"checkpoints/epoch-{epochs:04d}"
        assert last in {a.path for a in c.list_artifacts(run.info.run_id, "checkpoints")}, (state, epochs)
        assert {a.path.rsplit("/", 1)[-1] for a in c.list_artifacts(run.info.run_id, last)} >= {"hpo_trial.txt"}
    artifacts = {a.path for a in c.list_artifacts(parent)}
    assert {"campaign.yaml", "search_space.json", "environment.json", "summary.json", "summary"} <= artifacts


def test_run_names_and_the_campaigns_own_metrics(campaign: dict[str, Any]) -> None:
    """Trial runs are named by number and searched values; the parent run gets the campaign's metrics at step =
    trials ended, so that campaigns compare in MLflow's chart view."""
    from mlflow.tracking import MlflowClient

    c = MlflowClient(campaign["uri"])
    exp = c.get_experiment_by_name("e2e").experiment_id
    runs = c.search_runs([exp], max_results=100)
    trials = [r for r in runs if r.data.tags.get("hpo.role") == "trial"]
    names = sorted(r.info.run_name for r in trials)
    assert [n.split()[0] for n in names] == ["#1", "#2", "#3", "#4"], names
    for run in trials:
        params = run.data.params
        assert f"learning_rate={float(params['learning_rate']):.2g}" in run.info.run_name, run.info.run_name
        assert f"optimizer={params['optimizer']}" in run.info.run_name and "batch_size" not in run.info.run_name
    parent = next(r for r in runs if r.data.tags.get("hpo.role") == "campaign")
    records = campaign["dir"].trials()
    best = max(r["objectives"][0] for r in records.values())
    assert parent.data.metrics["val_auc"] == pytest.approx(best) == parent.data.metrics["hpo.best.val_auc"]
    ended = {state: [m.step for m in c.get_metric_history(parent.info.run_id, f"hpo.trials.{state}")]
             for state in ("finished", "stopped", "failed")}
    assert ended["finished"] == ended["stopped"] == ended["failed"] == [1, 2, 3, 4], ended  # one point per trial ended
    last = {state: parent.data.metrics[f"hpo.trials.{state}"] for state in ("finished", "stopped", "failed")}
    states = [r["state"] for r in records.values()]
    assert last == {"finished": states.count("FINISHED"), "stopped": states.count("STOPPED"), "failed": 0}
    assert parent.data.metrics["hpo.core_hours"] > 0
    assert campaign["dir"].state()["tracked_ended"] == 4


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def test_best_promote_twice_require_and_load(campaign: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    import mlflow.pyfunc
    from mlflow.tracking import MlflowClient

    root = str(campaign["root"])
    code, out, err = run_cli(["best", "e2e", "--campaigns-dir", root, "--k", "2"], capsys)
    assert code == 0, err
    best = campaign["outcome"].best[0]["trial_id"]
    assert best in out
    code, _, err = run_cli(["promote", "e2e", "--model", "e2e-cnn", "--campaigns-dir", root, "--require", "val_auc>=1.5"], capsys)
    assert code == 2 and "not promoted" in err and "val_auc >= 1.5" in err and len(err.strip().splitlines()) == 1
    c = MlflowClient(campaign["uri"])
    assert not c.search_registered_models("name = 'e2e-cnn'")
    for expected in ("registered as e2e-cnn version 1", "already registered as e2e-cnn version 1"):
        code, out, err = run_cli(["promote", "e2e", "--model", "e2e-cnn", "--campaigns-dir", root, "--require", "val_auc>=0.5"], capsys)
        assert code == 0, err
        assert expected in out
    versions = c.search_model_versions("name = 'e2e-cnn'")
    assert len(versions) == 1
    tags = versions[0].tags
    assert tags["hpo.campaign"] == "e2e" and "val_auc=" in tags["hpo.objective"]
    assert any(k.startswith("hpo.data.") and k.endswith(".sha256") for k in tags)
    assert c.get_model_version_by_alias("e2e-cnn", "champion").version == versions[0].version
    mlflow.set_tracking_uri(campaign["uri"])
    try:
        model = mlflow.pyfunc.load_model("models:/e2e-cnn@champion")
    finally:  # MLflow keeps it in $MLFLOW_TRACKING_URI too, where the next store's campaign would find it
        mlflow.set_tracking_uri(None)
    example = np.random.default_rng(0).random((3, 64, 64, 3), dtype=np.float32)
    prediction = np.asarray(model.predict(example))
    assert prediction.shape == (3, 1) and ((prediction >= 0) & (prediction <= 1)).all()


def test_status_and_list_show_the_campaign(campaign: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    root = str(campaign["root"])
    code, out, _ = run_cli(["status", "e2e", "--campaigns-dir", root], capsys)
    assert code == 0 and "finished" in out and "learning_rate" in out
    code, out, _ = run_cli(["list", "--campaigns-dir", root], capsys)
    assert code == 0 and "e2e" in out and "4/4" in out


def test_launching_an_existing_campaign_is_refused(campaign: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    spec_file = campaign["root"] / "e2e.yaml"
    code, _, err = run_cli(["launch", str(spec_file), "--campaigns-dir", str(campaign["root"]), "--no-progress"], capsys)
    assert code == 2 and "already exists" in err and "hpo extend e2e" in err
