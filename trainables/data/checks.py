"""Validation of data files before anything trains (and ``hpo data check``).

Every problem raises :class:`~trainables.errors.DataError` with one line ``FILE:KEY: what is wrong;
how to fix it``. Values are scanned in blocks of bounded size (at most :data:`SCAN_EVENTS` events and
:data:`SCAN_BYTES` bytes), so checking a large file needs little memory.

Checks common to every kind: missing file, not HDF5, missing datasets, wrong rank, shape or dtype, length
mismatch between datasets, NaN/Inf, no events. Per kind (:data:`KIND_CHECKS`), value checks and the
summary's facts:

* ``calo``: labels 0/1, weights ≥ 0; signal/background counts, the selection's weighted TPR and FPR.
* ``cosmo3d``: cubic cubes, (N, 4) parameters, u ∈ [−1, 1], counts ≥ 0; cube, channels, u ranges.
  Accepted layouts: ours (``x``, ``unitPar``, ``physPar``), MLPerf-style (``x``, ``y``) and a public raw
  universe (``full`` (D, D, D, C), ``unitPar`` (4,)), which the reader cuts into (D / s)³ sub-cubes of
  side s = min(128, D): its events are that number of sub-cubes.
* ``lensing``: square maps, (N, 2) parameters, cosmology indices ≥ 0 (and < the number of cosmologies
  the file lists), κ ≥ −λ when the file records the shift λ and has no shape noise; κ mean, standard
  deviation, minimum, maximum and skewness, number of cosmologies. Accepted layouts: ours (``maps``,
  ``params``, ``cosmology``) and a bare (N, S, S) ``maps`` or ``kappa`` dataset.

Files without an ``hpo.kind`` attribute (the public ones) are recognised by their keys.

Damaged and hostile files (``trainables.data.integrity``): a path that is no regular, readable, non-empty HDF5
file, a truncated or bit-flipped file, datasets whose declared chunks were never written, and every HDF5 read
error give one :class:`DataError` naming the file, and the dataset and events where known. Every dataset of
the file is read back (the ones the kind does not need only decoded), so a damaged chunk anywhere fails the
check; with Fletcher-32 checksums (every generated file) that covers any changed byte of the data.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import h5py
import numpy as np

from trainables.data.cosmo3d import PARAMETERS as COSMO_PARAMETERS
from trainables.data.integrity import READ_ERRORS, Spot, check_allocated, check_path, datasets, iter_blocks
from trainables.data.spec import DATA_KINDS, DataConfig
from trainables.errors import DataError, HpoError

SCAN_EVENTS = 512
SCAN_BYTES = 64 * 2**20
COSMO_SUBCUBE = 128

#: Required datasets per kind (our layout): name -> (rank, dtype kind letters).
LAYOUTS: dict[str, dict[str, tuple[int, str]]] = {
    "calo": {
        "all_events/hist": (3, "f"), "all_events/histEM": (3, "f"), "all_events/histtrack": (3, "f"),
        "all_events/y": (1, "fiub"), "all_events/weight": (1, "f"),
    },
    "cosmo3d": {"x": (5, "iuf"), "unitPar": (2, "f"), "physPar": (2, "f")},
    "lensing": {"maps": (3, "f"), "params": (2, "f"), "cosmology": (1, "iu")},
}

#: Public layouts accepted for files that do not record ``hpo.kind`` (the first whose keys all exist).
PUBLIC_LAYOUTS: dict[str, list[dict[str, tuple[int, str]]]] = {
    "cosmo3d": [{"x": (5, "iuf"), "y": (2, "f")}],
    "lensing": [{"maps": (3, "f")}, {"kappa": (3, "f")}],
}

#: One public CosmoFlow universe: particle counts (D, D, D, C) and its u-space parameters (4,).
RAW_UNIVERSE: dict[str, tuple[int, str]] = {"full": (4, "iuf"), "unitPar": (1, "f")}


@dataclass
class Summary:
    """What ``hpo data check`` reports for a valid file."""

    path: str
    kind: str
    events: int
    datasets: dict[str, tuple[tuple[int, ...], str]] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)


def _sig(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}")


def h5_attr(f: h5py.File, name: str) -> Any:
    """A file attribute as a Python value (bytes decoded), or None when absent."""
    value = f.attrs.get(name)
    return value.decode() if isinstance(value, bytes) else value


class KindCheck:
    """Per-kind checks beyond the common ones. One instance checks one file.

    :meth:`shapes` runs once the datasets exist with the right ranks and lengths; :meth:`block` is fed
    every scanned block of the datasets in :attr:`scanned` (after the NaN/Inf check of that block);
    :meth:`facts` runs at the end and returns the summary's facts.
    """

    scanned: ClassVar[tuple[str, ...]] = ()

    def __init__(self, path: str, f: h5py.File, layout: dict[str, tuple[int, str]]) -> None:
        self.path = path
        self.f = f
        self.layout = layout

    def shapes(self) -> None:
        """Raise :class:`DataError` for shapes beyond rank that the kind requires."""

    def block(self, key: str, start: int, block: np.ndarray) -> None:
        """Check (and accumulate facts from) events ``start``… of ``key``."""

    def facts(self) -> dict[str, Any]:
        """Value checks that need whole datasets, and the summary's facts."""
        return {}

    def _width(self, key: str, width: int, meaning: str) -> None:
        ds = self.f[key]
        if ds.shape[1] != width:
            raise DataError(self.path, f"expected shape (N, {width}) {meaning}, but got {ds.shape}", key=key)


