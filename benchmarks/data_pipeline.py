"""Samples/s of each HDF5 -> ``tf.data`` reader on this machine (one rank, the whole training split,
batches materialised as NumPy), after one warm-up pass (file cache, normalisation constants).

    .venv/bin/python benchmarks/data_pipeline.py [--out benchmarks/results/data_pipeline.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: kind -> (events, size, batch size)
SETUPS = {"calo": (4000, 64, 64), "cosmo3d": (400, 32, 16), "lensing": (8000, 64, 64)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/data_pipeline.json"))
    args = parser.parse_args()
    from rich.console import Console
    from rich.table import Table

    from trainables.data import generate
    from trainables.data.readers import make_datasets
    from trainables.data.spec import DataConfig

    writers = {"calo": generate.write_calo, "cosmo3d": generate.write_cosmo3d, "lensing": generate.write_lensing}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, (events, size, batch) in SETUPS.items():
            path = writers[kind](Path(tmp) / f"{kind}.h5", events=events, size=size, seed=1, progress=False)
            splits = make_datasets(DataConfig(path=str(path)), kind, batch_size=batch, seed=0)
            for _ in splits.train:  # warm-up
                pass
            started = time.perf_counter()
            samples = 0
            mib = 0.0
            for b in splits.train_for_epoch(1) if splits.train_for_epoch else splits.train:
                x = b["x"].numpy()
                samples += x.shape[0]
                mib += x.nbytes / 2**20
            elapsed = time.perf_counter() - started
            results[kind] = {"events": events, "shape": list(splits.input_shape), "samples_per_s": samples / elapsed,
                             "MiB_per_s": mib / elapsed, "file_MiB": path.stat().st_size / 2**20}
            print(f"{kind}: {results[kind]}", flush=True)
    table = Table(title=f"reader throughput, one rank ({os.cpu_count()} cores)")
    for column in ("kind", "element shape", "samples/s", "MiB/s (float32)", "file MiB"):
        table.add_column(column, justify="right")
    for kind, r in results.items():
        table.add_row(kind, "×".join(map(str, r["shape"])), f"{r['samples_per_s']:.0f}", f"{r['MiB_per_s']:.0f}",
                      f"{r['file_MiB']:.1f}")
    Console().print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cores": os.cpu_count(), "results": results}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
