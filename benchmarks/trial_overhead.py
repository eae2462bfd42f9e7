"""Per-trial overhead of a campaign: warm Horovod workers vs fresh workers vs a bare Ray Tune function trial.

Overhead per trial = (wall time of the Tune run − time spent inside the trials' epochs) / trials, split into
the trial's setup (tracking run, model, datasets), its checkpoint saves, its finalize (final validation,
plots, exported model) and the rest (Ray and Tune scheduling, actor start-up, reset), measured
in one run on the same tiny workload (lhc_cnn on a small generated calo file, 2 ranks per trial, 2 epochs)
and the same local Ray and MLflow server, so the ratios are comparable even on a noisy machine.

Two figures per variant: amortised (the campaign's start, first worker start-up and end spread over the trials)
and steady state (what one more trial costs once the campaign runs: trials 2..n, each with the gap since the
previous trial's last result). The bare Tune baselines run a function trial that only reports, holding both
cores like a campaign trial, with new actors and with ``reuse_actors``.

    .venv/bin/python benchmarks/trial_overhead.py [--trials 6] [--out benchmarks/results/trial_overhead.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CAMPAIGN = """\
name: {name}
workload:
  name: lhc_cnn
  data: {{path: {data}}}
  params: {{batch_size: 32, conv_blocks: 2, filters: 8, dense_units: 16}}
search:
  space:
    learning_rate: {{type: float, low: 3.0e-4, high: 3.0e-3, log: true}}
  sampler: {{name: random}}
  objective: {{metric: val_auc, mode: max}}
