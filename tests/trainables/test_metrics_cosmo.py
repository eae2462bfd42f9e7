"""Cosmology metrics (power spectra, Minkowski functionals, GAN quality, regression errors) and their plots,
against analytic cases: white noise, fields synthesised from a known spectrum, disks, annuli, Gaussian fields.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import ks_2samp

from trainables.metrics import (
    gan_quality,
    gaussian_minkowski,
    ks_distance,
    minkowski_functionals,
    pixel_histogram,
    power_spectrum_2d,
    power_spectrum_3d,
    regression_errors,
    ridge_predict,
)
from trainables.metrics.spectra import spectrum_binning
from trainables.plots import (
    plot_image_grid,
    plot_minkowski,
    plot_pixel_histogram,
    plot_power_spectra,
    plot_true_vs_pred,
)


def _wavenumber(size: int, spacing: float, ndim: int) -> np.ndarray:
    """|k| on the full FFT grid, k = 2π·fftfreq(S, Δ) per axis."""
    axis = 2 * np.pi * np.fft.fftfreq(size, spacing)
    grids = np.meshgrid(*[axis] * ndim, indexing="ij", sparse=True)
    return np.sqrt(sum(g**2 for g in grids))


def _gaussian_field(rng: np.random.Generator, n: int, size: int, spacing: float, ndim: int,
                    power: np.ndarray) -> np.ndarray:
    """IFFT(FFT(unit white noise)·sqrt(P/Δ^d)): a real Gaussian field whose spectrum is P."""
    axes = tuple(range(-ndim, 0))
    noise = rng.standard_normal((n,) + (size,) * ndim)
    return np.fft.ifftn(np.fft.fftn(noise, axes=axes) * np.sqrt(power / spacing**ndim), axes=axes).real


def _power_law(size: int, spacing: float, ndim: int, slope: float) -> np.ndarray:
    k = _wavenumber(size, spacing, ndim)
    return np.where(k > 0, np.where(k > 0, k, 1.0) ** slope, 0.0)


def _lensing_like(rng: np.random.Generator, n: int, size: int = 64) -> np.ndarray:
    """Shifted-lognormal maps κ = λ[exp(g − σ_g²/2) − 1] of a red power-law Gaussian field g."""
    g = _gaussian_field(rng, n, size, 1.0, 2, _power_law(size, 1.0, 2, -2.5))
    g *= 0.5 / 1.04  # σ_g ≈ 0.5 (1.04 is the rms of this unnormalised field)
    return 0.02 * (np.exp(g - 0.125) - 1)


def _full_grid_bins(size: int, spacing: float, ndim: int, n_bins: int,
                    values: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mode counts, mean |k| and mean of ``values`` (default |k|) in the non-empty default bins, on the full grid."""
    k = _wavenumber(size, spacing, ndim).ravel()
    values = k if values is None else values.ravel()
    radius = k / (2 * np.pi / (size * spacing))
    edges = np.geomspace(1.0, size / 2, n_bins + 1)
    index = np.digitize(np.round(radius, 9), np.round(edges, 9)) - 1
    index[np.isclose(radius, edges[-1])] = n_bins - 1
    keep = (radius > 0) & (index >= 0) & (index < n_bins)
    counts = np.bincount(index[keep], minlength=n_bins)
    full = counts > 0
    mean_k = np.bincount(index[keep], weights=k[keep], minlength=n_bins)[full] / counts[full]
    mean_values = np.bincount(index[keep], weights=values[keep], minlength=n_bins)[full] / counts[full]
    return counts[full], mean_k, mean_values


# ---------------------------------------------------------------- power spectra


def test_bins_are_log_spaced_from_fundamental_to_nyquist_with_mean_mode_centres() -> None:
    ell, cl = power_spectrum_2d(np.zeros((64, 64)), pixel_size=0.5)
    counts, centres, _ = _full_grid_bins(64, 0.5, 2, 16)
    np.testing.assert_allclose(ell, centres, rtol=1e-12)
    assert ell[0] == pytest.approx(2 * np.pi / 32)  # the fundamental: 4 modes |n| = 1
    assert counts[0] == 4
    assert ell[-1] < np.pi / 0.5
    assert cl.shape == ell.shape and np.all(cl == 0)
    k, _ = power_spectrum_3d(np.zeros((16, 16, 16)), box_size=32.0, bins=6)
    np.testing.assert_allclose(k, _full_grid_bins(16, 2.0, 3, 6)[1], rtol=1e-12)


