"""``hpo server``: the embedded MLflow tracking server."""

from __future__ import annotations

import click


@click.command("server")
@click.option("--port", type=int, default=None, help="Port on 127.0.0.1 (default: a free one).")
@click.option("--backend-store-uri", default=None, envvar="MLFLOW_BACKEND_STORE_URI",
              help="Where runs are stored (default sqlite:///.hpo/mlflow/mlflow.db; clusters: postgresql://USER@HOST/DB "
                   "with the password in $PGPASSWORD, or the whole URI in $MLFLOW_BACKEND_STORE_URI).")
@click.option("--artifacts-destination", default=None, envvar="MLFLOW_ARTIFACTS_DESTINATION",
              help="Where artifacts go (default .hpo/mlflow/artifacts; clusters: s3://BUCKET/PATH).")
@click.option("--detach", is_flag=True, help="Leave it running in the background and return.")
@click.option("--stop", is_flag=True, help="Stop the recorded embedded server.")
@click.option("--status", is_flag=True, help="Say whether the recorded server answers, and where.")
@click.pass_context
def command(ctx: click.Context, port: int | None, backend_store_uri: str | None, artifacts_destination: str | None,
            detach: bool, stop: bool, status: bool) -> None:
    """Run the MLflow tracking server campaigns log to (hpo launch starts one itself when needed).

    Binds 127.0.0.1 only. Runs in the foreground until Ctrl-C (which stops its whole process group),
    or with --detach in the background; its address is recorded in .hpo/mlflow/server.json, where
    `hpo launch`, `hpo best` and `hpo promote` find it. See docs/tracking.md for PostgreSQL and S3.

    Passwords come from the environment: the store URI reaches the server through its environment, never
    its arguments, and is shown and recorded with the password as ***.
    """
    import time

    from tracking.credentials import has_password, redact
    from tracking.server import healthy, recorded, start_server, stop_group, stop_server

    source = ctx.get_parameter_source("backend_store_uri")
    if backend_store_uri and source == click.core.ParameterSource.COMMANDLINE and has_password(backend_store_uri):
        click.echo(f"warning: the password in --backend-store-uri {redact(backend_store_uri)} is visible in this shell's "
                   "history and process list; give postgresql://USER@HOST/DB with the password in $PGPASSWORD, or the "
                   "whole URI in $MLFLOW_BACKEND_STORE_URI, instead", err=True)
    if stop:
        click.echo(stop_server())
        return
    if status:
        info = recorded()
        if info is None:
            click.echo("no embedded MLflow server recorded; start one with `hpo server --detach`")
            raise SystemExit(1)
        up = healthy(info.uri)
        click.echo(f"MLflow server {info.uri} (pid {info.pid}): {'up' if up else 'NOT answering'}; store "
                   f"{redact(info.backend_store_uri)}; artifacts {redact(info.artifacts_destination)}; log {info.log}")
        raise SystemExit(0 if up else 1)
    current = recorded()
    if current is not None and healthy(current.uri) and not (port or backend_store_uri or artifacts_destination):
        click.echo(f"an MLflow server is already running at {current.uri} (pid {current.pid}); UI: {current.uri}")
        return
    info = start_server(port=port, backend_store_uri=backend_store_uri, artifacts_destination=artifacts_destination)
    click.echo(f"MLflow server up at {info.uri} (pid {info.pid}); UI: {info.uri}; store {info.backend_store_uri}; "
               f"log {info.log}")
    if detach:
        return
    try:
        while healthy(info.uri, timeout=5):
            time.sleep(5)
        click.echo("the MLflow server stopped answering", err=True)
    except KeyboardInterrupt:
        pass
    finally:
        left = stop_group(info.process or info.pid)
        click.echo(left or "MLflow server stopped")
