"""A Nearby Search response printed as Google prints it: 3-space indent, `" : "` between a
key and its value, non-ASCII as is.

Byte for byte what `json.dumps(response, indent=3, separators=(",", " : "),
ensure_ascii=False)` gives, but one plain recursion instead of the standard library's chain
of generators: any indent sends `json` down its pure-Python encoder, which makes every
WHATSAT that finds its client spend most of its time yielding tokens. A reply that waited
in an idle node pays that in cold code, on the path the propagation figure measures.
"""

from __future__ import annotations

from json.encoder import encode_basestring  # the C one where the interpreter has it
from typing import Any

STEP = "   "


def print_places(response: dict[str, Any]) -> bytes:
    """The response as the WHATSAT reply's body (UTF-8, no trailing newline)."""
    out: list[str] = []
    _print(response, "\n", out)
    return "".join(out).encode()


def printed_answer(response: dict[str, Any], bound: int) -> tuple[bytes, str]:
    """The body a client gets for `response`, cut to `bound` results, and its status ("?"
    when it has none, as a broken provider's may not)."""
    status = response.get("status")
    results = response.get("results")
    if isinstance(results, list) and len(results) > bound:
        response = {**response, "results": results[:bound]}
    return print_places(response), status if isinstance(status, str) else "?"


def _print(value: object, newline: str, out: list[str]) -> None:
    """Append `value` to `out`; `newline` is a line break and the indent of its level.
    The checks go in `json`'s order, so subclasses print the same (bool before int)."""
    if isinstance(value, str):
        out.append(encode_basestring(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        out.append(_float(value))
    elif isinstance(value, (list, tuple)):
        if not value:
            out.append("[]")
            return
        inner = newline + STEP
        before = "[" + inner
        for item in value:
            out.append(before)
            _print(item, inner, out)
            before = "," + inner
        out.append(newline + "]")
    elif isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        inner = newline + STEP
        before = "{" + inner
        for key, item in value.items():
            out.append(before)
            out.append(encode_basestring(key if isinstance(key, str) else _key(key)))
            out.append(" : ")
            _print(item, inner, out)
            before = "," + inner
        out.append(newline + "}")
    else:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _float(value: float) -> str:
    if value != value:
        return "NaN"
    if value == float("inf"):
        return "Infinity"
    if value == -float("inf"):
        return "-Infinity"
    return float.__repr__(value)


def _key(key: object) -> str:
    """A key that is not a string, as `json` turns it into one."""
    if isinstance(key, float):
        return _float(key)
    if key is True:
        return "true"
    if key is False:
        return "false"
    if key is None:
        return "null"
    if isinstance(key, int):
        return int.__repr__(key)
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")