def test_white_noise_2d_is_flat_at_variance_times_pixel_area() -> None:
    rng = np.random.default_rng(0)
    sigma, pixel = 2.0, 0.5
    _, cl = power_spectrum_2d(rng.normal(0, sigma, (200, 64, 64)), pixel_size=pixel)
    counts, _, _ = _full_grid_bins(64, pixel, 2, 16)
    expected = sigma**2 * pixel**2
    # |FFT|² of a complex mode is exponential (relative sd 1); a bin of c modes has c/2 independent ones.
    tolerance = 4 / np.sqrt(200 * counts / 2)
    assert np.all(np.abs(cl.mean(axis=0) / expected - 1) < tolerance)
    assert np.average(cl.mean(axis=0), weights=counts) == pytest.approx(expected, rel=0.01)


def test_white_noise_3d_is_flat_at_variance_times_cell_volume() -> None:
    rng = np.random.default_rng(1)
    sigma, box, size = 1.5, 64.0, 32
    _, pk = power_spectrum_3d(rng.normal(0, sigma, (6, size, size, size)), box_size=box)
    counts, _, _ = _full_grid_bins(size, box / size, 3, 16)
    expected = sigma**2 * (box / size) ** 3
    tolerance = 4 / np.sqrt(6 * counts / 2)
    assert np.all(np.abs(pk.mean(axis=0) / expected - 1) < tolerance)
    assert np.average(pk.mean(axis=0), weights=counts) == pytest.approx(expected, rel=0.01)


def test_field_with_exact_mode_amplitudes_measures_the_bin_average_of_its_spectrum() -> None:
    """|FFT|² fixed to S^d·P/Δ^d with random Hermitian phases: the estimator must return ⟨P⟩_bin exactly."""
    rng = np.random.default_rng(2)
    size, pixel = 64, 0.25
    power = _power_law(size, pixel, 2, -2.0)
    noise = np.fft.fft2(rng.standard_normal((size, size)))
    phases = np.divide(noise, np.abs(noise), out=np.ones_like(noise), where=np.abs(noise) > 0)
    field = np.fft.ifft2(phases * size * np.sqrt(power) / pixel).real
    ell, cl = power_spectrum_2d(field, pixel_size=pixel)
    _, centres, expected = _full_grid_bins(size, pixel, 2, 16, power)
    np.testing.assert_allclose(ell, centres, rtol=1e-12)
    np.testing.assert_allclose(cl, expected, rtol=1e-9)


def test_gaussian_field_from_power_law_measures_back_2d() -> None:
    rng = np.random.default_rng(3)
    size, pixel, n = 64, 0.01, 100
    maps = _gaussian_field(rng, n, size, pixel, 2, _power_law(size, pixel, 2, -2.0))
    ell, cl = power_spectrum_2d(maps, pixel_size=pixel)
    counts, _, _ = _full_grid_bins(size, pixel, 2, 16)
    tolerance = 4 / np.sqrt(n * counts / 2) + 0.03  # sampling error + P varying across a bin (convexity)
    assert np.all(np.abs(cl.mean(axis=0) / ell**-2.0 - 1) < tolerance)
    wide = counts > 100
    assert np.all(np.abs(cl.mean(axis=0)[wide] / ell[wide] ** -2.0 - 1) < 0.05)


def test_gaussian_field_from_power_law_measures_back_3d() -> None:
    rng = np.random.default_rng(4)
    size, box, n = 32, 100.0, 4
    cubes = _gaussian_field(rng, n, size, box / size, 3, _power_law(size, box / size, 3, -1.5))
    k, pk = power_spectrum_3d(cubes, box_size=box)
    counts, _, _ = _full_grid_bins(size, box / size, 3, 16)
    tolerance = 4 / np.sqrt(n * counts / 2) + 0.03
    assert np.all(np.abs(pk.mean(axis=0) / k**-1.5 - 1) < tolerance)


@pytest.mark.parametrize("size", [16, 15])
def test_one_bin_over_all_modes_is_parseval(size: int) -> None:
    """Σ_{k≠0} |FFT|² = S^d·Σ(x − x̄)², so the mean over all non-zero modes is Δ^d·var·S^d/(S^d − 1)."""
    rng = np.random.default_rng(5)
    maps = rng.gamma(2.0, size=(3, size, size))
    _, cl = power_spectrum_2d(maps, pixel_size=0.3, bins=np.array([1e-6, 1e6]))
    n = size**2
    np.testing.assert_allclose(cl[:, 0], 0.3**2 * maps.var(axis=(1, 2)) * n / (n - 1), rtol=1e-10)
    cubes = rng.normal(size=(2, size, size, size))
    _, pk = power_spectrum_3d(cubes, box_size=5.0, bins=np.array([1e-6, 1e6]))
    n = size**3
    np.testing.assert_allclose(pk[:, 0], (5.0 / size) ** 3 * cubes.var(axis=(1, 2, 3)) * n / (n - 1), rtol=1e-10)


