"""``hpo sync``: deliver the tracking operations a campaign's spool still holds."""

from __future__ import annotations

import click

from orchestrator.cli._common import campaigns_dir_option


@click.command("sync")
@click.argument("name")
@campaigns_dir_option
@click.option("--timeout", type=float, default=300, show_default=True,
              help="Give up after this many seconds of an unreachable server (what is left stays for the next sync).")
def command(name: str, campaigns_dir: str | None, timeout: float) -> int:
    """Deliver to MLflow what campaign NAME logged but could not send.

    Every metric, parameter, tag, plot, checkpoint and model a trial logs is first written to the campaign's
    spool (CAMPAIGN/spool/, fsynced JSON lines), then sent. What a killed trial or driver, or an unreachable
    server, left there is delivered by the next trial and by `hpo resume`; `hpo sync` delivers it now, in
    order, with nothing sent twice. Journals of trials that are still running are left to them.

    Exit status 0 when the spool is empty afterwards, 1 when something is still held.

    \b
    Example:
      hpo sync lhc-tpe-asha
    """
    from rich.progress import Progress

    from orchestrator.state import CampaignDir
    from orchestrator.tracking_bridge import sync
    from tracking.spool import pending_count

    cdir = CampaignDir.existing(name, campaigns_dir)
    total, journals = pending_count(cdir.spool_dir)
    if not total:
        click.echo(f"campaign '{name}': nothing to deliver, its spool is empty")
        return 0
    click.echo(f"campaign '{name}': {total} tracking operation(s) in {journals} journal(s) to deliver")
    with Progress(transient=True) as bar:
        task = bar.add_task("delivering", total=total)
        report = sync(cdir, deadline_s=timeout, progress=lambda n: bar.advance(task, n))
    left, _ = pending_count(cdir.spool_dir)
    dropped = f"; {report.dropped} dropped as undeliverable ({report.errors[-1]})" if report.dropped else ""
    if left:
        why = f" ({report.errors[-1]})" if report.errors else " (held by trials still running)"
        click.echo(f"delivered {report.delivered}, {left} still held{why}{dropped}; run `hpo sync {name}` again", err=True)
        return 1
    click.echo(f"delivered {report.delivered} tracking operation(s){dropped}; the spool is empty")
    return 0
