"""``hpo launch``: run a campaign."""

from __future__ import annotations

from pathlib import Path

import click

from orchestrator.cli._common import campaigns_dir_option, finish, run_options


@click.command("launch")
@click.argument("campaign", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE",
              help="Override a field of the campaign file, e.g. --set trial.workers=4 (repeatable).")
@campaigns_dir_option
@run_options
def command(campaign: Path, overrides: tuple[str, ...], campaigns_dir: str | None, address: str | None,
            no_progress: bool) -> int:
    """Run the campaign described in CAMPAIGN (a YAML file) until its budget is spent.

    Validates the file, checks the data, starts (or joins) Ray and the MLflow tracking server, then runs
    the trials (each a Horovod job of trial.workers ranks) with the Optuna sampler and the Tune scheduler
    of the file, showing a live table. State lives in CAMPAIGNS_DIR/NAME: `hpo status NAME` from another
    shell shows progress, `hpo stop NAME` stops it gracefully, `hpo resume NAME` continues it after a stop
    or a crash, `hpo extend NAME --trials K` adds trials later.

    Exit status: 0 finished, 3 stopped (resumable), 1 the campaign failed (its trials kept failing),
    2 bad input (nothing started).

    \b
    Examples:
      hpo launch search_spaces/demo.yaml
      hpo launch search_spaces/lhc_cnn.yaml --set budget.trials=50 --set trial.workers=4 --address auto
    """
    from rich.console import Console

    from orchestrator.config import load_campaign
    from orchestrator.runner import launch
    from orchestrator.summary import campaign_summary

    spec = load_campaign(campaign, overrides)
    Console().print(campaign_summary(spec))
    outcome = launch(spec, campaigns_dir=campaigns_dir, address=address, progress=not no_progress)
    return finish(outcome, spec.config.name, campaigns_dir)
