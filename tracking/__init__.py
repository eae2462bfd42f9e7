"""Tracking: MLflow as the campaign's memory.

The MLflow server management (embedded SQLite server started for the user, or an external
PostgreSQL/object-store server), an explicit-run-id client wrapper that never kills a trial when the
server flaps (it buffers and re-sends in order), and Model Registry promotion by alias.

May import: mlflow, ``trainables`` (for its error types and model signatures). Never imports
``orchestrator``. Never uses MLflow's global active run: every call takes a run id, because many trials
are in flight at once. Our own tags and metrics use the reserved prefix ``hpo.``.
"""

from __future__ import annotations

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
