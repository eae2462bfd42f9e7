"""``hpo extend``: add trials to a finished campaign."""

from __future__ import annotations

import click

from orchestrator.cli._common import campaigns_dir_option, finish, run_options


@click.command("extend")
@click.argument("name")
@click.option("--trials", type=int, required=True, help="How many trials to add.")
@campaigns_dir_option
@run_options
def command(name: str, trials: int, campaigns_dir: str | None, address: str | None, no_progress: bool) -> int:
    """Add TRIALS trials to the finished campaign NAME.

    The sampler is warm-started from every earlier trial of the campaign (they live in its Optuna study),
    so the new trials continue the search where it stopped.

    \b
    Example:
      hpo extend lhc-tpe-asha --trials 20
    """
    from orchestrator.runner import extend

    return finish(extend(name, trials, campaigns_dir=campaigns_dir, address=address, progress=not no_progress), name, campaigns_dir)