def test_one_map_gives_the_row_of_the_batch_and_bins_do_not_depend_on_data() -> None:
    rng = np.random.default_rng(6)
    maps = rng.normal(size=(3, 32, 32))
    ell, cl = power_spectrum_2d(maps, bins=10)
    ell1, cl1 = power_spectrum_2d(maps[1], bins=10)
    np.testing.assert_array_equal(ell, ell1)
    np.testing.assert_allclose(cl1, cl[1])
    ell_other, _ = power_spectrum_2d(5 * rng.normal(size=(7, 32, 32)) + 3, bins=10)
    np.testing.assert_array_equal(ell, ell_other)


@pytest.mark.parametrize(("size", "ndim", "bins"), [(16, 2, None), (15, 2, 6), (8, 3, None)])
def test_spectrum_binning_matrix_reproduces_the_estimators(size: int, ndim: int, bins: int | None) -> None:
    fields = np.random.default_rng(size).normal(size=(3,) + (size,) * ndim)
    matrix = spectrum_binning(size, ndim, bins)
    assert np.allclose(matrix.sum(axis=0), 1.0) and np.all(matrix >= 0)
    power = np.abs(np.fft.rfftn(fields, axes=tuple(range(1, ndim + 1)))) ** 2
    estimator = power_spectrum_2d if ndim == 2 else power_spectrum_3d
    _, spectra = estimator(fields, 1.0, bins)
    # pixel size 1: C_ℓ = |FFT|²/S² (2D); box side 1: P(k) = (1/S)⁶|FFT|² (3D)
    scale = float(size) ** (2 if ndim == 2 else 6)
    np.testing.assert_allclose(power.reshape(3, -1) @ matrix / scale, spectra, rtol=1e-12)
    with pytest.raises(ValueError, match="grid side >= 2 and ndim 2 or 3"):
        spectrum_binning(size, 4)


def test_bad_spectrum_arguments_are_errors() -> None:
    with pytest.raises(ValueError, match=r"square maps.*\(3, 4, 5\)"):
        power_spectrum_2d(np.zeros((3, 4, 5)))
    with pytest.raises(ValueError, match=r"cubic boxes.*\(8, 8\)"):
        power_spectrum_3d(np.zeros((8, 8)))
    with pytest.raises(ValueError, match="positive number of bins"):
        power_spectrum_2d(np.zeros((8, 8)), bins=0)
    with pytest.raises(ValueError, match="strictly increasing"):
        power_spectrum_2d(np.zeros((8, 8)), bins=np.array([1.0, 0.5]))
    with pytest.raises(ValueError, match="positive and finite"):
        power_spectrum_2d(np.zeros((8, 8)), pixel_size=0.0)


# ---------------------------------------------------------------- Minkowski functionals


def _radius(size: int, x: float, y: float) -> np.ndarray:
    rows, cols = np.mgrid[:size, :size]
    return np.hypot(cols - x, rows - y)


def test_disk_has_its_area_perimeter_and_euler_characteristic() -> None:
    size, r = 256, 40.0
    disk = (_radius(size, 128.3, 127.6) <= r).astype(float)
    v0, v1, v2 = minkowski_functionals(disk, np.array([0.5]))
    area = size**2
    assert v0[0] * area == pytest.approx(np.pi * r**2, rel=0.01)
    assert v1[0] * 4 * area == pytest.approx(2 * np.pi * r, rel=0.03)
    assert v2[0] * area == pytest.approx(1.0)
    # physical units: lengths scale with the pixel size, V0 does not
    w0, w1, w2 = minkowski_functionals(disk, np.array([0.5]), pixel_size=2.0)
    assert w0[0] == v0[0]
    assert w1[0] == pytest.approx(v1[0] / 2)
    assert w2[0] == pytest.approx(v2[0] / 4)


