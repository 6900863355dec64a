"""herdctl.plain_params: the values it takes without pydantic are the values typer gives.

Every parameter of every herdctl command, fed what a user types (or its default), through
the plain coercion and through typer's own: the same value, or the plain one steps aside.
(The point of it, that `herdctl status` no longer imports pydantic, is held by
tests/herdctl_cli/test_lazy_imports.py.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main
from hypothesis import given, settings
from hypothesis import strategies as st
from typer._click import Context
from typer._click.exceptions import BadParameter
from typer._coercion import build_runtime_param

from herdctl import cli, plain_params
from herdctl.plain_params import PlainCoercion

ROOT = Path(__file__).resolve().parents[2]


def every_param() -> list[tuple[Any, Any]]:
    root = typer.main.get_command(cli.app)
    assert isinstance(root, typer.core.TyperGroup)
    pairs: list[tuple[Any, Any]] = [(root, param) for param in root.params]
    groups = [root]
    while groups:  # `topology random`, `export systemd`: commands of command groups too
        for command in groups.pop().commands.values():
            pairs += [(command, param) for param in command.params]
            if isinstance(command, typer.core.TyperGroup):
                groups.append(command)
    return pairs


PARAMS = every_param()
TYPED = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=12),
    st.sampled_from(["0", "1", "2.5", "-3", "1e3", "abc", "", ".", "/", "5m", "all"]),
    st.sampled_from(["007", "20", "65535", "65536", "1_000", " 5", "5 ", "+5", "\uff15"]),
    st.integers(0, 10**20).map(str),
)


def typer_says(param: Any, ctx: Context, value: Any) -> tuple[str, Any]:
    try:
        return "value", build_runtime_param(param.type_descriptor).coerce(value, param, ctx)
    except BadParameter as refused:
        return "refused", refused.message


def plain_says(param: Any, ctx: Context, value: Any) -> tuple[str, Any]:
    try:
        return "value", PlainCoercion(param).coerce(value, param, ctx)
    except BadParameter as refused:
        return "refused", refused.message


def test_install_hooks_this_typer() -> None:
    assert plain_params.HOOKABLE, "typer changed: herdctl commands import pydantic again"
    assert plain_params.install()


@pytest.mark.parametrize(("command", "param"), PARAMS, ids=lambda p: getattr(p, "name", "?"))
@settings(max_examples=40, deadline=None)
@given(typed=TYPED, many=st.lists(TYPED, max_size=3))
def test_typed_values_come_out_as_typer_makes_them(
    command: Any, param: Any, typed: str, many: list[str]
) -> None:
    ctx = Context(command)
    value: Any = many if param.multiple or param.nargs == -1 else typed
    if param.type_descriptor.annotation is bool:
        value = typed.lower() in ("1", "true")
    assert plain_says(param, ctx, value) == typer_says(param, ctx, value)


@pytest.mark.parametrize(("command", "param"), PARAMS, ids=lambda p: getattr(p, "name", "?"))
def test_defaults_come_out_as_typer_makes_them(command: Any, param: Any) -> None:
    ctx = Context(command)
    default = param.get_default(ctx, call=True)
    assert plain_says(param, ctx, default) == typer_says(param, ctx, default)


def test_a_path_typer_refuses_is_refused_in_its_words(tmp_path: Path) -> None:
    root = typer.main.get_command(cli.app)
    config: Any = next(p for p in root.params if p.name == "config")
    config.type_descriptor.parameter_info.exists = True  # as a PATH that must exist
    try:
        ctx = Context(root)
        missing = str(tmp_path / "nowhere.yaml")
        said = plain_says(config, ctx, missing)
        assert said[0] == "refused" and "does not exist" in said[1]
        assert said == typer_says(config, ctx, missing)
    finally:
        config.type_descriptor.parameter_info.exists = False


def test_a_number_typed_wrong_still_gets_typers_message(tmp_path: Path) -> None:
    (tmp_path / "topology.yaml").write_text((ROOT / "topology.yaml").read_text())
    herdctl = str(Path(sys.executable).with_name("herdctl"))
    done = subprocess.run(
        [herdctl, "tail", "Welsh", "-n", "many"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "Invalid value for '-n'" in done.stderr, done.stderr