class CaloCheck(KindCheck):
    """Images of one shape, labels 0/1, weights ≥ 0; class counts and the physics selection's point."""

    def shapes(self) -> None:
        images = [k for k, (r, _) in self.layout.items() if r == 3]
        if images and len({self.f[k].shape[1:] for k in images}) != 1:
            raise DataError(self.path, f"image datasets differ in shape: {[self.f[k].shape for k in images]}",
                            key=images[0])

    def facts(self) -> dict[str, Any]:
        f, path = self.f, self.path
        y = f["all_events/y"][:]
        if not np.isin(y, (0, 1)).all():
            i = int(np.flatnonzero(~np.isin(y, (0, 1)))[0])
            raise DataError(path, f"label {y[i]:g} at event {i}; labels must be 0 (background) or 1 (signal)",
                            key="all_events/y")
        w = f["all_events/weight"][:]
        if (w < 0).any():
            i = int(np.flatnonzero(w < 0)[0])
            raise DataError(path, f"{int((w < 0).sum())} negative event weights (first {w[i]:g} at event {i}); weights "
                            "must be >= 0", key="all_events/weight")
        facts: dict[str, Any] = {
            "signal": int(y.sum()), "background": int((y == 0).sum()),
            "signal fraction": round(float(y.mean()), 4),
            "image": "×".join(map(str, f["all_events/hist"].shape[1:])),
        }
        if "all_events/passSR" in f:
            passed = f["all_events/passSR"][:].astype(bool)
            sig, bkg = y == 1, y == 0
            if sig.any() and bkg.any():
                facts["selection TPR (weighted)"] = round(float(w[passed & sig].sum() / w[sig].sum()), 4)
                facts["selection FPR (weighted)"] = float(f"{w[passed & bkg].sum() / w[bkg].sum():.3g}")
        return facts


class Cosmo3dCheck(KindCheck):
    """Cubic cubes of counts ≥ 0 and 4 parameters per cube with u ∈ [−1, 1]."""

    scanned: ClassVar[tuple[str, ...]] = ("x", "unitPar", "y")

    def __init__(self, path: str, f: h5py.File, layout: dict[str, tuple[int, str]]) -> None:
        super().__init__(path, f, layout)
        self.u_min = np.full(4, np.inf)
        self.u_max = np.full(4, -np.inf)
        self.count_sum = 0.0
        self.cells = 0

    def shapes(self) -> None:
        shape = self.f["x"].shape
        if not shape[1] == shape[2] == shape[3]:
            raise DataError(self.path, f"cubes must be S×S×S×channels, but got {shape}", key="x")
        for key in ("unitPar", "y", "physPar"):
            if key in self.layout:
                self._width(key, 4, "for (Omega_m, sigma_8, n_s, H_0)")

    def block(self, key: str, start: int, block: np.ndarray) -> None:
        if key == "x":
            _non_negative(self.path, key, start, block, "particle counts")
            self.count_sum += float(block.sum(dtype=np.float64))
            self.cells += block.size
        else:
            self._u(key, block, start)

    def _u(self, key: str, u: np.ndarray, start: int) -> None:
        u = u.reshape(-1, 4)
        bad = np.abs(u) > 1 + 1e-6
        if bad.any():
            row, col = (int(i) for i in np.argwhere(bad)[0])
            raise DataError(
                self.path, f"u for {COSMO_PARAMETERS[col]} is {float(u[row, col]):.4g} at event {start + row}, outside "
                "[-1, 1]; this key holds u = (physical/fiducial - 1)/0.1: regenerate the file or rescale it", key=key,
            )
        self.u_min = np.minimum(self.u_min, u.min(axis=0))
        self.u_max = np.maximum(self.u_max, u.max(axis=0))

    def facts(self) -> dict[str, Any]:
        shape = self.f["full" if "full" in self.layout else "x"].shape
        size = min(COSMO_SUBCUBE, shape[0]) if "full" in self.layout else shape[1]
        return {
            "cube": f"{size}³", "channels": int(shape[-1]),
            "mean count per cell": _sig(self.count_sum / max(self.cells, 1)),
            "u ranges": {name: [_sig(lo), _sig(hi)] for name, lo, hi in zip(COSMO_PARAMETERS, self.u_min, self.u_max, strict=True)},
        }


