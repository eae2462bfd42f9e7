"""The campaign driver: turns a validated campaign into Ray Tune runs, and resumes or extends them.

A campaign is one or more Tune *runs* (``tune/run-0`` from ``hpo launch``, ``tune/run-1`` from the first
``hpo extend``, ...) sharing one Optuna study (``study.db``), so every run's sampler sees every earlier
trial. ``hpo resume`` restores the last run with ``Tuner.restore``: finished trials are kept, unfinished
ones continue from their last checkpoint (one per epoch).

Campaign-fatal problems (bad file, missing data, Ray unreachable, a trial that cannot fit the cluster)
raise :class:`HpoError` before any trial starts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from orchestrator.config import CampaignSpec, load_campaign
from orchestrator.progress import LIVE_DISPLAYS, CampaignMonitor, FailureStopper, best_records, render_trials
from orchestrator.state import CampaignDir
from orchestrator.trainable import HorovodTrainable, TrialContext
from trainables.errors import HpoError

if TYPE_CHECKING:
    from ray.tune import Tuner

log = logging.getLogger("hpo")

#: Environment every Ray worker of a campaign gets (Keras 2 for Horovod; quiet TensorFlow).
WORKER_ENV = {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}


@dataclass
class RunOutcome:
    """How a launch/resume/extend ended.

    Attributes:
        status: ``finished`` (budget reached), ``stopped`` (interrupted; resumable), ``failed`` (too many
            consecutive trial failures).
        message: one line for the user.
        counts: trials per state.
        best: the best trials (records from trials.json), best first.
    """

    status: str
    message: str
    counts: dict[str, int] = field(default_factory=dict)
    best: list[dict[str, Any]] = field(default_factory=list)
    fit_seconds: float = 0.0  # wall time of the Tune run itself (benchmarks)


# --- Ray ---------------------------------------------------------------------------------------------


def init_ray(address: str | None) -> None:
    """Start a local Ray (``address`` None) or connect to a cluster (``auto`` or ``HOST:PORT``)."""
    import ray

    if ray.is_initialized():
        return
    # our live table and one-line messages replace Tune's console output
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        ray.init(
            address=address, include_dashboard=False, log_to_driver=bool(os.environ.get("HPO_WORKER_LOGS")),
            logging_level=logging.WARNING, runtime_env={"env_vars": WORKER_ENV},
        )
    except ConnectionError as exc:
        raise HpoError(
            f"cannot reach the Ray cluster at --address {address} ({exc}); start it with `ray start --head` or "
            "drop --address to run locally"
        ) from None


def check_resources(spec: CampaignSpec) -> None:
    """A trial must fit the cluster, or nothing would ever start."""
    import ray

    trial = spec.config.trial
    have = ray.cluster_resources()
    need_cpu = trial.workers * trial.cpus_per_worker
    need_gpu = trial.workers * trial.gpus_per_worker
    if have.get("CPU", 0) < need_cpu:
        raise HpoError(
            f"trial.workers × trial.cpus_per_worker = {trial.workers} × {trial.cpus_per_worker:g} CPUs, but the Ray "
            f"cluster has {have.get('CPU', 0):g}; lower trial.workers or cpus_per_worker, or add nodes"
        )
    if need_gpu and have.get("GPU", 0) < need_gpu:
        raise HpoError(
            f"trial.workers × trial.gpus_per_worker = {need_gpu:g} GPUs, but the Ray cluster has "
            f"{have.get('GPU', 0):g}; set trial.gpus_per_worker=0 or run on GPU nodes"
        )


# --- building the Tune run ---------------------------------------------------------------------------


def _trainable(spec: CampaignSpec, cdir: CampaignDir, tracking: dict[str, Any] | None) -> Any:
    from ray import tune

    c = spec.config
    context = TrialContext(
        campaign=c.name, workload=c.workload.name, data=c.workload.data, fixed_params=dict(c.workload.params),
        epochs=c.trial.epochs, seed=c.seed, workers=c.trial.workers, cpus_per_worker=c.trial.cpus_per_worker,
        gpus_per_worker=c.trial.gpus_per_worker, threads=c.trial.threads or max(1, int(c.trial.cpus_per_worker)),
        trials_dir=str(cdir.trials_dir), tracking=tracking, metrics=tuple(o.metric for o in c.search.objective),
    )
    bundle: dict[str, float] = {"CPU": c.trial.cpus_per_worker}
    if c.trial.gpus_per_worker:
        bundle["GPU"] = c.trial.gpus_per_worker
    # The head bundle (this trainable actor, nearly idle) is empty: a {"CPU": 0.01} head bundle plus N
    # one-CPU ranks can never be placed on an N-CPU node, and trials would stay PENDING for ever.
    resources = tune.PlacementGroupFactory([{}] + [dict(bundle) for _ in range(c.trial.workers)],
                                           strategy=c.trial.placement_strategy)
    return tune.with_resources(tune.with_parameters(HorovodTrainable, context=context), resources)


def _searcher(spec: CampaignSpec, cdir: CampaignDir) -> Any:
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    c = spec.config
    objectives = c.search.objective
    sampler = c.search.sampler.build(seed=c.seed, space=spec.space, n_objectives=len(objectives))
    storage = optuna.storages.RDBStorage(cdir.study_url, engine_kwargs={"connect_args": {"timeout": 60}})
    multi = len(objectives) > 1
    return OptunaSearch(
        space=spec.space.define_by_run, sampler=sampler, storage=storage, study_name=c.name,
        metric=[o.metric for o in objectives] if multi else objectives[0].metric,
        mode=[o.mode for o in objectives] if multi else objectives[0].mode,
    )


def _tuner(spec: CampaignSpec, cdir: CampaignDir, run: str, trials: int, tracking: dict[str, Any] | None,
           monitor: CampaignMonitor, reuse_actors: bool = True) -> Tuner:
    from ray import tune

    c = spec.config
    scheduler = c.search.scheduler.build(metric=spec.metric, mode=spec.mode, epochs=c.trial.epochs, space=spec.space)
    return tune.Tuner(
        _trainable(spec, cdir, tracking),
        tune_config=tune.TuneConfig(
            search_alg=_searcher(spec, cdir), scheduler=scheduler, num_samples=trials, reuse_actors=reuse_actors,
            max_concurrent_trials=c.concurrency, time_budget_s=c.budget.time,
        ),
        run_config=tune.RunConfig(
            name=run, storage_path=str(cdir.tune_dir), verbose=0, callbacks=[monitor], stop=FailureStopper(monitor),
            failure_config=tune.FailureConfig(max_failures=c.trial.max_failures),
            checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1, num_to_keep=2),
        ),
    )


def _monitor(spec: CampaignSpec, cdir: CampaignDir, run: str, budget: int) -> CampaignMonitor:
    c = spec.config
    return CampaignMonitor(
        cdir, metrics=[o.metric for o in c.search.objective], modes=[o.mode for o in c.search.objective],
        epochs=c.trial.epochs, budget=budget, max_consecutive_failures=c.budget.max_consecutive_failures, run=run,
    )


@contextlib.contextmanager
def _live(name: str, enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    with Live(Text("starting trials…"), console=Console(), refresh_per_second=2, transient=False) as live:
        LIVE_DISPLAYS[name] = live
        try:
            yield
        finally:
            LIVE_DISPLAYS.pop(name, None)


# --- the three entry points ----------------------------------------------------------------------------


def launch(spec: CampaignSpec, *, campaigns_dir: str | Path | None = None, address: str | None = None,
           progress: bool = True, reuse_actors: bool = True) -> RunOutcome:
    """Start a new campaign (``hpo launch``).

    ``reuse_actors=False`` starts fresh Horovod workers for every trial (only for comparisons: it costs
    several seconds per trial).
    """
    cdir = CampaignDir.of(spec.config.name, campaigns_dir)
    state = cdir.state()
    if state:
        status = state.get("status")
        if status in ("running", "stopping") and cdir.driver_alive():
            raise HpoError(f"campaign '{cdir.name}' is already running; watch it with `hpo status {cdir.name}`")
        hint = (f"`hpo extend {cdir.name} --trials K` adds trials" if status == "finished"
                else f"`hpo resume {cdir.name}` continues it")
        raise HpoError(
            f"campaign '{cdir.name}' already exists in {cdir.root} (status {status}); {hint}, or choose another "
            "name (--set name=...) or delete that directory"
        )
    _preflight(spec)
    cdir.root.mkdir(parents=True, exist_ok=True)
    cdir.config_file.write_text(yaml.safe_dump(spec.raw, sort_keys=False))
    cdir.update_state(name=spec.config.name, uid=uuid.uuid4().hex, status="created", created=time.time(),
                      source=str(spec.source), runs=[{"name": "run-0", "trials": spec.config.budget.trials}])
    return _run(spec, cdir, run="run-0", trials=spec.config.budget.trials, address=address, progress=progress,
                reuse_actors=reuse_actors)


def resume(name: str, *, campaigns_dir: str | Path | None = None, address: str | None = None,
           progress: bool = True) -> RunOutcome:
    """Continue a stopped or crashed campaign (``hpo resume``): finished trials are not re-run."""
    cdir = CampaignDir.existing(name, campaigns_dir)
    state = cdir.state()
    if state.get("status") == "finished":
        raise HpoError(f"campaign '{name}' is finished; `hpo extend {name} --trials K` adds trials")
    spec = load_campaign(cdir.config_file)
    _preflight(spec)
    run = state["runs"][-1]
    return _run(spec, cdir, run=run["name"], trials=run["trials"], address=address, progress=progress, restore=True)


def extend(name: str, trials: int, *, campaigns_dir: str | Path | None = None, address: str | None = None,
           progress: bool = True) -> RunOutcome:
    """Add ``trials`` trials to a finished campaign (``hpo extend``); the sampler sees all earlier trials."""
    if trials < 1:
        raise HpoError(f"--trials must be at least 1, but got {trials}")
    cdir = CampaignDir.existing(name, campaigns_dir)
    state = cdir.state()
    if state.get("status") != "finished":
        raise HpoError(
            f"campaign '{name}' is {state.get('status')}, not finished; `hpo resume {name}` first, then extend it"
        )
    spec = load_campaign(cdir.config_file)
    _preflight(spec)
    runs = list(state.get("runs", []))
    run = f"run-{len(runs)}"
    cdir.update_state(runs=[*runs, {"name": run, "trials": trials}])
    return _run(spec, cdir, run=run, trials=trials, address=address, progress=progress)


def _preflight(spec: CampaignSpec) -> None:
    """Campaign-fatal checks that need more than the schema: the data file's content."""
    from trainables.data.checks import check_file
    from trainables.registry import load_workload

    kind = getattr(load_workload(spec.config.workload.name), "DATA_KIND", None)
    check_file(spec.config.workload.data.path, kind)


