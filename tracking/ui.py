"""Links into MLflow's web UI, and the experiment tags that make it show campaigns as people expect.

The one place that knows how MLflow 3.17's UI spells its addresses and state (read from its JavaScript bundle,
``mlflow/server/js/build``, and checked in headless Chromium by ``tests/tracking/test_ui_browser.py``):

- An experiment opens in the GenAI view (traces, token usage) unless the address carries
  ``?workflowType=machine_learning``; every link made here carries it. The choice is otherwise kept in the
  browser's local storage, and the experiment tag ``mlflow.experimentKind`` (set by :func:`tag_experiment`)
  names the experiment's kind in the experiment list and its settings, but does not switch the view by itself.
- The runs table reads its filter, sort and columns from a *saved view*: an experiment tag
  ``mlflow.sharedViewState.KEY`` holding ``{"name", "createdAt", "updatedAt", "state"}`` where ``state`` is
  the JSON of the table's search facets (``searchFilter``, ``orderByKey``, ...) and columns
  (``selectedColumns``, as ``metrics.`NAME```, ``params.`NAME```, ``tags.`NAME```). The address
  ``#/experiments/ID/runs?viewStateShareKey=KEY`` opens it, and the view's name appears in the page's
  "Views" menu. :func:`save_campaign_view` writes one per campaign launch: its runs (the campaign's run with
  its trials nested under it) with the objectives, the searched parameters and the trial state as columns.
  Search parameters in the address (``searchFilter=...``) take precedence over a saved view, so an address
  has one or the other.

Every address starts from the tracking URI with its credentials masked (:func:`tracking.credentials.redact`):
links are printed and logged. A URI that is not an HTTP server (a local store) has no UI, and gives ``None``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from tracking.credentials import redact

#: The experiment tag MLflow's UI reads for an experiment's kind, and the value for model training.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_DEVELOPMENT = "custom_model_development"
#: The experiment tag prefix of the runs table's saved views (the rest of the tag's key is the view's key).
VIEW_TAG_PREFIX = "mlflow.sharedViewState."
#: The search parameter that opens the model-training view rather than the GenAI one.
WORKFLOW = ("workflowType", "machine_learning")
_MAX_TAG_VALUE = 5000  # MLflow's limit on an experiment tag's value


def ui_base(uri: str) -> str | None:
    """The UI's root address for tracking URI ``uri`` (credentials masked, no trailing slash), or None when
    ``uri`` is not an HTTP(S) server (``sqlite:///...``, a local directory), which serves no UI."""
    parts = urlsplit(redact(uri))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def _link(uri: str, route: str, query: Sequence[tuple[str, str]] = ()) -> str | None:
    base = ui_base(uri)
    if base is None:
        return None
    return f"{base}/#/{route}?{urlencode([*query, WORKFLOW], quote_via=quote)}"


def experiment_url(uri: str, experiment_id: str, *, view: str | None = None, search: str | None = None) -> str | None:
    """The experiment's runs table in the model-training view, opened on saved view ``view`` (see
    :func:`save_campaign_view`) or filtered by ``search`` (MLflow's run search syntax), or None (no UI).

    Raises:
        ValueError: both ``view`` and ``search`` are given (MLflow ignores a saved view when the address
            carries a filter).
    """
    if view is not None and search is not None:
        raise ValueError(f"a runs-table link takes a saved view or a search filter, not both (got view={view!r}, "
                         f"search={search!r})")
    query = [("viewStateShareKey", view)] if view is not None else [("searchFilter", search)] if search else []
    return _link(uri, f"experiments/{quote(str(experiment_id), safe='')}/runs", query)


def run_url(uri: str, experiment_id: str, run_id: str) -> str | None:
    """A run's page (overview: parameters, metrics, tags; its charts and artifacts in tabs), or None (no UI)."""
    return _link(uri, f"experiments/{quote(str(experiment_id), safe='')}/runs/{quote(str(run_id), safe='')}")


def model_url(uri: str, name: str, version: str | int | None = None) -> str | None:
    """A registered model's page (its versions and aliases), or one version's page, or None (no UI)."""
    route = f"models/{quote(name, safe='')}"
    return _link(uri, route if version is None else f"{route}/versions/{quote(str(version), safe='')}")


def tag_experiment(mlflow_client: Any, experiment_id: str, tags: Mapping[str, str] | None = None) -> None:
    """Mark experiment ``experiment_id`` as model development (``mlflow.experimentKind``), unless it already
    has a kind (one chosen in the UI stays). ``tags``: the experiment's tags when the caller has them (saves
    a request)."""
    if tags is None:
        tags = mlflow_client.get_experiment(experiment_id).tags
    if not tags.get(EXPERIMENT_KIND_TAG):
        mlflow_client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, MODEL_DEVELOPMENT)


