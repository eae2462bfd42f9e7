"""Every registered workload through the same tiny end-to-end check, with 2 real Horovod ranks (Gloo)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trainables.data.spec import DataConfig
from trainables.distributed import run_local
from trainables.errors import HpoError, TrialError
from trainables.loop import Trial, TrialSpec, resolve_params, train
from trainables.registry import BUILTIN_WORKLOADS, load_workload, workload_names

TINY = {
    "lhc_cnn": {"batch_size": 32, "conv_blocks": 2, "filters": 8, "dense_units": 16, "dropout": 0.0},
    "cosmoflow": {"batch_size": 8, "conv_layers": 3, "conv_size": 4, "fc1": 16, "fc2": 8, "dropout": 0.0},
    "cosmogan": {"batch_size": 32, "gen_filters": 8, "disc_filters": 8, "latent_dim": 16, "validation_maps": 64},
}
FILES = {"lhc_cnn": "calo_file", "cosmoflow": "cosmo3d_file", "cosmogan": "lensing_file"}


def _two_epochs_then_resume(spec: TrialSpec) -> dict[str, Any]:
    """In every rank: 2 epochs with checkpoints, then a fresh Trial resumed from epoch 1 redoes epoch 2."""
    from trainables import distributed

    first = train(spec, resume=False)
    history = [json.loads(line) for line in Path(spec.out_dir, "metrics.jsonl").read_text().splitlines()] \
        if distributed.rank() == 0 else []
    resumed = Trial(spec)
    epoch = resumed.restore_checkpoint(str(Path(spec.out_dir) / "checkpoints" / "epoch-0001"))
    restored_digest = resumed.weights_digest()
    again = resumed.run_epoch()
    return {"rank": distributed.rank(), "final": first, "history": history, "restored_epoch": epoch,
            "restored_digest": restored_digest, "again": again, "again_digest": resumed.weights_digest()}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BUILTIN_WORKLOADS))
def test_workload_contract_two_ranks(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    module = load_workload(name)
    data_file = request.getfixturevalue(FILES[name])
    spec = TrialSpec(workload=name, params=TINY[name], data=DataConfig(path=str(data_file)), seed=3, epochs=2,
                     out_dir=str(tmp_path / "run"), threads=1)
    results = sorted(run_local(_two_epochs_then_resume, np=2, args=(spec,)), key=lambda r: r["rank"])
    chief, other = results
    history = chief["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[1]["train_loss"] < history[0]["train_loss"], history
    # ranks agree on the weights and on the metrics
    assert chief["final"]["digest"] == pytest.approx(other["final"]["digest"], rel=0, abs=0)
    assert chief["final"]["metrics"] == other["final"]["metrics"]
    # the documented metric names, every epoch
    for metric in module.METRICS:
        assert metric in history[1], metric
    assert {"hpo.epoch", "hpo.epoch_time_s", "hpo.samples_per_s", "hpo.train_samples"} <= set(history[1])
    # checkpoint of epoch 1 resumes to epoch 1, and redoing epoch 2 reproduces the uninterrupted run
    assert chief["restored_epoch"] == 1
    assert chief["again"]["train_loss"] == pytest.approx(history[1]["train_loss"], rel=1e-4)
    assert chief["again_digest"] == pytest.approx(chief["final"]["digest"], rel=1e-5)
    assert chief["restored_digest"] != pytest.approx(chief["again_digest"], rel=1e-9)
    # the exported model loads with our registered layers only (tracking.models' loader) and predicts
    model_dir = Path(chief["final"]["model_dir"])
    from tracking.models import load_keras_model

    model = load_keras_model(model_dir / "model.keras")
    example = np.load(model_dir / "input_example.npy")
    prediction = model.predict(example, verbose=0)
    assert prediction.shape[0] == example.shape[0] and np.isfinite(prediction).all()
    assert json.loads((model_dir / "meta.json").read_text())["workload"] == name
    assert chief["final"]["plots"] and all(Path(p).stat().st_size > 10_000 for p in chief["final"]["plots"])


NAN_AT_STEP_3 = """
import math
from trainables.lhc_cnn import *  # noqa
from trainables import lhc_cnn
import tensorflow as tf

_steps = None


def build(params, input_shape):
    global _steps
    _steps = tf.Variable(0, dtype=tf.int64, trainable=False)
    return lhc_cnn.build(params, input_shape)


def train_step(parts, batch, wrap_tape):
    loss = lhc_cnn.train_step(parts, batch, wrap_tape)["train_loss"]
    _steps.assign_add(1)
    return {"train_loss": tf.where(_steps >= 3, loss * math.nan, loss)}
