"""HDF5 -> ``tf.data`` pipelines that shard by Horovod rank without loading the file into memory.

* **Split**: a permutation of the (first ``max_events``) events drawn from the seed gives train,
  validation and test; the same seed always gives the same split.
* **Shard**: the training split is cut into ``size`` disjoint, equal shards (the remainder is dropped), so
  every rank runs exactly :attr:`Splits.steps_per_epoch` batches, which Horovod needs. Shards are made of
  blocks of consecutive events drawn from the whole file, so a rank reads little it does not use.
* **Streaming**: a rank reads its events in groups sorted by index; each run of nearby events in a group
  is one contiguous slab read from HDF5 (fast) from which the events are picked, so memory holds one
  group plus the shuffle buffer, never the file. Groups and the shuffle buffer are bounded in *bytes*
  (a 128³ cube of 4 channels is 32 MiB), and group order and the buffer are reshuffled every epoch.
* **Normalisation**: computed on the training split once per process and file version.

One reader per data kind (:data:`READERS`), each accepting our layout and the public one:

=========  =====================================================  ===================================
kind       element                                                 layouts
=========  =====================================================  ===================================
calo       ``x`` float32[H, W, C], ``y`` float32[], ``w`` []        ours = public ATLAS RPV (``all_events/``)
cosmo3d    ``x`` float32[S, S, S, C], ``y`` float32[T] (u-space)    ours (``x``, ``unitPar``); MLPerf-style
                                                                   (``x``, ``y``); raw universe (``full``
                                                                   (D, D, D, 4), ``unitPar`` (4,)), cut
                                                                   into sub-cubes
lensing    ``x`` float32[S, S, 1] in [−1, 1), ``c`` float32[2]      ours (``maps``, ``params``); a bare
                                                                   (N, S, S) ``maps``/``kappa`` dataset
=========  =====================================================  ===================================
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import h5py
import numpy as np

from trainables.data import cosmo3d
from trainables.data.checks import h5_attr
from trainables.data.integrity import READ_ERRORS, Spot, damaged_rows
from trainables.data.spec import DataConfig
from trainables.errors import DataError, HpoError

if TYPE_CHECKING:
    import tensorflow as tf

GROUP_EVENTS = 256
READ_GAP = 8  # events: a larger gap between wanted events ends one HDF5 read and starts the next
SHARD_BLOCK = 16  # training events dealt to ranks in blocks of this many consecutive ones (see make_datasets)
GROUP_BYTES = 32 * 2**20
SHUFFLE_BYTES = 256 * 2**20
PREFETCH_BATCHES = 2
CALO_CHANNELS = {3: ("hist", "histEM", "histtrack"), 1: ("hist",)}
COSMO_SUBCUBE = 128  # the public raw universes (512³) are cut into 128³ sub-cubes, as MLPerf does


@dataclass(frozen=True)
class Splits:
    """This rank's datasets and what the training loop needs to know about them."""

    train: tf.data.Dataset
    val: tf.data.Dataset
    test: tf.data.Dataset
    n_train: int
    n_val: int
    n_test: int
    steps_per_epoch: int
    input_shape: tuple[int, ...]
    norm: dict[str, Any] = field(default_factory=dict)
    #: the training stream of a given epoch: its shuffling depends only on (seed, rank, epoch), so a
    #: trial resumed at epoch k sees exactly the batches an uninterrupted one would have seen
    train_for_epoch: Callable[[int], tf.data.Dataset] | None = None
    #: read errors of the streams (file, dataset, events), newest last: TensorFlow re-raises a generator's
    #: exception as an opaque OpError, so the training loop looks here for the data error behind it
    read_failures: list[DataError] = field(default_factory=list)


def split_indices(n: int, split: Sequence[float], seed: int) -> dict[str, np.ndarray]:
    """Deterministic train/val/test event indices (each sorted) for ``n`` events."""
    perm = np.random.default_rng([seed, 7919]).permutation(n)
    n_train = round(split[0] * n)
    n_val = round(split[1] * n)
    parts = {"train": perm[:n_train], "val": perm[n_train:n_train + n_val], "test": perm[n_train + n_val:]}
    return {k: np.sort(v) for k, v in parts.items()}


