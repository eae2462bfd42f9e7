"""Writing synthetic data sets to HDF5: chunked, memory-bounded, reproducible byte for byte.

Each generator produces chunks of events; :func:`write_calo` streams them into pre-sized, chunked HDF5
datasets with a rich progress bar, so memory stays bounded whatever the event count. The same seed gives
identical bytes (no timestamps in the file; HDF5 attribute order fixed). Root attributes record
``hpo.kind``, ``hpo.generator``, ``hpo.version``, ``hpo.seed`` and every parameter.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from trainables.data import calo
from trainables.errors import HpoError

GENERATOR_VERSION = "1"
CHUNK_EVENTS = 512


def _progress(total: int, description: str, enabled: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), disable=not enabled)


def _new_file(out: Path) -> h5py.File:
    out.parent.mkdir(parents=True, exist_ok=True)
    # track_order and no object timestamps: same seed -> same bytes
    return h5py.File(out, "w", track_order=True, libver=("earliest", "v110"))


def _attrs(f: h5py.File, kind: str, seed: int, params: dict[str, Any]) -> None:
    f.attrs["hpo.kind"] = kind
    f.attrs["hpo.generator"] = f"trainables.data.generate:{kind}"
    f.attrs["hpo.version"] = GENERATOR_VERSION
    f.attrs["hpo.seed"] = seed
    f.attrs["hpo.params"] = json.dumps(params, sort_keys=True)
    for key, value in sorted(params.items()):
        f.attrs[f"hpo.param.{key}"] = value


def _dataset(group: h5py.Group, name: str, shape: tuple[int, ...], dtype: Any) -> h5py.Dataset:
    chunks = (min(CHUNK_EVENTS if len(shape) == 1 else 64, shape[0]), *shape[1:]) if shape[0] else None
    # images are mostly empty cells: LZF shrinks them ~4x and decompresses faster than disks read
    compression = "lzf" if len(shape) > 1 else None
    return group.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks, compression=compression, track_times=False)


def write_calo(out: Path, *, events: int, size: int = 64, seed: int = 0, signal_fraction: float = 0.5,
               progress: bool = True, on_chunk: Callable[[int], None] | None = None) -> Path:
    """Generate ``events`` calorimeter events into ``out`` (public ATLAS RPV layout plus our variables).

    Args:
        out: the HDF5 file to write (replaced if it exists; written to a temporary name first).
        events: number of events (≥ 1).
        size: image size in pixels (64 or 224).
        seed: the random seed; the same seed gives the same bytes.
        signal_fraction: fraction of signal events in the file (the weights carry the physical mix).
        progress: show a progress bar.
        on_chunk: called with the number of events written after every chunk (tests, callers).
    """
    if events < 1:
        raise HpoError(f"--events must be at least 1, but got {events}")
    if size not in (64, 224):
        raise HpoError(f"--size for calo must be 64 or 224, but got {size}")
    if not 0 < signal_fraction < 1:
        raise HpoError(f"--signal-fraction must be in (0, 1), but got {signal_fraction}")
    rng = np.random.default_rng(seed)
    labels = (rng.random(events) < signal_fraction).astype(np.int8)
    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    params = {"events": events, "size": size, "signal_fraction": signal_fraction}
    with _new_file(tmp) as f:
        _attrs(f, "calo", seed, params)
        g = f.create_group("all_events", track_order=True)
        images = {name: _dataset(g, name, (events, size, size), np.float32) for name in ("hist", "histEM", "histtrack")}
        scalars = {name: _dataset(g, name, (events,), np.float32) for name in ("y", "weight", "normalized_weight", *calo.HIGH_LEVEL)}
        flags = {name: _dataset(g, name, (events,), np.bool_) for name in ("passSR4J", "passSR5J", "passSR")}
        raw_weight = np.empty(events)
        with _progress(events, f"calo {size}×{size}", progress) as bar:
            task = bar.add_task("events", total=events)
            for start in range(0, events, CHUNK_EVENTS):
                stop = min(start + CHUNK_EVENTS, events)
                chunk = calo.generate_chunk(np.random.default_rng([seed, start]), labels[start:stop], size)
                for name, ds in images.items():
                    ds[start:stop] = chunk[name]
                for name in ("y", *calo.HIGH_LEVEL):
                    scalars[name][start:stop] = chunk[name]
                flags["passSR4J"][start:stop] = chunk["passSR4J"]
                flags["passSR5J"][start:stop] = chunk["passSR5J"]
                flags["passSR"][start:stop] = chunk["passSR4J"] | chunk["passSR5J"]
                raw_weight[start:stop] = chunk["raw_weight"]
                bar.update(task, completed=stop)
                if on_chunk:
                    on_chunk(stop)
        # physical weights σ·L/N: known only once every event exists (N events of each class)
        weight = np.zeros(events)
        sig, bkg = labels == 1, labels == 0
        if sig.any():
            weight[sig] = calo.SIGMA_SIGNAL_PB * calo.LUMI_PB / sig.sum()
        if bkg.any():
            weight[bkg] = calo.SIGMA_QCD_PB * calo.LUMI_PB * raw_weight[bkg] / raw_weight[bkg].sum()
        normalized = np.zeros(events)
        for mask in (sig, bkg):
            if mask.any():
                normalized[mask] = weight[mask] / weight[mask].mean()
        scalars["weight"][:] = weight.astype(np.float32)
        scalars["normalized_weight"][:] = normalized.astype(np.float32)
    tmp.replace(out)
    return out
