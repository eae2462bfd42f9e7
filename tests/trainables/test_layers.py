"""Our Keras layers: CubeMoments against NumPy, and through a save and load of a model."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import skew

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def test_moment_scales_tile_the_cube_and_leave_two_cells() -> None:
    from trainables.layers import moment_scales

    assert moment_scales(32) == (1, 2, 4)
    assert moment_scales(6) == (1, 2)
    assert moment_scales(4) == (1, 2)
    assert moment_scales(3) == (1,)


def test_cube_moments_match_numpy_log_variance_at_each_scale_and_skewness() -> None:
    from trainables.layers import CubeMoments

    rng = np.random.default_rng(3)
    cubes = np.log1p(rng.poisson(rng.lognormal(1.0, 0.5, size=(3, 8, 8, 8, 2)))).astype(np.float32)
    got = CubeMoments((1, 2, 4))(cubes).numpy()
    assert got.shape == (3, 2 * 4)

    def pooled(s: int) -> np.ndarray:
        n = 8 // s
        return cubes.reshape(3, n, s, n, s, n, s, 2).mean(axis=(2, 4, 6))

    want = [np.log(pooled(s).var(axis=(1, 2, 3)) + 1e-6) for s in (1, 2, 4)]  # the layer adds 1e-6
    want.append(skew(cubes.reshape(3, -1, 2), axis=1))
    np.testing.assert_allclose(got, np.concatenate(want, axis=-1), rtol=1e-4, atol=1e-4)


def test_cube_moments_reject_a_bad_scale() -> None:
    from trainables.layers import CubeMoments

    with pytest.raises(ValueError, match="positive integers"):
        CubeMoments((1, 0))


def test_a_model_with_cube_moments_saves_and_loads(tmp_path: Path) -> None:
    import tf_keras as keras

    from trainables.layers import CubeMoments

    inputs = keras.Input((4, 4, 4, 2))
    model = keras.Model(inputs, keras.layers.Dense(1)(CubeMoments((1, 2))(inputs)))
    model.save(str(tmp_path / "model.keras"))
    loaded = keras.models.load_model(str(tmp_path / "model.keras"), compile=False)
    cubes = np.random.default_rng(0).random((2, 4, 4, 4, 2), dtype=np.float32)
    np.testing.assert_allclose(loaded.predict(cubes, verbose=0), model.predict(cubes, verbose=0), rtol=1e-6)
    assert loaded.layers[1].scales == (1, 2)
