"""What crossing nodes costs: 2 Horovod ranks on one node against 2 ranks on two nodes, and a campaign on one
node against two, on an emulated 2-node Ray cluster (scripts/local-cluster.sh, 2 nodes × 2 CPUs).

Why: a campaign on a cluster places a trial's ranks wherever its placement group lands (``trial.placement_strategy``),
and more nodes should mean more trials per hour. Both claims have a price (the gradients' allreduce crosses
the network instead of loopback; trials compete for the driver, Tune and the MLflow server) that only a
measurement on several nodes shows.

1. Throughput (lhc_cnn, batch 32, 2 ranks × 1 thread): a driver on node 1 makes a placement group of two 1-CPU
   bundles, STRICT_PACK (both ranks on one node) or STRICT_SPREAD (one rank per node), starts a 0-CPU actor
   in it that starts the ranks with :class:`trainables.distributed.RayWorkers` (as a campaign trial does, with
   its choice of network interface), and reports rank 0's ``hpo.samples_per_s`` (median of the measured
   epochs after one warm-up epoch), the train step time (``hpo.train_time_s`` / steps) and the mean time of
   one :func:`trainables.distributed.allreduce_sum` of a float32 array as large as the model's trainable
   parameters: what the gradient allreduce of one step moves.
2. Trials per hour: the same small campaign (random sampler, FIFO, 2 ranks × 2 epochs per trial, the same
   seed and so the same learning rates in every case) launched with ``hpo launch --address`` on node 1, with
   the campaigns directory and the embedded MLflow server in node 1's own /tmp and Tune's storage on the
   shared file system, in three ways: one node's worth of CPUs (STRICT_PACK, one trial at a time); both nodes
   (two trials at once); and both nodes with every trial across them (STRICT_SPREAD, one at a time: the same
   CPUs as the first case, but every allreduce crosses nodes). trials/hour = trials / launch wall time × 3600,
   the launch's start (Ray client, MLflow server) included, as a user waits for it.

This machine is noisy, so only ratios measured in the same run are compared, and the order alternates (pack,
spread, pack, spread; campaign cases reversed every other round) so that drift cancels; medians are reported.

Each emulated node gets its own cores where the machine has enough (2 nodes × 2 CPUs: 4): every process in a
node's namespace is restricted to them, as on real nodes. Without this the nodes share all of the machine's
cores, and the ranks' core pinning (``trainables.distributed.bind_cores``, which pins a node's ranks to its
first cores) would put both nodes' ranks on the same two cores. Where there are fewer cores, the nodes share
them, and the JSON and the table say so (two trials at once are then oversubscribed and cannot be faster).
Two limits of the emulation: the nodes are joined by a veth bridge (memory copies, no wire), so the
cross-node figures are a lower bound of a real network's cost; and in STRICT_SPREAD each node runs one
1-CPU rank on its 2 cores, so a rank has a spare core there that it would not have under STRICT_PACK.

It needs root (network namespaces), brings up its own cluster with its state in a fresh directory under
/var/tmp, and always takes it down, also on Ctrl-C. It refuses to start while another emulated cluster is up
(tests/cluster/ use the same bridge and namespace names). State and logs are removed on success (``--keep``
keeps them) and kept on failure.

    sudo .venv/bin/python benchmarks/multinode.py [--quick] [--repeats 2] [--trials 4]
        [--out benchmarks/results/multinode.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "local-cluster.sh"
HEAD = "198.18.0.1:6379"
NODES = 2
CPUS_PER_NODE = 2
PARAMS = {"batch_size": 32, "conv_blocks": 2, "filters": 8, "dense_units": 16}
CAMPAIGNS = "/tmp/campaigns"  # node 1's own /tmp, as tests/cluster/ run it
NODE_ENV = {"HPO_HOME": "/tmp/hpo", "PYTHONUNBUFFERED": "1"}  # the embedded MLflow server's store, on node 1
ALLREDUCE_WARMUP = 10  # the first collectives negotiate and allocate Horovod's buffers

#: case -> (what it is, --set overrides); see the module docstring
CASES: dict[str, tuple[str, list[str]]] = {
    "one_node": ("1 node (STRICT_PACK, concurrency 1)", ["trial.placement_strategy=STRICT_PACK", "concurrency=1"]),
    "two_nodes": ("2 nodes (concurrency 2)", ["concurrency=2"]),
    "two_nodes_spread": ("2 nodes, every trial across both (STRICT_SPREAD, concurrency 1)",
                         ["trial.placement_strategy=STRICT_SPREAD", "concurrency=1"]),
}

CAMPAIGN = """\
name: {name}
workload:
  name: lhc_cnn
  data: {{path: {data}}}
  params: {{batch_size: 32, conv_blocks: 2, filters: 8, dense_units: 16}}
