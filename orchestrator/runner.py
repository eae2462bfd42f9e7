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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from orchestrator.cluster import (
    ClusterInfo,
    check_data,
    check_fits,
    check_storage,
    check_tracking_uri,
    connect,
    is_uri,
)
from orchestrator.config import CampaignSpec, load_campaign
from orchestrator.progress import (
    LIVE_DISPLAYS,
    TRIAL_END_LISTENERS,
    CampaignMonitor,
    FailureStopper,
    ranked_records,
    render_trials,
    trial_done,
)
from orchestrator.state import CampaignDir, TrialState
from orchestrator.tracking_bridge import CampaignTracking, sync, undelivered_note
from orchestrator.trainable import HorovodTrainable, TrialContext
from tracking.credentials import redact, redact_text
from trainables.errors import HpoError

if TYPE_CHECKING:
    from ray.tune import Tuner

log = logging.getLogger("hpo")


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


# --- before anything starts ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """What the checks before a run found: the cluster, where Tune stores the run, where tracking goes."""

    cluster: ClusterInfo
    storage: str  # Tune's storage_path for this campaign (a path or an object-store URI)
    tracking_uri: str


def prepare(spec: CampaignSpec, cdir: CampaignDir, address: str | None) -> Prepared:
    """Join (or start) Ray and check everything the cluster must offer; raises :class:`HpoError` before
    anything of the campaign is written (exit 2, nothing started)."""
    from tracking.server import resolve_tracking_uri

    _preflight(spec)
    _check_data_unchanged(spec, cdir)
    cluster = connect(address)
    check_fits(spec.config.trial, cluster)
    storage = tune_storage(spec, cdir)
    check_storage(spec.config.storage or str(cdir.root.parent), cluster,
                  field="storage" if spec.config.storage else "storage (default: the campaigns directory)")
    check_data(spec.config.workload.data.path, cluster)
    explicit = spec.config.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI")
    if explicit:
        check_tracking_uri(explicit, cluster)  # before asking it for /health: a loopback URI answers here
    uri = resolve_tracking_uri(explicit, host=cluster.driver_address if cluster.multi_node else "127.0.0.1")
    return Prepared(cluster=cluster, storage=storage, tracking_uri=uri)


def _check_data_unchanged(spec: CampaignSpec, cdir: CampaignDir) -> None:
    """A resumed or extended campaign trains on the data file it was launched with: its SHA-256 is recorded in
    state.json at launch (``data_sha256``), and a file replaced since is refused before anything starts.

    Raises:
        HpoError: the file's SHA-256 differs from the recorded one (both named).
    """
    recorded = cdir.state().get("data_sha256")
    if not recorded:
        return
    path = spec.config.workload.data.path
    now = _data_sha256(spec)
    if now != recorded:
        raise HpoError(f"workload.data.path: {path} was replaced since campaign '{cdir.name}' was launched: SHA-256 "
                       f"{now} now, {recorded} at launch; put the original file back, or launch a new campaign for "
                       "the new data")


def tune_storage(spec: CampaignSpec, cdir: CampaignDir) -> str:
    """Tune's storage_path: ``storage/NAME`` where the campaign sets ``storage``, else ``CAMPAIGN/tune``."""
    storage = spec.config.storage
    if storage is None:
        return str(cdir.tune_dir)
    if is_uri(storage):
        return f"{storage.rstrip('/')}/{cdir.name}"
    return str(Path(storage.removeprefix("file://")).absolute() / cdir.name)


# --- building the Tune run ---------------------------------------------------------------------------


