"""The Ray Tune trainable that runs one trial as a Horovod job on warm workers.

Why a class trainable: starting Ray actors, importing TensorFlow and initialising Horovod costs ~9 s per
trial here (STACK.md). With ``reuse_actors=True`` Tune hands a finished trial's actor, and with it the
placement group, to the next trial and calls :meth:`HorovodTrainable.reset_config`; we keep the Horovod
workers (``trainables.distributed.RayWorkers``) alive across that reset, so the next trial only builds its
model. One :meth:`step` is one epoch, so schedulers (ASHA, HyperBand, median, PBT) act per epoch.

Resources: the trial's placement group has an empty head bundle for this (nearly idle) actor and one
bundle per Horovod rank (``use_current_placement_group=True``).

Nothing crosses nodes by path: the ranks, this actor and the driver may each sit on another node, with no
shared file system between them. Checkpoints travel as bytes: rank 0 writes its checkpoint into a local
temporary directory and returns it as a tar archive; this actor stores it in Tune's checkpoint directory.
Restoring sends the archive to every rank. The final plots and the exported model come back the same way,
into this actor's own staging directory (on its node), from which they are uploaded to MLflow.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import tarfile
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray import tune

from orchestrator.tracking_bridge import spool_here, stage_dir
from trainables.data.integrity import Fingerprint
from trainables.data.spec import DataConfig
from trainables.errors import DataError


@dataclass(frozen=True)
class TrialContext:
    """What every trial of a campaign shares (passed once through ``tune.with_parameters``)."""

    campaign: str
    workload: str
    data: DataConfig
    fixed_params: dict[str, Any]
    epochs: int
    seed: int
    workers: int
    cpus_per_worker: float
    gpus_per_worker: float
    threads: int | None
    tracking: dict[str, Any] | None = None  # CampaignTracking.trial_info(): uri, experiment, parent run, spool
    metrics: tuple[str, ...] = field(default_factory=tuple)
    rendezvous_timeout_s: int = 120  # Gloo's rendezvous and Horovod's start (trial.rendezvous_timeout)
    epoch_timeout_s: float | None = None  # deadline of one epoch on every rank (trial.epoch_timeout); None: none
    nics: tuple[str, ...] = ()  # network interfaces the ranks may use (trial.nics); () each node's Ray address
    #: the data file as the campaign (re)started: taken when the driver builds the context (its SHA-256 is the one
    #: environment.json records); every trial's start compares the file's size and mtime with it
    data_fingerprint: Fingerprint | None = None

    def __post_init__(self) -> None:
        if self.data_fingerprint is None:
            from trainables.data.integrity import fingerprint

            object.__setattr__(self, "data_fingerprint", fingerprint(self.data.path))


# --- functions executed on every Horovod rank (pickled by value into the workers) ----------------------


def _rank_setup(spec: Any) -> None:
    from trainables.loop import worker_setup

    worker_setup(spec)


def _rank_epoch() -> dict[str, float]:
    from trainables.loop import worker_epoch

    return worker_epoch()


def _rank_save() -> bytes | None:
    from trainables import distributed
    from trainables.loop import worker_save

    with tempfile.TemporaryDirectory(prefix="hpo-ckpt-") as tmp:
        worker_save(tmp)
        if distributed.rank() != 0:
            return None
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            tar.add(tmp, arcname=".")
        return buffer.getvalue()


def _rank_restore(blob: bytes) -> int:
    from trainables.loop import worker_restore

    with tempfile.TemporaryDirectory(prefix="hpo-ckpt-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r") as tar:
            tar.extractall(tmp, filter="data")
        return worker_restore(tmp)


def _rank_finalize() -> dict[str, Any]:
    """Final metrics on every rank; rank 0 also returns its plots and exported model as one tar archive,
    with their paths inside it (``plots``, ``model_dir``)."""
    from trainables import distributed
    from trainables.loop import worker_finalize

    with tempfile.TemporaryDirectory(prefix="hpo-final-") as tmp:
        final = worker_finalize(tmp)
        if distributed.rank() != 0:
            return {"metrics": final.get("metrics", {})}
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            tar.add(tmp, arcname=".")
        return {"metrics": final.get("metrics", {}), "archive": buffer.getvalue(),
                "plots": [os.path.relpath(p, tmp) for p in final.get("plots", [])],
                "model_dir": os.path.relpath(final["model_dir"], tmp) if final.get("model_dir") else None}


class HorovodTrainable(tune.Trainable):
    """One trial = one Horovod job of ``workers`` ranks; one ``step`` = one epoch."""

    def setup(self, config: dict[str, Any], context: TrialContext) -> None:  # type: ignore[override]
        """Start the Horovod workers (once per actor) and the first trial on them."""
        self.context = context
        self.workers: Any = None
        self.tracker: Any = None
        self.closing: list[Any] = []  # finished trials' trackers still delivering in the background (pruned)
        self._start_trial(config)

    # --- trial lifecycle ---------------------------------------------------------------------------

    def _start_trial(self, config: dict[str, Any]) -> None:
        from trainables.distributed import RayWorkers

        ctx = self.context
        self.params = {**ctx.fixed_params, **config}
        # staging for uploads: next to the trial's tracking journal in the campaign's spool, so that whoever
        # delivers the journal of a killed actor finds them; on this node when nothing is tracked
        self.stage = stage_dir(spool_here((ctx.tracking or {}).get("spool_dir")), self.trial_id)
        self.epoch = 0
        self.finished_state: str | None = None
        self.trial_started = time.time()
        self.busy_s = 0.0  # time inside epochs (for core-seconds)
        self.timing = {"hpo.setup_s": 0.0, "hpo.save_s": 0.0, "hpo.finalize_s": 0.0}  # the rest of the trial's time
        self.last_save: tuple[int, bytes] | None = None  # (epoch, checkpoint archive) of the latest save
        # an epoch's metrics go to MLflow once its checkpoint exists: a retry restarts from that checkpoint, so no
        # step is ever logged twice (an epoch trained but not checkpointed is trained, and logged, again)
        self.unlogged: list[tuple[int, dict[str, float]]] = []
        if self.workers is None:
            self.workers = RayWorkers(
                num_workers=ctx.workers, cpus_per_worker=ctx.cpus_per_worker, gpus_per_worker=ctx.gpus_per_worker,
                timeout_s=ctx.rendezvous_timeout_s, nics=ctx.nics,
            )
            self.workers.start()
        # the trial's run opens when the trial trains (its first step or restore), not here: Tune may set up an actor
        # for a trial and then discard it for a cached one, and that actor's cleanup must not touch the run
        self.tracker = None
        self.data_error = self._check_data()
        if self.data_error is not None:
            return  # raised by the first step: an error while Tune hands a warm actor over stalls the run
        self._on_ranks(_rank_setup, [self._trial_spec()], what="the trial's setup", setup=True)
        self.timing["hpo.setup_s"] = time.time() - self.trial_started

    def _check_data(self) -> DataError | None:
        """Whether the data file is still the one the campaign started with (size and mtime; SHA-256 when they
        differ): the error when not. A file replaced mid-campaign fails the new trial with both checksums
        (:class:`trainables.errors.DataChangedError`, which ends the campaign), and finished trials stay as they are."""
        from trainables.data.integrity import verify_fingerprint

        if self.context.data_fingerprint is None:
            return None
        try:
            verify_fingerprint(self.context.data_fingerprint)
        except DataError as exc:
            return exc
        return None

    def step(self) -> dict[str, Any]:
        """Train and validate one epoch on every rank; report rank 0's (rank-averaged) metrics."""
        started = time.time()
        self._tracking()
        error: DataError | None = getattr(self, "data_error", None)
        if error is not None:
            self._close_tracking("FAILED", error.message)
            raise error
        metrics = self._on_ranks(_rank_epoch, what=f"epoch {self.epoch + 1}")[0]
        self.busy_s += time.time() - started
        self.epoch += 1
        self.unlogged.append((self.epoch, metrics))
        done = self.epoch >= self.context.epochs
        result: dict[str, Any] = {**metrics, "hpo.core_seconds": self._core_seconds(), "hpo.trial_busy_s": self.busy_s}
        if done:
            result.update(self._finish_trial())
        result.update(self.timing)
        # where the trial sits in time: benchmarks split the campaign's wall time into trials and the gaps between them
        result["hpo.trial_started_at"] = self.trial_started
        result["hpo.trial_wall_s"] = time.time() - self.trial_started
        result["done"] = done
        return result

    def _finish_trial(self) -> dict[str, Any]:
        """All epochs done: final metrics, plots and the exported model, logged to tracking."""
        started = time.time()
        final = self._on_ranks(_rank_finalize, what="the final validation and export")[0]
        out = self.stage / "final"
        with tarfile.open(fileobj=io.BytesIO(final.pop("archive")), mode="r") as tar:
            tar.extractall(out, filter="data")
        final["plots"] = [str(out / p) for p in final["plots"]]
        final["model_dir"] = str(out / final["model_dir"]) if final["model_dir"] else None
        if self.tracker is not None:
            self.tracker.log_final(final)
        self.timing["hpo.finalize_s"] = time.time() - started
        self._close_tracking("FINISHED", None)  # its final checkpoint save counts in hpo.save_s
        return {k: v for k, v in final.get("metrics", {}).items() if isinstance(v, (int, float))}

    def _on_ranks(self, fn: Any, args: list[Any] | None = None, *, what: str, setup: bool = False) -> list[Any]:
        """``fn`` on every rank, within ``trial.epoch_timeout`` (plus the rendezvous time for a setup, which may
        start Horovod). A failure closes the trial's run as FAILED with the reason, then raises (Tune retries)."""
        timeout = self.context.epoch_timeout_s
        if timeout is not None and setup:
            timeout += self.context.rendezvous_timeout_s
        try:
            return self.workers.run(fn, args=args, timeout=timeout, what=what)
        except Exception as exc:
            self._tracking()  # a trial that fails in its setup still gets its run, with the reason
            self._close_tracking("FAILED", _describe(exc))
            raise

    def _core_seconds(self) -> float:
        ctx = self.context
        return self.busy_s * ctx.workers * ctx.cpus_per_worker

    # --- checkpoints ---------------------------------------------------------------------------------

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        """Rank 0's checkpoint (model, optimizer, epoch, RNG state) into Tune's checkpoint directory."""
        if self.last_save is not None and self.last_save[0] == self.epoch:
            blob = self.last_save[1]  # this state was saved already (the trial's final save, then Tune's)
        else:
            started = time.time()
            blob = next(b for b in self._on_ranks(_rank_save, what=f"the checkpoint of epoch {self.epoch}") if b is not None)
            self.last_save = (self.epoch, blob)
            self.timing["hpo.save_s"] += time.time() - started
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r") as tar:
            tar.extractall(checkpoint_dir, filter="data")
        Path(checkpoint_dir, "hpo_trial.txt").write_text(f"{self.trial_id} {self.epoch}\n")
        self._log_checkpointed()

    def _log_checkpointed(self) -> None:
        """The metrics of the epochs up to the one just checkpointed, to tracking (see ``unlogged``)."""
        if self.tracker is not None:
            for epoch, metrics in self.unlogged:
                if epoch <= self.epoch:
                    self.tracker.log_epoch(epoch, metrics)
        self.unlogged = [(e, m) for e, m in self.unlogged if e > self.epoch]

    def load_checkpoint(self, checkpoint: Any) -> None:
        """Send the checkpoint to every rank and continue from its epoch.

        A checkpoint of another trial is a PBT exploit: this trial continues from that trial's state, with the
        hyperparameters PBT gave it (:meth:`reset_config`); the new values and where they came from go to
        tracking (:meth:`TrialTracking.log_perturbation`), since MLflow keeps a parameter's first value.
        """
        if getattr(self, "data_error", None) is not None:
            return  # the ranks were not set up; the first step fails the trial with the data error
        self._tracking()
        directory = Path(checkpoint if isinstance(checkpoint, (str, os.PathLike)) else checkpoint["path"])
        source = _checkpoint_source(directory)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for item in directory.iterdir():
                if item.name != "hpo_trial.txt":
                    tar.add(item, arcname=item.name)
        blob = buffer.getvalue()
        epochs = self._on_ranks(_rank_restore, [blob], what="restoring a checkpoint")
        self.epoch = int(epochs[0])
        self.last_save = (self.epoch, blob)
        # epochs trained after the checkpoint are gone with the state they led to; they are trained again
        self.unlogged = [(e, m) for e, m in self.unlogged if e <= self.epoch]
        if source is not None and source[0] != self.trial_id and self.tracker is not None:
            donor_params = source[1]
            searched = {k: self.params[k] for k in self.config if k in self.params}
            perturbed = {k: (donor_params.get(k), v) for k, v in searched.items() if donor_params.get(k) != v}
            self.tracker.log_perturbation(self.epoch, searched, donor=source[0], perturbed=perturbed)

    # --- reuse ---------------------------------------------------------------------------------------

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        """Tune hands this actor (and its warm workers) to a trial: the next one, or the same one again.

        Another trial: close the previous one and set the new one up. The same trial (``self.trial_id`` is
        already the one Tune resumes) comes back after a pause, and under PBT after an exploit with new
        hyperparameters; Tune restores a checkpoint next (:meth:`load_checkpoint`). Its tracking then stays
        open: closing would mark a paused trial STOPPED, and a second logger of the same run would race with
        the first one's close. The ranks are set up again only when the hyperparameters changed.
        """
        if self.tracker is not None and self.tracker.trial_id == self.trial_id:
            params = {**self.context.fixed_params, **new_config}
            if params == self.params:
                return True
            self.params = params
            try:
                self.workers.run(_rank_setup, args=[self._trial_spec()])
            except Exception:
                traceback.print_exc()
                return False  # Tune then fails this attempt; the retry starts a fresh actor
            return True
        self._close_tracking("STOPPED" if self.epoch < self.context.epochs else "FINISHED", None)
        for earlier in self.closing:
            if earlier.trial_id == self.trial_id:
                # this trial was paused here and closed when another took the workers: that close must reach
                # MLflow before the run reopens, or it lands after the trial's final state
                earlier.wait(timeout=120)
        try:
            self._start_trial(new_config)
        except Exception:
            traceback.print_exc()
            return False  # Tune then starts a fresh actor
        return True

    def _trial_spec(self) -> Any:
        """What every rank needs to set the current trial up (``trainables.loop.TrialSpec``)."""
        from trainables.loop import TrialSpec

        ctx = self.context
        return TrialSpec(workload=ctx.workload, params=self.params, data=ctx.data, seed=ctx.seed, epochs=ctx.epochs,
                         out_dir=str(self.stage), threads=ctx.threads)

    def cleanup(self) -> None:
        """The actor goes away: close tracking (waiting for delivery), stop the Horovod workers."""
        self._close_tracking("STOPPED" if self.epoch < self.context.epochs else "FINISHED", None)
        # one deadline for all of them: whatever is not delivered by then stays in the campaign's spool
        deadline = time.time() + 30
        for tracker in self.closing:
            tracker.wait(timeout=max(1.0, deadline - time.time()))
        self.closing.clear()
        if self.workers is not None:
            self.workers.shutdown()
            self.workers = None

    # --- tracking --------------------------------------------------------------------------------------

    def _tracking(self) -> Any:
        """The current trial's tracking, opened (with where its ranks run) on first use; None when not tracked."""
        tracking = self.context.tracking
        if self.tracker is None and tracking and self.finished_state is None:
            from orchestrator.tracking_bridge import TrialTracking

            self.tracker = TrialTracking.open(tracking, trial_id=self.trial_id, params=self.params, context=self.context,
                                              stage=self.stage, number=self._trial_number())
            self.tracker.log_placement(self.workers.placement)
        return self.tracker

    def _trial_number(self) -> int | None:
        """Ray Tune's count of this trial in its run (1, 2, ...), which begins its experiment tag and so its directory's
        name (``HorovodTrainable_<id>_<count>_<params>_<date>``); None where that name says otherwise."""
        name = str(getattr(getattr(self, "_storage", None), "trial_dir_name", None) or "")
        match = re.search(rf"_{re.escape(self.trial_id)}_(\d+)_", name)
        return int(match.group(1)) if match else None

    def _close_tracking(self, state: str, error: str | None) -> None:
        if self.tracker is None or self.finished_state is not None:
            if self.tracker is None and self.finished_state is None:
                shutil.rmtree(self.stage, ignore_errors=True)  # never opened: nothing was queued from it
            return
        self.finished_state = state
        if state != "FINISHED":  # not over for Tune (paused, exploited by PBT, interrupted, retried): it trains
            self.unlogged = []  # the epochs after its last checkpoint again, and they are logged then
        if state != "FAILED" and self.workers is not None and self.epoch > 0:
            # the trial's last state, saved here: Tune moves its own checkpoint directories into its storage
            # (and rotates them) as soon as they are written, so they cannot be uploaded in the background
            kept = self.stage / "checkpoint"
            shutil.rmtree(kept, ignore_errors=True)
            kept.mkdir(parents=True)
            try:
                self.save_checkpoint(str(kept))
            except Exception as exc:  # workers gone: still close the run, say why the checkpoint is missing
                print(f"trial {self.trial_id}: no final checkpoint for MLflow: {_describe(exc)}", flush=True)
            else:
                self.tracker.log_checkpoint(kept, self.epoch)
        self.tracker.finish(state, error, core_seconds=self._core_seconds(),
                            gpu_seconds=self.busy_s * self.context.workers * self.context.gpus_per_worker)
        # the next trial need not wait for this one's uploads (model, plots): they finish in the background, and
        # each tracker's thread ends once it has delivered everything
        self.closing = [t for t in self.closing if t.alive] + [self.tracker]
        self.tracker = None
        if state == "FAILED":  # the actor may be torn down right after a failure: deliver the reason now
            self.closing.pop().wait(timeout=30)


def _checkpoint_source(directory: Path) -> tuple[str, dict[str, Any]] | None:
    """The trial that wrote checkpoint ``directory`` (its ``hpo_trial.txt``) and that trial's parameters (the
    ranks' ``trial.json``), or None for a checkpoint without them."""
    import json

    try:
        trial_id = (directory / "hpo_trial.txt").read_text().split()[0]
    except (OSError, IndexError):
        return None
    try:
        params = json.loads((directory / "trial.json").read_text()).get("params", {})
    except (OSError, ValueError, AttributeError):
        params = {}
    return trial_id, dict(params)


def _describe(exc: BaseException) -> str:
    """One line: the innermost error message (Ray wraps worker exceptions several times)."""
    text = str(exc).strip().splitlines()
    for line in reversed(text):
        line = line.strip()
        if line and not line.startswith(("File ", "^", "~", "Traceback")):
            return line[-500:]
    return type(exc).__name__
