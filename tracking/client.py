"""Campaign and trial logging with explicit run ids (never MLflow's global active run).

Structure in MLflow: one experiment per campaign (``tracking.experiment``, default the campaign name);
one **parent run** per campaign (tags ``hpo.campaign``, ``hpo.role=campaign``, ``hpo.objective``); one
**nested run** per trial (tags ``mlflow.parentRunId``, ``hpo.campaign``, ``hpo.trial_id``,
``hpo.role=trial``). A resumed campaign or a retried trial finds its run by these tags and reattaches to
it, so nothing is duplicated.

Tracking never kills a trial: a :class:`TrialLogger` puts every operation on an ordered queue that a
background thread delivers, retrying with back-off while the server is unreachable. Metric timestamps
are fixed when the operation is queued, so a re-sent batch cannot create a second point (MLflow's SQL
store ignores exact duplicates). :meth:`TrialLogger.close` waits a bounded time and reports what it
could not deliver.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def experiment_id(mlflow_client: Any, name: str) -> str:
    """The id of experiment ``name``, created when missing."""
    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            mlflow_client.restore_experiment(found.experiment_id)
        return str(found.experiment_id)
    return str(mlflow_client.create_experiment(name))


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


@dataclass
class DeliveryReport:
    """What a logger delivered and what it could not."""

    delivered: int = 0
    pending: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Everything was delivered."""
        return self.pending == 0