search:
  space:
    learning_rate: {{type: float, low: 1.0e-3, high: 3.0e-3, log: true}}
  sampler: {{name: random}}
  scheduler: {{name: fifo}}
  objective: {{metric: val_auc, mode: max}}
budget: {{trials: {trials}}}
trial: {{workers: 2, epochs: 2}}
storage: {storage}
seed: 3
"""

# The throughput driver, run on node 1 (written to the shared directory, so that it is the same file there).
# Its last line of stdout is the JSON list of runs; progress goes to stderr.
DRIVER = '''\
"""Throughput driver of benchmarks/multinode.py, run on node 1: 2 Horovod ranks in a placement group of two
1-CPU bundles (STRICT_PACK: one node; STRICT_SPREAD: two), started from a 0-CPU actor inside it, as a campaign
trial starts them. Argument: the JSON config. Last line of stdout: the JSON list of runs."""

import json
import statistics
import sys
import time

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy


def rank_setup(spec):
    from trainables import loop

    loop.worker_setup(spec)
    trial = loop._current()
    # what DistributedGradientTape allreduces every step: one gradient per trainable variable
    params = sum(int(v.shape.num_elements()) for m in trial.parts.models.values() for v in m.trainable_variables)
    return {"params": params, "steps_per_epoch": int(trial.splits.steps_per_epoch)}


def rank_epoch():
    from trainables import loop

    metrics = loop.worker_epoch()
    keys = ("hpo.samples_per_s", "hpo.train_time_s", "hpo.epoch_time_s", "hpo.train_samples")
    return {key: float(metrics[key]) for key in keys}


def rank_allreduce(params, iterations, warmup):
    import numpy as np

    from trainables import distributed

    values = np.ones(params, dtype=np.float32)
    for _ in range(warmup):
        distributed.allreduce_sum(values, name="bench_allreduce")
    seconds = []
    out = values
    for _ in range(iterations):
        started = time.perf_counter()
        out = distributed.allreduce_sum(values, name="bench_allreduce")
        seconds.append(time.perf_counter() - started)
    size = distributed.size()
    if size != 2 or not np.allclose(out, size):
        raise RuntimeError(f"allreduce_sum over {size} ranks gave {out[:3]}, expected 2 everywhere")
    return {"mean_s": statistics.mean(seconds), "median_s": statistics.median(seconds), "min_s": min(seconds),
            "max_s": max(seconds)}


@ray.remote(num_cpus=0, max_restarts=0)
class Bench:
    def measure(self, config):
        from trainables.data.spec import DataConfig
        from trainables.distributed import RayWorkers
        from trainables.loop import TrialSpec

        epochs = int(config["epochs"])
        spec = TrialSpec(workload="lhc_cnn", params=config["params"], data=DataConfig(path=config["data"]), seed=0,
                         epochs=epochs + 1, out_dir="/tmp/hpo-bench-multinode", threads=1)
        workers = RayWorkers(2, cpus_per_worker=1, timeout_s=120)
        result = {}
        try:
            started = time.perf_counter()
            workers.start()
            result["start_s"] = time.perf_counter() - started
            result["placement"] = [p.describe() for p in workers.placement]
            result["hosts"] = [p.host for p in workers.placement]
            started = time.perf_counter()
            result.update(workers.run(rank_setup, args=[spec])[0])
            result["setup_s"] = time.perf_counter() - started
            result["warmup_epoch"] = workers.run(rank_epoch)[0]  # tracing the train step, the file cache
            result["epochs"] = [workers.run(rank_epoch)[0] for _ in range(epochs)]
            result["allreduce"] = workers.run(rank_allreduce, args=[result["params"], int(config["iterations"]),
                                                                     int(config["warmup"])])
        finally:
            workers.shutdown()
        return result


def main():
    config = json.loads(sys.argv[1])
    ray.init(address=config["address"], logging_level="ERROR", log_to_driver=False,
             runtime_env={"env_vars": {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}})
    runs = []
    try:
        for round_, strategy in config["order"]:
            pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy=strategy)
            bench = None
            try:
                if not pg.wait(timeout_seconds=120):
                    raise SystemExit(f"the {strategy} placement group of two 1-CPU bundles was not placed within 120 s "
                                     f"(cluster: {ray.cluster_resources()}, free: {ray.available_resources()})")
                bench = Bench.options(scheduling_strategy=PlacementGroupSchedulingStrategy(
                    placement_group=pg, placement_group_capture_child_tasks=True)).remote()
                started = time.perf_counter()
                result = ray.get(bench.measure.remote(config), timeout=float(config["timeout_s"]))
                result.update(strategy=strategy, round=round_, wall_s=time.perf_counter() - started)
                runs.append(result)
                rate = statistics.median(e["hpo.samples_per_s"] for e in result["epochs"])
                print(f"[driver] round {round_ + 1} {strategy} on {','.join(result['hosts'])}: {rate:.0f} samples/s, "
                      f"allreduce {1000 * result['allreduce'][0]['mean_s']:.2f} ms", file=sys.stderr, flush=True)
            finally:
                if bench is not None:
                    ray.kill(bench)  # its rank actors go with it (they are its children)
                remove_placement_group(pg)
    finally:
        ray.shutdown()
    print(json.dumps(runs), flush=True)


if __name__ == "__main__":
    main()
'''


class BenchError(Exception):
    """A measurement failed; the message says which and where its logs are."""


def say(message: str) -> None:
    print(f"[multinode] {message}", file=sys.stderr, flush=True)


def refusal() -> str | None:
    """Why this machine cannot run the benchmark now, or None."""
    if os.geteuid() != 0:
        return ("needs root (the emulated cluster uses network namespaces, veth pairs and a bridge); run "
                "sudo .venv/bin/python benchmarks/multinode.py")
    for tool in ("ip", "nsenter", "unshare", "taskset"):
        if shutil.which(tool) is None:
            return f"needs {tool} (iproute2, util-linux) for the emulated cluster"
    if not (ROOT / ".venv" / "bin" / "ray").exists():
        return f"{ROOT / '.venv/bin/ray'} not found; run 'make install' first"
    # `up` over an existing cluster would fail and its teardown would remove that cluster's namespaces too
    busy = subprocess.run(["ip", "link", "show", "hpo-br0"], capture_output=True, timeout=30).returncode == 0
    spaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout.split()
    if busy or any(name.startswith("hpo-n") for name in spaces):
        return ("an emulated cluster is already up (bridge hpo-br0 or namespaces hpo-nK; tests/cluster/ may be "
                "using it); wait for it, or take it down with scripts/local-cluster.sh down")
    return None


def partition_cores(nodes: int, cpus: int) -> dict[int, list[int]]:
    """Each node's own cores (a node's hardware threads side by side), or {} where there are too few to share out."""
    from trainables.distributed import _by_core

    available = _by_core(os.sched_getaffinity(0))
    if len(available) < nodes * cpus:
        return {}
    return {k: available[(k - 1) * cpus:k * cpus] for k in range(1, nodes + 1)}


class Cluster:
    """This benchmark's emulated cluster: its state directory, shared directory and nodes' cores."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.shared = state / "shared"  # every node sees it at the same path
        env = {**os.environ, "HPO_CLUSTER_DIR": str(state), "PYTHONUNBUFFERED": "1"}
        env.pop("MLFLOW_TRACKING_URI", None)  # the campaigns use the embedded server, on node 1
        self.env = env
        self.cores = partition_cores(NODES, CPUS_PER_NODE)
        self.started = False

    def script(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(SCRIPT), *args], env=self.env, capture_output=True, text=True, timeout=timeout)

    def up(self) -> None:
        self.started = True  # from here on, `down` must run: `up` may leave half a cluster when interrupted
        started = time.perf_counter()
        proc = self.script("up", str(NODES), "--cpus", str(CPUS_PER_NODE), timeout=300)
        if proc.returncode != 0:
            raise BenchError(f"scripts/local-cluster.sh up failed:\n{proc.stderr[-3000:]}")
        self.shared.mkdir()
        self.apply_cores()
        say(f"{NODES} nodes up in {time.perf_counter() - started:.0f} s; state in {self.state}")

    def down(self) -> None:
        if not self.started:
            return
        try:
            proc = self.script("down", timeout=120)
        except subprocess.TimeoutExpired:
            say(f"scripts/local-cluster.sh down took over 120 s; run it again with HPO_CLUSTER_DIR={self.state}")
            return
        if proc.returncode != 0:
            say(f"scripts/local-cluster.sh down failed:\n{proc.stderr[-2000:]}")

    def apply_cores(self) -> None:
        """Restrict every process (every thread) in node K's namespace to node K's cores.

        Processes Ray starts later (workers, ranks) inherit it from their raylet. Applied again before each
        measurement, between measurements, so that nothing started in between escapes it.
        """
        for k, cores in self.cores.items():
            proc = subprocess.run(["ip", "netns", "pids", f"hpo-n{k}"], capture_output=True, text=True, timeout=30)
            for pid in proc.stdout.split():
                tasks: list[str] = []
                with suppress(OSError):
                    tasks = os.listdir(f"/proc/{pid}/task")
                for task in tasks:
                    with suppress(OSError):  # a thread or process that just ended
                        os.sched_setaffinity(int(task), cores)

    def on_node(self, k: int, *command: str) -> list[str]:
        """``command`` on node k, as if logged in there (restricted to node k's cores)."""
        pin = ["taskset", "-c", ",".join(map(str, self.cores[k]))] if self.cores else []
        return [str(SCRIPT), "exec", str(k), *pin, *command]

    def node_tmp(self, k: int) -> Path:
        return self.state / f"node{k}" / "tmp"


