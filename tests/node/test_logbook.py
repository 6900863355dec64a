"""Tests for node.logbook: one UTC-stamped line per event, control bytes escaped, close flushes."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest

from node.logbook import LogBook, show

STAMPED = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z (.*)")


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def test_event_without_a_loop_is_written_at_once(tmp_path):
    path = tmp_path / "logs" / "node.log"  # parent dirs are created
    book = LogBook(path)
    book.event("NODE_UP name=Bailey")
    assert len(lines(path)) == 1
    book.close()


def test_event_line_is_iso8601_utc_stamp_space_text(tmp_path, monkeypatch):
    monkeypatch.setattr(time, "time", lambda: 1520023934.5)
    book = LogBook(tmp_path / "node.log")
    book.event("hello world")
    book.close()
    assert lines(tmp_path / "node.log") == ["2018-03-02T20:52:14.500000Z hello world\n"]


def test_microseconds_are_zero_padded(tmp_path, monkeypatch):
    monkeypatch.setattr(time, "time", lambda: 1520023934.25)
    book = LogBook(tmp_path / "node.log")
    book.event("x")
    monkeypatch.setattr(time, "time", lambda: 1520023935.0)
    book.event("y")
    book.close()
    assert lines(tmp_path / "node.log") == [
        "2018-03-02T20:52:14.250000Z x\n",
        "2018-03-02T20:52:15.000000Z y\n",
    ]


def test_each_event_is_one_stamped_line_in_order(tmp_path):
    book = LogBook(tmp_path / "node.log")
    for i in range(50):
        book.event(f"EVENT {i}")
    book.close()
    got = lines(tmp_path / "node.log")
    assert len(got) == 50
    for i, line in enumerate(got):
        m = STAMPED.fullmatch(line.removesuffix("\n"))
        assert m is not None, line
        assert m.group(1) == f"EVENT {i}"


def test_events_append_to_an_existing_log(tmp_path):
    path = tmp_path / "node.log"
    path.write_text("old\n", encoding="utf-8")
    book = LogBook(path)
    book.event("new")
    book.close()
    got = lines(path)
    assert got[0] == "old\n"
    assert got[1].endswith(" new\n")


def test_show_escapes_control_bytes_and_backslash():
    assert show(b"a\nb\rc\td\x00e\x1bf\x7fg\\h") == "a\\nb\\rc\\td\\x00e\\x1bf\\x7fg\\\\h"


def test_show_keeps_utf8_and_escapes_invalid_bytes():
    assert show("é ünïcode\xa0".encode()) == "é ünïcode\xa0"
    shown = show(b"IAMAT \xff\xfe +1+1 1")
    assert shown.isprintable()
    assert "\ufffd" not in shown
    assert "xff" in shown and "xfe" in shown


@pytest.mark.parametrize(
    "raw", [b"IAMAT a\nb +1+1 1", b"x\r\ny", b"\x00\x00", b"\x0b\x0c\x1c\x1d\x1e", b"\r"]
)
def test_event_with_shown_control_bytes_stays_on_one_line(tmp_path, raw):
    book = LogBook(tmp_path / "node.log")
    book.event(f"IN conn=1 {show(raw)}")
    book.close()
    text = (tmp_path / "node.log").read_bytes()
    assert text.count(b"\n") == 1
    assert text.endswith(b"\n")
    assert not any(b < 0x20 for b in text[:-1])
    assert len(lines(tmp_path / "node.log")) == 1  # str.splitlines splits on \x1c too


async def test_events_inside_a_loop_are_batched_until_close(tmp_path):
    path = tmp_path / "node.log"
    book = LogBook(path, flush_interval=3600)
    book.event("one")
    book.event("two")
    assert path.read_text(encoding="utf-8") == ""
    book.close()
    assert [line.split(" ", 1)[1] for line in lines(path)] == ["one\n", "two\n"]


async def test_events_inside_a_loop_reach_the_file_on_the_timer(tmp_path):
    path = tmp_path / "node.log"
    book = LogBook(path, flush_interval=0)
    book.event("soon")
    for _ in range(1000):  # a bounded wait for the timer, never a sleep on the clock
        if path.read_text(encoding="utf-8"):
            break
        await asyncio.sleep(0)
    assert [line.split(" ", 1)[1] for line in lines(path)] == ["soon\n"]
    book.close()


def test_flush_with_nothing_pending_writes_nothing(tmp_path):
    book = LogBook(tmp_path / "node.log")
    book.flush()
    book.close()
    assert (tmp_path / "node.log").read_text(encoding="utf-8") == ""


def test_close_twice_is_harmless(tmp_path):
    book = LogBook(tmp_path / "node.log")
    book.event("x")
    book.close()
    book.close()
    assert len(lines(tmp_path / "node.log")) == 1


def test_logbook_without_a_path_writes_to_stderr(capsys):
    book = LogBook(None)
    book.event("to stderr")
    book.close()
    err = capsys.readouterr().err
    m = STAMPED.fullmatch(err.removesuffix("\n"))
    assert m is not None and m.group(1) == "to stderr"


def test_rotates_by_size_keeping_backups(tmp_path):
    path = tmp_path / "N.log"
    book = LogBook(path, max_bytes=200, backups=2)
    for i in range(40):
        book.event(f"event number {i:03d}")
    book.close()
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == ["N.log", "N.log.1", "N.log.2"]
    assert all(p.stat().st_size <= 200 + 60 for p in tmp_path.iterdir())
    assert "event number 039" in path.read_text() or "event number 039" in (
        tmp_path / "N.log.1"
    ).read_text()