def test_annulus_and_two_disks_have_euler_characteristic_zero_and_two() -> None:
    size = 256
    r = _radius(size, 127.5, 128.2)
    annulus = ((r <= 60) & (r >= 30)).astype(float)
    two_disks = ((r <= 20) | (_radius(size, 60, 200) <= 15)).astype(float)
    maps = np.stack([annulus, two_disks])
    _, v1, v2 = minkowski_functionals(maps, np.array([0.5]))
    np.testing.assert_allclose(v2[:, 0] * size**2, [0.0, 2.0], atol=1e-12)
    assert v1[0, 0] * 4 * size**2 == pytest.approx(2 * np.pi * (60 + 30), rel=0.03)


def test_diagonal_pixels_are_one_component_and_levels_below_the_map_cover_the_torus() -> None:
    diagonal = np.zeros((8, 8))
    diagonal[2, 2] = diagonal[3, 3] = 1.0  # touching at a corner: 8-connected, one component
    v0, v1, v2 = minkowski_functionals(diagonal, np.array([-1.0, 0.5, 2.0]))
    np.testing.assert_allclose(v2 * 64, [0.0, 1.0, 0.0])  # the full torus has χ = 0
    np.testing.assert_allclose(v0, [1.0, 2 / 64, 0.0])
    np.testing.assert_allclose(v1 * 4 * 64, [0.0, 8 * np.pi / 4, 0.0])


def test_smooth_gaussian_field_matches_the_analytic_functionals() -> None:
    rng = np.random.default_rng(7)
    size, n, smoothing = 256, 8, 5.0
    k = _wavenumber(size, 1.0, 2)
    field = _gaussian_field(rng, n, size, 1.0, 2, np.exp(-(k**2) * smoothing**2))
    transform = np.fft.fft2(field)
    kx = 2 * np.pi * np.fft.fftfreq(size)
    grad_x = np.fft.ifft2(transform * 1j * kx[None, :]).real
    grad_y = np.fft.ifft2(transform * 1j * kx[:, None]).real
    sigma0, sigma1 = field.std(), np.sqrt(np.mean(grad_x**2 + grad_y**2))
    nu = np.linspace(-2.5, 2.5, 11)
    measured = minkowski_functionals(field, nu * sigma0)
    expected = gaussian_minkowski(nu, sigma0, sigma1)
    for v, (m, e) in enumerate(zip(measured, expected, strict=True)):
        assert m.shape == (n, nu.size)
        assert np.max(np.abs(m.mean(axis=0) - e)) < 0.05 * np.max(np.abs(e)), f"V{v}"


def test_gaussian_minkowski_special_values() -> None:
    v0, v1, v2 = gaussian_minkowski(np.array([-40.0, 0.0, 1.0, 40.0]), 2.0, 3.0)
    np.testing.assert_allclose(v0, [1.0, 0.5, 0.5 * 0.31731050786291415, 0.0])
    assert v1[1] == pytest.approx(3.0 / (8 * np.sqrt(2) * 2.0))
    assert v2[1] == 0.0
    assert v2[2] == pytest.approx((2 * np.pi) ** -1.5 * 9 / 8 * np.exp(-0.5))
    with pytest.raises(ValueError, match="positive"):
        gaussian_minkowski(np.array([0.0]), 0.0, 1.0)


def test_bad_minkowski_arguments_are_errors() -> None:
    with pytest.raises(ValueError, match=r"square maps.*\(3, 4, 5\)"):
        minkowski_functionals(np.zeros((3, 4, 5)), np.array([0.0]))
    with pytest.raises(ValueError, match="thresholds"):
        minkowski_functionals(np.zeros((4, 4)), np.array([]))


# ---------------------------------------------------------------- GAN quality


def test_ks_distance_by_hand_and_against_scipy() -> None:
    assert ks_distance(np.array([1.0, 2.0, 3.0]), np.array([2.0, 3.0, 4.0])) == pytest.approx(1 / 3)
    assert ks_distance(np.array([1.0, 2.0]), np.array([5.0, 6.0, 7.0])) == 1.0
    assert ks_distance(np.arange(10.0), np.arange(10.0)[::-1]) == 0.0
    rng = np.random.default_rng(8)
    a, b = rng.integers(0, 6, (30, 10)).astype(float), rng.normal(2.5, 2, 457)
    assert ks_distance(a, b) == pytest.approx(ks_2samp(a.ravel(), b).statistic, abs=1e-12)


def test_ks_sub_sampling_is_reproducible_and_close_to_the_full_statistic() -> None:
    rng = np.random.default_rng(9)
    a, b = rng.normal(size=100_000), rng.normal(0.05, 1, 100_000)
    full = ks_distance(a, b)
    assert full == pytest.approx(ks_2samp(a, b).statistic, abs=1e-12)
    sub = ks_distance(a, b, max_samples=20_000)
    assert sub == ks_distance(a, b, max_samples=20_000)
    assert sub == pytest.approx(full, abs=0.02)


