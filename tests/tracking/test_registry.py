"""Promotion picks the best trial that has a model, and says so when better trials have none."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest


def test_requirement_failure_names_the_best_trial_with_a_model_and_the_better_ones_without(
        store_server: str, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from tracking.client import TAG_CAMPAIGN, TAG_OBJECTIVE, TAG_ROLE, TAG_TRIAL, TAG_UID
    from tracking.models import MODEL_ARTIFACT
    from tracking.registry import best_trials, promote
    from trainables.errors import HpoError

    client = MlflowClient(store_server)
    name = f"reg-{uuid.uuid4().hex[:8]}"
    experiment = client.create_experiment(name)
    uid = uuid.uuid4().hex
    client.create_run(experiment, tags={TAG_CAMPAIGN: name, TAG_ROLE: "campaign", TAG_UID: uid,
                                        TAG_OBJECTIVE: json.dumps([{"metric": "val_auc", "mode": "max"}])})
    model_dir = tmp_path / MODEL_ARTIFACT
    model_dir.mkdir()
    (model_dir / "MLmodel").write_text("flavors: {}\n")
    for trial, auc, has_model in (("stopped1", 0.97, False), ("stopped2", 0.91, False), ("finished", 0.31, True)):
        run = client.create_run(experiment, tags={TAG_ROLE: "trial", TAG_UID: uid, TAG_TRIAL: trial}).info.run_id
        client.log_metric(run, "val_auc", auc)
        if has_model:
            client.log_artifacts(run, str(model_dir), MODEL_ARTIFACT)

    ranked, _ = best_trials(store_server, name, name)
    assert [(r.trial_id, r.has_model) for r in ranked] == [("stopped1", False), ("stopped2", False), ("finished", True)]
    with pytest.raises(HpoError) as info:
        promote(store_server, name, name, f"{name}-model", requirements=["val_auc>=0.5"])
    assert str(info.value) == ("not promoted: the best trial with a model, finished, has val_auc=0.31, which fails the "
                               "requirement val_auc >= 0.5 (better trials without a model: stopped1, stopped2)")
    assert not client.search_registered_models(f"name = '{name}-model'")
