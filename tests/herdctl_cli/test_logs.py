"""herdctl.logs: tail from the end, merge by timestamp, follow across rotation and truncation."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from herdctl import logs


def stamp(second: int, micro: int = 0) -> str:
    return f"2026-11-26T01:{second // 60:02d}:{second % 60:02d}.{micro:06d}Z"


def write(path: Path, *lines: str, mode: str = "a") -> None:
    with open(path, mode, encoding="utf-8") as f:
        f.write("".join(f"{line}\n" for line in lines))


# --- last_lines ------------------------------------------------------------------------------


@pytest.mark.parametrize("block", [1, 3, 7, 8192])
def test_last_lines_reads_back_from_the_end(tmp_path: Path, block: int) -> None:
    path = tmp_path / "a.log"
    write(path, *(f"line {i}" for i in range(100)))
    assert logs.last_lines(path, 3, block=block) == ["line 97", "line 98", "line 99"]
    assert logs.last_lines(path, 1, block=block) == ["line 99"]
    assert logs.last_lines(path, 500, block=block) == [f"line {i}" for i in range(100)]
    assert logs.last_lines(path, 0, block=block) == []


def test_last_lines_edge_cases(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"")
    assert logs.last_lines(path, 5) == []
    path.write_bytes(b"one\ntwo")  # a last line without LF still counts
    assert logs.last_lines(path, 1) == ["two"]
    assert logs.last_lines(path, 5) == ["one", "two"]
    path.write_bytes(b"\n\nx\n")  # empty lines are lines
    assert logs.last_lines(path, 3) == ["", "", "x"]
    path.write_bytes(b"caf\xc3\xa9 \xff\n")  # bad UTF-8 never stops a tail
    assert logs.last_lines(path, 1) == ["caf\u00e9 \ufffd"]


class CountingReads(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.read_bytes = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.read_bytes += len(data)
        return data


def test_last_lines_of_a_big_file_reads_only_its_end() -> None:
    data = b"x" * 10_000_000 + b"\ntail 1\ntail 2\n"
    f = CountingReads(data)
    assert logs._lines_before(f, len(data), 2) == ["tail 1", "tail 2"]
    assert f.read_bytes <= logs.BLOCK


# --- timestamps, entries, merge --------------------------------------------------------------


def test_timestamp_of_a_line() -> None:
    assert logs.timestamp(f"{stamp(9, 552723)} LINK_UP peer=Hands") == stamp(9, 552723)
    assert logs.timestamp("Traceback (most recent call last):") is None
    assert logs.timestamp("  2026-11-26T01:35:09Z indented") is None
    assert logs.timestamp("2026-11-26T01:35:09Z") == "2026-11-26T01:35:09Z"


def test_lines_without_a_timestamp_join_the_entry_before() -> None:
    lines = ["orphan", f"{stamp(1)} A", "  more of A", f"{stamp(2)} B"]
    got = list(logs.entries("X", lines))
    assert got == [
        logs.Entry("", "X", ("orphan",)),
        logs.Entry(stamp(1), "X", (f"{stamp(1)} A", "  more of A")),
        logs.Entry(stamp(2), "X", (f"{stamp(2)} B",)),
    ]


def test_merge_orders_by_timestamp_and_keeps_continuations_attached() -> None:
    merged = logs.merge(
        {
            "Goloman": [f"{stamp(1)} g1", f"{stamp(4)} g4", "  g4 continued"],
            "Hands": [f"{stamp(2)} h2", f"{stamp(3)} h3"],
            "Welsh": [],
        }
    )
    out = [line for entry in merged for line in logs.prefixed(entry, 7)]
    assert out == [
        f"Goloman | {stamp(1)} g1",
        f"Hands   | {stamp(2)} h2",
        f"Hands   | {stamp(3)} h3",
        f"Goloman | {stamp(4)} g4",
        "Goloman |   g4 continued",
    ]


def test_merge_ties_keep_source_order_and_is_lazy() -> None:
    def endless(name: str) -> object:
        i = 0
        while True:
            yield f"{stamp(i)} {name}{i}"
            i += 1

    merged = logs.merge({"A": endless("a"), "B": endless("b")})  # type: ignore[dict-item]
    first = [next(merged).lines[0].split()[1] for _ in range(4)]
    assert first == ["a0", "b0", "a1", "b1"]


# --- following -------------------------------------------------------------------------------


def test_follower_reads_only_new_complete_lines(tmp_path: Path) -> None:
    path = tmp_path / "n.log"
    write(path, "old 1", "old 2")
    f = logs.Follower(path)
    assert f.history(5) == ["old 1", "old 2"]
    assert f.poll() == []
    write(path, "new 1")
    with open(path, "a") as out:
        out.write("half")
    assert f.poll() == ["new 1"]
    with open(path, "a") as out:
        out.write(" done\n")
    assert f.poll() == ["half done"]
    f.close()


def test_follower_starts_at_an_unfinished_line_so_nothing_repeats(tmp_path: Path) -> None:
    path = tmp_path / "n.log"
    path.write_text("one\ntwo\nthr")
    f = logs.Follower(path)
    assert f.history(10) == ["one", "two"]
    with open(path, "a") as out:
        out.write("ee\n")
    assert f.poll() == ["three"]
    f.close()


def test_follower_history_tops_up_from_rotated_files(tmp_path: Path) -> None:
    path = tmp_path / "n.log"
    write(path.with_name("n.log.2"), "very old")
    write(path.with_name("n.log.1"), "older 1", "older 2")
    write(path, "current")
    f = logs.Follower(path)
    assert f.history(3) == ["older 1", "older 2", "current"]
    assert f.history(10) == ["very old", "older 1", "older 2", "current"]
    assert f.history(1) == ["current"]
    f.close()


def test_follower_continues_across_rotation(tmp_path: Path) -> None:
    path = tmp_path / "n.log"
    write(path, "before")
    f = logs.Follower(path)
    write(path, "last of the old file")
    os.replace(path, path.with_name("n.log.1"))  # rotated, as LogBook does
    assert f.poll() == ["last of the old file"]  # no new file yet: keep reading the old one
    write(path, "first of the new file", "second")
    assert f.poll() == ["first of the new file", "second"]
    write(path, "third")
    assert f.poll() == ["third"]
    f.close()


def test_follower_flushes_an_unfinished_line_of_the_rotated_file(tmp_path: Path) -> None:
    path = tmp_path / "n.log"
    path.write_text("")
    f = logs.Follower(path)
    with open(path, "a") as out:
        out.write("torn")
    assert f.poll() == []
    os.replace(path, path.with_name("n.log.1"))
    write(path, "fresh")
    assert f.poll() == ["torn", "fresh"]
    f.close()


def test_follower_restarts_after_truncation(tmp_path: Path) -> None:
    path = tmp_path / "n.log"
    write(path, "a long line before truncation", "another")
    f = logs.Follower(path)
    path.write_text("")  # truncated in place (copytruncate)
    assert f.poll() == []
    write(path, "after")
    assert f.poll() == ["after"]
    f.close()


def test_follower_waits_for_a_file_that_does_not_exist_yet(tmp_path: Path) -> None:
    path = tmp_path / "later.log"
    f = logs.Follower(path)
    assert f.history(5) == []
    assert f.poll() == []
    write(path, "hello")
    assert f.poll() == ["hello"]
    f.close()


def scripted_sleep(steps: list[Callable[[], None]]) -> tuple[Callable[[float], None], list[float]]:
    """A fake sleep that runs the next scripted step (a file change) instead of waiting."""
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        if steps:
            steps.pop(0)()

    return sleep, slept


def test_follow_merges_logs_across_rotation_with_a_fake_sleep(tmp_path: Path) -> None:
    a, b = tmp_path / "A.log", tmp_path / "B.log"
    write(a, f"{stamp(0)} a0")
    write(b, f"{stamp(0)} b0")

    def both_grow() -> None:
        write(b, f"{stamp(2)} b2")
        write(a, f"{stamp(1)} a1")  # written later, yet older: the merge puts it first

    def a_rotates() -> None:
        os.replace(a, tmp_path / "A.log.1")
        write(a, f"{stamp(3)} a3 after rotation")

    steps: list[Callable[[], None]] = [
        both_grow,
        a_rotates,
        lambda: None,
        lambda: write(b, f"{stamp(4)} b4"),
    ]
    sleep, slept = scripted_sleep(steps)
    seen: list[str] = []
    followers = {"A": logs.Follower(a), "B": logs.Follower(b)}
    for entry in logs.follow(followers, sleep=sleep, stop=lambda: len(seen) >= 4, interval=0.5):
        seen.extend(logs.prefixed(entry, 1))
    assert seen == [
        f"A | {stamp(1)} a1",
        f"B | {stamp(2)} b2",
        f"A | {stamp(3)} a3 after rotation",
        f"B | {stamp(4)} b4",
    ]
    assert slept == [0.5] * 4
    assert all(f._f is None for f in followers.values())  # closed at the end


def test_history_keeps_the_last_n_lines_of_each_log_merged(tmp_path: Path) -> None:
    a, b = tmp_path / "A.log", tmp_path / "B.log"
    write(a, *(f"{stamp(i)} a{i}" for i in range(0, 10, 2)))
    write(b, *(f"{stamp(i)} b{i}" for i in range(1, 10, 2)))
    followers = {"A": logs.Follower(a), "B": logs.Follower(b)}
    got = [entry.lines[0].split()[1] for entry in logs.history(followers, 2)]
    assert got == ["a6", "b7", "a8", "b9"]  # two of each
    since = [entry.lines[0].split()[1] for entry in logs.history(followers, None, stamp(6))]
    assert since == ["a6", "b7", "a8", "b9"]
    assert [e.lines[0].split()[1] for e in logs.history(followers, 1, stamp(6))] == ["a8", "b9"]
    for f in followers.values():
        f.close()


def test_history_gives_exactly_n_lines_even_inside_an_entry(tmp_path: Path) -> None:
    a = tmp_path / "A.log"
    write(a, f"{stamp(1)} first", f"{stamp(2)} second", "  second continued", f"{stamp(3)} third")
    follower = logs.Follower(a)
    got = logs.history({"A": follower}, 3)
    assert [line for entry in got for line in entry.lines] == [
        f"{stamp(2)} second",
        "  second continued",
        f"{stamp(3)} third",
    ]
    got = logs.history({"A": follower}, 2)
    assert [line for entry in got for line in entry.lines] == [
        "  second continued",
        f"{stamp(3)} third",
    ]
    follower.close()


def test_kept_from_finds_the_first_entry_since_and_keeps_its_continuations() -> None:
    lines = ["  tail of an entry", f"{stamp(1)} a", f"{stamp(2)} b", "  b more", f"{stamp(3)} c"]
    assert logs.kept_from(lines, stamp(2)) == (2, True)
    assert logs.kept_from(lines, stamp(3)) == (4, True)
    assert logs.kept_from(lines, stamp(4)) == (5, True)  # nothing that recent
    assert logs.kept_from(lines, stamp(0)) == (1, False)  # no older entry seen: look further
    assert logs.kept_from(["no stamp", "at all"], stamp(0)) == (2, False)


def test_recent_reads_back_only_as_far_as_it_must() -> None:
    files = [
        [f"{stamp(s)} new{s}" for s in range(30, 60)],  # NAME.log
        [f"{stamp(s)} old{s}" for s in range(0, 30)],  # NAME.log.1
    ]
    asked: list[tuple[int, int]] = []

    def reader(i: int) -> Callable[[int], list[str]]:
        def read(k: int) -> list[str]:
            asked.append((i, k))
            return files[i][-k:] if k else []

        return read

    readers = [reader(0), reader(1)]
    assert logs.recent(readers, 3) == [f"{stamp(s)} new{s}" for s in (57, 58, 59)]
    assert asked == [(0, 3)]
    asked.clear()
    got = logs.recent(readers, None, stamp(25), batch=4)
    assert got == [f"{stamp(s)} old{s}" for s in range(25, 30)] + files[0]
    assert asked[-1][0] == 1 and asked[-1][1] < 30  # the old file only read back to 25
    asked.clear()
    assert logs.recent(readers, 2, stamp(25), batch=4) == files[0][-2:]
    assert asked == [(0, 2)]
    assert logs.recent(readers, 0) == []
    assert len(logs.recent(readers, 100)) == 60


@pytest.mark.parametrize(
    ("since", "stamp_"),
    [
        ("5m", "2026-11-26T01:30:09.000000Z"),
        ("90s", "2026-11-26T01:33:39.000000Z"),
        ("90", "2026-11-26T01:33:39.000000Z"),
        ("1.5h", "2026-11-26T00:05:09.000000Z"),
        ("2d", "2026-11-24T01:35:09.000000Z"),
        ("2026-11-26T01:00", "2026-11-26T01:00:00.000000Z"),
        ("2026-11-26T03:00:00+02:00", "2026-11-26T01:00:00.000000Z"),
        ("2026-11-26T01:00:00.5Z", "2026-11-26T01:00:00.500000Z"),
    ],
)
def test_since_stamp(since: str, stamp_: str) -> None:
    now = datetime(2026, 11, 26, 1, 35, 9, tzinfo=UTC)
    assert logs.since_stamp(since, now) == stamp_


def test_since_stamp_refuses_what_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="expected an age such as 30s"):
        logs.since_stamp("yesterday", datetime.now(UTC))


def test_excerpt_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "n.stderr.log"
    assert logs.excerpt(path, 3) == f"--- {path}: no such file ---"
    path.write_text("")
    assert logs.excerpt(path, 3) == f"--- last 0 lines of {path} ---\n(empty)"
    write(path, "a", "b", "c", "d")
    assert logs.excerpt(path, 2) == f"--- last 2 lines of {path} ---\nc\nd"
