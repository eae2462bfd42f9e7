"""A promoted model serves anywhere: ``models:/NAME@champion`` loads, and ``mlflow models serve`` answers, in a
fresh virtual environment with only MLflow, TensorFlow and tf-keras (no ``hpo``), and predicts what it does here.

Everything is real: tiny models trained by our training loop (cosmoflow with ``CubeMoments``, cosmogan's
periodic generator with ``PeriodicPadding2D``, ``PeriodicFold2D`` and ``BiasAdd``), logged and promoted through
the session's ``mlflow server``, a venv made with ``python -m venv`` and pip (kept for the session), and the
scoring server MLflow starts from that venv.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.slow

BARE_PACKAGES = ("mlflow", "tensorflow-cpu", "tf-keras")  # at this environment's versions
TINY = {  # one epoch of each on a slice of the session's data files
    "cosmoflow": {"batch_size": 8, "conv_layers": 2, "conv_size": 4, "fc1": 16, "fc2": 8, "dropout": 0.0},
    "cosmogan": {"batch_size": 32, "gen_filters": 8, "disc_filters": 8, "latent_dim": 16, "validation_maps": 32,
                 "periodic": True},
}
LOAD = """\
import importlib.util, json, sys
import numpy as np, mlflow.pyfunc
out = {"hpo": [m for m in ("orchestrator", "tracking") if importlib.util.find_spec(m)]}
for name, inputs in json.loads(sys.argv[1]).items():
    out[name] = np.asarray(mlflow.pyfunc.load_model(f"models:/{name}@champion").predict(np.load(inputs))).tolist()
out["layers"] = sys.modules["trainables.layers"].__file__
if "--hpo" in sys.argv:  # the package the model's code would shadow, were it on sys.path first
    import tracking.registry, trainables.cosmoflow
    out["cosmoflow"] = trainables.cosmoflow.__file__
