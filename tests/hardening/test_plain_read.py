"""A whole read answers exactly as the same bytes fed one at a time.

A read of whole lines from a waiting client is taken as one block where it can be
(`ingest.take_iamats`) and its replies written at once; the same bytes fed one at a time
are cut into lines one by one. Both must write the same replies and leave the same
store, journal and log.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.client import ClientConnection
from node.config import load_config
from node.journal import NullJournal
from node.server import NodeServer
from tests.fakes.server import CapturedLog, FakeTransport, InstantPlaces
from tests.support import write_topology

NOW_NS = 1_795_000_000_123_456_789


class ListJournal(NullJournal):
    def __init__(self) -> None:
        self.entries: list[bytes] = []

    def write(self, entries: list[bytes]) -> None:
        self.entries.extend(entries)


LINES = st.sampled_from(
    [
        b"IAMAT kiwi +34.068930-118.445127 1520023934.918963997",
        b"IAMAT kiwi +34.068930-118.445127 1520023934.9",
        b"IAMAT plum -33.86+151.21 1700000000",
        b"IAMAT plum -91+0 1700000000",
        b"IAMAT\tkiwi  +1+1   5",
        b"WHATSAT kiwi 10 2",
        b"WHATSAT nobody 10 2",
        b"BOGUS line",
        b"",
        b"   ",
        b"IAMAT a\\b +1+1 1",
        b"IAMAT caf\xc3\xa9 +1+1 2",
    ]
)


async def run(tmp_path: Path, reads: list[bytes]) -> tuple[bytes, dict[bytes, bytes], Any, Any]:
    config = load_config(
        write_topology(tmp_path, ("Solo",), [], extra={"places": {"provider": "offline"}})
    )
    log = CapturedLog()
    journal = ListJournal()
    node = NodeServer(
        config,
        "Solo",
        secret=b"s",
        places=InstantPlaces(),
        log=log,
        journal=journal,
        clock_ns=lambda: NOW_NS,
    )
    conn = ClientConnection(node)
    transport = FakeTransport(conn)
    conn.connection_made(transport)  # type: ignore[arg-type]
    for data in reads:
        conn.data_received(data)
        for _ in range(3):
            await asyncio.sleep(0)  # WHATSAT tasks finish, held lines resume
    for _ in range(5):
        await asyncio.sleep(0)
    kept = [e for e in log.events if not e.startswith("CONN_")]
    return transport.out, dict(node.store.packed()), journal.entries, kept


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=st.lists(LINES, min_size=1, max_size=12), cut=st.integers(1, 5))
async def test_whole_reads_answer_as_byte_by_byte_reads(
    tmp_path_factory: Any, lines: list[bytes], cut: int
) -> None:
    data = b"".join(line + b"\n" for line in lines)
    # Whole lines, `cut` of them per read: the shortcut takes every read it can.
    whole = [
        b"".join(line + b"\n" for line in lines[i : i + cut]) for i in range(0, len(lines), cut)
    ]
    one_by_one = [data[i : i + 1] for i in range(len(data))]
    fast = await run(tmp_path_factory.mktemp("fast"), whole)
    general = await run(tmp_path_factory.mktemp("general"), one_by_one)
    assert fast[0] == general[0]  # the replies, byte for byte and in order
    assert fast[1] == general[1]  # the store
    assert fast[2] == general[2]  # the journal entries
    # The log: the same events; IAMATs in the same order. A WHATSAT's event is logged when
    # its answer is ready, which byte-by-byte reads leave more loop turns for.
    assert sorted(fast[3]) == sorted(general[3])
    assert [e for e in fast[3] if e.startswith("IAMAT")] == [
        e for e in general[3] if e.startswith("IAMAT")
    ]
