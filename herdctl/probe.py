"""Whether a node's port answers: one TCP connection with a deadline, closed at once.

The supervisor probes nodes it does not run; the CLI without a supervisor probes them all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable


async def port_answers(host: str, port: int, timeout: float) -> bool:
    """Whether a TCP connection to host:port succeeds within `timeout` seconds."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def ports_answer(addresses: Iterable[tuple[str, int]], timeout: float) -> list[bool]:
    """`port_answers` for each address, all at once: a host that drops packets costs one
    timeout, not one per address. For synchronous callers."""

    async def probe_all() -> list[bool]:
        probes = [port_answers(host, port, timeout) for host, port in addresses]
        return list(await asyncio.gather(*probes))

    return asyncio.run(probe_all())
