"""``hpo data``: generate synthetic data sets and check data files."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("data")
def command() -> None:
    """Generate synthetic data in the public layouts, and check data files before training."""


@command.command("generate")
@click.argument("kind", type=click.Choice(["calo"]))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="HDF5 file to write.")
@click.option("--events", type=int, required=True, help="Number of events.")
@click.option("--size", type=int, default=64, show_default=True, help="Image size in pixels (calo: 64 or 224).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed: the same seed writes the same bytes.")
@click.option("--signal-fraction", type=float, default=0.5, show_default=True, help="calo: fraction of signal events.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def generate(kind: str, out: Path, events: int, size: int, seed: int, signal_fraction: float, quiet: bool) -> None:
    """Write a synthetic data set of KIND to --out.

    calo: LHC whole-detector images (η × φ, 3 channels: total calorimeter energy, EM energy, track
    counts) of QCD multijet background and RPV-SUSY gluino-pair signal, in the public ATLAS layout
    (all_events/hist, histEM, histtrack, y, weight, passSR...), with the high-level variables of the
    cut-based physics selection. Streams in chunks, so memory stays bounded for any --events.

    \b
    Example:
      hpo data generate calo --out data/calo.h5 --events 20000 --seed 1
    """
    from trainables.data.checks import check_file
    from trainables.data.generate import write_calo

    path = write_calo(out, events=events, size=size, seed=seed, signal_fraction=signal_fraction, progress=not quiet)
    summary = check_file(path)
    click.echo(f"wrote {path} ({summary.events} events, {path.stat().st_size / 2**20:.1f} MiB): {summary.facts}")


@command.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--kind", type=click.Choice(["calo", "cosmo3d", "lensing"]), default=None,
              help="Expected kind (default: read from the file's hpo.kind attribute).")
def check(file: Path, kind: str | None) -> None:
    """Check FILE before training: keys, shapes, dtypes, lengths, NaN/Inf, labels, weights.

    Exit 0 with a summary, or 2 with one line naming the file and key at fault.
    """
    from rich.console import Console
    from rich.table import Table

    from trainables.data.checks import check_file

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
    console.print("[green]✓[/] usable for training")