def _trainable(spec: CampaignSpec, cdir: CampaignDir, tracking: dict[str, Any] | None) -> Any:
    from ray import tune

    c = spec.config
    context = TrialContext(
        campaign=c.name, workload=c.workload.name, data=c.workload.data, fixed_params=dict(c.workload.params),
        epochs=c.trial.epochs, seed=c.seed, workers=c.trial.workers, cpus_per_worker=c.trial.cpus_per_worker,
        gpus_per_worker=c.trial.gpus_per_worker, threads=c.trial.threads or max(1, int(c.trial.cpus_per_worker)),
        tracking=tracking, metrics=tuple(o.metric for o in c.search.objective),
        rendezvous_timeout_s=int(c.trial.rendezvous_timeout), nics=tuple(c.trial.nics or ()),
        epoch_timeout_s=c.trial.epoch_timeout,
    )
    bundle: dict[str, float] = {"CPU": c.trial.cpus_per_worker}
    if c.trial.gpus_per_worker:
        bundle["GPU"] = c.trial.gpus_per_worker
    # The head bundle (this trainable actor, nearly idle) is empty: a {"CPU": 0.01} head bundle plus N
    # one-CPU ranks can never be placed on an N-CPU node, and trials would stay PENDING for ever.
    resources = tune.PlacementGroupFactory([{}] + [dict(bundle) for _ in range(c.trial.workers)],
                                           strategy=c.trial.placement_strategy)
    return tune.with_resources(tune.with_parameters(HorovodTrainable, context=context), resources)


def _searcher(spec: CampaignSpec, cdir: CampaignDir, trials: int) -> Any:
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    c = spec.config
    objectives = c.search.objective
    sampler = c.search.sampler.build(seed=c.seed, space=spec.space, n_objectives=len(objectives))
    storage = optuna.storages.RDBStorage(cdir.study_url, engine_kwargs={"connect_args": {"timeout": 60}})
    if c.search.scheduler.name == "pbt":
        return _population(spec, sampler, storage, trials)
    multi = len(objectives) > 1
    return OptunaSearch(
        space=spec.space.define_by_run, sampler=sampler, storage=storage, study_name=c.name,
        metric=[o.metric for o in objectives] if multi else objectives[0].metric,
        mode=[o.mode for o in objectives] if multi else objectives[0].mode,
    )


def _population(spec: CampaignSpec, sampler: Any, storage: Any, trials: int) -> Any:
    """PBT's starting population of ``trials`` configurations, drawn by the campaign's sampler up front.

    Ray's PBT refuses a searcher (it rewrites its trials' configurations itself), so Tune runs exactly these.
    Each carries every parameter of the space (:func:`_pbt_space`): an exploit copies a configuration whole and
    may then change a parameter that others depend on, so an inactive conditional one is present, at the
    workload's default. They are not trials of the campaign's study, since a PBT trial has no one
    configuration to report a value for; the study is created all the same (empty), for the summary.
    """
    import optuna
    from ray.tune.search import BasicVariantGenerator

    from trainables.registry import load_workload

    c = spec.config
    direction = optuna.study.StudyDirection.MAXIMIZE if spec.mode == "max" else optuna.study.StudyDirection.MINIMIZE
    optuna.create_study(storage=storage, study_name=c.name, direction=direction, load_if_exists=True)
    draft = optuna.create_study(sampler=sampler, direction=direction)  # in memory: asked, never told
    defaults = dict(getattr(load_workload(c.workload.name), "DEFAULT_PARAMS", None) or {})
    population = [{**{k: defaults.get(k) for k in spec.space.params}, **spec.space.sample(draft.ask())} for _ in range(trials)]
    return BasicVariantGenerator(points_to_evaluate=population, max_concurrent=c.concurrency or 0)


def _pbt_space(spec: CampaignSpec) -> dict[str, Any] | None:
    """Tune's ``param_space`` under PBT: the keys the population's configurations may set (Tune checks them),
    with no values of its own (every configuration sets every key); None otherwise."""
    return {name: None for name in spec.space.params} if spec.config.search.scheduler.name == "pbt" else None


