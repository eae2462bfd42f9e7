"""Human-readable summaries of a campaign (rich renderables), shared by ``hpo validate`` and ``hpo launch``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Group
from rich.table import Table

from orchestrator.space import CategoricalParam, FixedParam, FloatParam, IntParam

if TYPE_CHECKING:
    from orchestrator.config import CampaignSpec


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _describe(p: FloatParam | IntParam | CategoricalParam | FixedParam) -> tuple[str, str]:
    if isinstance(p, (FloatParam, IntParam)):
        extra = " log" if p.log else (f" step {p.step}" if p.step else "")
        return p.type, f"[{p.low}, {p.high}]{extra}"
    if isinstance(p, CategoricalParam):
        return "categorical", ", ".join(map(str, p.choices))
    return "fixed", repr(p.value)


def campaign_summary(campaign: CampaignSpec) -> Group:
    """A table of the campaign's settings and one of its search space."""
    c = campaign.config
    overview = Table.grid(padding=(0, 2))
    overview.add_column(style="bold")
    overview.add_column()
    data = Path(c.workload.data.path)
    size = f" ({_human_bytes(data.stat().st_size)})" if data.exists() else " (missing)"
    def _opts(model: object) -> str:
        options = model.options()  # type: ignore[attr-defined]
        return ", ".join(f"{k}={v}" for k, v in options.items() if v is not None) or "defaults"

    objectives = ", ".join(f"{o.metric} ({o.mode})" for o in c.search.objective)
    if len(c.search.objective) > 1:
        objectives += "; best trials by Pareto rank, then the first"
    budget = f"{c.budget.trials} trials" + (f", at most {c.budget.time:g} s" if c.budget.time else "")
    per_trial = f"{c.trial.workers} worker(s) × {c.trial.cpus_per_worker:g} CPU"
    if c.trial.gpus_per_worker:
        per_trial += f" + {c.trial.gpus_per_worker:g} GPU"
    rows = [
        ("campaign", f"{c.name}" + (f" — {c.description}" if c.description else "")),
        ("file", str(campaign.source)),
        ("workload", c.workload.name + (f" (fixed: {c.workload.params})" if c.workload.params else "")),
        ("data", f"{data}{size}, split {list(c.workload.data.split)}"),
        ("objective", objectives),
        ("sampler", f"{c.search.sampler.name} ({_opts(c.search.sampler)}), seed {c.seed}"),
        ("scheduler", f"{c.search.scheduler.name} ({_opts(c.search.scheduler)})"),
        ("budget", budget),
        ("trial", f"{per_trial}, {c.trial.epochs} epochs, {c.trial.max_failures} retries, {c.trial.placement_strategy}"),
        ("concurrency", str(c.concurrency or "as resources allow")),
        ("tracking", f"{c.tracking.uri or '$MLFLOW_TRACKING_URI or embedded server'}, experiment {c.experiment}"),
    ]
    for key, value in rows:
        overview.add_row(key, value)

    space = Table(title=f"search space ({len(campaign.space.searched)} searched)", title_justify="left")
    for col in ("parameter", "type", "values", "when"):
        space.add_column(col)
    for name, p in campaign.space.params.items():
        kind, values = _describe(p)
        when = ", ".join(f"{k} = {v}" for k, v in (p.when or {}).items())
        space.add_row(name, kind, values, when)
    return Group(overview, space)
