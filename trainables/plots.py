"""Plots (matplotlib, Agg backend, PNG): each function takes arrays and a path and returns the path."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import LogLocator, NullFormatter

from trainables.metrics.gan import ks_distance, pixel_histogram

if TYPE_CHECKING:
    from matplotlib.figure import Figure


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
    # minor ticks at 2 and 5 of each decade: the default eight per decade, each a tick object laid out and drawn
    # with its (empty) label, were half of this plot's time, paid at the end of every trial
    ax.xaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(*fpr_range)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("background efficiency (weighted FPR)")
    ax.set_ylabel("signal efficiency (TPR)")
    ax.set_title("ROC on the validation split")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=8)
    # fixed margins: the figure's size and labels never change, and tight_layout's measuring of every (minor) tick
    # label of the log axis was a third of this plot's time, paid at the end of every trial
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.12, top=0.93)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_true_vs_pred(true: np.ndarray, pred: np.ndarray, names: Sequence[str], path: str | Path) -> Path:
    """Predicted vs true value, one panel per parameter, with the diagonal and the MAE in each title.

    Args:
        true: targets (N, P).
        pred: predictions (N, P).
        names: P parameter names.
        path: PNG to write.
    """
    true = np.asarray(true, np.float64).reshape(len(true), -1)
    pred = np.asarray(pred, np.float64).reshape(len(pred), -1)
    if true.shape != pred.shape or true.shape[1] != len(names):
        raise ValueError(f"true and pred must be (N, P) with P = len(names) = {len(names)}, "
                         f"but got shapes {true.shape} and {pred.shape}")
    path = _prepare(path)
    ncols = min(len(names), 4)
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 3.3 * nrows), dpi=110, squeeze=False)
    for ax, name, t, p in zip(axes.flat, names, true.T, pred.T, strict=False):
        low, high = min(t.min(), p.min()), max(t.max(), p.max())
        ax.scatter(t, p, s=6, alpha=0.5, edgecolors="none")
        ax.plot([low, high], [low, high], color="crimson", lw=1, label="pred = true")
        ax.set_title(f"{name}  (MAE {np.mean(np.abs(p - t)):.3g})", fontsize=10)
        ax.set_xlabel(f"true {name}")
        ax.set_ylabel(f"predicted {name}")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=7)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    return _save(fig, path)


def plot_power_spectra(ell: np.ndarray, generated: np.ndarray, reference: np.ndarray, path: str | Path,
                       xlabel: str = "ℓ") -> Path:
    """Mean ± 1σ power spectra of two map sets (log-log) and their ratio with a ±10 % band.

    The ratio panel also shades its expected sampling scatter, s_ref/C̄_ref·√(1/N + 1/M), the
    ``ps_ratio_sigma`` of ``gan_quality`` per bin.

    Args:
        ell: bin centres (B,).
        generated: spectra of the generated maps (N, B).
        reference: spectra of the validation maps (M, B).
        path: PNG to write.
        xlabel: x-axis label (``k [h/Mpc]`` for 3D spectra).
    """
    ell = np.asarray(ell, np.float64)
    generated, reference = np.atleast_2d(generated), np.atleast_2d(reference)
    if generated.shape[1] != ell.size or reference.shape[1] != ell.size:
        raise ValueError(f"spectra must be (N, B) with B = len(ell) = {ell.size}, "
                         f"but got shapes {generated.shape} and {reference.shape}")
    path = _prepare(path)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 5.5), dpi=110, sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1.3]})
    for label, spectra, color in (("validation", reference, "tab:blue"), ("generated", generated, "tab:orange")):
        mean, std = spectra.mean(axis=0), spectra.std(axis=0)
        top.plot(ell, mean, color=color, lw=1.6, label=f"{label} ({len(spectra)} maps), mean ± 1σ")
        # a log axis cannot show mean − σ ≤ 0 (few-mode bins): the lower edge stops at mean/5
        top.fill_between(ell, np.maximum(mean - std, mean / 5), mean + std, color=color, alpha=0.25)
    top.set_xscale("log")
    top.set_yscale("log")
    top.set_ylabel("power")
    top.set_title("Power spectrum: generated vs validation")
    top.grid(alpha=0.3, which="both")
    top.legend(fontsize=8)
    ref_mean = reference.mean(axis=0)
    ratio = np.divide(generated.mean(axis=0), ref_mean, out=np.full(ell.size, np.nan), where=ref_mean > 0)
    # sampling sd of the ratio for an independent draw: single-map scatter × √(1/N + 1/M)
    band = np.divide(reference.std(axis=0), ref_mean, out=np.zeros(ell.size), where=ref_mean > 0)
    band *= np.sqrt(1 / len(generated) + 1 / len(reference))
    bottom.fill_between(ell, 0.9, 1.1, color="grey", alpha=0.25, label="±10 %")
    bottom.fill_between(ell, 1 - band, 1 + band, color="tab:blue", alpha=0.3, label="sampling 1σ")
    bottom.axhline(1.0, color="grey", lw=0.8)
    bottom.plot(ell, ratio, color="tab:orange", marker="o", ms=3, lw=1.2, label="generated / validation")
    bottom.set_ylim(max(0.0, min(0.8, np.nanmin(ratio) - 0.05)) if np.isfinite(ratio).any() else 0.5,
                    max(1.2, np.nanmax(ratio) + 0.05) if np.isfinite(ratio).any() else 1.5)
    bottom.set_xlabel(xlabel)
    bottom.set_ylabel("ratio")
    bottom.grid(alpha=0.3, which="both")
    bottom.legend(fontsize=7, ncol=3, loc="upper left")
    return _save(fig, path)


def plot_minkowski(thresholds: np.ndarray, generated: tuple[np.ndarray, np.ndarray, np.ndarray],
                   reference: tuple[np.ndarray, np.ndarray, np.ndarray], path: str | Path) -> Path:
    """The three Minkowski functionals vs threshold, mean ± 1σ over each set's maps.

    Args:
        thresholds: levels (T,), as passed to ``minkowski_functionals`` (or in units of σ).
        generated: (V₀, V₁, V₂) of the generated maps, each (N, T).
        reference: (V₀, V₁, V₂) of the validation maps, each (M, T).
        path: PNG to write.
    """
    thresholds = np.asarray(thresholds, np.float64)
    if len(generated) != 3 or len(reference) != 3:
        raise ValueError(f"generated and reference must be (V0, V1, V2) triples, "
                         f"but got {len(generated)} and {len(reference)} arrays")
    path = _prepare(path)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), dpi=110)
    titles = ("V₀: area fraction", "V₁: boundary length / 4A", "V₂: Euler characteristic / A")
    for i, (ax, title) in enumerate(zip(axes, titles, strict=True)):
        for label, values, color in (("validation", reference[i], "tab:blue"),
                                     ("generated", generated[i], "tab:orange")):
            values = np.atleast_2d(values)
            if values.shape[1] != thresholds.size:
                raise ValueError(f"V{i} must be (N, T) with T = len(thresholds) = {thresholds.size}, "
                                 f"but got shape {values.shape}")
            mean, std = values.mean(axis=0), values.std(axis=0)
            ax.plot(thresholds, mean, color=color, lw=1.6, label=f"{label}, mean ± 1σ")
            ax.fill_between(thresholds, mean - std, mean + std, color=color, alpha=0.25)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("threshold ν")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Minkowski functionals: generated vs validation", fontsize=11)
    return _save(fig, path)


def plot_image_grid(images: np.ndarray, path: str | Path, titles: Sequence[str] | None = None,
                    ncols: int = 4) -> Path:
    """A grid of maps (e.g. generated and validation maps side by side), on one shared colour scale.

    Args:
        images: (K, H, W) maps.
        path: PNG to write.
        titles: K titles, or None.
        ncols: maps per row.
    """
    images = np.asarray(images, np.float64)
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3 or len(images) == 0:
        raise ValueError(f"images must be a non-empty (K, H, W) array, but got shape {images.shape}")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"titles must hold one title per image ({len(images)}), but got {len(titles)}")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, but got {ncols}")
    path = _prepare(path)
    ncols = min(ncols, len(images))
    nrows = -(-len(images) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.3 * ncols + 0.9, 2.4 * nrows), dpi=110,
                             squeeze=False, layout="constrained")
    low, high = np.percentile(images, [0.5, 99.5])
    shown = None
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= len(images):
            ax.set_visible(False)
            continue
        shown = ax.imshow(images[k], cmap="viridis", vmin=low, vmax=high, origin="lower")
        if titles is not None:
            ax.set_title(titles[k], fontsize=9)
    if shown is not None:
        fig.colorbar(shown, ax=axes, shrink=0.8)
    return _save(fig, path, tight=False)


def plot_pixel_histogram(generated: np.ndarray, reference: np.ndarray, path: str | Path, bins: int = 60) -> Path:
    """Pixel-intensity densities of two map sets (log y), on shared edges, with their KS distance.

    Args:
        generated: generated maps, any shape (pixels are pooled).
        reference: validation maps, any shape.
        path: PNG to write.
        bins: number of bins between the 0.01 % and 99.99 % quantiles of the pooled pixels.
    """
    generated, reference = np.asarray(generated, np.float64), np.asarray(reference, np.float64)
    low, high = np.percentile(np.r_[generated.ravel(), reference.ravel()], [0.01, 99.99])
    if not high > low:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, bins + 1)
    centres = 0.5 * (edges[1:] + edges[:-1])
    path = _prepare(path)
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=110)
    for label, maps, color in (("validation", reference, "tab:blue"), ("generated", generated, "tab:orange")):
        ax.step(centres, pixel_histogram(maps, edges), where="mid", color=color, lw=1.6, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("pixel value")
    ax.set_ylabel("density")
    ax.set_title(f"Pixel intensities (KS distance {ks_distance(generated, reference):.3g})")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _prepare(path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _save(fig: Figure, path: Path, tight: bool = True) -> Path:
    if tight:
        fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
