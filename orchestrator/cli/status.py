"""``hpo status``, ``hpo list``: what campaigns there are and how they are doing."""

from __future__ import annotations

import time

import click

from orchestrator.cli._common import campaigns_dir_option


def _status_line(cdir: object) -> str:
    from orchestrator.state import CampaignDir

    assert isinstance(cdir, CampaignDir)
    state = cdir.state()
    status = state.get("status", "?")
    if status in ("running", "stopping") and not cdir.driver_alive():
        return f"crashed (driver pid {state.get('driver_pid')} is gone); `hpo resume {cdir.name}` continues it"
    return status


def campaign_link(cdir: object) -> str | None:
    """The campaign's runs table in MLflow's UI, from what the launch recorded (no request to the server, which
    may be down); None before the launch reached MLflow, for a local store, and for campaigns launched before
    the experiment id was recorded."""
    from orchestrator.state import CampaignDir, read_json
    from tracking import ui

    assert isinstance(cdir, CampaignDir)
    recorded = read_json(cdir.tracking_file, {}) or {}
    uid = cdir.state().get("uid")
    if not (recorded.get("uri") and recorded.get("experiment_id") and uid):
        return None
    return ui.campaign_url(recorded["uri"], recorded["experiment_id"], uid, recorded.get("view"))


@click.command("status")
@click.argument("name")
@campaigns_dir_option
@click.option("--watch", is_flag=True, help="Refresh every 2 s until the campaign ends (Ctrl-C to leave).")
def command(name: str, campaigns_dir: str | None, watch: bool) -> None:
    """Show campaign NAME: its status and a table of its trials (state, parameters, last metrics, best).

    Works while the campaign runs (from another shell), after it ended, and after a crash.

    \b
    Example:
      hpo status lhc-tpe-asha --watch
    """
    from rich.console import Console, Group
    from rich.live import Live
    from rich.text import Text

    from orchestrator.config import load_campaign
    from orchestrator.progress import render_trials
    from orchestrator.state import CampaignDir

    cdir = CampaignDir.existing(name, campaigns_dir)
    spec = load_campaign(cdir.config_file, check_data=False, check_workload_face=False)
    metrics = [o.metric for o in spec.config.search.objective]
    modes = [o.mode for o in spec.config.search.objective]

    def view() -> Group:
        state = cdir.state()
        budget = sum(r.get("trials", 0) for r in state.get("runs", []))
        head = Text.assemble(
            (f"{cdir.name}", "bold"), f" · {_status_line(cdir)} · {spec.config.workload.name} · ",
            f"tracking {state.get('tracking_uri') or '—'} · {cdir.root}",
        )
        parts: list[object] = [head]
        link = campaign_link(cdir)  # each refresh: a watched campaign may reach MLflow later
        if link:
            parts.append(Text(f"MLflow: {link}", no_wrap=True, overflow="ignore"))  # whole, so that it can be opened
        parts.append(render_trials(cdir.trials(), metrics, modes, budget=budget))
        if state.get("message"):
            parts.append(Text(state["message"]))
        return Group(*parts)  # type: ignore[arg-type]

    import sys

    console = Console() if sys.stdout.isatty() else Console(width=160)
    if not watch:
        console.print(view())
        return
    with Live(view(), console=console, refresh_per_second=1) as live:
        try:
            while cdir.state().get("status") in ("running", "stopping", "created") and cdir.driver_alive():
                time.sleep(2)
                live.update(view())
        except KeyboardInterrupt:
            pass
        live.update(view())


@click.command("list")
@campaigns_dir_option
def list_command(campaigns_dir: str | None) -> None:
    """List the campaigns: status, trials done / budget, best objective, last update."""
    from rich.console import Console
    from rich.table import Table

    from orchestrator.config import load_campaign
    from orchestrator.progress import ranked_records, trial_done
    from orchestrator.state import CampaignDir, campaigns_root

    root = campaigns_root(campaigns_dir)
    table = Table(title=f"campaigns in {root}", title_justify="left")
    for col in ("name", "status", "workload", "trials", "best", "updated"):
        table.add_column(col)
    for path in sorted(root.glob("*/state.json")) if root.exists() else []:
        cdir = CampaignDir(path.parent)
        state = cdir.state()
        records = cdir.trials()
        try:
            spec = load_campaign(cdir.config_file, check_data=False, check_workload_face=False)
            objectives = spec.config.search.objective
            ranked = ranked_records(records, [o.mode for o in objectives], len(records))
            if len(objectives) > 1:
                front = sum(1 for r in ranked if r["pareto_rank"] == 1)
                best_text = f"Pareto front: {front} trial(s)" if front else "—"
            else:
                best_text = f"{objectives[0].metric} {ranked[0]['objectives'][0]:.4g}" if ranked else "—"
            workload = spec.config.workload.name
        except Exception as exc:  # a broken campaign must not hide the others
            best_text, workload = f"unreadable: {exc}", "?"
        done = sum(1 for r in records.values() if trial_done(r))
        budget = sum(r.get("trials", 0) for r in state.get("runs", []))
        updated = time.strftime("%Y-%m-%d %H:%M", time.localtime(state.get("updated", 0)))
        table.add_row(cdir.name, _status_line(cdir), workload, f"{done}/{budget}", best_text, updated)
    Console().print(table if table.row_count else f"no campaigns in {root} yet; start one with `hpo launch FILE.yaml`")


list_command.name = "list"