class RawUniverseCheck(Cosmo3dCheck):
    """One public CosmoFlow universe: ``full`` (D, D, D, C) counts and ``unitPar`` (4,)."""

    scanned: ClassVar[tuple[str, ...]] = ("full", "unitPar")

    def shapes(self) -> None:
        shape = self.f["full"].shape
        if not shape[0] == shape[1] == shape[2]:
            raise DataError(self.path, f"a universe must be D×D×D×channels, but got {shape}", key="full")
        if self.f["unitPar"].shape != (4,):
            raise DataError(self.path, f"expected shape (4,) for (Omega_m, sigma_8, n_s, H_0), but got "
                            f"{self.f['unitPar'].shape}", key="unitPar")

    def block(self, key: str, start: int, block: np.ndarray) -> None:
        if key == "full":
            _non_negative(self.path, key, start, block, "particle counts", unit="slab")
            self.count_sum += float(block.sum(dtype=np.float64))
            self.cells += block.size
        else:
            self._u(key, block, 0)


class LensingCheck(KindCheck):
    """Square maps, κ ≥ −λ (without shape noise), valid cosmology indices; κ moments."""

    scanned: ClassVar[tuple[str, ...]] = ("maps", "kappa", "cosmology")

    def __init__(self, path: str, f: h5py.File, layout: dict[str, tuple[int, str]]) -> None:
        super().__init__(path, f, layout)
        self.key = "maps" if "maps" in layout else "kappa"
        self.moments = np.zeros(4)  # Σ1, Σκ, Σκ², Σκ³ (about a reference, for stability)
        self.low, self.high = np.inf, -np.inf
        self.ref: float | None = None
        self.indices: set[int] = set()
        table = f.attrs.get("cosmologies")
        self.table = None if table is None else np.atleast_2d(np.asarray(table))
        shift, noise = h5_attr(f, "hpo.param.shift"), h5_attr(f, "hpo.param.galaxy_density")
        self.shift = float(shift) if shift is not None and not noise else None

    def shapes(self) -> None:
        shape = self.f[self.key].shape
        if shape[1] != shape[2]:
            raise DataError(self.path, f"maps must be square (N, S, S), but got {shape}", key=self.key)
        if "params" in self.layout:
            self._width("params", 2, "for (Omega_m, sigma_8)")

    def block(self, key: str, start: int, block: np.ndarray) -> None:
        if key == "cosmology":
            k = None if self.table is None else len(self.table)
            bad = (block < 0) | (block >= k) if k is not None else block < 0
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                valid = f"0 to {k - 1} (the file lists {k} cosmologies)" if k is not None else ">= 0"
                raise DataError(self.path, f"cosmology index {int(block[i])} at event {start + i}; indices must be "
                                f"{valid}", key=key)
            self.indices.update(int(c) for c in np.unique(block))
            return
        if self.shift is not None and block.min() < -self.shift * (1 + 1e-5):
            i = int(np.flatnonzero((block < -self.shift * (1 + 1e-5)).reshape(block.shape[0], -1).any(axis=1))[0])
            raise DataError(
                self.path, f"κ = {float(block[i].min()):.4g} at event {start + i} is below -shift = {-self.shift:g}; a "
                "shifted lognormal map has κ >= -λ: regenerate the file or fix hpo.param.shift", key=key,
            )
        values = block.astype(np.float64).ravel()
        if self.ref is None:
            self.ref = float(values.mean())
        d = values - self.ref
        self.moments += (d.size, d.sum(), (d * d).sum(), (d * d * d).sum())
        self.low, self.high = min(self.low, float(values.min())), max(self.high, float(values.max()))

    def facts(self) -> dict[str, Any]:
        n, s1, s2, s3 = self.moments
        mean = s1 / n
        var = max(s2 / n - mean**2, 0.0)
        third = s3 / n - 3 * mean * s2 / n + 2 * mean**3
        shape = self.f[self.key].shape
        facts: dict[str, Any] = {
            "map": f"{shape[1]}×{shape[2]}", "κ mean": _sig((self.ref or 0.0) + mean), "κ std": _sig(var**0.5),
            "κ min": _sig(self.low), "κ max": _sig(self.high),
            "κ skewness": _sig(third / var**1.5) if var > 0 else 0.0,
        }
        if "cosmology" in self.layout:
            facts["cosmologies"] = len(self.indices)
        if self.shift is not None:
            facts["shift λ"] = self.shift
        return facts


