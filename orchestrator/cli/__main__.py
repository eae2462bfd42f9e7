"""``python -m orchestrator.cli``: the same as the ``hpo`` command."""

from orchestrator.cli import main

main()
