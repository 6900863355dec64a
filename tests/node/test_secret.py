"""Tests for node.secret: $HERD_SECRET, the 0600 file, and racing creators sharing one secret."""

from __future__ import annotations

import multiprocessing
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from node.secret import SECRET_ENV, SecretError, load_secret, short_secret_warning

RACERS = 8
DEADLINE = 30.0  # seconds; a hung racer fails the test instead of hanging it


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_env_secret_wins_and_no_file_is_created(tmp_path):
    path = tmp_path / "secret"
    path.write_bytes(b"from-file\n")
    path.chmod(0o600)
    assert load_secret(path, {SECRET_ENV: "from-env"}) == b"from-env"
    assert load_secret(tmp_path / "none", {SECRET_ENV: "from-env"}) == b"from-env"
    assert not (tmp_path / "none").exists()


def test_empty_env_secret_falls_back_to_the_file(tmp_path):
    path = tmp_path / "secret"
    path.write_bytes(b"from-file\n")
    path.chmod(0o600)
    assert load_secret(path, {SECRET_ENV: ""}) == b"from-file"


def test_missing_file_is_created_0600_with_its_parent_dirs(tmp_path):
    path = tmp_path / "a" / "b" / "secret"
    secret = load_secret(path, {})
    assert path.is_file()
    assert mode(path) == 0o600
    assert len(secret) == 64
    assert int(secret, 16) >= 0
    assert path.read_bytes().strip() == secret


def test_second_call_returns_the_same_secret(tmp_path):
    path = tmp_path / "secret"
    assert load_secret(path, {}) == load_secret(path, {})


def test_creation_leaves_no_temp_files(tmp_path):
    load_secret(tmp_path / "secret", {})
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]


def test_existing_file_is_read_with_surrounding_white_space_stripped(tmp_path):
    path = tmp_path / "secret"
    path.write_bytes(b"  shared \n")
    path.chmod(0o600)
    assert load_secret(path, {}) == b"shared"


@pytest.mark.parametrize("bad_mode", [0o640, 0o604, 0o660, 0o644, 0o610])
def test_file_readable_by_others_is_refused_naming_chmod(tmp_path, bad_mode):
    path = tmp_path / "secret"
    path.write_bytes(b"shared\n")
    path.chmod(bad_mode)
    with pytest.raises(SecretError, match=r"chmod 600"):
        load_secret(path, {})


@pytest.mark.parametrize("content", [b"", b"\n", b"  \t\n"])
def test_empty_file_is_refused(tmp_path, content):
    path = tmp_path / "secret"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(SecretError, match="empty"):
        load_secret(path, {})


def test_unusable_path_is_a_secret_error_naming_the_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(SecretError, match="file/secret"):
        load_secret(blocker / "secret", {})


def test_racing_threads_all_get_one_secret(tmp_path):
    path = tmp_path / "fresh" / "secret"
    barrier = threading.Barrier(RACERS)
    results: list[bytes] = []
    errors: list[BaseException] = []

    def race() -> None:
        try:
            barrier.wait(timeout=DEADLINE)
            results.append(load_secret(path, {}))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=race) for _ in range(RACERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=DEADLINE)
    assert not errors
    assert len(results) == RACERS
    assert len(set(results)) == 1
    assert path.read_bytes().strip() == results[0]
    assert [p.name for p in path.parent.iterdir()] == ["secret"]


def _race_in_process(path: str, barrier: Any, results: Any) -> None:
    try:
        barrier.wait(timeout=DEADLINE)
        results.put(load_secret(Path(path), {}))
    except BaseException as e:
        results.put(repr(e))


def test_racing_processes_all_get_one_secret(tmp_path):
    path = tmp_path / "fresh" / "secret"
    # fork keeps this fast (~0.1 s vs ~1.5 s for spawn); each child is still its own process.
    if "fork" in multiprocessing.get_all_start_methods():
        ctx: Any = multiprocessing.get_context("fork")
    else:
        ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(RACERS)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_race_in_process, args=(str(path), barrier, results))
        for _ in range(RACERS)
    ]
    for p in procs:
        p.start()
    got = [results.get(timeout=DEADLINE) for _ in procs]
    for p in procs:
        p.join(timeout=DEADLINE)
    assert all(isinstance(g, bytes) for g in got), got
    assert len(set(got)) == 1
    assert path.read_bytes().strip() == got[0]
    assert mode(path) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["secret"]


def test_a_short_herd_secret_is_warned_about_by_its_length_only():
    warning = short_secret_warning({"HERD_SECRET": "hunter2"})
    assert warning is not None
    assert warning.startswith("warning: HERD_SECRET is 7 bytes long, shorter than 16")
    assert "hunter2" not in warning
    assert short_secret_warning({"HERD_SECRET": "\u00e9"}) is not None  # 2 bytes, 1 character


@pytest.mark.parametrize("env", [{}, {"HERD_SECRET": ""}, {"HERD_SECRET": "s" * 16}])
def test_a_long_or_unset_herd_secret_gets_no_warning(env):
    assert short_secret_warning(env) is None
