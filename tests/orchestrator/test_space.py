"""Search-space conversion: bounds, log, step, conditions, and every sampler on a real Optuna study."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from orchestrator.samplers import SAMPLERS
from orchestrator.space import parse_space
from trainables.errors import HpoError

optuna.logging.set_verbosity(optuna.logging.WARNING)


def sample_many(space_raw: dict, n: int = 200, seed: int = 0) -> list[dict]:
    space = parse_space(space_raw)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    configs = []
    for _ in range(n):
        trial = study.ask()
        configs.append(space.sample(trial))
        study.tell(trial, 0.0)
    return configs


def test_int_bounds_are_inclusive_and_all_values_reachable() -> None:
    values = {c["n"] for c in sample_many({"n": {"type": "int", "low": 1, "high": 3}})}
    assert values == {1, 2, 3}


def test_int_step_includes_high() -> None:
    values = {c["n"] for c in sample_many({"n": {"type": "int", "low": 0, "high": 10, "step": 5}})}
    assert values == {0, 5, 10}


def test_int_low_equals_high_is_a_single_value() -> None:
    space = parse_space({"n": {"type": "int", "low": 4, "high": 4}})
    assert space.distributions()["n"] == IntDistribution(4, 4)
    assert {c["n"] for c in sample_many({"n": {"type": "int", "low": 4, "high": 4}}, n=10)} == {4}


def test_int_log_stays_in_bounds_and_covers_decades() -> None:
    values = [c["n"] for c in sample_many({"n": {"type": "int", "low": 1, "high": 1000, "log": True}}, n=300)]
    assert min(values) >= 1 and max(values) <= 1000
    # log-uniform: about a third of the samples in each decade
    assert sum(v < 10 for v in values) > 50 and sum(v >= 100 for v in values) > 50


def test_float_log_is_log_uniform_within_inclusive_bounds() -> None:
    values = [c["lr"] for c in sample_many({"lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True}}, n=400)]
    assert all(1e-5 <= v <= 1e-1 for v in values)
    median = sorted(values)[len(values) // 2]
    assert 1e-4 < median < 1e-2  # geometric middle is 1e-3; a linear sampler would give ~5e-2


def test_float_step_with_decimal_fractions() -> None:
    space = parse_space({"x": {"type": "float", "low": 0.1, "high": 0.3, "step": 0.1}})
    assert space.grid()["x"] == [0.1, 0.2, 0.3]
    assert space.distributions()["x"] == FloatDistribution(0.1, 0.3, step=0.1)


def test_distribution_types() -> None:
    space = parse_space(
        {
            "a": {"type": "float", "low": 0, "high": 1},
            "b": {"type": "int", "low": 2, "high": 8, "step": 2},
            "c": {"type": "categorical", "choices": ["x", 1, True, None]},
            "d": 5,
        }
    )
    dists = space.distributions()
    assert dists["a"] == FloatDistribution(0.0, 1.0)
    assert dists["b"] == IntDistribution(2, 8, step=2)
    assert dists["c"] == CategoricalDistribution(["x", 1, True, None])
    assert "d" not in dists and space.searched == ["a", "b", "c"]


def test_grid_enumerates_inclusive_values() -> None:
    space = parse_space({"n": {"type": "int", "low": 1, "high": 7, "step": 3}, "o": {"type": "categorical", "choices": ["a", "b"]}})
    assert space.grid() == {"n": [1, 4, 7], "o": ["a", "b"]}
    assert space.grid_size() == 6


def test_grid_needs_step_on_floats() -> None:
    with pytest.raises(HpoError, match=r"search\.space\.x: the grid sampler needs a `step`"):
        parse_space({"x": {"type": "float", "low": 0, "high": 1}}).grid()


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"type": "int", "low": 0, "high": 10, "log": True}, "`log: true` needs `low > 0`"),
        ({"type": "float", "low": -1.0, "high": 1.0, "log": True}, "`log: true` needs `low > 0`"),
        ({"type": "int", "low": 1, "high": 10, "log": True, "step": 2}, "cannot be combined"),
        ({"type": "int", "low": 0, "high": 10, "step": 3}, "use high=9"),
        ({"type": "float", "low": 0.0, "high": 1.0, "step": 0.3}, "`step` must divide"),
        ({"type": "int", "low": 0, "high": 10, "step": 0}, "`step > 0`"),
        ({"type": "int", "low": 0.5, "high": 10}, "valid integer"),
        ({"type": "int", "low": True, "high": 10}, "valid integer"),
        ({"type": "float", "low": 3.0, "high": 1.0}, "(low=3.0, high=1.0)"),
        ({"type": "categorical", "choices": ["a", "a"]}, "must not repeat"),
        ({"type": "float", "low": 0, "high": 1, "lg": True}, "unknown key for a float parameter"),
        ({"type": "floot", "low": 0, "high": 1}, "unknown type 'floot'"),
        ({"low": 0, "high": 1}, "missing `type`"),
    ],
)
def test_bad_parameter_specs_name_the_parameter(spec: dict, fragment: str) -> None:
    with pytest.raises(HpoError) as info:
        parse_space({"p": spec})
    assert "p" in info.value.message.split(":")[1] and fragment in info.value.message


def test_conditional_parameter_only_when_condition_holds() -> None:
    raw = {
        "optimizer": {"type": "categorical", "choices": ["adam", "sgd", "rmsprop"]},
        "momentum": {"type": "float", "low": 0.0, "high": 0.99, "when": {"optimizer": "sgd"}},
        "nesterov": {"type": "categorical", "choices": [True, False], "when": {"optimizer": "sgd", "momentum": None}},
        "rho": {"type": "float", "low": 0.8, "high": 0.99, "when": {"optimizer": ["rmsprop"]}},
    }
    with pytest.raises(HpoError, match="'momentum' can never be None"):
        parse_space(raw)
    raw["nesterov"]["when"] = {"optimizer": "sgd"}
    configs = sample_many(raw, n=150)
    for c in configs:
        assert ("momentum" in c) == (c["optimizer"] == "sgd")
        assert ("nesterov" in c) == (c["optimizer"] == "sgd")
        assert ("rho" in c) == (c["optimizer"] == "rmsprop")
    assert {c["optimizer"] for c in configs} == {"adam", "sgd", "rmsprop"}


def test_chained_conditions_are_sampled_in_dependency_order() -> None:
    raw = {  # written child-first on purpose
        "beta": {"type": "float", "low": 0, "high": 1, "when": {"use_extra": True}},
        "use_extra": {"type": "categorical", "choices": [True, False], "when": {"mode": "b"}},
        "mode": {"type": "categorical", "choices": ["a", "b"]},
    }
    space = parse_space(raw)
    assert list(space.params) == ["mode", "use_extra", "beta"]
    for c in sample_many(raw, n=100):
        assert ("use_extra" in c) == (c["mode"] == "b")
        assert ("beta" in c) == (c.get("use_extra") is True)


def test_condition_on_numeric_value_must_be_in_range() -> None:
    with pytest.raises(HpoError, match=r"ranges over \[1, 3\]"):
        parse_space({"n": {"type": "int", "low": 1, "high": 3}, "x": {"type": "float", "low": 0, "high": 1, "when": {"n": 7}}})


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_runs_the_space(name: str) -> None:
    """Every registered sampler drives a real Optuna study through the define-by-run function."""
    raw = {
        "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
        "units": {"type": "int", "low": 16, "high": 64, "step": 16},
        "opt": {"type": "categorical", "choices": ["adam", "sgd"]},
        "momentum": {"type": "float", "low": 0.0, "high": 0.9, "step": 0.3, "when": {"opt": "sgd"}},
        "batch": 32,
    }
    if name == "grid":
        raw["lr"] = {"type": "float", "low": 0.01, "high": 0.03, "step": 0.01}
    space = parse_space(raw)
    sampler_cls = SAMPLERS[name]
    n_objectives = 2 if sampler_cls.needs_multi_objective else 1
    options = {"name": name}
    if name in ("tpe", "gp"):
        options["n_startup_trials"] = 3
    if name == "nsga2":
        options["population_size"] = 4
    sampler = sampler_cls.model_validate(options).build(seed=1, space=space, n_objectives=n_objectives)
    directions = ["minimize"] * n_objectives
    study = optuna.create_study(sampler=sampler, directions=directions)
    for _ in range(8):
        trial = study.ask()
        config = space.sample(trial)
        assert config["batch"] == 32
        assert ("momentum" in config) == (config["opt"] == "sgd")
        assert 1e-4 <= config["lr"] <= 1e-1 and config["units"] in (16, 32, 48, 64)
        loss = math.log(config["lr"]) ** 2 + config["units"] / 64
        study.tell(trial, [loss, config["units"]] if n_objectives == 2 else loss)
    assert len(study.trials) == 8


def test_same_seed_same_proposals() -> None:
    raw = {"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}, "n": {"type": "int", "low": 1, "high": 9}}
    assert sample_many(raw, n=20, seed=7) == sample_many(raw, n=20, seed=7)
    assert sample_many(raw, n=20, seed=7) != sample_many(raw, n=20, seed=8)


@pytest.mark.parametrize("name", ["conv/filters", "learning-rate", "2x", ""])
def test_parameter_names_must_be_identifiers(name: str) -> None:
    with pytest.raises(HpoError, match="parameter names must be identifiers"):
        parse_space({name: 3})
