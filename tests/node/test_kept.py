"""`node.kept`: a kept record's journal entry and flood line, the same bytes whichever
builds them (the C one when the compiled core is built: tests/node/test_native.py runs this
file on it too)."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from node import kept
from node.entries import check_entry


@given(st.binary(max_size=40), st.binary(max_size=120))
@example(b"", b"")
@example(b"kiwi", b"+34.068930-118.445127 1520023934.918963997 1520023935.000000001 Hands")
def test_the_entry_and_the_line_are_the_pythons_to_the_byte(client: bytes, packed: bytes) -> None:
    entries: list[bytes] = [b"earlier"]
    flood: list[bytes] = []
    kept.append_kept(entries, flood, client, packed)
    expected_entries: list[bytes] = [b"earlier"]
    expected_flood: list[bytes] = []
    kept._append_kept(expected_entries, expected_flood, client, packed)
    assert (entries, flood) == (expected_entries, expected_flood)
    body = client + b" " + packed
    assert entries[1] == b"%08x %s\n" % (zlib.crc32(body), body)
    assert flood == [b"CHANGELOC " + body + b"\n"]


@pytest.mark.parametrize("size", [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000])
def test_the_crc_is_zlibs_at_every_length_around_the_eight_byte_step(size: int) -> None:
    packed = (bytes(range(256)) * 4)[:size]
    entries: list[bytes] = []
    kept.append_kept(entries, [], b"c", packed)
    assert int(entries[0][:8], 16) == zlib.crc32(b"c " + packed)


def test_a_records_entry_replays() -> None:
    record = b"+34.068930-118.445127 1520023934.918963997 1520023935.000000001 Hands"
    entries: list[bytes] = []
    kept.append_kept(entries, [], b"kiwi", record)
    assert check_entry(entries[0].rstrip(b"\n")) == (b"kiwi", record)


def test_wrong_types_are_refused_not_written() -> None:
    with pytest.raises(TypeError):
        kept.append_kept([], [], "kiwi", b"x")  # type: ignore[arg-type]
    with pytest.raises((TypeError, AttributeError)):
        kept.append_kept((), [], b"kiwi", b"x")  # type: ignore[arg-type]
