"""``hpo best``: the top trials of a campaign, from MLflow."""

from __future__ import annotations

import click

from orchestrator.cli._common import campaigns_dir_option


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
    """Print the K best trials of campaign NAME from MLflow: objective, key metrics, parameters, run id."""
    import sys

    from rich.console import Console
    from rich.table import Table

    from tracking.registry import best_trials

    uri, experiment, parent = tracking_target(name, campaigns_dir, tracking_uri)
    ranked, objective = best_trials(uri, experiment, name, k, parent_run_id=parent)
    table = Table(title=f"best trials of {name} by {objective['metric']} ({objective['mode']}) — {uri}", title_justify="left")
    for col in ("#", "trial", objective["metric"], "state", "parameters", "run id", "model"):
        table.add_column(col, overflow="fold")
    for i, r in enumerate(ranked, 1):
        params = ", ".join(f"{k}={v}" for k, v in sorted(r.params.items()) if not k.startswith("hpo."))
        table.add_row(str(i), r.trial_id, f"{r.objective:.4g}", r.state, params, r.run_id, "yes" if r.has_model else "—")
    (Console() if sys.stdout.isatty() else Console(width=180)).print(table if ranked else f"campaign {name} has no trial with {objective['metric']} yet")
