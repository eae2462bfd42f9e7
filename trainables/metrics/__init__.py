"""Physics metrics, pure NumPy: weighted ROC at low false-positive rate (classifier).

Each function documents its formula and convention (``docs/metrics.md``).
"""

from __future__ import annotations

from trainables.metrics.roc import auc, roc_curve, selection_point, tpr_at_fpr

__all__ = ["auc", "roc_curve", "selection_point", "tpr_at_fpr"]
