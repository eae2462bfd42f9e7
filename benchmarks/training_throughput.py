"""Training throughput of each workload: our Horovod loop vs plain ``tf_keras`` ``model.fit``, and 2 ranks ×
1 thread vs 1 rank × 2 threads, in one run on the same model, data and machine.

Each figure is the median samples/s of three training epochs after a warm-up epoch (tracing, file cache),
measured in a fresh process per configuration so the TensorFlow thread settings are what the row says:

* ``loop 1×2``: :class:`trainables.loop.Trial` with 1 rank and 2 intra-op threads;
* ``fit 1×2``: the same model compiled with the same loss and optimizer, ``model.fit`` on the same
  ``tf.data`` stream (regression and classification only: a GAN has no ``fit``);
* ``loop 2×1``: 2 Horovod ranks (Gloo) with 1 thread each, each pinned to its own core (the ranks fill the
  machine, see :func:`trainables.distributed.bind_cores`); samples/s counts both ranks;
* ``2×1 unpinned``: the same with ``HPO_BIND_CORES=0``, the threads of both ranks free to share both cores.

    .venv/bin/python benchmarks/training_throughput.py [--workloads lhc_cnn,cosmoflow,cosmogan]
        [--out benchmarks/results/training_throughput.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: measured epochs per configuration (after one warm-up epoch); the median is reported, since single epochs
#: on this shared machine swing by 10-20 %
EPOCHS = 3

#: workload -> (data kind, events, generator size, parameters): models of realistic shape, small data
SETUPS: dict[str, tuple[str, int, int, dict[str, Any]]] = {
    "lhc_cnn": ("calo", 2400, 64, {"batch_size": 64, "conv_blocks": 3, "filters": 16, "dense_units": 64}),
    "cosmoflow": ("cosmo3d", 320, 32, {"batch_size": 16, "conv_layers": 4, "conv_size": 8}),
    "cosmogan": ("lensing", 2400, 64, {"batch_size": 64, "gen_filters": 16, "disc_filters": 16}),
}


def _spec(workload: str, data: str, threads: int) -> Any:
    from trainables.data.spec import DataConfig
    from trainables.loop import TrialSpec

    return TrialSpec(workload=workload, params=SETUPS[workload][3], data=DataConfig(path=data), seed=0, epochs=2,
                     out_dir=tempfile.mkdtemp(prefix="hpo-bench-"), threads=threads)


def _loop_rank(spec: Any) -> float:
    from trainables.loop import Trial

    trial = Trial(spec)
    trial.run_epoch()  # warm-up: tracing, file cache
    return statistics.median(trial.run_epoch()["hpo.samples_per_s"] for _ in range(EPOCHS))


def _fit(spec: Any) -> float:
    """model.fit on the workload's model, loss and optimizer, over the same stream."""
    from trainables import distributed
    from trainables.loop import Trial

    distributed.init(spec.threads)
    trial = Trial(spec)
    model = trial.parts.models["cnn"]
    optimizer = trial.parts.optimizers["cnn"]
    import tf_keras as keras

    if spec.workload == "lhc_cnn":
        loss: Any = keras.losses.BinaryCrossentropy(from_logits=True)
    else:
        loss = "mse"
    model.compile(optimizer=optimizer, loss=loss)
    # Keras times each epoch through a callback
    stream = trial.splits.train.map(lambda b: (b["x"], b["y"]))
    samples = trial.splits.steps_per_epoch * int(trial.params["batch_size"])

    rates: list[float] = []

    class EpochRates(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            rates.append(samples / (time.perf_counter() - self.started))

    model.fit(stream, epochs=1 + EPOCHS, verbose=0, callbacks=[EpochRates()])
    return statistics.median(rates[1:])  # the first epoch warms up (tracing, file cache)


def measure(config: dict[str, Any]) -> float:
    """One configuration, in this (fresh) process."""
    from trainables.distributed import run_local

    spec = _spec(config["workload"], config["data"], config["threads"])
    if config["mode"] == "fit":
        return run_local(_fit, np=1, args=(spec,), threads=config["threads"])[0]
    return run_local(_loop_rank, np=config["ranks"], args=(spec,), threads=config["threads"])[0]


def _child(config: dict[str, Any], env: dict[str, str] | None = None) -> float:
    proc = subprocess.run([sys.executable, __file__, "--measure", json.dumps(config)], capture_output=True, text=True,
                          timeout=1800, env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise SystemExit(f"measurement {config} failed:\n{proc.stderr[-3000:]}")
    return float(proc.stdout.strip().splitlines()[-1])


def _data(kind: str, events: int, size: int, directory: Path) -> str:
    from trainables.data import generate

    writer = {"calo": generate.write_calo, "cosmo3d": generate.write_cosmo3d, "lensing": generate.write_lensing}[kind]
    return str(writer(directory / f"{kind}.h5", events=events, size=size, seed=1, progress=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default=",".join(SETUPS))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/training_throughput.json"))
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(measure(json.loads(args.measure)))
        return
    from rich.console import Console
    from rich.table import Table

    results: dict[str, dict[str, float | None]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workload in args.workloads.split(","):
            kind, events, size, _ = SETUPS[workload]
            data = _data(kind, events, size, Path(tmp))
            base = {"workload": workload, "data": data}
            loop = _child({**base, "mode": "loop", "ranks": 1, "threads": 2})
            fit = None if workload == "cosmogan" else _child({**base, "mode": "fit", "ranks": 1, "threads": 2})
            two = _child({**base, "mode": "loop", "ranks": 2, "threads": 1})
            free = _child({**base, "mode": "loop", "ranks": 2, "threads": 1}, env={"HPO_BIND_CORES": "0"})
            results[workload] = {"loop_1x2": loop, "fit_1x2": fit, "loop_2x1": two, "loop_2x1_unpinned": free,
                                 "loop_vs_fit": loop / fit if fit else None, "2x1_vs_1x2": two / loop,
                                 "2x1_unpinned_vs_1x2": free / loop}
            print(f"{workload}: {results[workload]}", flush=True)
    table = Table(title=f"training throughput, samples/s ({os.cpu_count()} cores); goals: loop/fit ≥ 1.0, 2×1 / 1×2 ≥ 0.9")
    for column in ("workload", "loop 1×2", "fit 1×2", "loop / fit", "loop 2×1", "2×1 / 1×2", "2×1 unpinned / 1×2"):
        table.add_column(column, justify="right")
    for name, r in results.items():
        def fmt(v: float | None, digits: int = 1) -> str:
            return "n/a" if v is None else f"{v:.{digits}f}"

        table.add_row(name, fmt(r["loop_1x2"]), fmt(r["fit_1x2"]), fmt(r["loop_vs_fit"], 2), fmt(r["loop_2x1"]),
                      fmt(r["2x1_vs_1x2"], 2), fmt(r["2x1_unpinned_vs_1x2"], 2))
    Console().print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cores": os.cpu_count(), "setups": {k: SETUPS[k][3] for k in results},
                                    "results": results}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
