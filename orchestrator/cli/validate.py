"""``hpo validate``: check a campaign file without starting anything."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("validate")
@click.argument("campaign", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE",
              help="Override a field before validation, e.g. --set trial.workers=4 (repeatable).")
@click.option("--no-data-check", is_flag=True, help="Do not require the data file to exist yet.")
@click.option("--quick", is_flag=True,
              help="Schema only: do not import the workload to check parameter and metric names (no TensorFlow import).")
def command(campaign: Path, overrides: tuple[str, ...], no_data_check: bool, quick: bool) -> None:
    """Validate CAMPAIGN (a campaign YAML file) and print a short summary.

    Checks the schema (unknown keys are errors), the search space (bounds, log, step, conditions), the
    sampler and scheduler and their options, the objectives, the budget and trial resources, that the
    workload exists and accepts the parameters and reports the objective metrics, and that the data
    file exists. Exit status 0 when valid, 2 with a one-line error naming file, line and field otherwise.

    \b
    Examples:
      hpo validate search_spaces/demo.yaml
      hpo validate my_campaign.yaml --set trial.workers=4 --set budget.trials=50
    """
    from rich.console import Console

    from orchestrator.config import load_campaign
    from orchestrator.summary import campaign_summary

    loaded = load_campaign(campaign, overrides, check_data=not no_data_check, check_workload_face=not quick)
    console = Console()
    console.print(campaign_summary(loaded))
    console.print(f"[green]✓[/] {campaign} is a valid campaign file")
