"""Where the campaign meets MLflow: the parent run at launch/resume, one logger per trial, the summary.

The driver creates (or reattaches to) the campaign's parent run and writes ``tracking.json`` so that
``hpo best``/``hpo promote`` find it; each trial (inside its Ray actor) opens a
:class:`tracking.client.TrialLogger` by trial id; at the end the parent run gets the best-trials table
and Optuna's own plots of the study (history, importances, parallel coordinates, Pareto front).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from orchestrator.state import CampaignDir, write_json
from trainables.errors import HpoError

if TYPE_CHECKING:
    from orchestrator.config import CampaignSpec
    from orchestrator.runner import RunOutcome

log = logging.getLogger("hpo")


@dataclass
class CampaignTracking:
    """The campaign's tracking: URI, experiment and parent run."""

    uri: str
    experiment: str
    experiment_id: str
    parent_run_id: str
    campaign: str
    uid: str
    spool_dir: str  # the campaign's spool: journals of tracking operations not yet delivered
    progress: Any = None  # RunLogger of the campaign's own metrics (log_progress), opened on first use
    progress_step: int = 0  # trials ended at the last metrics logged

    @classmethod
    def start(cls, spec: CampaignSpec, cdir: CampaignDir, uri: str) -> CampaignTracking:
        """Open (or reattach to) the campaign's parent run on the tracking server at ``uri``."""
        from rich.console import Console

        from tracking.client import CampaignTracker

        c = spec.config
        try:
            tracker = CampaignTracker(uri, c.experiment, c.name, cdir.state()["uid"])
            parent = tracker.start_campaign(
                config_file=cdir.config_file, resolved=spec.raw, search_space=spec.space.to_dict(),
                objectives=[o.model_dump() for o in c.search.objective], data_files=[c.workload.data.path],
                description=c.description,
            )
        except Exception as exc:  # MLflow's errors carry whole response bodies: one line of it is enough
            raise HpoError(_open_error(uri, exc)) from None
        from tracking import ui
        from tracking.credentials import redact

        try:
            view: str | None = ui.save_campaign_view(tracker.client, tracker.experiment, uid=tracker.uid, campaign=c.name,
                                                     objectives=[o.model_dump() for o in c.search.objective],
                                                     params=spec.space.searched)
        except Exception as exc:  # no saved view: the link filters the runs table to the campaign instead
            log.info("could not save the campaign's view of the runs table in MLflow: %s", exc)
            view = None
        # experiment id and view: `hpo status` links to the campaign without asking the server
        write_json(cdir.tracking_file, {"uri": uri, "experiment": c.experiment, "parent_run_id": parent,
                                        "experiment_id": tracker.experiment, "view": view})
        runs_link = ui.campaign_url(uri, tracker.experiment, tracker.uid, view)
        console = Console(stderr=True, soft_wrap=True, markup=False, highlight=False)  # links stay whole, one per line
        if runs_link is None:
            console.print(f"MLflow: {redact(uri)} (experiment '{c.experiment}', campaign run {parent}; no web UI there)")
        else:
            console.print(f"MLflow: {runs_link} (experiment '{c.experiment}': the campaign's run, its trials nested under it)")
            console.print(f"        campaign run: {ui.run_url(uri, tracker.experiment, parent)}")
        return cls(uri=uri, experiment=c.experiment, experiment_id=tracker.experiment, parent_run_id=parent, campaign=c.name,
                   uid=tracker.uid, spool_dir=str(cdir.spool_dir), progress_step=int(cdir.state().get("tracked_ended", 0)))

    def trial_info(self, first_index: int = 0) -> dict[str, Any]:
        """What each trial needs to log (travels to the Ray actors); ``first_index``: trials the campaign ran before
        this Tune run (an extension's trials are numbered on from there in their run names)."""
        return {"uri": self.uri, "experiment_id": self.experiment_id, "parent_run_id": self.parent_run_id,
                "campaign": self.campaign, "uid": self.uid, "spool_dir": self.spool_dir, "first_index": first_index}

    def log_progress(self, records: Mapping[str, Mapping[str, Any]], metrics: Sequence[str], modes: Sequence[str]) -> None:
        """The campaign's own metrics on its parent run, at step = trials ended so far (:func:`campaign_metrics`),
        so that MLflow's chart view compares campaigns. Journaled like a trial's (``hpo sync`` delivers what a
        killed driver left); a step already logged is not logged again (a resumed campaign re-reports its ended trials)."""
        step, values = campaign_metrics(records, metrics, modes)
        if step <= self.progress_step or not values:
            return
        self.progress_step = step
        if self.progress is None:
            from tracking.client import RunLogger

            self.progress = RunLogger({"uri": self.uri, "experiment": self.experiment_id, "run_id": self.parent_run_id},
                                      spool_dir=self.spool_dir, key="campaign-progress", label=" for the campaign's metrics")
        self.progress.log_metrics(step, values)

    def close_progress(self, timeout: float = 10) -> None:
        """Deliver the campaign metrics still queued (what does not arrive in ``timeout`` s stays in the spool)."""
        if self.progress is not None:
            self.progress.close(timeout)
            self.progress = None

    def finish(self, spec: CampaignSpec, cdir: CampaignDir, outcome: RunOutcome, timeout: float = 30) -> None:
        """Summary table and study plots on the parent run, trial runs left RUNNING by killed processes closed;
        journaled, waited for a bounded time, never raises (the campaign is over anyway)."""
        from tracking.client import finish_campaign

        try:
            images = study_plots(spec, cdir)
            summary = {"status": outcome.status, "message": outcome.message, "counts": outcome.counts, "best": outcome.best}
            states = {tid: str(r.get("state", "PAUSED")) for tid, r in cdir.trials().items()}
            logger = finish_campaign(self.uri, self.experiment_id, self.parent_run_id, self.uid, outcome.status,
                                     summary, images, trial_states=states, spool_dir=cdir.spool_dir, timeout=timeout)
            if not logger.report.complete:
                errors = (logger.report.errors or logger.orphans.errors or ["no answer in time"])[-1]
                log.warning("the campaign's summary is not yet in MLflow (%s); `hpo sync %s` delivers it", errors,
                            cdir.name)
        except Exception as exc:
            log.warning("could not write the campaign summary to MLflow: %s", exc)


