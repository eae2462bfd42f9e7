"""Keras layers of our own, registered so that an exported ``model.keras`` loads with
``tf_keras.models.load_model`` once this module is imported (``tracking.models`` imports it).

``CubeMoments``: per channel, the logarithm of the variance of a 3D field at several smoothing scales
(each scale an average over s³ cells) and the skewness at the finest. These are one-point statistics of
the kind cosmologists summarise density fields with; a regressor that sees them beside its
convolutional features learns how the fluctuations' amplitude and asymmetry grow from one redshift
channel to the next, which is where Ω_m shows in the cosmo3d cubes (docs/workloads.md).

``PeriodicPadding2D`` and its adjoint ``PeriodicFold2D``, with ``periodic_conv2d`` and
``periodic_conv2d_transpose`` built on them: 2D convolutions on a torus (cosmogan's ``periodic: true``);
``BiasAdd``, a per-channel bias, adds the transposed one's bias after its fold.
Flat-sky convergence maps drawn as Fourier series are periodic; with zero ("same") padding a generator
cannot make its maps wrap around and a discriminator never sees the seam, and the seam's jump leaks power
into the axis-aligned modes of the power spectrum (docs/workloads.md, ``cosmogan``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tensorflow as tf
import tf_keras as keras

_EPS = 1e-6
_Pair = tuple[int, int]


def moment_scales(side: int, wanted: Sequence[int] = (1, 2, 4)) -> tuple[int, ...]:
    """The smoothing scales that tile a cube of ``side`` cells and leave at least 2 cells per side."""
    return tuple(s for s in wanted if side % s == 0 and side // s >= 2)


@keras.saving.register_keras_serializable(package="hpo")
class CubeMoments(keras.layers.Layer):
    """(B, D, H, W, C) → (B, C · (len(scales) + 1)): log-variances at each scale, then skewnesses."""

    def __init__(self, scales: Sequence[int] = (1, 2, 4), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not scales or any(int(s) < 1 for s in scales):
            raise ValueError(f"CubeMoments scales must be positive integers, but got {list(scales)}")
        self.scales = tuple(int(s) for s in scales)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        """The moments of every cube in the batch, computed in float32."""
        x = tf.cast(inputs, tf.float32)
        out = []
        skewness = None
        for s in self.scales:
            field = tf.nn.avg_pool3d(x, s, s, "VALID") if s > 1 else x
            mean, var = tf.nn.moments(field, axes=[1, 2, 3], keepdims=True)
            out.append(tf.math.log(var[:, 0, 0, 0] + _EPS))
            if skewness is None:
                third = tf.reduce_mean(tf.pow(field - mean, 3), axis=[1, 2, 3])
                skewness = third / tf.pow(var[:, 0, 0, 0] + _EPS, 1.5)
        return tf.concat([*out, skewness], axis=-1)

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        """Batch × channels · (scales + 1)."""
        channels = input_shape[-1]
        return (input_shape[0], None if channels is None else channels * (len(self.scales) + 1))

    def get_config(self) -> dict[str, Any]:
        """Serialisable with the model."""
        return {**super().get_config(), "scales": list(self.scales)}


class _Margins2D(keras.layers.Layer):
    """A layer that adds (``_SIGN`` = 1) or removes (−1) ((top, bottom), (left, right)) cells of a map."""

    _SIGN = 1

    def __init__(self, margins: tuple[_Pair, _Pair] | Sequence[Sequence[int]] = ((1, 1), (1, 1)), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.margins = _pairs(margins, f"{type(self).__name__} margins")

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        """Each spatial size grows (or shrinks) by its two margins."""
        sizes = [None if size is None else size + self._SIGN * sum(pair)
                 for size, pair in zip(input_shape[1:3], self.margins, strict=True)]
        return (input_shape[0], *sizes, input_shape[3])

    def get_config(self) -> dict[str, Any]:
        """Serialisable with the model."""
        return {**super().get_config(), "margins": [list(pair) for pair in self.margins]}


@keras.saving.register_keras_serializable(package="hpo")
class PeriodicPadding2D(_Margins2D):
    """(B, H, W, C) → (B, top + H + bottom, left + W + right, C), padded with the map's own opposite edges."""

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        """Wrap each spatial axis (a pad wider than the map wraps around it more than once)."""
        x = inputs
        for axis, (before, after) in zip((1, 2), self.margins, strict=True):
            size = x.shape[axis]
            if size is not None and max(before, after) <= size:  # slices: cheaper than a gather, forward and back
                parts = [_take(x, axis, slice(size - before, None))] if before else []
                parts += [x, _take(x, axis, slice(0, after))] if after else [x]
                x = tf.concat(parts, axis=axis) if len(parts) > 1 else x
            elif before or after:
                index = tf.range(-before, tf.shape(x)[axis] + after) % tf.shape(x)[axis]
                x = tf.gather(x, index, axis=axis)
        return x


