"""Writing synthetic data sets to HDF5: chunked, memory-bounded, reproducible byte for byte.

Each generator produces chunks of events; :func:`write_calo`, :func:`write_cosmo3d` and
:func:`write_lensing` stream them through one loop (``_write``) into pre-sized, chunked HDF5 datasets
with a rich progress bar, so memory stays bounded whatever the event count. The same seed gives
identical bytes (no timestamps in the file; HDF5 attribute order fixed). Root attributes record
``hpo.kind``, ``hpo.generator``, ``hpo.version``, ``hpo.seed`` and every parameter.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from trainables.data import calo, cosmo3d, lensing
from trainables.errors import HpoError

GENERATOR_VERSION = "1"
CHUNK_EVENTS = 512
#: cells (cosmo3d) or 2 × pixels (lensing) generated per chunk: bounds the work arrays to tens of MiB
CHUNK_CELLS = 2**21


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


def _dataset(group: h5py.Group, name: str, shape: tuple[int, ...], dtype: Any,
             chunks: tuple[int, ...] | None = None) -> h5py.Dataset:
    if chunks is None and shape[0]:
        chunks = (min(CHUNK_EVENTS if len(shape) == 1 else 64, shape[0]), *shape[1:])
    # images are mostly empty cells: LZF shrinks them ~4x and decompresses faster than disks read
    compression = "lzf" if len(shape) > 1 else None
    # Fletcher-32 on every chunk: a flipped bit or an overwritten block fails the read of its chunk instead of
    # feeding wrong values (or, in a compressed chunk, plausible garbage) to training (`hpo data check --deep`)
    return group.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks, compression=compression,
                                fletcher32=chunks is not None, track_times=False)


@dataclass(frozen=True)
class _Column:
    """A per-event dataset: (N, *shape) of ``dtype``; ``chunk_events`` events per HDF5 chunk (None: default)."""

    name: str
    shape: tuple[int, ...]
    dtype: Any
    chunk_events: int | None = None


def _write(out: Path, *, kind: str, seed: int, params: dict[str, Any], events: int, chunk_events: int,
           columns: list[_Column], make_chunk: Callable[[np.random.Generator, int, int], dict[str, np.ndarray]],
           description: str, progress: bool, on_chunk: Callable[[int], None] | None, group: str | None = None,
           attrs: dict[str, Any] | None = None, finish: Callable[[dict[str, h5py.Dataset]], None] | None = None,
           overwrite: bool = True) -> Path:
    """The chunked writing loop shared by every generator.

    Creates ``columns`` (in order, under ``group`` or the root), then for each chunk [start, stop) calls
    ``make_chunk(np.random.default_rng([seed, start]), start, stop)`` and writes the returned arrays whose
    names are columns, in column order (other keys are the caller's business); then ``finish`` (for
    values known only once every event exists). Writes to a temporary file next to ``out`` and renames it at the
    end, so a file at ``out`` is always complete (a killed writer leaves only a hidden ``.NAME.*.partial``); the
    temporary file is removed on failure. An existing ``out`` is an error unless ``overwrite``.
    """
    out = Path(out)
    _refuse_existing(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    # a name of this writer's own (another one may write the same --out), created with the usual permissions
    tmp = out.with_name(f".{out.name}.{os.getpid()}-{secrets.token_hex(4)}.partial")
    try:
        with _new_file(tmp) as f:
            _attrs(f, kind, seed, params)
            for key, value in (attrs or {}).items():
                f.attrs[key] = value
            g = f.create_group(group, track_order=True) if group else f
            datasets = {
                c.name: _dataset(g, c.name, (events, *c.shape), c.dtype,
                                 None if c.chunk_events is None else (min(c.chunk_events, events), *c.shape))
                for c in columns
            }
            with _progress(events, description, progress) as bar:
                task = bar.add_task("events", total=events)
                for start in range(0, events, chunk_events):
                    stop = min(start + chunk_events, events)
                    chunk = make_chunk(np.random.default_rng([seed, start]), start, stop)
                    for name, ds in datasets.items():
                        if name in chunk:
                            ds[start:stop] = chunk[name]
                    bar.update(task, completed=stop)
                    if on_chunk:
                        on_chunk(stop)
            if finish:
                finish(datasets)
        _refuse_existing(out, overwrite)
        tmp.replace(out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


def _refuse_existing(out: Path, overwrite: bool) -> None:
    if not overwrite and (out.exists() or out.is_symlink()):
        raise HpoError(f"{out} exists; pass --force to replace it, or choose another --out")


def _check_events(events: int) -> None:
    if events < 1:
        raise HpoError(f"--events must be at least 1, but got {events}")


def write_calo(out: Path, *, events: int, size: int = 64, seed: int = 0, signal_fraction: float = 0.5,
               progress: bool = True, on_chunk: Callable[[int], None] | None = None, overwrite: bool = True) -> Path:
    """Generate ``events`` calorimeter events into ``out`` (public ATLAS RPV layout plus our variables).

    Args:
        out: the HDF5 file to write (written to a temporary name first, renamed when complete).
        events: number of events (≥ 1).
        size: image size in pixels (64 or 224).
        seed: the random seed; the same seed gives the same bytes.
        signal_fraction: fraction of signal events in the file (the weights carry the physical mix).
        progress: show a progress bar.
        on_chunk: called with the number of events written after every chunk (tests, callers).
        overwrite: replace ``out`` if it exists (else an existing ``out`` is an :class:`HpoError`).
    """
    _check_events(events)
    if size not in (64, 224):
        raise HpoError(f"--size for calo must be 64 or 224, but got {size}")
    if not 0 < signal_fraction < 1:
        raise HpoError(f"--signal-fraction must be in (0, 1), but got {signal_fraction}")
    rng = np.random.default_rng(seed)
    labels = (rng.random(events) < signal_fraction).astype(np.int8)
    raw_weight = np.empty(events)

    def make_chunk(chunk_rng: np.random.Generator, start: int, stop: int) -> dict[str, np.ndarray]:
        chunk = calo.generate_chunk(chunk_rng, labels[start:stop], size)
        chunk["passSR"] = chunk["passSR4J"] | chunk["passSR5J"]
        raw_weight[start:stop] = chunk["raw_weight"]
        return chunk

    def finish(datasets: dict[str, h5py.Dataset]) -> None:
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
        datasets["weight"][:] = weight.astype(np.float32)
        datasets["normalized_weight"][:] = normalized.astype(np.float32)

    columns = [_Column(name, (size, size), np.float32) for name in ("hist", "histEM", "histtrack")]
    columns += [_Column(name, (), np.float32) for name in ("y", "weight", "normalized_weight", *calo.HIGH_LEVEL)]
    columns += [_Column(name, (), np.bool_) for name in ("passSR4J", "passSR5J", "passSR")]
    return _write(
        out, kind="calo", seed=seed, params={"events": events, "size": size, "signal_fraction": signal_fraction},
        events=events, chunk_events=CHUNK_EVENTS, columns=columns, make_chunk=make_chunk, finish=finish,
        description=f"calo {size}×{size}", progress=progress, on_chunk=on_chunk, group="all_events", overwrite=overwrite,
    )


def write_cosmo3d(out: Path, *, events: int, size: int = 32, seed: int = 0, box_size: float = cosmo3d.BOX_SIZE,
                  mean_count: float | None = None, progress: bool = True,
                  on_chunk: Callable[[int], None] | None = None, overwrite: bool = True) -> Path:
    """Generate ``events`` dark-matter cubes into ``out`` (the CosmoFlow layout: ``x``, ``unitPar``, ``physPar``).

    Each cube is a lognormal density field with a BBKS power spectrum of its own cosmology, sampled as
    Poisson particle counts in 4 redshift channels (:mod:`trainables.data.cosmo3d`).

    Args:
        out: the HDF5 file to write (written to a temporary name first, renamed when complete).
        events: number of cubes (≥ 1).
        size: cells per side S (32, 64 or 128).
        seed: the random seed; the same seed gives the same bytes.
        box_size: side of the cube [Mpc/h]; the default 128 is an MLPerf 128³ sub-cube (4 Mpc/h cells at 32³).
        mean_count: mean particles per cell n̄; ``None``: one particle per (Mpc/h)³, (box_size/size)³.
        progress: show a progress bar.
        on_chunk: called with the number of cubes written after every chunk.
        overwrite: replace ``out`` if it exists (else an existing ``out`` is an :class:`HpoError`).
    """
    _check_events(events)
    if size not in cosmo3d.SIZES:
        raise HpoError(f"--size for cosmo3d must be 32, 64 or 128, but got {size}")
    if not box_size > 0:
        raise HpoError(f"box_size must be > 0 (Mpc/h), but got {box_size}")
    if mean_count is not None and not mean_count > 0:
        raise HpoError(f"mean_count must be > 0 (particles per cell), but got {mean_count}")
    nbar = cosmo3d.default_mean_count(size, box_size) if mean_count is None else float(mean_count)
    channels = len(cosmo3d.REDSHIFTS)
    # ~2M cells per chunk: 64 cubes of 32³, 8 of 64³, one of 128³ (tens of MiB of float64 work arrays)
    chunk_events = max(1, CHUNK_CELLS // size**3)

    def make_chunk(rng: np.random.Generator, start: int, stop: int) -> dict[str, np.ndarray]:
        return cosmo3d.generate_chunk(rng, stop - start, size, box_size, nbar)

    params = {"events": events, "size": size, "box_size": float(box_size), "mean_count": nbar,
              "redshifts": list(cosmo3d.REDSHIFTS), "fiducial": list(cosmo3d.FIDUCIAL)}
    columns = [_Column("x", (size, size, size, channels), np.int16, chunk_events=1),
               _Column("unitPar", (4,), np.float32), _Column("physPar", (4,), np.float32)]
    return _write(
        out, kind="cosmo3d", seed=seed, params=params, events=events, chunk_events=chunk_events, columns=columns,
        make_chunk=make_chunk, description=f"cosmo3d {size}³", progress=progress, on_chunk=on_chunk,
        attrs={"parameters": list(cosmo3d.PARAMETERS)}, overwrite=overwrite,
    )


def write_lensing(out: Path, *, events: int, size: int = 64, seed: int = 0, cosmologies: int = 1,
                  pixel_arcmin: float = lensing.PIXEL_ARCMIN, shift: float = lensing.SHIFT,
                  galaxy_density: float = 0.0, progress: bool = True,
                  on_chunk: Callable[[int], None] | None = None, overwrite: bool = True) -> Path:
    """Generate ``events`` convergence maps into ``out`` (``maps``, ``params``, ``cosmology``).

    Shifted-lognormal maps with a known C_ℓ per cosmology (:mod:`trainables.data.lensing`); map i belongs
    to cosmology i mod ``cosmologies``.

    Args:
        out: the HDF5 file to write (written to a temporary name first, renamed when complete).
        events: number of maps (≥ 1).
        size: pixels per side S (64, 128 or 256).
        seed: the random seed; the same seed gives the same bytes.
        cosmologies: number K of cosmologies (1: the fiducial only; K ≤ events).
        pixel_arcmin: pixel size [arcmin] (default: a 256² map spans 3.5°, like CosmoGAN's).
        shift: the lognormal shift λ (κ ≥ −λ without shape noise).
        galaxy_density: galaxies per arcmin² for Gaussian shape noise; 0 (default) for none.
        progress: show a progress bar.
        on_chunk: called with the number of maps written after every chunk.
        overwrite: replace ``out`` if it exists (else an existing ``out`` is an :class:`HpoError`).
    """
    _check_events(events)
    if size not in lensing.SIZES:
        raise HpoError(f"--size for lensing must be 64, 128 or 256, but got {size}")
    if not 1 <= cosmologies <= events:
        raise HpoError(f"--cosmologies must be between 1 and --events ({events}), but got {cosmologies}")
    if not pixel_arcmin > 0:
        raise HpoError(f"pixel_arcmin must be > 0, but got {pixel_arcmin}")
    if not shift > 0:
        raise HpoError(f"shift (the lognormal λ) must be > 0, but got {shift}")
    if galaxy_density < 0:
        raise HpoError(f"--galaxy-density must be >= 0 (0: no shape noise), but got {galaxy_density}")
    table = lensing.cosmologies(cosmologies, np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,))))
    for om, s8 in table:
        try:
            lensing.gaussian_spectrum(om, s8, size, pixel_arcmin, shift)
        except ValueError as exc:
            raise HpoError(f"shift {shift} cannot make lognormal maps at (Ω_m, σ_8) = ({om:.3f}, {s8:.3f}): {exc}; "
                           "raise the shift") from None
    # ~1M pixels per chunk; HDF5 chunks of 256 KiB (16 maps of 64², 4 of 128², 1 of 256²)
    chunk_events = max(1, CHUNK_CELLS // 2 // size**2)
    map_chunk = max(1, min(64, 2**16 // size**2))

    def make_chunk(rng: np.random.Generator, start: int, stop: int) -> dict[str, np.ndarray]:
        index = np.arange(start, stop) % cosmologies
        return lensing.generate_chunk(rng, index, table, size, pixel_arcmin, shift, galaxy_density)

    params = {"events": events, "size": size, "cosmologies": cosmologies, "pixel_arcmin": float(pixel_arcmin),
              "shift": float(shift), "galaxy_density": float(galaxy_density)}
    columns = [_Column("maps", (size, size), np.float32, chunk_events=map_chunk),
               _Column("params", (2,), np.float32), _Column("cosmology", (), np.int32)]
    return _write(
        out, kind="lensing", seed=seed, params=params, events=events, chunk_events=chunk_events, columns=columns,
        make_chunk=make_chunk, description=f"lensing {size}²", progress=progress, on_chunk=on_chunk,
        attrs={"cosmologies": table, "parameters": ["Omega_m", "sigma_8"]}, overwrite=overwrite,
    )
