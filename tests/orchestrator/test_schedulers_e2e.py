"""The scheduler and sampler paths no other test runs for real: HyperBand, median stopping (through the Python
API), PBT and NSGA-II with two objectives. Each is a small real campaign (one Ray instance for the module, one
Horovod rank per trial, the session's MLflow server), and each must leave MLflow in order: one FINISHED parent
run, exactly one nested run per trial, and metric histories whose steps strictly increase.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.api import Campaign
from orchestrator.cli import main
from orchestrator.config import load_campaign
from orchestrator.runner import RunOutcome, launch
from orchestrator.state import CampaignDir, TrialState
from trainables.errors import HpoError

pytestmark = pytest.mark.slow

CAMPAIGN = """\
name: {name}
workload:
  name: lhc_cnn
  data: {{path: {data}, max_events: 600}}
  params: {{batch_size: 32, conv_blocks: 2, filters: 8, dense_units: 16}}
search:
  space: {space}
  sampler: {sampler}
  scheduler: {scheduler}
  objective: {objective}
budget: {{trials: 3}}
trial: {{workers: 1, epochs: {epochs}, cpus_per_worker: 0.5}}
tracking: {{uri: {uri}}}
seed: 3
"""

#: learning rate and dropout, searched
SPACE = "{learning_rate: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}, dropout: {type: float, low: 0.0, high: 0.2}}"
AUC = "{metric: val_auc, mode: max}"


def write_campaign(root: Path, name: str, data: Path, uri: str, *, space: str = SPACE, sampler: str = "{name: random}",
                   scheduler: str = "{name: fifo}", objective: str = AUC, epochs: int = 3) -> Path:
    """A campaign file of three small trials (half a CPU each, so that all three run at once on two cores)."""
    path = root / f"{name}.yaml"
    path.write_text(CAMPAIGN.format(name=name, data=data, uri=uri, space=space, sampler=sampler, scheduler=scheduler,
                                    objective=objective, epochs=epochs))
    return path


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The module's campaigns directory; the module's Ray instance goes at the end."""
    import ray

    yield tmp_path_factory.mktemp("campaigns")
    ray.shutdown()


def run_campaign(root: Path, path: Path) -> tuple[RunOutcome, CampaignDir]:
    spec = load_campaign(path)
    return launch(spec, campaigns_dir=root, progress=False), CampaignDir.of(spec.config.name, root)