def _run(spec: CampaignSpec, cdir: CampaignDir, *, run: str, trials: int, address: str | None, progress: bool,
         restore: bool = False, reuse_actors: bool = True) -> RunOutcome:
    from ray import tune

    from orchestrator.tracking_bridge import CampaignTracking, undelivered_note

    # `hpo stop` sends SIGUSR1. Tune handles it during fit(); before that, our handler notes it (the default
    # action would kill the driver without saving anything).
    stop_requested = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGUSR1, lambda *_: stop_requested.set())
    cdir.acquire()
    init_ray(address)
    check_resources(spec)
    tracking = CampaignTracking.start(spec, cdir)
    cdir.update_state(status="running", tracking_uri=tracking.uri if tracking else None)
    monitor = _monitor(spec, cdir, run, trials)
    started = time.time()
    fit_seconds = 0.0
    try:
        with _live(cdir.name, progress):
            run_path = cdir.tune_dir / run
            if restore and tune.Tuner.can_restore(str(run_path)):
                tuner = tune.Tuner.restore(
                    str(run_path), trainable=_trainable(spec, cdir, tracking.trial_info() if tracking else None),
                    resume_unfinished=True, resume_errored=False, restart_errored=False,
                )
            else:
                tuner = _tuner(spec, cdir, run, trials, tracking.trial_info() if tracking else None, monitor, reuse_actors)
            if not stop_requested.is_set():
                fit_started = time.time()
                tuner.fit()
                fit_seconds = time.time() - fit_started
    except KeyboardInterrupt:
        pass
    except Exception:
        cdir.update_state(status="crashed")
        raise
    outcome = _outcome(spec, cdir, run, trials, started)
    outcome.fit_seconds = fit_seconds
    outcome.message += undelivered_note(cdir)
    cdir.update_state(status=outcome.status, message=outcome.message, driver_pid=None)
    if tracking is not None:
        tracking.finish(spec, cdir, outcome)
    return outcome


