"""Weighted ROC curves at very low false-positive rate (LHC classifier).

QCD event weights are huge and vary strongly, so the working point is defined on the *weighted*
false-positive rate (FPR ≈ 1e-4 to 1e-3). Curves are weighted cumulative sums over scores sorted in
decreasing order; tied scores form one step (no dependence on event order).
"""

from __future__ import annotations

import numpy as np


def roc_curve(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted ROC: (fpr, tpr, thresholds), starting at (0, 0) with threshold +inf.

    Args:
        scores: classifier outputs, larger = more signal-like.
        labels: 1 for signal, 0 for background.
        weights: event weights (default 1).
    """
    scores = np.asarray(scores, np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    weights = np.ones_like(scores) if weights is None else np.asarray(weights, np.float64).ravel()
    if not (scores.size == labels.size == weights.size):
        raise ValueError(f"scores, labels and weights must have one length, but got {scores.size}, {labels.size}, {weights.size}")
    order = np.argsort(-scores, kind="mergesort")
    s, y, w = scores[order], labels[order], weights[order]
    tp = np.cumsum(w * y)
    fp = np.cumsum(w * ~y)
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), s.size - 1] if s.size else np.array([], int)
    tp, fp, thresholds = tp[last_of_tie], fp[last_of_tie], s[last_of_tie]
    p = tp[-1] if tp.size else 0.0
    n = fp[-1] if fp.size else 0.0
    tpr = np.r_[0.0, tp / p] if p > 0 else np.zeros(tp.size + 1)
    fpr = np.r_[0.0, fp / n] if n > 0 else np.zeros(fp.size + 1)
    return fpr, tpr, np.r_[np.inf, thresholds]


def auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Area under a ROC curve (trapezoids)."""
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) * 0.5))


def tpr_at_fpr(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None, target_fpr: float) -> float:
    """Signal efficiency at a weighted false-positive rate, linearly interpolated on the ROC."""
    fpr, tpr, _ = roc_curve(scores, labels, weights)
    return float(np.interp(target_fpr, fpr, tpr))


def selection_point(passed: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> tuple[float, float]:
    """(TPR, FPR) of a boolean cut-based selection, weighted."""
    passed = np.asarray(passed).astype(bool).ravel()
    labels = np.asarray(labels).astype(bool).ravel()
    w = np.ones(passed.size) if weights is None else np.asarray(weights, np.float64).ravel()
    sig, bkg = w[labels].sum(), w[~labels].sum()
    tpr = float(w[passed & labels].sum() / sig) if sig > 0 else 0.0
    fpr = float(w[passed & ~labels].sum() / bkg) if bkg > 0 else 0.0
    return tpr, fpr
