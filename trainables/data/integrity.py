"""Whether a data file can be opened and read back intact: the file-system checks before HDF5 sees it, HDF5's
errors as one line, chunk-by-chunk verification (``hpo data check --deep``) and the file's fingerprint.

Everything here turns a damaged or hostile file (truncated, bit-flipped, a directory, a FIFO, a symbolic-link
loop, unreadable, not HDF5) into a :class:`~trainables.errors.DataError` that names the file, the dataset and the
events where known. :func:`check_path` runs before anything opens the file, so a FIFO never blocks a reader.

Generated files carry HDF5's Fletcher-32 checksum on every chunk (``trainables.data.generate``): reading a
damaged chunk fails instead of returning wrong values. Public files usually have none; for them decoding and
the NaN/Inf scan find what they can, and silent corruption cannot be ruled out.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import math
import os
import re
import socket
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np

from trainables.errors import DataChangedError, DataError

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
NPY_MAGIC = b"\x93NUMPY"
#: What h5py raises when HDF5 cannot make sense of a file's bytes (a damaged header, chunk or attribute).
READ_ERRORS: tuple[type[BaseException], ...] = (OSError, RuntimeError, KeyError, ValueError, TypeError, OverflowError,
                                                 UnicodeError, MemoryError)
HASH_BLOCK = 8 << 20

_FILE_TYPES = {stat.S_ISFIFO: "a FIFO (named pipe)", stat.S_ISSOCK: "a socket", stat.S_ISCHR: "a character device",
               stat.S_ISBLK: "a block device"}


def check_path(path: str) -> os.stat_result:
    """``path`` is a regular, readable (:func:`check_location`), non-empty HDF5 file.

    Raises:
        DataError: what :func:`check_location` raises; empty; not HDF5 (text, a NumPy ``.npy`` array, a truncated
            header).
    """
    st = check_location(path)
    if st.st_size == 0:
        raise DataError(path, "empty file (0 bytes); the copy or the generation did not finish: copy or generate it "
                        "again")
    with open(path, "rb") as fh:
        head = fh.read(len(HDF5_SIGNATURE))
    if not h5py.is_hdf5(path):
        if head.startswith(NPY_MAGIC):
            raise DataError(path, "a NumPy .npy array, not HDF5; store it in an HDF5 file (h5py: f['kappa'] = "
                            "np.load(...)) and point to that")
        if len(head) < len(HDF5_SIGNATURE) and HDF5_SIGNATURE.startswith(head):
            raise DataError(path, f"truncated to {st.st_size} bytes, less than an HDF5 header; the copy or the "
                            "generation was interrupted: copy or generate it again")
        raise DataError(path, "not an HDF5 file; point to the .h5 file the generator or the public data set wrote")
    return st


def check_location(path: str) -> os.stat_result:
    """The file-system checks, before anything reads the file: ``path`` names a regular file this user can read.

    Nothing reads from ``path`` before it is known to be a regular file (reading a FIFO would block).

    Raises:
        DataError: missing, a dangling link or a link loop, a directory it cannot enter, a directory or another
            non-file (FIFO, socket, device), unreadable.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise DataError(path, f"a symbolic link to {os.readlink(path)}, which does not exist; fix the link or the "
                            "path") from None
        raise DataError(path, "file not found; generate one with `hpo data generate` or fix the path") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DataError(path, "a loop of symbolic links; point to the data file itself") from None
        if exc.errno == errno.EACCES:
            raise DataError(path, "a directory on its path cannot be entered (permission denied); grant access (chmod "
                            "a+x) or move the file") from None
        raise DataError(path, f"cannot look it up ({exc.strerror}); fix the path") from None
    if stat.S_ISDIR(st.st_mode):
        raise DataError(path, "is a directory, not a data file; name the HDF5 file itself")
    for test, what in _FILE_TYPES.items():
        if test(st.st_mode):
            raise DataError(path, f"is {what}, not a regular file; copy the data into a file and point to that")
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        raise DataError(path, f"not readable by this user (uid {os.geteuid()}, file mode {stat.filemode(st.st_mode)}, "
                        f"owner uid {st.st_uid}); make it readable (chmod a+r) or run as its owner") from None
    except OSError as exc:
        raise DataError(path, f"cannot be read ({exc.strerror}); copy it again") from None
    return st


_TRUNCATED = re.compile(r"truncated file: eof = (\d+).*stored_eof = (\d+)")


def hdf5_problem(exc: BaseException) -> str:
    """One line saying what HDF5's error ``exc`` means for the user, and what to do."""
    raw = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc  # str(KeyError) adds quotes
    text = " ".join(str(raw).split()) or type(exc).__name__
    truncated = _TRUNCATED.search(text)
    if truncated:
        return (f"truncated: it holds {truncated[1]} bytes of the {truncated[2]} its header declares; the copy or the "
                "generation was interrupted: copy or generate it again")
    if isinstance(exc, MemoryError):
        return "its declared sizes do not fit in memory: the header is damaged; copy or generate the file again"
    if "checksum" in text.lower():
        what = "checksum mismatch (Fletcher-32): the bytes changed after they were written"
    elif "filter returned failure" in text:
        what = "a chunk does not decode (its checksum or compressed bytes are wrong)"
    else:
        what = f"HDF5 cannot read it ({text[:200]})"
    return f"{what}; the file is damaged: copy or generate it again"