# --- part 1: samples/s and allreduce, one node against two --------------------------------------------------


def measure_throughput(cluster: Cluster, data: Path, args: argparse.Namespace) -> dict[str, Any]:
    driver = cluster.shared / "throughput_driver.py"
    driver.write_text(DRIVER)
    order = [[r, strategy] for r in range(args.repeats) for strategy in ("STRICT_PACK", "STRICT_SPREAD")]
    config = {"address": HEAD, "data": str(data), "params": PARAMS, "epochs": args.epochs,
              "iterations": args.iterations, "warmup": ALLREDUCE_WARMUP, "order": order,
              "timeout_s": args.measure_timeout}
    cluster.apply_cores()
    say(f"throughput: {len(order)} runs of 2 ranks (pack, spread, ...), 1 warm-up + {args.epochs} epochs each")
    timeout = len(order) * (args.measure_timeout + 150) + 120  # each run plus its placement group's wait
    command = cluster.on_node(1, sys.executable, str(driver), json.dumps(config))
    try:
        # stderr passes through: the driver's per-run lines show progress (and its traceback, if it fails)
        proc = subprocess.run(command, cwd=ROOT, env=cluster.env, stdout=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"the throughput driver did not finish within {timeout} s (node logs: "
                         f"{cluster.state}/node*/tmp/ray/session_latest/logs)") from None
    runs = last_json(proc.stdout)
    if proc.returncode != 0 or not isinstance(runs, list) or len(runs) != len(order):
        raise BenchError(f"the throughput driver failed (exit {proc.returncode}); its stderr is above; stdout ends:\n"
                         f"{proc.stdout[-2000:]}")
    for run in runs:
        want = 1 if run["strategy"] == "STRICT_PACK" else 2
        if len(set(run["hosts"])) != want:
            raise BenchError(f"{run['strategy']} placed the ranks on {run['hosts']}, expected {want} node(s)")
        run["samples_per_s"] = statistics.median(e["hpo.samples_per_s"] for e in run["epochs"])
        run["step_s"] = statistics.median(e["hpo.train_time_s"] for e in run["epochs"]) / run["steps_per_epoch"]
        run["allreduce_s"] = run["allreduce"][0]["mean_s"]  # rank 0's; every allreduce waits for both ranks
    summary: dict[str, Any] = {}
    for key in ("samples_per_s", "step_s", "allreduce_s"):
        pack = statistics.median(r[key] for r in runs if r["strategy"] == "STRICT_PACK")
        spread = statistics.median(r[key] for r in runs if r["strategy"] == "STRICT_SPREAD")
        # each round's own ratio too: pack and spread ran back to back there
        rounds = [next(r[key] for r in runs if r["round"] == i and r["strategy"] == "STRICT_SPREAD")
                  / next(r[key] for r in runs if r["round"] == i and r["strategy"] == "STRICT_PACK")
                  for i in range(args.repeats)]
        summary[key] = {"pack": pack, "spread": spread, "ratio_spread_to_pack": spread / pack, "ratio_by_round": rounds}
    summary["params"] = runs[0]["params"]
    summary["allreduce_bytes"] = 4 * runs[0]["params"]
    return {"runs": runs, "summary": summary}


