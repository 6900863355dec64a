"""Tests for node.logbook: one UTC-stamped line per event, control bytes escaped, close flushes."""

from __future__ import annotations

import asyncio
import re
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.logbook import LogBook, show
from tests.support import mode, umask

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
    assert (
        "event number 039" in path.read_text()
        or "event number 039" in (tmp_path / "N.log.1").read_text()
    )


def test_log_and_its_rotations_are_0600_in_a_new_0700_folder(tmp_path):
    folder = tmp_path / "new" / "logs"
    with umask(0o022):
        book = LogBook(folder / "N.log", max_bytes=200, backups=2)
        for i in range(40):
            book.event(f"event number {i:03d}")
        book.close()
    assert mode(tmp_path / "new") == mode(folder) == 0o700
    assert sorted(p.name for p in folder.iterdir()) == ["N.log", "N.log.1", "N.log.2"]
    assert {p.name: mode(p) for p in folder.iterdir()} == dict.fromkeys(
        ["N.log", "N.log.1", "N.log.2"], 0o600
    )


def test_a_wider_log_and_its_old_rotations_are_tightened_when_opened(tmp_path):
    for name in ("N.log", "N.log.1", "N.log.3"):
        (tmp_path / name).write_text(f"{name} from before\n")
        (tmp_path / name).chmod(0o644)
    book = LogBook(tmp_path / "N.log", max_bytes=10_000, backups=3)
    assert {p.name: mode(p) for p in tmp_path.iterdir()} == dict.fromkeys(
        ["N.log", "N.log.1", "N.log.3"], 0o600
    )
    book.event("appended")
    book.close()
    assert lines(tmp_path / "N.log")[0] == "N.log from before\n"
    assert lines(tmp_path / "N.log")[1].endswith(" appended\n")


# -- raw_events: the hot path's batch of byte events --------------------------------------

NOW = 1520023934.25
PREFIX = "2018-03-02T20:52:14.250000Z "
# The bytes show() leaves alone when they stand alone: printable ASCII but the backslash.
_PLAIN = {b for b in range(0x20, 0x7F) if b != ord("\\")}


def _raw_logged(path: Path, events: list[bytes]) -> str:
    book = LogBook(path)
    book.raw_events(events)
    book.close()
    return path.read_text(encoding="utf-8")


def _shown_logged(path: Path, events: list[bytes]) -> str:
    """What the general path writes for the same events: event(show(raw)), one at a time."""
    book = LogBook(path)
    for raw in events:
        book.event(show(raw))
    book.close()
    return path.read_text(encoding="utf-8")