def _open_error(uri: str, exc: Exception) -> str:
    """One line for a campaign whose run the server would not open: what it said, and what to do about it."""
    import os

    from tracking.credentials import redact

    text = str(exc)
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    status = getattr(exc, "get_http_status_code", lambda: None)()
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if status == 401 or "401" in first or "credentials" in text.lower():
        if not user:
            return (f"the MLflow server {redact(uri)} requires a user name and password: set MLFLOW_TRACKING_USERNAME "
                    "and MLFLOW_TRACKING_PASSWORD in the environment (never in tracking.uri)")
        return (f"the MLflow server {redact(uri)} refused user '{user}' (HTTP 401): check MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD")
    if status == 403 or "PERMISSION_DENIED" in text:
        return (f"the MLflow server {redact(uri)} does not let user '{user}' write to this campaign's experiment "
                f"(HTTP 403: {first[:200]}); ask its owner or the server's admin for EDIT permission, or set "
                "tracking.experiment to an experiment of your own")
    return (f"cannot open the campaign's run on the MLflow server {redact(uri)}: {first[:300]}; check that the server "
            "answers and accepts this client (tracking.uri, MLFLOW_TRACKING_*)")


def campaign_metrics(records: Mapping[str, Mapping[str, Any]], metrics: Sequence[str],
                     modes: Sequence[str]) -> tuple[int, dict[str, float]]:
    """(trials ended, the campaign's metrics) from its trial records, for the parent run.

    The metrics: each objective's best value so far under its own name (so the campaign's row in MLflow's
    runs table shows it in the objective's column) and as ``hpo.best.NAME``; ``hpo.trials.finished``,
    ``hpo.trials.stopped``, ``hpo.trials.failed``; ``hpo.core_hours`` (cores held × wall time, every trial).
    With several objectives, "best" is each objective's own best over the trials.
    """
    from orchestrator.progress import best_records, trial_done
    from orchestrator.state import TrialState

    counts = TrialState.counts(records.values())
    values: dict[str, float] = {f"hpo.trials.{state.lower()}": float(counts.get(state, 0))
                                for state in (TrialState.FINISHED, TrialState.STOPPED, TrialState.FAILED)}
    seconds = sum(float((r.get("last") or {}).get("hpo.core_seconds") or 0.0) for r in records.values())
    values["hpo.core_hours"] = seconds / 3600
    for index, (metric, mode) in enumerate(zip(metrics, modes, strict=True)):
        best = best_records(records, index, mode, 1)
        if best:
            values[metric] = values[f"hpo.best.{metric}"] = float(best[0]["objectives"][index])
    return sum(1 for r in records.values() if trial_done(r)), values