print(json.dumps(out))
"""


@pytest.fixture(scope="session")
def bare_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with only MLflow, TensorFlow and tf-keras, made once per session."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    wanted = [f"{name}=={metadata.version(name)}" for name in BARE_PACKAGES]
    base = getattr(sys, "_base_executable", sys.executable)  # the interpreter under this venv, not the venv's
    subprocess.run([base, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
    started = time.monotonic()
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *wanted],
                         capture_output=True, text=True, timeout=1800)
    if pip.returncode != 0:
        lines = [line for line in pip.stderr.splitlines() if line.strip() and "is ignored" not in line]
        pytest.skip(f"cannot install {' '.join(wanted)} into a fresh venv: {(lines or ['pip failed'])[-1]}")
    print(f"fresh venv with {' '.join(wanted)}: {time.monotonic() - started:.0f} s")
    return venv


def bare_env(venv: Path, uri: str) -> dict[str, str]:
    """A user's environment in ``venv``: its ``bin`` first on PATH, the registry's address, nothing of ours."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "TF_USE_LEGACY_KERAS")}
    return {**env, "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", "MLFLOW_TRACKING_URI": uri,
            "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}


def train_and_promote(workload: str, data_file: Path, uri: str, out_dir: Path) -> str:
    """Train ``workload`` for an epoch, log its model to a one-trial campaign and promote it; the model's name."""
    from mlflow.tracking import MlflowClient

    from tracking.client import TAG_CAMPAIGN, TAG_OBJECTIVE, TAG_ROLE, TAG_TRIAL, TAG_UID
    from tracking.models import log_exported_model
    from tracking.registry import promote
    from trainables.data.spec import DataConfig
    from trainables.loop import TrialSpec, train
    from trainables.registry import load_workload

    metric, mode = load_workload(workload).OBJECTIVE
    result = train(TrialSpec(workload=workload, params=TINY[workload], seed=3, epochs=1, out_dir=str(out_dir),
                             threads=1, data=DataConfig(path=str(data_file), max_events=128)), resume=False)
    client = MlflowClient(uri)
    name = f"portable-{workload}-{uuid.uuid4().hex[:8]}"
    experiment = client.create_experiment(name)
    uid = uuid.uuid4().hex
    parent = client.create_run(experiment, tags={
        TAG_CAMPAIGN: name, TAG_ROLE: "campaign", TAG_UID: uid,
        TAG_OBJECTIVE: json.dumps([{"metric": metric, "mode": mode}])}).info.run_id
    trial = client.create_run(experiment, tags={TAG_ROLE: "trial", TAG_UID: uid, TAG_TRIAL: "0",
                                                "mlflow.parentRunId": parent}).info.run_id
    client.log_metric(trial, metric, float(result["metrics"][metric]))
    log_exported_model(client, trial, result["model_dir"])
    for run in (trial, parent):
        client.set_terminated(run)
    promotion = promote(uri, name, name, name)
    assert promotion.alias == "champion" and promotion.run_id == trial
    return name


@pytest.fixture(scope="module")
def champions(mlflow_server: str, cosmo3d_file: Path, lensing_file: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> dict[str, dict[str, Any]]:
    """Per workload, its champion: {name, inputs (.npy path), expected (the champion's predictions here)}."""
    import mlflow.pyfunc

    from tracking.models import load_keras_model

    root = tmp_path_factory.mktemp("champions")
    out = {}
    for workload, data_file in (("cosmoflow", cosmo3d_file), ("cosmogan", lensing_file)):
        name = train_and_promote(workload, data_file, mlflow_server, root / workload)
        example = np.load(root / workload / "final" / "model" / "input_example.npy")
        rng = np.random.default_rng(7)
        noise = rng.normal(example.mean(), example.std() + 1e-3, size=(3, *example.shape[1:])).astype(np.float32)
        inputs = np.concatenate([example, noise])
        np.save(root / f"{workload}.npy", inputs)
        with pytest.MonkeyPatch.context() as env:  # how models:/ URIs find the registry, as for a user
            env.setenv("MLFLOW_TRACKING_URI", mlflow_server)
            expected = np.asarray(mlflow.pyfunc.load_model(f"models:/{name}@champion").predict(inputs))
        keras = load_keras_model(root / workload / "final" / "model" / "model.keras").predict(inputs, verbose=0)
        np.testing.assert_allclose(expected, keras, rtol=1e-5, atol=1e-6)
        out[workload] = {"name": name, "inputs": root / f"{workload}.npy", "expected": expected}
    return out


def run_loader(python: Path, env: dict[str, str], cwd: Path, models: dict[str, Path], *flags: str) -> dict[str, Any]:
    """Run :data:`LOAD` in ``python``; its JSON answer."""
    proc = subprocess.run([str(python), "-c", LOAD, json.dumps({k: str(v) for k, v in models.items()}), *flags],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    answer: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return answer


def test_champions_load_and_predict_in_a_venv_without_hpo(champions: dict[str, dict[str, Any]], bare_venv: Path,
                                                          mlflow_server: str, tmp_path: Path) -> None:
    got = run_loader(bare_venv / "bin" / "python", bare_env(bare_venv, mlflow_server), tmp_path,
                     {c["name"]: c["inputs"] for c in champions.values()})
    assert got["hpo"] == [], "the fresh venv must not see hpo"
    # the layers came with the model, from the folder of its code that is not itself on sys.path
    assert "/code/hpo_shipped/trainables/layers.py" in got["layers"], got["layers"]
    for workload, champion in champions.items():
        np.testing.assert_allclose(np.asarray(got[champion["name"]]), champion["expected"], rtol=1e-5, atol=1e-6,
                                   err_msg=workload)


def test_champion_loads_where_hpo_is_installed_without_shadowing_it(champions: dict[str, dict[str, Any]],
                                                                    mlflow_server: str, tmp_path: Path) -> None:
    """In a fresh process of this environment (hpo installed, nothing of it imported yet, not run from the
    checkout) the champion uses hpo's own layers, and the rest of hpo still imports after the load."""
    import trainables

    checkout = Path(trainables.__file__).resolve().parent
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server}
    env.pop("PYTHONPATH", None)
    champion = champions["cosmoflow"]
    got = run_loader(Path(sys.executable), env, tmp_path, {champion["name"]: champion["inputs"]}, "--hpo")
    assert got["hpo"] == ["orchestrator", "tracking"]
    assert Path(got["layers"]) == checkout / "layers.py"
    assert Path(got["cosmoflow"]) == checkout / "cosmoflow.py"
    np.testing.assert_allclose(np.asarray(got[champion["name"]]), champion["expected"], rtol=1e-5, atol=1e-6)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def serve(bare_venv: Path, mlflow_server: str, tmp_path: Path) -> Iterator[Any]:
    """``serve(model_uri)`` -> base URL of ``mlflow models serve --env-manager local`` run from the fresh venv,
    once it answers ``/ping``; its process group is killed at the end, whatever happened."""
    started: list[subprocess.Popen[bytes]] = []
    log = tmp_path / "serve.log"

    def start(model_uri: str, timeout: float = 300) -> str:
        port = free_port()
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [str(bare_venv / "bin" / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local",
                 "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
                stdout=out, stderr=subprocess.STDOUT, env=bare_env(bare_venv, mlflow_server), cwd=tmp_path,
                start_new_session=True)
        started.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"mlflow models serve exited {proc.returncode}: {log.read_text()[-4000:]}"
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=5) as response:
                    if response.status == 200:
                        return url
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(1)
        raise AssertionError(f"mlflow models serve did not answer /ping in {timeout:.0f} s: {log.read_text()[-4000:]}")

    yield start
    for proc in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):  # what of the group outlived SIGTERM (uvicorn's worker)
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

def test_champion_serves_from_a_venv_without_hpo(champions: dict[str, dict[str, Any]], serve: Any) -> None:
    champion = champions["cosmoflow"]
    url = serve(f"models:/{champion['name']}@champion")
    inputs = np.load(champion["inputs"])
    request = urllib.request.Request(f"{url}/invocations", data=json.dumps({"inputs": inputs.tolist()}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.loads(response.read())
    np.testing.assert_allclose(np.asarray(answer["predictions"]), champion["expected"], rtol=1e-5, atol=1e-6)
