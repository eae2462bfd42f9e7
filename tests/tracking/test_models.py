"""Exported models as MLflow pyfunc models, through a real tracking server: a model with our own layers
(cosmoflow's CubeMoments) loads in a fresh process that never imported them, and predicts what it did."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np


def test_cosmoflow_model_with_our_layers_round_trips_through_mlflow(store_server: str, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from tracking.models import log_exported_model
    from trainables import cosmoflow
    from trainables.workload import write_export

    params = {**cosmoflow.DEFAULT_PARAMS, "conv_layers": 2, "conv_size": 2, "fc1": 8, "fc2": 4}
    assert params["moments"], "the default cosmoflow model carries CubeMoments"
    model = cosmoflow.build(params, (8, 8, 8, 4)).models["cnn"]
    assert any(layer.name == "moments" for layer in model.layers)
    cubes = np.random.default_rng(1).random((3, 8, 8, 8, 4), dtype=np.float32)
    expected = model.predict(cubes, verbose=0)
    export = write_export(tmp_path / "export", model, cubes, {"workload": "cosmoflow"})

    client = MlflowClient(store_server)
    experiment = client.create_experiment(f"models-{uuid.uuid4().hex[:8]}")
    run_id = client.create_run(experiment).info.run_id
    uri = log_exported_model(client, run_id, export)
    np.save(tmp_path / "cubes.npy", cubes)

    script = (
        "import os, sys, json, numpy as np, mlflow, mlflow.pyfunc\n"
        "mlflow.set_tracking_uri(sys.argv[1])\n"
        "model = mlflow.pyfunc.load_model(sys.argv[2])\n"
        "print(json.dumps(np.asarray(model.predict(np.load(sys.argv[3]))).tolist()))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, store_server, uri, str(tmp_path / "cubes.npy")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = np.asarray(json.loads(proc.stdout.strip().splitlines()[-1]), dtype=np.float32)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
