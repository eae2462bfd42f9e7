"""``lhc_cnn``: the LHC whole-detector image classifier (signal RPV SUSY vs QCD multijet).

Model (NERSC hep_cnn_benchmark style): ``conv_blocks`` × [Conv 3×3 (``filters`` doubling per block up to
4×) → batch norm → ReLU → max-pool 2 → dropout] → dense ``dense_units`` → dropout → one logit. Trained
with binary cross-entropy on balanced classes (optionally weighted by log(1 + weight), one variant of the
study). Judged where physicists work: the **weighted** ROC at very low false-positive rate, beside the
cut-based physics selection on the same validation events.

Metrics every epoch: ``train_loss``, ``val_loss``, ``val_auc``, ``val_tpr_fpr1e-3``, ``val_tpr_fpr1e-4``,
``val_cut_tpr``, ``val_cut_fpr`` (the physics selection) and ``val_tpr_at_cut_fpr`` (the CNN's signal
efficiency at the selection's FPR: above ``val_cut_tpr`` means the CNN beats the selection).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from trainables.workload import Parts, example_inputs, gather, keep_example, make_optimizer, write_export

DATA_KIND = "calo"
METRICS = ("train_loss", "val_loss", "val_auc", "val_tpr_fpr1e-3", "val_tpr_fpr1e-4", "val_cut_tpr", "val_cut_fpr",
           "val_tpr_at_cut_fpr")
OBJECTIVE = ("val_tpr_fpr1e-3", "max")
DEFAULT_PARAMS: dict[str, Any] = {
    "conv_blocks": 3,
    "filters": 16,
    "kernel_size": 3,
    "dense_units": 64,
    "dropout": 0.1,
    "batch_norm": True,
    "learning_rate": 1e-3,
    "batch_size": 64,
    "optimizer": "adam",
    "momentum": 0.9,
    "nesterov": False,
    "rho": 0.9,
    "beta1": 0.9,
    "warmup_epochs": 0.2,  # Adam's first steps on the 4096-wide dense layer can kill its ReLUs (loss stuck at ln 2)
    "decay_fraction": 0.0,
    "channels": 3,
    "transform": "log",
    "weighted_loss": False,
}


def data_options(params: Mapping[str, Any]) -> dict[str, Any]:
    """Reader options: how many channels, and the input transform."""
    return {"channels": int(params["channels"]), "transform": params["transform"]}


def build(params: Mapping[str, Any], input_shape: tuple[int, ...]) -> Parts:
    """The CNN (logit output) and its optimizer."""
    import tf_keras as keras

    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for block in range(int(params["conv_blocks"])):
        filters = int(params["filters"]) * 2 ** min(block, 2)
        x = keras.layers.Conv2D(filters, int(params["kernel_size"]), padding="same", use_bias=not params["batch_norm"])(x)
        if params["batch_norm"]:
            x = keras.layers.BatchNormalization(momentum=0.9)(x)  # short trials: let the statistics keep up
        x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling2D(2)(x)
        if params["dropout"]:
            x = keras.layers.Dropout(float(params["dropout"]))(x)
    x = keras.layers.GlobalAveragePooling2D()(x) if x.shape[1] and x.shape[1] > 8 else keras.layers.Flatten()(x)
    x = keras.layers.Dense(int(params["dense_units"]), activation="relu")(x)
    if params["dropout"]:
        x = keras.layers.Dropout(float(params["dropout"]))(x)
    logit = keras.layers.Dense(1, name="logit")(x)
    model = keras.Model(inputs, logit, name="lhc_cnn")
    return Parts(models={"cnn": model}, optimizers={"cnn": make_optimizer(params)},
                 learning_rates={"cnn": float(params["learning_rate"])}, extra={"weighted": bool(params["weighted_loss"])})


def _loss(parts: Parts, batch: Mapping[str, Any], training: bool) -> Any:
    import tensorflow as tf

    logits = tf.squeeze(parts.models["cnn"](batch["x"], training=training), -1)
    per_event = tf.nn.sigmoid_cross_entropy_with_logits(labels=batch["y"], logits=logits)
    if parts.extra.get("weighted"):
        w = tf.math.log1p(batch["w"])
        return tf.reduce_sum(per_event * w) / tf.reduce_sum(w)
    return tf.reduce_mean(per_event)


def train_step(parts: Parts, batch: Mapping[str, Any], wrap_tape: Callable[[Any], Any]) -> dict[str, Any]:
    """One step of binary cross-entropy on the logits."""
    import tensorflow as tf

    model = parts.models["cnn"]
    with tf.GradientTape() as tape:
        loss = _loss(parts, batch, training=True)
    grads = wrap_tape(tape).gradient(loss, model.trainable_variables)
    parts.optimizers["cnn"].apply_gradients(zip(grads, model.trainable_variables, strict=True))
    return {"train_loss": loss}


def setup_validation(spec: Any, params: Mapping[str, Any], splits: Any) -> dict[str, Any]:
    """The physics selection's (TPR, FPR) on the validation split: a constant of the trial."""
    from trainables.data.readers import load_arrays
    from trainables.metrics import selection_point

    arrays = load_arrays(spec.data, DATA_KIND, "val", seed=spec.seed, keys=["y", "weight", "passSR"])
    tpr, fpr = selection_point(arrays["passSR"], arrays["y"], arrays["weight"])
    return {"cut_tpr": tpr, "cut_fpr": fpr}


