"""Quality of generated maps against validation maps (CosmoGAN): pixel KS, power spectrum, Minkowski functionals.

Every comparison is expressed in units of the validation set's own scatter, so that an independent draw
of the validation distribution scores near 0 whatever the map statistics, and a generator scores high
when its maps differ from the validation maps by more than single validation maps differ from each
other. ``gan_quality`` folds them into one scalar for the hyperparameter search (lower is better).
"""

from __future__ import annotations

import numpy as np

from trainables.metrics.minkowski import minkowski_functionals
from trainables.metrics.spectra import power_spectrum_2d

KS_MAX_SAMPLES = 262_144
SIGNAL_FLOOR = 1e-6


def ks_distance(a: np.ndarray, b: np.ndarray, max_samples: int = KS_MAX_SAMPLES, seed: int = 0) -> float:
    """Two-sample Kolmogorov–Smirnov statistic D = max_x |F_a(x) − F_b(x)| of the flattened values.

    The empirical CDFs are evaluated at every value of both samples with ``np.searchsorted`` on the
    sorted samples. A sample larger than ``max_samples`` is first sub-sampled without replacement with a
    fixed seed (so the result is reproducible): pixels of a map are correlated, so a quarter of a million
    values resolve D far below the scatter between map sets, at a fraction of the sorting cost.

    Args:
        a: first sample, any shape.
        b: second sample, any shape.
        max_samples: largest number of values used per sample.
        seed: seed of the sub-sampling.

    Returns:
        D in [0, 1].
    """
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.size == 0 or y.size == 0:
        raise ValueError(f"both samples must be non-empty, but got sizes {x.size} and {y.size}")
    if max_samples < 1:
        raise ValueError(f"max_samples must be >= 1, but got {max_samples}")
    rng = np.random.default_rng(seed)
    if x.size > max_samples:
        x = rng.choice(x, max_samples, replace=False)
    if y.size > max_samples:
        y = rng.choice(y, max_samples, replace=False)
    x.sort()
    y.sort()
    values = np.concatenate([x, y])
    cdf_x = np.searchsorted(x, values, side="right") / x.size
    cdf_y = np.searchsorted(y, values, side="right") / y.size
    return float(np.max(np.abs(cdf_x - cdf_y)))


