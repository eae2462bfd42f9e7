"""Campaign and trial logging with explicit run ids (never MLflow's global active run).

Structure in MLflow: one experiment per campaign (``tracking.experiment``, default the campaign name);
one **parent run** per campaign (tags ``hpo.campaign``, ``hpo.role=campaign``, ``hpo.objective``); one
**nested run** per trial (tags ``mlflow.parentRunId``, ``hpo.campaign``, ``hpo.trial_id``,
``hpo.role=trial``). A resumed campaign or a retried trial finds its run by these tags and reattaches to
it, so nothing is duplicated.

Tracking never kills a trial, and a killed process loses nothing it logged: a :class:`TrialLogger`
writes every operation to the campaign's spool (fsynced JSON lines, :mod:`tracking.spool`) and puts it on
an ordered queue that a background thread delivers, retrying transient errors with back-off while the
server is unreachable and dropping, with a message, those that can never succeed (HTTP 4xx, a missing
file). Metric timestamps are fixed when the operation is queued, so a re-sent batch cannot create a
second point (MLflow's SQL store ignores exact duplicates). :meth:`RunLogger.close` waits a bounded time;
what it could not deliver stays in the spool, where the next trial, ``hpo resume`` or ``hpo sync``
delivers it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import shutil
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tracking.spool import SUFFIX, Deliverer, DeliveryReport, Journal, RunTarget, deliver_orphans
from tracking.ui import tag_experiment

log = logging.getLogger("hpo.tracking")

TAG_CAMPAIGN = "hpo.campaign"
TAG_UID = "hpo.campaign_uid"  # one launch's identity: a deleted and relaunched campaign is a new one
TAG_ROLE = "hpo.role"
TAG_TRIAL = "hpo.trial_id"
TAG_OBJECTIVE = "hpo.objective"
TAG_STATE = "hpo.state"
MAX_PARAM_LENGTH = 6000


def client(uri: str) -> Any:
    """An ``MlflowClient`` for ``uri`` with short HTTP retries (our queue does the patient retrying)."""
    import os

    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    # MLflow prints "View run ... at" links to the GenAI view when a run ends; ours (tracking.ui) open the runs table
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def experiment_id(mlflow_client: Any, name: str) -> str:
    """The id of experiment ``name``, created when missing; tagged as model development for MLflow's UI
    (:func:`tracking.ui.tag_experiment`)."""
    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            mlflow_client.restore_experiment(found.experiment_id)
        tag_experiment(mlflow_client, str(found.experiment_id), found.tags)
        return str(found.experiment_id)
    created = str(mlflow_client.create_experiment(name))
    tag_experiment(mlflow_client, created, {})
    return created


def find_run(mlflow_client: Any, experiment: str, tags: Mapping[str, str]) -> str | None:
    """The run of ``experiment`` carrying every tag in ``tags`` (oldest first), if any."""
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    runs = mlflow_client.search_runs([experiment], filter_string=query, max_results=5, order_by=["attributes.start_time ASC"])
    return str(runs[0].info.run_id) if runs else None


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mapping -> {"a.b": "value"} with values as (truncated) strings, for MLflow params."""
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
            out[name] = out[name][:MAX_PARAM_LENGTH]
    return out


def log_params(mlflow_client: Any, run_id: str, params: Mapping[str, str]) -> None:
    """Log params in batches of 100 (MLflow's limit), skipping ones already logged with the same value."""
    from mlflow.entities import Param

    existing = mlflow_client.get_run(run_id).data.params
    new = [Param(k, v) for k, v in params.items() if existing.get(k) != v and k not in existing]
    for start in range(0, len(new), 100):
        mlflow_client.log_batch(run_id, params=new[start:start + 100])