def _outcome(spec: CampaignSpec, cdir: CampaignDir, run: str, trials: int, started: float) -> RunOutcome:
    c = spec.config
    records = cdir.trials()
    mine = [r for r in records.values() if r.get("run") == run]
    counts: dict[str, int] = {}
    for r in records.values():
        counts[r.get("state", "?")] = counts.get(r.get("state", "?"), 0) + 1
    done = [r for r in mine if r.get("state") in ("FINISHED", "STOPPED", "FAILED")]
    failed_in_row = 0
    for r in sorted(done, key=lambda r: r.get("ended", 0)):
        failed_in_row = failed_in_row + 1 if r.get("state") == "FAILED" else 0
    best = [dict(r) for r in best_records(records, 0, spec.mode, 5)]
    best_text = f"; best {spec.metric} = {best[0]['objectives'][0]:.4g} (trial {best[0]['trial_id']})" if best else ""
    if failed_in_row >= c.budget.max_consecutive_failures:
        last = next((r.get("error") for r in reversed(sorted(done, key=lambda r: r.get("ended", 0))) if r.get("error")), "?")
        return RunOutcome("failed", f"campaign stopped: {failed_in_row} trials in a row failed; last error: {last}", counts, best)
    if len(done) >= trials:
        return RunOutcome("finished", f"campaign '{c.name}' finished: {len(done)} trials{best_text}", counts, best)
    if c.budget.time is not None and time.time() - started >= c.budget.time * 0.98:
        return RunOutcome(
            "finished", f"campaign '{c.name}' finished (time budget reached): {len(done)} trials{best_text}", counts, best
        )
    return RunOutcome(
        "stopped", f"campaign '{c.name}' stopped with {len(done)}/{trials} trials done; `hpo resume {c.name}` continues it",
        counts, best,
    )


