"""Physics metrics, pure NumPy (no TensorFlow), one module per family:

* ``roc``: weighted ROC at low false-positive rate (LHC classifier);
* ``spectra``: binned 2D angular (C_ℓ) and 3D (P(k)) power spectra (CosmoGAN, CosmoFlow);
* ``minkowski``: Minkowski functionals V₀, V₁, V₂ of excursion sets and their Gaussian-field expectations;
* ``gan``: pixel KS distance and histogram, and ``gan_quality``, the one-number score of generated maps
  against validation maps;
* ``regression``: unit-space and physical-unit errors of parameter regression (CosmoFlow), and the
  summary-statistics baseline (power spectra and one-point statistics, ridge regression) a CNN should beat.

Each function documents its formula and convention (``docs/metrics.md``).
"""

from __future__ import annotations

from trainables.metrics.gan import gan_quality, ks_distance, pixel_histogram
from trainables.metrics.minkowski import gaussian_minkowski, minkowski_functionals
from trainables.metrics.regression import cube_summaries, regression_errors, ridge_predict
from trainables.metrics.roc import auc, roc_curve, selection_point, tpr_at_fpr
from trainables.metrics.spectra import power_spectrum_2d, power_spectrum_3d

__all__ = [
    "auc",
    "cube_summaries",
    "gan_quality",
    "gaussian_minkowski",
    "ks_distance",
    "minkowski_functionals",
    "pixel_histogram",
    "power_spectrum_2d",
    "power_spectrum_3d",
    "regression_errors",
    "ridge_predict",
    "roc_curve",
    "selection_point",
    "tpr_at_fpr",
]
