"""The CLI's side of the wires to the nodes: the protocol client for `send`, and the status
it can give without a supervisor (whether each port answers).

`exchange` speaks to a node the way PROTOCOL.md's clients do: send the bytes, half-close,
read every byte until the node closes.
"""

from __future__ import annotations

import errno
import socket
import time

from herdctl.messages import NodeRow
from node.config import HerdConfig

READ_SIZE = 65536
PROBE_TIMEOUT = 1.0  # seconds for each node's port to answer, when there is no supervisor


class Unreachable(Exception):
    """The node could not be reached or did not answer in time; str() is the short reason."""


def exchange(host: str, port: int, data: bytes, *, timeout: float = 10.0) -> bytes:
    """Send `data`, half-close, and return every byte the node sends until it closes.

    `timeout` bounds the whole exchange, connecting included.
    """
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as e:
        raise Unreachable(_reason(e, timeout)) from None
    chunks: list[bytes] = []
    with sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                sock.settimeout(left)
                chunk = sock.recv(READ_SIZE)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
        except OSError as e:
            got = sum(map(len, chunks))
            suffix = f" (after {got} bytes of reply)" if got else ""
            raise Unreachable(_reason(e, timeout) + suffix) from None


def unsupervised_status(config: HerdConfig) -> list[NodeRow]:
    """Each configured node with whether its port answers: all there is to tell without a
    supervisor. State UNMANAGED (something serves the port) or STOPPED; probes run in
    parallel so a remote host that drops packets costs one probe timeout, not one per node.
    """
    from herdctl.probe import ports_answer  # asyncio: only when no supervisor answers

    specs = list(config.nodes.values())
    answers = ports_answer([(spec.host, spec.port) for spec in specs], PROBE_TIMEOUT)
    return [
        {
            "name": spec.name,
            "state": "UNMANAGED" if answers_ else "STOPPED",
            "pid": None,
            "host": spec.host,
            "port": spec.port,
            "restarts": None,
            "port_open": answers_,
            "message": "port answers, not supervised" if answers_ else None,
        }
        for spec, answers_ in zip(specs, answers, strict=True)
    ]


def _reason(e: OSError, timeout: float) -> str:
    if isinstance(e, TimeoutError | socket.timeout):
        return f"no answer within {timeout:g}s"
    if isinstance(e, socket.gaierror):
        return f"unknown host ({e.strerror or e})"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, ConnectionResetError):
        return "connection reset by the node"
    if e.errno is not None and e.errno in errno.errorcode:
        return (e.strerror or errno.errorcode[e.errno]).lower()
    return str(e) or type(e).__name__
