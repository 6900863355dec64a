"""A kept record's journal entry and flood line, appended to a batch's lists in one call.

`append_kept(entries, flood, client, packed)` appends the journal entry of the record
(`node.entries`'s form: the CRC-32 of `client packed` in 8 hex digits, the body, LF) to
`entries` and its CHANGELOC line to `flood`. It is the C of `node/_kept.c` when the
compiled core is built with it, else the Python below: the same bytes (a hypothesis test
holds the two to each other), without three `%` formats and a CRC call per record.
"""

from __future__ import annotations

from collections.abc import Callable

from node.entries import encode_packed
from node.protocol import CHANGELOC_LINE


def _append_kept(entries: list[bytes], flood: list[bytes], client: bytes, packed: bytes) -> None:
    entries.append(encode_packed(client, packed))
    flood.append(CHANGELOC_LINE % (client, packed))


append_kept: Callable[[list[bytes], list[bytes], bytes, bytes], None] = _append_kept
BUILT_IN = "python"  # which builds them: "python", or "c"

try:
    from node import _kept
except ImportError:  # the compiled core is not built, or not used (node.native)
    pass
else:
    append_kept = _kept.append_kept
    BUILT_IN = "c"
