"""Search-space YAML -> Optuna distributions and a define-by-run function. The ONLY place that converts.

The YAML is explicit (STYLE.md, convention 4)::

    learning_rate: {type: float, low: 1.0e-5, high: 1.0e-2, log: true}
    conv_blocks:   {type: int, low: 2, high: 5}
    filters:       {type: int, low: 16, high: 128, step: 16}
    optimizer:     {type: categorical, choices: [adam, sgd]}
    momentum:      {type: float, low: 0.0, high: 0.99, when: {optimizer: sgd}}
    batch_size:    64                               # a plain value is fixed
    dropout:       {type: fixed, value: 0.1}        # the same, spelled out

* ``low`` and ``high`` are always inclusive, for ``int`` and ``float`` alike.
* ``log: true`` samples uniformly in log space (needs ``low > 0``); ``step`` makes the range discrete and
  must divide ``high - low`` exactly (Optuna would silently move ``high``; we refuse). ``log`` and
  ``step`` cannot be combined (Optuna's rule).
* ``when: {other: value}`` makes a parameter conditional: it exists only in trials where ``other`` took
  that value (a list means "any of these"; several keys must all hold). Conditions may chain but not
  form a cycle. Parameters are sampled in dependency order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError, model_validator

from orchestrator.yamlio import LoadedYaml, Loc, format_loc
from trainables.errors import HpoError

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution

Scalar = str | int | float | bool | None
Condition = dict[str, Scalar | list[Scalar]]


class _Param(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    when: Condition | None = Field(
        default=None, description="Exists only when every named parameter took the given value (or one of a list)."
    )


class FloatParam(_Param):
    """A float in [low, high], optionally log-uniform or on a grid of ``step``."""

    type: Literal["float"]
    low: float
    high: float
    log: StrictBool = False
    step: float | None = None

    @model_validator(mode="after")
    def _check(self) -> FloatParam:
        _check_range(self.low, self.high, self.log, self.step)
        if self.step is not None:
            span = Decimal(repr(self.high)) - Decimal(repr(self.low))
            steps = span / Decimal(repr(self.step))
            if steps != steps.to_integral_value():
                raise ValueError(
                    f"`step` must divide `high - low` exactly, but got (low={self.low}, high={self.high}, "
                    f"step={self.step}): {float(steps):g} steps; choose high = low + k*step"
                )
        return self


class IntParam(_Param):
    """An integer in [low, high] (both inclusive), optionally log-uniform or every ``step``."""

    type: Literal["int"]
    low: StrictInt
    high: StrictInt
    log: StrictBool = False
    step: StrictInt | None = None

    @model_validator(mode="after")
    def _check(self) -> IntParam:
        _check_range(self.low, self.high, self.log, self.step)
        if self.step is not None and (self.high - self.low) % self.step:
            raise ValueError(
                f"`step` must divide `high - low` exactly, but got (low={self.low}, high={self.high}, "
                f"step={self.step}); use high={self.low + (self.high - self.low) // self.step * self.step}"
            )
        return self


class CategoricalParam(_Param):
    """One of a list of choices (strings, numbers, booleans or null)."""

    type: Literal["categorical"]
    choices: list[Scalar]

    @model_validator(mode="after")
    def _check(self) -> CategoricalParam:
        if not self.choices:
            raise ValueError("`choices` must list at least one value, but got []")
        seen: list[Scalar] = []
        for choice in self.choices:
            if any(type(choice) is type(s) and choice == s for s in seen):
                raise ValueError(f"`choices` must not repeat a value, but {choice!r} appears twice")
            seen.append(choice)
        return self


class FixedParam(_Param):
    """A constant passed to every trial (written as a plain value or ``{type: fixed, value: ...}``)."""

    type: Literal["fixed"]
    value: Any


ParamSpec = Annotated[FloatParam | IntParam | CategoricalParam | FixedParam, Field(discriminator="type")]
_SPEC_CLASSES: dict[str, type[_Param]] = {
    "float": FloatParam, "int": IntParam, "categorical": CategoricalParam, "fixed": FixedParam
}
PARAM_TYPES = tuple(_SPEC_CLASSES)


def _check_range(low: float, high: float, log: bool, step: float | None) -> None:
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"`low` and `high` must be finite, but got (low={low}, high={high})")
    if low > high:
        raise ValueError(f"`low <= high` must hold, but got (low={low}, high={high}); swap them")
    if log and low <= 0:
        raise ValueError(f"`log: true` needs `low > 0`, but got (low={low}); use a positive lower bound")
    if step is not None:
        if log:
            raise ValueError("`log: true` and `step` cannot be combined; remove one of them")
        if step <= 0:
            raise ValueError(f"`step > 0` must hold, but got (step={step})")


class _ParamAdapter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    param: ParamSpec


def _condition_holds(condition: Condition, values: Mapping[str, Any]) -> bool:
    for name, wanted in condition.items():
        if name not in values:
            return False
        options = wanted if isinstance(wanted, list) else [wanted]
        if values[name] not in options:
            return False
    return True


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space, parameters in sampling (dependency) order.

    Build one with :func:`parse_space`; use :meth:`define_by_run` with Optuna (or Ray Tune's
    ``OptunaSearch(space=...)``), :meth:`distributions` for the full set of distributions and
    :meth:`grid` for the grid sampler.
    """

    params: dict[str, FloatParam | IntParam | CategoricalParam | FixedParam]

    @property
    def searched(self) -> list[str]:
        """Names of the parameters that are sampled (not fixed), in sampling order."""
        return [n for n, p in self.params.items() if not isinstance(p, FixedParam)]

    @property
    def conditional(self) -> bool:
        """True when any parameter has a ``when`` condition."""
        return any(p.when for p in self.params.values())

    def distributions(self) -> dict[str, BaseDistribution]:
        """Optuna distribution of every sampled parameter (conditional ones included)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        out: dict[str, BaseDistribution] = {}
        for name, p in self.params.items():
            if isinstance(p, FloatParam):
                out[name] = FloatDistribution(p.low, p.high, log=p.log, step=p.step)
            elif isinstance(p, IntParam):
                out[name] = IntDistribution(p.low, p.high, log=p.log, step=p.step or 1)
            elif isinstance(p, CategoricalParam):
                out[name] = CategoricalDistribution(p.choices)
        return out

    def active(self, name: str, values: Mapping[str, Any]) -> bool:
        """Whether parameter ``name`` exists given the values chosen so far."""
        condition = self.params[name].when
        return condition is None or _condition_holds(condition, values)

    def define_by_run(self, trial: optuna.Trial) -> dict[str, Any]:
        """Sample the active parameters into ``trial``; return the fixed values that are active.

        This is the define-by-run function for ``OptunaSearch(space=...)``: sampled values are recorded in
        the trial, the returned dict holds the constants. Inactive (conditional) parameters are neither
        sampled nor returned.
        """
        values: dict[str, Any] = {}
        fixed: dict[str, Any] = {}
        for name, p in self.params.items():
            if not self.active(name, values):
                continue
            # the public suggest_* calls: Ray Tune's OptunaSearch records exactly these
            if isinstance(p, FixedParam):
                values[name] = fixed[name] = p.value
            elif isinstance(p, FloatParam):
                values[name] = trial.suggest_float(name, p.low, p.high, log=p.log, step=p.step)
            elif isinstance(p, IntParam):
                values[name] = trial.suggest_int(name, p.low, p.high, log=p.log, step=p.step or 1)
            else:
                values[name] = trial.suggest_categorical(name, p.choices)
        return fixed

    def sample(self, trial: optuna.Trial) -> dict[str, Any]:
        """Sample a complete configuration: active sampled parameters plus active fixed ones."""
        fixed = self.define_by_run(trial)
        return {**{k: v for k, v in trial.params.items() if k in self.params}, **fixed}

    def grid(self) -> dict[str, list[Any]]:
        """Every sampled parameter's values as a list, for Optuna's ``GridSampler``.

        Raises:
            HpoError: a float parameter has no ``step``, or a log-scaled parameter (grids need finite
                value lists).
        """
        grid: dict[str, list[Any]] = {}
        for name, p in self.params.items():
            if isinstance(p, CategoricalParam):
                grid[name] = list(p.choices)
            elif isinstance(p, IntParam):
                if p.log:
                    raise HpoError(f"search.space.{name}: the grid sampler cannot enumerate a log-scaled int; drop `log` or use another sampler")
                grid[name] = list(range(p.low, p.high + 1, p.step or 1))
            elif isinstance(p, FloatParam):
                if p.step is None:
                    raise HpoError(
                        f"search.space.{name}: the grid sampler needs a `step` on float parameters; add one "
                        "or use another sampler"
                    )
                count = round((p.high - p.low) / p.step)
                grid[name] = [float(Decimal(repr(p.low)) + k * Decimal(repr(p.step))) for k in range(count + 1)]
        return grid

    def grid_size(self) -> int:
        """Number of points in the full grid (conditional parameters counted as always present)."""
        return math.prod(len(v) for v in self.grid().values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, as logged with the campaign."""
        return {name: p.model_dump(exclude_none=True) for name, p in self.params.items()}


