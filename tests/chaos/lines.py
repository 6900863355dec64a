"""Talking to real nodes from chaos tests: pipelined lines, and what a node holds."""

from __future__ import annotations

import socket
from collections.abc import Sequence

LIMITS = {"peer_backoff_initial": 0.05, "peer_backoff_max": 0.5}
WRITE_TIMEOUT = 5.0  # seconds for one writer exchange (a dead node refuses at once)


def send_lines(port: int, data: bytes, timeout: float = WRITE_TIMEOUT) -> tuple[bytes, bool]:
    """Send `data`, half-close, read to EOF. On a refused or cut connection, what came."""
    chunks: list[bytes] = []
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            while chunk := s.recv(65536):
                chunks.append(chunk)
    except OSError:
        return b"".join(chunks), False
    return b"".join(chunks), True


def whatsat_records(port: int, clients: Sequence[bytes]) -> dict[bytes, bytes | None]:
    """The AT line a node holds for each client (None: unknown), by pipelined WHATSATs."""
    reply, ok = send_lines(port, b"".join(b"WHATSAT %s 0 1\n" % c for c in clients))
    if not ok:
        raise OSError(f"port {port}: WHATSAT exchange failed")
    held: list[bytes | None] = []
    pos = 0
    while pos < len(reply):
        end = reply.index(b"\n", pos)
        line = reply[pos:end]
        if line.startswith(b"AT "):
            held.append(line)
            pos = reply.index(b"\n\n", end) + 2  # the JSON has no blank line; it ends in }\n\n
        else:
            held.append(None)  # `? WHATSAT ...`: not known here
            pos = end + 1
    return dict(zip(clients, held, strict=True))