def _tuner(spec: CampaignSpec, cdir: CampaignDir, storage: str, run: str, trials: int, tracking: dict[str, Any] | None,
           monitor: CampaignMonitor, reuse_actors: bool = True) -> Tuner:
    from ray import tune

    c = spec.config
    scheduler = c.search.scheduler.build(metric=spec.metric, mode=spec.mode, epochs=c.trial.epochs, space=spec.space)
    return tune.Tuner(
        _trainable(spec, cdir, tracking), param_space=_pbt_space(spec),
        tune_config=tune.TuneConfig(
            search_alg=_searcher(spec, cdir, trials), scheduler=scheduler, num_samples=trials, reuse_actors=reuse_actors,
            max_concurrent_trials=c.concurrency, time_budget_s=c.budget.time,
        ),
        run_config=tune.RunConfig(
            name=run, storage_path=storage, verbose=0, callbacks=[monitor], stop=FailureStopper(monitor),
            failure_config=tune.FailureConfig(max_failures=c.trial.max_failures),
            # PBT copies a trial's checkpoint of its last perturbation, however old: keep them all there
            checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1, num_to_keep=None if _pbt_space(spec) else 2),
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
    prepared = prepare(spec, cdir, address)
    cdir.root.mkdir(parents=True, exist_ok=True)
    # spec.raw has every path absolute (load_campaign): `hpo resume` and `hpo extend` work from any directory
    cdir.config_file.write_text(yaml.safe_dump(spec.raw, sort_keys=False))
    cdir.update_state(name=spec.config.name, uid=uuid.uuid4().hex, status="created", created=time.time(),
                      source=str(spec.source), runs=[{"name": "run-0", "trials": spec.config.budget.trials}])
    return _run(spec, cdir, prepared, run="run-0", trials=spec.config.budget.trials, progress=progress,
                reuse_actors=reuse_actors)


def resume(name: str, *, campaigns_dir: str | Path | None = None, address: str | None = None,
           progress: bool = True) -> RunOutcome:
    """Continue a stopped or crashed campaign (``hpo resume``): finished trials are not re-run."""
    cdir = CampaignDir.existing(name, campaigns_dir)
    state = cdir.state()
    if state.get("status") == "finished":
        raise HpoError(f"campaign '{name}' is finished; `hpo extend {name} --trials K` adds trials")
    with cdir.holding():  # before Ray: a second driver of the same campaign, on any host, is refused at once
        spec = load_campaign(cdir.config_file)
        prepared = prepare(spec, cdir, address)
    run = state["runs"][-1]
    return _run(spec, cdir, prepared, run=run["name"], trials=run["trials"], progress=progress, restore=True)


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
    with cdir.holding():
        spec = load_campaign(cdir.config_file)
        prepared = prepare(spec, cdir, address)
    runs = list(state.get("runs", []))
    run = f"run-{len(runs)}"
    cdir.update_state(runs=[*runs, {"name": run, "trials": trials}])
    return _run(spec, cdir, prepared, run=run, trials=trials, progress=progress)


def _preflight(spec: CampaignSpec) -> None:
    """Campaign-fatal checks that need more than the schema: the data file's content."""
    from trainables.data.checks import check_file
    from trainables.registry import load_workload

    kind = getattr(load_workload(spec.config.workload.name), "DATA_KIND", None)
    check_file(spec.config.workload.data.path, kind)


def _run(spec: CampaignSpec, cdir: CampaignDir, prepared: Prepared, *, run: str, trials: int, progress: bool,
         restore: bool = False, reuse_actors: bool = True) -> RunOutcome:
    """One Tune run of the campaign, holding the driver lock; the state and the parent run say how it ended, also
    on an error (then both say it crashed, and why)."""
    # `hpo stop` sends SIGUSR1. Tune handles it during fit(); before that, our handler notes it (the default
    # action would kill the driver without saving anything).
    stop_requested = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGUSR1, lambda *_: stop_requested.set())
    cdir.acquire()
    tracking: CampaignTracking | None = None
    with _driver_log(cdir):
        log.info("%s of campaign '%s' (run %s, %d trials) on %s", "resume" if restore else "run", cdir.name, run, trials,
                 prepared.cluster.describe())
        try:
            tracking = CampaignTracking.start(spec, cdir, prepared.tracking_uri)
            cdir.update_state(status="running", tracking_uri=redact(tracking.uri), storage=redact(prepared.storage),
                              cluster=prepared.cluster.describe(), fatal=None,
                              data_sha256=cdir.state().get("data_sha256") or _data_sha256(spec))
            if restore:  # what killed processes journaled but never delivered goes first, in order
                report = sync(cdir, deadline_s=60)
                log.info("delivered %d tracking operation(s) left in the spool; %d still held", report.delivered,
                         report.pending)
            started = time.time()
            fit_seconds = _fit(spec, cdir, prepared, tracking, run=run, trials=trials, progress=progress,
                               restore=restore, reuse_actors=reuse_actors, stop_requested=stop_requested)
        except BaseException as exc:
            # the campaign's state and its MLflow run both say it crashed, and why; `hpo resume` continues it
            log.exception("campaign '%s' crashed", cdir.name)
            reason = redact_text(f"{type(exc).__name__}: {exc}")[:500]
            cdir.update_state(status="crashed", driver_pid=None, message=f"crashed: {reason}")
            if tracking is not None:
                tracking.finish(spec, cdir, RunOutcome("crashed", reason), timeout=10)
            cdir.release()
            raise
        try:
            outcome = _outcome(spec, cdir, run, trials, started)
            outcome.fit_seconds = fit_seconds
            cdir.update_state(status=outcome.status, message=outcome.message, driver_pid=None)
            tracking.finish(spec, cdir, outcome)
            outcome.message += undelivered_note(cdir)
            log.info("%s", outcome.message)
        finally:
            cdir.release()
    return outcome