def _predict(parts: Parts, dataset: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    model = parts.models["cnn"]
    logits, labels, weights = [], [], []
    for batch in dataset:
        keep_example(parts, batch["x"])
        logits.append(model(batch["x"], training=False).numpy()[:, 0])
        labels.append(batch["y"].numpy())
        weights.append(batch["w"].numpy())
    def joined(chunks: list[np.ndarray], name: str) -> np.ndarray:
        local = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
        return gather(local, name)

    return joined(logits, "val_logits"), joined(labels, "val_labels"), joined(weights, "val_weights")


def validate(parts: Parts, splits: Any, context: dict[str, Any]) -> dict[str, float]:
    """Weighted ROC metrics on the whole validation split (scores gathered from every rank)."""
    from trainables.metrics import auc, roc_curve

    logits, labels, weights = _predict(parts, splits.val)
    probs = 1 / (1 + np.exp(-logits.astype(np.float64)))
    eps = 1e-7
    loss = float(-np.mean(labels * np.log(probs + eps) + (1 - labels) * np.log(1 - probs + eps)))
    fpr, tpr, _ = roc_curve(logits, labels, weights)
    context["last_roc"] = (fpr, tpr)
    return {
        "val_loss": loss, "val_auc": auc(fpr, tpr),
        "val_tpr_fpr1e-3": float(np.interp(1e-3, fpr, tpr)), "val_tpr_fpr1e-4": float(np.interp(1e-4, fpr, tpr)),
        "val_cut_tpr": float(context["cut_tpr"]), "val_cut_fpr": float(context["cut_fpr"]),
        "val_tpr_at_cut_fpr": float(np.interp(context["cut_fpr"], fpr, tpr)),
    }


def finalize(parts: Parts, splits: Any, context: Mapping[str, Any], out_dir: str, is_chief: bool) -> dict[str, Any]:
    """The validation ROC with the physics selection's point."""
    from trainables.plots import plot_roc

    if not is_chief or "last_roc" not in context:
        return {"plots": []}
    fpr, tpr = context["last_roc"]
    path = plot_roc({"CNN": (fpr, tpr)}, Path(out_dir) / "roc.png",
                    selection_point=(context["cut_tpr"], context["cut_fpr"]))
    return {"plots": [path]}


def export(parts: Parts, splits: Any, out_dir: Path) -> Path:
    """The classifier with a sigmoid output (probability of signal), standard layers only."""
    import tf_keras as keras

    cnn = parts.models["cnn"]
    model = keras.Sequential([cnn, keras.layers.Activation("sigmoid", name="p_signal")], name="lhc_cnn_classifier")
    example = example_inputs(parts, splits.val, 4)
    model(example)
    return write_export(out_dir, model, example, {
        "workload": "lhc_cnn", "inputs": f"float32 images {list(example.shape[1:])}, channels "
        f"{splits.norm['channels']}, transform {splits.norm['transform']} with channel maxima {splits.norm['channel_max']}",
        "outputs": "probability that the event is signal (RPV SUSY)",
    })
