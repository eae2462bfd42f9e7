"""Stop, resume and extend a campaign through the real CLI, each command its own process (as users run them)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from mlflow.tracking import MlflowClient

from trainables.data.generate import write_calo

pytestmark = pytest.mark.slow

CAMPAIGN = """\
name: life
workload:
  name: lhc_cnn
  data: {{path: {data}}}
  params: {{batch_size: 32, conv_blocks: 2, filters: 8, dense_units: 16}}
search:
  space:
    learning_rate: {{type: float, low: 1.0e-4, high: 3.0e-3, log: true}}
    dropout: {{type: float, low: 0.0, high: 0.2}}
  sampler: {{name: tpe, n_startup_trials: 2}}
  objective: {{metric: val_auc, mode: max}}
budget: {{trials: 4}}
trial: {{workers: 1, epochs: 3}}
tracking: {{uri: {uri}}}
seed: 2
"""


def records(root: Path) -> dict[str, dict]:
    try:
        return json.loads((root / "life" / "trials.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def test_stop_resume_extend(tmp_path: Path, calo_file: Path, mlflow_server: str, hpo: Any) -> None:
    env = {**os.environ, "HPO_CAMPAIGNS_DIR": str(tmp_path / "campaigns"), "PYTHONUNBUFFERED": "1"}
    root = tmp_path / "campaigns"
    spec = tmp_path / "life.yaml"
    data = tmp_path / "calo.h5"
    shutil.copyfile(calo_file, data)  # replaced at the end; the session's file stays as it is
    spec.write_text(CAMPAIGN.format(data=data, uri=mlflow_server))

    driver = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "launch", str(spec), "--no-progress"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.time() + 400
    while time.time() < deadline and driver.poll() is None:
        done = [r for r in records(root).values() if r["state"] == "FINISHED"]
        if done:
            break
        time.sleep(1)
    assert driver.poll() is None, driver.stdout.read() if driver.stdout else ""
    stopped = hpo("stop", "life", env=env)
    assert stopped.returncode == 0, stopped.stderr
    out, _ = driver.communicate(timeout=300)
    assert driver.returncode == 3, out[-3000:]  # 3 = stopped, resumable
    state = json.loads((root / "life" / "state.json").read_text())
    assert state["status"] == "stopped"
    before = records(root)
    finished_before = {k for k, r in before.items() if r["state"] == "FINISHED"}
    assert 1 <= len(finished_before) < 4

    resumed = hpo("resume", "life", "--no-progress", env=env)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    after = records(root)
    assert len(after) == 4 and all(r["state"] == "FINISHED" for r in after.values())
    assert finished_before <= set(after)  # finished trials kept, not re-run
    for trial in finished_before:
        assert after[trial]["ended"] == before[trial]["ended"]

    c = MlflowClient(mlflow_server)
    exp = c.get_experiment_by_name("life").experiment_id
    trial_runs = c.search_runs([exp], "tags.`hpo.role` = 'trial'", max_results=100)
    assert sorted(r.data.tags["hpo.trial_id"] for r in trial_runs) == sorted(after)  # no duplicate runs
    assert len(c.search_runs([exp], "tags.`hpo.role` = 'campaign'")) == 1
    for run in trial_runs:  # a list, not a set: a step logged twice after the resume would show here
        for metric in ("val_auc", "train_loss", "hpo.epoch"):
            assert [m.step for m in c.get_metric_history(run.info.run_id, metric)] == [1, 2, 3], metric

    extended = hpo("extend", "life", "--trials", "2", "--no-progress", env=env)
    assert extended.returncode == 0, extended.stdout[-3000:] + extended.stderr[-3000:]
    final = records(root)
    assert len(final) == 6 and sum(r["run"] == "run-1" for r in final.values()) == 2
    study = optuna.load_study(study_name="life", storage=f"sqlite:///{root / 'life' / 'study.db'}")
    numbers = sorted(t.number for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE)
    assert numbers == [0, 1, 2, 3, 4, 5]  # the new trials were asked from the same study: the sampler saw the others
    status = hpo("status", "life", env=env)
    assert status.returncode == 0 and "6/6" in status.stdout

    # the data file replaced after the launch: a further extension is refused before anything starts
    launched_sha = json.loads((root / "life" / "state.json").read_text())["data_sha256"]
    write_calo(tmp_path / "other.h5", events=1200, seed=98, progress=False)
    os.replace(tmp_path / "other.h5", data)
    refused = hpo("extend", "life", "--trials", "1", "--no-progress", env=env)
    assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-2000:]
    line = refused.stderr.strip().splitlines()[-1]
    assert line.startswith("error: workload.data.path: ") and "replaced since campaign 'life' was launched" in line
    assert launched_sha in line and str(data) in line and "Traceback" not in refused.stderr
    assert len(records(root)) == 6  # nothing started
