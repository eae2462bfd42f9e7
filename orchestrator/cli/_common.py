"""Options and helpers shared by the campaign commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def campaigns_dir_option(func: F) -> F:
    """``--campaigns-dir``: where campaign state lives (default ./campaigns or $HPO_CAMPAIGNS_DIR)."""
    return click.option(
        "--campaigns-dir", type=click.Path(file_okay=False), default=None, envvar="HPO_CAMPAIGNS_DIR",
        help="Directory holding campaign state (default: ./campaigns, or $HPO_CAMPAIGNS_DIR).",
    )(func)


def run_options(func: F) -> F:
    """``--address`` and ``--no-progress``, for commands that run trials."""
    func = click.option(
        "--address", default=None, metavar="auto|HOST:PORT",
        help="Ray cluster to run on: 'auto' joins the cluster this node belongs to; default starts a local Ray.",
    )(func)
    func = click.option("--no-progress", is_flag=True, help="No live table (for batch jobs and logs).")(func)
    return func


def finish(outcome: Any, name: str, campaigns_dir: str | None) -> int:
    """Print the final table and line of a run; exit status 0 finished, 3 stopped, 1 failed."""
    from orchestrator.config import load_campaign
    from orchestrator.runner import print_outcome
    from orchestrator.state import CampaignDir

    cdir = CampaignDir.existing(name, campaigns_dir)
    print_outcome(outcome, load_campaign(cdir.config_file, check_data=False, check_workload_face=False), cdir)
    return {"finished": 0, "stopped": 3, "failed": 1}.get(outcome.status, 1)