def event_groups(indices: np.ndarray, size: int = GROUP_EVENTS) -> list[np.ndarray]:
    """``indices`` in consecutive chunks of ``size`` (for reads: ``reader.group_events`` events at a time)."""
    return [indices[i:i + size] for i in range(0, indices.size, size)]


def _slab(ds: h5py.Dataset, group: np.ndarray) -> np.ndarray:
    """The events ``group`` (sorted) of ``ds``: one contiguous read per run of nearby events, then a pick.

    A gap of more than :data:`READ_GAP` events starts a new read, so a rank's shard (blocks of events
    spread over the file) costs about the bytes it uses, not the whole span it covers.
    A damaged chunk (a checksum mismatch, bytes that do not decode) is a :class:`DataError` naming the file, the
    dataset and the events of the read.
    """
    cuts = np.flatnonzero(np.diff(group) > READ_GAP) + 1
    parts = []
    for run in np.split(group, cuts):
        lo, hi = int(run[0]), int(run[-1]) + 1
        parts.append(_read(ds, lo, hi)[run - lo])
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _read(ds: h5py.Dataset, lo: int, hi: int, *index: slice) -> np.ndarray:
    """``ds[lo:hi, *index]``; an HDF5 read error becomes a :class:`DataError` naming file, dataset and events."""
    try:
        return np.asarray(ds[(slice(lo, hi), *index)])
    except READ_ERRORS as exc:
        raise Spot(ds.name.lstrip("/"), *damaged_rows(ds, lo, hi)).error(ds.file.filename, exc) from None