#: The per-kind checks, by data kind.
KIND_CHECKS: dict[str, type[KindCheck]] = {"calo": CaloCheck, "cosmo3d": Cosmo3dCheck, "lensing": LensingCheck}


def _non_negative(path: str, key: str, start: int, block: np.ndarray, what: str, unit: str = "event") -> None:
    negative = block < 0
    if negative.any():
        row = int(np.flatnonzero(negative.reshape(block.shape[0], -1).any(axis=1))[0])
        where = f"event {start + row}" if unit == "event" else f"index {start + row} along the first axis"
        raise DataError(path, f"negative {what} (first at {where}); {what} must be >= 0: regenerate or clean the file",
                        key=key)


def _kind(f: h5py.File, path: str, kind: str | None) -> str:
    recorded = h5_attr(f, "hpo.kind")
    if kind is None:
        if recorded is None:
            detected = _detect(f)
            if detected:
                return detected  # the public layouts carry no attributes
            raise DataError(path, f"the file does not record its kind (attribute hpo.kind); pass --kind {'|'.join(DATA_KINDS)}")
        kind = str(recorded)
    if kind not in DATA_KINDS:
        raise DataError(path, f"unknown data kind {kind!r} (attribute hpo.kind); valid kinds are {', '.join(DATA_KINDS)}: "
                        "pass --kind or regenerate the file")
    if recorded is not None and str(recorded) not in DATA_KINDS:
        raise DataError(path, f"the file records an unknown kind {str(recorded)!r} (attribute hpo.kind); valid kinds are "
                        f"{', '.join(DATA_KINDS)}: fix the attribute or regenerate the file")
    if recorded is not None and str(recorded) != kind:
        raise DataError(path, f"the file holds {recorded} data, not {kind}; pass --kind {recorded} or use a {kind} file")
    if kind not in LAYOUTS:
        raise HpoError(f"checks for data kind {kind!r} are not available in this build; available: {', '.join(LAYOUTS)}")
    return kind


def _detect(f: h5py.File) -> str | None:
    if "all_events" in f:
        return "calo"
    if "full" in f or "x" in f:
        return "cosmo3d"
    if "maps" in f or "kappa" in f:
        return "lensing"
    return None


def _layout(f: h5py.File, kind: str) -> dict[str, tuple[int, str]]:
    """Our layout for files we wrote; else the first complete public layout (ours when none is)."""
    ours = LAYOUTS[kind]
    if h5_attr(f, "hpo.kind") is not None or all(key in f for key in ours):
        return ours
    if kind == "cosmo3d" and "full" in f:
        return RAW_UNIVERSE
    return next((alt for alt in PUBLIC_LAYOUTS.get(kind, []) if all(key in f for key in alt)), ours)


