"""Model selection and promotion to the MLflow Model Registry (by alias; stages are deprecated)."""

from __future__ import annotations

import itertools
import json
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tracking.client import TAG_CAMPAIGN, TAG_OBJECTIVE, TAG_ROLE, TAG_TRIAL, TAG_UID, client
from tracking.models import MODEL_ARTIFACT
from trainables.errors import HpoError

_REQUIREMENT = re.compile(r"^\s*([\w.\-/@=]+?)\s*(>=|<=|==|!=|>|<)\s*([-+0-9.eE]+)\s*$")
_OPS = {">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne, ">": operator.gt, "<": operator.lt}


@dataclass(frozen=True)
class RankedTrial:
    """A trial run ranked by the campaign's first objective."""

    run_id: str
    trial_id: str
    objective: float
    metrics: dict[str, float]
    params: dict[str, str]
    state: str
    has_model: bool


def campaign_runs(uri: str, experiment: str, campaign: str, parent_run_id: str | None = None
                  ) -> tuple[Any, str, str, list[dict[str, str]], str]:
    """(client, experiment id, parent run id, objectives, campaign uid) of a campaign, or a one-line error.

    Without ``parent_run_id`` the newest launch of a campaign of that name is taken.
    """
    c = client(uri)
    exp = c.get_experiment_by_name(experiment)
    if exp is None:
        raise HpoError(f"no MLflow experiment '{experiment}' at {uri}; check --tracking-uri or the campaign name")
    if parent_run_id is None:
        runs = c.search_runs([exp.experiment_id], filter_string=f"tags.`{TAG_CAMPAIGN}` = '{campaign}' and "
                             f"tags.`{TAG_ROLE}` = 'campaign'", max_results=1, order_by=["attributes.start_time DESC"])
        if not runs:
            raise HpoError(f"campaign '{campaign}' has no run in experiment '{experiment}' at {uri}")
        parent_run_id = str(runs[0].info.run_id)
    tags = c.get_run(parent_run_id).data.tags
    objectives = json.loads(tags.get(TAG_OBJECTIVE, "[]"))
    if not objectives:
        raise HpoError(f"campaign '{campaign}' records no objective (tag {TAG_OBJECTIVE}) on run {parent_run_id}")
    return c, str(exp.experiment_id), parent_run_id, objectives, tags.get(TAG_UID, "")


def best_trials(uri: str, experiment: str, campaign: str, k: int = 5, parent_run_id: str | None = None
                ) -> tuple[list[RankedTrial], dict[str, str]]:
    """The ``k`` best trials by the first objective (ties: earlier first) and that objective."""
    c, exp, _, objectives, uid = campaign_runs(uri, experiment, campaign, parent_run_id)
    objective = objectives[0]
    runs = c.search_runs([exp], filter_string=f"tags.`{TAG_UID}` = '{uid}' and tags.`{TAG_ROLE}` = 'trial'",
                         max_results=5000)
    ranked = []
    for run in runs:
        value = run.data.metrics.get(objective["metric"])
        if value is None:
            continue
        has_model = any(a.path == MODEL_ARTIFACT for a in c.list_artifacts(run.info.run_id))
        ranked.append(RankedTrial(run.info.run_id, run.data.tags.get(TAG_TRIAL, "?"), float(value), dict(run.data.metrics),
                                  dict(run.data.params), run.data.tags.get("hpo.state", run.info.status), has_model))
    ranked.sort(key=lambda r: r.objective, reverse=objective["mode"] == "max")
    return ranked[:k], objective


def parse_requirement(text: str) -> tuple[str, Any, float]:
    """``"val_auc>=0.9"`` -> (metric, comparison, threshold)."""
    match = _REQUIREMENT.match(text)
    if not match:
        raise HpoError(f"--require {text!r}: expected METRIC OP NUMBER with OP one of >=, <=, >, <, ==, !=, e.g. \"val_auc>=0.9\"")
    metric, op, number = match.groups()
    return metric, _OPS[op], float(number)


@dataclass(frozen=True)
class Promotion:
    """What :func:`promote` did."""

    name: str
    version: str
    alias: str
    run_id: str
    trial_id: str
    created: bool


def promote(uri: str, experiment: str, campaign: str, model_name: str, *, alias: str = "champion",
            requirements: Sequence[str] = (), parent_run_id: str | None = None) -> Promotion:
    """Register the best trial's model as a new version of ``model_name`` and point ``alias`` at it.

    Idempotent: if that run's model is already a version, the alias is (re)set and nothing is created.

    Raises:
        HpoError: no trial with a model, or a requirement fails (nothing is registered then).
    """
    from mlflow.exceptions import MlflowException

    checks = [parse_requirement(r) for r in requirements]
    ranked, objective = best_trials(uri, experiment, campaign, k=5000, parent_run_id=parent_run_id)
    # the trials ranked above the best one with a model ended without one (stopped early or failed in finalize)
    above = [r.trial_id for r in itertools.takewhile(lambda r: not r.has_model, ranked)]
    if len(above) == len(ranked):
        raise HpoError(f"campaign '{campaign}' has no finished trial with a logged model to promote")
    best = ranked[len(above)]
    which = f"the best trial with a model, {best.trial_id}," if above else f"the best trial {best.trial_id}"
    for metric, compare, threshold in checks:
        value = best.metrics.get(metric)
        if value is None or not compare(value, threshold):
            raise HpoError(
                f"not promoted: {which} has {metric}={value}, which fails the requirement "
                f"{metric} {_symbol(compare)} {threshold:g}"
                + (f" (better trials without a model: {', '.join(above)})" if above else "")
            )
    c = client(uri)
    try:
        c.get_registered_model(model_name)
    except MlflowException:
        c.create_registered_model(model_name, description=f"promoted by hpo from campaign {campaign}")
    existing = [v for v in c.search_model_versions(f"name = '{model_name}'") if v.run_id == best.run_id]
    created = not existing
    if existing:
        version = existing[0]
    else:
        version = c.create_model_version(model_name, f"runs:/{best.run_id}/{MODEL_ARTIFACT}", run_id=best.run_id, tags={
            "hpo.campaign": campaign, "hpo.trial_id": best.trial_id,
            "hpo.objective": f"{objective['metric']}={best.objective:.6g} ({objective['mode']})",
        })
        parent = c.get_run(c.get_run(best.run_id).data.tags.get("mlflow.parentRunId", best.run_id))
        for key, value in parent.data.tags.items():
            if key.startswith("hpo.data."):
                c.set_model_version_tag(model_name, version.version, key, value)
    c.set_registered_model_alias(model_name, alias, version.version)
    return Promotion(model_name, str(version.version), alias, best.run_id, best.trial_id, created)


def _symbol(compare: Any) -> str:
    return next(k for k, v in _OPS.items() if v is compare)


def registered_models(uri: str) -> list[dict[str, Any]]:
    """Every registered model with its latest version, aliases and the campaign it came from."""
    c = client(uri)
    out = []
    for model in c.search_registered_models():
        versions = c.search_model_versions(f"name = '{model.name}'")
        latest = max(versions, key=lambda v: int(v.version)) if versions else None
        out.append({
            "name": model.name, "versions": len(versions), "latest": latest.version if latest else None,
            "aliases": {alias: version for alias, version in (model.aliases or {}).items()},
            "campaign": latest.tags.get("hpo.campaign") if latest else None,
            "objective": latest.tags.get("hpo.objective") if latest else None,
        })
    return out
