"""The `herdctl` commands that write files rather than run the herd: `topology random`, a
larger herd's topology (herdctl.topogen), and `export systemd`, units that let systemd run
this machine's nodes (herdctl.export). Typer commands only: parse, call, print. Their
modules are imported when the command runs, so no other command pays for them."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from herdctl.console import EXIT_USAGE, UserError, err

SETTINGS = {"help_option_names": ["-h", "--help"]}

topology_app = typer.Typer(
    help="Make topology files.",
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
