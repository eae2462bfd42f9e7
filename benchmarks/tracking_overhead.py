"""What tracking costs a trial, and how fast metric points reach the local MLflow server.

1. Overhead: simulated trials (10 epochs of ~1 s of real CPU work, 12 metrics per epoch) log through
   :class:`tracking.client.TrialLogger` exactly as campaign trials do; we time the calls the trial makes
   (they only enqueue) against the trial's wall time. Goal: < 1 %.
2. Throughput: one logger sends 200 epochs × 12 metrics as fast as it can; points/s until delivered.

    .venv/bin/python benchmarks/tracking_overhead.py [--out benchmarks/results/tracking_overhead.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

METRICS = [f"metric_{i}" for i in range(12)]


def busy(seconds: float) -> None:
    """Real CPU work (matrix products) for about ``seconds``."""
    a = np.random.default_rng(0).random((256, 256))
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        a = np.tanh(a @ a.T / 256)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--epoch-seconds", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/tracking_overhead.json"))
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    from tracking.client import CampaignTracker, TrialLogger
    from tracking.server import start_server, stop_group

    with tempfile.TemporaryDirectory(prefix="hpo-tracking-bench-") as tmp:
        server = start_server(directory=Path(tmp))
        try:
            config = Path(tmp, "campaign.yaml")
            config.write_text("name: bench\n")
            tracker = CampaignTracker(server.uri, "bench", "bench", uid="bench")
            parent = tracker.start_campaign(config_file=config, resolved={"name": "bench"}, search_space={},
                                            objectives=[{"metric": "metric_0", "mode": "min"}], data_files=[str(config)])
            rows = []
            for trial in range(args.trials):
                started = time.perf_counter()
                in_tracking = 0.0
                t = time.perf_counter()
                logger = TrialLogger(server.uri, tracker.experiment, parent, "bench", f"t{trial}",
                                     {"lr": 0.01 * (trial + 1), "layers": 3}, uid="bench")
                in_tracking += time.perf_counter() - t
                for epoch in range(1, args.epochs + 1):
                    busy(args.epoch_seconds)
                    t = time.perf_counter()
                    logger.log_epoch(epoch, {m: float(epoch * i) for i, m in enumerate(METRICS)})
                    in_tracking += time.perf_counter() - t
                t = time.perf_counter()
                logger.finish("FINISHED")
                in_tracking += time.perf_counter() - t
                wall = time.perf_counter() - started
                report = logger.close(timeout=120)
                rows.append({"trial": trial, "wall_s": wall, "tracking_s": in_tracking, "share_percent": 100 * in_tracking / wall,
                             "delivered_ops": report.delivered, "complete": report.complete})
            # throughput: as fast as the server takes them
            logger = TrialLogger(server.uri, tracker.experiment, parent, "bench", "throughput", {}, uid="bench")
            epochs = 200
            started = time.perf_counter()
            for epoch in range(1, epochs + 1):
                logger.log_epoch(epoch, {m: float(epoch) for m in METRICS})
            report = logger.close(timeout=600)
            elapsed = time.perf_counter() - started
            throughput = {"points": epochs * len(METRICS), "seconds": elapsed,
                          "points_per_s": epochs * len(METRICS) / elapsed, "complete": report.complete}
        finally:
            stop_group(server.pid)

    table = Table(title=f"tracking overhead per trial ({args.epochs} epochs × {args.epoch_seconds:g} s, {len(METRICS)} metrics/epoch)")
    for col in ("trial", "trial wall [s]", "in tracking calls [s]", "share", "delivered"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r["trial"]), f"{r['wall_s']:.2f}", f"{r['tracking_s'] * 1000:.2f} ms", f"{r['share_percent']:.3f} %",
                      "all" if r["complete"] else "NOT all")
    console = Console()
    console.print(table)
    console.print(f"throughput to the local server: {throughput['points']} points in {throughput['seconds']:.1f} s = "
                  f"{throughput['points_per_s']:.0f} points/s (one log_batch per epoch of {len(METRICS)} metrics)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"trials": rows, "throughput": throughput}, indent=2))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
