"""The ``hpo`` command line.

Each command group lives in its own module under ``orchestrator.cli`` and is listed once in
``_COMMAND_MODULES``; every module exposes a click command or group named ``command``. Commands import
their heavy dependencies (TensorFlow, Ray, MLflow) inside the command body so that ``hpo --help`` and
``hpo validate`` stay fast.

Errors the user can fix (:class:`trainables.errors.HpoError`) are printed as one line
``error: <message>`` on stderr with exit status 2, never as a traceback.
"""

from __future__ import annotations

import importlib
import sys

import click

from trainables.errors import HpoError

# Order is the order in `hpo --help`.
_COMMAND_MODULES = [
    "orchestrator.cli.validate",
    "orchestrator.cli.launch",
    "orchestrator.cli.status",
    "orchestrator.cli.listing",
    "orchestrator.cli.stop",
    "orchestrator.cli.resume",
    "orchestrator.cli.extend",
    "orchestrator.cli.sync",
    "orchestrator.cli.train",
    "orchestrator.cli.data",
    "orchestrator.cli.server",
    "orchestrator.cli.best",
    "orchestrator.cli.promote",
    "orchestrator.cli.models",
    "orchestrator.cli.version",
]


class _Group(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:  # keep registration order, not alphabetical
        return list(self.commands)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def cli() -> None:
    """Hyperparameter searches for scientific deep learning.

    Describe a campaign in one YAML file (workload, data, search space, sampler, scheduler, objective,
    budget, workers per trial); `hpo` runs it as Ray Tune trials of Horovod/TensorFlow jobs and tracks
    everything in MLflow.

    \b
    Start with:
      hpo validate search_spaces/demo.yaml    check a campaign file without running anything
      hpo version                             show the versions of the whole stack
    Every command has --help.
    """


for _name in _COMMAND_MODULES:
    cli.add_command(importlib.import_module(_name).command)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: runs ``hpo`` and turns :class:`HpoError` into exit status 2."""
    try:
        rv = cli.main(args=argv, prog_name="hpo", standalone_mode=False)
    except HpoError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    sys.exit(rv if isinstance(rv, int) else 0)