def last_json(stdout: str) -> Any:
    """The last line of ``stdout`` that is JSON (Ray may print after it), or None."""
    for line in reversed(stdout.strip().splitlines()[-50:]):
        with suppress(ValueError):
            return json.loads(line)
    return None


# --- part 2: trials per hour, one node against two ----------------------------------------------------------


def run_campaign(cluster: Cluster, data: Path, args: argparse.Namespace, case: str, round_: int) -> dict[str, Any]:
    name = f"mn-{case.replace('_', '-')}-{round_ + 1}"
    file = cluster.shared / f"{name}.yaml"
    file.write_text(CAMPAIGN.format(name=name, data=data, trials=args.trials, storage=cluster.shared / "tune"))
    overrides = [part for item in CASES[case][1] for part in ("--set", item)]
    command = cluster.on_node(1, "env", *(f"{k}={v}" for k, v in NODE_ENV.items()), sys.executable, "-m",
                              "orchestrator.cli", "launch", str(file), "--address", HEAD, "--no-progress",
                              "--campaigns-dir", CAMPAIGNS, *overrides)
    log = cluster.state / f"{name}.log"
    cluster.apply_cores()
    say(f"campaign {name}: {CASES[case][0]}, {args.trials} trials")
    started = time.perf_counter()
    try:
        proc = subprocess.run(command, cwd=cluster.shared, env=cluster.env, capture_output=True, text=True,
                              timeout=args.launch_timeout)
    except subprocess.TimeoutExpired as exc:
        log.write_text(f"$ {shlex.join(command)}\n{_text(exc.stdout)}\n{_text(exc.stderr)}")
        raise BenchError(f"campaign {name} did not finish within {args.launch_timeout} s (log: {log})") from None
    wall = time.perf_counter() - started
    log.write_text(f"$ {shlex.join(command)}\n{proc.stdout}\n{proc.stderr}")
    trials_file = cluster.node_tmp(1) / CAMPAIGNS.removeprefix("/tmp/") / name / "trials.json"
    records = json.loads(trials_file.read_text()) if trials_file.exists() else {}
    finished = sum(r.get("state") == "FINISHED" for r in records.values())
    if proc.returncode != 0 or finished != args.trials:
        raise BenchError(f"campaign {name} exited {proc.returncode} with {finished} of {args.trials} trials finished "
                         f"(log: {log}); it ends:\n{proc.stdout[-1500:]}\n{proc.stderr[-1500:]}")
    trials = [{"state": r.get("state"), "retries": r.get("retries", 0),
               **{k.removeprefix("hpo."): (r.get("last") or {}).get(k)
                  for k in ("hpo.trial_wall_s", "hpo.trial_busy_s", "hpo.samples_per_s", "hpo.setup_s")}}
              for r in records.values()]
    rate = finished / wall * 3600
    say(f"campaign {name}: {finished} trials in {wall:.0f} s, {rate:.1f} trials/hour")
    return {"case": case, "round": round_, "name": name, "overrides": CASES[case][1], "wall_s": wall,
            "finished": finished, "trials_per_hour": rate, "trials": trials}


