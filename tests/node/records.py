"""Records built from parsed messages: the one-record reference the tests hold the node's
batched paths (node/ingest.py) to."""

from __future__ import annotations

from node.protocol import ChangeLoc, IAmAt, format_ns
from node.store import Record, make_record


def record_from_iamat(msg: IAmAt, server: bytes, received_ns: int) -> Record:
    """The record an IAMAT creates at the node named `server`, heard at `received_ns`."""
    return make_record(
        msg.client, msg.location, msg.time, format_ns(received_ns), server, msg.tkey
    )


def record_from_changeloc(msg: ChangeLoc) -> Record:
    """The record a peer flooded."""
    return make_record(
        msg.client, msg.location, msg.time_sent, msg.time_received, msg.server, msg.tkey
    )
