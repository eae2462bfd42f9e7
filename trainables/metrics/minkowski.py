"""Minkowski functionals of the excursion sets of 2D maps (non-Gaussian structure of convergence maps).

For a threshold ν the excursion set is B = {κ ≥ ν}, taken as the union of its closed pixels on the
periodic map of area A = (S·Δ)². With the normalisation of ``SCIENCE.md`` ("Estimators"):

* V₀ = area(B) / A, the fraction of pixels in B;
* V₁ = perimeter(B) / (4A); the perimeter is the number of pixel edges between B and its complement
  times Δ·π/4: a staircase along a curve overestimates the length of an isotropic curve by 4/π on
  average (Crofton), which the factor undoes;
* V₂ = χ(B) / A, with the Euler characteristic χ from Gray's counts of 2×2 bit quads:
  χ = (n₁ − n₃ − 2n_D) / 4, where n₁ (n₃) counts the quads with exactly one (three) pixels in B and n_D
  the quads with two diagonally opposite pixels in B. The minus sign makes B 8-connected (closed pixels
  that touch at a corner belong to one component) and its complement 4-connected.

All three come from one histogram of the 16 bit-quad patterns per map (``np.bincount``), looped only over
the thresholds. Use the same estimator for real and generated maps: conventions differ between papers.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erfc

# Pattern code of the quad with top-left pixel p: bit 0 = p, bit 1 = right, bit 2 = below, bit 3 = diagonal.
_CODES = np.arange(16)
_BITS = (_CODES[:, None] >> np.arange(4)) & 1
_AREA = _BITS[:, 0].astype(np.float64)
# Each pixel owns its right and bottom edges, so every edge of the grid is counted once.
_EDGES = ((_BITS[:, 0] != _BITS[:, 1]).astype(np.float64) + (_BITS[:, 0] != _BITS[:, 2]))
_ONES = _BITS.sum(axis=1)
_DIAGONAL = (_CODES == 0b1001) | (_CODES == 0b0110)
_CHI4 = np.where(_ONES == 1, 1.0, 0.0) - np.where(_ONES == 3, 1.0, 0.0) - 2.0 * _DIAGONAL
_TABLE = np.stack([_AREA, _EDGES, _CHI4], axis=1)  # (16, 3): pattern histogram -> (area, edges, 4χ)


def minkowski_functionals(maps: np.ndarray, thresholds: np.ndarray,
                          pixel_size: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """V₀, V₁, V₂ of the excursion sets {κ ≥ ν} of periodic square maps.

    V₀ = n_B / S²; V₁ = (π/4)·n_edges·Δ / (4A); V₂ = (n₁ − n₃ − 2n_D) / (4A), with A = (S·Δ)² (see the
    module docstring for the counts and the 8-connectivity of B).

    Args:
        maps: one map (S, S) or a batch (N, S, S).
        thresholds: levels ν (T,), in map units.
        pixel_size: pixel side Δ; lengths and areas are in its units (V₁ in 1/length, V₂ in 1/area).

    Returns:
        (v0, v1, v2), each (T,) for one map or (N, T) for a batch.
    """
    field = np.asarray(maps, dtype=np.float64)
    if field.ndim not in (2, 3) or field.shape[-1] != field.shape[-2] or field.shape[-1] < 2:
        raise ValueError(f"maps must be 2D or 3D arrays of square maps (S, S) or (N, S, S) with S >= 2, "
                         f"but got shape {field.shape}")
    levels = np.asarray(thresholds, dtype=np.float64)
    if levels.ndim != 1 or levels.size == 0:
        raise ValueError(f"thresholds must be a non-empty 1D array, but got shape {levels.shape}")
    if not (np.isfinite(pixel_size) and pixel_size > 0):
        raise ValueError(f"pixel_size must be positive and finite, but got {pixel_size!r}")
    single = field.ndim == 2
    batch = field[None] if single else field
    n_maps, size = batch.shape[0], batch.shape[-1]
    offsets = (16 * np.arange(n_maps))[:, None, None]

    counts = np.empty((levels.size, n_maps, 3))
    for t, level in enumerate(levels):
        inside = (batch >= level).view(np.uint8)
        right = np.roll(inside, -1, axis=-1)
        code = inside | (right << 1) | (np.roll(inside, -1, axis=-2) << 2) | (np.roll(right, -1, axis=-2) << 3)
        histogram = np.bincount((code + offsets).ravel(), minlength=16 * n_maps).reshape(n_maps, 16)
        counts[t] = histogram @ _TABLE

    area = float(size * pixel_size) ** 2
    v0 = counts[..., 0].T / size**2
    v1 = counts[..., 1].T * (np.pi / 4) * pixel_size / (4 * area)
    v2 = counts[..., 2].T / (4 * area)
    return (v0[0], v1[0], v2[0]) if single else (v0, v1, v2)


def gaussian_minkowski(thresholds_in_sigma: np.ndarray, sigma0: float,
                       sigma1: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected V₀, V₁, V₂ of a Gaussian random field, with the normalisation of ``minkowski_functionals``.

    With ν = threshold/σ₀, σ₀² = ⟨κ²⟩ and σ₁² = ⟨|∇κ|²⟩:
    V₀ = ½ erfc(ν/√2), V₁ = (1/8)(σ₁/(√2σ₀)) e^{−ν²/2}, V₂ = (2π)^{−3/2} (σ₁²/(2σ₀²)) ν e^{−ν²/2}.

    Args:
        thresholds_in_sigma: ν (T,), thresholds in units of σ₀ above the field's mean.
        sigma0: standard deviation of the field.
        sigma1: root mean square of its gradient, in 1/length units of the map (the length unit of
            ``pixel_size`` in ``minkowski_functionals``).

    Returns:
        (v0, v1, v2), each (T,).
    """
    if not (sigma0 > 0 and sigma1 > 0 and np.isfinite(sigma0) and np.isfinite(sigma1)):
        raise ValueError(f"sigma0 and sigma1 must be positive and finite, but got sigma0={sigma0!r}, sigma1={sigma1!r}")
    nu = np.asarray(thresholds_in_sigma, dtype=np.float64)
    gauss = np.exp(-nu**2 / 2)
    v0 = 0.5 * erfc(nu / np.sqrt(2))
    v1 = sigma1 / (8 * np.sqrt(2) * sigma0) * gauss
    v2 = (2 * np.pi) ** -1.5 * sigma1**2 / (2 * sigma0**2) * nu * gauss
    return v0, v1, v2
