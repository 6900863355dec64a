"""The journal: entries, replay, torn and damaged entries, compaction, fsync policies."""

from __future__ import annotations

import asyncio
import os
import random
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node import entries
from node.entries import ReplayStats, replay_bytes
from node.journal import Journal
from node.store import ClientStore, Record
from tests.node.records import decode_entry, encode_entry, make_record


def rec(client: bytes, t: bytes, server: bytes = b"Hands", loc: bytes = b"+1+1") -> Record:
    return make_record(client, loc, t, b"1520023935.000000000", server)


def state(store: ClientStore) -> dict[bytes, Record]:
    return {r.client: r for r in store}


def test_entry_round_trip_keeps_every_byte() -> None:
    record = rec(b"caf\xc3\xa9\xff\x00name", b"1.50")
    line = encode_entry(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode_entry(line[:-1]) == record


@pytest.mark.parametrize("damage", [b"0" * 8 + b" x +1+1 1 1.000000000 H", b"zz", b"", b"12345678"])
def test_damaged_entries_decode_to_none(damage: bytes) -> None:
    assert decode_entry(damage) is None


def test_flipped_byte_is_caught_by_the_crc() -> None:
    line = bytearray(encode_entry(rec(b"a", b"7"))[:-1])
    line[12] ^= 0x01
    assert decode_entry(bytes(line)) is None


@settings(max_examples=300, deadline=None, database=None)
@given(body=st.binary(max_size=300), value=st.integers(0, 2**32 - 1))
def test_the_crc_is_zlibs_whichever_library_computes_it(body: bytes, value: int) -> None:
    """A journal written with zlib-ng's CRC (the `fast` extra) replays without it."""
    assert entries.crc32(body) == zlib.crc32(body)
    assert entries.crc32(body, value) == zlib.crc32(body, value)


def test_the_test_install_computes_the_crc_with_zlib_ng() -> None:
    assert entries.crc32.__module__ == "zlib_ng.zlib_ng"  # what the property above checks


def test_replay_skips_torn_last_entry_and_damaged_ones() -> None:
    good = [encode_entry(rec(b"c%d" % i, b"%d" % i)) for i in range(5)]
    data = good[0] + b"garbage line\n" + b"".join(good[1:]) + good[0][:-5]
    store = ClientStore()
    stats = ReplayStats()
    replay_bytes(data, store, stats)
    assert (stats.entries, stats.damaged, stats.torn, len(store)) == (5, 1, 1, 5)


async def test_records_survive_reopen_and_a_start_appends_to_the_last_clean_segment(
    tmp_path: Path,
) -> None:
    j = Journal(tmp_path, fsync="no")
    j.open(ClientStore())
    j.write([encode_entry(rec(b"c%d" % (i % 10), b"%d" % i)) for i in range(100)])
    # No close: the process "crashes" here; what was written is with the OS.
    store = ClientStore()
    again = Journal(tmp_path, fsync="no")
    stats = again.open(store)
    assert (stats.files, stats.entries, len(store)) == (1, 100, 10)
    assert store.get(b"c3") is not None and store.get(b"c3").time_sent == b"93"  # type: ignore[union-attr]
    again.write([encode_entry(rec(b"c3", b"100"))])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wal-00000001.log"]
    await again.close()


async def test_replay_order_and_duplicates_do_not_matter(tmp_path: Path) -> None:
    rng = random.Random(5)
    records = [
        rec(
            b"c%d" % rng.randrange(20),
            b"%d.%d" % (rng.randrange(5), rng.randrange(10)),
            rng.choice([b"Hands", b"Welsh"]),
            rng.choice([b"+1+1", b"+2+2"]),
        )
        for _ in range(300)
    ]
    expected = ClientStore()
    for r in records:
        expected.apply(r)
    for i in range(3):  # the same records spread over files in three different orders
        rng.shuffle(records)
        (tmp_path / f"wal-{i + 1:08d}.log").write_bytes(b"".join(map(encode_entry, records)))
    store = ClientStore()
    j = Journal(tmp_path)
    j.open(store)
    assert state(store) == state(expected)
    await j.close()


async def test_compaction_writes_a_snapshot_and_drops_what_it_covers(tmp_path: Path) -> None:
    events: list[str] = []
    store = ClientStore()
    j = Journal(tmp_path, fsync="everysec", compact_factor=2, compact_min=50, log=events.append)
    j.open(store)
    j.start()
    for i in range(60):
        r = rec(b"c%d" % (i % 5), b"%d" % i)
        store.apply(r)
        j.write([encode_entry(r)])
    for _ in range(200):  # the compaction runs in a worker thread: wait for its log line
        if events:
            break
        await asyncio.sleep(0.01)
    assert events and events[0].startswith("JOURNAL_COMPACTED records=5 ")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["snap-00000002.log"]  # wal-00000002.log comes with the next write
    await j.close()
    again = ClientStore()
    j2 = Journal(tmp_path)
    j2.open(again)
    assert state(again) == state(store)
    await j2.close()


async def test_compaction_starts_when_the_appended_entries_pass_factor_times_the_state(
    tmp_path: Path,
) -> None:
    """The threshold grows with the store: a compaction is not started before it, and is
    started at the first flush that reaches it, however the store grew in between."""
    events: list[str] = []
    store = ClientStore()
    j = Journal(tmp_path, fsync="no", compact_factor=2, compact_min=10, log=events.append)
    j.open(store)
    appended = 0

    def write(client: bytes) -> None:
        nonlocal appended
        r = rec(client, b"%d" % appended)
        store.apply(r)
        j.write([encode_entry(r)])
        appended += 1

    for i in range(10):  # 10 clients: due at max(10, 2 * 10) = 20 entries
        write(b"c%d" % i)
    for i in range(5):  # 5 more clients: now due at 2 * 15 = 30
        write(b"d%d" % i)
    while appended < 29:
        write(b"c0")
        assert j._compactor is None, appended
    write(b"c0")  # the 30th entry
    assert j._compactor is not None
    await j._compactor
    assert events and events[0].startswith("JOURNAL_COMPACTED records=15 ")
    await j.close()


async def test_a_crash_mid_compaction_still_replays_everything(tmp_path: Path) -> None:
    old = [rec(b"a", b"1"), rec(b"b", b"2")]
    (tmp_path / "wal-00000001.log").write_bytes(b"".join(map(encode_entry, old)))
    # The snapshot was being written when the process died: a .tmp, never renamed.
    (tmp_path / "snap-00000002.tmp").write_bytes(encode_entry(old[0])[:7])
    (tmp_path / "wal-00000002.log").write_bytes(encode_entry(rec(b"a", b"3")))
    store = ClientStore()
    j = Journal(tmp_path)
    stats = j.open(store)
    assert stats.files == 2 and stats.torn == 0
    assert store.get(b"a").time_sent == b"3" and store.get(b"b") is not None  # type: ignore[union-attr]
    await j.close()


async def test_always_fsyncs_every_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    j = Journal(tmp_path, fsync="always")
    j.open(ClientStore())
    for i in range(3):
        j.write([encode_entry(rec(b"x", b"%d" % i))])
    assert len(calls) == 3
    await j.close()


def test_unknown_policy_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        Journal(tmp_path, fsync="sometimes")


def test_replay_reads_in_chunks_across_entry_boundaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import node.entries

    monkeypatch.setattr(node.entries, "REPLAY_CHUNK", 7)  # cuts through every entry
    entries = [encode_entry(rec(b"c%d" % i, b"%d" % i)) for i in range(50)]
    path = tmp_path / "wal-00000001.log"
    path.write_bytes(b"".join(entries) + entries[0][:-3])
    store = ClientStore()
    stats = ReplayStats()
    node.entries.replay_file(path, store, stats)
    assert (stats.entries, stats.damaged, stats.torn, len(store)) == (50, 0, 1, 50)