@dataclass
class Spot:
    """Where a check is in a file (dataset, events), for the message when HDF5 fails there."""

    key: str | None = None
    start: int | None = None
    stop: int | None = None
    unit: str = "event"

    def at(self, key: str | None, start: int | None = None, stop: int | None = None) -> Spot:
        self.key, self.start, self.stop = key, start, stop
        return self

    def error(self, path: str, exc: BaseException) -> DataError:
        where = ""
        if self.start is not None and self.stop is not None:
            where = f"{self.unit}s {self.start}-{self.stop - 1}: " if self.stop - self.start > 1 else f"{self.unit} {self.start}: "
        return DataError(path, where + hdf5_problem(exc), key=self.key)


def datasets(f: h5py.File) -> dict[str, h5py.Dataset]:
    """Every dataset in the file by its path (``all_events/hist``), in the file's order."""
    found: dict[str, h5py.Dataset] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            found[name] = obj

    f.visititems(visit)
    return found


def check_allocated(path: str, key: str, ds: h5py.Dataset) -> None:
    """Every chunk (or the contiguous block) of ``ds`` was written: a declared shape that the file does not hold
    (an absurd shape, an interrupted writer) would read as fill values, or take for ever to scan."""
    if ds.shape == () or ds.size == 0 or ds.is_virtual or ds.external:
        return
    if ds.chunks is None:
        stored, declared = ds.id.get_storage_size(), ds.size * ds.dtype.itemsize
        if stored < declared:
            raise DataError(path, f"declares shape {ds.shape} ({declared} bytes) but the file holds {stored} bytes of "
                            "it; the writer was interrupted or the shape is wrong: regenerate the file", key=key)
        return
    grid = [math.ceil(n / c) for n, c in zip(ds.shape, ds.chunks, strict=True)]
    expected = math.prod(grid)
    written = ds.id.get_num_chunks()
    if written < expected:
        per_event = math.prod(grid[1:])
        first = _first_missing(ds, expected) * ds.chunks[0] // max(per_event, 1) if expected < 10**6 else None
        where = f" (the first missing chunk holds event {first})" if first is not None else ""
        raise DataError(path, f"declares shape {ds.shape} but only {written} of its {expected} chunks were ever "
                        f"written{where}; the writer was interrupted or the shape is wrong: regenerate the file", key=key)


