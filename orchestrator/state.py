"""Campaign state on disk: ``CAMPAIGNS_DIR/NAME/``.

Layout (everything a campaign needs to be listed, inspected, stopped, resumed or extended)::

    campaign.yaml     the campaign file as run (overrides applied, every path absolute)
    state.json        status, driver pid/host, runs (one per launch/extend), tracking info
    trials.json       one record per trial: state, parameters, last and best metrics, error
    study.db          the Optuna study (SQLite): every trial ever run, so samplers warm-start on extend
    tune/RUN/         Ray Tune's experiment directory of each run (what resume restores)
    trials/TRIAL/     each trial's output: checkpoints, plots, exported model
    spool/            journals of tracking operations not yet delivered to MLflow (tracking/spool.py),
                      and the files they upload
    driver.log        the driver's log: runs, resumes, trial failures, tracking delays, how each run ended
    tracking.json     MLflow URI, experiment and parent run id (read by ``hpo best``/``hpo promote``)
    driver.lock       locked (flock) by the live driver, from whichever host it runs on

JSON files are written atomically (temporary file + rename) so that a crash never leaves one half-written.
The default campaigns directory is ``./campaigns``; ``--campaigns-dir`` or ``HPO_CAMPAIGNS_DIR`` change it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from trainables.errors import HpoError

DEFAULT_CAMPAIGNS_DIR = "campaigns"

#: Campaign statuses, as stored in state.json.
STATUSES = ("created", "running", "stopping", "stopped", "finished", "failed", "crashed")


class TrialState(StrEnum):
    """A trial's state, as ``trials.json``, ``hpo status``, the Python API and the live table spell it.

    Ours, not Ray Tune's (PENDING/RUNNING/PAUSED/TERMINATED/ERROR): Tune's TERMINATED is FINISHED or STOPPED
    by the epochs the trial ran, and its ERROR is FAILED once no retry is left. Members are strings, so a
    record compares equal to and serialises as the plain name (``"FINISHED"``).
    """

    PENDING = "PENDING"
    """Not started yet, or waiting to be retried from its last checkpoint after a failure."""
    RUNNING = "RUNNING"
    """Training (it has started and reported no end)."""
    PAUSED = "PAUSED"
    """Interrupted with the campaign (``hpo stop``, Ctrl-C, a crash); ``hpo resume`` continues it."""
    FINISHED = "FINISHED"
    """Ran all its epochs. Done, with objective values."""
    STOPPED = "STOPPED"
    """Ended early by the scheduler (ASHA, HyperBand, median stopping). Done, with objective values."""
    FAILED = "FAILED"
    """Raised with no retry left (``error`` says why). Done, without objective values."""

    @property
    def done(self) -> bool:
        """Whether the trial ended for good (FINISHED, STOPPED or FAILED): it counts against the budget."""
        return self in (TrialState.FINISHED, TrialState.STOPPED, TrialState.FAILED)

    @property
    def scored(self) -> bool:
        """Whether the trial ended with objective values (FINISHED or STOPPED): it can rank as best."""
        return self in (TrialState.FINISHED, TrialState.STOPPED)

    @classmethod
    def of(cls, value: Any) -> TrialState | None:
        """The state named ``value`` (a record's ``"state"``), or None when it names none."""
        try:
            return cls(value)
        except ValueError:
            return None

    @classmethod
    def counts(cls, records: Iterable[Mapping[str, Any]]) -> dict[str, int]:
        """Trials per state of ``records`` (trials.json values), states in this enum's order; a name that is
        not a state (a hand-edited file) is counted under that name, a missing one under ``"?"``."""
        found: dict[str, int] = {}
        for record in records:
            name = str(record.get("state", "?"))
            found[name] = found.get(name, 0) + 1
        ordered = {str(s): found.pop(s) for s in cls if s in found}
        return {**ordered, **found}


def campaigns_root(explicit: str | Path | None = None) -> Path:
    """The campaigns directory: explicit > ``$HPO_CAMPAIGNS_DIR`` > ``./campaigns``."""
    return Path(explicit or os.environ.get("HPO_CAMPAIGNS_DIR") or DEFAULT_CAMPAIGNS_DIR).absolute()


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (never leaves a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path, default: Any = None) -> Any:
    """Read JSON, or ``default`` when the file does not exist."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default


@dataclass(frozen=True)
class CampaignDir:
    """Paths and state files of one campaign."""

    root: Path

    @classmethod
    def of(cls, name: str, campaigns_dir: str | Path | None = None) -> CampaignDir:
        """The directory of campaign ``name`` (which may not exist yet).

        Raises:
            HpoError: ``name`` is not a campaign name (``../x``, ``a/b``, ``..``, ...), by the rule the campaign
                file's ``name`` follows; nothing is touched on disk.
        """
        # the rule lives with the schema (config never imports state, so no cycle)
        from orchestrator.config import name_problem

        problem = name_problem(name)
        if problem is not None:
            raise HpoError(f"campaign NAME {problem}")
        return cls(campaigns_root(campaigns_dir) / name)

    @classmethod
    def existing(cls, name: str, campaigns_dir: str | Path | None = None) -> CampaignDir:
        """The directory of an existing campaign, or a one-line error listing the known ones (or saying why
        ``name`` is no campaign name)."""
        found = cls.of(name, campaigns_dir)
        if not found.state_file.exists():
            root = campaigns_root(campaigns_dir)
            known = sorted(p.name for p in root.glob("*") if (p / "state.json").exists()) if root.exists() else []
            hint = f"known campaigns: {', '.join(known)}" if known else f"no campaigns under {root} yet; start one with hpo launch"
            raise HpoError(f"campaign '{name}' not found under {root}; {hint} (or pass --campaigns-dir)")
        return found

    @property
    def name(self) -> str:
        """Campaign name (the directory name)."""
        return self.root.name

    state_file = property(lambda self: self.root / "state.json")
    trials_file = property(lambda self: self.root / "trials.json")
    config_file = property(lambda self: self.root / "campaign.yaml")
    study_db = property(lambda self: self.root / "study.db")
    tune_dir = property(lambda self: self.root / "tune")
    trials_dir = property(lambda self: self.root / "trials")
    spool_dir = property(lambda self: self.root / "spool")
    tracking_file = property(lambda self: self.root / "tracking.json")
    lock_file = property(lambda self: self.root / "driver.lock")
    driver_log = property(lambda self: self.root / "driver.log")

    @property
    def study_url(self) -> str:
        """SQLAlchemy URL of the Optuna study."""
        return f"sqlite:///{self.study_db}"

    def state(self) -> dict[str, Any]:
        """The content of state.json (empty dict when new)."""
        return dict(read_json(self.state_file, {}))

    def update_state(self, **changes: Any) -> dict[str, Any]:
        """Merge ``changes`` into state.json (atomically) and return the new state."""
        state = self.state()
        state.update(changes)
        state["updated"] = time.time()
        write_json(self.state_file, state)
        return state

    def trials(self) -> dict[str, dict[str, Any]]:
        """The per-trial records, keyed by trial id."""
        return dict(read_json(self.trials_file, {}))

    def write_trials(self, trials: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace trials.json atomically."""
        write_json(self.trials_file, trials)

    def driver_alive(self) -> bool:
        """Whether a driver holds this campaign: the lock file is locked, by this or any other process on any
        host that shares the campaigns directory (flock over NFS and Lustre is taken by the server)."""
        if self.root in _HELD:
            return True
        try:
            fd = os.open(self.lock_file, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing also drops a lock taken just now
        return False

    def acquire(self) -> None:
        """Become the campaign's driver: lock ``driver.lock`` for the life of this process (or until
        :meth:`release`) and record pid, start time, command line and host (``driver_*`` in state.json); refuse
        when another driver holds it."""
        if self.root not in _HELD:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                state = self.state()
                raise HpoError(
                    f"campaign '{self.name}' is already running (driver pid {state.get('driver_pid')} on "
                    f"{state.get('driver_host')}); watch it with `hpo status {self.name}` or stop it with "
                    f"`hpo stop {self.name}`"
                ) from None
            _HELD[self.root] = fd
        from tracking.procs import record

        # pid, start time and command line: `hpo stop` signals the pid only while it is still this process
        me = record(os.getpid())
        self.update_state(**me.fields("driver_"), driver_host=socket.gethostname())

    def release(self) -> None:
        """Give the driver lock up (the process ending does too)."""
        fd = _HELD.pop(self.root, None)
        if fd is not None:
            os.close(fd)

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """Hold the driver lock inside the block; release it when the block raises (it is kept otherwise)."""
        self.acquire()
        try:
            yield
        except BaseException:
            self.release()
            raise


#: Driver locks this process holds: campaign root -> locked file descriptor.
_HELD: dict[Path, int] = {}
