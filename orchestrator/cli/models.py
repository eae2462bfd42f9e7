"""``hpo models``: registered models and their aliases."""

from __future__ import annotations

import click


@click.command("models")
@click.option("--tracking-uri", default=None, help="MLflow URI (default: $MLFLOW_TRACKING_URI, else the embedded server).")
def command(tracking_uri: str | None) -> None:
    """List the models in the MLflow Model Registry with their versions, aliases and source campaign."""
    from rich.console import Console
    from rich.table import Table

    from tracking.registry import registered_models
    from tracking.server import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri, start_embedded=False)
    table = Table(title=f"registered models — {uri}", title_justify="left")
    for col in ("model", "versions", "latest", "aliases", "campaign", "objective"):
        table.add_column(col)
    for m in registered_models(uri):
        aliases = ", ".join(f"{a}→v{v}" for a, v in m["aliases"].items()) or "—"
        table.add_row(m["name"], str(m["versions"]), str(m["latest"]), aliases, str(m["campaign"]), str(m["objective"]))
    Console().print(table if table.row_count else "no registered models yet; `hpo promote CAMPAIGN --model NAME` adds one")
