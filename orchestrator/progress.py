"""What the driver knows about its trials: a Ray Tune callback that keeps one record per trial,
writes them to ``trials.json`` (for ``hpo status`` from another shell), stops a campaign whose trials
keep failing, and renders a live rich table in a terminal or a notebook.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.tune import Callback
from ray.tune.stopper import Stopper
from rich.console import Group
from rich.table import Table
from rich.text import Text

from orchestrator.state import CampaignDir, TrialState

if TYPE_CHECKING:
    from ray.tune.experiment import Trial
    from rich.live import Live

log = logging.getLogger("hpo")

#: Live displays by campaign name. Tune pickles callbacks into its experiment state (and a restored run
#: unpickles them), so the monitor looks its display up here instead of holding it.
LIVE_DISPLAYS: dict[str, Live] = {}

#: Called with the trial records each time a trial ends (finished, stopped or failed for good), by campaign name;
#: the driver logs the campaign's metrics to its parent run from here. Looked up like :data:`LIVE_DISPLAYS`.
TRIAL_END_LISTENERS: dict[str, Callable[[Mapping[str, Mapping[str, Any]]], None]] = {}

#: How the live table colours each trial state.
STATE_STYLE: dict[TrialState, str] = {
    TrialState.PENDING: "dim", TrialState.RUNNING: "cyan", TrialState.PAUSED: "yellow", TrialState.FINISHED: "green",
    TrialState.STOPPED: "blue", TrialState.FAILED: "red",
}


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


#: ``trainables.errors.TrialError: `` before a message: the class says nothing the message does not.
_EXCEPTION_CLASS = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?(?:TrialError|HpoError|DataError|DataChangedError): ")

#: Trial errors that end the whole campaign at once: every trial after them would fail the same way, or train on
#: other data than the trials that finished (:class:`trainables.errors.DataChangedError`).
CAMPAIGN_FATAL = ("DataChangedError",)


def _campaign_fatal(trial: Trial) -> bool:
    """Whether the trial's error is one of :data:`CAMPAIGN_FATAL` (read from its error file)."""
    path = getattr(trial, "error_file", None)
    if not path or not Path(path).exists():
        return False
    text = Path(path).read_text(errors="replace")
    return any(name in text for name in CAMPAIGN_FATAL)


