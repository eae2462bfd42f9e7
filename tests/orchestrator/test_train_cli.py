"""``hpo train``: one trial outside any search, through the real CLI with 2 Horovod ranks, then resumed."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

TINY = ["--set", "batch_size=32", "--set", "conv_blocks=2", "--set", "filters=8", "--set", "dense_units=16"]


@pytest.mark.slow
def test_train_two_ranks_prints_epochs_writes_outputs_and_resumes(calo_file: Path, tmp_path: Path, hpo: Any) -> None:
    out = tmp_path / "run"
    first = hpo("train", "lhc_cnn", "--data", str(calo_file), "--workers", "2", "--epochs", "2", *TINY, "--out", str(out))
    assert first.returncode == 0, first.stderr[-3000:]
    # one clean line per epoch (not Horovod's "[0]<stdout>:" copies), with the loss and the throughput
    epochs = [line for line in first.stdout.splitlines() if line.startswith("epoch ")]
    assert [int(line.split()[1]) for line in epochs] == [1, 2], first.stdout
    assert all(re.search(r"train_loss=\S+ .*val_auc=\S+ .*hpo.samples_per_s=", line) for line in epochs), epochs
    assert "<stdout>" not in first.stdout
    assert "with 2 rank(s) × 1 thread(s)" in first.stdout and "model:" in first.stdout

    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch-0001", "epoch-0002"]
    model_dirs = list(out.rglob("model.keras"))
    assert model_dirs, sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert list(out.rglob("*.png")), "no plots written"

    again = hpo("train", "lhc_cnn", "--data", str(calo_file), "--workers", "2", "--epochs", "3", *TINY,
                "--resume", str(out))
    assert again.returncode == 0, again.stderr[-3000:]
    assert [int(line.split()[1]) for line in again.stdout.splitlines() if line.startswith("epoch ")] == [3]
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_train_bad_input_is_one_line_with_exit_2(calo_file: Path, tmp_path: Path, hpo: Any) -> None:
    cases = [
        (["--data", str(calo_file), "--workers", "0"], "--workers must be at least 1"),
        (["--data", str(tmp_path / "missing.h5")], "missing.h5"),
        (["--data", str(calo_file), "--set", "filtres=8"], "has no parameter 'filtres'"),
    ]
    for args, message in cases:
        proc = hpo("train", "lhc_cnn", *args, "--out", str(tmp_path / "never"), timeout=120)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = [line for line in proc.stderr.splitlines() if line.strip() and "tensorflow" not in line.lower()]
        assert message in proc.stderr and len([line for line in lines if line.startswith("error")]) == 1, proc.stderr
        assert not (tmp_path / "never").exists()