class RunLogger:
    """One MLflow run fed through an ordered background queue that is journaled to disk and retried.

    Every operation is written to the journal (``spool_dir``, see :mod:`tracking.spool`) before it counts as
    queued; a background thread first delivers the orphan journals it finds there (a killed trial's, in
    order), then this logger's operations. Nothing here blocks on the network or raises.

    Args:
        header: the run: ``uri``, ``experiment`` and either ``run_id`` or ``find``/``create_tags``/``params``.
        spool_dir: where journals live (None: in memory only; what a killed process held is then lost).
        key: name of the journal (with a time and the pid, unique).
        stage: a directory of files staged for upload, deleted once everything is delivered.
        retry_s: initial back-off while the server is unreachable (doubles up to ``max_retry_s``).
        max_retry_s: longest wait between two attempts.
    """

    def __init__(self, header: Mapping[str, Any], *, spool_dir: str | Path | None = None, key: str = "run",
                 stage: str | Path | None = None, retry_s: float = 1.0, max_retry_s: float = 10.0, label: str = "") -> None:
        self.header = {**header, "stage": str(stage) if stage else None}
        self.run_id: str | None = header.get("run_id")
        self.spool_dir = Path(spool_dir) if spool_dir else None
        self.stage = Path(stage) if stage else None
        self.retry_s, self.max_retry_s, self.label = retry_s, max_retry_s, label
        self.report = DeliveryReport()
        self.orphans = DeliveryReport()  # what this logger delivered for killed processes before its own
        self._journal = (Journal(self.spool_dir / f"{time.time_ns()}-{key}-{os.getpid()}{SUFFIX}", self.header)
                         if self.spool_dir else None)
        self._seq = 0
        self._closed = False
        self._queue: queue.Queue[tuple[int, dict[str, Any]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._deliver, name=f"hpo-tracking{label}", daemon=True)
        self._thread.start()

    def submit(self, op: dict[str, Any]) -> None:
        """Journal ``op`` (see :func:`tracking.spool.apply`) and queue it, in order with the rest."""
        if self._closed:
            log.warning("tracking%s: %s after the run was closed; ignored", self.label, op.get("what") or op["op"])
            return
        self._seq += 1  # the journal numbers its operations the same way
        if self._journal is not None:
            try:
                self._journal.append(op)
            except OSError as exc:  # a full or vanished spool: still deliver, from memory
                log.warning("tracking%s: cannot journal to %s (%s); delivering from memory", self.label,
                            self._journal.path, exc)
                self._journal = None
        self._queue.put((self._seq, op))

    def end(self) -> None:
        """Nothing more will be submitted: the delivery thread ends once it has delivered everything."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)

    def close(self, timeout: float = 60.0) -> DeliveryReport:
        """End the queue and wait up to ``timeout`` s for it to drain; report what is still undelivered (it
        stays in the journal for the next trial, ``hpo resume`` or ``hpo sync``)."""
        self.end()
        self._thread.join(timeout)
        self.report.pending = self._queue.qsize() + (1 if self._thread.is_alive() else 0)
        return self.report

    @property
    def alive(self) -> bool:
        """Whether the delivery thread still runs."""
        return self._thread.is_alive()

    def _deliver(self) -> None:
        if self.spool_dir is not None:
            deliver_orphans(self.spool_dir, retry_s=self.retry_s, max_retry_s=self.max_retry_s, report=self.orphans)
        deliverer = Deliverer(self.report, retry_s=self.retry_s, max_retry_s=self.max_retry_s, label=self.label)
        run = RunTarget(self.run_id)
        while True:
            item = self._queue.get()
            if item is None:
                break
            seq, op = item
            deliverer.deliver(self.header, seq, op, run, reopen=True)
            self.run_id = run.run_id
            if self._journal is not None:
                with contextlib.suppress(OSError):
                    self._journal.ack(seq)
        if self._journal is not None:
            self._journal.close(complete=True)
        elif self.stage is not None:
            shutil.rmtree(self.stage, ignore_errors=True)

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        """Metrics at ``step`` (timestamp fixed now): PBT's new values at the epoch it perturbed, a campaign's
        progress at the number of trials ended."""
        now = int(time.time() * 1000)
        batch = [[k, float(v), now, step] for k, v in metrics.items() if isinstance(v, (int, float))]
        self.submit({"op": "metrics", "what": f"metrics at step {step}", "metrics": batch})


class TrialLogger(RunLogger):
    """One trial's nested run: found by its campaign launch, trial id and role, created when missing.

    Args:
        uri: tracking URI.
        experiment: experiment id.
        parent_run_id: the campaign's run.
        campaign: campaign name (tag).
        trial_id: trial id (tag; the key for reattaching).
        params: the trial's parameters (logged once).
        run_name: the run's name in the UI (default: the trial id).
        tags: extra tags.
        uid: the campaign launch's identity (tag).
        spool_dir, stage, retry_s, max_retry_s: see :class:`RunLogger`.
    """

    def __init__(self, uri: str, experiment: str, parent_run_id: str, campaign: str, trial_id: str,
                 params: Mapping[str, Any], tags: Mapping[str, str] | None = None, retry_s: float = 1.0,
                 uid: str = "", max_retry_s: float = 10.0, spool_dir: str | Path | None = None,
                 stage: str | Path | None = None, run_name: str | None = None) -> None:
        self.campaign, self.trial_id, self.uid, self.parent_run_id = campaign, trial_id, uid, parent_run_id
        run_name = run_name or trial_id
        create_tags = {TAG_CAMPAIGN: campaign, TAG_UID: uid, TAG_TRIAL: trial_id, TAG_ROLE: "trial",
                       "mlflow.parentRunId": parent_run_id, "mlflow.runName": run_name, **(tags or {})}
        header = {"uri": uri, "experiment": experiment, "run_name": run_name, "create_tags": create_tags,
                  "find": {TAG_UID: uid, TAG_TRIAL: trial_id, TAG_ROLE: "trial"}, "params": flatten(dict(params))}
        super().__init__(header, spool_dir=spool_dir, key=f"trial-{trial_id}", stage=stage, retry_s=retry_s,
                         max_retry_s=max_retry_s, label=f" for trial {trial_id}")

    # --- what trials call (never blocks on the network, never raises) ---------------------------------------

    def log_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """One ``log_batch`` with every metric of the epoch (step = epoch; timestamp fixed now)."""
        now = int(time.time() * 1000)
        batch = [[k, float(v), now, epoch] for k, v in metrics.items() if isinstance(v, (int, float))]
        self.submit({"op": "metrics", "what": f"epoch {epoch}", "epoch": epoch, "metrics": batch})

    def rewind(self, epoch: int) -> None:
        """The trial continues from another lineage's checkpoint of ``epoch`` (a PBT exploit): its next epochs are
        logged even where the run already has those steps (otherwise a repeated epoch keeps its first values)."""
        self.submit({"op": "rewind", "what": f"rewind to epoch {epoch}", "rewind": epoch})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """More parameters (MLflow keeps a parameter's first value; changed values belong in metrics or tags)."""
        self.submit({"op": "params", "params": flatten(dict(params))})

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Tags on the trial's run."""
        self.submit({"op": "tags", "tags": {k: str(v) for k, v in tags.items()}})

    def log_artifacts(self, local_dir: str | Path, artifact_path: str | None = None) -> None:
        """A directory's files as artifacts (plots, checkpoints)."""
        self.submit({"op": "artifacts", "what": f"artifacts {artifact_path}", "dir": str(local_dir), "path": artifact_path})

    def log_artifact(self, local_file: str | Path, artifact_path: str | None = None) -> None:
        """One file as an artifact."""
        self.submit({"op": "artifact", "what": f"artifact {local_file}", "file": str(local_file), "path": artifact_path})

    def log_model(self, export_dir: str | Path) -> None:
        """An exported model directory, as the run's MLflow pyfunc model."""
        self.submit({"op": "model", "dir": str(export_dir)})

    def finish(self, state: str, error: str | None = None) -> None:
        """Close the run: FINISHED, STOPPED (early, by the scheduler) or FAILED (with the error); an earlier
        attempt's error moves to ``hpo.attempt_errors``. Nothing more is logged after this."""
        self.submit({"op": "finish", "what": f"finish {state}", "state": state, "error": error})
        self.end()


class CampaignTracker:
    """A campaign's parent run (created once, reattached on resume)."""

    def __init__(self, uri: str, experiment: str, campaign: str, uid: str) -> None:
        self.uri = uri
        self.campaign = campaign
        self.uid = uid
        self.client = client(uri)
        self.experiment_name = experiment
        self.experiment = experiment_id(self.client, experiment)
        self.parent_run_id: str | None = None

    def start_campaign(self, *, config_file: Path, resolved: Mapping[str, Any], search_space: Mapping[str, Any],
                       objectives: list[dict[str, str]], data_files: list[str], description: str = "") -> str:
        """The parent run: config, space, versions, git commit, data checksums. Reattaches when it exists."""
        tags = {TAG_CAMPAIGN: self.campaign, TAG_UID: self.uid, TAG_ROLE: "campaign"}
        run_id = find_run(self.client, self.experiment, tags)
        if run_id is None:
            run = self.client.create_run(self.experiment, run_name=self.campaign, tags={
                **tags, TAG_OBJECTIVE: json.dumps(objectives), "mlflow.note.content": description,
            })
            run_id = str(run.info.run_id)
            log_params(self.client, run_id, flatten(dict(resolved)))
            self.client.log_artifact(run_id, str(config_file))
            self.client.log_dict(run_id, dict(search_space), "search_space.json")
            self.client.log_dict(run_id, {"data": [file_facts(p) for p in data_files], "versions": versions(),
                                          "git_commit": git_commit()}, "environment.json")
            for fact in (file_facts(p) for p in data_files):
                self.client.set_tag(run_id, f"hpo.data.{Path(fact['path']).name}.sha256", fact["sha256"])
        else:
            self.client.update_run(run_id, status="RUNNING")
        self.parent_run_id = run_id
        return run_id


def finish_campaign(uri: str, experiment: str, parent_run_id: str, uid: str, status: str, summary: Mapping[str, Any],
                    images: list[Path], *, trial_states: Mapping[str, str], spool_dir: str | Path | None = None,
                    timeout: float = 60.0) -> RunLogger:
    """The end of a campaign run on its parent run: the summary table and plots, trial runs that a killed process
    left RUNNING closed with the state the campaign recorded (``trial_states``), and the parent's status.

    Journaled like a trial's operations: what does not arrive within ``timeout`` s stays in ``spool_dir``. Returns
    the logger (its ``report``, and ``orphans``: what it delivered first for killed processes).
    """
    logger = RunLogger({"uri": uri, "experiment": experiment, "run_id": parent_run_id}, spool_dir=spool_dir,
                       key="campaign", label=" for the campaign's run")
    logger.submit({"op": "dict", "what": "summary.json", "data": dict(summary), "file": "summary.json"})
    for image in images:
        logger.submit({"op": "artifact", "what": f"plot {image.name}", "file": str(image), "path": "summary"})
    logger.submit({"op": "reconcile", "what": "trial runs left running", "experiment": experiment, "uid": uid,
                   "states": dict(trial_states)})
    logger.submit({"op": "finish", "what": f"campaign {status}", "state": status, "error": None})
    logger.close(timeout)
    return logger


def file_facts(path: str) -> dict[str, Any]:
    """Path, size and SHA-256 of a data file (read once per process and file version: the driver's data checks
    share it, :func:`trainables.data.integrity.sha256_of`)."""
    from trainables.data.integrity import sha256_of

    return {"path": str(Path(path).absolute()), "bytes": Path(path).stat().st_size, "sha256": sha256_of(path)}


def versions() -> dict[str, str]:
    """Versions of the stack's packages."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("hpo-orchestrator", "tensorflow-cpu", "tensorflow", "tf-keras", "horovod", "ray", "optuna", "mlflow", "h5py", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def git_commit() -> str | None:
    """The current git commit of the working directory, when there is one."""
    import subprocess

    try:
        proc = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None
