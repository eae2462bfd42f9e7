"""Generic dotted-path overrides: ``--set trial.workers=4 --set search.sampler.name=cmaes``.

One mechanism for every field instead of one flag per field (STYLE.md). Values are parsed as YAML, so
``4`` is an int, ``1e-3`` a float, ``[16, 32]`` a list and ``true`` a bool; quote to force a string.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from orchestrator.yamlio import safe_load
from trainables.errors import HpoError

_PATH = re.compile(r"^[A-Za-z_][\w\-]*(\.[A-Za-z_0-9][\w\-]*)*$")


def parse_override(item: str) -> tuple[tuple[str, ...], Any]:
    """Parse one ``PATH=VALUE`` item into (path components, YAML-parsed value)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not _PATH.match(key):
        raise HpoError(f"--set '{item}': expected PATH=VALUE with a dotted PATH, e.g. --set trial.workers=4")
    try:
        value = safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise HpoError(f"--set '{item}': the value is not valid YAML ({problem}); quote it") from None
    return tuple(key.split(".")), value


def parse_overrides(items: Iterable[str]) -> list[tuple[tuple[str, ...], Any]]:
    """Parse every ``PATH=VALUE`` item, keeping their order (a later item wins)."""
    return [parse_override(item) for item in items]


def apply_overrides(data: Mapping[str, Any], items: Iterable[str]) -> dict[str, Any]:
    """Return a deep copy of ``data`` with every override applied.

    Intermediate mappings are created when missing, so the schema (not this function) decides whether a
    new key is allowed; an override that descends into a non-mapping value is an error.
    """
    result: dict[str, Any] = copy.deepcopy(dict(data))
    for path, value in parse_overrides(items):
        node: dict[str, Any] = result
        for depth, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(path[: depth + 1])
                raise HpoError(
                    f"--set {'.'.join(path)}: '{where}' is a {type(child).__name__}, not a mapping; "
                    f"set '{where}' itself instead"
                )
            node = child
        node[path[-1]] = value
    return result
