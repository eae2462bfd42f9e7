"""The training loop shared by every workload: one :class:`Trial` per trial, stepped one epoch at a time.

Why stateful per epoch: campaigns keep the Horovod ranks warm across trials (a Ray Tune class trainable
calls one epoch per ``step()`` and reuses the same processes for the next trial), so a trial is an object
that lives in each rank's process, driven by the module-level ``worker_*`` functions. ``hpo train`` and
:func:`train` drive the same object in a plain loop.

Inside: a ``tf.function`` train step over a Horovod-wrapped gradient tape; model and optimizer variables
broadcast from rank 0 after the first step; the learning rate scaled by the number of ranks with a linear
warm-up and an optional linear decay to 0 over the end of the trial; validation metrics that every rank
agrees on; NaN/Inf detection that fails the trial with the reason; a data file that fails to read back (a
damaged chunk) fails the trial with a :class:`~trainables.errors.DataError` naming file, dataset and events
(not with a NaN loss that blames the learning rate); checkpoints of model, optimizer, epoch
and TensorFlow's global RNG; per-epoch wall time and throughput under the reserved ``hpo.`` prefix.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from trainables import distributed
from trainables.data.spec import DataConfig
from trainables.errors import HpoError, TrialError
from trainables.registry import load_workload


@dataclass(frozen=True)
class TrialSpec:
    """Everything a rank needs to run a trial (picklable: it travels to Ray actors and Horovod ranks).

    Attributes:
        workload: registry name or dotted module path.
        params: hyperparameters (workload defaults fill the rest; unknown names are errors).
        data: the data file and its split.
        seed: seeds the split, the initialisation and the shuffling (the same in every trial of a campaign).
        epochs: epochs to train.
        out_dir: where rank 0 writes checkpoints, plots, metrics and the exported model.
        threads: TensorFlow intra-op threads per rank.
    """

    workload: str
    params: Mapping[str, Any]
    data: DataConfig
    seed: int = 0
    epochs: int = 10
    out_dir: str = "runs/trial"
    threads: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def resolve_params(module: ModuleType, params: Mapping[str, Any]) -> dict[str, Any]:
    """Workload defaults overridden by ``params``; an unknown name is an error listing the valid ones."""
    defaults: Mapping[str, Any] = module.DEFAULT_PARAMS
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise HpoError(
            f"workload '{module.__name__.rsplit('.', 1)[-1]}' has no parameter '{unknown[0]}'; valid names are "
            f"{', '.join(defaults)}"
        )
    return {**defaults, **params}


class Trial:
    """One trial in one rank's process. All ranks construct it and call its methods in lockstep."""

    def __init__(self, spec: TrialSpec) -> None:
        import tensorflow as tf
        import tf_keras as keras

        from trainables.data.checks import check_for_training
        from trainables.data.readers import make_datasets

        distributed.init(spec.threads)
        self.spec = spec
        self.workload = load_workload(spec.workload)
        self.params = resolve_params(self.workload, spec.params)
        self.rank, self.size = distributed.rank(), distributed.size()
        batch_size = int(self.params["batch_size"])
        check_for_training(spec.data, self.workload.DATA_KIND, batch_size, self.size)
        tf.keras.backend.clear_session()
        # Python's, NumPy's and TensorFlow's generators: Keras draws unseeded initialisers' seeds from Python's
        # random module, so tf.random.set_seed alone leaves the initial weights different in every process
        keras.utils.set_random_seed(spec.seed)
        # the checkpointed RNG (GAN noise, label flips): seeded per trial and the same on every rank, since rank 0's
        # checkpoint restores every rank; workloads derive per-rank draws from it (cosmogan.train_step)
        tf.random.set_global_generator(tf.random.Generator.from_seed(spec.seed * 7919 + 17))
        self.splits = make_datasets(
            spec.data, self.workload.DATA_KIND, batch_size=batch_size, seed=spec.seed, rank=self.rank, size=self.size,
            options=self.workload.data_options(self.params),
        )
        self.parts = self.workload.build(self.params, self.splits.input_shape)
        self.epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        self.base_lrs = {name: float(lr) * self.size for name, lr in self.parts.learning_rates.items()}
        self.warmup_steps = max(float(self.params.get("warmup_epochs", 0)), 0.0) * self.splits.steps_per_epoch
        decay = self.params.get("decay_fraction", 0.0)
        if not isinstance(decay, int | float) or isinstance(decay, bool) or not 0 <= decay <= 1:
            raise HpoError(f"parameter decay_fraction must be a number in [0, 1] (0: no decay), but got {decay!r}")
        self.total_steps = float(spec.epochs * self.splits.steps_per_epoch)
        self.decay_steps = float(decay) * self.total_steps
        self.context = self.workload.setup_validation(self.spec, self.params, self.splits) \
            if hasattr(self.workload, "setup_validation") else {}
        self._set_learning_rates()  # scaled by the number of ranks (and ramped) from the very first step
        self._step = tf.function(self._train_step)
        self._broadcast_done = False
        self._validation: dict[str, float] | None = None  # the last epoch's, of the current weights; for finalize
        self.epoch = 0
        self.history: list[dict[str, float]] = []

    # --- one epoch -----------------------------------------------------------------------------------

    def _scheduled(self, step: float) -> bool:
        """Whether the learning rates change from step to step at ``step`` (warm-up or decay)."""
        return step < self.warmup_steps or step >= self.total_steps - self.decay_steps

    def _set_learning_rates(self, step: float | None = None) -> None:
        """Base rate × ranks at ``step`` (default: the global step), ramped up linearly over ``warmup_epochs`` and
        down linearly to 0 over the last ``decay_fraction`` of the trial's steps."""
        if step is None:
            step = float(self.global_step.numpy())
        factor = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        if self.decay_steps:
            factor *= min(1.0, max(self.total_steps - step, 0.0) / self.decay_steps)
        for name, optimizer in self.parts.optimizers.items():
            optimizer.learning_rate.assign(self.base_lrs[name] * factor)

    def _train_step(self, batch: Mapping[str, Any]) -> Any:
        return self.workload.train_step(self.parts, batch, distributed.distributed_tape)

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """Turn whatever TensorFlow makes of a read error in the data streams back into that :class:`DataError`."""
        failures = self.splits.read_failures
        failures.clear()
        try:
            yield
        except Exception:
            if failures:
                raise failures[0] from None
            raise

    def run_epoch(self) -> dict[str, float]:
        """Train one epoch and validate; the returned metrics are the same on every rank.

        Raises:
            DataError: the data file failed to read back (file, dataset and events named).
            TrialError: a loss became NaN or Inf.
        """
        with self._reading():
            return self._run_epoch()

    def _run_epoch(self) -> dict[str, float]:
        started = time.perf_counter()
        self._validation = None  # the weights are about to change
        train = self.splits.train_for_epoch(self.epoch) if self.splits.train_for_epoch else self.splits.train
        sums: dict[str, float] = {}
        steps = 0
        first = float(self.global_step.numpy())
        for batch in train:
            if self._scheduled(first + steps):
                self._set_learning_rates(first + steps)
            losses = self._step(batch)
            if not self._broadcast_done:
                # after the first step the optimizer's slots exist; make every rank start identical
                distributed.broadcast_variables(self.parts.variables(), root=0)
                self._broadcast_done = True
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + float(value)
            steps += 1
            self.global_step.assign_add(1)
            self._check_finite(losses, steps)
        self._set_learning_rates()  # the next step's, wherever the schedule is
        # keep every rank's model identical: average what gradients do not (batch-norm statistics)
        distributed.average_variables([v for m in self.parts.models.values() for v in m.non_trainable_variables])
        train_time = time.perf_counter() - started
        metrics = distributed.allreduce_metrics({name: total / max(steps, 1) for name, total in sums.items()})
        validation = self.workload.validate(self.parts, self.splits, self.context)
        metrics.update(validation)
        self.epoch += 1
        self._validation = validation
        self.epoch_var.assign(self.epoch)
        elapsed = time.perf_counter() - started
        samples = steps * int(self.params["batch_size"]) * self.size
        metrics.update({
            "hpo.epoch": float(self.epoch), "hpo.epoch_time_s": elapsed, "hpo.train_time_s": train_time,
            "hpo.samples_per_s": samples / train_time if train_time > 0 else 0.0, "hpo.train_samples": float(samples),
        })
        self.history.append(metrics)
        return metrics

    def _check_finite(self, losses: Mapping[str, Any], step: int) -> None:
        for name, value in losses.items():
            v = float(value)
            if not math.isfinite(v):
                from trainables.data.integrity import has_checksums

                lrs = ", ".join(f"{k}={v:g}" for k, v in self.params.items() if "learning_rate" in k)
                # silent corruption can pass for divergence only in a file whose chunks carry no checksums
                unchecked = "" if has_checksums(self.spec.data.path) else (
                    f" (or, since the file has no checksums, run `hpo data check --deep {self.spec.data.path}`)")
                raise TrialError(
                    f"{name} became {v} at epoch {self.epoch + 1}, step {step}; the training diverged: lower the "
                    f"learning rate ({lrs}) or raise warmup_epochs{unchecked}"
                )

    # --- checkpoints ------------------------------------------------------------------------------------

    def _checkpoint(self) -> Any:
        import tensorflow as tf

        objects = {f"model_{k}": m for k, m in self.parts.models.items()}
        objects.update({f"optimizer_{k}": o for k, o in self.parts.optimizers.items()})
        return tf.train.Checkpoint(epoch=self.epoch_var, global_step=self.global_step,
                                   rng=tf.random.get_global_generator(), **objects)

    def save_checkpoint(self, directory: str) -> None:
        """Rank 0 writes model(s), optimizer(s), epoch and RNG state to ``directory`` (others wait)."""
        if self.rank == 0:
            Path(directory).mkdir(parents=True, exist_ok=True)
            self._checkpoint().write(str(Path(directory) / "ckpt"))
            (Path(directory) / "trial.json").write_text(json.dumps({"epoch": self.epoch, "params": dict(self.params)}, default=str))
        distributed.barrier()

    def restore_checkpoint(self, directory: str) -> int:
        """Every rank restores ``directory`` and continues from its epoch; returns that epoch."""
        path = Path(directory) / "ckpt"
        if not Path(str(path) + ".index").exists():
            raise TrialError(f"no checkpoint in {directory} (expected {path}.index)")
        if not self._broadcast_done:
            # optimizer slots must exist before restoring into them: one zero-learning-rate step
            with self._reading():
                self._materialise_optimizer()
        self._checkpoint().read(str(path)).assert_existing_objects_matched()
        self.epoch = int(self.epoch_var.numpy())
        self._validation = None
        self._broadcast_done = True
        self._set_learning_rates()
        return self.epoch

    def _materialise_optimizer(self) -> None:
        for optimizer in self.parts.optimizers.values():
            optimizer.learning_rate.assign(0.0)
        batch = next(iter(self.splits.train))
        self._step(batch)
        distributed.broadcast_variables(self.parts.variables(), root=0)

    # --- the end ------------------------------------------------------------------------------------------

    def finalize(self, out_dir: str) -> dict[str, Any]:
        """Final validation metrics, plots and the exported model (written by rank 0)."""
        with self._reading():
            return self._finalize(out_dir)

    def _finalize(self, out_dir: str) -> dict[str, Any]:
        if self._validation is not None:
            metrics = dict(self._validation)  # the last epoch validated these very weights (context is current)
        else:
            metrics = self.workload.validate(self.parts, self.splits, self.context)
        result: dict[str, Any] = {"metrics": metrics, "plots": [], "model_dir": None}
        extra = self.workload.finalize(self.parts, self.splits, self.context, out_dir, self.rank == 0)
        if self.rank == 0:
            out = Path(out_dir)
            out.mkdir(parents=True, exist_ok=True)
            result["plots"] = [str(p) for p in extra.get("plots", [])]
            result["model_dir"] = str(self.workload.export(self.parts, self.splits, out / "model"))
            (out / "metrics.json").write_text(json.dumps({"final": metrics, "history": self.history}, indent=2))
        distributed.barrier()
        return result

    def weights_digest(self) -> float:
        """A number that differs when any weight differs (tests: ranks must agree)."""
        return float(sum(np.float64(np.abs(v.numpy()).sum()) for v in self.parts.variables()))