def pixel_histogram(maps: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Pixel-intensity density of a set of maps: counts / (total number of pixels × bin width).

    Pixels outside the edges count in the total, so the density integrates to the fraction of pixels
    inside [edges[0], edges[-1]] (1 when the edges cover every value).

    Args:
        maps: the set, any shape (all pixels are pooled).
        edges: increasing bin edges (B + 1,).

    Returns:
        density (B,).
    """
    values = np.asarray(maps, dtype=np.float64).ravel()
    bounds = np.asarray(edges, dtype=np.float64)
    if bounds.ndim != 1 or bounds.size < 2 or not np.all(np.diff(bounds) > 0):
        raise ValueError(f"edges must be a 1D strictly increasing array of at least 2 values, but got {bounds!r}")
    if values.size == 0:
        raise ValueError("maps must hold at least one pixel, but got an empty array")
    counts, _ = np.histogram(values, bins=bounds)
    return counts / (values.size * np.diff(bounds))


def gan_quality(generated: np.ndarray, reference: np.ndarray, *, pixel_size: float = 1.0,
                bins: int | np.ndarray | None = None, thresholds: np.ndarray | None = None,
                seed: int = 0) -> dict[str, float]:
    """Compare generated maps with validation maps, both in physical (convergence κ) units.

    With g = generated (N maps), r = reference (M maps), x̄ the mean over a set and s_r the standard
    deviation over single reference maps (ddof 1):

    * ``ps_max_rel_dev`` = max_b |C̄_g(ℓ_b) / C̄_r(ℓ_b) − 1| over the ℓ bins with signal
      (C̄_r ≥ 1e-6 · max C̄_r; ``power_spectrum_2d`` binning); the science target is ≤ 0.1.
    * ``ps_ratio_sigma`` = max_b (s_r(C_ℓ)/C̄_r)·√(1/N + 1/M) over the same bins: the sampling standard
      deviation of that ratio in the noisiest bin for an independent draw. The lowest ℓ bins hold only a
      few modes (4 at the fundamental), so with a few hundred 64×64 maps this is ≈ 0.05 and a perfect
      generator still shows ps_max_rel_dev ≈ 0.1: judge ps_max_rel_dev against it.
    * ``ps_chi`` = mean_b |C̄_g − C̄_r| / s_r(C_ℓ), over the same bins.
    * ``ks`` = KS distance of the pixel values of g and r (``ks_distance``).
    * ``ks_ref`` = KS distance between two random halves of r (fixed seed): the validation set's own
      scatter.
    * ``ks_map`` = mean over reference maps (a fixed random subset of at most 64) of the KS distance between
      one map's pixels and the pooled reference pixels: the pixel-histogram scatter of a single
      validation map.
    * ``ks_chi`` = ks / ks_map. For an independent draw D scales as √(1/N + 1/M) in units of the single-map
      scale, like the chi terms below. (ks_ref ≈ 2·ks_map/√M says the same, but one split is a single
      noisy KS draw; ks_map averages M of them.)
    * ``mf_chi`` = mean over (V₀, V₁, V₂) × thresholds of |V̄_g − V̄_r| / s_r(V), skipping entries where
      s_r = 0 (e.g. a threshold above every reference pixel). Thresholds are mean_r + ν·std_r of the
      reference pixels, ν = ``thresholds`` (default 15 values in [−2, 3]).
    * ``score`` = (ps_chi + mf_chi + ks_chi) / 3. Every term is a difference between the sets in units of
      the scatter of single validation maps: ≈ 0.8·√(1/N + 1/M) (≈ 0.07 for 256 vs 256 maps) for an
      independent draw of the validation distribution (ks_chi a little more for nearly uncorrelated
      pixels, through the KS sub-sampling), ≥ 1 once the generated set is off by more than a
      typical validation map, and unbounded above. Lower is better.

    Args:
        generated: (N, S, S) generated maps, N ≥ 1.
        reference: (M, S, S) validation maps, M ≥ 2, same S.
        pixel_size: pixel side Δθ (units of ℓ); the chi terms and the ratios do not depend on it.
        bins: ℓ binning, as in ``power_spectrum_2d``.
        thresholds: Minkowski thresholds in units of the reference pixels' standard deviation.
        seed: seed of the reference split and the KS sub-sampling.

    Returns:
        dict with the keys above, all finite floats for non-constant reference maps.
    """
    gen = np.asarray(generated, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if gen.ndim != 3 or ref.ndim != 3 or gen.shape[1:] != ref.shape[1:] or gen.shape[1] != gen.shape[2]:
        raise ValueError(f"generated and reference must be (N, S, S) and (M, S, S) sets of square maps of one size, "
                         f"but got shapes {gen.shape} and {ref.shape}")
    if gen.shape[0] < 1 or ref.shape[0] < 2:
        raise ValueError(f"need at least 1 generated and 2 reference maps, but got N={gen.shape[0]}, M={ref.shape[0]}")
    n_ref = ref.shape[0]

    _, cl_gen = power_spectrum_2d(gen, pixel_size, bins)
    _, cl_ref = power_spectrum_2d(ref, pixel_size, bins)
    mean_gen, mean_ref = cl_gen.mean(axis=0), cl_ref.mean(axis=0)
    signal = mean_ref >= SIGNAL_FLOOR * mean_ref.max() if mean_ref.max() > 0 else np.zeros_like(mean_ref, bool)
    ps_max_rel_dev = float(np.max(np.abs(mean_gen[signal] / mean_ref[signal] - 1))) if signal.any() else 0.0
    ps_chi = _chi(cl_gen[:, signal], cl_ref[:, signal])
    relative_spread = cl_ref[:, signal].std(axis=0, ddof=1) / mean_ref[signal]
    ps_ratio_sigma = float(relative_spread.max() * np.sqrt(1 / gen.shape[0] + 1 / n_ref)) if signal.any() else 0.0

    rng = np.random.default_rng(seed)
    order = rng.permutation(n_ref)
    ks = ks_distance(gen, ref, seed=seed)
    ks_ref = ks_distance(ref[order[: n_ref // 2]], ref[order[n_ref // 2:]], seed=seed + 1)
    ks_map = float(np.mean(_ks_single_maps(ref, seed)))
    ks_chi = ks / ks_map if ks_map > 0 else (0.0 if ks == 0 else float("inf"))

    nu = np.linspace(-2.0, 3.0, 15) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    levels = ref.mean() + nu * ref.std()
    mf_gen = np.concatenate(minkowski_functionals(gen, levels, pixel_size), axis=1)
    mf_ref = np.concatenate(minkowski_functionals(ref, levels, pixel_size), axis=1)
    mf_chi = _chi(mf_gen, mf_ref)

    return {
        "ps_max_rel_dev": ps_max_rel_dev,
        "ps_ratio_sigma": ps_ratio_sigma,
        "ps_chi": ps_chi,
        "ks": ks,
        "ks_ref": ks_ref,
        "ks_map": ks_map,
        "ks_chi": float(ks_chi),
        "mf_chi": mf_chi,
        "score": float((ps_chi + mf_chi + ks_chi) / 3),
    }


def _ks_single_maps(maps: np.ndarray, seed: int, max_maps: int = 64, max_pixels: int = 16_384) -> np.ndarray:
    """KS distance of single maps' pixels to the pooled pixels of all M maps (M, S, S), vectorised.

    The pooled sample is sub-sampled as in ``ks_distance``. For speed only a fixed random subset of at
    most ``max_maps`` maps is compared (the mean over 64 single-map distances is precise to a few per
    cent), using the same fixed random subset of at most ``max_pixels`` pixel positions in every map. With x_j the n sorted values of one map,
    D = max_j max(|(j+1)/n − F(x_j)|, |j/n − F(x_j⁻)|), F the pooled empirical CDF (for tied x_j, only
    the last of a run on the left term and the first on the right one).
    """
    rng = np.random.default_rng(seed + 2)
    flat = maps.reshape(maps.shape[0], -1)
    if flat.shape[1] > max_pixels:
        flat = flat[:, rng.choice(flat.shape[1], max_pixels, replace=False)]
    pooled = flat.ravel()
    if pooled.size > KS_MAX_SAMPLES:
        pooled = rng.choice(pooled, KS_MAX_SAMPLES, replace=False)
    pooled = np.sort(pooled)
    if flat.shape[0] > max_maps:
        flat = flat[rng.choice(flat.shape[0], max_maps, replace=False)]
    values = np.sort(flat, axis=1)
    n = values.shape[1]
    steps = np.arange(n) / n
    above = np.abs(steps + 1 / n - np.searchsorted(pooled, values, side="right") / pooled.size)
    below = np.abs(steps - np.searchsorted(pooled, values, side="left") / pooled.size)
    # Within a run of tied values only the run's ends are points of the map's CDF.
    tied = values[:, 1:] == values[:, :-1]
    above[:, :-1][tied] = 0.0
    below[:, 1:][tied] = 0.0
    return np.maximum(above.max(axis=1), below.max(axis=1))


def _chi(generated: np.ndarray, reference: np.ndarray) -> float:
    """Mean over columns of |mean_gen − mean_ref| / std_ref (ddof 1), over columns where std_ref > 0."""
    spread = reference.std(axis=0, ddof=1)
    usable = spread > 0
    if not usable.any():
        return 0.0
    diff = np.abs(generated[:, usable].mean(axis=0) - reference[:, usable].mean(axis=0))
    return float(np.mean(diff / spread[usable]))
