"""YAML loading that remembers where every value came from.

Campaign and search-space files are loaded with ``yaml.SafeLoader`` only. Besides the data we keep a map
from field path (``("search", "space", "lr", "low")``) to the 1-based line it was written on, so that
validation errors can say ``campaign.yaml:14: search.space.lr.low: ...``. Duplicate keys, which plain
YAML silently resolves to the last one, are errors.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trainables.errors import HpoError

Loc = tuple[str | int, ...]


class SafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``1e-3`` as a float.

    PyYAML follows YAML 1.1, where a float needs a dot (``1.0e-3``) and ``1e-3`` is a *string*; people
    write learning rates as ``1e-3``, so we use the YAML 1.2 rule.
    """


SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def safe_load(text: str) -> Any:
    """Parse YAML text with :class:`SafeLoader` (no line map)."""
    return yaml.load(text, Loader=SafeLoader)


def format_loc(loc: Sequence[str | int]) -> str:
    """``("search", "objective", 0, "metric")`` -> ``search.objective[0].metric``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<top level>"


@dataclass(frozen=True)
class LoadedYaml:
    """A parsed YAML document with its source.

    Attributes:
        data: the plain Python data (dicts, lists, scalars).
        path: the file it came from (for messages).
        lines: field path -> 1-based line number of the key (or list item) that introduced it.
    """

    data: Any
    path: Path
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        """Line of the deepest prefix of ``loc`` that was written in the file."""
        loc = tuple(loc)
        for end in range(len(loc), -1, -1):
            if loc[:end] in self.lines:
                return self.lines[loc[:end]]
        return None

    def where(self, loc: Sequence[str | int]) -> str:
        """``file:line`` (or just ``file``) for messages."""
        line = self.line_of(loc)
        return f"{self.path}:{line}" if line else str(self.path)


def _walk(node: yaml.Node, loc: Loc, lines: dict[Loc, int], path: Path) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise HpoError(
                    f"{path}:{line}: {format_loc((*loc, key))}: duplicate key (first written on line "
                    f"{seen[key]}); keep one"
                )
            seen[key] = line
            lines[(*loc, key)] = line
            _walk(value_node, (*loc, key), lines, path)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*loc, index)] = item.start_mark.line + 1
            _walk(item, (*loc, index), lines, path)


def parse_yaml(text: str, path: Path | str) -> LoadedYaml:
    """Parse YAML text (safe loader) into data plus a line map; syntax errors become :class:`HpoError`."""
    path = Path(path)
    try:
        node = yaml.compose(text, Loader=SafeLoader)
        data = safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = exc.problem or "invalid YAML"
        context = f" ({exc.context})" if exc.context else ""
        raise HpoError(f"{where}: YAML syntax error: {problem}{context}; fix the YAML at that position") from None
    except yaml.YAMLError as exc:
        raise HpoError(f"{path}: YAML error: {exc}; fix the YAML") from None
    lines: dict[Loc, int] = {}
    if node is not None:
        _walk(node, (), lines, path)
    return LoadedYaml(data=data, path=path, lines=lines)


def load_yaml(path: Path | str, *, what: str = "file") -> LoadedYaml:
    """Read and parse a YAML file.

    Args:
        path: the file.
        what: what the file is, for the not-found message ("campaign file", "search-space file").
    """
    path = Path(path)
    if not path.exists():
        raise HpoError(f"{path}: {what} not found; check the path (relative paths are relative to {Path.cwd()})")
    if path.is_dir():
        raise HpoError(f"{path}: is a directory, not a {what}; name the YAML file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HpoError(f"{path}: cannot read the {what} ({exc}); check permissions and encoding") from None
    return parse_yaml(text, path)
