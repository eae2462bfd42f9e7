"""Keras layers of our own, registered so that an exported ``model.keras`` loads with
``tf_keras.models.load_model`` once this module is imported (``tracking.models`` imports it).

``CubeMoments``: per channel, the logarithm of the variance of a 3D field at several smoothing scales
(each scale an average over s³ cells) and the skewness at the finest. These are one-point statistics of
the kind cosmologists summarise density fields with; a regressor that sees them beside its
convolutional features learns how the fluctuations' amplitude and asymmetry grow from one redshift
channel to the next, which is where Ω_m shows in the cosmo3d cubes (docs/workloads.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tensorflow as tf
import tf_keras as keras

_EPS = 1e-6


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
