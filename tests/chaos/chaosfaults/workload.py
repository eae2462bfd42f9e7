"""The LHC classifier, plus faults a test can ask for: a user workload as ``docs/workloads.md`` describes one.

``fail_at_epoch: N`` (N > 0) raises in epoch N's validation, on every attempt (a bug in user code);
``epoch_sleep: S`` makes every epoch S seconds longer (a campaign that outlasts a fault). Every
rank writes its pid to ``$HPO_CHAOS_DIR/ranks/<pid>`` when it builds a trial, so a test can signal one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trainables import lhc_cnn
from trainables.lhc_cnn import (  # noqa: F401  (the face of a workload, re-exported)
    DATA_KIND,
    METRICS,
    OBJECTIVE,
    data_options,
    export,
    finalize,
    setup_validation,
    train_step,
)
from trainables.workload import Parts

DEFAULT_PARAMS = {**lhc_cnn.DEFAULT_PARAMS, "fail_at_epoch": 0, "epoch_sleep": 0.0}
OWN = ("fail_at_epoch", "epoch_sleep")


def build(params: Mapping[str, Any], input_shape: tuple[int, ...]) -> Parts:
    """lhc_cnn's model; records this rank's pid for the test."""
    chaos = os.environ.get("HPO_CHAOS_DIR")
    if chaos:
        Path(chaos, "ranks").mkdir(parents=True, exist_ok=True)
        Path(chaos, "ranks", str(os.getpid())).touch()
    parts = lhc_cnn.build({k: v for k, v in params.items() if k not in OWN}, input_shape)
    parts.extra["fail_at_epoch"] = int(params.get("fail_at_epoch", 0))
    parts.extra["epoch_sleep"] = float(params.get("epoch_sleep", 0.0))
    return parts


def validate(parts: Parts, splits: Any, context: dict[str, Any]) -> dict[str, float]:
    """lhc_cnn's validation; raises in epoch ``fail_at_epoch`` (the optimizer's step count says which epoch)."""
    optimizer = next(iter(parts.optimizers.values()))
    epoch = int(optimizer.iterations.numpy()) // max(1, int(splits.steps_per_epoch))
    if parts.extra["fail_at_epoch"] and epoch == parts.extra["fail_at_epoch"]:
        raise ValueError(f"injected fault: the user's validation code raised at epoch {epoch}")
    time.sleep(parts.extra["epoch_sleep"])
    return lhc_cnn.validate(parts, splits, context)