def _blocks(ds: h5py.Dataset, spot: Spot) -> Iterator[tuple[int, np.ndarray]]:
    row_bytes = int(np.prod(ds.shape[1:], dtype=np.int64)) * ds.dtype.itemsize
    rows = max(1, min(SCAN_EVENTS, SCAN_BYTES // max(row_bytes, 1)))
    return iter_blocks(ds, rows, spot)


def check_file(path: str | Path, kind: str | None = None) -> Summary:
    """Check that ``path`` is a usable data file of ``kind`` (read from the file when ``None``).

    Raises:
        DataError: not a regular, readable HDF5 file (missing, a directory, a FIFO, a link loop, empty, text,
            ``.npy``), truncated or damaged (any HDF5 read error, chunks never written), missing keys, wrong rank,
            shape or dtype, length mismatch, NaN/Inf, no events, and the kind's value checks (labels, weights,
            u range, counts, κ).
    """
    path = str(path)
    check_path(path)
    spot = Spot()
    try:
        with h5py.File(path, "r") as f, np.errstate(all="ignore"):
            return _check_open(path, f, kind, spot)
    except HpoError:
        raise
    except READ_ERRORS as exc:  # the file's bytes, not our code: HDF5 (or numpy on what it returned) gave up
        raise spot.error(path, exc) from None


def _check_open(path: str, f: h5py.File, kind: str | None, spot: Spot) -> Summary:
    kind = _kind(f, path, kind)
    layout = _layout(f, kind)
    summary = Summary(path=path, kind=kind, events=0)
    for key, (rank, dtype_kinds) in layout.items():
        spot.at(key)
        if key not in f:
            raise DataError(path, f"missing dataset; a {kind} file needs {', '.join(layout)}", key=key)
        ds = f[key]
        if not isinstance(ds, h5py.Dataset):
            raise DataError(path, "is a group, expected a dataset", key=key)
        if ds.ndim != rank:
            raise DataError(path, f"expected rank {rank}, but got shape {ds.shape}", key=key)
        if ds.dtype.kind not in dtype_kinds:
            raise DataError(path, f"expected a numeric dtype ({dtype_kinds}), but got {ds.dtype}", key=key)
        summary.datasets[key] = (tuple(int(s) for s in ds.shape), str(ds.dtype))
    checker: KindCheck
    if layout is RAW_UNIVERSE:
        checker = RawUniverseCheck(path, f, layout)
        length = _raw_events(path, f)
    else:
        checker = KIND_CHECKS[kind](path, f, layout)
        length = _length(path, f, layout)
    checker.shapes()
    everything = datasets(f)
    for key, ds in everything.items():
        spot.at(key)
        check_allocated(path, key, ds)
    spot.unit = "event" if layout is not RAW_UNIVERSE else "index"
    for key in layout:
        ds = f[key]
        spot.at(key)
        if ds.ndim == 0 or ds.shape[0] == 0:
            continue
        if ds.dtype.kind != "f" and key not in checker.scanned:
            for _ in _blocks(ds, spot):
                pass  # decoded (and checksummed) only
            continue
        for start, block in _blocks(ds, spot):
            if block.dtype.kind == "f" and not np.isfinite(block).all():
                rows = np.flatnonzero(~np.isfinite(block.reshape(block.shape[0], -1)).all(axis=1))
                where = "event" if layout is not RAW_UNIVERSE else "index"
                raise DataError(
                    path, f"NaN or Inf values (first at {where} {start + int(rows[0])}); regenerate or clean the file",
                    key=key,
                )
            if key in checker.scanned:
                checker.block(key, start, block)
    for key, ds in everything.items():  # the rest (high-level variables, selections): read back, not judged
        if key in layout or ds.ndim == 0:
            continue
        spot.at(key)
        for _ in _blocks(ds, spot):
            pass
    spot.at(None)
    summary.events = length
    summary.facts = checker.facts()
    if layout is RAW_UNIVERSE:
        summary.facts["layout"] = f"raw universe, cut into {length} sub-cubes"
    return summary


def _length(path: str, f: h5py.File, layout: dict[str, tuple[int, str]]) -> int:
    length: int | None = None
    first_key = ""
    for key in layout:
        ds = f[key]
        if length is None:
            length, first_key = int(ds.shape[0]), key
        elif ds.shape[0] != length:
            raise DataError(path, f"has {ds.shape[0]} events but {first_key} has {length}; they must match", key=key)
    if not length:
        raise DataError(path, "the file holds no events", key=first_key)
    return length


def _raw_events(path: str, f: h5py.File) -> int:
    d = int(f["full"].shape[0])
    if d == 0:
        raise DataError(path, "the file holds no events", key="full")
    return (d // min(COSMO_SUBCUBE, d)) ** 3


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
    except OSError:  # missing, a link loop, a directory it cannot enter: check_file names it
        summary = check_file(cfg.path, kind)
    else:
        summary = _checked(cfg.path, stat.st_mtime_ns, stat.st_size, kind)
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
