"""Plots (matplotlib, Agg backend, PNG): each function takes arrays and a path and returns the path."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def plot_roc(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | Path,
             selection_point: tuple[float, float] | None = None, fpr_range: tuple[float, float] = (1e-5, 1.0)) -> Path:
    """ROC curves as signal efficiency vs weighted background efficiency (log x), with the cut-based point.

    Args:
        curves: label -> (fpr, tpr).
        path: PNG to write.
        selection_point: (tpr, fpr) of the physics selection, drawn as a star.
        fpr_range: x-axis range.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=110)
    for label, (fpr, tpr) in curves.items():
        keep = fpr > 0
        ax.plot(fpr[keep], tpr[keep], label=label, lw=1.8)
    if selection_point is not None:
        cut_tpr, cut_fpr = selection_point
        ax.plot([max(cut_fpr, fpr_range[0])], [cut_tpr], marker="*", ms=14, ls="none", color="crimson",
                label=f"physics selection (TPR {cut_tpr:.3f}, FPR {cut_fpr:.2g})")
    for x in (1e-4, 1e-3):
        ax.axvline(x, color="grey", lw=0.6, ls=":")
    ax.set_xscale("log")
    ax.set_xlim(*fpr_range)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("background efficiency (weighted FPR)")
    ax.set_ylabel("signal efficiency (TPR)")
    ax.set_title("ROC on the validation split")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
