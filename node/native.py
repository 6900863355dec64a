"""The compiled core: the modules in `COMPILED`, compiled by mypyc, and the C modules of
`C_EXTENSIONS`, built into a folder outside the source tree (`tools/build_native.py`;
`make native` and `make bench` build it into `.venv/herd-native`), and imported in place of
their source.

It is used only when it was built from the very source beside it: the build notes each
source file's SHA-256, and a file edited since then makes the whole node run from source (a
half-compiled core would mix two versions of one class). `HERD_NATIVE=0` runs from source
regardless; `HERD_NATIVE_DIR` names another build folder (the tests build one of their own).
The node's `START` log event says which it runs (`native=yes`, or why not).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

_T = TypeVar("_T")

try:
    # A compiled class is closed to subclasses written in Python unless marked so; the mark
    # is mypy's (a lint extra), and means nothing when the node runs from source.
    from mypy_extensions import mypyc_attr as mypyc_attr
except ImportError:  # pragma: no cover - installed without the lint extra

    def mypyc_attr(*attrs: str, **kwattrs: object) -> Callable[[_T], _T]:
        return lambda cls: cls


# The Python each request and each flooded record runs through: parsing, the store, a read's
# ingest, the journal and its entries, the reply queue, the counters, the log, a client's
# connection and a neighbour's (with the reader they share), our link to a neighbour, the
# turn's journal write and its writes, and the node's commit. The rest (start-up, config,
# places, metrics, the supervisor) stays interpreted.
COMPILED = (
    "protocol",
    "store",
    "ingest",
    "entries",
    "replies",
    "counters",
    "logbook",
    "reader",
    "turn_journal",
    "turn_writes",
    "client",
    "server",
    "journal",
    "peers.inbound",
    "peers.outbound",
)
# C written for the core (not mypyc's), each used when built in place of the Python beside
# it: the block scanner of `node.blocks`, the kept record's entry and line of `node.kept`,
# and the record order of `node.store`. Their source is in the manifest like the compiled
# modules'.
C_EXTENSIONS = {"node._blocks": "_blocks.c", "node._kept": "_kept.c", "node._order": "_order.c"}
GROUP = "node.core"  # mypyc's shared library is then `node.core__mypyc`, inside the package
MANIFEST = "herd-native.json"


def source_of(name: str) -> str:
    """A compiled module's source file, relative to the package folder."""
    return name.replace(".", "/") + ".py"


def build_dir() -> Path:
    """Where the build is looked for: `HERD_NATIVE_DIR`, else the environment's own folder."""
    named = os.environ.get("HERD_NATIVE_DIR")
    return Path(named) if named else Path(sys.prefix) / "herd-native"


def sources() -> list[str]:
    """Every file the build compiles, relative to the package folder."""
    return [source_of(name) for name in COMPILED] + list(C_EXTENSIONS.values())


def digests(source: Path) -> dict[str, str]:
    """The SHA-256 of each file the build compiles, read from the package folder `source`."""
    return {name: hashlib.sha256((source / name).read_bytes()).hexdigest() for name in sources()}


def manifest(source: Path) -> dict[str, object]:
    """What a build notes of what it was built from and for."""
    return {
        "extension_suffix": importlib.machinery.EXTENSION_SUFFIXES[0],
        "modules": digests(source),
    }


def why_not(build: Path, source: Path) -> str | None:
    """None when `build` holds a core compiled from `source` for this interpreter, else a
    word saying why it is not used."""
    try:
        noted = json.loads((build / MANIFEST).read_text())
    except FileNotFoundError:
        return "none"
    except (OSError, ValueError):
        return "unreadable"
    if not isinstance(noted, dict):
        return "unreadable"
    if noted.get("extension_suffix") != importlib.machinery.EXTENSION_SUFFIXES[0]:
        return "other-python"
    try:
        if noted.get("modules") != digests(source):
            return "stale"
    except OSError:
        return "stale"
    return None


def activate(package_path: list[str]) -> str:
    """Put a fresh build's package folder first on `package_path` (the package's
    `__path__`); the status the `START` event reports: `yes`, or why not."""
    if os.environ.get("HERD_NATIVE", "1") == "0":
        return "off"
    build = build_dir()
    reason = why_not(build, Path(package_path[0]))
    if reason is not None:
        return reason
    package_path.insert(0, str(build / "node"))
    return "yes"


def activate_subpackage(package_path: list[str], parent_path: list[str], status: str) -> None:
    """The same for a subpackage (its `__path__`), given its parent's `__path__` and what
    `activate` said of it: its compiled modules are found before its source ones."""
    if status == "yes":
        package_path.insert(0, str(Path(parent_path[0]) / Path(package_path[-1]).name))
