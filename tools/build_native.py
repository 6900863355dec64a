"""Compile the node's sans-IO core with mypyc, and its C scanner, into a folder outside
the source tree.

    .venv/bin/python tools/build_native.py [--out DIR]

DIR defaults to the environment's `herd-native` folder (`.venv/herd-native`), where the
node looks for it (`node.native`); `make native` and `make bench` run this, and rebuild
when a compiled module changes. Needs a C compiler and the Python headers. The
folder is replaced whole, its manifest written last, so a failed build leaves no half of one
behind. Dev tool, never imported by a node.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this tree's node, whatever the environment installed

from node import native  # noqa: E402


def build(out: Path) -> None:
    """Compile `native.COMPILED` and `native.C_EXTENSIONS` from this tree into `out`,
    replacing what was there."""
    from mypyc.build import mypycify
    from setuptools import Distribution, Extension

    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="herd-native-", dir=out.parent))
    try:
        lib = work / "lib"
        noted = native.manifest(ROOT / "node")  # what is compiled, not what is there later
        os.chdir(ROOT)  # mypy names the modules from their paths
        extensions = mypycify(
            [f"node/{native.source_of(name)}" for name in native.COMPILED],
            group_name=native.GROUP,
            target_dir=str(work / "c"),
            opt_level="3",
        )
        extensions += [
            Extension(name, [f"node/{path}"], extra_compile_args=["-O3"])
            for name, path in native.C_EXTENSIONS.items()
        ]
        dist = Distribution({"name": "herd-native", "ext_modules": extensions})
        dist.verbose = 0
        command = dist.get_command_obj("build_ext")
        command.build_lib = str(lib)
        command.build_temp = str(work / "objects")
        dist.run_command("build_ext")
        (lib / native.MANIFEST).write_text(json.dumps(noted, indent=2) + "\n")
        old = work / "old"
        if out.exists():
            out.rename(old)
        lib.rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="build folder")
    args = parser.parse_args()
    out = args.out or Path(sys.prefix) / "herd-native"
    started = time.monotonic()
    try:
        build(out)
    except Exception as exc:  # a compiler missing or failing: say so, the node runs from source
        print(f"build_native: failed ({exc}); the node runs from source", file=sys.stderr)
        return 1
    took = time.monotonic() - started
    built = ", ".join([*native.COMPILED, *native.C_EXTENSIONS])
    print(f"build_native: {built} compiled into {out} in {took:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