def _error_text(trial: Trial) -> str:
    """Last meaningful line of the trial's error (the exception message, not the traceback)."""
    path = getattr(trial, "error_file", None)
    if path and Path(path).exists():
        lines = [ln.strip() for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
        for line in reversed(lines):
            if not line.startswith(("File ", "^", "~")) and ":" in line:
                return _EXCEPTION_CLASS.sub("", line)[-500:]
        if lines:
            return lines[-1][-500:]
    return "failed (no error file)"


def better(a: float | None, b: float | None, mode: str) -> bool:
    """Whether objective value ``a`` is better than ``b`` under ``mode``."""
    if a is None:
        return False
    if b is None:
        return True
    return a < b if mode == "min" else a > b


class CampaignMonitor(Callback):
    """Keeps ``trials.json`` current, counts consecutive failures and draws the live table.

    Args:
        cdir: the campaign directory.
        metrics: objective metric names (the first one ranks trials).
        modes: their modes.
        epochs: epochs per trial (to tell finished from stopped early).
        budget: trials requested (for the footer).
        max_consecutive_failures: trials in a row that may fail for good before the campaign stops.
        run: name of the Tune run (launch or extension) these trials belong to.
    """

    def __init__(
        self, cdir: CampaignDir, *, metrics: Sequence[str], modes: Sequence[str], epochs: int, budget: int,
        max_consecutive_failures: int, run: str = "run-0",
    ) -> None:
        self.cdir = cdir
        self.metrics = list(metrics)
        self.modes = list(modes)
        self.epochs = epochs
        self.budget = budget
        self.max_consecutive_failures = max_consecutive_failures
        self.run = run
        self.records: dict[str, dict[str, Any]] = cdir.trials()
        self.consecutive_failures = 0
        self.last_error: str | None = None
        self.fatal: str | None = None  # a campaign-fatal trial error (CAMPAIGN_FATAL): no new trials
        self.started = time.time()
        self._last_write = 0.0

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "records"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A restored run (hpo resume): trial records and the failure count come from disk, not the pickle.
        self.__dict__.update(state)
        self.records = self.cdir.trials()
        self.consecutive_failures = 0
        self.fatal = None
        self.started = time.time()
        self._last_write = 0.0

    # --- Tune hooks (each is called by the driver's event loop) ------------------------------------

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        """A trial (or its retry) started running."""
        record = self._record(trial)
        record["state"] = TrialState.RUNNING
        record.setdefault("started", time.time())
        self._changed(force=True)

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any) -> None:
        """A trial reported one epoch."""
        record = self._record(trial)
        record["state"] = TrialState.RUNNING
        record["epoch"] = int(result.get("training_iteration", 0))
        record["last"] = {k: v for k, v in result.items() if _finite(v) is not None and (k in self.metrics or k.startswith(("val_", "train_", "hpo.")))}
        value = _finite(result.get(self.metrics[0]))
        if better(value, record.get("best"), self.modes[0]):
            record["best"] = value
        self._changed()

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        """A trial ended without error: all epochs done, or stopped by the scheduler."""
        record = self._record(trial)
        epochs = int((trial.last_result or {}).get("training_iteration", record.get("epoch", 0)) or 0)
        state = TrialState.FINISHED if epochs >= self.epochs else TrialState.STOPPED
        if record.get("state") != state or "ended" not in record:  # a restored finished trial is not re-ended
            record["ended"] = time.time()
        record["state"] = state
        record["objectives"] = [_finite((trial.last_result or {}).get(m)) for m in self.metrics]
        self.consecutive_failures = 0
        self._changed(force=True)
        self._ended()

    def on_trial_recover(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        """A trial failed and will be retried from its last checkpoint."""
        record = self._record(trial)
        record["retries"] = record.get("retries", 0) + 1
        record["state"] = TrialState.PENDING
        record["last_error"] = _error_text(trial)
        log.warning("trial %s failed (attempt %d), retried from its last checkpoint: %s", trial.trial_id,
                    record["retries"], record["last_error"])
        if self._check_fatal(trial, record["last_error"]):  # no retry will come: the campaign stops here
            record.update(state=TrialState.FAILED, ended=time.time(), error=record["last_error"])
        self._changed(force=True)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        """A trial failed for good (no retries left)."""
        record = self._record(trial)
        record["state"] = TrialState.FAILED
        record["ended"] = time.time()
        record["error"] = self.last_error = _error_text(trial)
        log.error("trial %s failed for good: %s", trial.trial_id, record["error"])
        self._check_fatal(trial, record["error"])
        self.consecutive_failures += 1
        self._changed(force=True)
        self._ended()

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        """Refresh the live table about once a second."""
        self._changed()

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        """The Tune run ended (finished, stopped or interrupted)."""
        for trial in trials:
            record = self._record(trial)
            if record["state"] == TrialState.RUNNING:
                record["state"] = TrialState.PAUSED  # interrupted: resumable from its last checkpoint
        # A trial the driver started just before it was killed, after Tune's last snapshot of the run: the restored
        # run does not know it, so nothing will ever continue it (Tune ran another trial in its place)
        known = {trial.trial_id for trial in trials}
        for trial_id, record in self.records.items():
            if record.get("run") == self.run and trial_id not in known and record.get("state") in (
                    TrialState.PENDING, TrialState.RUNNING, TrialState.PAUSED):
                record.update(state=TrialState.FAILED, ended=time.time(), error=(
                    "lost: the driver was killed before Ray Tune recorded this trial, so the resumed run could not "
                    "continue it; another trial took its place in the budget"))
                log.warning("trial %s: %s", trial_id, record["error"])
        self._changed(force=True)

    # --- state -----------------------------------------------------------------------------------

    @property
    def too_many_failures(self) -> bool:
        """Whether the campaign should stop because its trials keep failing, or one failed in a way that ends it."""
        return self.consecutive_failures >= self.max_consecutive_failures or self.fatal is not None

    def _check_fatal(self, trial: Trial, message: str) -> bool:
        """Whether the trial's error ends the campaign (:data:`CAMPAIGN_FATAL`); the first one is recorded."""
        if not _campaign_fatal(trial):
            return False
        if self.fatal is None:
            self.fatal = message
            self.cdir.update_state(fatal=message)  # the run's outcome says why it stopped
            log.error("campaign '%s' stops, no new trials: %s", self.cdir.name, message)
        return True

    def _record(self, trial: Trial) -> dict[str, Any]:
        record = self.records.setdefault(trial.trial_id, {"trial_id": trial.trial_id, "state": TrialState.PENDING, "run": self.run})
        record["params"] = {k: v for k, v in (trial.config or {}).items() if not k.startswith("__")}
        record["path"] = str(self.cdir.trials_dir / trial.trial_id)
        return record

    def _ended(self) -> None:
        listener = TRIAL_END_LISTENERS.get(self.cdir.name)
        if listener is not None:
            try:
                listener(self.records)
            except Exception as exc:  # the campaign's metrics are a view; a trial's end must not fail on them
                log.warning("could not log the campaign's metrics: %s", exc)

    def _changed(self, force: bool = False) -> None:
        now = time.time()
        if not force and now - self._last_write < 1.0:
            return
        self._last_write = now
        self.cdir.write_trials(self.records)
        live = LIVE_DISPLAYS.get(self.cdir.name)
        if live is not None:
            live.update(render_trials(self.records, self.metrics, self.modes, budget=self.budget, elapsed=now - self.started))


class FailureStopper(Stopper):
    """Stops the whole campaign once :class:`CampaignMonitor` has seen too many failures in a row."""

    def __init__(self, monitor: CampaignMonitor) -> None:
        self.monitor = monitor

    def __call__(self, trial_id: str, result: dict) -> bool:
        """Never stops a single trial (the scheduler does that)."""
        return False

    def stop_all(self) -> bool:
        """Stop everything after ``max_consecutive_failures`` failures in a row."""
        return self.monitor.too_many_failures


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def trial_scored(record: Mapping[str, Any]) -> bool:
    """Whether a trial record ended with objective values (FINISHED or STOPPED)."""
    state = TrialState.of(record.get("state"))
    return state is not None and state.scored


def trial_done(record: Mapping[str, Any]) -> bool:
    """Whether a trial record ended for good (FINISHED, STOPPED or FAILED)."""
    state = TrialState.of(record.get("state"))
    return state is not None and state.done


def best_records(records: Mapping[str, Mapping[str, Any]], metric_index: int, mode: str, k: int) -> list[Mapping[str, Any]]:
    """The ``k`` best finished/stopped trials by objective ``metric_index`` alone."""
    scored = [
        r for r in records.values()
        if trial_scored(r) and len(r.get("objectives") or []) > metric_index and r["objectives"][metric_index] is not None
    ]
    scored.sort(key=lambda r: r["objectives"][metric_index], reverse=mode == "max")
    return scored[:k]


def pareto_ranks(points: Sequence[Sequence[float]], modes: Sequence[str]) -> list[int]:
    """Non-dominated sorting (Deb et al., NSGA-II): the Pareto rank of each point.

    Point ``a`` dominates ``b`` when ``a`` is at least as good in every objective and better in at least
    one (``modes[i]`` says whether objective ``i`` is minimised or maximised). Rank 1 is the Pareto front
    (points nothing dominates); rank 2 is the front of what is left once rank 1 is removed; and so on.
    Equal points share their rank.

    Raises:
        ValueError: a mode is neither ``min`` nor ``max``, or a point has not one value per mode.
    """
    import numpy as np

    if any(m not in ("min", "max") for m in modes):
        raise ValueError(f"every mode must be 'min' or 'max', but got {list(modes)}")
    if any(len(p) != len(modes) for p in points):
        bad = next(p for p in points if len(p) != len(modes))
        raise ValueError(f"every point needs one value per objective ({len(modes)}), but got {list(bad)}")
    if not points:
        return []
    # as minimisation: larger is better where the mode is max
    values = np.asarray(points, dtype=float) * np.asarray([1.0 if m == "min" else -1.0 for m in modes])
    no_worse = (values[:, None, :] <= values[None, :, :]).all(axis=2)
    better = (values[:, None, :] < values[None, :, :]).any(axis=2)
    dominates = no_worse & better  # [i, j]: point i dominates point j
    dominated_by = dominates.sum(axis=0)  # how many not-yet-ranked points dominate each point
    ranks = np.zeros(len(points), dtype=int)
    front = np.flatnonzero(dominated_by == 0)
    rank = 1
    while front.size:
        ranks[front] = rank
        dominated_by = dominated_by - dominates[front].sum(axis=0)
        dominated_by[ranks > 0] = -1  # ranked points never rejoin a front
        front = np.flatnonzero(dominated_by == 0)
        rank += 1
    return [int(r) for r in ranks]


def pareto_records(records: Mapping[str, Mapping[str, Any]], modes: Sequence[str], k: int) -> list[dict[str, Any]]:
    """The ``k`` best finished/stopped trials by non-domination over every objective: Pareto rank 1 first,
    then rank 2, ...; within a rank by the first objective. Each is a copy of its record with its rank
    added as ``pareto_rank``. Trials missing an objective value are left out."""
    scored = [r for r in records.values() if trial_scored(r) and len(r.get("objectives") or []) == len(modes)
              and all(v is not None for v in r["objectives"])]
    ranks = pareto_ranks([r["objectives"] for r in scored], modes)
    sign = 1.0 if modes[0] == "min" else -1.0
    order = sorted(range(len(scored)), key=lambda i: (ranks[i], sign * scored[i]["objectives"][0]))
    return [{**scored[i], "pareto_rank": ranks[i]} for i in order[:k]]


def ranked_records(records: Mapping[str, Mapping[str, Any]], modes: Sequence[str], k: int) -> list[dict[str, Any]]:
    """The ``k`` best finished/stopped trials of a campaign with objectives of ``modes``: by the single
    objective, or, with several, by non-domination (:func:`pareto_records`)."""
    if len(modes) > 1:
        return pareto_records(records, modes, k)
    return [dict(r) for r in best_records(records, 0, modes[0], k)]


def render_trials(
    records: Mapping[str, Mapping[str, Any]], metrics: Sequence[str], modes: Sequence[str], *, budget: int | None = None,
    elapsed: float | None = None, max_rows: int = 25,
) -> Group:
    """A rich table of the trials (most recent last) with a footer: counts and the best so far."""
    rows = sorted(records.values(), key=lambda r: r.get("started") or math.inf)
    param_names: list[str] = []
    for r in rows:
        for name in r.get("params", {}):
            if name not in param_names:
                param_names.append(name)
    table = Table(expand=False, title_justify="left")
    table.add_column("trial", no_wrap=True)
    table.add_column("state")
    for name in param_names[:6]:
        table.add_column(name, overflow="fold")
    table.add_column("epoch", justify="right")
    for metric, mode in zip(metrics, modes, strict=True):
        table.add_column(f"{metric} ({mode})", justify="right")
    table.add_column("note", overflow="fold", max_width=50)
    shown = rows[-max_rows:]
    for r in shown:
        state = r.get("state", "?")
        last = r.get("last", {})
        values = r.get("objectives") if trial_scored(r) else [last.get(m) for m in metrics]
        note = r.get("error") or (
            f"retry {r['retries']}: {r.get('last_error', '')}" if r.get("retries") and state != TrialState.FINISHED else ""
        )
        table.add_row(
            r["trial_id"], Text(state, style=STATE_STYLE.get(state, "")),
            *[_fmt(r.get("params", {}).get(n, "—")) for n in param_names[:6]],
            str(r.get("epoch", "")), *[_fmt(v) if v is not None else "" for v in (values or [])],
            Text(note[:200], style="red") if note else "",
        )
    counts = TrialState.counts(rows)
    summary = ", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n)
    done = sum(1 for r in rows if trial_done(r))
    footer = f"{done}/{budget} trials done" if budget else f"{done} trials done"
    footer += f" ({summary})" if summary else ""
    if elapsed is not None:
        footer += f" · {elapsed:.0f} s"
    if len(modes) > 1:
        front = [r for r in pareto_records(records, modes, len(records)) if r["pareto_rank"] == 1]
        if front:
            footer += f" · Pareto front: {len(front)} trial(s)"
    else:
        best = best_records(records, 0, modes[0], 1)
        if best:
            footer += f" · best {metrics[0]} = {best[0]['objectives'][0]:.4g} ({best[0]['trial_id']})"
    hidden = f"\n({len(rows) - len(shown)} earlier trials not shown)" if len(rows) > len(shown) else ""
    return Group(table, Text(footer + hidden, style="bold"))
