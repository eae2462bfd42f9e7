"""Python API for notebooks and scripts.

    >>> from orchestrator import Campaign
    >>> c = Campaign.from_yaml("search_spaces/demo.yaml", overrides=["budget.trials=8"])
    >>> c.run()                 # live table in the notebook; blocks until the budget is spent
    >>> c.best(3)               # the three best trials (records with params and objectives)
    >>> c.dataframe()           # one row per trial: state, parameters, last metrics, objectives

The same campaign is visible in MLflow (one parent run, one nested run per trial) while it runs, and from
the command line (``hpo status NAME``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.config import CampaignSpec, load_campaign
from orchestrator.state import CampaignDir, TrialState
from trainables.errors import HpoError

if TYPE_CHECKING:
    import pandas as pd

    from orchestrator.runner import RunOutcome


class Campaign:
    """A campaign: its validated spec and its state directory.

    Create one with :meth:`from_yaml` (a new or existing campaign described by a file) or :meth:`open`
    (an existing campaign by name).
    """

    def __init__(self, spec: CampaignSpec, campaigns_dir: str | Path | None = None) -> None:
        self.spec = spec
        self.campaigns_dir = campaigns_dir
        self.dir = CampaignDir.of(spec.config.name, campaigns_dir)

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: Iterable[str] = (), *, campaigns_dir: str | Path | None = None) -> Campaign:
        """Load and validate a campaign file (``overrides`` as in ``--set``: ``["trial.workers=4"]``)."""
        return cls(load_campaign(path, list(overrides)), campaigns_dir)

    @classmethod
    def open(cls, name: str, *, campaigns_dir: str | Path | None = None) -> Campaign:
        """An existing campaign by name."""
        cdir = CampaignDir.existing(name, campaigns_dir)
        return cls(load_campaign(cdir.config_file, check_data=False, check_workload_face=False), campaigns_dir)

    @property
    def name(self) -> str:
        """The campaign name."""
        return self.spec.config.name

    # --- running ---------------------------------------------------------------------------------------

    def run(self, *, address: str | None = None, progress: bool = True) -> RunOutcome:
        """Run the campaign: launch it when new, resume it when stopped or crashed.

        Raises:
            HpoError: the campaign already finished (use :meth:`extend`) or runs elsewhere.
        """
        from orchestrator import runner

        status = self.dir.state().get("status")
        if status is None:
            return runner.launch(self.spec, campaigns_dir=self.campaigns_dir, address=address, progress=progress)
        if status == "finished":
            raise HpoError(f"campaign '{self.name}' is finished; use .extend(trials) to add trials")
        return runner.resume(self.name, campaigns_dir=self.campaigns_dir, address=address, progress=progress)

    def extend(self, trials: int, *, address: str | None = None, progress: bool = True) -> RunOutcome:
        """Add ``trials`` trials, the sampler warm-started from all earlier ones."""
        from orchestrator import runner

        return runner.extend(self.name, trials, campaigns_dir=self.campaigns_dir, address=address, progress=progress)

    def stop(self, timeout: float = 300) -> str:
        """Stop the running campaign gracefully (from another process than the driver)."""
        from orchestrator import runner

        return runner.request_stop(self.name, campaigns_dir=self.campaigns_dir, timeout=timeout)

    # --- looking -----------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Status, trial counts per state, budget and the best trial so far."""
        state = self.dir.state()
        counts = TrialState.counts(self.dir.trials().values())
        best = self.best(1)
        return {
            "name": self.name, "status": state.get("status", "new"), "counts": counts,
            "budget": sum(r.get("trials", 0) for r in state.get("runs", [])) or self.spec.config.budget.trials,
            "best": best[0] if best else None, "tracking_uri": state.get("tracking_uri"), "directory": str(self.dir.root),
        }

    def trials(self) -> dict[str, dict[str, Any]]:
        """Every trial record (state, params, last metrics, objectives, error), by trial id."""
        return self.dir.trials()

    def best(self, k: int = 1, objective: int | None = None) -> list[dict[str, Any]]:
        """The ``k`` best finished (or early-stopped) trials, best first.

        Args:
            k: how many.
            objective: rank by this objective alone (its index in ``search.objective``). By default the
                campaign's own ranking: its objective, or with several, non-domination (Pareto rank 1 first,
                ties by the first objective; each record then carries its ``pareto_rank``).
        """
        from orchestrator.progress import best_records, ranked_records

        objectives = self.spec.config.search.objective
        if objective is None:
            return ranked_records(self.dir.trials(), [o.mode for o in objectives], k)
        if not 0 <= objective < len(objectives):
            raise HpoError(f"objective must be an index of search.objective (0 to {len(objectives) - 1}), but got {objective}")
        return [dict(r) for r in best_records(self.dir.trials(), objective, objectives[objective].mode, k)]

    def dataframe(self) -> pd.DataFrame:
        """One row per trial: id, state, epochs, ``param.*``, last ``metric`` values and the objectives."""
        import pandas as pd

        metrics = [o.metric for o in self.spec.config.search.objective]
        rows = []
        for r in self.dir.trials().values():
            row: dict[str, Any] = {"trial_id": r["trial_id"], "state": r.get("state"), "epochs": r.get("epoch"),
                                   "error": r.get("error")}
            row.update({f"param.{k}": v for k, v in r.get("params", {}).items()})
            row.update(r.get("last", {}))
            for name, value in zip(metrics, r.get("objectives") or [None] * len(metrics), strict=True):
                row[f"objective.{name}"] = value
            rows.append(row)
        return pd.DataFrame(rows)

    def __rich__(self) -> Any:
        from orchestrator.progress import render_trials

        objectives = self.spec.config.search.objective
        return render_trials(self.dir.trials(), [o.metric for o in objectives], [o.mode for o in objectives],
                             budget=self.status()["budget"])

    def __repr__(self) -> str:
        status = self.status()
        return f"Campaign({self.name!r}, status={status['status']!r}, trials={status['counts']})"
