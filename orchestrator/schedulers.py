"""Ray Tune trial schedulers (early stopping, PBT) by name, with validated options.

``search.scheduler`` is ``{name: NAME, OPTION: VALUE, ...}`` (or just ``NAME``). Time is counted in
epochs: each trial reports once per epoch, so ``max_t``, ``grace_period`` and ``perturbation_interval``
are numbers of epochs. Schedulers act on the first objective; with several objectives only ``fifo``
(no early stopping) is allowed.

=============  ==========================================  =========================================
name           Ray Tune class                              what it does
=============  ==========================================  =========================================
``fifo``       ``FIFOScheduler``                           runs every trial to the end
``asha``       ``ASHAScheduler``                           asynchronous successive halving
``hyperband``  ``HyperBandScheduler``                      synchronous HyperBand brackets
``median``     ``MedianStoppingRule``                      stops trials below the running median
``pbt``        ``PopulationBasedTraining``                 exploits/explores from checkpoints
=============  ==========================================  =========================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from ray.tune.schedulers import TrialScheduler

    from orchestrator.space import SearchSpace

TIME_ATTR = "training_iteration"  # one reported result per epoch


class _Scheduler(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: whether the scheduler reads the objective (all but FIFO)
    uses_metric: ClassVar[bool] = True

    def build(self, *, metric: str, mode: str, epochs: int, space: SearchSpace) -> TrialScheduler:
        """Construct the Ray Tune scheduler."""
        raise NotImplementedError  # every registered scheduler overrides it

    def options(self) -> dict[str, Any]:
        """The options as written (name excluded), for logging."""
        return self.model_dump(exclude={"name"})


class FIFO(_Scheduler):
    """No early stopping: every trial runs ``trial.epochs`` epochs."""

    uses_metric: ClassVar[bool] = False
    name: Literal["fifo"]

    def build(self, *, metric: str, mode: str, epochs: int, space: SearchSpace) -> TrialScheduler:
        from ray.tune.schedulers import FIFOScheduler

        return FIFOScheduler()


class ASHA(_Scheduler):
    """Asynchronous successive halving: at each rung keep the best 1/reduction_factor of the trials."""

    name: Literal["asha"]
    max_t: int | None = Field(None, ge=1, description="epochs a trial may run (default trial.epochs)")
    grace_period: int = Field(1, ge=1, description="epochs before a trial can be stopped")
    reduction_factor: float = Field(3, gt=1)
    brackets: int = Field(1, ge=1)

    def build(self, *, metric: str, mode: str, epochs: int, space: SearchSpace) -> TrialScheduler:
        from ray.tune.schedulers import ASHAScheduler

        return ASHAScheduler(
            time_attr=TIME_ATTR, metric=metric, mode=mode, max_t=self.max_t or epochs,
            grace_period=self.grace_period, reduction_factor=self.reduction_factor, brackets=self.brackets,
        )


class HyperBand(_Scheduler):
    """HyperBand: several successive-halving brackets with different aggressiveness."""

    name: Literal["hyperband"]
    max_t: int | None = Field(None, ge=1, description="epochs a trial may run (default trial.epochs)")
    reduction_factor: float = Field(3, gt=1)
    stop_last_trials: bool = True

    def build(self, *, metric: str, mode: str, epochs: int, space: SearchSpace) -> TrialScheduler:
        from ray.tune.schedulers import HyperBandScheduler

        return HyperBandScheduler(
            time_attr=TIME_ATTR, metric=metric, mode=mode, max_t=self.max_t or epochs,
            reduction_factor=self.reduction_factor, stop_last_trials=self.stop_last_trials,
        )


class Median(_Scheduler):
    """Median stopping rule: stop a trial whose best result is worse than the median of the others."""

    name: Literal["median"]
    grace_period: int = Field(1, ge=0, description="epochs before a trial can be stopped")
    min_samples_required: int = Field(3, ge=1, description="trials needed before the rule applies")
    hard_stop: bool = Field(True, description="stop (true) or only pause (false) a trial")

    def build(self, *, metric: str, mode: str, epochs: int, space: SearchSpace) -> TrialScheduler:
        from ray.tune.schedulers import MedianStoppingRule

        return MedianStoppingRule(
            time_attr=TIME_ATTR, metric=metric, mode=mode, grace_period=self.grace_period,
            min_samples_required=self.min_samples_required, hard_stop=self.hard_stop,
        )


class PBT(_Scheduler):
    """Population-based training: poor trials copy a good trial's checkpoint and perturb its parameters.

    ``mutate`` names the searched parameters PBT may change (default: every float/int/categorical one
    that is not conditional); new values are drawn from the same ranges as in the space.
    """

    name: Literal["pbt"]
    perturbation_interval: int = Field(1, ge=1, description="epochs between exploit/explore steps")
    mutate: list[str] | None = None
    quantile_fraction: float = Field(0.25, ge=0, le=0.5)
    resample_probability: float = Field(0.25, ge=0, le=1)

    def mutated(self, space: SearchSpace) -> list[str]:
        """The parameters PBT mutates."""
        if self.mutate is not None:
            return list(self.mutate)
        return [n for n in space.searched if space.params[n].when is None]

    def build(self, *, metric: str, mode: str, epochs: int, space: SearchSpace) -> TrialScheduler:
        from ray import tune
        from ray.tune.schedulers import PopulationBasedTraining

        from orchestrator.space import CategoricalParam, FloatParam, IntParam

        mutations: dict[str, Any] = {}
        for name in self.mutated(space):
            p = space.params[name]
            if isinstance(p, CategoricalParam):
                mutations[name] = list(p.choices)
            elif isinstance(p, FloatParam):
                mutations[name] = (tune.loguniform if p.log else tune.uniform)(p.low, p.high)
            elif isinstance(p, IntParam):
                mutations[name] = tune.lograndint(p.low, p.high + 1) if p.log else tune.randint(p.low, p.high + 1)
        return PopulationBasedTraining(
            time_attr=TIME_ATTR, metric=metric, mode=mode, perturbation_interval=self.perturbation_interval,
            hyperparam_mutations=mutations, quantile_fraction=self.quantile_fraction,
            resample_probability=self.resample_probability,
        )


#: The scheduler registry: name -> options model (with its ``build``).
SCHEDULERS: dict[str, type[_Scheduler]] = {
    "fifo": FIFO,
    "asha": ASHA,
    "hyperband": HyperBand,
    "median": Median,
    "pbt": PBT,
}

SchedulerConfig = Annotated[FIFO | ASHA | HyperBand | Median | PBT, Field(discriminator="name")]