def _text(output: str | bytes | None) -> str:
    """A timed-out child's output so far (bytes even under ``text=True``)."""
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


def measure_campaigns(cluster: Cluster, data: Path, args: argparse.Namespace) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    for round_ in range(args.campaign_repeats):
        cases = list(CASES) if round_ % 2 == 0 else list(reversed(CASES))
        runs.extend(run_campaign(cluster, data, args, case, round_) for case in cases)
    per_case = {case: statistics.median(r["trials_per_hour"] for r in runs if r["case"] == case) for case in CASES}
    summary = {case: {"trials_per_hour": value, "ratio_to_one_node": value / per_case["one_node"]}
               for case, value in per_case.items()}
    return {"runs": runs, "summary": summary}


# --- report -------------------------------------------------------------------------------------------------


def rows(throughput: dict[str, Any], campaigns: dict[str, Any]) -> list[dict[str, Any]]:
    """(measurement, value, unit, ratio) rows; the ratio is against the row's one-node counterpart."""
    t = throughput["summary"]
    size = f"{t['params']:,} float32, {t['allreduce_bytes'] / 1024:.0f} KiB"
    out: list[dict[str, Any]] = []
    for key, what, unit, scale in (("samples_per_s", "samples/s, 2 ranks", "samples/s", 1.0),
                                   ("step_s", "train step, 2 ranks", "ms", 1000.0),
                                   ("allreduce_s", f"allreduce of one step's gradients ({size})", "ms", 1000.0)):
        out.append({"measurement": f"{what} on one node (STRICT_PACK)", "value": t[key]["pack"] * scale,
                    "unit": unit, "ratio": 1.0})
        out.append({"measurement": f"{what} across nodes (STRICT_SPREAD)", "value": t[key]["spread"] * scale,
                    "unit": unit, "ratio": t[key]["ratio_spread_to_pack"]})
    for case, result in campaigns["summary"].items():
        out.append({"measurement": f"trials/hour, {CASES[case][0]}", "value": result["trials_per_hour"],
                    "unit": "trials/h", "ratio": result["ratio_to_one_node"]})
    return out


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    s = report["settings"]
    cores = "each node its own cores" if report["cores"]["partitioned"] else "the nodes SHARE the machine's cores"
    table = Table(title=f"multinode: {NODES} emulated nodes × {CPUS_PER_NODE} CPUs on {report['nproc']} cores "
                        f"({cores}); lhc_cnn; medians of {s['repeats']} throughput and {s['campaign_repeats']} "
                        f"campaign round(s); ratio: against the one-node row")
    for column in ("measurement", "value", "ratio"):
        table.add_column(column, justify="left" if column == "measurement" else "right")
    for row in report["rows"]:
        digits = 0 if row["unit"] == "samples/s" else 1 if row["unit"] == "trials/h" else 2
        table.add_row(row["measurement"], f"{row['value']:.{digits}f} {row['unit']}", f"{row['ratio']:.2f}")
    Console(width=160).print(table)


