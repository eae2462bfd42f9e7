"""``hpo stop``: stop a running campaign gracefully."""

from __future__ import annotations

import click

from orchestrator.cli._common import campaigns_dir_option


@click.command("stop")
@click.argument("name")
@campaigns_dir_option
@click.option("--timeout", default=300, show_default=True, help="Seconds to wait for the driver to finish stopping.")
def command(name: str, campaigns_dir: str | None, timeout: int) -> None:
    """Stop campaign NAME gracefully; `hpo resume NAME` continues it later.

    The driver saves the experiment state and ends; running trials keep their last checkpoint (taken every
    epoch) and continue from it on resume. Must run on the host where the driver runs.
    """
    from orchestrator.runner import request_stop

    click.echo(request_stop(name, campaigns_dir=campaigns_dir, timeout=timeout))
