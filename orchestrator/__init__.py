"""Orchestrator: from one campaign YAML to a Ray Tune run of Horovod trials.

The campaign-file schema and its validation (``config``), the one place where search-space YAML becomes
Optuna distributions (``space``), the sampler and scheduler registries, the campaign wiring (Ray Tune +
OptunaSearch + schedulers), campaign state on disk, the Python API and the ``hpo`` command line.

May import: ``trainables``, ``tracking``, Ray, Optuna, pydantic, rich, click. Nothing imports
``orchestrator`` except the CLI entry point and user code.
"""

from __future__ import annotations

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

__all__ = ["Campaign", "__version__"]


def __getattr__(name: str) -> object:
    # Lazy, so that `hpo --help` and `hpo validate` do not import Ray.
    if name == "Campaign":
        from orchestrator.api import Campaign

        return Campaign
    raise AttributeError(name)
