"""Take herdctl's plain arguments without pydantic, so a command starts in well under 150 ms.

typer 0.29 coerces every parameter through a pydantic TypeAdapter built on first use, and
importing pydantic and building the adapters costs 70-100 ms on every command: more than the
rest of `herdctl status` together. Most of our values need no such help: a name is already a
str, `-c PATH` is a str that becomes a Path, a count typed in digits is an int, and an
option left out is our own default.

`install` has typer's parameters take those values as they are and hand every other value
(a number typed on the command line, an enum, a bound that fails) to typer's own coercion,
built as typer builds it, only then. The values and the errors are typer's in every case
(`tests/herdctl/test_plain_params.py` holds the two equal). Where this typer has no such
hook, `install` leaves typer as it is: slower, never wrong.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args, get_origin

from typer.models import ParameterInfo

try:
    from typer._coercion import RuntimeParam, build_runtime_param
    from typer._param_types import coerce_cli_path
    from typer.core import _TyperParameter

    HOOKABLE = hasattr(_TyperParameter, "get_runtime_param")
except ImportError:  # another typer: keep its own coercion
    HOOKABLE = False

_NOT_PLAIN = object()
_DIGITS = re.compile(r"[0-9]{1,18}")  # a number typed as ASCII digits, well within int64


def plain_value(annotation: Any, info: ParameterInfo, value: Any, is_default: bool) -> Any:
    """`value` as typer would coerce it, or _NOT_PLAIN when that needs typer's own coercion."""
    if annotation is str and type(value) is str:
        return value
    if get_origin(annotation) is list and get_args(annotation) == (str,):
        if isinstance(value, (list, tuple)) and all(type(item) is str for item in value):
            return list(value)
        return _NOT_PLAIN
    if annotation is Path and isinstance(value, (str, Path)):
        # typer's own checks of the path (exists, file_okay, readable...), after the one
        # step it asks pydantic for: a str made a Path.
        return coerce_cli_path(Path(value), info, path_type=Path)
    if is_default and annotation in (int, float) and type(value) is annotation:
        return value if _within(value, info) else _NOT_PLAIN
    if annotation is int and type(value) is str and _DIGITS.fullmatch(value):
        number = int(value)  # plain decimal digits: the one reading typer's coercion has
        return number if _within(number, info) else _NOT_PLAIN
    return _NOT_PLAIN


def _within(value: float, info: ParameterInfo) -> bool:
    return (info.min is None or value >= info.min) and (info.max is None or value <= info.max)


class PlainCoercion:
    """A parameter's coercion: plain values here, the rest by typer's, built when first needed."""

    def __init__(self, param: Any) -> None:
        self._param = param
        self._typer: RuntimeParam | None = None

    def typer_coercion(self) -> RuntimeParam:
        if self._typer is None:
            self._typer = build_runtime_param(self._param.type_descriptor)
        return self._typer

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        if value is None:  # as typer's RuntimeParam.coerce: nothing given
            return () if param.multiple or param.nargs == -1 else None
        descriptor = param.type_descriptor
        source = ctx.get_parameter_source(param.name) if param.name else None
        is_default = source is not None and source.name in ("DEFAULT", "DEFAULT_MAP")
        try:
            plain = plain_value(descriptor.annotation, descriptor.parameter_info, value, is_default)
        except Exception:  # typer's path check refused it: typer's own coercion says why
            plain = _NOT_PLAIN
        if plain is _NOT_PLAIN:
            return self.typer_coercion().coerce(value, param=param, ctx=ctx)
        return plain


def install() -> bool:
    """Have typer's parameters coerce plain values without pydantic; False if this typer can't."""
    if not HOOKABLE:
        return False

    def get_runtime_param(self: Any) -> Any:
        coercion = self.__dict__.get("_plain_coercion")
        if coercion is None:
            coercion = self.__dict__["_plain_coercion"] = PlainCoercion(self)
        return coercion

    setattr(_TyperParameter, "get_runtime_param", get_runtime_param)  # noqa: B010
    return True
