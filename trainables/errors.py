"""User-facing errors shared by every package.

``HpoError`` carries a one-line message that names the file, field or value at fault and says how to fix
it. The CLI prints it as ``error: <message>`` and exits with status 2; nothing else is printed (no
traceback). Anything else that escapes is a bug and gets a traceback.
"""

from __future__ import annotations

from typing import Any


class HpoError(Exception):
    """An error the user can fix: bad campaign file, bad data file, unreachable service.

    Args:
        message: one line; names the file/field/value and the fix.
    """

    exit_code: int = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class DataError(HpoError):
    """A data file that cannot be used: missing, wrong keys, shapes, dtypes, NaN/Inf, too small.

    The message starts with ``FILE[:KEY]:`` so that the user knows where to look.
    """

    def __init__(self, path: str, message: str, key: str | None = None) -> None:
        where = f"{path}:{key}" if key else str(path)
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.key = key
        self.detail = message

    def __reduce__(self) -> tuple[Any, ...]:
        # raised on a Ray actor and re-raised in the driver: it travels pickled, with its own arguments
        return type(self), (self.path, self.detail, self.key)


class DataChangedError(DataError):
    """The campaign's data file is no longer the one it started with (replaced or rewritten mid-campaign).

    Not a trial's failure but the campaign's: the driver stops it at the first one, since every new trial would
    train on other data than the finished ones (``orchestrator.progress`` recognises it by this class's name).
    """


class TrialError(HpoError):
    """A trial failed for a reason worth recording (NaN loss, diverged, data error inside a worker).

    Trial errors are recorded and retried within ``trial.max_failures``; they never stop a campaign by
    themselves.
    """
