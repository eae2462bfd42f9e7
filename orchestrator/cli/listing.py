"""``hpo list``."""

from __future__ import annotations

from orchestrator.cli.status import list_command as command

__all__ = ["command"]
