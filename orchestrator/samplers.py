"""Optuna samplers by name, with validated options.

``search.sampler`` in a campaign file is ``{name: NAME, OPTION: VALUE, ...}`` (or just ``NAME``). Every
sampler is one small frozen model below; unknown options are errors that list the valid ones (we do not
silently drop keyword arguments). The campaign ``seed`` is passed to every sampler.

==========  =====================================================  ================
name        Optuna class                                           several objectives
==========  =====================================================  ================
``tpe``     ``TPESampler``                                         yes
``random``  ``RandomSampler``                                      yes
``grid``    ``GridSampler`` (grid built from the space's steps)    yes
``cmaes``   ``CmaEsSampler``                                       no
``gp``      ``GPSampler`` (needs PyTorch)                          yes
``qmc``     ``QMCSampler`` (Sobol or Halton)                       yes
``nsga2``   ``NSGAIISampler``                                      required (>= 2)
==========  =====================================================  ================
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from trainables.errors import HpoError

if TYPE_CHECKING:
    from optuna.samplers import BaseSampler

    from orchestrator.space import SearchSpace


class _Sampler(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: whether the sampler handles several objectives
    multi_objective: ClassVar[bool] = True
    #: whether it needs several objectives
    needs_multi_objective: ClassVar[bool] = False

    def build(self, *, seed: int, space: SearchSpace, n_objectives: int) -> BaseSampler:
        """Construct the Optuna sampler."""
        raise NotImplementedError  # every registered sampler overrides it

    def options(self) -> dict[str, Any]:
        """The options as written (name excluded), for logging."""
        return self.model_dump(exclude={"name"})


def _quiet_experimental() -> None:
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


class TPE(_Sampler):
    """Tree-structured Parzen Estimator: the default; good with conditional spaces (``group: true``)."""

    name: Literal["tpe"]
    n_startup_trials: int = Field(10, ge=0, description="random trials before TPE takes over")
    n_ei_candidates: int = Field(24, ge=1)
    multivariate: bool = Field(False, description="model parameters jointly (recommended with group)")
    group: bool = Field(False, description="split the space by which conditional parameters exist")
    constant_liar: bool = Field(True, description="avoid proposing the same point to concurrent trials")

    def build(self, *, seed: int, space: SearchSpace, n_objectives: int) -> BaseSampler:
        from optuna.samplers import TPESampler

        _quiet_experimental()
        if self.group and not self.multivariate:
            raise HpoError("search.sampler.group: `group: true` needs `multivariate: true` (an Optuna rule); set both")
        return TPESampler(
            seed=seed, n_startup_trials=self.n_startup_trials, n_ei_candidates=self.n_ei_candidates,
            multivariate=self.multivariate, group=self.group, constant_liar=self.constant_liar,
        )


class Random(_Sampler):
    """Independent uniform sampling (log-uniform where ``log: true``)."""

    name: Literal["random"]

    def build(self, *, seed: int, space: SearchSpace, n_objectives: int) -> BaseSampler:
        from optuna.samplers import RandomSampler

        return RandomSampler(seed=seed)


class Grid(_Sampler):
    """Every combination of the space's values; floats need a ``step``."""

    name: Literal["grid"]

    def build(self, *, seed: int, space: SearchSpace, n_objectives: int) -> BaseSampler:
        from optuna.samplers import GridSampler

        return GridSampler(space.grid(), seed=seed)


class CmaEs(_Sampler):
    """CMA-ES for continuous spaces (categoricals fall back to independent sampling)."""

    multi_objective: ClassVar[bool] = False
    name: Literal["cmaes"]
    sigma0: float | None = Field(None, gt=0, description="initial step size (default: 1/6 of the range)")
    n_startup_trials: int = Field(1, ge=0)
    popsize: int | None = Field(None, ge=2)
    use_separable_cma: bool = False
    with_margin: bool = Field(False, description="keep discrete parameters from collapsing")
    lr_adapt: bool = Field(False, description="learning-rate adaptation, for noisy or multimodal objectives")

    def build(self, *, seed: int, space: SearchSpace, n_objectives: int) -> BaseSampler:
        from optuna.samplers import CmaEsSampler

        _quiet_experimental()
        return CmaEsSampler(
            seed=seed, sigma0=self.sigma0, n_startup_trials=self.n_startup_trials, popsize=self.popsize,
            use_separable_cma=self.use_separable_cma, with_margin=self.with_margin, lr_adapt=self.lr_adapt,
            warn_independent_sampling=False,
        )


class GP(_Sampler):
    """Gaussian-process Bayesian optimisation (needs PyTorch; installed by ``make install``)."""

    name: Literal["gp"]
    n_startup_trials: int = Field(10, ge=0)
    deterministic_objective: bool = False

    def build(self, *, seed: int, space: SearchSpace, n_objectives: int) -> BaseSampler:
        from optuna.samplers import GPSampler

        try:
            import torch  # noqa: F401
        except ImportError:
            raise HpoError(
                "search.sampler.name: the gp sampler needs PyTorch; run `make install` (it installs the "
                "CPU build) or `pip install torch`"
            ) from None
        _quiet_experimental()
        return GPSampler(
            seed=seed, n_startup_trials=self.n_startup_trials, deterministic_objective=self.deterministic_objective,
            warn_independent_sampling=False,
        )


class QMC(_Sampler):
    """Quasi-Monte-Carlo (low-discrepancy) sampling: better coverage than random for the same budget."""

    name: Literal["qmc"]
    qmc_type: Literal["sobol", "halton"] = "sobol"
    scramble: bool = True

    def build(self, *, seed: int, space: SearchSpace, n_objectives: int) -> BaseSampler:
        from optuna.samplers import QMCSampler

        _quiet_experimental()
        return QMCSampler(
            qmc_type=self.qmc_type, scramble=self.scramble, seed=seed, warn_asynchronous_seeding=False,
            warn_independent_sampling=False,
        )


class NSGA2(_Sampler):
    """NSGA-II genetic algorithm for several objectives (keeps a Pareto front)."""

    needs_multi_objective: ClassVar[bool] = True
    name: Literal["nsga2"]
    population_size: int = Field(50, ge=2)
    mutation_prob: float | None = Field(None, ge=0, le=1)
    crossover_prob: float = Field(0.9, ge=0, le=1)
    swapping_prob: float = Field(0.5, ge=0, le=1)

    def build(self, *, seed: int, space: SearchSpace, n_objectives: int) -> BaseSampler:
        from optuna.samplers import NSGAIISampler

        return NSGAIISampler(
            seed=seed, population_size=self.population_size, mutation_prob=self.mutation_prob,
            crossover_prob=self.crossover_prob, swapping_prob=self.swapping_prob,
        )


#: The sampler registry: name -> options model (with its ``build``).
SAMPLERS: dict[str, type[_Sampler]] = {
    "tpe": TPE,
    "random": Random,
    "grid": Grid,
    "cmaes": CmaEs,
    "gp": GP,
    "qmc": QMC,
    "nsga2": NSGA2,
}

SamplerConfig = Annotated[TPE | Random | Grid | CmaEs | GP | QMC | NSGA2, Field(discriminator="name")]