def _data_sha256(spec: CampaignSpec) -> str:
    from trainables.data.integrity import sha256_of

    return sha256_of(spec.config.workload.data.path)


@contextlib.contextmanager
def _driver_log(cdir: CampaignDir) -> Iterator[None]:
    """Append the driver's log (ours and Ray Tune's, INFO and up) to ``CAMPAIGN/driver.log`` inside the block."""
    handler = logging.FileHandler(cdir.driver_log, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    loggers = [logging.getLogger("hpo"), logging.getLogger("ray.tune")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        if lg.getEffectiveLevel() > logging.INFO:
            lg.setLevel(logging.INFO)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)
        handler.close()


def _fit(spec: CampaignSpec, cdir: CampaignDir, prepared: Prepared, tracking: Any, *, run: str, trials: int,
         progress: bool, restore: bool, reuse_actors: bool, stop_requested: threading.Event) -> float:
    """Build (or restore) the Tune run and fit it; returns fit()'s wall time (0 when stopped before it)."""
    from ray import tune

    monitor = _monitor(spec, cdir, run, trials)
    first_index = sum(1 for r in monitor.records.values() if r.get("run") != run)  # trials of earlier runs
    # Tune snapshots the run (which trials exist, which finished, their checkpoints) at most every 10 s by default:
    # a driver killed in between comes back to an older run, which re-runs the end of trials finished since and
    # forgets trials started since. A snapshot a second keeps that window short (they are small here).
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    with _live(cdir.name, progress), _campaign_metrics(spec, cdir, tracking):
        run_path = f"{prepared.storage}/{run}"
        if restore and tune.Tuner.can_restore(run_path):
            tuner = tune.Tuner.restore(
                run_path, trainable=_trainable(spec, cdir, tracking.trial_info(first_index)),
                resume_unfinished=True, resume_errored=False, restart_errored=False,
            )
        else:
            tuner = _tuner(spec, cdir, prepared.storage, run, trials, tracking.trial_info(first_index), monitor,
                           reuse_actors)
        if stop_requested.is_set():
            return 0.0
        fit_started = time.time()
        with contextlib.suppress(KeyboardInterrupt):
            tuner.fit()
        return time.time() - fit_started


@contextlib.contextmanager
def _campaign_metrics(spec: CampaignSpec, cdir: CampaignDir, tracking: CampaignTracking) -> Iterator[None]:
    """Inside the block, each trial's end logs the campaign's metrics to its parent run (and records the step)."""
    metrics = [o.metric for o in spec.config.search.objective]
    modes = [o.mode for o in spec.config.search.objective]

    def ended(records: Mapping[str, Mapping[str, Any]]) -> None:
        before = tracking.progress_step
        tracking.log_progress(records, metrics, modes)
        if tracking.progress_step != before:
            cdir.update_state(tracked_ended=tracking.progress_step)

    TRIAL_END_LISTENERS[cdir.name] = ended
    try:
        yield
    finally:
        TRIAL_END_LISTENERS.pop(cdir.name, None)
        tracking.close_progress()


def _outcome(spec: CampaignSpec, cdir: CampaignDir, run: str, trials: int, started: float) -> RunOutcome:
    c = spec.config
    records = cdir.trials()
    mine = [r for r in records.values() if r.get("run") == run]
    counts = TrialState.counts(records.values())
    done = sorted((r for r in mine if trial_done(r)), key=lambda r: r.get("ended", 0))
    failed = [r for r in done if r.get("state") == TrialState.FAILED]
    failed_in_row = 0
    for r in done:
        failed_in_row = failed_in_row + 1 if r.get("state") == TrialState.FAILED else 0
    objectives = c.search.objective
    ranked = ranked_records(records, [o.mode for o in objectives], len(records))
    best = ranked[:5]
    if len(objectives) > 1:
        front = sum(1 for r in ranked if r["pareto_rank"] == 1)
        best_text = f"; Pareto front of {', '.join(o.metric for o in objectives)}: {front} trial(s)" if front else ""
    else:
        best_text = f"; best {spec.metric} = {best[0]['objectives'][0]:.4g} (trial {best[0]['trial_id']})" if best else ""
    fatal = cdir.state().get("fatal")
    if fatal:
        return RunOutcome("failed", f"campaign '{c.name}' stopped, no new trials: {fatal}", counts, best)
    if failed_in_row >= c.budget.max_consecutive_failures:
        last = next((r.get("error") for r in reversed(done) if r.get("error")), "?")
        return RunOutcome("failed", f"campaign stopped: {failed_in_row} trials in a row failed; last error: {last}", counts, best)
    if failed and len(failed) == len(done) and len(done) >= trials:
        first = next((r.get("error") for r in failed if r.get("error")), "?")
        return RunOutcome("failed", f"campaign '{c.name}' failed: all {len(failed)} trials failed; first error: {first}",
                          counts, best)
    failed_text = f" ({len(failed)} failed)" if failed else ""
    if len(done) >= trials:
        return RunOutcome("finished", f"campaign '{c.name}' finished: {len(done)} trials{failed_text}{best_text}", counts, best)
    if c.budget.time is not None and time.time() - started >= c.budget.time * 0.98:
        return RunOutcome(
            "finished", f"campaign '{c.name}' finished (time budget reached): {len(done)} trials{failed_text}{best_text}",
            counts, best,
        )
    return RunOutcome(
        "stopped", f"campaign '{c.name}' stopped with {len(done)}/{trials} trials done; `hpo resume {c.name}` continues it",
        counts, best,
    )


def request_stop(name: str, *, campaigns_dir: str | Path | None = None, timeout: float = 300) -> str:
    """Ask the driver of campaign ``name`` to stop gracefully and wait until it has (``hpo stop``).

    The driver's pid is signalled only while it is still the process that took the campaign (same start time
    and command line as recorded in state.json); otherwise nothing is signalled.

    Raises:
        HpoError: the recorded pid cannot be verified as the driver, or it did not stop within ``timeout``.
    """
    from tracking.procs import ProcessRecord, mismatch

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
    driver = ProcessRecord.read(state, "driver_")
    if driver is None:
        raise HpoError(
            f"campaign '{name}': state.json records driver pid {state.get('driver_pid')} without its start time and "
            "command line (an older hpo wrote it), so it cannot be verified and was not signalled; stop the driver "
            f"with Ctrl-C where it runs, or `kill -USR1 {state.get('driver_pid')}` once `ps` shows it is the driver"
        )
    why = mismatch(driver)
    if why is not None:
        raise HpoError(f"campaign '{name}': driver pid {driver.pid} in state.json is no longer its driver: {why}; not "
                       "signalled; stop the driver where it runs (Ctrl-C)")
    pid = driver.pid
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
