"""``hpo promote``: the best trial's model into the MLflow Model Registry."""

from __future__ import annotations

import click

from orchestrator.cli._common import campaigns_dir_option


@click.command("promote")
@click.argument("name")
@click.option("--model", "model_name", required=True, help="Registered model name, e.g. lhc-cnn.")
@click.option("--alias", default="champion", show_default=True, help="Alias to point at the new version.")
@click.option("--require", "requirements", multiple=True, metavar="METRIC>=VALUE",
              help="Refuse unless the best trial meets this, e.g. --require 'val_auc>=0.9' (repeatable).")
@click.option("--tracking-uri", default=None, help="MLflow URI (default: $MLFLOW_TRACKING_URI, else the campaign's).")
@campaigns_dir_option
def command(name: str, model_name: str, alias: str, requirements: tuple[str, ...], tracking_uri: str | None,
            campaigns_dir: str | None) -> None:
    """Register the best trial's model of campaign NAME as a new version of --model and set --alias.

    The version is tagged with the campaign, trial, objective and data checksum. Running it again does
    nothing new (the same run's model is not registered twice). Load it with
    mlflow.pyfunc.load_model("models:/NAME@ALIAS"), or serve it with `mlflow models serve`, where hpo is
    not installed too: the model carries its own code and needs only MLflow, TensorFlow and tf-keras.
    """
    from orchestrator.cli.best import tracking_target
    from tracking import ui
    from tracking.credentials import redact
    from tracking.registry import promote

    uri, experiment, parent = tracking_target(name, campaigns_dir, tracking_uri)
    result = promote(uri, experiment, name, model_name, alias=alias, requirements=requirements, parent_run_id=parent)
    what = "registered as" if result.created else "already registered as"
    click.echo(f"trial {result.trial_id} (run {result.run_id}) {what} {result.name} version {result.version}; "
               f"alias {result.alias} -> version {result.version}; load with models:/{result.name}@{result.alias}")
    link = ui.model_url(uri, result.name, result.version)
    if link is not None:
        click.echo(f"MLflow: {link}")
    # the model carries its own code (tracking/models.py): neither command needs hpo where it runs
    click.echo(f"serve:  MLFLOW_TRACKING_URI={redact(uri)} mlflow models serve -m models:/{result.name}@{result.alias} "
               "--env-manager local --host 127.0.0.1 --port 5001")