def campaign_filter(uid: str) -> str:
    """MLflow's run search for one campaign launch: its own run and its trials' runs."""
    return f"tags.`hpo.campaign_uid` = '{uid}'"


def view_key(uid: str) -> str:
    """The saved view's key of campaign launch ``uid``."""
    return f"hpo-{uid}"


def save_campaign_view(mlflow_client: Any, experiment_id: str, *, uid: str, campaign: str,
                       objectives: Sequence[Mapping[str, str]], params: Sequence[str] = ()) -> str:
    """Save (or overwrite) the runs-table view of campaign launch ``uid`` in its experiment, and return its key
    for :func:`experiment_url`.

    The view, named ``campaign NAME``, shows that launch's runs: the campaign's run, its trials nested under
    it (newest first); its columns are each objective (``objectives``: dicts with ``metric``), the searched
    parameters ``params`` and the trial state (tag ``hpo.state``).
    """
    columns = [f"metrics.`{o['metric']}`" for o in objectives] + [f"params.`{p}`" for p in params]
    columns.append("tags.`hpo.state`")
    # first and wide enough: a trial's run name (its searched values), an objective's digits, the trial's state
    # (STOPPED trials end as KILLED runs in MLflow, which its status icon shows as a failure)
    widths = {"attributes.`Run Name`": 360, **{c: 150 for c in columns if c.startswith("metrics.")}, "tags.`hpo.state`": 110}
    # no sort by the objective: MLflow nests child runs under their parent only in the default order (newest first)
    state: dict[str, Any] = {"searchFilter": campaign_filter(uid), "selectedColumns": columns, "columnWidths": widths,
                             "columnOrder": list(widths)}  # MLflow sizes only the columns that it orders
    now = int(time.time() * 1000)
    envelope = {"name": f"campaign {campaign}", "createdAt": now, "updatedAt": now, "state": json.dumps(state)}
    value = json.dumps(envelope)
    if len(value) > _MAX_TAG_VALUE:  # hundreds of searched parameters: keep the objectives, drop parameter columns
        state["selectedColumns"] = [c for c in columns if not c.startswith("params.")]
        value = json.dumps({**envelope, "state": json.dumps(state)})
    key = view_key(uid)
    mlflow_client.set_experiment_tag(experiment_id, VIEW_TAG_PREFIX + key, value)
    return key


def campaign_url(uri: str, experiment_id: str, uid: str, view: str | None = None) -> str | None:
    """The campaign launch's runs table: on its saved view when there is one, else filtered to its runs."""
    if view is not None:
        return experiment_url(uri, experiment_id, view=view)
    return experiment_url(uri, experiment_id, search=campaign_filter(uid))


def saved_view(mlflow_client: Any, experiment_id: str, uid: str) -> str | None:
    """The key of campaign launch ``uid``'s saved view when its experiment has one (older campaigns have none)."""
    tags = mlflow_client.get_experiment(experiment_id).tags
    key = view_key(uid)
    return key if VIEW_TAG_PREFIX + key in tags else None
