"""Trained models as MLflow models: a pyfunc wrapping the ``tf_keras`` model a workload exported.

The trainables export a directory with ``model.keras``, ``input_example.npy`` and ``meta.json``. We save
it with :func:`mlflow.pyfunc.save_model` (signature inferred from the input example and the model's
output on it) and upload the result as the run's ``model`` artifact with an explicit run id.

The model carries the code it needs, so ``mlflow.pyfunc.load_model("models:/NAME@champion")`` and
``mlflow models serve`` work where only MLflow, TensorFlow and tf-keras are installed, not ``hpo``:

- the pyfunc is "models from code", not a pickle: MLflow runs a copy of this very file
  (:data:`MODEL_CODE`) to make it, and the copy's last lines hand MLflow a :class:`KerasModel`;
- our Keras layers travel as a copy of ``trainables/__init__.py`` and ``trainables/layers.py`` in the model's
  ``code_paths``, inside a folder :data:`SHIPPED` rather than at its top level: MLflow puts the model's
  ``code`` folder *first* on ``sys.path``, and a ``trainables`` there would shadow an installed ``hpo``
  (its ``trainables.cosmoflow`` would no longer import). :func:`register_layers` imports the installed
  ``trainables.layers`` where there is one and otherwise appends the shipped folder to ``sys.path``.

Both copies import only the standard library, NumPy, MLflow, TensorFlow and tf-keras
(``tests/tracking/test_model_portable.py`` loads and serves a model in a virtual environment with only those).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.pyfunc import PythonModel

MODEL_ARTIFACT = "model"
MODEL_CODE = "hpo_keras_model.py"  # the name of this file's copy in a model (a top-level module there)
SHIPPED = "hpo_shipped"  # the folder of the model's code that holds the copy of ``trainables``
SHIPPED_FILES = ("trainables/__init__.py", "trainables/layers.py")  # relative to the folder above ``trainables``
_MODULE = "tracking.models"


def register_layers() -> None:
    """Register our Keras layers: import ``trainables.layers``, ``hpo``'s own where it is installed, else the
    copy a model shipped (found through the model's code folder, which MLflow put on ``sys.path``)."""
    try:
        import trainables.layers  # registers our layers with Keras
    except ModuleNotFoundError as error:
        if error.name not in ("trainables", "trainables.layers"):
            raise
        spec = importlib.util.find_spec(SHIPPED)
        if spec is None or not spec.submodule_search_locations:
            raise ModuleNotFoundError(
                f"our Keras layers need the package 'trainables': install hpo, or load the model with MLflow, "
                f"which puts the model's code folder (with {SHIPPED}/trainables) on sys.path", name="trainables",
            ) from error
        # appended, not prepended: it only answers what nothing installed does
        sys.path.append(next(iter(spec.submodule_search_locations)))
        import trainables.layers  # noqa: F401


def load_keras_model(path: str | Path) -> Any:
    """An exported ``model.keras`` loaded with Keras 2 (Horovod's Keras), our own layers registered."""
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import tf_keras

    register_layers()
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


def pip_requirements() -> list[str]:
    """What a model needs installed, at the versions that wrote it: TensorFlow and tf-keras pinned, MLflow from
    this version to the next major (an MLmodel loads in later minors), NumPy in this minor (TensorFlow's range)."""
    mlflow_version = metadata.version("mlflow")
    numpy_major, numpy_minor = (int(p) for p in np.__version__.split(".")[:2])
    return [
        f"mlflow>={mlflow_version},<{int(mlflow_version.split('.')[0]) + 1}",
        f"tensorflow-cpu=={metadata.version('tensorflow')}",
        f"tf-keras=={metadata.version('tf-keras')}",
        f"numpy>={numpy_major}.{numpy_minor},<{numpy_major}.{numpy_minor + 1}",
    ]


def stage_code(directory: Path) -> tuple[Path, Path]:
    """Copy what a model needs of this package into ``directory``: (this file as :data:`MODEL_CODE`, the
    :data:`SHIPPED` folder with ``trainables``'s ``__init__`` and ``layers``)."""
    import trainables

    root = Path(trainables.__file__).resolve().parent.parent
    shipped = directory / SHIPPED
    for name in SHIPPED_FILES:
        (shipped / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / name, shipped / name)
    model_code = directory / MODEL_CODE
    shutil.copyfile(Path(__file__).resolve(), model_code)
    return model_code, shipped


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
        model_code, shipped = stage_code(Path(tmp) / "code")
        target = Path(tmp) / MODEL_ARTIFACT
        mlflow.pyfunc.save_model(
            str(target), python_model=str(model_code), code_paths=[str(shipped)],
            artifacts={"keras_model": str(export_dir / "model.keras")},
            signature=signature, input_example=example[:2], metadata=meta, pip_requirements=pip_requirements(),
        )
        mlflow_client.log_artifacts(run_id, str(target), MODEL_ARTIFACT)
    return f"runs:/{run_id}/{MODEL_ARTIFACT}"


if __name__ != _MODULE:
    # This file runs as a model's code (MLflow runs the copy it holds, under a name of its own): it is the model.
    import mlflow.models

    mlflow.models.set_model(KerasModel())
