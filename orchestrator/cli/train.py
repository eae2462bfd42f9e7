"""``hpo train``: one trial outside any search."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import click


def _report(epoch: int, metrics: dict[str, float]) -> None:
    shown = {k: v for k, v in metrics.items() if not k.startswith("hpo.") or k in ("hpo.epoch_time_s", "hpo.samples_per_s")}
    click.echo(f"epoch {epoch:3d}  " + "  ".join(f"{k}={v:.4g}" for k, v in shown.items()), err=False)


@click.command("train")
@click.argument("workload")
@click.option("--data", "data_path", type=click.Path(dir_okay=False), required=True, help="HDF5 data file.")
@click.option("--set", "overrides", multiple=True, metavar="PARAM=VALUE", help="A hyperparameter, e.g. --set learning_rate=3e-4 (repeatable).")
@click.option("--workers", type=int, default=1, show_default=True, help="Horovod ranks on this machine (Gloo).")
@click.option("--epochs", type=int, default=5, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=None, help="TensorFlow threads per rank (default: cores / workers). When workers × threads = the cores, "
                   "each rank is pinned to its own cores (HPO_BIND_CORES=0: not).")
@click.option("--split", default="0.8,0.1,0.1", show_default=True, help="train,validation,test fractions.")
@click.option("--max-events", type=int, default=None, help="Use only this many events of the file.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output directory (default runs/WORKLOAD-TIMESTAMP).")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Continue the run in this directory from its latest checkpoint.")
def command(workload: str, data_path: str, overrides: tuple[str, ...], workers: int, epochs: int, seed: int,
            threads: int | None, split: str, max_events: int | None, out: Path | None, resume_dir: Path | None) -> None:
    """Train WORKLOAD once (no search) with N local Horovod ranks.

    Prints one line per epoch, checkpoints every epoch, and writes metrics (metrics.jsonl), plots and the
    exported model under --out. Unknown hyperparameters are errors that list the valid ones.

    \b
    Examples:
      hpo train lhc_cnn --data data/calo.h5 --workers 2 --epochs 5
      hpo train lhc_cnn --data data/calo.h5 --set learning_rate=3e-4 --set conv_blocks=4
    """
    import os

    from orchestrator.overrides import parse_overrides
    from trainables.data.checks import check_for_training
    from trainables.data.spec import DataConfig
    from trainables.distributed import run_local
    from trainables.errors import HpoError
    from trainables.loop import TrialSpec, resolve_params, train
    from trainables.registry import load_workload

    if workers < 1:
        raise HpoError(f"--workers must be at least 1, but got {workers}")
    try:
        fractions = tuple(float(x) for x in split.split(","))
    except ValueError:
        raise HpoError(f"--split must be three comma-separated fractions like 0.8,0.1,0.1, but got {split!r}") from None
    params: dict[str, Any] = {}
    for path, value in parse_overrides(overrides):
        params[".".join(path)] = value
    module = load_workload(workload)
    resolved = resolve_params(module, params)
    data = DataConfig(path=data_path, split=fractions, max_events=max_events)
    check_for_training(data, module.DATA_KIND, int(resolved["batch_size"]), workers)
    out_dir = resume_dir or out or Path("runs") / f"{workload.rsplit('.', 1)[-1]}-{time.strftime('%Y%m%d-%H%M%S')}"
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    spec = TrialSpec(workload=workload, params=params, data=data, seed=seed, epochs=epochs, out_dir=str(out_dir.absolute()),
                     threads=threads)
    click.echo(f"training {workload} on {data.path} with {workers} rank(s) × {threads} thread(s) for {epochs} epochs -> {out_dir}")
    started = time.time()
    if workers == 1:
        result = run_local(train, np=1, args=(spec, _report), kwargs={"resume": resume_dir is not None}, threads=threads)[0]
    else:
        # the ranks' own output carries Horovod's "[0]<stdout>:" prefixes: print the epochs from rank 0's log
        done = threading.Event()
        follower = threading.Thread(target=_follow, args=(Path(spec.out_dir) / "metrics.jsonl", done), daemon=True)
        follower.start()
        try:
            result = run_local(_train_rank, np=workers, args=(spec, resume_dir is not None))[0]
        finally:
            done.set()
            follower.join()
    click.echo(f"done in {time.time() - started:.0f} s; final: " + ", ".join(f"{k}={v:.4g}" for k, v in result["metrics"].items()))
    click.echo(f"model: {result['model_dir']}; plots: {', '.join(result['plots']) or 'none'}; metrics: {out_dir}/metrics.jsonl")


def _train_rank(spec: Any, resume: bool) -> Any:
    """Runs in every Horovod rank; rank 0 appends each epoch to ``metrics.jsonl``."""
    from trainables.loop import train

    return train(spec, None, resume=resume)


def _follow(path: Path, done: threading.Event) -> None:
    """Print each epoch line appended to ``path`` (rank 0's metrics log) until ``done``, then the rest."""
    offset = path.stat().st_size if path.exists() else 0  # a resumed run's earlier epochs are not news
    while True:
        finished = done.wait(0.5)
        if path.exists():
            with path.open() as f:
                f.seek(offset)
                while (line := f.readline()).endswith("\n"):
                    offset = f.tell()
                    record = json.loads(line)
                    _report(int(record.pop("epoch")), record)
        if finished:
            return
