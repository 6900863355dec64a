"""The compiled core (`node.native`): used only when built from the very source beside it,
and, when built, the same node: the core's own tests and a real two-node herd on it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from node import native
from tests.support import Herd, exchange_sync, wait_until, write_topology

ROOT = Path(__file__).resolve().parents[2]
CORE_TESTS = [
    "tests/node/test_protocol.py",
    "tests/node/test_store.py",
    "tests/node/test_store_properties.py",
    "tests/node/test_ingest.py",
    "tests/node/test_blocks.py",
    "tests/node/test_kept.py",
    "tests/node/test_order.py",
    "tests/node/test_journal.py",
    "tests/node/test_counters.py",
    "tests/node/test_logbook.py",
    "tests/node/test_turn_writes.py",
    "tests/node/test_turn_journal.py",
    "tests/hardening/test_plain_read.py",
    "tests/hardening/test_query_turn.py",
    "tests/node/test_server.py",
    "tests/node/test_flood_window.py",
    "tests/node/test_hold_back.py",
    "tests/node/test_journal_faults.py",
    "tests/hardening/test_peers.py",
    "tests/hardening/test_journal_first.py",
    "tests/hardening/test_server.py",
    "tests/hardening/test_admission.py",
]


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A copy of the compiled files' source, to edit."""
    folder = tmp_path / "src" / "node"
    folder.mkdir(parents=True)
    for name in native.sources():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "node" / name, folder / name)
    return folder


@pytest.fixture
def build(tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A build folder whose manifest matches `source` (no compiled files: the path is all
    `activate` touches)."""
    folder = tmp_path / "build"
    (folder / "node").mkdir(parents=True)
    (folder / native.MANIFEST).write_text(json.dumps(native.manifest(source)))
    monkeypatch.setenv("HERD_NATIVE_DIR", str(folder))
    monkeypatch.delenv("HERD_NATIVE", raising=False)
    return folder


def test_a_build_from_this_source_goes_first_on_the_package_path(build: Path, source: Path) -> None:
    path = [str(source)]
    assert native.activate(path) == "yes"
    assert path == [str(build / "node"), str(source)]
    subpackage = [str(source / "peers")]
    native.activate_subpackage(subpackage, path, "yes")
    assert subpackage == [str(build / "node" / "peers"), str(source / "peers")]


def test_a_subpackage_of_a_node_run_from_source_keeps_its_path(source: Path) -> None:
    subpackage = [str(source / "peers")]
    for status in ("none", "stale", "off"):
        native.activate_subpackage(subpackage, [str(source)], status)
        assert subpackage == [str(source / "peers")]


def test_one_edited_module_sends_the_whole_node_back_to_source(build: Path, source: Path) -> None:
    edited = source / native.source_of(native.COMPILED[-1])
    edited.write_text(edited.read_text() + "\n# edited after the build\n")
    path = [str(source)]
    assert native.activate(path) == "stale"
    assert path == [str(source)]


def test_an_edited_c_scanner_sends_the_whole_node_back_to_source(build: Path, source: Path) -> None:
    for path in native.C_EXTENSIONS.values():
        edited = source / path
        edited.write_text(edited.read_text() + "\n/* edited after the build */\n")
    assert native.activate([str(source)]) == "stale"


def test_a_missing_module_counts_as_stale(build: Path, source: Path) -> None:
    (source / native.source_of(native.COMPILED[0])).unlink()
    assert native.activate([str(source)]) == "stale"


def test_herd_native_0_runs_from_source(
    build: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HERD_NATIVE", "0")
    path = [str(source)]
    assert native.activate(path) == "off"
    assert path == [str(source)]


def test_no_build_unreadable_build_or_another_pythons_build_runs_from_source(
    build: Path, source: Path
) -> None:
    manifest = build / native.MANIFEST
    noted = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**noted, "extension_suffix": ".cpython-39-x86_64.so"}))
    assert native.activate([str(source)]) == "other-python"
    manifest.write_text("{not json")
    assert native.activate([str(source)]) == "unreadable"
    manifest.write_text("[]")
    assert native.activate([str(source)]) == "unreadable"
    manifest.unlink()
    assert native.activate([str(source)]) == "none"


def test_make_rebuilds_on_a_change_to_every_compiled_module() -> None:
    makefile = (ROOT / "Makefile").read_text()
    found = re.search(r"^NATIVE_SOURCES := \$\(foreach m,([^,]+),", makefile, re.MULTILINE)
    assert found is not None
    listed = tuple(native.source_of(name).removesuffix(".py") for name in native.COMPILED)
    assert tuple(found.group(1).split()) == listed
    for path in native.C_EXTENSIONS.values():
        assert re.search(rf"^NATIVE_SOURCES \+= .*\bnode/{re.escape(path)}\b", makefile, re.M)


# -- a real build ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This tree's core compiled by `tools/build_native.py` into a folder of the test's own."""
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler on PATH: the compiled core cannot be built here")
    pytest.importorskip("mypyc", reason="mypyc (part of mypy, the lint extra) is not installed")
    out = tmp_path_factory.mktemp("native") / "herd-native"
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "build_native.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert native.why_not(out, ROOT / "node") is None
    return out


def native_env(build: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HERD_NATIVE"}
    env["HERD_NATIVE_DIR"] = str(build)
    return env


def test_the_compiled_core_is_what_the_node_imports(compiled: Path) -> None:
    names = ", ".join(f"node.{name}" for name in native.COMPILED)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import node, node.blocks, node.kept, {names}\n"
            "print(node.NATIVE, node.blocks.SCANNER, node.kept.BUILT_IN,"
            " node.store.ORDER_BUILT_IN)\n"
            f"print(*(m.__file__ for m in ({names})), sep='\\n')",
        ],
        env=native_env(compiled),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    status, scanner, built_in, order, *files = done.stdout.split()
    assert (status, scanner, built_in, order) == ("yes", "c", "c", "c")
    assert len(files) == len(native.COMPILED)
    assert all(f.startswith(str(compiled)) and f.endswith(".so") for f in files), files


def test_the_compiled_core_passes_the_cores_own_tests(compiled: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *CORE_TESTS],
        env=native_env(compiled),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:]
    assert re.search(r"\d+ passed", done.stdout)


def test_a_herd_on_the_compiled_core_answers_and_floods(compiled: Path, tmp_path: Path) -> None:
    config = write_topology(tmp_path, ["Goloman", "Hands"], [("Goloman", "Hands")])
    with Herd(config, env=native_env(compiled)) as herd:
        herd.start()
        herd.wait_links_up()
        goloman, hands = herd.nodes["Goloman"], herd.nodes["Hands"]
        for node in (goloman, hands):
            assert re.search(r"START node=\S+ .* native=yes$", node.log_text(), re.MULTILINE)
        reply = exchange_sync(goloman.port, b"IAMAT kiwi +34.068930-118.445127 1700000000.5\n")
        assert re.fullmatch(
            rb"AT Goloman [+-]\d+\.\d{9} kiwi \+34\.068930-118\.445127 1700000000\.5\n", reply
        )

        def flooded() -> bool:
            answer = exchange_sync(hands.port, b"WHATSAT kiwi 10 1\n")
            return answer.startswith(b"AT Goloman ")

        wait_until(flooded, "the record at Hands")
