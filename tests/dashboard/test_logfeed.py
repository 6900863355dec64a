"""herdctl.dashboard.logfeed: new lines of several logs, merged, a bounded window at a time."""

from __future__ import annotations

import os
from pathlib import Path

from herdctl.dashboard import logfeed
from herdctl.dashboard.logfeed import LogFeed, Tail, history


def stamp(i: int) -> str:
    return f"2026-12-04T08:00:{i:02d}.000000Z"


def append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)


def test_a_tail_starts_at_the_end_and_gives_whole_lines(tmp_path: Path) -> None:
    log = tmp_path / "A.log"
    log.write_text(f"{stamp(0)} OLD\n")
    tail = Tail(log)
    assert tail.poll() == ([], False)
    append(log, f"{stamp(1)} ONE\n{stamp(2)} TW")
    assert tail.poll() == ([f"{stamp(1)} ONE"], False)
    append(log, "O\n")
    assert tail.poll() == ([f"{stamp(2)} TWO"], False)


def test_a_log_that_appears_later_is_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "A.log"
    tail = Tail(log)
    assert tail.poll() == ([], False)
    log.write_text(f"{stamp(0)} FIRST\n")
    assert tail.poll() == ([f"{stamp(0)} FIRST"], False)


def test_rotation_and_truncation_start_over_and_say_so(tmp_path: Path) -> None:
    log = tmp_path / "A.log"
    log.write_text(f"{stamp(0)} OLD\n")
    tail = Tail(log)
    os.rename(log, tmp_path / "A.log.1")
    log.write_text(f"{stamp(1)} NEW\n")
    assert tail.poll() == ([f"{stamp(1)} NEW"], True)
    log.write_text(f"{stamp(2)} X\n")  # same file, shorter than where the tail was
    assert tail.poll() == ([f"{stamp(2)} X"], True)


def test_a_burst_is_read_from_one_window_before_its_end(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(logfeed, "WINDOW", 100)
    log = tmp_path / "A.log"
    log.write_text("")
    tail = Tail(log)
    append(log, "".join(f"{stamp(i)} LINE {i}\n" for i in range(20)))  # 38 bytes a line
    lines, skipped = tail.poll()
    assert skipped and lines == [f"{stamp(18)} LINE 18", f"{stamp(19)} LINE 19"]
    append(log, f"{stamp(20)} LINE 20\n")
    assert tail.poll() == ([f"{stamp(20)} LINE 20"], False)


def test_a_skip_into_a_line_longer_than_the_window(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(logfeed, "WINDOW", 10)
    log = tmp_path / "A.log"
    log.write_text("")
    tail = Tail(log)
    append(log, "x" * 50)
    assert tail.poll() == ([], True)
    append(log, "y\nshort\n")  # the rest of the long line, then one that fits
    assert tail.poll() == (["short"], False)


def test_the_feed_merges_by_time_and_caps_each_poll(tmp_path: Path, monkeypatch) -> None:
    a, b = tmp_path / "A.log", tmp_path / "B.log"
    a.write_text("")
    feed = LogFeed({"A": a, "herdctl": b})
    append(a, f"{stamp(1)} A1\n  continued\n{stamp(3)} A3\n")
    append(b, f"{stamp(2)} S2\n")
    entries, skipped = feed.poll()
    assert not skipped
    assert [(e["source"], e["time"]) for e in entries] == [
        ("A", stamp(1)),
        ("herdctl", stamp(2)),
        ("A", stamp(3)),
    ]
    assert entries[0]["text"] == f"{stamp(1)} A1\n  continued"
    monkeypatch.setattr(logfeed, "MAX_ENTRIES", 2)
    append(a, "".join(f"{stamp(10 + i)} A\n" for i in range(5)))
    entries, skipped = feed.poll()
    assert skipped and [e["time"] for e in entries] == [stamp(13), stamp(14)]


def test_retarget_keeps_the_place_of_a_log_still_followed(tmp_path: Path) -> None:
    a, c = tmp_path / "A.log", tmp_path / "C.log"
    a.write_text("")
    c.write_text(f"{stamp(0)} C0\n")
    feed = LogFeed({"A": a})
    append(a, f"{stamp(1)} A1\n")
    feed.retarget({"A": a, "C": c})  # C followed from its end, A from where it was
    append(c, f"{stamp(2)} C2\n")
    assert [e["text"] for e in feed.poll()[0]] == [f"{stamp(1)} A1", f"{stamp(2)} C2"]


def test_history_is_the_last_entries_of_all_logs(tmp_path: Path) -> None:
    a, b = tmp_path / "A.log", tmp_path / "B.log"
    a.write_text("".join(f"{stamp(i)} A{i}\n" for i in range(0, 10, 2)))
    b.write_text("".join(f"{stamp(i)} B{i}\n" for i in range(1, 10, 2)))
    got = history({"A": a, "B": b, "gone": tmp_path / "missing.log"}, 3)
    assert [e["text"].split()[1] for e in got] == ["B7", "A8", "B9"]
    assert history({"A": a}, 0) == []