def trial_run_name(trial_id: str, searched: Mapping[str, Any], number: int | None, first_index: int = 0,
                   most: int = 4) -> str:
    """A trial run's name in MLflow: its number in the campaign and its first few searched values, e.g.
    ``#3 lr=0.0032 filters=32 dropout=0.21``. The number is Ray Tune's count of the trial in its run (from 1) plus
    ``first_index`` (the trials of the campaign's earlier runs); without one, the trial id stands in. The run keeps
    its trial id in the tag ``hpo.trial_id`` either way."""
    label = f"#{number + first_index}" if number is not None else trial_id

    def short(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.2g}"
        return str(value)

    shown = [f"{k}={short(v)}" for k, v in list(searched.items())[:most]]
    more = " …" if len(searched) > most else ""
    return f"{label} {' '.join(shown)}{more}".strip()[:250]


def study_plots(spec: CampaignSpec, cdir: CampaignDir) -> list[Path]:
    """Optuna's matplotlib plots of the campaign's study, as PNGs under ``CAMPAIGN/summary/``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ovm

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=spec.config.name, storage=cdir.study_url)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    out = cdir.root / "summary"
    out.mkdir(exist_ok=True)
    names = [o.metric for o in spec.config.search.objective]
    plots: list[tuple[str, Any]] = []
    if len(names) == 1:
        plots = [("optimization_history", lambda: ovm.plot_optimization_history(study, target_name=names[0])),
                 ("parallel_coordinate", lambda: ovm.plot_parallel_coordinate(study, target_name=names[0]))]
        if len(complete) >= 2:
            plots.append(("param_importances", lambda: ovm.plot_param_importances(study, target_name=names[0])))
    else:
        plots = [("pareto_front", lambda: ovm.plot_pareto_front(study, target_names=names))]
    written = []
    for name, make in plots:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = make()
            figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
            figure.set_size_inches(8, 5)
            figure.tight_layout()
            figure.savefig(out / f"{name}.png", dpi=110)
            plt.close(figure)
            written.append(out / f"{name}.png")
        except Exception as exc:  # a plot Optuna cannot draw (too few trials) is skipped, not fatal
            log.info("skipped plot %s: %s", name, exc)
    return written


class TrialTracking:
    """A trial's logging from inside its Ray actor (wraps :class:`tracking.client.TrialLogger`)."""

    def __init__(self, logger: Any) -> None:
        self.logger = logger

    @classmethod
    def open(cls, info: dict[str, Any], *, trial_id: str, params: dict[str, Any], context: Any,
             stage: Path | None = None, number: int | None = None) -> TrialTracking:
        """The trial's nested run (created, or reattached for a retried/resumed trial), journaled in the
        campaign's spool; ``stage`` holds the trial's files for upload and goes once they are delivered."""
        from tracking.client import TrialLogger

        searched = {k: v for k, v in params.items() if k not in context.fixed_params and not k.startswith("__")}
        logger = TrialLogger(info["uri"], info["experiment_id"], info["parent_run_id"], info["campaign"], trial_id, uid=info["uid"],
                             run_name=trial_run_name(trial_id, searched, number, int(info.get("first_index", 0))),
                             params={**params, "hpo.workers": context.workers, "hpo.cpus_per_worker": context.cpus_per_worker,
                                     "hpo.gpus_per_worker": context.gpus_per_worker, "hpo.workload": context.workload},
                             spool_dir=spool_here(info.get("spool_dir")), stage=stage)
        return cls(logger)

    def log_placement(self, placement: Sequence[Any]) -> None:
        """Where the trial's ranks run, as tags: ``hpo.hosts`` (one hostname per rank) and ``hpo.rank.K``
        (host, address, interface, pid). A retried trial may land elsewhere: the tags then say where it ended."""
        if placement:
            tags = {"hpo.hosts": ",".join(p.host for p in placement), "hpo.nodes": str(len({p.node_id for p in placement}))}
            tags.update({f"hpo.rank.{p.rank}": p.describe() for p in placement})
            self.logger.set_tags(tags)

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        """The epoch's metrics plus node CPU and memory, as one batch."""
        memory = psutil.virtual_memory()
        system = {"system.cpu_percent": psutil.cpu_percent(interval=None), "system.memory_used_gb": memory.used / 2**30,
                  "system.memory_percent": memory.percent}
        self.logger.log_epoch(epoch, {**metrics, **system})

    def log_final(self, final: dict[str, Any]) -> None:
        """Plots and the exported model (logged as an MLflow pyfunc model)."""
        for plot in final.get("plots", []):
            self.logger.log_artifact(plot, "plots")
        if final.get("model_dir"):
            self.logger.log_model(final["model_dir"])

    def log_checkpoint(self, directory: Path, epoch: int) -> None:
        """The trial's last checkpoint, as artifacts under ``checkpoints/epoch-NNNN``."""
        self.logger.log_artifacts(directory, f"checkpoints/epoch-{epoch:04d}")

    @property
    def trial_id(self) -> str:
        """The trial whose run this is."""
        return str(self.logger.trial_id)

    def log_perturbation(self, epoch: int, params: dict[str, Any], *, donor: str,
                         perturbed: dict[str, tuple[Any, Any]]) -> None:
        """A PBT exploit: from epoch ``epoch`` on, the trial continues from trial ``donor``'s checkpoint of that
        epoch, with the hyperparameters ``params`` (every searched one; ``perturbed``: those that PBT's explore
        step changed, as (donor's value, new value)).

        MLflow keeps a parameter's first value, so the values in effect from ``epoch`` on go to metrics
        ``hpo.pbt.NAME`` at step ``epoch`` (numbers) or tags ``hpo.pbt.NAME`` (anything else, the latest).
        Tag ``hpo.pbt.exploited_from`` names the last exploit's source as ``"DONOR EPOCH"`` (the format of a
        checkpoint's ``hpo_trial.txt``); tag ``hpo.pbt.exploit.EPOCH`` records each exploit as JSON: ``from``,
        ``from_epoch`` and ``perturbed`` (name: [donor's value, new value]).
        """
        import json

        def number(value: Any) -> bool:
            return isinstance(value, int | float) and not isinstance(value, bool)

        self.logger.rewind(epoch)  # a new lineage from this epoch on: its epochs are logged even where they repeat
        values = {f"hpo.pbt.{k}": float(v) for k, v in params.items() if number(v)}
        if values:
            self.logger.log_metrics(epoch, values)  # not an epoch's results: never taken for a repeated epoch
        record = {"from": donor, "from_epoch": epoch, "perturbed": {k: [old, new] for k, (old, new) in perturbed.items()}}
        tags = {f"hpo.pbt.{k}": str(v)[:5000] for k, v in params.items() if not number(v)}
        tags["hpo.pbt.exploited_from"] = f"{donor} {epoch}"
        tags[f"hpo.pbt.exploit.{epoch:04d}"] = json.dumps(record, default=str)[:5000]
        self.logger.set_tags(tags)

    def finish(self, state: str, error: str | None, *, core_seconds: float, gpu_seconds: float) -> None:
        """Resource use and final state, queued; delivery goes on in the background (see :meth:`wait`)."""
        self.logger.set_tags({"hpo.core_seconds": f"{core_seconds:.1f}", "hpo.gpu_seconds": f"{gpu_seconds:.1f}"})
        self.logger.finish(state, error)

    def wait(self, timeout: float = 300) -> bool:
        """Wait (bounded) until everything is delivered; what is not stays in the spool. Returns whether all
        arrived."""
        report = self.logger.close(timeout=timeout)
        if not report.complete:
            log.warning("trial %s: %d tracking operations not delivered yet (%s); they stay in the campaign's spool",
                        self.logger.trial_id, report.pending, "; ".join(report.errors[-3:]))
        return report.complete

    @property
    def alive(self) -> bool:
        """Whether it is still delivering."""
        return bool(self.logger.alive)


