"""``hpo best``: the top trials of a campaign, from MLflow."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from orchestrator.cli._common import campaigns_dir_option

if TYPE_CHECKING:
    from tracking.registry import RankedTrial


def tracking_target(name: str, campaigns_dir: str | None, tracking_uri: str | None) -> tuple[str, str, str | None]:
    """(tracking URI, experiment, parent run) of campaign ``name``: --tracking-uri > $MLFLOW_TRACKING_URI >
    the campaign's tracking.json (the parent run too, so a relaunched name finds its own runs)."""
    import os

    from orchestrator.state import CampaignDir, read_json
    from tracking.server import resolve_tracking_uri

    cdir = CampaignDir.of(name, campaigns_dir)
    recorded = read_json(cdir.tracking_file, {}) or {}
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or recorded.get("uri")
    uri = resolve_tracking_uri(uri, start_embedded=False) if uri is None else uri
    return uri, recorded.get("experiment", name), recorded.get("parent_run_id")


@click.command("best")
@click.argument("name")
@click.option("--k", default=5, show_default=True, help="How many trials.")
@click.option("--tracking-uri", default=None, help="MLflow URI (default: $MLFLOW_TRACKING_URI, else the campaign's).")
@campaigns_dir_option
def command(name: str, k: int, tracking_uri: str | None, campaigns_dir: str | None) -> None:
    """Print the K best trials of campaign NAME from MLflow: objective, key metrics, parameters, run id.

    With several objectives the trials are ranked by non-domination: the Pareto front (rank 1) first, then
    the front of the rest (rank 2), and so on; within a rank by the first objective.
    """
    from rich.console import Console
    from rich.table import Table

    from tracking.credentials import redact
    from tracking.registry import best_trials, campaign_runs

    uri, experiment, parent = tracking_target(name, campaigns_dir, tracking_uri)
    mlflow_client, experiment_id, parent, objectives, uid = campaign_runs(uri, experiment, name, parent)
    console = Console() if sys.stdout.isatty() else Console(width=180)
    if len(objectives) > 1:
        ranked, ranks = pareto_ranked(uri, experiment, name, objectives, parent)
        title = ", ".join(f"{o['metric']} ({o['mode']})" for o in objectives)
        table = Table(title=f"best trials of {name} by Pareto rank over {title} — {redact(uri)}", title_justify="left")
        for col in ("#", "Pareto rank", "trial", *[o["metric"] for o in objectives], "state", "parameters", "run id", "model"):
            table.add_column(col, overflow="fold")
        for i, (r, rank) in enumerate(zip(ranked[:k], ranks[:k], strict=True), 1):
            table.add_row(str(i), str(rank), r.trial_id, *[f"{r.metrics[o['metric']]:.4g}" for o in objectives], r.state,
                          _params(r.params), r.run_id, "yes" if r.has_model else "—")
        console.print(table if ranked else f"campaign {name} has no trial with {title} yet")
        print_links(mlflow_client, uri, experiment_id, uid, ranked[0].run_id if ranked else None)
        return
    ranked, objective = best_trials(uri, experiment, name, k, parent_run_id=parent)
    table = Table(title=f"best trials of {name} by {objective['metric']} ({objective['mode']}) — {redact(uri)}", title_justify="left")
    for col in ("#", "trial", objective["metric"], "state", "parameters", "run id", "model"):
        table.add_column(col, overflow="fold")
    for i, r in enumerate(ranked, 1):
        table.add_row(str(i), r.trial_id, f"{r.objective:.4g}", r.state, _params(r.params), r.run_id, "yes" if r.has_model else "—")
    console.print(table if ranked else f"campaign {name} has no trial with {objective['metric']} yet")
    print_links(mlflow_client, uri, experiment_id, uid, ranked[0].run_id if ranked else None)


def print_links(mlflow_client: Any, uri: str, experiment_id: str, uid: str, best_run: str | None) -> None:
    """The campaign's runs table and the best trial's page in MLflow's UI, one whole link per line."""
    from tracking import ui

    campaign = ui.campaign_url(uri, experiment_id, uid, ui.saved_view(mlflow_client, experiment_id, uid))
    if campaign is None:  # a local store: no UI to link to
        return
    click.echo(f"MLflow: {campaign}")
    if best_run is not None:
        click.echo(f"best trial: {ui.run_url(uri, experiment_id, best_run)}")


def pareto_ranked(uri: str, experiment: str, name: str, objectives: list[dict[str, str]], parent: str | None
                  ) -> tuple[list[RankedTrial], list[int]]:
    """Every trial run of campaign ``name`` with a value for each objective, ranked by non-domination (ties by
    the first objective), and their Pareto ranks."""
    from orchestrator.progress import pareto_ranks
    from tracking.registry import best_trials

    runs, _ = best_trials(uri, experiment, name, k=sys.maxsize, parent_run_id=parent)
    runs = [r for r in runs if all(o["metric"] in r.metrics for o in objectives)]
    ranks = pareto_ranks([[r.metrics[o["metric"]] for o in objectives] for r in runs], [o["mode"] for o in objectives])
    sign = 1.0 if objectives[0]["mode"] == "min" else -1.0
    order = sorted(range(len(runs)), key=lambda i: (ranks[i], sign * runs[i].objective))
    return [runs[i] for i in order], [ranks[i] for i in order]


def _params(params: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items()) if not k.startswith("hpo."))