class KindReader:
    """How one data kind is read: its layout, options, normalisation and elements.

    Subclasses set :attr:`kind`, :attr:`options` (name -> default) and implement the hooks. One instance
    serves one file and one set of options.
    """

    kind: ClassVar[str]
    options: ClassVar[dict[str, Any]] = {}

    def __init__(self, path: str, options: Mapping[str, Any] | None) -> None:
        self.path = path
        given = dict(options or {})
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            raise HpoError(f"unknown data option(s) {unknown} for {self.kind}; valid: {', '.join(self.options) or 'none'}")
        self.opts = {**self.options, **given}
        try:
            with h5py.File(path, "r") as f:
                self.open(f)
        except (OSError, KeyError) as exc:
            raise DataError(path, f"cannot read the {self.kind} layout ({exc}); run `hpo data check {path}`") from None

    # --- hooks --------------------------------------------------------------------------------------

    def open(self, f: h5py.File) -> None:
        """Validate options against the file and remember shapes (``self.n``, ``self.sample_shape``)."""
        raise NotImplementedError

    def prepare(self, train: np.ndarray) -> dict[str, Any]:
        """Normalisation constants from the training indices (cached per file version by callers)."""
        return {}

    def read(self, f: h5py.File, group: np.ndarray, norm: Mapping[str, Any]) -> tuple[np.ndarray, ...]:
        """The group's elements, normalised, as a tuple matching :meth:`fields`."""
        raise NotImplementedError

    def fields(self) -> dict[str, tuple[int, ...]]:
        """Element names and per-event shapes, in :meth:`read` order (all float32)."""
        raise NotImplementedError

    # --- shared -------------------------------------------------------------------------------------

    n: int
    sample_shape: tuple[int, ...]

    @property
    def event_bytes(self) -> int:
        return int(sum(4 * np.prod(shape, dtype=np.int64) for shape in self.fields().values()))

    @property
    def group_events(self) -> int:
        return int(max(1, min(GROUP_EVENTS, GROUP_BYTES // max(self.event_bytes, 1))))


class CaloReader(KindReader):
    """LHC images: ``x`` = channels divided by their training-split maxima (``max``) or log-scaled (``log``);
    ``w`` the event weight scaled to mean 1 over the training split."""

    kind = "calo"
    options: ClassVar[dict[str, Any]] = {"channels": 3, "transform": "max"}

    def open(self, f: h5py.File) -> None:
        if self.opts["channels"] not in CALO_CHANNELS:
            raise HpoError(f"data option channels must be 1 or 3, but got {self.opts['channels']!r}")
        if self.opts["transform"] not in ("max", "log"):
            raise HpoError(f"data option transform must be 'max' or 'log', but got {self.opts['transform']!r}")
        self.keys = CALO_CHANNELS[self.opts["channels"]]
        self.n = int(f["all_events/y"].shape[0])
        h, w = f["all_events/hist"].shape[1:]
        self.sample_shape = (int(h), int(w), len(self.keys))

    def prepare(self, train: np.ndarray) -> dict[str, Any]:
        maxima = np.zeros(len(self.keys))
        with h5py.File(self.path, "r") as f:
            for group in event_groups(train, self.group_events):
                for c, key in enumerate(self.keys):
                    maxima[c] = max(maxima[c], float(_slab(f["all_events"][key], group).max()))
            mean_weight = float(_read(f["all_events/weight"], 0, int(train.max()) + 1)[train].mean()) if train.size else 1.0
        return {"channel_max": [float(m) if m > 0 else 1.0 for m in maxima], "channels": list(self.keys),
                "weight_scale": 1.0 / (mean_weight or 1.0), "transform": self.opts["transform"]}

    def read(self, f: h5py.File, group: np.ndarray, norm: Mapping[str, Any]) -> tuple[np.ndarray, ...]:
        g = f["all_events"]
        x = np.stack([_slab(g[k], group) for k in self.keys], axis=-1).astype(np.float32)
        maxima = np.asarray(norm["channel_max"], np.float32)
        # energies span 5 decades: log(1+E)/log(1+E_max), in [0, 1]
        x = np.log1p(np.maximum(x, 0)) / np.log1p(maxima) if norm["transform"] == "log" else x / maxima
        y = _slab(g["y"], group).astype(np.float32)
        w = (_slab(g["weight"], group) * norm["weight_scale"]).astype(np.float32)
        return x, y, w

    def fields(self) -> dict[str, tuple[int, ...]]:
        return {"x": self.sample_shape, "y": (), "w": ()}


class Cosmo3dReader(KindReader):
    """Dark-matter density cubes: ``x`` = ``log(1 + counts)`` (``log``) or counts over the cube's mean
    per channel (``mean``), from ``redshifts`` channels (1 = z = 0 only, or all 4); ``y`` = the first
    ``targets`` of (Ω_m, σ_8, n_s, H_0) in u-space [−1, 1] (physical = fiducial · (1 + 0.1 u))."""

    kind = "cosmo3d"
    options: ClassVar[dict[str, Any]] = {"transform": "log", "redshifts": 4, "targets": 3}

    def open(self, f: h5py.File) -> None:
        if self.opts["transform"] not in ("log", "mean"):
            raise HpoError(f"data option transform must be 'log' or 'mean', but got {self.opts['transform']!r}")
        if int(self.opts["targets"]) not in (1, 2, 3, 4):
            raise HpoError(f"data option targets must be 1 to 4, but got {self.opts['targets']!r}")
        if "full" in f:  # one raw universe (D, D, D, 4) and its unitPar (4,)
            d = int(f["full"].shape[0])
            self.sub = min(COSMO_SUBCUBE, d)
            self.per_axis = d // self.sub
            self.n = self.per_axis**3
            channels = int(f["full"].shape[-1])
            self.layout = "raw"
        else:
            self.layout = "ours"
            self.target_key = "unitPar" if "unitPar" in f else "y"
            self.n = int(f["x"].shape[0])
            self.sub = int(f["x"].shape[1])
            channels = int(f["x"].shape[-1])
        redshifts = int(self.opts["redshifts"])
        if redshifts not in (1, channels):
            raise HpoError(f"data option redshifts must be 1 or {channels} (the file's channels), but got {redshifts}")
        self.sample_shape = (self.sub, self.sub, self.sub, redshifts)

    def _cubes(self, f: h5py.File, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = self.sample_shape[-1]
        if self.layout == "ours":
            return _slab(f["x"], group)[..., :c], _slab(f[self.target_key], group)
        s, p = self.sub, self.per_axis
        cubes = []
        for index in group:
            i, j, k = int(index) // (p * p), int(index) // p % p, int(index) % p
            cubes.append(_read(f["full"], i * s, (i + 1) * s, slice(j * s, (j + 1) * s), slice(k * s, (k + 1) * s),
                               slice(0, c)))
        return np.stack(cubes), np.repeat(_read(f["unitPar"], 0, 4)[None], group.size, axis=0)

    def read(self, f: h5py.File, group: np.ndarray, norm: Mapping[str, Any]) -> tuple[np.ndarray, ...]:
        counts, u = self._cubes(f, group)
        x = np.maximum(counts.astype(np.float32), 0)
        if self.opts["transform"] == "log":
            x = np.log1p(x)
        else:
            x = x / np.maximum(x.mean(axis=(1, 2, 3), keepdims=True), 1e-6)
        return x, u[:, : int(self.opts["targets"])].astype(np.float32)

    def fields(self) -> dict[str, tuple[int, ...]]:
        return {"x": self.sample_shape, "y": (int(self.opts["targets"]),)}

    def target_names(self) -> list[str]:
        return list(cosmo3d.PARAMETERS[: int(self.opts["targets"])])


class LensingReader(KindReader):
    """Convergence maps: ``x`` = CosmoGAN's s(y) = 2y/(y + 4) − 1 of y = 1 + κ/λ ≥ 0 (λ the lognormal
    shift: the file's ``hpo.param.shift``, else from the training minimum), in [−1, 1) like a tanh
    output; ``c`` the map's (Ω_m, σ_8) (zeros when the file has none). :func:`kappa_from_model`
    inverts the transform."""

    kind = "lensing"

    def open(self, f: h5py.File) -> None:
        self.key = next((k for k in ("maps", "kappa") if k in f), None) or "maps"
        ds = f[self.key]
        self.n = int(ds.shape[0])
        self.sample_shape = (int(ds.shape[1]), int(ds.shape[2]), 1)
        self.has_params = "params" in f
        shift = h5_attr(f, "hpo.param.shift")
        self.shift = float(shift) if shift is not None else None
        arcmin = h5_attr(f, "hpo.param.pixel_arcmin")
        self.pixel_rad = float(np.deg2rad(float(arcmin) / 60)) if arcmin is not None else 1.0

    def prepare(self, train: np.ndarray) -> dict[str, Any]:
        pixel = {"pixel_size": self.pixel_rad}
        if self.shift is not None:
            return {"shift": self.shift, **pixel}
        low = 0.0
        with h5py.File(self.path, "r") as f:
            for group in event_groups(train, self.group_events):
                low = min(low, float(_slab(f[self.key], group).min()))
        return {"shift": max(-low * 1.05, 1e-3), **pixel}

    def read(self, f: h5py.File, group: np.ndarray, norm: Mapping[str, Any]) -> tuple[np.ndarray, ...]:
        kappa = _slab(f[self.key], group).astype(np.float32)
        x = model_from_kappa(kappa, norm["shift"])[..., None]
        c = _slab(f["params"], group).astype(np.float32) if self.has_params else np.zeros((group.size, 2), np.float32)
        return x, c

    def fields(self) -> dict[str, tuple[int, ...]]:
        return {"x": self.sample_shape, "c": (2,)}


def model_from_kappa(kappa: np.ndarray, shift: float) -> np.ndarray:
    """CosmoGAN's transform s(y) = 2y/(y + 4) − 1 of y = max(1 + κ/λ, 0): κ ≥ −λ maps into [−1, 1)."""
    y = np.maximum(1.0 + np.asarray(kappa, np.float32) / np.float32(shift), 0.0)
    return (2 * y / (y + 4) - 1).astype(np.float32)


def kappa_from_model(s: np.ndarray, shift: float) -> np.ndarray:
    """The inverse of :func:`model_from_kappa`: y = 4(s + 1)/(1 − s), κ = λ(y − 1)."""
    s = np.clip(np.asarray(s, np.float64), -1.0, 1.0 - 1e-6)
    return (shift * (4 * (s + 1) / (1 - s) - 1)).astype(np.float32)


READERS: dict[str, type[KindReader]] = {"calo": CaloReader, "cosmo3d": Cosmo3dReader, "lensing": LensingReader}


def reader_for(cfg: DataConfig, kind: str, options: Mapping[str, Any] | None = None) -> KindReader:
    """The reader of ``kind`` for ``cfg.path`` with ``options``; unknown kinds and options are errors."""
    if kind not in READERS:
        raise HpoError(f"no reader for data kind {kind!r}; valid kinds are {', '.join(READERS)}")
    return READERS[kind](cfg.path, options)


def _n_events(cfg: DataConfig, reader: KindReader) -> int:
    return min(reader.n, cfg.max_events) if cfg.max_events else reader.n


def event_splits(cfg: DataConfig, reader: KindReader, seed: int) -> dict[str, np.ndarray]:
    """The sorted train/val/test indices of ``cfg``'s file as a trial with ``seed`` splits it (``max_events`` honoured)."""
    return split_indices(_n_events(cfg, reader), cfg.split, seed)


@functools.lru_cache(maxsize=16)
def _norm(kind: str, path: str, mtime: float, options: str, train_key: bytes) -> str:
    reader = READERS[kind](path, json.loads(options))
    return json.dumps(reader.prepare(np.frombuffer(train_key, dtype=np.int64)))


class _Stream:
    """Yields groups of elements for a sorted index array; reshuffles group order per epoch."""

    def __init__(self, reader: KindReader, norm: Mapping[str, Any], indices: np.ndarray, seed: int, shuffle: bool,
                 epoch: int = 0, failures: list[DataError] | None = None) -> None:
        self.reader, self.norm, self.indices = reader, norm, indices
        self.seed, self.shuffle, self.epoch = seed, shuffle, epoch
        self.failures = failures if failures is not None else []

    def __call__(self) -> Iterator[tuple[np.ndarray, ...]]:
        groups = event_groups(self.indices, self.reader.group_events)
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(len(groups))
            groups = [groups[i] for i in order]
        try:
            with h5py.File(self.reader.path, "r") as f:
                for group in groups:
                    yield self.reader.read(f, group, self.norm)
        except DataError as exc:
            self.failures.append(exc)
            raise
        except READ_ERRORS as exc:  # opening the file (replaced, truncated, gone)
            failure = Spot().error(self.reader.path, exc)
            self.failures.append(failure)
            raise failure from None


def make_datasets(cfg: DataConfig, kind: str, *, batch_size: int, seed: int, rank: int = 0, size: int = 1,
                  options: Mapping[str, Any] | None = None) -> Splits:
    """This rank's train/validation/test ``tf.data`` pipelines for a data file of ``kind``.

    Elements are dicts of float32 tensors named as in the module docstring's table. The pipelines hold no
    iteration state, so a warm worker's next trial with the same file, split, seed, batch size and options gets
    the same :class:`Splits` again (building them costs ~0.2 s of every trial's set-up); a rewritten file
    (new modification time) gets new ones.

    Raises:
        HpoError: unknown kind or option; DataError: the file cannot serve this split and batch size.
    """
    key = (cfg.model_dump_json(), kind, batch_size, seed, rank, size, json.dumps(dict(options or {}), sort_keys=True),
           os.path.getmtime(cfg.path) if os.path.exists(cfg.path) else None)
    if _SPLITS_CACHE and _SPLITS_CACHE[0][0] == key:
        return _SPLITS_CACHE[0][1]
    splits = _make_datasets(cfg, kind, batch_size=batch_size, seed=seed, rank=rank, size=size, options=options)
    _SPLITS_CACHE[:] = [(key, splits)]
    return splits


_SPLITS_CACHE: list[tuple[tuple[Any, ...], Splits]] = []  # the last call's (one entry: a worker runs one trial at a time)


def _make_datasets(cfg: DataConfig, kind: str, *, batch_size: int, seed: int, rank: int, size: int,
                   options: Mapping[str, Any] | None) -> Splits:
    import tensorflow as tf

    reader = reader_for(cfg, kind, options)
    parts = event_splits(cfg, reader, seed)
    train = parts["train"]
    per_rank = train.size // size
    steps = per_rank // batch_size
    if steps < 1:
        raise DataError(
            cfg.path, f"the training split has {train.size} events, {per_rank} per rank for {size} rank(s): fewer "
            f"than one batch of {batch_size}; use a larger file, a larger split[0] or a smaller batch_size",
        )
    # disjoint equal shards: blocks of consecutive training events in a seeded random order, cut into `size`
    # equal parts; every rank draws from the whole file, and its reads stay contiguous within a block
    blocks = event_groups(np.sort(train), SHARD_BLOCK)
    order = np.random.default_rng([seed, 104729]).permutation(len(blocks))
    dealt = np.concatenate([blocks[i] for i in order])[: per_rank * size]
    shard = np.sort(dealt[rank * per_rank:(rank + 1) * per_rank])
    norm = json.loads(_norm(kind, cfg.path, os.path.getmtime(cfg.path), json.dumps(reader.opts, sort_keys=True),
                            train.astype(np.int64).tobytes()))
    fields = reader.fields()
    signature = tuple(tf.TensorSpec((None, *shape), tf.float32) for shape in fields.values())
    names = list(fields)
    buffer_cap = max(1, SHUFFLE_BYTES // max(reader.event_bytes, 1))

    @tf.autograph.experimental.do_not_convert  # plain Python: tracing it through autograph costs ~50 ms per dataset
    def as_dict(*xs: tf.Tensor) -> dict[str, tf.Tensor]:
        return dict(zip(names, xs, strict=True))

    failures: list[DataError] = []

    def pipeline(indices: np.ndarray, *, shuffle: bool, drop: bool, epoch: int = 0) -> tf.data.Dataset:
        stream = _Stream(reader, norm, indices, seed + 31 * rank, shuffle, epoch, failures)
        ds = tf.data.Dataset.from_generator(stream, output_signature=signature).unbatch()
        if shuffle:
            buffer = min(cfg.shuffle_buffer, buffer_cap, max(indices.size, 1))
            ds = ds.shuffle(buffer, seed=(seed * 1_000_003 + rank * 10_007 + epoch) % 2**31, reshuffle_each_iteration=False)
        ds = ds.map(as_dict)
        # a training shard holds exactly per_rank events: dropping the remainder leaves `steps` batches and the
        # stream ends by itself, with no generator call left in flight when the loop drops its iterator
        ds = ds.batch(batch_size, drop_remainder=drop).prefetch(PREFETCH_BATCHES)
        return ds.with_options(no_autotune)

    # no autotuning: an iterator's destructor waits for the autotuning thread to wake from its sleep, which
    # stalled every other epoch here by ~4.4 s (in 2-rank runs by more). The Python generator is the only
    # costly stage, so fixed settings lose nothing
    no_autotune = tf.data.Options()
    no_autotune.autotune.enabled = False

    if isinstance(reader, Cosmo3dReader):
        norm = {**norm, "targets": reader.target_names(), "transform": reader.opts["transform"],
                "redshifts": reader.opts["redshifts"]}
    return Splits(
        train=pipeline(shard, shuffle=True, drop=True),
        val=pipeline(parts["val"][rank::size], shuffle=False, drop=False),
        test=pipeline(parts["test"][rank::size], shuffle=False, drop=False),
        n_train=int(train.size), n_val=int(parts["val"].size), n_test=int(parts["test"].size),
        steps_per_epoch=steps, input_shape=reader.sample_shape, norm=norm,
        train_for_epoch=lambda epoch: pipeline(shard, shuffle=True, drop=True, epoch=epoch), read_failures=failures,
    )


def load_arrays(cfg: DataConfig, kind: str, split: str, *, seed: int, keys: Sequence[str] | None = None,
                limit: int | None = None) -> dict[str, np.ndarray]:
    """Raw (un-normalised) datasets of one split, in index order, for metrics and plots on rank 0.

    Keys are dataset names within the kind's group (``all_events/`` for calo, the root otherwise).
    """
    if split not in ("train", "val", "test"):
        raise HpoError(f"split must be train, val or test, but got {split!r}")
    reader = reader_for(cfg, kind)
    indices = event_splits(cfg, reader, seed)[split]
    if limit is not None:
        indices = indices[:limit]
    with h5py.File(cfg.path, "r") as f:
        root = f["all_events"] if kind == "calo" else f
        keys = list(keys or [k for k in root if isinstance(root[k], h5py.Dataset)])
        missing = [k for k in keys if k not in root]
        if missing:
            prefix = "all_events/" if kind == "calo" else ""
            raise DataError(cfg.path, f"no dataset {missing[0]}", key=f"{prefix}{missing[0]}")
        out: dict[str, list[np.ndarray]] = {k: [] for k in keys}
        for group in event_groups(indices, reader.group_events):
            for key in keys:
                out[key].append(_slab(root[key], group))
    return {k: np.concatenate(v) if v else np.zeros((0,)) for k, v in out.items()}
