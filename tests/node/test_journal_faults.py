"""The journal under a failing disk and damaged files: it never loses, glues or trusts."""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import zlib
from pathlib import Path

import pytest

from node import journal_folder
from node.entries import ReplayStats
from node.journal import Journal, JournalError
from node.store import ClientStore, Record
from tests.node.disk import FlakyDisk
from tests.node.records import encode_entry, make_record


def rec(client: bytes, t: bytes, loc: bytes = b"+1+1") -> Record:
    return make_record(client, loc, t, b"1520023935.000000000", b"Hands")


def entry(client: bytes, t: bytes) -> bytes:
    return encode_entry(rec(client, t))


def crc_valid(body: bytes) -> bytes:
    """An entry whose CRC matches whatever its body says: damage the CRC cannot see."""
    return b"%08x %s\n" % (zlib.crc32(body), body)


def replay(folder: Path) -> tuple[ClientStore, ReplayStats, list[str]]:
    events: list[str] = []
    store = ClientStore()
    j = Journal(folder, log=events.append)
    stats = j.open(store)
    asyncio.run(j.close())
    return store, stats, events


@pytest.mark.parametrize("mode", ["ENOSPC", "EIO", "short"])
def test_a_failed_write_raises_and_leaves_only_whole_entries(tmp_path: Path, mode: str) -> None:
    disk = FlakyDisk()
    events: list[str] = []
    j = Journal(tmp_path, fsync="no", log=events.append, write=disk)
    j.open(ClientStore())
    j.write([entry(b"before", b"1")])
    size = (tmp_path / "wal-00000001.log").stat().st_size
    disk.fail(mode)
    with pytest.raises(OSError):
        j.write([entry(b"lost%d" % i, b"2") for i in range(20)])
    assert (tmp_path / "wal-00000001.log").stat().st_size == size  # cut back, nothing glued
    assert j.failing is not None
    disk.heal()
    j.write([entry(b"after", b"3")])
    assert j.failing is None
    store, stats, _ = replay(tmp_path)
    assert (stats.entries, stats.damaged, stats.torn) == (2, 0, 0)
    assert sorted(r.client for r in store) == [b"after", b"before"]
    assert [e.split()[0] for e in events] == ["JOURNAL_WRITE_FAILED", "JOURNAL_WRITE_RECOVERED"]


def test_a_failing_episode_is_logged_once_with_the_errno(tmp_path: Path) -> None:
    disk = FlakyDisk()
    events: list[str] = []
    j = Journal(tmp_path, fsync="no", log=events.append, write=disk)
    j.open(ClientStore())
    disk.fail("ENOSPC")
    for i in range(50):
        with pytest.raises(OSError):
            j.write([entry(b"c", b"%d" % i)])
    disk.heal()
    j.write([entry(b"c", b"99")])
    assert len(events) == 2
    assert events[0].startswith("JOURNAL_WRITE_FAILED ") and "errno=ENOSPC" in events[0]
    assert events[1].startswith("JOURNAL_WRITE_RECOVERED failed_writes=50 ")


def test_a_failed_fsync_under_always_takes_the_batch_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    j = Journal(tmp_path, fsync="always")
    j.open(ClientStore())
    j.write([entry(b"a", b"1")])
    size = (tmp_path / "wal-00000001.log").stat().st_size

    def broken_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        j.write([entry(b"b", b"2")])
    assert (tmp_path / "wal-00000001.log").stat().st_size == size


def test_when_even_the_truncate_fails_the_next_entry_starts_a_new_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = FlakyDisk()
    events: list[str] = []
    j = Journal(tmp_path, fsync="no", log=events.append, write=disk)
    j.open(ClientStore())
    j.write([entry(b"a", b"1")])

    def broken_truncate(fd: int, length: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "ftruncate", broken_truncate)
    disk.fail("short")
    with pytest.raises(OSError):
        j.write([entry(b"b", b"2")])
    monkeypatch.undo()
    disk.heal()
    j.write([entry(b"c", b"3")])
    assert any(e.startswith("JOURNAL_SEGMENT_ABANDONED") for e in events)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wal-00000001.log", "wal-00000002.log"]
    # The half entry stays at the end of the abandoned segment; nothing was glued to it.
    store, stats, events = replay(tmp_path)
    assert sorted(r.client for r in store) == [b"a", b"c"]
    assert stats.torn == 1 and stats.moved_aside == 1