def request_stop(name: str, *, campaigns_dir: str | Path | None = None, timeout: float = 300) -> str:
    """Ask the driver of campaign ``name`` to stop gracefully and wait until it has (``hpo stop``)."""
    cdir = CampaignDir.existing(name, campaigns_dir)
    state = cdir.state()
    host = state.get("driver_host")
    if state.get("status") not in ("created", "running", "stopping"):
        return f"campaign '{name}' is not running (status {state.get('status')})"
    if host and host != socket.gethostname():
        raise HpoError(f"campaign '{name}' is driven from host {host}; run `hpo stop {name}` there")
    if not cdir.driver_alive():
        cdir.update_state(status="crashed")
        return f"campaign '{name}' has no live driver (it crashed); `hpo resume {name}` continues it"
    pid = int(state["driver_pid"])
    cdir.update_state(status="stopping")
    os.kill(pid, signal.SIGUSR1)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not cdir.driver_alive() or cdir.state().get("status") not in ("stopping", "running"):
            break
        time.sleep(0.5)
    else:
        raise HpoError(f"campaign '{name}' (driver pid {pid}) did not stop within {timeout:g} s; try again or kill it")
    status = cdir.state().get("status")
    return f"campaign '{name}' stopped (status {status}); `hpo resume {name}` continues it"


def print_outcome(outcome: RunOutcome, spec: CampaignSpec, cdir: CampaignDir) -> None:
    """Final table and one line, for the CLI."""
    from rich.console import Console

    console = Console() if sys.stdout.isatty() else Console(width=160)
    c = spec.config
    console.print(render_trials(cdir.trials(), [o.metric for o in c.search.objective], [o.mode for o in c.search.objective]))
    style = {"finished": "green", "stopped": "yellow", "failed": "red"}.get(outcome.status, "")
    console.print(f"[{style}]{outcome.message}[/]")
    sys.stdout.flush()