def write_report(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str))
    # run with sudo: leave the results to the user who ran it, so that the next run as them can replace them
    uid, gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
    if uid and gid and uid.isdigit() and gid.isdigit():
        with suppress(OSError):
            os.chown(path, int(uid), int(gid))
    print(f"wrote {path}")


def _interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM too takes the cluster down in main's `finally`


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a smaller run: 1200 events, 2 epochs, 50 allreduces, 1 round, 2 trials per campaign")
    parser.add_argument("--events", type=int, help="events in the generated calo file (default 2000; quick 1200)")
    parser.add_argument("--epochs", type=int, help="measured epochs per throughput run, after 1 warm-up (default 3)")
    parser.add_argument("--iterations", type=int, help="timed allreduces per throughput run (default 200; quick 50)")
    parser.add_argument("--repeats", type=int, help="throughput rounds, each pack then spread (default 2; quick 1)")
    parser.add_argument("--trials", type=int, help="trials per campaign (default 4; quick 2)")
    parser.add_argument("--campaign-repeats", type=int, default=1, help="rounds of the three campaigns (default 1)")
    parser.add_argument("--measure-timeout", type=float, default=900, help="seconds per throughput run (default 900)")
    parser.add_argument("--launch-timeout", type=float, default=1800, help="seconds per campaign (default 1800)")
    parser.add_argument("--keep", action="store_true", help="keep the cluster's state directory (logs) after success")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/multinode.json"))
    args = parser.parse_args()
    quick = {"events": 1200, "epochs": 2, "iterations": 50, "repeats": 1, "trials": 2}
    full = {"events": 2000, "epochs": 3, "iterations": 200, "repeats": 2, "trials": 4}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for key in ("events", "epochs", "iterations", "repeats", "trials", "campaign_repeats"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be at least 1, but got {getattr(args, key)}")

    reason = refusal()
    if reason:
        print(f"multinode: {reason}", file=sys.stderr)
        return 2
    from trainables.data.generate import write_calo

    signal.signal(signal.SIGTERM, _interrupted)
    state = Path(tempfile.mkdtemp(prefix="hpo-bench-multinode-", dir="/var/tmp"))
    cluster = Cluster(state)
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    ok, failed = False, 1
    try:
        cluster.up()
        say(f"generating {args.events} calo events on the shared file system")
        data = write_calo(cluster.shared / "calo.h5", events=args.events, seed=1, progress=False)
        throughput = measure_throughput(cluster, data, args)
        campaigns = measure_campaigns(cluster, data, args)
        ok = True
    except BenchError as exc:
        print(f"multinode: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("multinode: interrupted", file=sys.stderr)
        failed = 130
    finally:
        # a second Ctrl-C must not leave namespaces behind
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cluster.down()
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if ok and not args.keep:
            shutil.rmtree(state, ignore_errors=True)
        else:
            say(f"state and logs kept in {state}")
    if not ok:
        return failed

    from tracking.client import git_commit, versions

    report = {
        "command": [sys.executable, *sys.argv], "command_line": shlex.join([sys.executable, *sys.argv]),
        "started_at": started_at, "host": socket.gethostname(), "versions": versions(), "git_commit": git_commit(),
        "nproc": len(os.sched_getaffinity(0)), "cpu_count": os.cpu_count(),
        "cores": {"partitioned": bool(cluster.cores), "nodes": {f"node{k}": v for k, v in cluster.cores.items()}},
        "settings": {"nodes": NODES, "cpus_per_node": CPUS_PER_NODE, "workload": "lhc_cnn", "params": PARAMS,
                     "ranks": 2, "threads_per_rank": 1, "quick": args.quick, "events": args.events,
                     "epochs": args.epochs, "warmup_epochs": 1, "iterations": args.iterations,
                     "allreduce_warmup": ALLREDUCE_WARMUP, "repeats": args.repeats, "trials": args.trials,
                     "campaign_epochs": 2, "campaign_repeats": args.campaign_repeats,
                     "cases": {case: list(overrides) for case, (_, overrides) in CASES.items()}},
        "throughput": throughput, "campaigns": campaigns, "rows": rows(throughput, campaigns),
    }
    print_table(report)
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
