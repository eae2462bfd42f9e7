"""``cosmoflow``: the CosmoFlow 3D CNN regressing cosmological parameters from dark-matter density cubes.

Model (MLPerf HPC CosmoFlow reference, scaled by its hyperparameters): ``conv_layers`` × [Conv3D k³ same
(``conv_size`` filters, doubling per layer up to 16×) → (batch norm) → LeakyReLU (or ReLU) →
MaxPool3D 2] → flatten → dense ``fc1`` → dropout → dense ``fc2`` → dropout → ``targets`` outputs,
``tanh × 1.2`` (targets live in u ∈ [−1, 1]). With ``moments: true`` (the default; ``false`` gives the
reference model) the dense head also sees, batch-normalised, each input channel's log-variance at 1, 2
and 4 cells and its skewness (``trainables.layers.CubeMoments``): without them the CNN learnt σ_8, a
little n_s and no Ω_m on our cubes (docs/workloads.md). MSE loss (``loss: mse``) or L1 (``loss: mae``,
the SC18 paper's). Inputs: ``log(1 + counts)`` (``apply_log: true``) or counts over their mean, from 4
redshift channels or z = 0 only (``redshifts``).

Metrics every epoch: ``train_loss``, ``val_loss`` (MSE in u-space), ``val_mae`` (mean absolute error in
u-space, the MLPerf target metric: 0.124 there; predicting the mean gives ≈ 0.5) and per parameter
``val_mae_<name>`` (u-space) and ``val_rel_err_<name>`` (relative error in physical units).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from trainables.data.cosmo3d import FIDUCIAL as COSMO_FIDUCIAL
from trainables.data.cosmo3d import PARAMETERS as COSMO_PARAMETERS
from trainables.errors import HpoError
from trainables.workload import Parts, example_inputs, gather, keep_example, make_optimizer, write_export

DATA_KIND = "cosmo3d"
TARGETS = COSMO_PARAMETERS[:3]  # H_0 is held at its fiducial value by our generator
METRICS = ("train_loss", "val_loss", "val_mae",
           *(f"val_mae_{n}" for n in TARGETS), *(f"val_rel_err_{n}" for n in TARGETS))
OBJECTIVE = ("val_mae", "min")
DEFAULT_PARAMS: dict[str, Any] = {
    "conv_layers": 4,
    "conv_size": 8,
    "kernel_size": 3,
    "fc1": 64,
    "fc2": 32,
    "dropout": 0.1,
    "activation": "leaky_relu",
    "batch_norm": False,
    "moments": True,  # one-point statistics of every input channel beside the conv features
    "apply_log": True,
    "redshifts": 4,
    "loss": "mse",
    "learning_rate": 5e-4,  # per rank; 2e-3 left the 3D CNN predicting the mean (docs/workloads.md)
    "batch_size": 16,
    "optimizer": "adam",
    "momentum": 0.9,
    "nesterov": False,
    "rho": 0.9,
    "beta1": 0.9,
    "warmup_epochs": 0.0,
    "decay_fraction": 0.0,
}


def data_options(params: Mapping[str, Any]) -> dict[str, Any]:
    """Reader options: log transform, redshift channels, three targets (Ω_m, σ_8, n_s)."""
    return {"transform": "log" if params["apply_log"] else "mean", "redshifts": int(params["redshifts"]),
            "targets": len(TARGETS)}


def build(params: Mapping[str, Any], input_shape: tuple[int, ...]) -> Parts:
    """The 3D CNN and its optimizer."""
    import tf_keras as keras

    from trainables.layers import CubeMoments, moment_scales

    if params["activation"] not in ("leaky_relu", "relu"):
        raise HpoError(f"cosmoflow parameter activation must be leaky_relu or relu, but got {params['activation']!r}")
    if params["loss"] not in ("mse", "mae"):
        raise HpoError(f"cosmoflow parameter loss must be mse or mae, but got {params['loss']!r}")

    def activation() -> Any:
        return keras.layers.LeakyReLU(0.01) if params["activation"] == "leaky_relu" else keras.layers.ReLU()

    inputs = keras.Input(shape=input_shape, name="cube")
    x = inputs
    side = int(input_shape[0])
    for layer in range(int(params["conv_layers"])):
        x = keras.layers.Conv3D(int(params["conv_size"]) * 2 ** min(layer, 4), int(params["kernel_size"]),
                                padding="same", use_bias=not params["batch_norm"])(x)
        if params["batch_norm"]:
            x = keras.layers.BatchNormalization(momentum=0.9)(x)
        x = activation()(x)
        if side >= 2:
            x = keras.layers.MaxPooling3D(2)(x)
            side //= 2
    x = keras.layers.Flatten()(x)
    if params["moments"]:
        # Their spread from cube to cube is a few per cent of their size: batch norm (its moving averages
        # are averaged over ranks every epoch) brings it to order one for the dense layers.
        stats = CubeMoments(moment_scales(int(input_shape[0])), name="moments")(inputs)
        stats = keras.layers.BatchNormalization(momentum=0.9, name="moments_norm")(stats)
        x = keras.layers.Concatenate()([x, stats])
    for units in (int(params["fc1"]), int(params["fc2"])):
        x = keras.layers.Dense(units)(x)
        x = activation()(x)
        if params["dropout"]:
            x = keras.layers.Dropout(float(params["dropout"]))(x)
    x = keras.layers.Dense(len(TARGETS), activation="tanh")(x)
    outputs = keras.layers.Rescaling(1.2, name="u")(x)
    model = keras.Model(inputs, outputs, name="cosmoflow")
    return Parts(models={"cnn": model}, optimizers={"cnn": make_optimizer(params)},
                 learning_rates={"cnn": float(params["learning_rate"])}, extra={"loss": params["loss"]})


def train_step(parts: Parts, batch: Mapping[str, Any], wrap_tape: Callable[[Any], Any]) -> dict[str, Any]:
    """One step of MSE (or L1) regression in u-space."""
    import tensorflow as tf

    model = parts.models["cnn"]
    with tf.GradientTape() as tape:
        error = model(batch["x"], training=True) - batch["y"]
        loss = tf.reduce_mean(tf.abs(error)) if parts.extra["loss"] == "mae" else tf.reduce_mean(tf.square(error))
    grads = wrap_tape(tape).gradient(loss, model.trainable_variables)
    parts.optimizers["cnn"].apply_gradients(zip(grads, model.trainable_variables, strict=True))
    return {"train_loss": loss}


def _predict(parts: Parts, dataset: Any) -> tuple[np.ndarray, np.ndarray]:
    model = parts.models["cnn"]
    preds, trues = [], []
    for batch in dataset:
        keep_example(parts, batch["x"])
        preds.append(model(batch["x"], training=False).numpy())
        trues.append(batch["y"].numpy())
    width = len(TARGETS)
    pred = np.concatenate(preds).astype(np.float32) if preds else np.zeros((0, width), np.float32)
    true = np.concatenate(trues).astype(np.float32) if trues else np.zeros((0, width), np.float32)
    return gather(pred, "val_pred"), gather(true, "val_true")


def validate(parts: Parts, splits: Any, context: dict[str, Any]) -> dict[str, float]:
    """MSE, MAE (u-space) and relative errors (physical units) over the whole validation split."""
    from trainables.metrics import regression_errors

    pred, true = _predict(parts, splits.val)
    context["last_prediction"] = (true, pred)
    errors = regression_errors(pred, true, list(TARGETS), fiducial=np.asarray(COSMO_FIDUCIAL[: len(TARGETS)]))
    metrics = {"val_loss": float(np.mean((pred - true) ** 2)), "val_mae": errors["mae"]}
    for name in TARGETS:
        metrics[f"val_mae_{name}"] = errors[f"mae_{name}"]
        metrics[f"val_rel_err_{name}"] = errors[f"rel_err_{name}"]
    return metrics


def finalize(parts: Parts, splits: Any, context: Mapping[str, Any], out_dir: str, is_chief: bool) -> dict[str, Any]:
    """True vs predicted, one panel per parameter (u-space)."""
    from trainables.plots import plot_true_vs_pred

    if not is_chief or "last_prediction" not in context:
        return {"plots": []}
    true, pred = context["last_prediction"]
    return {"plots": [plot_true_vs_pred(true, pred, list(TARGETS), Path(out_dir) / "true_vs_pred.png")]}


def export(parts: Parts, splits: Any, out_dir: Path) -> Path:
    """The regressor: cubes (normalised as the reader does) -> u-space parameters."""
    model = parts.models["cnn"]
    example = example_inputs(parts, splits.val, 2)
    return write_export(out_dir, model, example, {
        "workload": "cosmoflow",
        "inputs": f"float32 cubes {list(example.shape[1:])}: {splits.norm.get('transform')} of particle counts, "
                  f"{splits.norm.get('redshifts')} redshift channel(s)",
        "outputs": f"u-space {list(TARGETS)}; physical = fiducial {list(COSMO_FIDUCIAL[:3])} × (1 + 0.1 u)",
    })
