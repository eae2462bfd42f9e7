"""Errors of cosmological-parameter regression (CosmoFlow), in unit space and in physical units.

Targets are u ∈ [−1, 1] per parameter; physical values are fiducial·(1 + scale·u) (``SCIENCE.md``
section 2: fiducial (Ω_m, σ_8, n_s, H_0) = (0.3, 0.8, 0.96, 70), scale 0.1).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def regression_errors(pred_u: np.ndarray, true_u: np.ndarray, names: Sequence[str],
                      fiducial: Sequence[float] | np.ndarray | None = None, scale: float = 0.1) -> dict[str, float]:
    """Mean absolute errors per parameter, and relative errors in physical units when ``fiducial`` is given.

    * ``mae`` = mean over samples and parameters of |pred_u − true_u|;
    * ``mae_<name>`` = mean over samples of |pred_u − true_u| for one parameter;
    * with ``fiducial``: physical x = fiducial·(1 + scale·u) and ``rel_err_<name>`` =
      mean |x_pred − x_true| / |x_true|, and ``rel_err`` = the mean of the ``rel_err_<name>``.

    Args:
        pred_u: predictions (N, P), or (N,) when P = 1.
        true_u: targets, same shape.
        names: P parameter names.
        fiducial: P fiducial values, or None for unit-space errors only.
        scale: relative half-width of the parameter range.

    Returns:
        dict of floats with the keys above.
    """
    pred = np.asarray(pred_u, dtype=np.float64)
    true = np.asarray(true_u, dtype=np.float64)
    names = list(names)
    if pred.shape != true.shape:
        raise ValueError(f"pred_u and true_u must have one shape, but got {pred.shape} and {true.shape}")
    if pred.ndim == 1:
        pred, true = pred[:, None], true[:, None]
    if pred.ndim != 2 or pred.shape[0] == 0 or pred.shape[1] != len(names):
        raise ValueError(f"pred_u must be (N, P) with N >= 1 and P = len(names) = {len(names)}, "
                         f"but got shape {np.shape(pred_u)}")
    if len(set(names)) != len(names):
        raise ValueError(f"names must be unique, but got {names}")
    error = np.abs(pred - true)
    result = {"mae": float(error.mean())}
    result.update({f"mae_{name}": float(value) for name, value in zip(names, error.mean(axis=0), strict=True)})
    if fiducial is not None:
        centre = np.asarray(fiducial, dtype=np.float64)
        if centre.shape != (len(names),):
            raise ValueError(f"fiducial must hold one value per name ({len(names)}), but got shape {centre.shape}")
        physical_true = centre * (1 + scale * true)
        if np.any(physical_true == 0):
            raise ValueError("relative errors need non-zero physical true values, but fiducial·(1 + scale·u) hits 0")
        relative = np.abs(centre * scale * (pred - true)) / np.abs(physical_true)
        per_name = relative.mean(axis=0)
        result.update({f"rel_err_{name}": float(value) for name, value in zip(names, per_name, strict=True)})
        result["rel_err"] = float(per_name.mean())
    return result


def cube_summaries(log_counts: np.ndarray, bins: int = 8) -> np.ndarray:
    """Classical summary statistics of density cubes, one row per cube: the baseline a CNN should beat.

    For each channel c of ``log_counts`` (N, S, S, S, C), ℓ = log(1 + counts): the log of the power spectrum
    of ℓ − mean(ℓ) in ``bins`` log-spaced |k| shells (grid units; empty shells dropped, the same for every
    cube), then the standard deviation and the skewness of ℓ. For a lognormal field ℓ is close to the Gaussian
    field itself, so its P(k) carries σ_8 (amplitude) and n_s (tilt); the ratios of the channels' standard
    deviations follow the growth factor D(z), which depends on Ω_m.

    Returns:
        (N, C · (shells + 2)) float64.
    """
    from trainables.metrics.spectra import power_spectrum_3d

    cubes = np.asarray(log_counts, dtype=np.float64)
    if cubes.ndim == 4:
        cubes = cubes[..., None]
    if cubes.ndim != 5 or not cubes.shape[1] == cubes.shape[2] == cubes.shape[3]:
        raise ValueError(f"log_counts must be (N, S, S, S) or (N, S, S, S, C) cubes, but got shape {np.shape(log_counts)}")
    columns = []
    for c in range(cubes.shape[-1]):
        field = cubes[..., c] - cubes[..., c].mean(axis=(1, 2, 3), keepdims=True)
        _, power = power_spectrum_3d(field, box_size=float(field.shape[-1]), bins=bins)
        flat = field.reshape(len(field), -1)
        std = flat.std(axis=1)
        skew = (flat**3).mean(axis=1) / np.maximum(std, 1e-12) ** 3
        columns += [np.log(np.maximum(power, 1e-30)), std[:, None], skew[:, None]]
    return np.concatenate(columns, axis=1)


def ridge_predict(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, alpha: float = 0.1,
                  clip: tuple[float, float] | None = (-1.0, 1.0)) -> np.ndarray:
    """Ridge regression of ``train_y`` on standardised ``train_x`` (with intercept), applied to ``test_x``.

    Minimises |X w − y|² + ``alpha`` |w|² over the features standardised with the training mean and
    standard deviation; predictions are clipped to ``clip`` (the u-space range) unless it is None.
    """
    x, y, t = (np.asarray(a, dtype=np.float64) for a in (train_x, train_y, test_x))
    if x.ndim != 2 or t.ndim != 2 or x.shape[1] != t.shape[1] or len(x) != len(y) or len(x) == 0:
        raise ValueError(f"train_x (N, F), train_y (N, ...) and test_x (M, F) must agree, but got shapes "
                         f"{x.shape}, {y.shape} and {t.shape}")
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std == 0] = 1.0

    def design(a: np.ndarray) -> np.ndarray:
        return np.concatenate([(a - mean) / std, np.ones((len(a), 1))], axis=1)

    a = design(x)
    penalty = alpha * np.eye(a.shape[1])
    penalty[-1, -1] = 0.0  # the intercept is not shrunk
    weights = np.linalg.solve(a.T @ a + penalty, a.T @ y)
    pred = design(t) @ weights
    return np.clip(pred, *clip) if clip is not None else pred
