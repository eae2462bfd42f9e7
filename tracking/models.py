"""Trained models as MLflow models: a pyfunc wrapping the ``tf_keras`` model a workload exported.

The trainables export a directory with ``model.keras``, ``input_example.npy`` and ``meta.json``. We save
it with :func:`mlflow.pyfunc.save_model` (signature inferred from the input example and the model's
output on it) and upload the result as the run's ``model`` artifact with an explicit run id, so
``mlflow.pyfunc.load_model("models:/NAME@champion")`` loads it anywhere ``hpo`` is installed.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.pyfunc import PythonModel

MODEL_ARTIFACT = "model"


def load_keras_model(path: str | Path) -> Any:
    """An exported ``model.keras`` loaded with Keras 2 (Horovod's Keras), our own layers registered."""
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import tf_keras

    import trainables.layers  # noqa: F401  (registers our layers with Keras)

    return tf_keras.models.load_model(str(path), compile=False)


class KerasModel(PythonModel):
    """Loads the ``tf_keras`` model with Keras 2 (Horovod's Keras) and predicts on NumPy arrays."""

    def load_context(self, context: Any) -> None:
        """Load ``model.keras`` from the model's artifacts."""
        self.model = load_keras_model(context.artifacts["keras_model"])

    def predict(self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None) -> np.ndarray:
        """Model output for a batch of inputs.

        ``np.ndarray`` is one of the hints MLflow neither validates against nor infers a schema from (the
        signature comes from the input example), and with it MLflow stops warning at every model it logs.
        """
        return self.model.predict(np.asarray(model_input, dtype=np.float32), verbose=0)


def log_exported_model(mlflow_client: Any, run_id: str, export_dir: str | Path) -> str:
    """Save the exported model as an MLflow pyfunc and upload it to ``run_id``; returns ``runs:/RUN/model``."""
    import mlflow.pyfunc
    from mlflow.models import infer_signature

    export_dir = Path(export_dir)
    example = np.load(export_dir / "input_example.npy")
    keras_model = load_keras_model(export_dir / "model.keras")
    signature = infer_signature(example, keras_model.predict(example, verbose=0))
    meta = json.loads((export_dir / "meta.json").read_text())
    with tempfile.TemporaryDirectory(prefix="hpo-model-") as tmp:
        target = Path(tmp) / MODEL_ARTIFACT
        mlflow.pyfunc.save_model(
            str(target), python_model=KerasModel(), artifacts={"keras_model": str(export_dir / "model.keras")},
            signature=signature, input_example=example[:2], metadata=meta,
            pip_requirements=["tensorflow-cpu==2.18.1", "tf-keras==2.18.0", "mlflow", "numpy"],
        )
        mlflow_client.log_artifacts(run_id, str(target), MODEL_ARTIFACT)
    return f"runs:/{run_id}/{MODEL_ARTIFACT}"
