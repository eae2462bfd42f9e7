"""The installed stack: Horovod built with TensorFlow and Gloo, two real ranks doing an allreduce."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import json, os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import tensorflow as tf
import horovod.tensorflow as hvd
hvd.init()
value = tf.constant([float(hvd.rank() + 1), 10.0 * (hvd.rank() + 1)])
summed = hvd.allreduce(value, op=hvd.Sum)
averaged = hvd.allreduce(value, op=hvd.Average)
out = {"rank": hvd.rank(), "size": hvd.size(), "sum": summed.numpy().tolist(), "avg": averaged.numpy().tolist(),
       "gloo": bool(hvd.gloo_enabled())}
with open(os.path.join(sys.argv[1], f"rank{hvd.rank()}.json"), "w") as f:
    json.dump(out, f)
"""


@pytest.mark.slow
def test_two_gloo_ranks_allreduce(tmp_path: Path) -> None:
    script = tmp_path / "allreduce.py"
    script.write_text(SCRIPT)
    horovodrun = Path(sys.executable).with_name("horovodrun")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [str(horovodrun), "--gloo", "-np", "2", "-H", "localhost:2", sys.executable, str(script), str(tmp_path)],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for r, result in enumerate(results):
        assert result["rank"] == r and result["size"] == 2 and result["gloo"]
        assert result["sum"] == [3.0, 30.0]
        assert result["avg"] == [1.5, 15.0]


def test_horovod_built_with_tensorflow_and_gloo() -> None:
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("horovodrun")), "--check-build"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any("[X] TensorFlow" in line for line in lines), proc.stdout
    assert any("[X] Gloo" in line for line in lines), proc.stdout


def test_keras_is_keras_2() -> None:
    """Importing our package sets TF_USE_LEGACY_KERAS before TensorFlow, so tf.keras is tf_keras (Horovod needs it)."""
    code = "import trainables, tensorflow as tf, tf_keras; print(tf.keras.__name__, tf_keras.__version__)"
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    module, version = proc.stdout.split()
    assert module.startswith("tf_keras") and version.startswith("2.")


@pytest.mark.slow
def test_hpo_version_shows_horovod_with_tensorflow_and_gloo() -> None:
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", "version"], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(line for line in proc.stdout.splitlines() if "horovod" in line)
    assert "0.28.1" in line and "TensorFlow" in line and "Gloo" in line
    assert "2.18" in next(line for line in proc.stdout.splitlines() if "tensorflow " in line or "│ tensorflow" in line)
