"""Binned power spectra of 2D maps and 3D boxes (CosmoGAN convergence maps, CosmoFlow density cubes).

Conventions (``SCIENCE.md``, "Estimators"), for a real field on a periodic grid of S pixels a side with
spacing Δ (box side L = S·Δ, volume V = L^d):

* 2D: C_ℓ = Δ⁴ |FFT(κ)|² / A, A = (S·Δθ)², ℓ = 2π·fftfreq(S, Δθ).
* 3D: P̂(k) = |Δ³ FFT(δ)|² / L³, k = 2π·fftfreq(S, Δ), Δ = L/S.

Both are the same estimator, Δ^{2d} |FFT|² / V, averaged over the modes of each |k| bin. With these
conventions white noise of variance σ² has the flat spectrum σ²·Δ^d, and a field synthesised as
IFFT(FFT(white noise)·sqrt(P(k)/Δ^d)) measures back to P(k).

Binning: the default bins are log-spaced between the fundamental mode 2π/L and the Nyquist mode π/Δ; a
mode belongs to bin b when edge_b ≤ |k| < edge_{b+1} (the last bin also takes |k| = its upper edge).
The zero mode, the corner modes beyond the last edge and bins with no mode are dropped. Which bins are
empty depends only on the grid, never on the data, so every map of the same shape gets the same bins and
spectra of different map sets compare bin by bin. A bin centre is the mean |k| of the modes in the bin.

The FFTs are real-to-complex (``rfftn``) over the last axis: the modes kept there stand for themselves
and their complex conjugates, so they count twice, except the zero and (S even) Nyquist planes, which
are their own conjugates and count once. Mode counts and bin averages are therefore those of the full
FFT grid.
"""

from __future__ import annotations

import numpy as np

DEFAULT_BINS = 16