class TrialLogger:
    """One trial's nested run, fed through an ordered, retrying background queue.

    Args:
        uri: tracking URI.
        experiment: experiment id.
        parent_run_id: the campaign's run.
        campaign: campaign name (tag).
        trial_id: trial id (tag; the key for reattaching).
        params: the trial's parameters (logged once).
        tags: extra tags.
        retry_s: initial back-off while the server is unreachable (doubles up to ``max_retry_s``).
        max_retry_s: longest wait between two attempts.
    """

    def __init__(self, uri: str, experiment: str, parent_run_id: str, campaign: str, trial_id: str,
                 params: Mapping[str, Any], tags: Mapping[str, str] | None = None, retry_s: float = 1.0,
                 uid: str = "", max_retry_s: float = 10.0) -> None:
        self.uri, self.experiment, self.parent_run_id = uri, experiment, parent_run_id
        self.campaign, self.trial_id, self.uid = campaign, trial_id, uid
        self.run_id: str | None = None
        self.retry_s, self.max_retry_s = retry_s, max_retry_s
        self.report = DeliveryReport()
        self._queue: queue.Queue[tuple[str, Callable[[Any, str], None]] | None] = queue.Queue()
        self._client: Any = None
        self._thread = threading.Thread(target=self._deliver, name=f"hpo-tracking-{trial_id}", daemon=True)
        self._params = flatten(dict(params))
        self._tags = {TAG_CAMPAIGN: campaign, TAG_UID: uid, TAG_TRIAL: trial_id, TAG_ROLE: "trial",
                      "mlflow.parentRunId": parent_run_id, "mlflow.runName": trial_id, **(tags or {})}
        self._thread.start()

    # --- what trials call (never blocks on the network, never raises) ---------------------------------------

    def log_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """One ``log_batch`` with every metric of the epoch (step = epoch; timestamp fixed now)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, epoch) for k, v in metrics.items() if isinstance(v, (int, float))]
        self.enqueue(f"epoch {epoch}", lambda c, run: c.log_batch(run, metrics=batch))

    def log_params(self, params: Mapping[str, Any]) -> None:
        """More parameters (e.g. PBT's new values)."""
        flat = flatten(dict(params))
        self.enqueue("params", lambda c, run: log_params(c, run, flat))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Tags on the trial's run."""
        items = dict(tags)

        def tag(c: Any, run: str) -> None:
            for key, value in items.items():
                c.set_tag(run, key, value)

        self.enqueue("tags", tag)

    def log_artifacts(self, local_dir: str | Path, artifact_path: str | None = None) -> None:
        """A directory's files as artifacts (plots, checkpoints, the model)."""
        directory = str(local_dir)
        self.enqueue(f"artifacts {artifact_path}", lambda c, run: c.log_artifacts(run, directory, artifact_path))

    def log_artifact(self, local_file: str | Path, artifact_path: str | None = None) -> None:
        """One file as an artifact."""
        path = str(local_file)
        self.enqueue(f"artifact {path}", lambda c, run: c.log_artifact(run, path, artifact_path))

    def finish(self, state: str, error: str | None = None) -> None:
        """Close the run: FINISHED, STOPPED (early, by the scheduler) or FAILED (with the error)."""
        status = {"FINISHED": "FINISHED", "STOPPED": "KILLED", "FAILED": "FAILED"}.get(state, "FINISHED")

        def end(c: Any, run: str) -> None:
            c.set_tag(run, TAG_STATE, state)
            if error:
                c.set_tag(run, "hpo.error", error[:5000])
            c.set_terminated(run, status=status)

        self.enqueue(f"finish {state}", end)

    def close(self, timeout: float = 60.0) -> DeliveryReport:
        """Wait up to ``timeout`` s for the queue to drain; report what is still undelivered."""
        self._queue.put(None)
        self._thread.join(timeout)
        self.report.pending = self._queue.qsize() + (1 if self._thread.is_alive() else 0)
        return self.report

    # --- delivery -----------------------------------------------------------------------------------------

    def enqueue(self, what: str, op: Callable[[Any, str], None]) -> None:
        """Queue ``op(client, run_id)`` (described by ``what`` in delivery errors), in order with the rest."""
        self._queue.put((what, op))

    def _ensure_run(self) -> str:
        if self.run_id is None:
            if self._client is None:
                self._client = client(self.uri)
            run_id = find_run(self._client, self.experiment,
                              {TAG_UID: self.uid, TAG_TRIAL: self.trial_id, TAG_ROLE: "trial"})
            if run_id is None:
                run = self._client.create_run(self.experiment, tags=self._tags, run_name=self.trial_id)
                run_id = str(run.info.run_id)
            else:  # a retried or resumed trial: same run, running again
                self._client.update_run(run_id, status="RUNNING")
            log_params(self._client, run_id, self._params)
            self.run_id = run_id
        return self.run_id

    def _deliver(self) -> None:
        backoff = self.retry_s
        while True:
            item = self._queue.get()
            if item is None:
                return
            what, op = item
            while True:
                try:
                    run = self._ensure_run()
                    op(self._client, run)
                    self.report.delivered += 1
                    backoff = self.retry_s
                    break
                except Exception as exc:  # the server is down or flapping: keep the order, wait, retry
                    message = f"{what}: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
                    if not self.report.errors or self.report.errors[-1] != message:
                        self.report.errors.append(message)
                        log.warning("tracking for trial %s delayed (%s); retrying", self.trial_id, message)
                    time.sleep(backoff)
                    backoff = min(backoff * 2, self.max_retry_s)


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

    def finish_campaign(self, status: str, summary: Mapping[str, Any], images: list[Path]) -> None:
        """Summary table and plots on the parent run; its status."""
        assert self.parent_run_id is not None
        run = self.parent_run_id
        self.client.log_dict(run, dict(summary), "summary.json")
        for image in images:
            self.client.log_artifact(run, str(image), "summary")
        self.client.set_tag(run, TAG_STATE, status)
        self.client.set_terminated(run, status={"finished": "FINISHED", "failed": "FAILED"}.get(status, "KILLED"))


def file_facts(path: str) -> dict[str, Any]:
    """Path, size and SHA-256 of a data file (checksummed in 8 MiB blocks)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(8 << 20), b""):
            digest.update(block)
    return {"path": str(Path(path).absolute()), "bytes": Path(path).stat().st_size, "sha256": digest.hexdigest()}


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