def _space_error(source: LoadedYaml | None, base: Loc, loc: Loc, message: str) -> HpoError:
    full = (*base, *loc)
    where = source.where(full) if source is not None else "search space"
    return HpoError(f"{where}: {format_loc(full)}: {message}")


def parse_space(raw: Any, *, source: LoadedYaml | None = None, base: Loc = ()) -> SearchSpace:
    """Validate a search-space mapping and order it for sampling.

    Args:
        raw: the mapping parameter name -> spec (or plain value for a fixed parameter).
        source: the YAML the mapping came from, for file:line in messages.
        base: where the mapping sits in that YAML (``("search", "space")`` in a campaign file).

    Raises:
        HpoError: one line naming the file, line and parameter, with the rule and the fix.
    """
    if not isinstance(raw, Mapping) or not raw:
        raise _space_error(source, base, (), "must be a mapping of parameter name -> spec with at least one parameter")
    params: dict[str, FloatParam | IntParam | CategoricalParam | FixedParam] = {}
    for name, spec in raw.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise _space_error(
                source, base, (str(name),),
                f"parameter names must be identifiers (letters, digits, '_'; workloads take them as keyword "
                f"arguments), but got {name!r}",
            )
        if not isinstance(spec, Mapping):
            spec = {"type": "fixed", "value": spec}
        elif "type" not in spec:
            raise _space_error(
                source, base, (name,), f"missing `type`; use one of {', '.join(PARAM_TYPES)} (a plain value means fixed)"
            )
        elif spec["type"] not in PARAM_TYPES:
            raise _space_error(
                source, base, (name, "type"), f"unknown type {spec['type']!r}; use one of {', '.join(PARAM_TYPES)}"
            )
        try:
            params[name] = _ParamAdapter(param=spec).param
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = tuple(p for p in err["loc"][2:] if isinstance(p, int) or p in spec)
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                allowed = ", ".join(_SPEC_CLASSES[spec["type"]].model_fields)
                message = f"unknown key for a {spec['type']} parameter; allowed keys are {allowed}"
                loc = tuple(err["loc"][2:])
            raise _space_error(source, base, (name, *loc), message) from None
    _check_conditions(params, source, base)
    return SearchSpace(params=_dependency_order(params, source, base))