def test_pixel_histogram_is_a_density_of_all_pixels() -> None:
    maps = np.array([[0.1, 0.2], [0.6, 5.0]])
    density = pixel_histogram(maps, np.array([0.0, 0.5, 1.0]))
    np.testing.assert_allclose(density, [2 / (4 * 0.5), 1 / (4 * 0.5)])
    assert np.sum(density * 0.5) == pytest.approx(0.75)  # one pixel of four lies outside the edges
    with pytest.raises(ValueError, match="strictly increasing"):
        pixel_histogram(maps, np.array([1.0, 0.0]))


@pytest.fixture(scope="module")
def lensing_sets() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(10)
    return _lensing_like(rng, 256), _lensing_like(rng, 256)


def test_independent_draws_of_one_distribution_score_near_zero(lensing_sets: tuple[np.ndarray, np.ndarray]) -> None:
    generated, reference = lensing_sets
    quality = gan_quality(generated, reference)
    assert set(quality) >= {"ps_max_rel_dev", "ps_chi", "ks", "ks_ref", "mf_chi", "score"}
    assert all(np.isfinite(v) for v in quality.values())
    # The lowest ℓ bins hold 4 modes: 256 maps per set leave a ≈ 7 % sampling sd on the ratio there, so
    # the 10 % target holds where that sd is small, and the worst bin stays within its own sampling error.
    assert 0.03 < quality["ps_ratio_sigma"] < 0.1
    assert quality["ps_max_rel_dev"] < 3 * quality["ps_ratio_sigma"]
    _, cl_gen = power_spectrum_2d(generated)
    _, cl_ref = power_spectrum_2d(reference)
    ratio_sd = cl_ref.std(axis=0, ddof=1) / cl_ref.mean(axis=0) * np.sqrt(2 / 256)
    well_sampled = ratio_sd < 0.025
    assert well_sampled.sum() >= 6
    assert np.all(np.abs(cl_gen.mean(axis=0) / cl_ref.mean(axis=0) - 1)[well_sampled] < 0.10)
    bound = 2.5 * np.sqrt(1 / 256 + 1 / 256)  # every chi term ≈ 0.8·√(1/N + 1/M) ≈ 0.07 under the null
    for key in ("ps_chi", "mf_chi", "ks_chi", "score"):
        assert quality[key] < bound, key
    assert quality["ks"] < 3 * quality["ks_ref"]


def test_wrong_amplitude_or_white_noise_score_much_higher(lensing_sets: tuple[np.ndarray, np.ndarray]) -> None:
    generated, reference = lensing_sets
    null = gan_quality(generated, reference)["score"]
    doubled = gan_quality(2 * generated, reference)
    assert doubled["ps_max_rel_dev"] == pytest.approx(3.0, rel=0.15)  # C_ℓ scales as amplitude²
    assert doubled["score"] > 3.0 and doubled["score"] > 20 * null
    rng = np.random.default_rng(11)
    noise = rng.normal(reference.mean(), reference.std(), generated.shape)
    white = gan_quality(noise, reference)
    assert white["score"] > 3.0 and white["score"] > 20 * null
    slightly_off = gan_quality(1.1 * generated, reference)["score"]
    assert null < slightly_off < doubled["score"]


def test_gan_quality_is_cheap(lensing_sets: tuple[np.ndarray, np.ndarray]) -> None:
    generated, reference = lensing_sets
    gan_quality(generated[:8], reference[:8])  # warm-up (FFT plans, imports)
    start = time.perf_counter()
    gan_quality(generated, reference)
    assert time.perf_counter() - start < 1.0


def test_bad_gan_arguments_are_errors() -> None:
    with pytest.raises(ValueError, match=r"shapes \(2, 8, 8\) and \(3, 16, 16\)"):
        gan_quality(np.zeros((2, 8, 8)), np.zeros((3, 16, 16)))
    with pytest.raises(ValueError, match="2 reference maps"):
        gan_quality(np.zeros((2, 8, 8)), np.zeros((1, 8, 8)))


# ---------------------------------------------------------------- regression


