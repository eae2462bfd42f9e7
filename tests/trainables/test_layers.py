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


@pytest.mark.parametrize("kernel", [1, 2, 3, 4, 5, 7])
@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("static", [True, False])
def test_periodic_convolutions_equal_same_convolutions_of_the_tiled_map(kernel: int, strides: int, static: bool) -> None:
    """On a torus: the centre of a "same" convolution of the map tiled 3 × 3. Without static sizes the
    padding takes its gather path (and kernel 7 on 4 cells wraps the whole side); the transposed
    convolution needs static sizes."""
    import tf_keras as keras

    from trainables.layers import periodic_conv2d, periodic_conv2d_transpose

    rng = np.random.default_rng(kernel * 10 + strides)
    for side in (4, 6):
        maps = rng.standard_normal((2, side, side, 3)).astype(np.float32)
        for build, layer in ((periodic_conv2d, keras.layers.Conv2D), (periodic_conv2d_transpose, keras.layers.Conv2DTranspose)):
            dynamic = not static and layer is keras.layers.Conv2D
            inputs = keras.Input((None, None, 3) if dynamic else (side, side, 3))
            model = keras.Model(inputs, build(inputs, 2, kernel, strides=strides))
            # kernel and bias (the transposed one's bias is a layer of its own, after the fold), the bias not 0
            taps, bias = (w.numpy() for w in model.trainable_weights)
            bias = rng.standard_normal(bias.shape).astype(np.float32)
            model.set_weights([taps, bias])
            reference = layer(2, kernel, strides=strides, padding="same")
            reference.build((None, 3 * side, 3 * side, 3))
            reference.set_weights([taps, bias])
            got = model(maps).numpy()
            out = got.shape[1]
            assert out == (side * strides if layer is keras.layers.Conv2DTranspose else side // strides)
            want = reference(np.tile(maps, (1, 3, 3, 1))).numpy()[:, out:2 * out, out:2 * out]
            np.testing.assert_allclose(got, want, atol=1e-5)


def test_periodic_padding_wraps_saves_and_rejects_bad_pads(tmp_path: Path) -> None:
    import tf_keras as keras

    from trainables.layers import PeriodicPadding2D

    grid = np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1)
    padded = PeriodicPadding2D(((1, 0), (0, 2)))(grid).numpy()[0, :, :, 0]
    np.testing.assert_array_equal(padded, [[6, 7, 8, 6, 7], [0, 1, 2, 0, 1], [3, 4, 5, 3, 4], [6, 7, 8, 6, 7]])
    inputs = keras.Input((3, 3, 1))
    model = keras.Model(inputs, PeriodicPadding2D(((1, 0), (0, 2)))(inputs))
    assert model.output_shape == (None, 4, 5, 1)
    model.save(str(tmp_path / "model.keras"))
    loaded = keras.models.load_model(str(tmp_path / "model.keras"), compile=False)
    np.testing.assert_array_equal(loaded(grid).numpy()[0, :, :, 0], padded)
    with pytest.raises(ValueError, match=r"\(\(top, bottom\), \(left, right\)\)"):
        PeriodicPadding2D(((1, -1), (0, 0)))


def test_periodic_fold_is_the_adjoint_of_periodic_padding(tmp_path: Path) -> None:
    """<pad(x), y> = <x, fold(y)> for random x and y, and the fold saves and loads."""
    import tf_keras as keras

    from trainables.layers import PeriodicFold2D, PeriodicPadding2D

    rng = np.random.default_rng(5)
    margins = ((2, 1), (0, 3))
    x = rng.standard_normal((2, 5, 4, 3)).astype(np.float32)
    y = rng.standard_normal((2, 8, 7, 3)).astype(np.float32)
    padded = PeriodicPadding2D(margins)(x).numpy()
    folded = PeriodicFold2D(margins)(y).numpy()
    assert padded.shape == y.shape and folded.shape == x.shape
    np.testing.assert_allclose(np.sum(padded * y), np.sum(x * folded), rtol=1e-5)
    inputs = keras.Input((8, 7, 3))
    model = keras.Model(inputs, PeriodicFold2D(margins)(inputs))
    model.save(str(tmp_path / "fold.keras"))
    loaded = keras.models.load_model(str(tmp_path / "fold.keras"), compile=False)
    np.testing.assert_allclose(loaded(y).numpy(), folded)
    with pytest.raises(ValueError, match=r"cannot fold margins \(3, 3\) onto 2 cells"):
        PeriodicFold2D(((3, 3), (0, 0)))(np.zeros((1, 8, 8, 1), np.float32))


def test_periodic_transposed_convolution_with_its_bias_saves_and_loads(tmp_path: Path) -> None:
    import tf_keras as keras

    from trainables.layers import BiasAdd, periodic_conv2d_transpose

    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, periodic_conv2d_transpose(inputs, 2, 5, strides=2,
                                                          bias_initializer=keras.initializers.Constant(-0.7)))
    bias = next(layer for layer in model.layers if isinstance(layer, BiasAdd))
    np.testing.assert_array_equal(bias.get_weights()[0], np.float32([-0.7, -0.7]))
    x = np.random.default_rng(2).standard_normal((2, 4, 4, 3)).astype(np.float32)
    model.save(str(tmp_path / "transposed.keras"))
    loaded = keras.models.load_model(str(tmp_path / "transposed.keras"), compile=False)
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=1e-6)