def check_tracking(uri: str, name: str, cdir: CampaignDir) -> dict[str, Any]:
    """One FINISHED parent run, exactly one nested run per trial (in the trial's final state), and for every
    metric of every trial run a history whose steps strictly increase in the order they were logged, one per
    epoch. Returns the trial runs by trial id.

    A PBT trial may go back: an exploit continues it from a better trial's checkpoint, which asynchronous PBT
    takes from that trial's last perturbation, possibly epochs behind. Its history may then step back, but only
    to the epoch after one its ``hpo.pbt.exploit.EPOCH`` tags record, and strictly increases in between.
    """
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name(name).experiment_id
    runs = c.search_runs([exp], max_results=200)
    parents = [r for r in runs if r.data.tags.get("hpo.role") == "campaign"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED", [(r.info.run_id, r.info.status) for r in parents]
    trials = [r for r in runs if r.data.tags.get("hpo.role") == "trial"]
    records = cdir.trials()
    assert sorted(r.data.tags["hpo.trial_id"] for r in trials) == sorted(records)  # one each, none twice
    for run in trials:
        tid = run.data.tags["hpo.trial_id"]
        record = records[tid]
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert (run.data.tags["hpo.state"], run.info.status) == \
            (record["state"], {"FINISHED": "FINISHED", "STOPPED": "KILLED"}[record["state"]]), (tid, record["state"])
        exploits = {int(k.rsplit(".", 1)[1]) for k in run.data.tags if k.startswith("hpo.pbt.exploit.")}
        assert run.data.metrics, tid
        for key in run.data.metrics:
            history = sorted(c.get_metric_history(run.info.run_id, key), key=lambda m: (m.timestamp, m.step))
            steps = [m.step for m in history]
            if key.startswith("hpo.pbt."):
                assert set(steps) <= exploits, (tid, key, steps, exploits)
                continue
            back = [b for a, b in itertools.pairwise(steps) if b <= a]
            assert all(b - 1 in exploits for b in back), (tid, key, steps, exploits)
            if not exploits:
                assert steps == list(range(1, record["epoch"] + 1)) or not key.startswith(("val_", "train_")), \
                    (tid, key, steps)
        assert max(m.step for m in c.get_metric_history(run.info.run_id, "val_auc")) == record["epoch"]
    return {r.data.tags["hpo.trial_id"]: r for r in trials}


def assert_finished(outcome: RunOutcome, cdir: CampaignDir, states: set[str]) -> dict[str, dict[str, Any]]:
    assert outcome.status == "finished", outcome.message
    assert cdir.state()["status"] == "finished"
    records = cdir.trials()
    assert len(records) == 3
    assert {r["state"] for r in records.values()} <= states, records
    return records


# --- HyperBand -----------------------------------------------------------------------------------------------


def test_hyperband(root: Path, calo_file: Path, mlflow_server: str) -> None:
    path = write_campaign(root, "hb", calo_file, mlflow_server, scheduler="{name: hyperband, reduction_factor: 2}")
    outcome, cdir = run_campaign(root, path)
    records = assert_finished(outcome, cdir, {TrialState.FINISHED, TrialState.STOPPED})
    # synchronous brackets pause trials at their milestones and resume them from checkpoints: still one run each
    check_tracking(mlflow_server, "hb", cdir)
    assert max(r["epoch"] for r in records.values()) == 3


# --- median stopping, through the Python API -----------------------------------------------------------------


def test_median_stopping_through_the_python_api(root: Path, calo_file: Path, mlflow_server: str) -> None:
    path = write_campaign(root, "median", calo_file, mlflow_server)
    campaign = Campaign.from_yaml(
        path, overrides=["search.scheduler.name=median", "search.scheduler.grace_period=1",
                         "search.scheduler.min_samples_required=2"],
        campaigns_dir=root,
    )
    assert campaign.spec.config.search.scheduler.name == "median"
    outcome = campaign.run(progress=False)
    records = assert_finished(outcome, campaign.dir, {TrialState.FINISHED, TrialState.STOPPED})
    check_tracking(mlflow_server, "median", campaign.dir)

    best = campaign.best(2)
    scored = sorted(records.values(), key=lambda r: r["objectives"][0], reverse=True)
    assert [r["trial_id"] for r in best] == [r["trial_id"] for r in scored[:2]]
    assert best[0]["objectives"][0] >= best[1]["objectives"][0]
    assert set(best[0]["params"]) >= {"learning_rate", "dropout"}

    frame = campaign.dataframe()
    assert len(frame) == 3 and set(frame["trial_id"]) == set(records)
    assert {"state", "epochs", "param.learning_rate", "param.dropout", "objective.val_auc", "val_loss"} <= set(frame.columns)
    row = frame.set_index("trial_id").loc[best[0]["trial_id"]]
    assert row["objective.val_auc"] == best[0]["objectives"][0]
    assert row["param.learning_rate"] == best[0]["params"]["learning_rate"]
    assert row["state"] in ("FINISHED", "STOPPED") and row["epochs"] == records[best[0]["trial_id"]]["epoch"]

    status = campaign.status()
    assert status["status"] == "finished" and sum(status["counts"].values()) == 3 and status["budget"] == 3
    assert status["best"]["trial_id"] == best[0]["trial_id"]
    reopened = Campaign.open("median", campaigns_dir=root)
    assert reopened.best(1) == best[:1] and "status='finished'" in repr(reopened)
    with pytest.raises(HpoError, match=r"finished; use \.extend"):
        reopened.run(progress=False)


# --- PBT ---------------------------------------------------------------------------------------------------------


def test_pbt_perturbations_reach_mlflow(root: Path, calo_file: Path, mlflow_server: str) -> None:
    # three learning rates that order the trials the same way every epoch (1e-7 barely learns), all three
    # running at once: the worst is in the lower quantile at every perturbation and copies the best
    path = write_campaign(
        root, "pbt", calo_file, mlflow_server, epochs=4, sampler="grid",
        space="{learning_rate: {type: categorical, choices: [0.003, 0.0005, 1.0e-7]}}",
        scheduler="{name: pbt, perturbation_interval: 1, quantile_fraction: 0.5, resample_probability: 0.5}",
    )
    outcome, cdir = run_campaign(root, path)
    records = assert_finished(outcome, cdir, {TrialState.FINISHED})
    runs = check_tracking(mlflow_server, "pbt", cdir)

    c = MlflowClient(mlflow_server)
    exploited = {tid: run for tid, run in runs.items() if "hpo.pbt.exploited_from" in run.data.tags}
    assert exploited, {tid: r["params"] for tid, r in records.items()}
    for tid, run in exploited.items():
        donor, epoch = run.data.tags["hpo.pbt.exploited_from"].split()
        assert donor in records and donor != tid and 1 <= int(epoch) < 4
        exploit = json.loads(run.data.tags[f"hpo.pbt.exploit.{int(epoch):04d}"])
        assert exploit["from"] == donor and exploit["from_epoch"] == int(epoch)
        assert set(exploit["perturbed"]) <= {"learning_rate"}
        history = c.get_metric_history(run.info.run_id, "hpo.pbt.learning_rate")
        assert int(epoch) in [m.step for m in history]
        # the value in effect at the end is the trial's last configuration (Tune's, as trials.json records it)
        latest = max(history, key=lambda m: (m.timestamp, m.step))
        assert latest.step == int(epoch) and latest.value == pytest.approx(records[tid]["params"]["learning_rate"])
        # MLflow keeps the first value of a parameter: the run's params still say where the trial started
        assert "learning_rate" in run.data.params


# --- NSGA-II, two objectives -------------------------------------------------------------------------------


def _ranks(points: list[tuple[float, float]]) -> list[int]:
    """Pareto ranks of (val_auc max, val_loss min) points by the definition: one more than the highest rank
    of any point dominating it."""
    def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
        return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])

    ranks: dict[int, int] = {}

    def rank(i: int) -> int:
        if i not in ranks:
            ranks[i] = 1 + max((rank(j) for j in range(len(points)) if dominates(points[j], points[i])), default=0)
        return ranks[i]

    return [rank(i) for i in range(len(points))]


