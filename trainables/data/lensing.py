"""Synthetic weak-lensing convergence maps after CosmoGAN: shifted-lognormal fields with a known C_ℓ.

Physics, following SCIENCE.md's recipe (vectorised with NumPy, one chunk of maps at a time):

* **Input angular power spectrum** of the convergence κ (dimensionless, ℓ the multipole):

      C_ℓ = A · (σ_8/0.8)² · (Ω_m/0.3)^{1/2} / [1 + (ℓ/ℓ₀)^γ],   ℓ₀ = 1000 · (Ω_m/0.3)^{1/2},

  A = 5·10⁻¹⁰, γ = 1.3: flat on large scales, C_ℓ ∝ ℓ^{−1.3} above the knee ℓ₀. The amplitude goes as
  σ_8² (κ is linear in the matter contrast); Ω_m raises the amplitude mildly and moves the knee to
  smaller scales (more small-scale power), so Ω_m and σ_8 are told apart by the shape. At the fiducial
  (Ω_m, σ_8) = (0.3, 0.8) and 0.82 arcmin pixels, the pixel standard deviation σ_κ ≈ 0.024.
* **Shifted lognormal** κ = λ [exp(g − σ_g²/2) − 1] of a zero-mean Gaussian field g (mean ⟨κ⟩ = 0,
  κ ≥ −λ, positively skewed). Its covariance is ξ_κ = λ² [exp(ξ_g) − 1], so g is drawn with
  ξ_g = ln(1 + ξ_κ/λ²) (as FLASK does), computed on the periodic grid itself with FFTs:
  ξ_κ = IFFT[C_ℓ/Δθ²], C^g = FFT[ξ_g] (negative values, rare and tiny, set to 0; no zero mode). κ then
  has the input C_ℓ on the grid, and its one-point distribution is the shifted lognormal.
* **Gaussian field** on the periodic S² grid of pixel Δθ (radians): g = IFFT[FFT(w) · √C^g] with w unit
  white noise, so that the estimator C_ℓ = Δθ⁴ |FFT(κ)|²/A (A = (S Δθ)² the map's area) measures back
  the input spectrum; ℓ = 2π · fftfreq(S, Δθ).
* **Shape noise** (optional, off by default): Gaussian with σ_pix = σ_e/√(n_gal · A_pix), σ_e = 0.26 per
  ellipticity component, n_gal galaxies per arcmin², A_pix the pixel area in arcmin². With noise the
  maps are no longer bounded below by −λ.
* **Cosmologies**: the fiducial (0.3, 0.8) first; with K > 1 the other K − 1 are drawn uniformly in
  Ω_m ∈ [0.2, 0.4] × σ_8 ∈ [0.6, 1.0], and map i belongs to cosmology i mod K (evenly spread, every
  prefix balanced).

Layout: ``maps`` (N, S, S) float32 κ; ``params`` (N, 2) float32 (Ω_m, σ_8); ``cosmology`` (N,) int32.
"""

from __future__ import annotations

import numpy as np

FIDUCIAL = (0.3, 0.8)
OMEGA_M_RANGE = (0.2, 0.4)
SIGMA_8_RANGE = (0.6, 1.0)
AMPLITUDE = 5e-10
ELL_KNEE = 1000.0
SLOPE = 1.3
#: pixel size: a 256² map spans 3.5° like CosmoGAN's maps
PIXEL_ARCMIN = 3.5 * 60 / 256
#: the lognormal shift λ (κ ≥ −λ)
SHIFT = 0.04
SIGMA_E = 0.26
SIZES = (64, 128, 256)


def angular_power(ell: np.ndarray, omega_m: float, sigma_8: float) -> np.ndarray:
    """The input convergence spectrum C_ℓ (module docstring) at multipoles ``ell``; C_0 = 0 is not set here."""
    r = omega_m / FIDUCIAL[0]
    knee = ELL_KNEE * np.sqrt(r)
    ell = np.asarray(ell, np.float64)
    return AMPLITUDE * (sigma_8 / FIDUCIAL[1]) ** 2 * np.sqrt(r) / (1 + (ell / knee) ** SLOPE)


def multipoles(size: int, pixel_arcmin: float = PIXEL_ARCMIN) -> np.ndarray:
    """|ℓ| on the full (S, S) FFT grid: ℓ = 2π · fftfreq(S, Δθ), Δθ in radians."""
    ell = 2 * np.pi * np.fft.fftfreq(size, np.radians(pixel_arcmin / 60))
    return np.hypot(ell[:, None], ell[None, :])


def cosmologies(k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` cosmologies (Ω_m, σ_8): the fiducial first, the others uniform in the ranges above."""
    out = np.empty((k, 2))
    out[0] = FIDUCIAL
    out[1:, 0] = rng.uniform(*OMEGA_M_RANGE, k - 1)
    out[1:, 1] = rng.uniform(*SIGMA_8_RANGE, k - 1)
    return out


def gaussian_spectrum(omega_m: float, sigma_8: float, size: int, pixel_arcmin: float = PIXEL_ARCMIN,
                      shift: float = SHIFT) -> tuple[np.ndarray, float]:
    """√C^g on the rfft half-grid (S, S/2+1) and σ_g², such that λ[exp(g − σ_g²/2) − 1] has the input C_ℓ.

    Raises:
        ValueError: the shift is so small that ξ_κ/λ² ≤ −1 somewhere (no lognormal field has this C_ℓ).
    """
    d = np.radians(pixel_arcmin / 60)
    cl = angular_power(multipoles(size, pixel_arcmin), omega_m, sigma_8)
    cl[0, 0] = 0.0
    xi_kappa = np.fft.ifft2(cl / d**2).real
    ratio = xi_kappa / shift**2
    if ratio.min() <= -1:
        raise ValueError(f"shift {shift} is too small for the convergence spectrum (min ξ_κ/λ² = {ratio.min():.3g})")
    power = np.fft.fft2(np.log1p(ratio)).real
    power[0, 0] = 0.0
    power = np.maximum(power, 0.0)
    return np.sqrt(power[:, : size // 2 + 1]), float(power.sum() / size**2)


def generate_chunk(rng: np.random.Generator, cosmology: np.ndarray, table: np.ndarray, size: int,
                   pixel_arcmin: float = PIXEL_ARCMIN, shift: float = SHIFT,
                   galaxy_density: float = 0.0) -> dict[str, np.ndarray]:
    """Maps for the cosmology indices ``cosmology`` (n,) into ``table`` (K, 2) of (Ω_m, σ_8).

    Returns ``maps`` (n, S, S) float32 κ, ``params`` (n, 2) float32 and ``cosmology`` (n,) int32.
    """
    n = cosmology.size
    maps = np.empty((n, size, size), np.float32)
    spectra = {int(c): gaussian_spectrum(float(table[c, 0]), float(table[c, 1]), size, pixel_arcmin, shift)
               for c in np.unique(cosmology)}
    noise = SIGMA_E / np.sqrt(galaxy_density * pixel_arcmin**2) if galaxy_density > 0 else 0.0
    for i, c in enumerate(cosmology):
        amp, sigma2 = spectra[int(c)]
        g = np.fft.irfft2(np.fft.rfft2(rng.standard_normal((size, size))) * amp, s=(size, size))
        kappa = shift * np.expm1(g - sigma2 / 2)
        if noise:
            kappa += rng.normal(0.0, noise, kappa.shape)
        maps[i] = kappa
    return {"maps": maps, "params": table[cosmology].astype(np.float32), "cosmology": cosmology.astype(np.int32)}