def _first_missing(ds: h5py.Dataset, expected: int) -> int:
    """The index (in row-major chunk order) of the first chunk never written."""
    chunks = ds.chunks
    grid = [math.ceil(n / c) for n, c in zip(ds.shape, chunks, strict=True)]
    have = set()
    for i in range(ds.id.get_num_chunks()):
        offset = ds.id.get_chunk_info(i).chunk_offset
        have.add(int(np.ravel_multi_index([o // c for o, c in zip(offset, chunks, strict=True)], grid)))
    return next(i for i in range(expected) if i not in have)


# --- chunk by chunk: hpo data check --deep --------------------------------------------------------------------


@dataclass
class Damage:
    """A dataset's events that do not read back, and why."""

    key: str
    start: int
    stop: int
    problem: str


@dataclass
class Verification:
    """What :func:`verify_chunks` found: damaged ranges, and which datasets carry checksums."""

    chunks: int = 0
    damaged: list[Damage] = field(default_factory=list)
    checksummed: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)

    def raise_first(self, path: str) -> None:
        """Raise the first damaged range as one line (with how many chunks are damaged in all)."""
        if not self.damaged:
            return
        first = self.damaged[0]
        others = f"; {len(self.damaged)} of {self.chunks} chunks are damaged in all" if len(self.damaged) > 1 else ""
        events = f"events {first.start}-{first.stop - 1}" if first.stop - first.start > 1 else f"event {first.start}"
        raise DataError(path, f"{events} do not read back: {first.problem}{others}", key=first.key)


def _pieces(ds: h5py.Dataset) -> list[tuple[slice, ...]]:
    if ds.chunks is not None:
        return list(ds.iter_chunks())
    if ds.shape == ():
        return [()]
    row = max(1, math.prod(ds.shape[1:]) * ds.dtype.itemsize)
    step = max(1, (64 << 20) // row)
    return [(slice(s, min(s + step, ds.shape[0])),) for s in range(0, ds.shape[0], step)]


def has_checksums(path: str) -> bool:
    """Whether every dataset of ``path`` carries Fletcher-32 checksums (a damaged chunk then fails to read rather than
    reading back as other numbers); False too when the file cannot be read."""
    try:
        with h5py.File(path, "r") as f:
            return all(ds.fletcher32 for ds in datasets(f).values())
    except (OSError, ValueError, KeyError):
        return False


def verify_chunks(path: str, advance: Callable[[int, int], None] | None = None) -> Verification:
    """Read every chunk of every dataset of ``path`` (decoding it, and verifying its Fletcher-32 checksum where it
    has one), past damaged ones, so that every damaged event range is found.

    ``advance(done, total)`` is called after every chunk (a progress bar). The file must have passed
    :func:`check_path`.

    Raises:
        DataError: the file cannot be opened, or a dataset's layout cannot be read.
    """
    found = Verification()
    spot = Spot()
    try:
        with h5py.File(path, "r") as f:
            all_sets = datasets(f)
            plan = []
            for key, ds in all_sets.items():
                spot.at(key)
                check_allocated(path, key, ds)
                (found.checksummed if ds.fletcher32 else found.unchecked).append(key)
                plan.append((key, ds, _pieces(ds)))
            total = sum(len(p) for _, _, p in plan)
            for key, ds, pieces in plan:
                for sel in pieces:
                    try:
                        ds[sel]
                    except READ_ERRORS as exc:
                        rows = sel[0] if sel else slice(0, 1)
                        found.damaged.append(Damage(key, int(rows.start or 0), int(rows.stop or 1), hdf5_problem(exc)))
                    found.chunks += 1
                    if advance is not None:
                        advance(found.chunks, total)
    except DataError:
        raise
    except READ_ERRORS as exc:
        raise spot.error(path, exc) from None
    found.damaged.sort(key=lambda d: (d.start, d.key))
    return found


# --- the file's identity: checked at every trial's start -----------------------------------------------------


@dataclass(frozen=True)
class Fingerprint:
    """A data file as it was when recorded: size and modification time (cheap to compare) and SHA-256."""

    path: str
    size: int
    mtime_ns: int
    sha256: str


@functools.lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int, inode: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(HASH_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_of(path: str) -> str:
    """The SHA-256 of the file at ``path`` (any file), computed once per process and file version (size, mtime,
    inode): the launch's ``environment.json``, ``state.json`` and the trials' fingerprint share one reading."""
    st = os.stat(path)
    return _sha256(path, st.st_size, st.st_mtime_ns, st.st_ino)


def fingerprint(path: str) -> Fingerprint:
    """The fingerprint of ``path`` now (its SHA-256 computed once per process and file version)."""
    st = check_path(path)
    return Fingerprint(path=path, size=st.st_size, mtime_ns=st.st_mtime_ns,
                       sha256=_sha256(path, st.st_size, st.st_mtime_ns, st.st_ino))


def verify_fingerprint(recorded: Fingerprint) -> None:
    """Check cheaply that the file is still the one ``recorded`` (size and mtime; the SHA-256 only when they differ).

    Raises:
        DataError: the file is gone or unreadable on this node.
        DataChangedError: its content changed since it was recorded (both checksums named).
    """
    if not os.path.lexists(recorded.path):
        raise DataError(recorded.path, f"not found on {socket.gethostname()}, where a trial starts; the data must be on "
                        "storage that every node mounts at the same path (or was it moved mid-campaign?)")
    st = check_path(recorded.path)
    if (st.st_size, st.st_mtime_ns) == (recorded.size, recorded.mtime_ns):
        return
    now = _sha256(recorded.path, st.st_size, st.st_mtime_ns, st.st_ino)
    if now != recorded.sha256:
        raise DataChangedError(recorded.path, f"replaced since the campaign started: SHA-256 {now} now, {recorded.sha256} at "
                        "launch; put the original file back, or start a new campaign for the new data")


def iter_blocks(ds: h5py.Dataset, rows: int, spot: Spot) -> Iterator[tuple[int, np.ndarray]]:
    """``ds`` in blocks of ``rows`` events, ``spot`` kept on the block being read; when a block fails to read,
    on the first of its chunks that fails (its events are what a damaged chunk takes away)."""
    for start in range(0, ds.shape[0], rows):
        stop = min(start + rows, ds.shape[0])
        spot.at(spot.key, start, stop)
        try:
            block = ds[start:stop]
        except READ_ERRORS:
            spot.at(spot.key, *damaged_rows(ds, start, stop))
            raise
        yield start, block


def damaged_rows(ds: h5py.Dataset, start: int, stop: int) -> tuple[int, int]:
    """The events of the first chunk of ``ds`` within [start, stop) that fails to read (the whole range when none
    fails on its own): what a read error of that range names."""
    step = ds.chunks[0] if ds.chunks else max(1, stop - start)
    for lo in range(start - start % step, stop, step):
        hi = min(lo + step, ds.shape[0])
        try:
            ds[lo:hi]
        except READ_ERRORS:
            return lo, hi
    return start, stop