def test_no_segment_is_created_by_a_start_without_writes(tmp_path: Path) -> None:
    for _ in range(3):
        replay(tmp_path)
    assert list(tmp_path.iterdir()) == []
    j = Journal(tmp_path)
    j.open(ClientStore())
    j.write([entry(b"a", b"1")])
    asyncio.run(j.close())
    for _ in range(3):
        replay(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["wal-00000001.log"]


def test_files_are_private(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "Solo"
    j = Journal(folder)
    store = ClientStore()
    j.open(store)
    j.write([entry(b"a", b"1")])
    journal_folder.write_snapshot(folder, 9, store.packed())
    asyncio.run(j.close())
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"badtime +1+1 15200239x4 1520023935.000000000 Hands", "a malformed time"),
        (b"north +91.5+0 1520023934 1520023935.000000000 Hands", "latitude +91.5"),
        (b"short +1+1 1520023934 1520023935.5 Hands", "a receive time without 9 decimals"),
        (b"fields +1+1 1520023934 1520023935.000000000", "a missing field"),
        (b"tab\tname +1+1 1520023934 1520023935.000000000 Hands", "white space in a name"),
    ],
)
def test_replay_checks_every_entry_by_the_protocol_rules_not_the_crc_alone(
    tmp_path: Path, body: bytes, why: str
) -> None:
    (tmp_path / "wal-00000001.log").write_bytes(
        entry(b"good", b"1") + crc_valid(body) + entry(b"later", b"2")
    )
    store, stats, events = replay(tmp_path)
    assert sorted(r.client for r in store) == [b"good", b"later"], why
    assert stats.damaged == 1
    named = [e for e in events if e.startswith("JOURNAL_DAMAGED")]
    assert named == [
        f"JOURNAL_DAMAGED file=wal-00000001.log offset={len(entry(b'good', b'1'))}"
        f" reason=record client={body.split(b' ')[0].decode().replace(chr(9), chr(92) + 't')}"
    ]


def test_a_damaged_file_is_repaired_once_and_its_good_entries_survive(tmp_path: Path) -> None:
    good = [entry(b"c%d" % i, b"%d" % i) for i in range(5)]
    flipped = bytearray(entry(b"flip", b"9"))
    flipped[12] ^= 0x01
    (tmp_path / "wal-00000001.log").write_bytes(b"".join(good[:3]))
    (tmp_path / "wal-00000002.log").write_bytes(good[3] + bytes(flipped) + good[4] + b"torn 12")
    store, stats, events = replay(tmp_path)
    assert len(store) == 5
    assert (stats.damaged, stats.torn, stats.moved_aside) == (1, 1, 1)
    assert "JOURNAL_MOVED_ASIDE file=wal-00000002.log to=damaged/wal-00000002.log" in events
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["damaged", "snap-00000003.log"]
    assert (tmp_path / "damaged" / "wal-00000002.log").exists()
    again, stats2, events2 = replay(tmp_path)  # reported once, not at every start
    assert (stats2.damaged, stats2.torn, stats2.moved_aside) == (0, 0, 0)
    assert not [e for e in events2 if e.startswith("JOURNAL_DAMAGED")]
    assert {r.client: r for r in again} == {r.client: r for r in store}


