"""``hpo data``: generate synthetic data sets and check data files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click


@click.group("data")
def command() -> None:
    """Generate synthetic data in the public layouts, and check data files before training."""


DEFAULT_SIZES = {"calo": 64, "cosmo3d": 32, "lensing": 64}


@command.command("generate")
@click.argument("kind", type=click.Choice(list(DEFAULT_SIZES)))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="HDF5 file to write.")
@click.option("--events", type=int, required=True, help="Number of events (calo), cubes (cosmo3d) or maps (lensing).")
@click.option("--size", type=int, default=None,
              help="Pixels or cells per side. calo: 64 (default) or 224; cosmo3d: 32 (default), 64 or 128; "
                   "lensing: 64 (default), 128 or 256.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed: the same seed writes the same bytes.")
@click.option("--signal-fraction", type=float, default=None, help="calo: fraction of signal events [default: 0.5].")
@click.option("--cosmologies", type=int, default=None,
              help="lensing: number of cosmologies, maps spread evenly over them [default: 1, the fiducial].")
@click.option("--galaxy-density", type=float, default=None,
              help="lensing: galaxies per arcmin² for Gaussian shape noise [default: 0, no noise].")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--force", is_flag=True, help="Replace --out if it exists (by default an existing file is an error).")
def generate(kind: str, out: Path, events: int, size: int | None, seed: int, signal_fraction: float | None,
             cosmologies: int | None, galaxy_density: float | None, quiet: bool, force: bool) -> None:
    """Write a synthetic data set of KIND to --out.

    calo: LHC whole-detector images (η × φ, 3 channels: total calorimeter energy, EM energy, track
    counts) of QCD multijet background and RPV-SUSY gluino-pair signal, in the public ATLAS layout
    (all_events/hist, histEM, histtrack, y, weight, passSR...), with the high-level variables of the
    cut-based physics selection.

    cosmo3d: dark-matter particle counts in S³ cubes of 128 Mpc/h, 4 redshift channels (z = 0, 0.5,
    1.5, 3), lognormal fields with a BBKS power spectrum of each cube's own (Ω_m, σ_8, n_s), in the
    CosmoFlow layout (x, unitPar, physPar).

    lensing: weak-lensing convergence maps (0.82 arcmin pixels), shifted-lognormal fields with a known
    C_ℓ per cosmology, as for CosmoGAN (maps, params, cosmology).

    Every kind streams in chunks, so memory stays bounded for any --events. The file is written under a
    temporary name next to --out and renamed at the end, so an interrupted run never leaves a partial file
    under --out; an existing --out is replaced only with --force. See docs/data.md.

    \b
    Examples:
      hpo data generate calo --out data/calo.h5 --events 20000 --seed 1
      hpo data generate cosmo3d --out data/cosmo3d.h5 --events 4000 --size 32 --seed 1
      hpo data generate lensing --out data/lensing.h5 --events 20000 --cosmologies 8 --seed 1
    """
    from trainables.data.checks import check_file
    from trainables.data.generate import write_calo, write_cosmo3d, write_lensing
    from trainables.errors import HpoError

    given = {"--signal-fraction": (signal_fraction, "calo"), "--cosmologies": (cosmologies, "lensing"),
             "--galaxy-density": (galaxy_density, "lensing")}
    for flag, (value, only) in given.items():
        if value is not None and kind != only:
            raise HpoError(f"{flag} applies to {only} data only, not {kind}; drop it")
    size = DEFAULT_SIZES[kind] if size is None else size
    if kind == "calo":
        path = write_calo(out, events=events, size=size, seed=seed, progress=not quiet, overwrite=force,
                          signal_fraction=0.5 if signal_fraction is None else signal_fraction)
    elif kind == "cosmo3d":
        path = write_cosmo3d(out, events=events, size=size, seed=seed, progress=not quiet, overwrite=force)
    else:
        path = write_lensing(out, events=events, size=size, seed=seed, progress=not quiet, overwrite=force,
                             cosmologies=cosmologies or 1, galaxy_density=galaxy_density or 0.0)
    summary = check_file(path)
    click.echo(f"wrote {path} ({summary.events} events, {path.stat().st_size / 2**20:.1f} MiB): {summary.facts}")


@command.command("check")
@click.argument("file", type=click.Path(path_type=Path, readable=False))  # our check says what is wrong, in one line
@click.option("--kind", type=click.Choice(["calo", "cosmo3d", "lensing"]), default=None,
              help="Expected kind (default: read from the file's hpo.kind attribute).")
@click.option("--deep", is_flag=True,
              help="First read every chunk of every dataset on its own (progress bar), verifying checksums, and "
                   "report the damaged event ranges.")
def check(file: Path, kind: str | None, deep: bool) -> None:
    """Check FILE before training: keys, shapes, dtypes, lengths, NaN/Inf, and per kind: labels and
    weights (calo), u in [-1, 1] and counts >= 0 (cosmo3d), κ >= -shift and cosmology indices (lensing).
    Every dataset is read back, so a damaged chunk (a Fletcher-32 checksum mismatch, in generated files)
    fails the check.

    --deep reads every chunk on its own, past damaged ones, and names the first damaged event range and how
    many chunks are damaged; it also says which datasets carry no checksums (public files), where silent
    corruption cannot be ruled out.

    Exit 0 with a summary, or 2 with one line naming the file and key at fault.
    """
    from rich.console import Console
    from rich.table import Table

    from trainables.data.checks import check_file

    verification = _verify(str(file)) if deep else None
    summary = check_file(file, kind)
    table = Table(title=f"{summary.path}: {summary.kind}, {summary.events} events", title_justify="left")
    table.add_column("dataset")
    table.add_column("shape")
    table.add_column("dtype")
    for name, (shape, dtype) in summary.datasets.items():
        table.add_row(name, " × ".join(map(str, shape)), dtype)
    console = Console()
    console.print(table)
    for key, value in summary.facts.items():
        console.print(f"  {key}: {value}")
    if verification is not None:
        if verification.unchecked:
            console.print(f"  [yellow]![/] no checksums on {', '.join(verification.unchecked)}: every chunk decoded and "
                          "the values passed the scans, but silent corruption cannot be ruled out")
        else:
            console.print(f"  checksums: all {verification.chunks} chunks verified (Fletcher-32)")
    console.print("[green]✓[/] usable for training")


def _verify(path: str) -> Any:
    """``hpo data check --deep``: every chunk read on its own, with a progress bar (on stderr)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from trainables.data.integrity import check_path, verify_chunks

    check_path(path)
    columns = (TextColumn("reading every chunk"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("chunks", total=None)
        verification = verify_chunks(path, lambda done, total: progress.update(task, completed=done, total=total))
    verification.raise_first(path)
    return verification


@command.command("baseline")
@click.argument("file", type=click.Path(path_type=Path, readable=False))
@click.option("--split", type=float, nargs=3, default=(0.8, 0.1, 0.1), show_default=True,
              help="Train/validation/test fractions, as in the campaign file's data.split.")
@click.option("--seed", type=int, default=0, show_default=True, help="The split's seed (a trial's seed, `hpo train --seed`).")
@click.option("--max-events", type=int, default=None, help="Use the first N cubes only.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the figures to this JSON file.")
def baseline(file: Path, split: tuple[float, float, float], seed: int, max_events: int | None, json_out: Path | None) -> None:
    """What a classical analysis gets from a cosmo3d FILE: the figure for cosmoflow to beat.

    Per cube, the power spectrum of log(1 + counts) in 8 shells and its standard deviation and skewness,
    for every redshift channel; a ridge regression on the training split predicts (Ω_m, σ_8, n_s) of the
    validation split (the same split `hpo train cosmoflow --seed SEED` uses). Prints the validation MAE in
    u-space per parameter beside predicting the training mean (≈ 0.5), like the cut-based selection
    printed beside lhc_cnn's ROC.

    \b
    Example:
      hpo data baseline data/cosmo3d.h5
    """
    import json

    import h5py
    import numpy as np
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from trainables.cosmoflow import TARGETS
    from trainables.data.checks import check_file
    from trainables.data.readers import event_groups, event_splits, reader_for
    from trainables.data.spec import DataConfig
    from trainables.errors import HpoError
    from trainables.metrics import cube_summaries, regression_errors, ridge_predict

    check_file(file, "cosmo3d")
    cfg = DataConfig(path=str(file), split=tuple(split), max_events=max_events)
    reader = reader_for(cfg, "cosmo3d", {"transform": "log", "targets": len(TARGETS)})
    parts = event_splits(cfg, reader, seed)
    train, val = parts["train"], parts["val"]
    if train.size < 2 or val.size < 1:
        raise HpoError(f"{file}: {sum(p.size for p in parts.values())} cubes give {train.size} training and "
                       f"{val.size} validation cubes; "
                       "use a larger file or another --split")
    console = Console(stderr=True)
    features: dict[str, np.ndarray] = {}
    targets: dict[str, np.ndarray] = {}
    with h5py.File(file, "r") as f, Progress(console=console, transient=True) as progress:
        task = progress.add_task("power spectra of the cubes", total=int(train.size + val.size))
        for name, indices in (("train", train), ("val", val)):
            rows, ys = [], []
            for group in event_groups(indices, reader.group_events):
                x, y = reader.read(f, group, {})
                rows.append(cube_summaries(x))
                ys.append(y)
                progress.advance(task, len(group))
            features[name], targets[name] = np.concatenate(rows), np.concatenate(ys)
    pred = ridge_predict(features["train"], targets["train"], features["val"])
    mean = np.broadcast_to(targets["train"].mean(axis=0), targets["val"].shape)
    errors = {"baseline": regression_errors(pred, targets["val"], TARGETS),
              "mean": regression_errors(mean, targets["val"], TARGETS)}
    table = Table(title=f"{file}: validation MAE in u-space ({val.size} cubes; ridge fit on {train.size})",
                  title_justify="left")
    for column in ("", "summary statistics", "predicting the mean"):
        table.add_column(column, justify="right" if column else "left")
    for key, label in [("mae", "all"), *((f"mae_{t}", t) for t in TARGETS)]:
        table.add_row(label, f"{errors['baseline'][key]:.3f}", f"{errors['mean'][key]:.3f}")
    Console().print(table)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps({**errors, "train_cubes": int(train.size), "val_cubes": int(val.size)}, indent=2))
