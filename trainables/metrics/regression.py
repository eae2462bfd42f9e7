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
