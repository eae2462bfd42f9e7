"""Processes we started, recorded so that a signal never reaches a stranger.

A pid read back from a file (``server.json``, a campaign's ``state.json``) may by now belong to another
process: the one recorded ended, and the kernel handed its pid out again. Before signalling, the pid is
checked against what was recorded when the process was ours: its start time, its command line, and for a
process-group kill that it still leads its own group. A record without those (written by an older ``hpo``)
cannot be verified, and its process is left alone.

The check and the signal are two steps, so a pid recycled in between (microseconds) would still be hit; a
pid is only recycled after the recorded process ended, which is what the check rules out a moment before.
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psutil

from tracking.credentials import redact_text

#: Start times read twice for the same process agree to the clock tick; boot-time adjustments (NTP) may move
#: them by a fraction of a second, a recycled pid's by far more.
CREATE_TIME_TOLERANCE_S = 1.0


@dataclass(frozen=True)
class ProcessRecord:
    """Who a process is: pid, start time (seconds since the epoch) and command line (URIs redacted)."""

    pid: int
    create_time: float
    cmdline: tuple[str, ...]

    @classmethod
    def from_fields(cls, pid: Any, create_time: Any, cmdline: Any) -> ProcessRecord | None:
        """The record stored as three fields, or ``None`` when any is missing (an older record: unverifiable)."""
        if pid is None or create_time is None or cmdline is None:
            return None
        try:
            return cls(int(pid), float(create_time), tuple(str(a) for a in cmdline))
        except (TypeError, ValueError):
            return None

    def fields(self, prefix: str = "") -> dict[str, Any]:
        """The record as JSON fields ``{prefix}pid``, ``{prefix}create_time``, ``{prefix}cmdline``."""
        return {f"{prefix}pid": self.pid, f"{prefix}create_time": self.create_time, f"{prefix}cmdline": list(self.cmdline)}

    @classmethod
    def read(cls, data: Mapping[str, Any], prefix: str = "") -> ProcessRecord | None:
        """The record in ``data`` as written by :meth:`fields`, or ``None`` when it is incomplete."""
        return cls.from_fields(data.get(f"{prefix}pid"), data.get(f"{prefix}create_time"), data.get(f"{prefix}cmdline"))


def record(pid: int) -> ProcessRecord:
    """The record of the live process ``pid``.

    Raises:
        psutil.NoSuchProcess: no process has that pid.
    """
    process = psutil.Process(pid)
    return ProcessRecord(pid=pid, create_time=process.create_time(), cmdline=_cmdline(process) or ())


def mismatch(expected: ProcessRecord, *, group: bool = False) -> str | None:
    """Why pid ``expected.pid`` is not (or no longer) the recorded process, or ``None`` when it is.

    Args:
        expected: what was recorded when the process was ours.
        group: also require that it leads its own process group (before signalling the whole group).

    Returns:
        ``None``, or a short reason for a one-line message: "no process has that pid now", "it is now
        `sleep 60`, started 2025-01-31 12:00:03", ...
    """
    try:
        process = psutil.Process(expected.pid)
        started = process.create_time()
        cmdline = _cmdline(process)
    except psutil.NoSuchProcess:
        return "no process has that pid now"
    except psutil.AccessDenied:
        return "it now belongs to another user"
    now = f"`{_shown(cmdline)}`, started {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started))}"
    if abs(started - expected.create_time) > CREATE_TIME_TOLERANCE_S:
        return f"it is now {now}"
    if cmdline is not None and cmdline != expected.cmdline:  # None: a zombie, still ours until reaped
        return f"it is now {now}"
    if group:
        try:
            if os.getpgid(expected.pid) != expected.pid:
                return "it no longer leads its own process group"
        except ProcessLookupError:
            return "no process has that pid now"
    return None


def is_ours(expected: ProcessRecord, *, group: bool = False) -> bool:
    """Whether pid ``expected.pid`` is still the recorded process (see :func:`mismatch`)."""
    return mismatch(expected, group=group) is None


def group_alive(pgid: int) -> bool:
    """Whether process group ``pgid`` has a member that is more than a zombie.

    ``killpg(pgid, 0)`` alone counts a leader that exited but was not reaped yet, as it is while its parent (the
    driver that started the embedded server, say) is busy elsewhere; waiting for that to go would wait for ever.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    for process in psutil.process_iter(["status"]):
        try:
            if process.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(process.pid) == pgid:
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False


def _cmdline(process: psutil.Process) -> tuple[str, ...] | None:
    """The command line with URIs redacted (it is written to disk), or ``None`` for a zombie."""
    try:
        return tuple(redact_text(arg) for arg in process.cmdline())
    except psutil.ZombieProcess:
        return None


def _shown(cmdline: Sequence[str] | None, limit: int = 80) -> str:
    text = shlex.join(cmdline) if cmdline else "?"
    return text if len(text) <= limit else text[: limit - 1] + "…"
