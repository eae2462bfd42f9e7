"""``hpo data``: generate synthetic data sets and check data files."""

from __future__ import annotations

from pathlib import Path

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
def generate(kind: str, out: Path, events: int, size: int | None, seed: int, signal_fraction: float | None,
             cosmologies: int | None, galaxy_density: float | None, quiet: bool) -> None:
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

    Every kind streams in chunks, so memory stays bounded for any --events. See docs/data.md.

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
        path = write_calo(out, events=events, size=size, seed=seed,
                          signal_fraction=0.5 if signal_fraction is None else signal_fraction, progress=not quiet)
    elif kind == "cosmo3d":
        path = write_cosmo3d(out, events=events, size=size, seed=seed, progress=not quiet)
    else:
        path = write_lensing(out, events=events, size=size, seed=seed, cosmologies=cosmologies or 1,
                             galaxy_density=galaxy_density or 0.0, progress=not quiet)
    summary = check_file(path)
    click.echo(f"wrote {path} ({summary.events} events, {path.stat().st_size / 2**20:.1f} MiB): {summary.facts}")


@command.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--kind", type=click.Choice(["calo", "cosmo3d", "lensing"]), default=None,
              help="Expected kind (default: read from the file's hpo.kind attribute).")
def check(file: Path, kind: str | None) -> None:
    """Check FILE before training: keys, shapes, dtypes, lengths, NaN/Inf, and per kind: labels and
    weights (calo), u in [-1, 1] and counts >= 0 (cosmo3d), κ >= -shift and cosmology indices (lensing).

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
