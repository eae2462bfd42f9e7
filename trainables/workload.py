"""What every workload module provides, and helpers they share.

A workload is a module (the module name is its registry key) with:

==========================  ==================================================================================
``DATA_KIND``               the data kind it reads (``calo``, ``cosmo3d``, ``lensing``)
``METRICS``                 names of the metrics it reports every epoch (besides the framework's ``hpo.*``)
``OBJECTIVE``               default ``(metric, mode)``
``DEFAULT_PARAMS``          every hyperparameter with its default (unknown names are errors)
``data_options(params)``    reader options derived from the hyperparameters
``build(params, shape)``    -> :class:`Parts`: models, optimizers, their base learning rates
``train_step(parts, batch, wrap_tape)``  one optimisation step (runs inside ``tf.function``); returns losses
``setup_validation(spec, params, splits)`` -> context dict (optional): constants for validation
``validate(parts, splits, context)``     -> metrics dict, identical on every rank
``finalize(parts, splits, context, out_dir, is_chief)`` -> ``{"plots": [paths]}``
``export(parts, splits, out_dir)``       -> directory with ``model.keras``, ``input_example.npy``, ``meta.json``
==========================  ==================================================================================

``docs/workloads.md`` explains how to write one and register it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainables import distributed
from trainables.errors import HpoError

REQUIRED = ("DATA_KIND", "METRICS", "OBJECTIVE", "DEFAULT_PARAMS", "data_options", "build", "train_step",
            "validate", "finalize", "export")


@dataclass
class Parts:
    """A workload's trainable state: named models and optimizers, and each optimizer's base learning rate."""

    models: dict[str, Any]
    optimizers: dict[str, Any]
    learning_rates: dict[str, float]
    extra: dict[str, Any] = field(default_factory=dict)

    def variables(self) -> list[Any]:
        """Every model and optimizer variable (what rank 0 broadcasts)."""
        out: list[Any] = []
        for model in self.models.values():
            out.extend(model.variables)
        for optimizer in self.optimizers.values():
            out.extend(optimizer.variables)
        return out


def check_face(module: Any) -> None:
    """Raise :class:`HpoError` naming what a workload module lacks."""
    missing = [name for name in REQUIRED if not hasattr(module, name)]
    if missing:
        raise HpoError(
            f"workload module '{module.__name__}' lacks {', '.join(missing)}; see docs/workloads.md for the face "
            "a workload must have"
        )


def make_optimizer(params: Mapping[str, Any], prefix: str = "") -> Any:
    """``optimizer`` (adam | sgd | rmsprop | nadam) with its options from ``params``; lr set by the loop."""
    import tf_keras as keras

    name = params[f"{prefix}optimizer"] if f"{prefix}optimizer" in params else params.get("optimizer", "adam")
    lr = float(params[f"{prefix}learning_rate"])
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=lr, beta_1=float(params.get(f"{prefix}beta1", 0.9)))
    if name == "nadam":
        return keras.optimizers.Nadam(learning_rate=lr)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=float(params.get("momentum", 0.0)),
                                    nesterov=bool(params.get("nesterov", False)))
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=lr, rho=float(params.get("rho", 0.9)))
    raise HpoError(f"optimizer must be adam, nadam, sgd or rmsprop, but got {name!r}")


def gather(values: np.ndarray, name: str) -> np.ndarray:
    """Concatenate this rank's array with every other rank's (same result on every rank)."""
    return np.asarray(distributed.allgather(np.ascontiguousarray(values), name))


def keep_example(parts: Parts, inputs: Any, n: int = 4) -> None:
    """Remember the first inputs a validation pass saw, for :func:`example_inputs` (export)."""
    if "example_inputs" not in parts.extra:
        parts.extra["example_inputs"] = np.asarray(inputs[:n])


def example_inputs(parts: Parts, dataset: Any, n: int) -> np.ndarray:
    """``n`` model inputs for the exported model's example: those kept by validation, else the dataset's first batch
    (a new iterator over the dataset costs ~0.25 s, most of a trial's export)."""
    kept = parts.extra.get("example_inputs")
    if kept is None or len(kept) < n:
        kept = next(iter(dataset))["x"].numpy()
    return np.asarray(kept[:n])


def write_export(out_dir: Path, model: Any, example: np.ndarray, meta: Mapping[str, Any]) -> Path:
    """Save a tf_keras model as ``model.keras`` with ``input_example.npy`` and ``meta.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(str(out_dir / "model.keras"))
    np.save(out_dir / "input_example.npy", example)
    (out_dir / "meta.json").write_text(json.dumps(dict(meta), indent=2, default=str))
    return out_dir
