"""cosmogan's pieces outside the contract test: the generator's extra loss terms, its upsampling, its start,
its batch-norm statistics and its periodic padding."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def test_spectrum_loss_is_the_squared_log_ratio_of_the_kappa_spectra_of_the_batches() -> None:
    from trainables.cosmogan import _spectrum_loss
    from trainables.metrics import power_spectrum_2d
    from trainables.metrics.spectra import spectrum_binning

    rng = np.random.default_rng(0)
    real = np.tanh(rng.normal(-0.5, 0.3, size=(6, 16, 16, 1))).astype(np.float32)
    fake = np.tanh(rng.normal(-0.4, 0.5, size=(5, 16, 16, 1))).astype(np.float32)
    binning = spectrum_binning(16).astype(np.float32)
    got = float(_spectrum_loss(fake, real, binning))

    def log_spectrum(s: np.ndarray) -> np.ndarray:
        y = 4 * (s[..., 0] + 1) / (1 - np.minimum(s[..., 0], 0.9))  # κ/λ + 1; the clip never bites here
        return np.log(power_spectrum_2d(y.astype(np.float64))[1].mean(axis=0))

    want = np.mean((log_spectrum(fake) - log_spectrum(real)) ** 2)  # C_ℓ's scale factors cancel in the ratio
    assert want > 0.05
    np.testing.assert_allclose(got, want, rtol=1e-3)
    assert float(_spectrum_loss(real, real, binning)) == 0.0


def test_histogram_loss_is_the_squared_wasserstein_distance_of_the_pixels_over_their_variance() -> None:
    from trainables.cosmogan import _histogram_loss

    rng = np.random.default_rng(0)
    real = np.tanh(rng.normal(-0.6, 0.2, size=(4, 16, 16, 1))).astype(np.float32)
    fake = np.tanh(rng.normal(-0.5, 0.3, size=(4, 16, 16, 1))).astype(np.float32)
    want = np.mean((np.sort(fake.ravel()) - np.sort(real.ravel())) ** 2) / real.var()
    assert want > 0.1
    np.testing.assert_allclose(float(_histogram_loss(fake, real)), want, rtol=1e-4)
    # only the pixel distribution counts: shuffled pixels and reordered maps match exactly
    shuffled = rng.permutation(real.ravel()).reshape(real.shape)
    assert float(_histogram_loss(shuffled, real)) == 0.0


@pytest.mark.parametrize(("param", "value", "message"), [
    ("periodic", "no", "periodic must be true or false, but got 'no'"),
    ("spectrum_weight", -1, r"spectrum_weight must be >= 0 .* but got -1"),
    ("histogram_weight", -0.5, r"histogram_weight must be >= 0 .* but got -0.5"),
    ("spectrum_weight", "high", "spectrum_weight must be a number, but got 'high'"),
    ("histogram_weight", None, "histogram_weight must be a number, but got None"),
    ("upsampling", "bilinear", "upsampling must be 'transpose' or 'resize', but got 'bilinear'"),
])
def test_bad_parameters_are_clear_errors(param: str, value: Any, message: str) -> None:
    from trainables import cosmogan
    from trainables.errors import HpoError

    with pytest.raises(HpoError, match=message):
        cosmogan.build({**cosmogan.DEFAULT_PARAMS, param: value}, (16, 16, 1))


@pytest.mark.parametrize("upsampling", ["transpose", "resize"])
def test_untrained_generator_draws_blank_maps_and_resize_has_no_transposed_convolution(upsampling: str) -> None:
    """The generator starts near κ = 0 (where the real maps' pixels sit), not at tanh(0) = 0, i.e. κ = 3λ."""
    import tf_keras as keras

    from trainables import cosmogan
    from trainables.data.readers import kappa_from_model

    parts = cosmogan.build({**cosmogan.DEFAULT_PARAMS, "upsampling": upsampling, "gen_filters": 4, "latent_dim": 8},
                           (32, 32, 1))
    generator = parts.models["generator"]
    transposed = [layer for layer in generator.layers if isinstance(layer, keras.layers.Conv2DTranspose)]
    resized = [layer for layer in generator.layers if isinstance(layer, keras.layers.UpSampling2D)]
    assert (len(transposed), len(resized)) == ((4, 0) if upsampling == "transpose" else (0, 4))
    s = generator(np.random.default_rng(0).standard_normal((8, 8)).astype(np.float32), training=False).numpy()
    assert s.shape == (8, 32, 32, 1)
    kappa_over_lambda = kappa_from_model(s, 1.0)
    assert abs(float(np.median(kappa_over_lambda))) < 0.5, np.median(kappa_over_lambda)


def test_measured_batch_norm_statistics_make_inference_match_training_mode() -> None:
    """After ``_measure_batch_norm`` the generator in inference mode draws what it draws from a large batch's
    own statistics, whatever its running statistics held before; the momenta are left as they were."""
    import tf_keras as keras

    from trainables import cosmogan

    parts = cosmogan.build({**cosmogan.DEFAULT_PARAMS, "gen_filters": 4, "latent_dim": 8}, (32, 32, 1))
    generator = parts.models["generator"]
    norms = [layer for layer in generator.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.moving_mean.assign(layer.moving_mean + 3.0)
        layer.moving_variance.assign(layer.moving_variance * 50.0)
    z = np.random.default_rng(5).standard_normal((2048, 8)).astype(np.float32)
    own = generator(z, training=True).numpy()
    before = np.abs(generator(z, training=False).numpy() - own).mean()
    assert before > 0.05
    cosmogan._measure_batch_norm(generator, 8, seed=1, batches=32, batch=64)
    assert np.abs(generator(z, training=False).numpy() - own).mean() < before / 10
    # the first batch norm (after the dense layer) holds the plain mean of its 32 batches' statistics
    latents = np.random.default_rng([1, 4343]).standard_normal((32, 64, 8)).astype(np.float32)
    dense = keras.Model(generator.input, generator.layers[1].output)
    features = np.stack([dense(batch).numpy() for batch in latents])
    np.testing.assert_allclose(norms[0].moving_mean.numpy(), features.mean(axis=1).mean(axis=0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(norms[0].moving_variance.numpy(), features.var(axis=1).mean(axis=0), rtol=1e-3, atol=1e-6)
    assert [layer.momentum for layer in norms] == [0.9] * len(norms)


@pytest.mark.parametrize("periodic", [True, False])
def test_periodic_generator_is_translation_equivariant(periodic: bool) -> None:
    """With ``periodic: true``, rolling the generator's base grid by one cell rolls its maps by 16 pixels
    (4 upsamplings of 2): its convolutions see no edges. Zero padding breaks this at the edges."""
    import tf_keras as keras

    from trainables import cosmogan

    parts = cosmogan.build({**cosmogan.DEFAULT_PARAMS, "periodic": periodic, "gen_filters": 4, "latent_dim": 8},
                           (64, 64, 1))
    generator = parts.models["generator"]
    split = next(i for i, layer in enumerate(generator.layers) if isinstance(layer, keras.layers.Reshape))
    base = keras.Model(generator.input, generator.layers[split].output)(
        np.random.default_rng(1).standard_normal((2, 8)).astype(np.float32))

    def rest(x: Any) -> np.ndarray:  # the generator after the reshape is a chain of layers
        for layer in generator.layers[split + 1:]:
            x = layer(x, training=False)
        return x.numpy()

    rolled_after = np.roll(rest(base), 16, axis=2)
    rolled_before = rest(np.roll(base.numpy(), 1, axis=2))
    if periodic:
        np.testing.assert_allclose(rolled_before, rolled_after, atol=1e-5)
    else:
        assert np.abs(rolled_before - rolled_after).max() > 1e-3