# --- the process-global trial of a warm worker ------------------------------------------------------------

_CURRENT: Trial | None = None


def worker_setup(spec: TrialSpec) -> None:
    """Replace this rank's current trial by a new one (the ranks stay warm)."""
    global _CURRENT
    _CURRENT = None
    _CURRENT = Trial(spec)


def _current() -> Trial:
    if _CURRENT is None:
        raise HpoError("no trial is set up on this worker; call worker_setup first")
    return _CURRENT


def worker_epoch() -> dict[str, float]:
    """One epoch of the current trial."""
    return _current().run_epoch()


def worker_save(directory: str) -> None:
    """Checkpoint the current trial (rank 0 writes)."""
    _current().save_checkpoint(directory)


def worker_restore(directory: str) -> int:
    """Restore the current trial from ``directory``; returns the epoch."""
    return _current().restore_checkpoint(directory)


def worker_finalize(out_dir: str) -> dict[str, Any]:
    """Final metrics, plots and model of the current trial."""
    return _current().finalize(out_dir)


def worker_digest() -> float:
    """Weights digest of the current trial (tests)."""
    return _current().weights_digest()


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest ``checkpoints/epoch-NNNN`` directory under ``out_dir``, if any."""
    candidates = sorted(Path(out_dir, "checkpoints").glob("epoch-*"))
    return candidates[-1] if candidates else None


def train(spec: TrialSpec, report: Callable[[int, dict[str, float]], None] | None = None, *, resume: bool = True,
          keep_checkpoints: int = 2) -> dict[str, Any]:
    """Run a whole trial in this rank: resume from the latest checkpoint, checkpoint every epoch, finalize.

    ``report(epoch, metrics)`` is called on rank 0 after every epoch. Returns the final dict (metrics,
    plots, model directory) on rank 0 and the final metrics on the others.
    """
    trial = Trial(spec)
    out = Path(spec.out_dir)
    if resume and (ckpt := latest_checkpoint(out)) is not None:
        trial.restore_checkpoint(str(ckpt))
    while trial.epoch < spec.epochs:
        metrics = trial.run_epoch()
        target = out / "checkpoints" / f"epoch-{trial.epoch:04d}"
        trial.save_checkpoint(str(target))
        if trial.rank == 0:
            with (out / "metrics.jsonl").open("a") as f:
                f.write(json.dumps({"epoch": trial.epoch, **metrics}) + "\n")
            for old in sorted((out / "checkpoints").glob("epoch-*"))[:-keep_checkpoints]:
                for item in sorted(old.rglob("*"), reverse=True):
                    item.unlink() if item.is_file() else item.rmdir()
                old.rmdir()
            if report is not None:
                report(trial.epoch, metrics)
    result = trial.finalize(str(out / "final"))
    result["digest"] = trial.weights_digest()
    result["epoch"] = trial.epoch
    return result
