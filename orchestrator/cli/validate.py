"""``hpo validate``: check a campaign file without starting anything."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("validate")
@click.argument("campaign", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE",
              help="Override a field before validation, e.g. --set trial.workers=4 (repeatable).")
@click.option("--no-data-check", is_flag=True, help="Do not check the data file (it need not exist yet).")
@click.option("--quick", is_flag=True,
              help="Schema only: do not import the workload to check parameter and metric names, nor read the data "
                   "file (only that it is a readable file).")
def command(campaign: Path, overrides: tuple[str, ...], no_data_check: bool, quick: bool) -> None:
    """Validate CAMPAIGN (a campaign YAML file) and print a short summary.

    Checks the schema (unknown keys are errors), the search space (bounds, log, step, conditions), the
    sampler and scheduler and their options, the objectives, the budget and trial resources, that the
    workload exists and accepts the parameters and reports the objective metrics, and the data file as
    `hpo data check` does and `hpo launch` will (readable, intact, the workload's layout, values). Exit
    status 0 when valid, 2 with a one-line error naming file, line and field (or the data file, dataset and
    event) otherwise.

    \b
    Examples:
      hpo validate search_spaces/demo.yaml
      hpo validate my_campaign.yaml --set trial.workers=4 --set budget.trials=50
    """
    from rich.console import Console

    from orchestrator.config import load_campaign
    from orchestrator.summary import campaign_summary

    loaded = load_campaign(campaign, overrides, check_data=not no_data_check, check_workload_face=not quick)
    if not no_data_check and not quick:
        from trainables.data.checks import check_file
        from trainables.registry import load_workload

        kind = getattr(load_workload(loaded.config.workload.name), "DATA_KIND", None)
        check_file(loaded.config.workload.data.path, kind)
    console = Console()
    console.print(campaign_summary(loaded))
    console.print(f"[green]✓[/] {campaign} is a valid campaign file")