def test_a_repair_that_cannot_write_moves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "wal-00000001.log").write_bytes(entry(b"a", b"1") + b"garbage\n")

    def full(folder: Path, seq: int, records: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal_folder, "write_snapshot", full)
    store, stats, events = replay(tmp_path)
    assert len(store) == 1 and stats.moved_aside == 0
    assert any(e.startswith("JOURNAL_REPAIR_FAILED errno=ENOSPC") for e in events)
    assert [p.name for p in tmp_path.iterdir()] == ["wal-00000001.log"]
    j = Journal(tmp_path)
    j.open(ClientStore())
    j.write([entry(b"b", b"2")])  # never appended to the damaged file
    asyncio.run(j.close())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wal-00000001.log", "wal-00000002.log"]


@pytest.mark.parametrize(
    "content",
    [
        b"\x00" * 5000,
        b"\xff\xfe" * 100 + b"\n" * 10,
        b"00000000 " + b"x" * 100,
        b"\n\n\n",
        bytes(range(256)) * 20,
    ],
)
def test_start_up_survives_any_content(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "wal-00000001.log").write_bytes(content + b"\n" + entry(b"ok", b"1"))
    store, _, _ = replay(tmp_path)
    assert store.get(b"ok") is not None


def test_an_unreadable_journal_is_a_journal_error_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "wal-00000001.log").mkdir()  # a folder where a segment should be
    (tmp_path / "snap-00000002.log").write_bytes(entry(b"a", b"1"))
    (tmp_path / "snap-00000002.log").chmod(0)
    j = Journal(tmp_path)
    if os.geteuid() == 0:  # root reads a 0000 file: only the folder-as-segment remains
        j.open(ClientStore())
        return
    with pytest.raises(JournalError, match="cannot use journal folder"):
        j.open(ClientStore())


def test_a_leftover_snapshot_temp_file_is_removed_at_start(tmp_path: Path) -> None:
    (tmp_path / "snap-00000002.tmp").write_bytes(b"x" * 1000)
    _, _, events = replay(tmp_path)
    assert not (tmp_path / "snap-00000002.tmp").exists()
    assert "JOURNAL_LEFTOVER_REMOVED file=snap-00000002.tmp" in events


async def test_a_failed_compaction_removes_its_temp_file_and_waits_before_retrying(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    store = ClientStore()
    j = Journal(tmp_path, fsync="no", compact_factor=1, compact_min=5, log=events.append)
    j.open(store)
    real_fsync = os.fsync
    tmp_seen: list[bool] = []

    def full_when_snapshotting(fd: int) -> None:
        if (tmp_path / "snap-00000002.tmp").exists():
            tmp_seen.append(True)
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_when_snapshotting)
    for i in range(5):
        r = rec(b"c", b"%d" % i)
        store.apply(r)
        j.write([encode_entry(r)])
    assert j._compactor is not None
    await j._compactor
    assert tmp_seen and not (tmp_path / "snap-00000002.tmp").exists()
    assert any(e.startswith("JOURNAL_COMPACT_FAILED errno=ENOSPC") for e in events)
    for i in range(5, 30):  # due again, but the retry waits
        r = rec(b"c", b"%d" % i)
        store.apply(r)
        j.write([encode_entry(r)])
    assert j._compactor.done()
    await j.close()
    again = ClientStore()
    j2 = Journal(tmp_path)
    j2.open(again)
    await j2.close()
    assert again.get(b"c").time_sent == b"29"  # type: ignore[union-attr]


def test_an_endless_entry_without_lf_is_skipped_without_holding_it_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import node.entries

    monkeypatch.setattr(node.entries, "MAX_ENTRY", 100)
    monkeypatch.setattr(node.entries, "REPLAY_CHUNK", 64)
    path = tmp_path / "wal-00000001.log"
    path.write_bytes(entry(b"a", b"1") + b"x" * 1000 + b"\n" + entry(b"b", b"2"))
    store = ClientStore()
    stats = ReplayStats()
    node.entries.replay_file(path, store, stats)
    assert len(store) == 2 and stats.damaged == 1
    assert stats.damage[0].reason == "overlong"
