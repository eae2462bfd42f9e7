"""tracking.ui: the UI's addresses (credentials masked, the model-training view), the experiment kind tag and the
campaign's saved view, on a real MLflow server. What a browser makes of them: test_ui_browser.py."""

from __future__ import annotations

import json
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest

from tracking import ui


def query(link: str | None) -> dict[str, list[str]]:
    assert link is not None
    return parse_qs(urlsplit(link).fragment.partition("?")[2])


def test_links_open_the_model_training_view() -> None:
    uri = "http://127.0.0.1:5000/"
    assert ui.experiment_url(uri, "7") == "http://127.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning"
    assert ui.run_url(uri, "7", "abc") == "http://127.0.0.1:5000/#/experiments/7/runs/abc?workflowType=machine_learning"
    assert ui.model_url(uri, "lhc cnn") == "http://127.0.0.1:5000/#/models/lhc%20cnn?workflowType=machine_learning"
    assert ui.model_url(uri, "m", 3) == "http://127.0.0.1:5000/#/models/m/versions/3?workflowType=machine_learning"
    assert query(ui.experiment_url(uri, "7", view="hpo-x")) == {"viewStateShareKey": ["hpo-x"],
                                                              "workflowType": ["machine_learning"]}
    assert query(ui.campaign_url(uri, "7", "u1")) == {"searchFilter": ["tags.`hpo.campaign_uid` = 'u1'"],
                                                       "workflowType": ["machine_learning"]}
    # a server behind a reverse proxy's path keeps it
    assert ui.run_url("https://mlflow.example.org/team/", "1", "r") == (
        "https://mlflow.example.org/team/#/experiments/1/runs/r?workflowType=machine_learning")


def test_credentials_are_masked_and_local_stores_have_no_ui() -> None:
    link = ui.experiment_url("http://alice:s3cret@127.0.0.1:5000", "1")
    assert link is not None and "s3cret" not in link and link.startswith("http://alice:***@127.0.0.1:5000/#/")
    for uri in ("sqlite:///mlflow.db", "/tmp/mlruns", "file:///tmp/mlruns", "databricks"):
        assert ui.experiment_url(uri, "1") is None and ui.model_url(uri, "m") is None, uri


def test_a_link_takes_a_view_or_a_filter_not_both() -> None:
    with pytest.raises(ValueError, match="not both"):
        ui.experiment_url("http://127.0.0.1:5000", "1", view="v", search="tags.x = 'y'")


def test_experiments_are_tagged_as_model_development(mlflow_server: str) -> None:
    from tracking.client import client, experiment_id

    c = client(mlflow_server)
    name = f"ui-kind-{uuid.uuid4().hex[:8]}"
    created = experiment_id(c, name)
    assert c.get_experiment(created).tags[ui.EXPERIMENT_KIND_TAG] == ui.MODEL_DEVELOPMENT
    # an experiment made elsewhere is tagged when a campaign finds it; a kind chosen in the UI stays
    other = c.create_experiment(f"{name}-other")
    assert experiment_id(c, f"{name}-other") == other
    assert c.get_experiment(other).tags[ui.EXPERIMENT_KIND_TAG] == ui.MODEL_DEVELOPMENT
    c.set_experiment_tag(other, ui.EXPERIMENT_KIND_TAG, "genai_development")
    experiment_id(c, f"{name}-other")
    assert c.get_experiment(other).tags[ui.EXPERIMENT_KIND_TAG] == "genai_development"


def test_campaign_view_is_saved_in_the_experiment(mlflow_server: str) -> None:
    from tracking.client import client, experiment_id

    c = client(mlflow_server)
    exp = experiment_id(c, f"ui-view-{uuid.uuid4().hex[:8]}")
    uid = uuid.uuid4().hex
    assert ui.saved_view(c, exp, uid) is None
    key = ui.save_campaign_view(c, exp, uid=uid, campaign="lhc", objectives=[{"metric": "val_loss", "mode": "min"}],
                                params=["learning_rate", "filters"])
    assert ui.saved_view(c, exp, uid) == key
    envelope = json.loads(c.get_experiment(exp).tags[ui.VIEW_TAG_PREFIX + key])
    assert envelope["name"] == "campaign lhc" and isinstance(envelope["createdAt"], int)
    state = json.loads(envelope["state"])
    assert state["searchFilter"] == f"tags.`hpo.campaign_uid` = '{uid}'"
    assert state["selectedColumns"][:3] == ["metrics.`val_loss`", "params.`learning_rate`", "params.`filters`"]
    assert "orderByKey" not in state  # MLflow nests trials under the campaign only in its default order
    # MLflow's own search accepts the view's filter
    assert c.search_runs([exp], filter_string=state["searchFilter"]) == []
    # hundreds of parameters: the view still fits in a tag, with the objective's column
    many = ui.save_campaign_view(c, exp, uid=uid, campaign="lhc", objectives=[{"metric": "val_loss", "mode": "min"}],
                                 params=[f"p{i:04d}" for i in range(600)])
    state = json.loads(json.loads(c.get_experiment(exp).tags[ui.VIEW_TAG_PREFIX + many])["state"])
    assert "metrics.`val_loss`" in state["selectedColumns"]
