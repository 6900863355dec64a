"""The C modules of the core (node/native.py `C_EXTENSIONS`) read bytes that come off the
network: their own tests run again with them built under AddressSanitizer and
UndefinedBehaviorSanitizer, so a read past a buffer or an overflow fails the run instead of
passing unseen."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

from node import native

ROOT = Path(__file__).resolve().parents[2]
C_TESTS = [
    "tests/node/test_blocks.py",
    "tests/node/test_kept.py",
    "tests/node/test_order.py",
    "tests/node/test_protocol.py",
]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]


def _runtime(compiler: str) -> Path | None:
    """The ASan runtime to preload into an unsanitized python, or None."""
    named = subprocess.run(
        [compiler, "-print-file-name=libasan.so"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return Path(named) if named and Path(named).is_absolute() and Path(named).exists() else None


@pytest.fixture(scope="module")
def sanitized(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A build folder holding only the C modules, sanitized, with a manifest of this source
    (the mypyc modules then run from source), and the ASan runtime."""
    compiler = shutil.which("gcc")
    if compiler is None:
        pytest.skip("no gcc on PATH: the C modules cannot be built with sanitizers here")
    runtime = _runtime(compiler)
    if runtime is None:
        pytest.skip("gcc has no AddressSanitizer runtime (libasan) here")
    build = tmp_path_factory.mktemp("sanitized")
    (build / "node").mkdir()
    include = sysconfig.get_paths()["include"]
    for name, path in native.C_EXTENSIONS.items():
        target = build / "node" / (name.rpartition(".")[2] + EXTENSION_SUFFIXES[0])
        flags = ["-g", "-O1", *SANITIZE, "-fPIC", "-shared", f"-I{include}"]
        subprocess.run(
            [compiler, *flags, str(ROOT / "node" / path), "-o", str(target)],
            check=True,
            timeout=120,
        )
    (build / native.MANIFEST).write_text(json.dumps(native.manifest(ROOT / "node")))
    return build, runtime


def sanitized_env(build: Path, runtime: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HERD_NATIVE"}
    env.update(
        HERD_NATIVE_DIR=str(build),
        LD_PRELOAD=str(runtime),
        ASAN_OPTIONS="detect_leaks=0",  # CPython's own allocations are not ours to judge
        # Every object from malloc, not from pymalloc's arenas, inside which ASan sees no
        # bounds: a read two or more bytes past a bytes object's end is then caught (the
        # first byte past it is the NUL every bytes object ends with).
        PYTHONMALLOC="malloc",
        UBSAN_OPTIONS="print_stacktrace=1",
    )
    return env


def test_the_sanitized_c_modules_are_the_ones_used(sanitized: tuple[Path, Path]) -> None:
    build, runtime = sanitized
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import node.blocks, node.kept, node.store\n"
            "from node import _blocks, _kept, _order\n"
            "print(node.blocks.SCANNER, node.kept.BUILT_IN, node.store.ORDER_BUILT_IN)\n"
            "print(_blocks.__file__, _kept.__file__, _order.__file__, sep='\\n')",
        ],
        env=sanitized_env(build, runtime),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = done.stdout.split("\n")
    assert lines[0].split() == ["c", "c", "c"]
    assert all(f.startswith(str(build)) for f in lines[1:4]), lines


def test_the_c_modules_pass_their_tests_under_the_sanitizers(sanitized: tuple[Path, Path]) -> None:
    build, runtime = sanitized
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *C_TESTS],
        env=sanitized_env(build, runtime),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
