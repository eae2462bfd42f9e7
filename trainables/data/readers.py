"""HDF5 -> ``tf.data`` pipelines that shard by Horovod rank without loading the file into memory.

* **Split**: a permutation of the (first ``max_events``) events drawn from the seed gives train,
  validation and test; the same seed always gives the same split.
* **Shard**: the training split is cut into ``size`` disjoint, equal shards (the remainder is dropped), so
  every rank runs exactly :attr:`Splits.steps_per_epoch` batches, which Horovod needs.
* **Streaming**: a rank reads its events in groups sorted by index; each group is one contiguous slab
  read from HDF5 (fast) from which the group's events are picked, so memory holds one group plus the
  shuffle buffer, never the file. Group order and the buffer are reshuffled every epoch.
* **Normalisation**: calorimeter channels are divided by their maxima over the training split (the
  public data's convention), computed once per process and file.

Layouts: ours and the public ATLAS RPV layout (``all_events/hist``, ``histEM``, ``histtrack``, ``y``,
``weight``) are the same for ``calo``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from trainables.data.spec import DataConfig
from trainables.errors import DataError, HpoError

if TYPE_CHECKING:
    import tensorflow as tf

GROUP_EVENTS = 256
CALO_CHANNELS = {3: ("hist", "histEM", "histtrack"), 1: ("hist",)}


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


def split_indices(n: int, split: Sequence[float], seed: int) -> dict[str, np.ndarray]:
    """Deterministic train/val/test event indices (each sorted) for ``n`` events."""
    perm = np.random.default_rng([seed, 7919]).permutation(n)
    n_train = round(split[0] * n)
    n_val = round(split[1] * n)
    parts = {"train": perm[:n_train], "val": perm[n_train:n_train + n_val], "test": perm[n_train + n_val:]}
    return {k: np.sort(v) for k, v in parts.items()}


def _calo_options(options: Mapping[str, Any] | None) -> tuple[tuple[str, ...], str]:
    options = dict(options or {})
    channels = options.pop("channels", 3)
    transform = options.pop("transform", "max")
    if channels not in CALO_CHANNELS:
        raise HpoError(f"data option channels must be 1 or 3, but got {channels!r}")
    if transform not in ("max", "log"):
        raise HpoError(f"data option transform must be 'max' or 'log', but got {transform!r}")
    if options:
        raise HpoError(f"unknown data option(s) {sorted(options)} for calo; valid: channels, transform")
    return CALO_CHANNELS[channels], transform


def _n_events(cfg: DataConfig) -> int:
    try:
        with h5py.File(cfg.path, "r") as f:
            n = int(f["all_events/y"].shape[0])
    except (OSError, KeyError) as exc:
        raise DataError(cfg.path, f"cannot read events ({exc}); run `hpo data check {cfg.path}`") from None
    return min(n, cfg.max_events) if cfg.max_events else n


@functools.lru_cache(maxsize=16)
def _channel_max(path: str, mtime: float, keys: tuple[str, ...], train_key: bytes) -> tuple[float, ...]:
    train = np.frombuffer(train_key, dtype=np.int64)
    maxima = np.zeros(len(keys))
    with h5py.File(path, "r") as f:
        for group in _groups(train):
            lo, hi = int(group[0]), int(group[-1]) + 1
            for c, key in enumerate(keys):
                slab = f["all_events"][key][lo:hi][group - lo]
                maxima[c] = max(maxima[c], float(slab.max()))
    return tuple(float(m) if m > 0 else 1.0 for m in maxima)


def _groups(indices: np.ndarray, size: int = GROUP_EVENTS) -> list[np.ndarray]:
    return [indices[i:i + size] for i in range(0, indices.size, size)]


def _read_group(f: h5py.File, keys: Sequence[str], group: np.ndarray) -> dict[str, np.ndarray]:
    lo, hi = int(group[0]), int(group[-1]) + 1
    return {key: f["all_events"][key][lo:hi][group - lo] for key in keys}


class _CaloStream:
    """Yields groups of (x, y, w) for a sorted index array; reshuffles group order every call."""

    def __init__(self, path: str, keys: Sequence[str], indices: np.ndarray, maxima: Sequence[float],
                 weight_scale: float, seed: int, shuffle: bool, transform: str, epoch: int = 0) -> None:
        self.path, self.keys, self.indices = path, tuple(keys), indices
        self.maxima = np.asarray(maxima, np.float32)
        self.weight_scale = weight_scale
        self.seed, self.shuffle, self.transform, self.epoch = seed, shuffle, transform, epoch

    def __call__(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        groups = _groups(self.indices)
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(len(groups))
            groups = [groups[i] for i in order]
        with h5py.File(self.path, "r") as f:
            for group in groups:
                data = _read_group(f, (*self.keys, "y", "weight"), group)
                x = np.stack([data[k] for k in self.keys], axis=-1).astype(np.float32)
                if self.transform == "log":  # energies span 5 decades: log(1+E)/log(1+E_max), in [0, 1]
                    x = np.log1p(np.maximum(x, 0)) / np.log1p(self.maxima)
                else:
                    x = x / self.maxima
                yield x, data["y"].astype(np.float32), (data["weight"] * self.weight_scale).astype(np.float32)


def make_datasets(cfg: DataConfig, kind: str, *, batch_size: int, seed: int, rank: int = 0, size: int = 1,
                  options: Mapping[str, Any] | None = None) -> Splits:
    """This rank's train/validation/test ``tf.data`` pipelines for a data file of ``kind``.

    Elements are dicts: calo ``{"x": float32[H, W, C], "y": float32[], "w": float32[]}`` (x divided by
    the training split's channel maxima; w the event weight scaled to mean 1 over the training split).

    Raises:
        HpoError: unknown kind or option; DataError: the file cannot serve this split and batch size.
    """
    if kind != "calo":
        raise HpoError(f"no reader for data kind {kind!r}; this build reads: calo")
    import tensorflow as tf

    keys, transform = _calo_options(options)
    n = _n_events(cfg)
    parts = split_indices(n, cfg.split, seed)
    train = parts["train"]
    per_rank = train.size // size
    steps = per_rank // batch_size
    if steps < 1:
        raise DataError(
            cfg.path, f"the training split has {train.size} events, {per_rank} per rank for {size} rank(s): fewer "
            f"than one batch of {batch_size}; use a larger file, a larger split[0] or a smaller batch_size",
        )
    # disjoint equal shards: a seeded permutation of the training events, dealt round-robin
    dealt = np.random.default_rng([seed, 104729]).permutation(train)[: per_rank * size]
    shard = np.sort(dealt[rank::size])
    mtime = os.path.getmtime(cfg.path)
    maxima = _channel_max(cfg.path, mtime, keys, train.astype(np.int64).tobytes())
    with h5py.File(cfg.path, "r") as f:
        weights = f["all_events/weight"][:n]
        h, w = f["all_events/hist"].shape[1:]
    mean_weight = float(weights[train].mean()) or 1.0
    scale = 1.0 / mean_weight
    signature = (
        tf.TensorSpec((None, h, w, len(keys)), tf.float32), tf.TensorSpec((None,), tf.float32), tf.TensorSpec((None,), tf.float32),
    )

    def pipeline(indices: np.ndarray, *, shuffle: bool, drop: bool, epoch: int = 0) -> tf.data.Dataset:
        stream = _CaloStream(cfg.path, keys, indices, maxima, scale, seed + 31 * rank, shuffle, transform, epoch)
        ds = tf.data.Dataset.from_generator(stream, output_signature=signature).unbatch()
        if shuffle:
            buffer = min(cfg.shuffle_buffer, max(indices.size, 1))
            ds = ds.shuffle(buffer, seed=(seed * 1_000_003 + rank * 10_007 + epoch) % 2**31, reshuffle_each_iteration=False)
        ds = ds.map(lambda x, y, w: {"x": x, "y": y, "w": w}, num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.batch(batch_size, drop_remainder=drop)
        if drop:
            ds = ds.take(steps)
        return ds.prefetch(tf.data.AUTOTUNE)

    return Splits(
        train=pipeline(shard, shuffle=True, drop=True),
        val=pipeline(parts["val"][rank::size], shuffle=False, drop=False),
        test=pipeline(parts["test"][rank::size], shuffle=False, drop=False),
        n_train=int(train.size), n_val=int(parts["val"].size), n_test=int(parts["test"].size),
        steps_per_epoch=steps, input_shape=(int(h), int(w), len(keys)),
        norm={"channel_max": list(maxima), "channels": list(keys), "weight_scale": scale, "transform": transform},
        train_for_epoch=lambda epoch: pipeline(shard, shuffle=True, drop=True, epoch=epoch),
    )


def load_arrays(cfg: DataConfig, kind: str, split: str, *, seed: int, keys: Sequence[str] | None = None,
                limit: int | None = None) -> dict[str, np.ndarray]:
    """Raw (un-normalised) arrays of one split, in index order, for metrics and plots on rank 0."""
    if kind != "calo":
        raise HpoError(f"no reader for data kind {kind!r}; this build reads: calo")
    if split not in ("train", "val", "test"):
        raise HpoError(f"split must be train, val or test, but got {split!r}")
    indices = split_indices(_n_events(cfg), cfg.split, seed)[split]
    if limit is not None:
        indices = indices[:limit]
    with h5py.File(cfg.path, "r") as f:
        keys = list(keys or f["all_events"].keys())
        missing = [k for k in keys if k not in f["all_events"]]
        if missing:
            raise DataError(cfg.path, f"no dataset {missing[0]}", key=f"all_events/{missing[0]}")
        out: dict[str, list[np.ndarray]] = {k: [] for k in keys}
        for group in _groups(indices, 1024):
            for key, value in _read_group(f, keys, group).items():
                out[key].append(value)
    return {k: np.concatenate(v) if v else np.zeros((0,)) for k, v in out.items()}