budget: {{trials: {trials}}}
trial: {{workers: 2, epochs: 2}}
tracking: {{uri: {uri}}}
"""


def campaign_overhead(root: Path, data: Path, uri: str, trials: int, reuse: bool) -> dict[str, float]:
    from orchestrator.config import load_campaign
    from orchestrator.runner import launch
    from orchestrator.state import CampaignDir

    name = "warm" if reuse else "fresh"
    spec_file = root / f"{name}.yaml"
    spec_file.write_text(CAMPAIGN.format(name=name, data=data, uri=uri, trials=trials))
    outcome = launch(load_campaign(spec_file), campaigns_dir=root / "campaigns", progress=False, reuse_actors=reuse)
    records = list(CampaignDir.of(name, root / "campaigns").trials().values())
    busy = sum(r["last"]["hpo.trial_busy_s"] for r in records)
    n = len(records)
    parts = {key: sum(r["last"].get(f"hpo.{key}", 0.0) for r in records) / n for key in ("setup_s", "save_s", "finalize_s")}
    # the first trial on new workers also starts them; the median shows a trial on warm ones
    parts["setup_median_s"] = statistics.median(r["last"].get("hpo.setup_s", 0.0) for r in records)
    overhead = (outcome.fit_seconds - busy) / n
    tune_s = overhead - parts["setup_s"] - parts["save_s"] - parts["finalize_s"]
    return {"trials": n, "wall_s": outcome.fit_seconds, "in_trial_s": busy, "overhead_per_trial_s": overhead, **parts,
            "tune_s": tune_s, **steady_state([r["last"] for r in records])}


def steady_state(lasts: list[dict[str, float]]) -> dict[str, float]:
    """The cost of one more trial: trials 2..n, each with the gap since the previous one ended.

    The amortised figure above also spreads the campaign's start (Tuner, study, first workers) and end over the
    trials. Here (one trial at a time: 2 ranks on 2 cores) trial k's overhead is its own wall time outside epochs
    plus the gap since trial k-1's last result (Tune's scheduling, closing trial k-1, the reset).
    """
    ordered = sorted(lasts, key=lambda r: r["hpo.trial_started_at"])
    rows = []
    for before, r in itertools.pairwise(ordered):
        gap = r["hpo.trial_started_at"] - (before["hpo.trial_started_at"] + before["hpo.trial_wall_s"])
        rows.append({"steady_overhead_s": gap + r["hpo.trial_wall_s"] - r["hpo.trial_busy_s"], "steady_gap_s": gap,
                     **{f"steady_{k}": r.get(f"hpo.{k}", 0.0) for k in ("setup_s", "save_s", "finalize_s")}})
    keys = ("steady_overhead_s", "steady_gap_s", "steady_setup_s", "steady_save_s", "steady_finalize_s")
    return {k: statistics.mean(row[k] for row in rows) if rows else float("nan") for k in keys}


def bare_overhead(trials: int, reuse: bool) -> dict[str, float]:
    """Tune alone: a function trial that only reports, holding both cores like a campaign trial (one at a time)."""
    from ray import tune

    def trainable(config: dict) -> None:
        tune.report({"x": config["x"], "hpo.trial_started_at": time.time(), "hpo.trial_wall_s": 0.0,
                     "hpo.trial_busy_s": 0.0})

    started = time.time()
    grid = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 2}), param_space={"x": tune.uniform(0, 1)},
        tune_config=tune.TuneConfig(num_samples=trials, reuse_actors=reuse),
        run_config=tune.RunConfig(storage_path=tempfile.mkdtemp(prefix="hpo-bare-"), verbose=0),
    ).fit()
    wall = time.time() - started
    return {"trials": trials, "wall_s": wall, "in_trial_s": 0.0, "overhead_per_trial_s": wall / trials, "setup_s": 0.0,
            "setup_median_s": 0.0, "save_s": 0.0, "finalize_s": 0.0, "tune_s": wall / trials,
            **steady_state([r.metrics for r in grid])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/trial_overhead.json"))
    args = parser.parse_args()

    import ray
    from rich.console import Console
    from rich.table import Table

    from orchestrator.cluster import connect
    from tracking.server import start_server, stop_group
    from trainables.data.generate import write_calo

    with tempfile.TemporaryDirectory(prefix="hpo-overhead-") as tmp:
        root = Path(tmp)
        data = write_calo(root / "calo.h5", events=800, seed=1, progress=False)
        server = start_server(directory=root / "mlflow")
        try:
            connect(None)
            results = {
                "warm workers (reuse_actors)": campaign_overhead(root, data, server.uri, args.trials, reuse=True),
                "fresh workers": campaign_overhead(root, data, server.uri, args.trials, reuse=False),
                "bare Tune function trial, new actors": bare_overhead(args.trials, reuse=False),
                "bare Tune function trial, reuse_actors": bare_overhead(args.trials, reuse=True),
            }
        finally:
            ray.shutdown()
            stop_group(server.pid)

    console = Console(width=160)
    table = Table(title=f"per-trial overhead amortised: (Tune run wall − time inside epochs) / trials; {args.trials} trials "
                        f"each, 2 Horovod ranks per trial ({os.cpu_count()} cores)")
    columns = ("variant", "trials", "Tune run wall [s]", "inside epochs [s]", "overhead / trial [s]", "of which: setup",
               "(median)", "checkpoint saves", "finalize", "Ray/Tune, start, end")
    for col in columns:
        table.add_column(col, justify="right" if col != "variant" else "left")
    for name, r in results.items():
        table.add_row(name, str(r["trials"]), f"{r['wall_s']:.1f}", f"{r['in_trial_s']:.1f}", f"{r['overhead_per_trial_s']:.2f}",
                      *(f"{r[k]:.2f}" for k in ("setup_s", "setup_median_s", "save_s", "finalize_s", "tune_s")))
    console.print(table)
    steady = Table(title="steady state: overhead of one more trial (trials 2..n, each with the gap since the previous "
                         "one's last result)")
    for col in ("variant", "overhead / trial [s]", "setup", "checkpoint saves", "finalize", "other in trial",
                "between trials"):
        steady.add_column(col, justify="right" if col != "variant" else "left")
    for name, r in results.items():
        other = r["steady_overhead_s"] - r["steady_gap_s"] - r["steady_setup_s"] - r["steady_save_s"] - r["steady_finalize_s"]
        steady.add_row(name, *(f"{v:.2f}" for v in (r["steady_overhead_s"], r["steady_setup_s"], r["steady_save_s"],
                                                    r["steady_finalize_s"], other, r["steady_gap_s"])))
    console.print(steady)
    warm, fresh = results["warm workers (reuse_actors)"], results["fresh workers"]
    print(f"fresh/warm overhead ratio: amortised {fresh['overhead_per_trial_s'] / warm['overhead_per_trial_s']:.1f}x, "
          f"steady state {fresh['steady_overhead_s'] / warm['steady_overhead_s']:.1f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"trials": args.trials, "cores": os.cpu_count(), "results": results}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
