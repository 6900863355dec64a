"""The `herdctl` commands that write files rather than run the herd: `topology random`, a
larger herd's topology (herdctl.topogen), and `export systemd`, units that let systemd run
this machine's nodes (herdctl.export). Typer commands only: parse, call, print. Their
modules are imported when the command runs, so no other command pays for them."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from herdctl.arguments import ConfigOption, options_of
from herdctl.console import EXIT_USAGE, UserError, err, out

SETTINGS = {"help_option_names": ["-h", "--help"]}

topology_app = typer.Typer(
    help="Make topology files.",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings=SETTINGS,
)
export_app = typer.Typer(
    help="Write files that run this machine's nodes under another supervisor.",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings=SETTINGS,
)

OutputOption = Annotated[
    Path | None,
    typer.Option(
        "-o", "--output", metavar="PATH", help="Write here. Default: print.", show_default=False
    ),
]


@topology_app.command("random")
def random_topology(
    nodes: Annotated[int, typer.Option("--nodes", help="How many nodes.")] = 20,
    degree: Annotated[
        int, typer.Option("--degree", help="Average links per node (none has more than +1).")
    ] = 3,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed",
            help="The same seed, the same herd. Default: a random one.",
            show_default=False,
        ),
    ] = None,
    base_port: Annotated[
        int, typer.Option("--base-port", help="The first node's port; the others count up.")
    ] = 12000,
    metrics_base_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-base-port",
            help="The first node's metrics_port, the others counting up. Default: none.",
            show_default=False,
        ),
    ] = None,
    hosts: Annotated[
        str | None,
        typer.Option(
            "--hosts",
            metavar="H1,H2,...",
            help="Spread the nodes over these hosts, in turn. Default: 127.0.0.1.",
            show_default=False,
        ),
    ] = None,
    output: OutputOption = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
) -> None:
    """Write a random connected topology: `--nodes N --degree D --seed S`, ports from 12000.

    The header says how to make it again, its diameter and its cut vertices.
    """
    from herdctl import topogen

    if seed is None:
        seed = int.from_bytes(os.urandom(4), "big") % 1_000_000
    request = topogen.Request(
        nodes=nodes,
        degree=degree,
        seed=seed,
        base_port=base_port,
        metrics_base_port=metrics_base_port,
        hosts=tuple(h.strip() for h in hosts.split(",")) if hosts else (),
    )
    try:
        text = topogen.generate(request)
    except topogen.GenerateError as e:
        raise UserError(str(e), EXIT_USAGE) from None
    if output is None:
        sys.stdout.write(text)
        return
    try:
        with open(output, "w" if force else "x", encoding="utf-8") as f:
            f.write(text)
    except FileExistsError:
        raise UserError(f"{output} exists; --force replaces it") from None
    except OSError as e:
        raise UserError(f"cannot write {output}: {e.strerror or e}") from None
    summary = text.splitlines()[1].removeprefix("# ")
    err(f"wrote {output}: {summary}")


@export_app.command("systemd")
def systemd(
    ctx: typer.Context,
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            metavar="HOST",
            help="Export the nodes whose host is HOST, as written in the topology."
            " Default: this machine's nodes.",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            metavar="DIR",
            help="Write the units into DIR, e.g. /etc/systemd/system. Default: print them.",
            show_default=False,
        ),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option(
            "--user", metavar="USER", help="Run the nodes as this user.", show_default=False
        ),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option("--group", metavar="GROUP", help="... and this group.", show_default=False),
    ] = None,
    env_file: Annotated[
        str,
        typer.Option(
            "--env-file", metavar="PATH", help="Sets HERD_SECRET (0600, the same on every machine)."
        ),
    ] = "/etc/herd/herd.env",
    python: Annotated[
        str | None,
        typer.Option(
            "--python",
            metavar="PATH",
            help="The interpreter that runs the nodes. Default: this herdctl's.",
            show_default=False,
        ),
    ] = None,
    config_path: ConfigOption = None,
) -> None:
    """Write a systemd service per node of this machine (herd-NAME.service) and herd.target.

    Then: systemctl daemon-reload && systemctl enable --now herd.target.
    """
    from herdctl import export
    from herdctl.procs import is_local, local_addresses
    from node.config import load_config

    config = load_config(options_of(ctx).path(config_path))
    interpreter = python or sys.executable
    for option, value in (("--python", interpreter), ("--env-file", env_file)):
        if not os.path.isabs(value):
            raise UserError(f"{option} must be an absolute path, not {value!r}", EXIT_USAGE)
    here = local_addresses() if host is None else frozenset()
    try:
        nodes = export.local_nodes(config, host, lambda h: is_local(h, here))
    except export.ExportError as e:
        raise UserError(str(e), EXIT_USAGE) from None
    choices = export.Choices(
        python=interpreter,
        env_file=env_file,
        user=user,
        group=group,
        code_paths=(os.path.realpath(interpreter), _code_root()),
    )
    files = export.units(config, nodes, choices)
    if output is None:
        out("\n".join(f"==> {name} <==\n{text}" for name, text in files.items()).rstrip("\n"))
    else:
        try:
            written = export.write(files, output)
        except export.ExportError as e:
            raise UserError(str(e)) from None
        for path in written:
            out(f"wrote {path}")
        for path in export.stale_units(output, files):
            err(
                f"herdctl: note: {path} is not part of this export (its node is gone or"
                f" elsewhere): systemctl disable --now {path.name} && rm {path}"
            )
    missing = export.folders_to_make(config)
    if missing:
        owner = [*(["-o", user] if user else []), *(["-g", group] if group else [])]
        command = shlex.join(["install", "-d", "-m", "0700", *owner, *map(str, missing)])
        err(f"herdctl: note: make the folders the nodes write to before they start: {command}")
    if output is not None:
        out(f"then: systemctl daemon-reload && systemctl enable --now {export.TARGET}")


def _code_root() -> str:
    """The folder the herd's code is imported from (a checkout, or site-packages)."""
    import node

    return str(Path(node.__file__ or ".").resolve().parent.parent)
