"""``hpo resume``: continue a stopped or crashed campaign."""

from __future__ import annotations

import click

from orchestrator.cli._common import campaigns_dir_option, finish, run_options


@click.command("resume")
@click.argument("name")
@campaigns_dir_option
@run_options
def command(name: str, campaigns_dir: str | None, address: str | None, no_progress: bool) -> int:
    """Continue campaign NAME after `hpo stop`, a crash of the driver, or of the machine.

    Finished trials are kept and never re-run; unfinished ones continue from their last checkpoint
    (taken every epoch); the MLflow runs are reattached, not duplicated.

    \b
    Example:
      hpo resume lhc-tpe-asha
    """
    from orchestrator.runner import resume

    return finish(resume(name, campaigns_dir=campaigns_dir, address=address, progress=not no_progress), name, campaigns_dir)