def test_regression_errors_by_hand() -> None:
    true = np.array([[0.0, 1.0], [0.5, -1.0]])
    pred = np.array([[0.2, 0.5], [0.5, -0.5]])
    errors = regression_errors(pred, true, ["Omega_m", "sigma_8"], fiducial=[0.3, 0.8], scale=0.1)
    assert errors["mae"] == pytest.approx((0.2 + 0.5 + 0.0 + 0.5) / 4)
    assert errors["mae_Omega_m"] == pytest.approx(0.1)
    assert errors["mae_sigma_8"] == pytest.approx(0.5)
    # Ω_m: true 0.3 and 0.315, pred 0.306 and 0.315 -> (0.006/0.3 + 0)/2
    assert errors["rel_err_Omega_m"] == pytest.approx(0.01)
    # σ_8: true 0.88 and 0.72, pred 0.84 and 0.76 -> (0.04/0.88 + 0.04/0.72)/2
    assert errors["rel_err_sigma_8"] == pytest.approx((0.04 / 0.88 + 0.04 / 0.72) / 2)
    assert errors["rel_err"] == pytest.approx((errors["rel_err_Omega_m"] + errors["rel_err_sigma_8"]) / 2)
    assert "rel_err_Omega_m" not in regression_errors(pred, true, ["Omega_m", "sigma_8"])


def test_bad_regression_arguments_are_errors() -> None:
    with pytest.raises(ValueError, match="len\\(names\\) = 3"):
        regression_errors(np.zeros((4, 2)), np.zeros((4, 2)), ["a", "b", "c"])
    with pytest.raises(ValueError, match="one shape"):
        regression_errors(np.zeros((4, 2)), np.zeros((3, 2)), ["a", "b"])
    with pytest.raises(ValueError, match="one value per name"):
        regression_errors(np.zeros((4, 2)), np.zeros((4, 2)), ["a", "b"], fiducial=[1.0])


def test_ridge_recovers_a_linear_relation_and_clips_to_the_u_range() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 5)) * [1, 10, 0.1, 3, 1] + [0, 5, -2, 0, 100]  # unstandardised features
    w = np.array([[0.1, -0.2], [0.02, 0.0], [1.0, 0.5], [0.0, 0.05], [-0.1, 0.1]])
    y = x @ w - 9.9
    test = rng.normal(size=(20, 5)) * [1, 10, 0.1, 3, 1] + [0, 5, -2, 0, 100]
    pred = ridge_predict(x, y, test, alpha=1e-9, clip=None)
    np.testing.assert_allclose(pred, test @ w - 9.9, atol=1e-6)
    clipped = ridge_predict(x, y, test, alpha=1e-9)
    assert clipped.min() >= -1 and clipped.max() <= 1
    np.testing.assert_allclose(clipped, np.clip(pred, -1, 1))
    shrunk = ridge_predict(x, y, test, alpha=1e6, clip=None)  # all weight shrunk away: the intercept (the mean) stays
    np.testing.assert_allclose(shrunk, np.broadcast_to(y.mean(axis=0), shrunk.shape), atol=0.05)
    with pytest.raises(ValueError, match="must agree"):
        ridge_predict(x, y, test[:, :4])


# ---------------------------------------------------------------- plots


def _assert_png(path: Path) -> None:
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000


def test_plots_write_non_trivial_pngs(tmp_path: Path, lensing_sets: tuple[np.ndarray, np.ndarray]) -> None:
    generated, reference = lensing_sets
    rng = np.random.default_rng(12)
    true = rng.uniform(-1, 1, (300, 4))
    pred = true + rng.normal(0, 0.1, true.shape)
    _assert_png(plot_true_vs_pred(true, pred, ["Omega_m", "sigma_8", "n_s", "H_0"], tmp_path / "tvp.png"))

    ell, cl_gen = power_spectrum_2d(1.05 * generated[:64])
    _, cl_ref = power_spectrum_2d(reference)
    _assert_png(plot_power_spectra(ell, cl_gen, cl_ref, tmp_path / "ps.png"))

    nu = np.linspace(-2, 3, 15)
    levels = reference.mean() + nu * reference.std()
    _assert_png(plot_minkowski(nu, minkowski_functionals(generated[:64], levels),
                               minkowski_functionals(reference, levels), tmp_path / "mf.png"))

    images = np.concatenate([generated[:4], reference[:4]])
    titles = [f"generated {i}" for i in range(4)] + [f"validation {i}" for i in range(4)]
    _assert_png(plot_image_grid(images, tmp_path / "grid.png", titles=titles, ncols=4))
    _assert_png(plot_pixel_histogram(generated, reference, tmp_path / "hist.png"))