@keras.saving.register_keras_serializable(package="hpo")
class PeriodicFold2D(_Margins2D):
    """(B, top + H + bottom, left + W + right, C) → (B, H, W, C): crops the margins and adds each onto the
    opposite edge, the adjoint of ``PeriodicPadding2D`` (a margin may be at most the size that remains)."""

    _SIGN = -1

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        """Fold each spatial axis."""
        x = inputs
        for axis, (before, after) in zip((1, 2), self.margins, strict=True):
            if not (before or after):
                continue
            size = x.shape[axis]
            if size is None:
                raise ValueError("PeriodicFold2D needs static spatial sizes")
            kept = size - before - after
            if max(before, after) > kept:
                raise ValueError(f"PeriodicFold2D cannot fold margins {before, after} onto {kept} cells: "
                                 f"use a kernel no larger than twice the map it upsamples")
            main = _take(x, axis, slice(before, size - after))
            pad = [[0, 0]] * len(x.shape)
            if before:  # the left margin wraps onto the right edge
                pad[axis] = [kept - before, 0]
                main += tf.pad(_take(x, axis, slice(0, before)), pad)
            if after:  # the right margin wraps onto the left edge
                pad[axis] = [0, kept - after]
                main += tf.pad(_take(x, axis, slice(size - after, size)), pad)
            x = main
        return x


@keras.saving.register_keras_serializable(package="hpo")
class BiasAdd(keras.layers.Layer):
    """A learned per-channel bias, what a convolution's ``use_bias`` adds, for where it must come later."""

    def __init__(self, bias_initializer: Any = "zeros", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape: Any) -> None:
        """One bias per channel (the last axis)."""
        self.bias = self.add_weight(name="bias", shape=(int(input_shape[-1]),), initializer=self.bias_initializer)
        super().build(input_shape)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        """inputs + bias, broadcast over every position."""
        return tf.nn.bias_add(inputs, self.bias)

    def get_config(self) -> dict[str, Any]:
        """Serialisable with the model."""
        return {**super().get_config(), "bias_initializer": keras.initializers.serialize(self.bias_initializer)}


def _pairs(value: Any, what: str) -> tuple[_Pair, _Pair]:
    """((top, bottom), (left, right)) of non-negative integers, or a ValueError naming ``what``."""
    try:
        pairs = tuple(tuple(int(p) for p in pair) for pair in value)
    except (TypeError, ValueError):
        pairs = ()
    if len(pairs) != 2 or any(len(pair) != 2 or min(pair) < 0 for pair in pairs):
        raise ValueError(f"{what} must be ((top, bottom), (left, right)) of non-negative integers, but got {value!r}")
    return (pairs[0][0], pairs[0][1]), (pairs[1][0], pairs[1][1])


def _take(x: tf.Tensor, axis: int, part: slice) -> tf.Tensor:
    """``x[..., part, ...]`` with ``part`` on ``axis``."""
    index = [slice(None)] * len(x.shape)
    index[axis] = part
    return x[tuple(index)]


def _same_margins(kernel_size: int, strides: int) -> _Pair:
    """The (before, after) padding "same" gives a convolution, for input sizes divisible by the stride."""
    total = max(kernel_size - strides, 0)
    return total // 2, total - total // 2


def periodic_conv2d(x: Any, filters: int, kernel_size: int, strides: int = 1, **conv_kwargs: Any) -> Any:
    """Conv2D with ``padding="same"``'s output size and alignment, but padded periodically instead of with 0."""
    margins = _same_margins(kernel_size, strides)
    y = PeriodicPadding2D((margins, margins))(x)
    return keras.layers.Conv2D(filters, kernel_size, strides=strides, padding="valid", **conv_kwargs)(y)


def periodic_conv2d_transpose(x: Any, filters: int, kernel_size: int, strides: int = 2, **conv_kwargs: Any) -> Any:
    """Conv2DTranspose with ``padding="same"``'s output (strides × the input, same alignment), but wrapping
    around the map's edges: the contributions that "same" drops beyond one edge land on the other.

    It is the adjoint of ``periodic_conv2d``: a "valid" transposed convolution (the adjoint of a "valid"
    convolution), then ``PeriodicFold2D`` (the adjoint of ``PeriodicPadding2D``).
    """
    use_bias = conv_kwargs.pop("use_bias", True)
    bias_initializer = conv_kwargs.pop("bias_initializer", "zeros")
    y = keras.layers.Conv2DTranspose(filters, kernel_size, strides=strides, padding="valid", use_bias=False,
                                     **conv_kwargs)(x)
    # Keras's "valid" gives s·H + max(k − s, 0) outputs: s·H and the margins that "same" would crop away
    margins = _same_margins(kernel_size, strides)
    y = PeriodicFold2D((margins, margins))(y)
    # the bias after the fold: before it, the folded margins would carry it twice
    return BiasAdd(bias_initializer)(y) if use_bias else y