def test_nsga2_two_objectives(root: Path, calo_file: Path, mlflow_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_campaign(root, "nsga", calo_file, mlflow_server, epochs=2, sampler="{name: nsga2, population_size: 2}",
                          objective=f"[{AUC}, {{metric: val_loss, mode: min}}]")
    outcome, cdir = run_campaign(root, path)
    records = assert_finished(outcome, cdir, {TrialState.FINISHED})
    runs = check_tracking(mlflow_server, "nsga", cdir)
    assert "Pareto front of val_auc, val_loss" in outcome.message

    c = MlflowClient(mlflow_server)
    parent = c.search_runs([c.get_experiment_by_name("nsga").experiment_id], "tags.`hpo.role` = 'campaign'")[0]
    assert "summary/pareto_front.png" in {a.path for a in c.list_artifacts(parent.info.run_id, "summary")}

    # the API ranks trials.json's objectives by non-domination
    expected = _ranks([(r["objectives"][0], r["objectives"][1]) for r in records.values()])
    by_id = dict(zip(records, expected, strict=True))
    best = Campaign.open("nsga", campaigns_dir=root).best(3)
    assert [(r["trial_id"], r["pareto_rank"]) for r in best] == sorted(
        ((tid, by_id[tid]) for tid in records), key=lambda t: (t[1], -records[t[0]]["objectives"][0]))

    # `hpo best` ranks MLflow's values the same way, and shows the rank
    points = {tid: (run.data.metrics["val_auc"], run.data.metrics["val_loss"]) for tid, run in runs.items()}
    mlflow_ranks = dict(zip(points, _ranks(list(points.values())), strict=True))
    order = sorted(points, key=lambda tid: (mlflow_ranks[tid], -points[tid][0]))
    with pytest.raises(SystemExit) as info:
        main(["best", "nsga", "--campaigns-dir", str(root), "--k", "3"])
    out = capsys.readouterr().out
    assert info.value.code in (0, None), out
    assert "Pareto rank" in out and "val_loss" in out
    header = next(line for line in out.splitlines() if "┃" in line and "Pareto rank" in line)
    assert [cell.strip() for cell in header.split("┃")[1:4]] == ["#", "Pareto rank", "trial"], out
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in out.splitlines() if line.count("│") > 3]
    shown = [(row[2], int(row[1])) for row in rows if row[2] in points]
    assert shown == [(tid, mlflow_ranks[tid]) for tid in order], out