class _ShowCalls:
    """Counts show() calls made by raw_events: none means it took the fast path. The
    compiled log (node.native) calls its own show directly, which no patch reaches:
    `counted` is False then."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import node.logbook

        self.counted = node.logbook.__file__.endswith(".py")
        self.calls = 0
        real = node.logbook.show

        def counting(data: bytes) -> str:
            self.calls += 1
            return real(data)

        monkeypatch.setattr(node.logbook, "show", counting)


def test_raw_events_writes_one_stamped_line_per_event_in_order(tmp_path):
    events = [b"IAMAT conn=%d client=c%d kept=yes" % (i, i) for i in range(20)]
    text = _raw_logged(tmp_path / "node.log", events)
    got = text.splitlines(keepends=True)
    assert len(got) == len(events)
    stamps = set()
    for line, raw in zip(got, events, strict=True):
        m = STAMPED.fullmatch(line.removesuffix("\n"))
        assert m is not None, line
        assert m.group(1) == raw.decode()
        stamps.add(line.split(" ", 1)[0])
    assert len(stamps) == 1  # one instant for the whole batch


def test_raw_events_stamp_is_the_same_as_event(tmp_path, monkeypatch):
    monkeypatch.setattr(time, "time", lambda: NOW)
    assert _raw_logged(tmp_path / "a.log", [b"x", b"y"]) == f"{PREFIX}x\n{PREFIX}y\n"
    assert _shown_logged(tmp_path / "b.log", [b"x", b"y"]) == f"{PREFIX}x\n{PREFIX}y\n"
    # The fallback path too.
    assert _raw_logged(tmp_path / "c.log", [b"x\x00", b"y"]) == f"{PREFIX}x\\x00\n{PREFIX}y\n"


def test_raw_events_with_no_events_writes_nothing(tmp_path):
    assert _raw_logged(tmp_path / "node.log", []) == ""


def test_raw_events_an_empty_event_is_an_empty_stamped_line(tmp_path, monkeypatch):
    monkeypatch.setattr(time, "time", lambda: NOW)
    assert _raw_logged(tmp_path / "a.log", [b""]) == _shown_logged(tmp_path / "b.log", [b""])


def test_raw_events_keep_their_place_among_other_events(tmp_path, monkeypatch):
    monkeypatch.setattr(time, "time", lambda: NOW)
    book = LogBook(tmp_path / "node.log")
    book.event("first")
    book.raw_events([b"second", b"third"])
    book.event("fourth")
    book.raw_events([b"fifth\x1b"])
    book.close()
    assert [line.removeprefix(PREFIX) for line in lines(tmp_path / "node.log")] == [
        "first\n",
        "second\n",
        "third\n",
        "fourth\n",
        "fifth\\x1b\n",
    ]


@pytest.mark.parametrize(
    "events",
    [[b"a\\b"], [b"a\\b", b"plain"], [b"\\\\", b"\\"], [b"\\x41"], [b"\\", b"\xff"]],
)
def test_raw_events_double_backslashes(tmp_path, monkeypatch, events):
    monkeypatch.setattr(time, "time", lambda: NOW)
    text = _raw_logged(tmp_path / "a.log", events)
    assert text == _shown_logged(tmp_path / "b.log", events)
    for line, raw in zip(text.splitlines(), events, strict=True):
        assert line.removeprefix(PREFIX).count("\\\\") >= raw.count(b"\\")
    # A literal backslash can never be read back as an escape.
    assert "\\x41" not in text.replace("\\\\", "")


def _every_byte_params() -> list[object]:
    params: list[object] = []
    for byte in range(256):
        for path in ("alone", "fallback", "single"):
            params.append(pytest.param(byte, path, id=f"{byte:02x}-{path}"))
    return params


@pytest.mark.parametrize(("byte", "path"), _every_byte_params())
def test_raw_events_equal_event_of_show_for_every_byte(tmp_path, monkeypatch, byte, path):
    monkeypatch.setattr(time, "time", lambda: NOW)
    raw = b"IAMAT conn=1 client=a" + bytes([byte]) + b"z kept=yes"
    # "fallback": a neighbour that needs escaping sends the whole batch the slow way.
    # "single": the event alone in its batch, as a waiting client's one-line read makes it.
    events = {
        "alone": [b"before", raw, b"after"],
        "fallback": [b"before\xff", raw, b"after"],
        "single": [raw],
    }[path]
    expected = _shown_logged(tmp_path / "b.log", events)
    calls = _ShowCalls(monkeypatch)
    got = _raw_logged(tmp_path / "a.log", events)
    assert got == expected
    assert got.count("\n") == len(events) and len(lines(tmp_path / "a.log")) == len(events)
    if not calls.counted:
        return
    if path == "fallback":
        assert calls.calls == len(events)
    elif byte in _PLAIN:
        assert calls.calls == 0  # the one-search fast path


@pytest.mark.parametrize(
    "raw",
    [
        "caf\u00e9".encode(),
        "\u0085".encode(),  # C1 control, as UTF-8
        "\u2028".encode(),
        "\u2029".encode(),
        "\u00a0".encode(),
        "\U0001f600".encode(),
        b"\xed\xa0\x80",  # an encoded surrogate: not UTF-8
        b"\xc3",  # a cut sequence
        b"\\xff\xff",
    ],
)
def test_raw_events_equal_event_of_show_beyond_ascii(tmp_path, monkeypatch, raw):
    monkeypatch.setattr(time, "time", lambda: NOW)
    events = [b"ok", b"client=" + raw + b" kept=no"]
    assert _raw_logged(tmp_path / "a.log", events) == _shown_logged(tmp_path / "b.log", events)


@settings(max_examples=300, deadline=None, database=None)
@given(events=st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")), max_size=6))
def test_raw_events_equal_event_of_show_for_any_bytes_but_lf(events):
    # tmp_path is function-scoped, so each example writes into its own directory.
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        original = time.time
        time.time = lambda: NOW
        try:
            got = _raw_logged(folder / "a.log", events)
            expected = _shown_logged(folder / "b.log", events)
        finally:
            time.time = original
    assert got == expected
    assert got.count("\n") == len(events)


def test_raw_events_with_lf_inside_an_event_still_one_line_on_the_fallback_path(tmp_path):
    # With another byte to escape in the batch, show() is used and LF stays escaped.
    text = _raw_logged(tmp_path / "a.log", [b"a\nb\x00"])
    assert text.count("\n") == 1 and text.endswith(" a\\nb\\x00\n")


def test_raw_events_with_lf_inside_an_event_stays_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(time, "time", lambda: NOW)
    assert _raw_logged(tmp_path / "a.log", [b"a\nb"]) == f"{PREFIX}a\\nb\n"


async def test_raw_events_inside_a_loop_are_batched_until_close(tmp_path):
    path = tmp_path / "node.log"
    book = LogBook(path, flush_interval=3600)
    book.raw_events([b"one", b"two"])
    book.raw_events([b"three\\"])
    assert path.read_text(encoding="utf-8") == ""
    book.close()
    assert [line.split(" ", 1)[1] for line in lines(path)] == ["one\n", "two\n", "three\\\\\n"]
