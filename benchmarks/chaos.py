"""The fault matrix, run several times over: what each fault costs a real campaign, and how long recovery takes.

Each cell is a real campaign (``hpo launch`` in its own session, a local Ray, Horovod ranks on Gloo, an
``mlflow server`` subprocess, a generated calorimeter file) with one fault injected at a time drawn from
``--seed``: after a trial has reported epoch E (drawn from 1..epochs-1), plus a delay drawn from 0..2 s.

===================  =====================================================================================
fault                what is done, and when it counts as recovered
===================  =====================================================================================
rank_kill            SIGKILL one Horovod rank; recovered when the campaign reports a new epoch again
actor_kill           SIGKILL the trial's trainable actor; same
rank_hang            SIGSTOP one rank (``trial.epoch_timeout: 20s``); same
driver_kill          SIGKILL the driver's whole session, then ``hpo resume``; same
tracking_outage      SIGKILL the MLflow server for ``--outage`` s, then restart it; recovered when the spool
                     holds nothing again (everything journaled during the outage delivered), counted
                     from the restart command (the server's own start included)
tracking_at_end      SIGKILL the MLflow server until the campaign has ended, restart it, ``hpo sync``;
                     recovered when ``hpo sync`` returns
===================  =====================================================================================

After each campaign :func:`tests.chaos.harness.measure` counts what was lost or duplicated: finished trials
lost, MLflow runs missing or duplicated, runs in the wrong state, metric points lost (epochs of finished
trials missing) or duplicated (a step twice), steps out of order, operations still held in the spool. The goal
of every row is 0 lost, 0 duplicated. The table prints per fault: faults injected, trials recovered (retried
trials that finished; for driver_kill, trials that were running when it was killed and finished after the
resume), the loss counts summed over the repeats, and the median and maximum time to recover.

    .venv/bin/python benchmarks/chaos.py [--repeats 2] [--seed 0] [--faults rank_kill,driver_kill]
        [--outage 30] [--out benchmarks/results/chaos.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FAULTS = ("rank_kill", "actor_kill", "rank_hang", "driver_kill", "tracking_outage", "tracking_at_end")
EPOCHS = 3


def progress(records: dict[str, dict[str, Any]]) -> int:
    """Epochs reported so far, over all trials (a retry resumes from a checkpoint, so this only grows once it runs)."""
    return sum(int(r.get("epoch", 0) or 0) for r in records.values())


def run_cell(fault: str, repeat: int, rng: random.Random, work: Path, data: Path, server: Any, outage: float) -> dict[str, Any]:
    """One campaign with one fault; returns what it cost."""
    from tests.chaos.harness import LOSSES, kill_session, measure, new_campaign
    from tracking.server import start_server, stop_group
    from tracking.spool import pending_count

    epoch = rng.randint(1, EPOCHS - 1)
    delay = round(rng.uniform(0.0, 2.0), 2)
    options: dict[str, Any] = {"trials": 3, "workers": 2, "epochs": EPOCHS}
    if fault == "rank_hang":
        options["epoch_timeout"] = "20s"
    if fault in ("driver_kill", "tracking_outage", "tracking_at_end"):
        options["workers"] = 1
    if fault == "tracking_outage":
        options["epoch_sleep"] = max(2.0, outage / 4)  # the campaign outlasts the outage
    name = f"{fault.replace('_', '')}{repeat}"
    directory = work / name
    directory.mkdir()
    campaign = new_campaign(directory, name, server.uri, data, seed=100 + repeat, **options)
    row: dict[str, Any] = {"fault": fault, "repeat": repeat, "inject_after_epoch": epoch, "inject_delay_s": delay}
    campaign.launch()
    try:
        trial = campaign.running_epoch(epoch, timeout=600)
        time.sleep(delay)
        before = campaign.records()
        injected = time.time()
        recovered_when: float | None = None
        if fault == "rank_kill":
            campaign.ranks()[-1].send_signal(signal.SIGKILL)
        elif fault == "actor_kill":
            campaign.trainable_actor().kill()
        elif fault == "rank_hang":
            campaign.ranks()[-1].send_signal(signal.SIGSTOP)
        elif fault == "driver_kill":
            campaign.kill_driver()
            before = campaign.records()
            campaign.resume()
        elif fault in ("tracking_outage", "tracking_at_end"):
            stop_group(server.pid)
        if fault == "tracking_outage":
            time.sleep(outage)
            row["held_at_restart"] = pending_count(campaign.root / name / "spool")[0]
            back = time.time()  # recovery counts the server's own start: a user waits for it too
            server = start_server(directory=Path(server.log).parent, port=server.port)
            deadline = back + 300
            while pending_count(campaign.root / name / "spool")[0] and time.time() < deadline:
                time.sleep(0.2)
            recovered_when = time.time() - back
        elif fault != "tracking_at_end":
            campaign.until("a new epoch", lambda r: progress(r) > progress(before), timeout=600)
            recovered_when = time.time() - injected
        row["exit"] = campaign.wait(900)
        if fault == "tracking_at_end":
            server = start_server(directory=Path(server.log).parent, port=server.port)
            started = time.time()
            row["sync_exit"] = campaign.hpo("sync", name).returncode
            recovered_when = time.time() - started
    finally:
        if campaign.driver is not None and campaign.driver.poll() is None:
            kill_session(campaign.driver.pid)
    after = campaign.records()
    counts = measure(server.uri, campaign, epochs=EPOCHS)
    if fault == "driver_kill":
        running = [t for t, r in before.items() if r.get("state") in ("RUNNING", "PENDING", "PAUSED")]
        recovered = sum(after.get(t, {}).get("state") == "FINISHED" for t in running)
        counts["trials_lost_unstarted"] = sum(str(after.get(t, {}).get("error", "")).startswith("lost:") for t in running)
    else:
        recovered = sum(1 for r in after.values() if r.get("retries") and r.get("state") == "FINISHED")
    row.update(counts, trial=trial, trials_recovered=recovered, recover_s=recovered_when,
               lost_or_duplicated=sum(counts[k] for k in LOSSES))
    shutil.rmtree(directory / "campaigns" / name / "tune", ignore_errors=True)  # checkpoints: the bulk of it
    row["server"] = server
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2, help="times over the fault matrix (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the injection times (default 0)")
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated subset of {', '.join(FAULTS)}")
    parser.add_argument("--outage", type=float, default=30.0, help="seconds the tracking server stays down (default 30)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "chaos.json")
    args = parser.parse_args()
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        parser.error(f"unknown fault(s) {', '.join(unknown)}; choose from {', '.join(FAULTS)}")

    from rich.console import Console
    from rich.table import Table

    from tests.chaos.harness import LOSSES
    from tracking.server import free_port, start_server, stop_group
    from trainables.data.generate import write_calo

    console = Console() if sys.stdout.isatty() else Console(width=160)
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="hpo-chaos-", dir="/var/tmp"))
    data = write_calo(work / "calo.h5", events=1200, seed=5, progress=False)
    server = start_server(directory=work / "mlflow", port=free_port())
    rows: list[dict[str, Any]] = []
    started = time.time()
    try:
        for repeat in range(args.repeats):
            for fault in faults:
                console.print(f"[bold]{fault}[/] (round {repeat + 1}/{args.repeats}) …")
                row = run_cell(fault, repeat, rng, work, data, server, args.outage)
                server = row.pop("server")
                rows.append(row)
                console.print(f"  exit {row['exit']}, recovered in {row['recover_s']:.1f} s, "
                              f"{row['lost_or_duplicated']} lost or duplicated")
    finally:
        stop_group(server.pid)

    table = Table(title=f"faults in real campaigns ({args.repeats} round(s), seed {args.seed})")
    for column in ("fault", "injected", "trials recovered", "runs dup.", "runs missing", "finished lost",
                   "points lost", "points dup.", "held", "recover s (median / max)"):
        table.add_column(column, justify="left" if column == "fault" else "right")
    summary: dict[str, Any] = {}
    for fault in faults:
        mine = [r for r in rows if r["fault"] == fault]
        times = [r["recover_s"] for r in mine if r["recover_s"] is not None]
        summary[fault] = {
            "injected": len(mine), "trials_recovered": sum(r["trials_recovered"] for r in mine),
            **{k: sum(r[k] for r in mine) for k in LOSSES},
            "recover_s_median": statistics.median(times) if times else None, "recover_s_max": max(times, default=None),
            "exit_codes": [r["exit"] for r in mine],
        }
        s = summary[fault]
        table.add_row(fault, str(s["injected"]), str(s["trials_recovered"]), str(s["runs_duplicated"]),
                      str(s["runs_missing"]), str(s["finished_trials_lost"]), str(s["metric_points_lost"]),
                      str(s["metric_points_duplicated"]), str(s["operations_held"]),
                      f"{s['recover_s_median']:.1f} / {s['recover_s_max']:.1f}" if times else "—")
    console.print(table)
    total = sum(r["lost_or_duplicated"] for r in rows)
    console.print(f"{len(rows)} faults injected in {time.time() - started:.0f} s: "
                  + ("[green]0 lost, 0 duplicated[/]" if total == 0 else f"[red]{total} lost or duplicated[/]"))
    from importlib.metadata import version

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "chaos", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "seed": args.seed, "repeats": args.repeats,
        "outage_s": args.outage, "epochs": EPOCHS, "machine": {"python": platform.python_version(),
                                                              "cpus": __import__("os").cpu_count()},
        "versions": {p: version(p) for p in ("ray", "horovod", "mlflow", "optuna")},
        "summary": summary, "rows": rows,
    }, indent=2, default=str))
    console.print(f"wrote {args.out}")
    shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if total == 0 else 1)


if __name__ == "__main__":
    main()