def power_spectrum_2d(maps: np.ndarray, pixel_size: float = 1.0,
                      bins: int | np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Angular power spectrum C_ℓ of square maps, binned in |ℓ|.

    C_ℓ = ⟨Δθ⁴ |FFT(κ)(ℓ)|²⟩_bin / A with A = (S·Δθ)² and ℓ = 2π·fftfreq(S, Δθ); white noise of
    variance σ² gives C_ℓ = σ²·Δθ².

    Args:
        maps: one map (S, S) or a batch (N, S, S).
        pixel_size: pixel side Δθ (e.g. radians), which sets the units of ℓ and C_ℓ.
        bins: number of log-spaced bins between the fundamental 2π/(S·Δθ) and the Nyquist π/Δθ
            (default 16), or an explicit increasing array of bin edges in ℓ units.

    Returns:
        (ell, cl): bin centres (B,) = mean |ℓ| of the modes in each non-empty bin, and C_ℓ, (B,) for one
        map or (N, B) for a batch.
    """
    field = np.asarray(maps, dtype=np.float64)
    if field.ndim not in (2, 3) or field.shape[-1] != field.shape[-2] or field.shape[-1] < 2:
        raise ValueError(f"maps must be 2D or 3D arrays of square maps (S, S) or (N, S, S) with S >= 2, "
                         f"but got shape {field.shape}")
    return _binned_power(field, 2, pixel_size, bins)


def power_spectrum_3d(cubes: np.ndarray, box_size: float = 1.0,
                      bins: int | np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Matter power spectrum P(k) of cubic boxes, binned in |k|.

    P̂(k) = ⟨|Δ³ FFT(δ)(k)|²⟩_shell / L³ with Δ = L/S and k = 2π·fftfreq(S, Δ); white noise of variance
    σ² gives P = σ²·Δ³.

    Args:
        cubes: one box (S, S, S) or a batch (N, S, S, S) of the density contrast δ.
        box_size: box side L (e.g. Mpc/h), which sets the units of k and P.
        bins: number of log-spaced shells between the fundamental 2π/L and the Nyquist π/Δ (default 16),
            or an explicit increasing array of shell edges in k units.

    Returns:
        (k, pk): shell centres (B,) = mean |k| of the modes in each non-empty shell, and P(k), (B,) for
        one box or (N, B) for a batch.
    """
    field = np.asarray(cubes, dtype=np.float64)
    if field.ndim not in (3, 4) or len(set(field.shape[-3:])) != 1 or field.shape[-1] < 2:
        raise ValueError(f"cubes must be 3D or 4D arrays of cubic boxes (S, S, S) or (N, S, S, S) with S >= 2, "
                         f"but got shape {field.shape}")
    size = field.shape[-1]
    return _binned_power(field, 3, box_size / size, bins)


def _binned_power(field: np.ndarray, ndim: int, spacing: float,
                  bins: int | np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Δ^{2d}|FFT|²/V averaged over the modes of each |k| bin; ``field`` has ``ndim`` or ``ndim + 1`` axes."""
    if not (np.isfinite(spacing) and spacing > 0):
        raise ValueError(f"the pixel size / box size must be positive and finite, but got {spacing!r}")
    single = field.ndim == ndim
    batch = field[None] if single else field
    size = batch.shape[-1]
    fundamental = 2 * np.pi / (size * spacing)
    index, weight, inside, counts, kept, centres = _mode_bins(size, ndim, bins, fundamental)
    n_bins = counts.size

    transform = np.fft.rfftn(batch, axes=tuple(range(-ndim, 0)))
    power = (transform.real**2 + transform.imag**2).reshape(batch.shape[0], -1)[:, inside]
    n_maps = batch.shape[0]
    flat_index = (index + n_bins * np.arange(n_maps)[:, None]).ravel()
    sums = np.bincount(flat_index, weights=(power * weight).ravel(), minlength=n_maps * n_bins)
    volume = (size * spacing) ** ndim
    spectra = sums.reshape(n_maps, n_bins)[:, kept] / counts[kept] * spacing ** (2 * ndim) / volume
    return centres * fundamental, spectra[0] if single else spectra


def spectrum_binning(size: int, ndim: int = 2, bins: int | np.ndarray | None = None) -> np.ndarray:
    """The binning of ``power_spectrum_2d``/``3d`` as a matrix, for spectra computed elsewhere (e.g. in a
    TensorFlow loss): with P the (N, M) squared moduli of ``rfftn`` over the last ``ndim`` axes, flattened,
    P @ W is the (N, B) mean over the modes of each non-empty bin, in the estimators' bin order.

    Args:
        size: grid side S.
        ndim: 2 for maps, 3 for boxes.
        bins: as in ``power_spectrum_2d`` with ``pixel_size=1`` (edges in radians per cell).

    Returns:
        W (M, B), float64, each column summing to 1, with M = S^(ndim−1)·(S//2 + 1).
    """
    if size < 2 or ndim not in (2, 3):
        raise ValueError(f"spectrum_binning needs a grid side >= 2 and ndim 2 or 3, but got size={size}, ndim={ndim}")
    index, weight, inside, counts, kept, _ = _mode_bins(size, ndim, bins, 2 * np.pi / size)
    matrix = np.zeros((inside.size, counts.size))
    matrix[np.flatnonzero(inside), index] = weight
    return matrix[:, kept] / counts[kept]


def _mode_bins(size: int, ndim: int, bins: int | np.ndarray | None, fundamental: float) -> tuple[np.ndarray, ...]:
    """Each ``rfftn`` mode's bin: (index, weight) of the modes ``inside`` a bin, per-bin mode counts, the
    non-empty bins (``kept``) and their centres in units of the fundamental."""
    # |k| in units of the fundamental: exact for integer radii, so the default edges 1 and S/2 hold them.
    axes_freq = [np.fft.fftfreq(size, 1.0 / size)] * (ndim - 1) + [np.fft.rfftfreq(size, 1.0 / size)]
    grids = np.meshgrid(*axes_freq, indexing="ij", sparse=True)
    radius = np.sqrt(sum(g**2 for g in grids)).ravel()
    weight = np.full(grids[-1].shape[-1], 2.0)
    weight[0] = 1.0
    if size % 2 == 0:
        weight[-1] = 1.0
    weight = np.tile(weight, radius.size // weight.size)

    edges = _edges(bins, size, fundamental)
    index = np.searchsorted(edges, radius, side="right") - 1
    index[radius == edges[-1]] = edges.size - 2
    inside = (index >= 0) & (index < edges.size - 1) & (radius > 0)
    index, radius, weight = index[inside], radius[inside], weight[inside]
    n_bins = edges.size - 1
    counts = np.bincount(index, weights=weight, minlength=n_bins)
    kept = counts > 0
    centres = np.bincount(index, weights=weight * radius, minlength=n_bins)[kept] / counts[kept]
    return index, weight, inside, counts, kept, centres


def _edges(bins: int | np.ndarray | None, size: int, fundamental: float) -> np.ndarray:
    """Bin edges in units of the fundamental: log-spaced from 1 to the Nyquist S/2, or the given array."""
    if bins is None:
        bins = DEFAULT_BINS
    if isinstance(bins, (int, np.integer)):
        if bins < 1:
            raise ValueError(f"bins must be a positive number of bins or an array of edges, but got {bins}")
        return np.geomspace(1.0, size / 2, int(bins) + 1)
    edges = np.asarray(bins, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or not np.all(np.diff(edges) > 0) or not np.all(np.isfinite(edges)):
        raise ValueError(f"bin edges must be a 1D strictly increasing finite array of at least 2 values, "
                         f"but got {edges!r}")
    return edges / fundamental