def _possible_values(p: FloatParam | IntParam | CategoricalParam | FixedParam) -> list[Any] | None:
    if isinstance(p, CategoricalParam):
        return list(p.choices)
    if isinstance(p, FixedParam):
        return [p.value]
    return None


def _check_conditions(params: Mapping[str, Any], source: LoadedYaml | None, base: Loc) -> None:
    for name, p in params.items():
        for other, wanted in (p.when or {}).items():
            loc = (name, "when", other)
            if other == name:
                raise _space_error(source, base, loc, "a parameter cannot depend on itself; remove the condition")
            if other not in params:
                raise _space_error(
                    source, base, loc,
                    f"condition on '{other}', which is not a parameter of this space; valid names are "
                    f"{', '.join(n for n in params if n != name)}",
                )
            possible = _possible_values(params[other])
            options = wanted if isinstance(wanted, list) else [wanted]
            if not options:
                raise _space_error(source, base, loc, "the condition lists no value; name at least one")
            for value in options:
                target = params[other]
                if possible is not None and value not in possible:
                    raise _space_error(
                        source, base, loc, f"'{other}' can never be {value!r}; its values are {possible}"
                    )
                if isinstance(target, (FloatParam, IntParam)) and (
                    isinstance(value, bool) or not isinstance(value, (int, float)) or not target.low <= value <= target.high
                ):
                    raise _space_error(
                        source, base, loc,
                        f"'{other}' can never be {value!r}; it ranges over [{target.low}, {target.high}]",
                    )


def _dependency_order(params: dict[str, Any], source: LoadedYaml | None, base: Loc) -> dict[str, Any]:
    """Topological order (dependencies first), stable with respect to the file order; cycles are errors."""
    ordered: dict[str, Any] = {}
    state: dict[str, int] = {}  # 1 = visiting, 2 = done

    def visit(name: str, chain: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = [*chain[chain.index(name):], name]
            raise _space_error(
                source, base, (name, "when"),
                f"circular condition {' -> '.join(cycle)}; a parameter cannot (indirectly) depend on itself",
            )
        state[name] = 1
        for other in params[name].when or {}:
            visit(other, [*chain, name])
        state[name] = 2
        ordered[name] = params[name]

    for name in params:
        visit(name, [])
    return ordered
