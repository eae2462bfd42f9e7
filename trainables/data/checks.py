"""Validation of data files before anything trains (and ``hpo data check``).

Every problem raises :class:`~trainables.errors.DataError` with one line ``FILE:KEY: what is wrong;
how to fix it``. Values are scanned for NaN/Inf in chunks, so checking a large file needs little memory.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from trainables.data.spec import DATA_KINDS, DataConfig
from trainables.errors import DataError, HpoError

SCAN_EVENTS = 512

#: Required datasets per kind: name -> (rank, dtype kind letters).
LAYOUTS: dict[str, dict[str, tuple[int, str]]] = {
    "calo": {
        "all_events/hist": (3, "f"), "all_events/histEM": (3, "f"), "all_events/histtrack": (3, "f"),
        "all_events/y": (1, "fiub"), "all_events/weight": (1, "f"),
    },
}


@dataclass
class Summary:
    """What ``hpo data check`` reports for a valid file."""

    path: str
    kind: str
    events: int
    datasets: dict[str, tuple[tuple[int, ...], str]] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)


def _kind(f: h5py.File, path: str, kind: str | None) -> str:
    recorded = f.attrs.get("hpo.kind")
    if isinstance(recorded, bytes):
        recorded = recorded.decode()
    if kind is None:
        if recorded is None:
            if "all_events" in f:
                return "calo"  # the public ATLAS layout carries no attributes
            raise DataError(path, f"the file does not record its kind (attribute hpo.kind); pass --kind {'|'.join(DATA_KINDS)}")
        kind = str(recorded)
    if kind not in DATA_KINDS:
        raise HpoError(f"unknown data kind {kind!r}; valid kinds are {', '.join(DATA_KINDS)}")
    if recorded is not None and str(recorded) != kind:
        raise DataError(path, f"the file holds {recorded} data, not {kind}; pass --kind {recorded} or use a {kind} file")
    if kind not in LAYOUTS:
        raise HpoError(f"checks for data kind {kind!r} are not available in this build; available: {', '.join(LAYOUTS)}")
    return kind


def check_file(path: str | Path, kind: str | None = None) -> Summary:
    """Check that ``path`` is a usable data file of ``kind`` (read from the file when ``None``).

    Raises:
        DataError: missing file, not HDF5, missing keys, wrong rank or dtype, length mismatch, NaN/Inf,
            empty file.
    """
    path = str(path)
    if not Path(path).exists():
        raise DataError(path, "file not found; generate one with `hpo data generate` or fix the path")
    if not h5py.is_hdf5(path):
        raise DataError(path, "not an HDF5 file; point to the .h5 file the generator or the public data set wrote")
    with h5py.File(path, "r") as f:
        kind = _kind(f, path, kind)
        layout = LAYOUTS[kind]
        summary = Summary(path=path, kind=kind, events=0)
        length: int | None = None
        first_key = ""
        for key, (rank, dtype_kinds) in layout.items():
            if key not in f:
                raise DataError(path, f"missing dataset; a {kind} file needs {', '.join(layout)}", key=key)
            ds = f[key]
            if not isinstance(ds, h5py.Dataset):
                raise DataError(path, "is a group, expected a dataset", key=key)
            if ds.ndim != rank:
                raise DataError(path, f"expected rank {rank}, but got shape {ds.shape}", key=key)
            if ds.dtype.kind not in dtype_kinds:
                raise DataError(path, f"expected a numeric dtype ({dtype_kinds}), but got {ds.dtype}", key=key)
            if length is None:
                length, first_key = int(ds.shape[0]), key
            elif ds.shape[0] != length:
                raise DataError(path, f"has {ds.shape[0]} events but {first_key} has {length}; they must match", key=key)
            summary.datasets[key] = (tuple(int(s) for s in ds.shape), str(ds.dtype))
        if not length:
            raise DataError(path, "the file holds no events", key=first_key)
        images = [k for k, (r, _) in layout.items() if r == 3]
        if images and len({f[k].shape[1:] for k in images}) != 1:
            raise DataError(path, f"image datasets differ in shape: {[f[k].shape for k in images]}", key=images[0])
        for key in layout:
            ds = f[key]
            for start in range(0, length, SCAN_EVENTS):
                block = ds[start:start + SCAN_EVENTS]
                if block.dtype.kind == "f" and not np.isfinite(block).all():
                    rows = np.flatnonzero(~np.isfinite(block.reshape(block.shape[0], -1)).all(axis=1))
                    raise DataError(
                        path, f"NaN or Inf values (first at event {start + int(rows[0])}); regenerate or clean the file",
                        key=key,
                    )
        summary.events = length
        y = f["all_events/y"][:]
        if not np.isin(y, (0, 1)).all():
            raise DataError(path, "labels must be 0 (background) or 1 (signal)", key="all_events/y")
        w = f["all_events/weight"][:]
        if (w < 0).any():
            raise DataError(path, f"{int((w < 0).sum())} negative event weights; weights must be >= 0", key="all_events/weight")
        summary.facts = {
            "signal": int(y.sum()), "background": int((y == 0).sum()),
            "signal fraction": round(float(y.mean()), 4),
            "image": "×".join(map(str, f["all_events/hist"].shape[1:])),
        }
        if "all_events/passSR" in f:
            passed = f["all_events/passSR"][:].astype(bool)
            sig, bkg = y == 1, y == 0
            if sig.any() and bkg.any():
                summary.facts["selection TPR (weighted)"] = round(float(w[passed & sig].sum() / w[sig].sum()), 4)
                summary.facts["selection FPR (weighted)"] = float(f"{w[passed & bkg].sum() / w[bkg].sum():.3g}")
    return summary


@functools.lru_cache(maxsize=8)
def _checked(path: str, mtime_ns: int, size: int, kind: str | None) -> Summary:
    return check_file(path, kind)


def check_for_training(cfg: DataConfig, kind: str, batch_size: int, workers: int) -> Summary:
    """:func:`check_file` plus: enough events for the split, the batch size and the number of ranks.

    The full scan runs once per process and file version (path, mtime, size): warm workers that run
    trial after trial on the same file do not rescan it.
    """
    try:
        stat = os.stat(cfg.path)
        summary = _checked(cfg.path, stat.st_mtime_ns, stat.st_size, kind)
    except FileNotFoundError:
        summary = check_file(cfg.path, kind)
    n = min(summary.events, cfg.max_events) if cfg.max_events else summary.events
    per_rank = round(cfg.split[0] * n) // workers
    if per_rank < batch_size:
        raise DataError(
            cfg.path, f"{n} events give {per_rank} training events per rank with {workers} rank(s), fewer than one "
            f"batch of {batch_size}; generate more events, lower batch_size or use fewer workers",
        )
    if round(cfg.split[1] * n) < workers:
        raise DataError(cfg.path, f"{n} events leave fewer validation events than ranks ({workers}); raise split[1]")
    return summary
