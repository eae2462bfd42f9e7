"""Tracking operations journaled to disk before they count as queued, so that a killed process loses none.

Every logger (a trial attempt, or the campaign's parent run) appends its operations to its own journal
``SPOOL/<key>.jsonl``: one JSON object per line, flushed and fsynced before :meth:`Journal.append` returns.
Line 0 is the header: the tracking URI and experiment, and how to find the run (its id, or the tags that
identify it and those to create it with). Operations are numbered ``seq`` 1, 2, ...; delivery appends
``{"ack": seq}`` lines. A half-written last line (the process died while writing it) is ignored.

The owner holds an exclusive ``flock`` on its journal while it lives. A journal that nobody holds and whose
operations are not all acknowledged is an **orphan**: its process was killed, or gave up waiting for the
server. The next trial, ``hpo resume`` and ``hpo sync`` deliver orphans, in order, and delete each journal
(and the upload files it staged next to it) once everything in it has arrived. Delivery is at least once:
an operation acknowledged by the server but not yet in the journal is sent again on replay, which is
harmless, because every operation is idempotent. Metrics carry the timestamp of their first queueing and
MLflow's store drops exact duplicates, parameters are only added, tags, artifacts and status are overwritten.

Operations are plain data (:func:`apply` executes one), never closures, so that any process can replay them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("hpo.tracking")

SUFFIX = ".jsonl"


def permanent(exc: BaseException) -> bool:
    """Whether an error can never succeed on retry: a missing or unreadable local file, or an HTTP 4xx
    answer (other than 408 timeout and 429 too many requests). Connection errors and 5xx are transient."""
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)):
        return True
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        status = exc.get_http_status_code()
        return 400 <= status < 500 and status not in (408, 429)
    return False


def describe(exc: BaseException) -> str:
    """One line for an error (MLflow's carry whole response bodies)."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


@dataclass
class Pending:
    """A journal's header and the operations not yet acknowledged, in order."""

    path: Path
    header: dict[str, Any]
    ops: list[dict[str, Any]] = field(default_factory=list)


def read(path: Path) -> Pending | None:
    """The header and unacknowledged operations of journal ``path`` (None when it has no header)."""
    header: dict[str, Any] | None = None
    ops: dict[int, dict[str, Any]] = {}
    acked: set[int] = set()
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return None
    for line in lines:
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue  # the last line of a process killed while writing it
        if not isinstance(item, dict):
            continue
        if "ack" in item:
            acked.add(int(item["ack"]))
        elif item.get("seq") == 0:
            header = item
        elif "op" in item:
            ops[int(item["seq"])] = item
    if header is None:
        return None
    return Pending(path, header, [ops[s] for s in sorted(ops) if s not in acked])


class Journal:
    """One logger's journal, locked by its owner for as long as it is open.

    Args:
        path: the journal file (created; its directory too).
        header: how to find the run (see the module docstring); ``stage`` may name a directory of upload
            files that goes with the journal.
    """

    def __init__(self, path: Path, header: Mapping[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.header = dict(header)
        self.seq = 0
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        self._write({**self.header, "seq": 0})

    def _write(self, item: Mapping[str, Any]) -> None:
        if self._fd is None:
            raise ValueError(f"journal {self.path} is closed")
        os.write(self._fd, (json.dumps(item, default=str) + "\n").encode())
        os.fsync(self._fd)

    def append(self, op: Mapping[str, Any]) -> int:
        """Write ``op`` durably; returns its sequence number."""
        self.seq += 1
        self._write({**op, "seq": self.seq})
        return self.seq

    def ack(self, seq: int) -> None:
        """Operation ``seq`` has been delivered (or dropped for good)."""
        self._write({"ack": seq})

    def close(self, complete: bool) -> None:
        """Release the journal; when everything in it was delivered, delete it and its staged files."""
        if self._fd is None:
            return
        if complete:
            remove(self.path, self.header)
        os.close(self._fd)
        self._fd = None


def remove(path: Path, header: Mapping[str, Any]) -> None:
    """Delete a complete journal and the directory of upload files staged for it."""
    path.unlink(missing_ok=True)
    if header.get("stage"):
        shutil.rmtree(header["stage"], ignore_errors=True)


@contextlib.contextmanager
def claim(path: Path) -> Iterator[bool]:
    """Lock an orphan journal for delivery; yields False when its owner (or another deliverer) holds it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    except FileNotFoundError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def journals(spool_dir: str | Path | None) -> list[Path]:
    """The journals in ``spool_dir``, oldest first (their names start with a time)."""
    if not spool_dir or not Path(spool_dir).is_dir():
        return []
    return sorted(Path(spool_dir).glob(f"*{SUFFIX}"))


def pending_count(spool_dir: str | Path | None) -> tuple[int, int]:
    """(operations not delivered, journals holding them) in ``spool_dir``."""
    found = [p for p in (read(path) for path in journals(spool_dir)) if p is not None and p.ops]
    return sum(len(p.ops) for p in found), len(found)


# --- executing operations --------------------------------------------------------------------------------

@dataclass
class RunTarget:
    """The run a journal's operations go to, once resolved, and the last epoch it holds.

    ``epoch`` guards against a step logged twice: a trial resumed from an older checkpoint than its latest (Ray
    Tune restores the checkpoint its last snapshot of the run names; a killed driver's may lag behind) trains
    some epochs again. Their first values stay; the repeated ones are not logged again (and counted). A
    ``rewind`` operation (a PBT exploit: another lineage from that epoch on) lowers it, so that the new
    lineage's epochs are logged.
    """

    run_id: str | None = None
    epoch: int = 0
    repeated: list[int] = field(default_factory=list)


#: The framework's per-epoch metric whose history says which epochs a run holds.
EPOCH_METRIC = "hpo.epoch"


def resolve_run(c: Any, header: Mapping[str, Any], *, reopen: bool) -> RunTarget:
    """The run a journal logs to: its id, or found by tags (created when missing). ``reopen`` (the owner's first
    delivery) marks a found run RUNNING again; a replay never changes a run's status by finding it."""
    from tracking.client import find_run, log_params

    if header.get("run_id"):
        return RunTarget(str(header["run_id"]))
    run_id = find_run(c, header["experiment"], header["find"])
    epoch = 0
    if run_id is None:
        run = c.create_run(header["experiment"], tags=header.get("create_tags", {}), run_name=header.get("run_name"))
        run_id = str(run.info.run_id)
    else:
        if reopen:  # a retried or resumed trial: same run, running again
            c.update_run(run_id, status="RUNNING")
        epoch = max((m.step for m in c.get_metric_history(run_id, EPOCH_METRIC)), default=0)
    if header.get("params"):
        log_params(c, run_id, header["params"])
    return RunTarget(run_id, epoch)


def apply(c: Any, run_id: str, op: Mapping[str, Any]) -> None:
    """Execute one journaled operation on run ``run_id`` with MLflow client ``c``."""
    from mlflow.entities import Metric

    from tracking.client import log_params

    kind = op["op"]
    if kind == "metrics":
        c.log_batch(run_id, metrics=[Metric(k, float(v), int(ts), int(step)) for k, v, ts, step in op["metrics"]])
    elif kind == "params":
        log_params(c, run_id, op["params"])
    elif kind == "tags":
        for key, value in op["tags"].items():
            c.set_tag(run_id, key, value)
    elif kind == "artifacts":
        if not Path(op["dir"]).is_dir():
            raise FileNotFoundError(f"{op['dir']} is gone (its node's staging directory?)")
        c.log_artifacts(run_id, op["dir"], op.get("path"))
    elif kind == "artifact":
        c.log_artifact(run_id, op["file"], op.get("path"))
    elif kind == "model":
        from tracking.models import log_exported_model

        log_exported_model(c, run_id, op["dir"])
    elif kind == "dict":
        c.log_dict(run_id, op["data"], op["file"])
    elif kind == "finish":
        _finish(c, run_id, op)
    elif kind == "reconcile":
        reconcile(c, op["experiment"], op["uid"], op["states"])
    else:
        raise ValueError(f"unknown tracking operation {kind!r}")


#: Our final trial states -> MLflow run statuses.
RUN_STATUS = {"FINISHED": "FINISHED", "STOPPED": "KILLED", "FAILED": "FAILED", "finished": "FINISHED",
              "failed": "FAILED", "stopped": "KILLED", "crashed": "FAILED"}


def _finish(c: Any, run_id: str, op: Mapping[str, Any]) -> None:
    """Close a run: its state tag, its error (an earlier attempt's error moves to ``hpo.attempt_errors``), its status."""
    from tracking.client import TAG_STATE

    tags = c.get_run(run_id).data.tags
    earlier = tags.get("hpo.error")
    error = op.get("error")
    if earlier and earlier != error:
        history = json.loads(tags.get("hpo.attempt_errors", "[]"))
        if earlier not in history:
            history.append(earlier)
        c.set_tag(run_id, "hpo.attempt_errors", json.dumps(history)[-5000:])
    if error:
        c.set_tag(run_id, "hpo.error", error[:5000])
    elif earlier:
        c.delete_tag(run_id, "hpo.error")
    c.set_tag(run_id, TAG_STATE, op["state"])
    c.set_terminated(run_id, status=RUN_STATUS.get(op["state"], "KILLED"))


def reconcile(c: Any, experiment: str, uid: str, states: Mapping[str, str]) -> int:
    """Close trial runs of launch ``uid`` still RUNNING (their process was killed before it could) with the state
    the campaign recorded for the trial; returns how many were closed."""
    from tracking.client import TAG_ROLE, TAG_STATE, TAG_TRIAL, TAG_UID

    runs = c.search_runs([experiment], filter_string=f"tags.`{TAG_UID}` = '{uid}' and tags.`{TAG_ROLE}` = 'trial' "
                         "and attributes.status = 'RUNNING'", max_results=1000)
    for run in runs:
        state = states.get(run.data.tags.get(TAG_TRIAL, ""), "PAUSED")
        c.set_tag(run.info.run_id, TAG_STATE, state)
        c.set_terminated(run.info.run_id, status=RUN_STATUS.get(state, "KILLED"))
    return len(runs)


# --- delivery ----------------------------------------------------------------------------------------------

@dataclass
class DeliveryReport:
    """What a deliverer delivered and what it could not."""

    delivered: int = 0
    pending: int = 0
    dropped: int = 0  # operations that can never succeed (errors says why)
    errors: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Everything was delivered (or dropped with an error)."""
        return self.pending == 0

    def note(self, message: str) -> None:
        """Record an error once (a retry loop would repeat it)."""
        if not self.errors or self.errors[-1] != message:
            self.errors.append(message)
            self.errors[:] = self.errors[-50:]


class Deliverer:
    """Delivers a journal's operations in order: transient errors are retried with back-off (doubling from
    ``retry_s`` up to ``max_retry_s``) until ``deadline``; permanent ones drop the operation with a message."""

    def __init__(self, report: DeliveryReport, *, retry_s: float = 1.0, max_retry_s: float = 10.0,
                 deadline: Callable[[], bool] = lambda: False, label: str = "") -> None:
        self.report = report
        self.retry_s, self.max_retry_s = retry_s, max_retry_s
        self.deadline = deadline
        self.label = label
        self._clients: dict[str, Any] = {}

    def client(self, uri: str) -> Any:
        """A client per tracking URI (created once)."""
        if uri not in self._clients:
            from tracking.client import client

            self._clients[uri] = client(uri)
        return self._clients[uri]

    def deliver(self, header: Mapping[str, Any], seq: int, op: Mapping[str, Any], run: RunTarget, *,
                reopen: bool = False) -> bool:
        """Deliver one operation to ``run`` (resolved on first use); False when the deadline came first."""
        backoff = self.retry_s
        while True:
            try:
                c = self.client(header["uri"])
                if run.run_id is None:
                    found = resolve_run(c, header, reopen=reopen)
                    run.run_id, run.epoch = found.run_id, found.epoch
                epoch = op.get("epoch")
                if op["op"] == "rewind":
                    run.epoch = min(run.epoch, int(op["rewind"]))
                elif epoch is not None and int(epoch) <= run.epoch:  # trained again after an older checkpoint
                    run.repeated.append(int(epoch))
                    log.info("tracking%s: epoch %s is already logged (an earlier attempt); its repeat is not",
                             self.label, epoch)
                else:
                    apply(c, run.run_id or "", op)
                    if epoch is not None:
                        run.epoch = int(epoch)
                self.report.delivered += 1
                return True
            except Exception as exc:
                message = f"{op.get('what') or op['op']}: {describe(exc)}"
                if permanent(exc):
                    self.report.dropped += 1
                    self.report.note(f"{message} (not retried: it cannot succeed)")
                    log.warning("tracking%s: %s; not retried, it cannot succeed", self.label, message)
                    return True
                if self.report.errors[-1:] != [message]:
                    log.warning("tracking%s delayed (%s); retrying", self.label, message)
                self.report.note(message)
            if self.deadline():
                return False
            time.sleep(backoff)
            backoff = min(backoff * 2, self.max_retry_s)


def deliver_orphans(spool_dir: str | Path | None, *, deadline_s: float | None = None, retry_s: float = 1.0,
                    max_retry_s: float = 10.0, report: DeliveryReport | None = None,
                    only: Callable[[Mapping[str, Any]], bool] | None = None,
                    progress: Callable[[int], None] | None = None) -> DeliveryReport:
    """Deliver every orphan journal in ``spool_dir`` (oldest first), deleting each once complete.

    Journals held by a live logger are skipped. With ``deadline_s`` delivery gives up after that many seconds
    (the rest stays for later); ``only`` filters journals by header; ``progress(n)`` is called per operation.
    """
    report = report or DeliveryReport()
    end = None if deadline_s is None else time.time() + deadline_s
    deliverer = Deliverer(report, retry_s=retry_s, max_retry_s=max_retry_s,
                          deadline=lambda: end is not None and time.time() >= end)
    for path in journals(spool_dir):
        with claim(path) as mine:
            if not mine:
                continue
            found = read(path)
            if found is None:  # a journal whose header never made it: nothing to deliver
                path.unlink(missing_ok=True)
                continue
            if only is not None and not only(found.header):
                continue
            run = RunTarget()
            remaining = list(found.ops)
            with open(path, "a") as journal:
                while remaining:
                    op = remaining[0]
                    if not deliverer.deliver(found.header, int(op["seq"]), op, run):
                        break
                    journal.write(json.dumps({"ack": op["seq"]}) + "\n")
                    journal.flush()
                    os.fsync(journal.fileno())
                    remaining.pop(0)
                    if progress is not None:
                        progress(1)
            if remaining:
                report.pending += len(remaining)
                continue
            remove(path, found.header)
    return report
