"""Generic dotted-path overrides (--set)."""

from __future__ import annotations

import pytest

from orchestrator.overrides import apply_overrides, parse_override
from trainables.errors import HpoError


def test_values_are_parsed_as_yaml() -> None:
    assert parse_override("trial.workers=4") == (("trial", "workers"), 4)
    assert parse_override("a.lr=1e-3") == (("a", "lr"), 1e-3)  # YAML 1.2 float rule
    assert parse_override("a.b=[16, 32]") == (("a", "b"), [16, 32])
    assert parse_override("a=true") == (("a",), True)
    assert parse_override("a='4'") == (("a",), "4")
    assert parse_override("a=") == (("a",), None)
    assert parse_override("search.objective.0.metric=x") == (("search", "objective", "0", "metric"), "x")


def test_apply_creates_missing_mappings_and_keeps_input() -> None:
    data = {"trial": {"workers": 1}, "name": "x"}
    out = apply_overrides(data, ["trial.workers=4", "tracking.uri=http://127.0.0.1:5000", "trial.workers=8"])
    assert out == {"trial": {"workers": 8}, "name": "x", "tracking": {"uri": "http://127.0.0.1:5000"}}
    assert data == {"trial": {"workers": 1}, "name": "x"}


@pytest.mark.parametrize(
    ("item", "fragment"),
    [
        ("trial.workers", "expected PATH=VALUE"),
        ("=4", "expected PATH=VALUE"),
        ("trial..workers=4", "expected PATH=VALUE"),
        ("a=[1, 2", "not valid YAML"),
    ],
)
def test_malformed_items(item: str, fragment: str) -> None:
    with pytest.raises(HpoError, match="--set") as info:
        parse_override(item)
    assert fragment in info.value.message


def test_descending_into_a_scalar_is_an_error() -> None:
    with pytest.raises(HpoError, match="'name' is a str, not a mapping"):
        apply_overrides({"name": "x"}, ["name.first=y"])


def test_exponent_without_dot_is_a_float() -> None:
    """YAML 1.1 would read 1e-3 as a string; people write learning rates that way."""
    assert parse_override("lr=1e-3") == (("lr",), 0.001)
    assert parse_override("lr=-2E+2") == (("lr",), -200.0)
    assert parse_override("v=1.5") == (("v",), 1.5)
    assert parse_override("v=10") == (("v",), 10)
    assert parse_override("v=.inf")[1] == float("inf")
    assert parse_override("v=1e") == (("v",), "1e")
