"""cosmogan's pieces outside the contract test: the power-spectrum term of the generator's loss."""

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


def test_bad_periodic_or_spectrum_weight_is_a_clear_error() -> None:
    from trainables import cosmogan
    from trainables.errors import HpoError

    with pytest.raises(HpoError, match="periodic must be true or false, but got 'no'"):
        cosmogan.build({**cosmogan.DEFAULT_PARAMS, "periodic": "no"}, (16, 16, 1))
    with pytest.raises(HpoError, match=r"spectrum_weight must be >= 0 .* but got -1"):
        cosmogan.build({**cosmogan.DEFAULT_PARAMS, "spectrum_weight": -1}, (16, 16, 1))


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