def spool_here(spool_dir: str | None) -> str | None:
    """The campaign's spool when this node sees the campaign directory, else a spool on this node (whose journals
    the next trial on this node delivers), with a warning."""
    if not spool_dir:
        return None
    if Path(spool_dir).parent.is_dir():
        return spool_dir
    import tempfile

    local = Path(tempfile.gettempdir()) / "hpo-spool" / Path(spool_dir).parent.name
    log.warning("the campaign directory %s is not visible on this node: tracking is journaled in %s instead",
                Path(spool_dir).parent, local)
    return str(local)


def stage_dir(spool_dir: str | None, trial_id: str) -> Path:
    """A new directory for a trial's files to upload: in the spool next to its journal when there is one (so that
    whoever delivers a killed trial's journal finds them), else on this node."""
    import tempfile

    base = Path(spool_dir) / "stage" if spool_dir else None
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{trial_id}-", dir=base))


def undelivered_note(cdir: CampaignDir) -> str:
    """One sentence about tracking operations held in the campaign's spool, or ''."""
    from tracking.spool import pending_count

    ops, runs = pending_count(cdir.spool_dir)
    if not ops:
        return ""
    return (f"; {ops} tracking operation(s) of {runs} run(s) have not reached MLflow yet (held in {cdir.spool_dir}); "
            f"`hpo sync {cdir.name}` delivers them")


def sync(cdir: CampaignDir, *, deadline_s: float | None = None, progress: Any = None) -> Any:
    """Deliver what the campaign's spool holds (``hpo sync``, ``hpo resume``); returns the delivery report."""
    from tracking.spool import deliver_orphans

    return deliver_orphans(cdir.spool_dir, deadline_s=deadline_s, progress=progress)
