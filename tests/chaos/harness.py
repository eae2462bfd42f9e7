"""Faults injected into real campaigns: the harness the chaos tests and ``benchmarks/chaos.py`` share.

A campaign here is real: ``hpo launch`` in its own process (and session), a local Ray, Horovod ranks on Gloo,
an ``mlflow server`` subprocess, the generated calorimeter file. The workload is ``chaosfaults.workload``
(lhc_cnn plus a fault a campaign can ask for), found on ``PYTHONPATH`` as a user's own workload is.
:func:`measure` counts what a fault cost; :func:`check_invariants` is the promise every fault must keep.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

CAMPAIGN = """\
name: {name}
workload:
  name: chaosfaults.workload
  data: {{path: {data}}}
  params: {{batch_size: 32, conv_blocks: 1, filters: 4, dense_units: 8, epoch_sleep: {sleep}{fail}}}
search:
  space:
{space}  sampler: {{name: {sampler}}}
  objective: {{metric: val_auc, mode: max}}
budget: {{trials: {trials}, max_consecutive_failures: 5}}
trial: {{workers: {workers}, epochs: {epochs}, max_failures: {retries}{timeout}}}
tracking: {{uri: {uri}}}
concurrency: 1
seed: {seed}
"""


@dataclass
class ChaosCampaign:
    """One campaign of the fault matrix, driven through the CLI as a user (or a batch job) drives it."""

    name: str
    root: Path  # the campaigns directory
    spec: Path
    chaos: Path  # where the workload's ranks leave their pids
    env: dict[str, str]
    log: Path
    driver: subprocess.Popen[str] | None = None
    events: list[str] = field(default_factory=list)

    # --- running -----------------------------------------------------------------------------------------

    def launch(self) -> subprocess.Popen[str]:
        """``hpo launch`` in its own session (killing the session kills the driver and the Ray it started)."""
        self.driver = self._start("launch", str(self.spec), "--no-progress")
        return self.driver

    def resume(self) -> subprocess.Popen[str]:
        """``hpo resume`` in its own session."""
        self.driver = self._start("resume", self.name, "--no-progress")
        return self.driver

    def _start(self, *args: str) -> subprocess.Popen[str]:
        out = self.log.open("a")
        out.write(f"\n$ hpo {' '.join(args)}\n")
        out.flush()
        return subprocess.Popen([sys.executable, "-m", "orchestrator.cli", *args], stdout=out, stderr=subprocess.STDOUT,
                                text=True, env=self.env, cwd=ROOT, start_new_session=True)

    def hpo(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Another ``hpo`` command, run to its end."""
        return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], capture_output=True, text=True,
                              env=self.env, cwd=ROOT, timeout=timeout)

    def wait(self, timeout: float = 600) -> int:
        """The driver's exit status (it is killed, with its session, when it overruns ``timeout``)."""
        assert self.driver is not None
        try:
            return self.driver.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_driver()
            raise AssertionError(f"the driver ran past {timeout:g} s:\n{self.output()[-4000:]}") from None

    def kill_driver(self) -> None:
        """SIGKILL the driver's whole session (driver, and the local Ray with its workers)."""
        assert self.driver is not None
        kill_session(self.driver.pid)
        self.driver.wait(timeout=60)

    def output(self) -> str:
        """Everything the campaign's commands printed."""
        return self.log.read_text(errors="replace")

    # --- watching ----------------------------------------------------------------------------------------

    def records(self) -> dict[str, dict[str, Any]]:
        """trials.json (empty while it does not exist)."""
        try:
            return dict(json.loads((self.root / self.name / "trials.json").read_text()))
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def until(self, what: str, predicate: Callable[[dict[str, dict[str, Any]]], bool], timeout: float = 300) -> None:
        """Wait (bounded) until ``predicate(records)`` holds; fail naming ``what`` otherwise."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if predicate(self.records()):
                self.events.append(f"{time.strftime('%H:%M:%S')} {what}")
                return
            if self.driver is not None and self.driver.poll() is not None:
                raise AssertionError(f"the driver exited ({self.driver.returncode}) before {what}:\n{self.output()[-4000:]}")
            time.sleep(0.25)
        raise AssertionError(f"no {what} within {timeout:g} s:\n{self.output()[-4000:]}")

    def running_epoch(self, epoch: int, timeout: float = 300) -> str:
        """Wait until a trial has reported ``epoch`` and runs on; returns its id."""
        found: list[str] = []

        def check(records: dict[str, dict[str, Any]]) -> bool:
            found[:] = [t for t, r in records.items() if r.get("state") == "RUNNING" and r.get("epoch", 0) >= epoch]
            return bool(found)

        self.until(f"a trial running past epoch {epoch}", check, timeout)
        return found[0]

    def ranks(self) -> list[psutil.Process]:
        """The live Horovod ranks of this campaign (they record their pids as they set a trial up)."""
        alive = []
        for path in sorted((self.chaos / "ranks").glob("*")):
            try:
                proc = psutil.Process(int(path.name))
                if proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
            except psutil.NoSuchProcess:
                continue
        return alive

    def trainable_actor(self) -> psutil.Process:
        """The process of the trial's trainable actor (Ray titles it ``ray::ResourceTrainable.train``: Tune's wrapper
        of our ``HorovodTrainable`` with its resources)."""
        assert self.driver is not None
        session = os.getsid(self.driver.pid)
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = " ".join(proc.info["cmdline"] or [])
            try:
                if cmdline.startswith("ray::") and "Trainable" in cmdline.split(".")[0] and os.getsid(proc.pid) == session:
                    return proc
            except ProcessLookupError:
                continue
        titles = sorted({" ".join(p.info["cmdline"] or [])[:60] for p in psutil.process_iter(["cmdline"])
                         if (p.info["cmdline"] or [""])[0].startswith("ray::")})
        raise AssertionError(f"no trainable actor process found among {titles}")


def kill_session(sid: int) -> None:
    """SIGKILL every process of session ``sid`` (what a batch system does to a job)."""
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == sid:
                proc.send_signal(signal.SIGKILL)
        except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
            continue


def new_campaign(directory: Path, name: str, uri: str, data: Path, *, trials: int = 2, workers: int = 2,
                 epochs: int = 3, retries: int = 2, fail: int | None = 0, epoch_timeout: str | None = None,
                 sampler: str = "random", space: str = "    learning_rate: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}\n",
                 seed: int = 3, epoch_sleep: float = 0) -> ChaosCampaign:
    """A campaign file under ``directory`` and the environment its commands run in (campaigns directory, chaos
    directory, PYTHONPATH with the workload)."""
    spec = directory / f"{name}.yaml"
    spec.write_text(CAMPAIGN.format(
        name=name, data=data, uri=uri, trials=trials, workers=workers, epochs=epochs, retries=retries,
        fail="" if fail is None else f", fail_at_epoch: {fail}",
        timeout=f", epoch_timeout: {epoch_timeout}" if epoch_timeout else "", sampler=sampler, space=space, seed=seed,
        sleep=epoch_sleep,
    ))
    chaos = directory / f"{name}-chaos"
    chaos.mkdir()
    env = {**os.environ, "HPO_CAMPAIGNS_DIR": str(directory / "campaigns"), "HPO_CHAOS_DIR": str(chaos),
           "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "PYTHONUNBUFFERED": "1", "HPO_HOME": str(directory / "hpo-home")}
    env.pop("MLFLOW_TRACKING_URI", None)
    return ChaosCampaign(name, directory / "campaigns", spec, chaos, env, directory / f"{name}.log")


#: What :func:`measure` counts that must be zero after any fault.
LOSSES = ("finished_trials_lost", "runs_missing", "runs_duplicated", "runs_in_wrong_state", "parent_runs_not_finished",
          "metric_points_lost", "metric_points_duplicated", "metric_steps_out_of_order", "operations_held")


def measure(uri: str, campaign: ChaosCampaign, *, epochs: int, parent_status: str = "FINISHED") -> dict[str, Any]:
    """What a fault cost the campaign, as counts (each of :data:`LOSSES` must be 0):

    - a finished trial is lost when its run is missing, or lacks one of its epochs' ``val_auc`` points (every
      such missing point also counts in ``metric_points_lost``);
    - one MLflow run per trial: more is a duplicate, fewer a missing run; its status must match the trial's
      recorded state; one parent run, in ``parent_status`` (FAILED for a campaign whose every trial failed);
    - every metric's steps, as MLflow returns them, strictly increasing (compared as a list, not a set);
    - nothing left in the campaign's spool.
    """
    from mlflow.tracking import MlflowClient

    records = campaign.records()
    c = MlflowClient(uri)
    experiment = c.get_experiment_by_name(campaign.name)
    out: dict[str, Any] = dict.fromkeys(LOSSES, 0)
    out.update(trials=len(records), finished=sum(r.get("state") == "FINISHED" for r in records.values()),
               retries=sum(r.get("retries", 0) for r in records.values()), runs=0, metric_points=0)
    if experiment is None:
        out["runs_missing"] = len(records)
        out["parent_runs_not_finished"] = 1
        return out
    parents = c.search_runs([experiment.experiment_id], "tags.`hpo.role` = 'campaign'")
    out["parent_runs_not_finished"] = abs(len(parents) - 1) + sum(p.info.status != parent_status for p in parents)
    runs = c.search_runs([experiment.experiment_id], "tags.`hpo.role` = 'trial'", max_results=1000)
    out["runs"] = len(runs)
    per_trial = Counter(r.data.tags.get("hpo.trial_id") for r in runs)
    out["runs_duplicated"] = sum(n - 1 for n in per_trial.values() if n > 1) + sum(
        n for t, n in per_trial.items() if t not in records)
    out["runs_missing"] = sum(1 for t in records if t not in per_trial)
    expected_status = {"FINISHED": "FINISHED", "STOPPED": "KILLED", "FAILED": "FAILED"}
    seen: set[str] = set()
    for run in runs:
        trial = run.data.tags.get("hpo.trial_id", "")
        record = records.get(trial)
        if record is None:
            continue
        if run.info.status != expected_status.get(record.get("state", ""), "KILLED"):
            out["runs_in_wrong_state"] += 1
        for key in run.data.metrics:
            steps = [m.step for m in c.get_metric_history(run.info.run_id, key)]
            out["metric_points"] += len(steps)
            out["metric_points_duplicated"] += len(steps) - len(set(steps))
            out["metric_steps_out_of_order"] += sum(1 for a, b in itertools.pairwise(steps) if b < a)
        if record.get("state") == "FINISHED" and trial not in seen:
            seen.add(trial)
            got = {m.step for m in c.get_metric_history(run.info.run_id, "val_auc")}
            missing = len(set(range(1, epochs + 1)) - got)
            out["metric_points_lost"] += missing
            out["finished_trials_lost"] += 1 if missing else 0
    out["finished_trials_lost"] += sum(1 for t, r in records.items() if r.get("state") == "FINISHED" and t not in per_trial)
    from tracking.spool import pending_count

    out["operations_held"] = pending_count(campaign.root / campaign.name / "spool")[0]
    return out


def check_invariants(uri: str, campaign: ChaosCampaign, *, epochs: int, parent_status: str = "FINISHED") -> dict[str, Any]:
    """What every fault must leave: no finished trial lost, exactly one MLflow run per trial in the state the
    campaign recorded, one FINISHED parent run, every metric's steps strictly increasing with no step twice, and
    nothing held in the spool. Returns :func:`measure`'s counts."""
    counts = measure(uri, campaign, epochs=epochs, parent_status=parent_status)
    assert counts["trials"] > 0, "no trials recorded"
    broken = {k: counts[k] for k in LOSSES if counts[k]}
    assert not broken, f"{broken} ({campaign.records()})"
    return counts