"""


@pytest.mark.parametrize("name", sorted(BUILTIN_WORKLOADS))
def test_fresh_trials_start_from_the_seeds_weights(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """The same seed gives the same initial weights whatever ran before in the process (Keras draws unseeded
    initialisers' seeds from Python's random module); another seed does not."""
    import random

    data = DataConfig(path=str(request.getfixturevalue(FILES[name])))

    def digest(seed: int) -> float:
        spec = TrialSpec(workload=name, params=TINY[name], data=data, seed=seed, out_dir=str(tmp_path), threads=1)
        return Trial(spec).weights_digest()

    first = digest(3)
    random.random()  # what else ran in this process does not matter
    np.random.default_rng().random()
    assert digest(3) == first
    assert digest(4) != first


def test_learning_rate_warms_up_and_decays_to_zero_over_the_trials_end(calo_file: Path, tmp_path: Path) -> None:
    """Linear warm-up over ``warmup_epochs``, flat, then linear decay over the last ``decay_fraction`` of the
    trial's steps; a trial resumed from a checkpoint inside the decay continues it."""
    params = {**TINY["lhc_cnn"], "learning_rate": 1e-3, "warmup_epochs": 1.0, "decay_fraction": 0.5}
    spec = TrialSpec(workload="lhc_cnn", params=params, data=DataConfig(path=str(calo_file)), seed=0, epochs=4,
                     out_dir=str(tmp_path / "run"), threads=2)

    def recorded(trial: Trial, epochs: int) -> list[float]:
        rates: list[float] = []
        step, optimizer = trial._step, trial.parts.optimizers["cnn"]

        def spy(batch: Any) -> Any:
            rates.append(float(optimizer.learning_rate.numpy()))
            return step(batch)
        trial._step = spy  # type: ignore[method-assign]
        for _ in range(epochs):
            trial.run_epoch()
            trial.save_checkpoint(str(tmp_path / "run" / f"epoch-{trial.epoch}"))
        return rates

    trial = Trial(spec)
    n = trial.splits.steps_per_epoch
    rates = np.array(recorded(trial, 4)) / 1e-3
    assert len(rates) == 4 * n and n >= 2
    np.testing.assert_allclose(rates[:n], np.arange(1, n + 1) / n, rtol=1e-6)  # warm-up: epoch 1
    np.testing.assert_allclose(rates[n:2 * n], 1.0, rtol=1e-6)  # flat: epoch 2
    np.testing.assert_allclose(rates[2 * n:], (2 * n - np.arange(2 * n)) / (2 * n), rtol=1e-6)  # down to 1/(2n)
    resumed = Trial(spec)
    resumed.restore_checkpoint(str(tmp_path / "run" / "epoch-3"))
    np.testing.assert_allclose(np.array(recorded(resumed, 1)) / 1e-3, rates[3 * n:], rtol=1e-6)


@pytest.mark.parametrize("fraction", ["half", 1.5, -0.1, True])
def test_bad_decay_fraction_is_named(fraction: Any, calo_file: Path, tmp_path: Path) -> None:
    spec = TrialSpec(workload="lhc_cnn", params={**TINY["lhc_cnn"], "decay_fraction": fraction},
                     data=DataConfig(path=str(calo_file)), out_dir=str(tmp_path), threads=1)
    with pytest.raises(HpoError, match=r"^parameter decay_fraction must be a number in \[0, 1\] \(0: no decay\), but got "):
        Trial(spec)


@pytest.mark.slow
def test_nan_loss_fails_the_trial_with_the_reason(calo_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a workload whose loss turns NaN at the third step: divergence itself depends on the seed and the CPU (a huge
    # learning rate can also just kill every ReLU and leave the loss finite), the loop's check must not
    (tmp_path / "nanlab").mkdir()
    (tmp_path / "nanlab" / "__init__.py").write_text("")
    (tmp_path / "nanlab" / "diverging.py").write_text(NAN_AT_STEP_3)
    monkeypatch.syspath_prepend(str(tmp_path))
    params = {**TINY["lhc_cnn"], "learning_rate": 1e-3}
    spec = TrialSpec(workload="nanlab.diverging", params=params, data=DataConfig(path=str(calo_file)), seed=0, epochs=3,
                     out_dir=str(tmp_path / "nan"), threads=2)
    with pytest.raises(TrialError, match=r"^train_loss became nan at epoch 1, step 3; the training diverged: lower the "
                                         r"learning rate \(learning_rate=0\.001\) or raise warmup_epochs$"):
        train(spec, resume=False)
    assert not (tmp_path / "nan" / "checkpoints").exists() or not any((tmp_path / "nan" / "checkpoints").iterdir())


def test_unknown_parameter_lists_valid_ones() -> None:
    with pytest.raises(HpoError, match="workload 'lhc_cnn' has no parameter 'filtres'; valid names are conv_blocks, filters"):
        resolve_params(load_workload("lhc_cnn"), {"filtres": 8})


def test_registry_rejects_unknown_names_and_accepts_dotted_user_workloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(HpoError, match="unknown workload 'resnet'; valid names are lhc_cnn, cosmoflow, cosmogan"):
        load_workload("resnet")
    package = tmp_path / "mylab"
    package.mkdir()
    (package / "__init__.py").write_text("")
    # a user workload: reuse the built-in CNN's functions under another name, as docs/workloads.md shows
    (package / "tiny.py").write_text("from trainables.lhc_cnn import *  # noqa\nfrom trainables.lhc_cnn import "
                                     "data_options, build, train_step, setup_validation, validate, finalize, export\n")
    (package / "broken.py").write_text("DATA_KIND = 'calo'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_workload("mylab.tiny").DATA_KIND == "calo"
    with pytest.raises(HpoError, match=r"workload module 'mylab\.broken' lacks METRICS, OBJECTIVE"):
        load_workload("mylab.broken")
    assert workload_names()[0] == "lhc_cnn"
