"""``hpo server``: the embedded MLflow tracking server."""

from __future__ import annotations

import os

import click


@click.command("server")
@click.option("--host", default="127.0.0.1", show_default=True, metavar="ADDR",
              help="Address to listen on. Another address than loopback serves other nodes: use it with --auth "
                   "(or behind your site's authenticating proxy), else it warns.")
@click.option("--port", type=int, default=None, help="Port (default: a free one).")
@click.option("--backend-store-uri", default=None, envvar="MLFLOW_BACKEND_STORE_URI",
              help="Where runs are stored (default sqlite:///.hpo/mlflow/mlflow.db; clusters: postgresql://USER@HOST/DB "
                   "with the password in $PGPASSWORD, or the whole URI in $MLFLOW_BACKEND_STORE_URI).")
@click.option("--artifacts-destination", default=None, envvar="MLFLOW_ARTIFACTS_DESTINATION",
              help="Where artifacts go (default .hpo/mlflow/artifacts; clusters: s3://BUCKET/PATH).")
@click.option("--auth", is_flag=True,
              help="Require a user name and password (MLflow's basic-auth app). The admin's password comes from "
                   "$MLFLOW_AUTH_ADMIN_PASSWORD (user name: $MLFLOW_AUTH_ADMIN_USERNAME, default admin); clients "
                   "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD.")
@click.option("--default-permission", type=click.Choice(["READ", "EDIT", "MANAGE", "NO_PERMISSIONS"]), default="READ",
              show_default=True, help="With --auth: what every user may do on experiments nobody granted them anything on.")
@click.option("--auth-database-uri", default=None, envvar="MLFLOW_AUTH_DATABASE_URI",
              help="With --auth: where users and permissions live (default sqlite:///.hpo/mlflow/basic_auth.db; "
                   "a group's server: a PostgreSQL database, password from the environment as for the store).")
@click.option("--detach", is_flag=True, help="Leave it running in the background and return.")
@click.option("--stop", is_flag=True, help="Stop the recorded embedded server.")
@click.option("--status", is_flag=True, help="Say whether the recorded server answers, and where.")
@click.pass_context
def command(ctx: click.Context, host: str, port: int | None, backend_store_uri: str | None,
            artifacts_destination: str | None, auth: bool, default_permission: str, auth_database_uri: str | None,
            detach: bool, stop: bool, status: bool) -> None:
    """Run the MLflow tracking server campaigns log to (hpo launch starts one itself when needed).

    Binds 127.0.0.1 unless --host says otherwise. Runs in the foreground until Ctrl-C (which stops its
    whole process group), or with --detach in the background; its address is recorded in
    .hpo/mlflow/server.json, where `hpo launch`, `hpo best` and `hpo promote` find it. A store written by
    an older MLflow is upgraded first (as `mlflow db upgrade` would). See docs/tracking.md for a group's
    server: PostgreSQL, artifact proxying, --auth, TLS behind a reverse proxy.

    Passwords come from the environment: the store URI reaches the server through its environment, never
    its arguments, and is shown and recorded with the password as ***.

    \b
    Examples:
      hpo server --detach
      MLFLOW_BACKEND_STORE_URI=postgresql://mlflow:...@db/mlflow MLFLOW_AUTH_ADMIN_PASSWORD=... \\
        hpo server --host 0.0.0.0 --port 5000 --auth
    """
    import time

    from tracking.credentials import has_password, redact
    from tracking.server import (
        ServerAuth,
        healthy,
        is_loopback,
        recorded,
        start_server,
        stop_group,
        stop_server,
    )

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
        click.echo(f"MLflow server {info.uri} (pid {info.pid}): {'up' if up else 'NOT answering'}{', authentication on' if info.auth else ''}; store "
                   f"{redact(info.backend_store_uri)}; artifacts {redact(info.artifacts_destination)}; log {info.log}")
        raise SystemExit(0 if up else 1)
    current = recorded()
    asked = port or backend_store_uri or artifacts_destination or auth or host != "127.0.0.1"
    if current is not None and healthy(current.uri) and not asked:
        click.echo(f"an MLflow server is already running at {current.uri} (pid {current.pid}); UI: {current.uri}")
        return
    if not is_loopback(host) and not auth:
        click.echo(f"warning: serving on {host} without authentication: anyone who reaches this address can read, "
                   "change and delete every run and model; add --auth, or put an authenticating proxy in front "
                   "(docs/tracking.md)", err=True)
    guard = ServerAuth(default_permission=default_permission, database_uri=auth_database_uri,
                       admin_username=os.environ.get("MLFLOW_AUTH_ADMIN_USERNAME") or "admin") if auth else None
    info = start_server(port=port, backend_store_uri=backend_store_uri, artifacts_destination=artifacts_destination,
                        host=host, auth=guard)
    access = f"; users: --auth (admin {guard.admin_username}, others {default_permission})" if guard else ""
    click.echo(f"MLflow server up at {info.uri} (pid {info.pid}); UI: {info.uri}; store {info.backend_store_uri}; "
               f"log {info.log}{access}")
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
