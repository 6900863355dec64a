"""topology.yaml's fields, read one at a time: strict YAML, then one checker per kind of value.

Each checker returns the value typed as config.py needs it, or raises `Invalid` naming the
field path (`nodes.A.port`) and what is wrong with the value, so config.py can say both in
one line. Pure: no I/O.
"""

from __future__ import annotations

import difflib
import functools
import math
import os
from collections.abc import Hashable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    import yaml

_MERGE_TAG = "tag:yaml.org,2002:merge"


class Invalid(Exception):
    """A validation failure at a field path; config.parse_config adds the file name."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(where, message)
        self.where = where
        self.message = message


def fail(where: str, message: str) -> NoReturn:
    raise Invalid(where, message)


def load_yaml(text: str) -> object:
    """The YAML document in `text`; Invalid (at line and column) when it is not YAML."""
    import yaml  # 19 ms: paid by what reads a document, not by what imports the config types

    fast, careful = _loaders()
    try:
        return yaml.load(text, Loader=fast)
    except yaml.YAMLError:
        pass
    try:
        return yaml.load(text, Loader=careful)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(str(exc.problem or exc.context or exc).split())
        fail(where, f"invalid YAML: {problem}")
    except yaml.YAMLError as exc:
        fail("", f"invalid YAML: {' '.join(str(exc).split())}")


@functools.cache
def _loaders() -> tuple[type, type]:
    """(fast, careful) SafeLoaders that reject a key repeated in one mapping (PyYAML keeps the
    last silently). libyaml parses a topology ten times faster (0.15 against 1.3 ms), which
    every herdctl command pays, but words errors differently: a document it refuses is read
    again by the pure-Python parser, whose messages are the ones users see."""
    import yaml

    class UniqueKeys:
        def construct_mapping(
            self, node: yaml.MappingNode, deep: bool = False
        ) -> dict[Hashable, Any]:
            seen: set[object] = set()
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=deep)  # type: ignore[attr-defined]
                try:
                    duplicate = key in seen
                except TypeError:  # unhashable: the base class reports it
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {shown(key)}", key_node.start_mark
                    )
                seen.add(key)
            mapping: dict[Hashable, Any] = super().construct_mapping(  # type: ignore[misc]
                node, deep
            )
            return mapping

    careful = type("UniqueKeySafeLoader", (UniqueKeys, yaml.SafeLoader), {})
    if not getattr(yaml, "__with_libyaml__", False):
        return careful, careful
    return type("UniqueKeyCSafeLoader", (UniqueKeys, yaml.CSafeLoader), {}), careful


def shown(value: object) -> str:
    """A value as the user would recognise it, kept short."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def known(names: Iterable[str]) -> str:
    """Names for a "(known: ...)" hint: sorted, comma-separated."""
    return ", ".join(sorted(names))


def mapping(value: object, where: str, allowed: tuple[str, ...], what: str) -> dict[str, Any]:
    """`value` as a mapping with only `allowed` keys; null counts as empty."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        fail(where, f"must be {what}, got {shown(value)}")
    for key in value:
        if key not in allowed:
            hint = ""
            if isinstance(key, str) and (close := difflib.get_close_matches(key, allowed, 1)):
                hint = f"; did you mean {close[0]!r}?"
            fail(where, f"unknown key {shown(key)} (allowed: {', '.join(allowed)}){hint}")
    return value


def text(value: object, where: str, *, spaces_ok: bool = False) -> str:
    """A non-empty string, without white space unless `spaces_ok`."""
    if not isinstance(value, str) or not value.strip():
        fail(where, f"must be a non-empty string, got {shown(value)}")
    if not spaces_ok and any(ch.isspace() for ch in value):
        fail(where, f"{shown(value)} must not contain whitespace")
    return value


def integer(value: object, where: str, low: int, high: int | None = None) -> int:
    """An integer (not a bool) of at least `low`, and at most `high` when given."""
    if isinstance(value, bool) or not isinstance(value, int):
        fail(where, f"must be an integer, got {shown(value)}")
    if high is not None and not low <= value <= high:
        fail(where, f"{value} is out of range {low}..{high}")
    if value < low:
        fail(where, f"{value} must be {low} or more")
    return value


def seconds(value: object, where: str, *, zero_ok: bool = False) -> float:
    """A finite number of seconds, greater than 0 (or 0 too, with `zero_ok`)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        fail(where, f"must be a number of seconds, got {shown(value)}")
    if not math.isfinite(value):
        fail(where, f"{shown(value)} is not a finite number")
    if value < 0 or (value == 0 and not zero_ok):
        fail(where, f"{value} must be {'0 or more' if zero_ok else 'greater than 0'}")
    return float(value)


def path(value: object, where: str, base: Path) -> Path:
    """A path, `~` expanded, relative ones taken from `base` (the topology file's folder)."""
    return Path(os.path.normpath(base / Path(text(value, where, spaces_ok=True)).expanduser()))
