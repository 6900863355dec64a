"""`GET /metrics` on a node's `metrics_port`: the least HTTP/1.1 a Prometheus scrape needs.

aiohttp would cost a node 240 ms of start-up for one URL, so this is asyncio streams: one
request per connection (`Connection: close`), GET or HEAD, the body gzipped when the scraper
accepts it, a bounded head and a deadline, and a cap on scrapes at once so that a flood of
them cannot take the node's loop. The body comes from `render(accept)`, which the node
builds with `node.metrics` on the first scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
from collections.abc import Callable

HEAD_LIMIT = 16 * 1024  # bytes of request line and headers
REQUEST_TIMEOUT = 10.0  # seconds for the request to arrive and the reply to be taken
MAX_SCRAPES = 8  # connections at once; more are closed unanswered
GZIP_ABOVE = 1024  # bytes: smaller bodies go as they are

Render = Callable[[str], tuple[bytes, str]]  # Accept header -> (body, content type)

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


def parse_head(head: bytes) -> tuple[str, str, dict[str, str]] | None:
    """(method, path, lower-cased headers) of an HTTP/1.x request head, or None."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon:
            return None
        headers[name.strip().lower()] = value.strip()
    return parts[0], parts[1].split("?", 1)[0], headers


def response(
    status: int, body: bytes, content_type: str, *, head_only: bool = False, gzipped: bool = False
) -> bytes:
    """A whole HTTP/1.1 response that closes the connection."""
    lines = [
        f"HTTP/1.1 {status} {_REASONS[status]}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if gzipped:
        lines.append("Content-Encoding: gzip")
    if status == 405:
        lines.append("Allow: GET, HEAD")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (b"" if head_only else body)


def answer(method: str, path: str, headers: dict[str, str], render: Render, name: str) -> bytes:
    """The response to one parsed request."""
    if method not in ("GET", "HEAD"):
        return response(405, b"GET or HEAD only\n", "text/plain; charset=utf-8")
    head_only = method == "HEAD"
    if path == "/":
        text = f"herd node {name}: Prometheus metrics at /metrics\n".encode()
        return response(200, text, "text/plain; charset=utf-8", head_only=head_only)
    if path != "/metrics":
        return response(404, b"not found: the metrics are at /metrics\n", "text/plain")
    body, content_type = render(headers.get("accept", ""))
    gzipped = len(body) > GZIP_ABOVE and "gzip" in headers.get("accept-encoding", "")
    if gzipped:
        body = gzip.compress(body, compresslevel=1)  # a scrape a second: speed over size
    return response(200, body, content_type, head_only=head_only, gzipped=gzipped)


class MetricsEndpoint:
    """The listener on `metrics_port`; `bind` it early (a port in use is a start error)."""

    def __init__(self, host: str, port: int, name: str, render: Render) -> None:
        self.host = host
        self.port = port
        self.name = name
        self._render = render
        self._server: asyncio.Server | None = None
        self._open = 0

    async def bind(self) -> None:
        """Listen (OSError when the port cannot be had); scrapes are served from here on."""
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, reuse_address=True, limit=HEAD_LIMIT
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open += 1
        try:
            if self._open <= MAX_SCRAPES:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    await self._exchange(reader, writer)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass  # a scraper that went away or never finished its request
        except asyncio.LimitOverrunError:
            pass  # a head over HEAD_LIMIT: not a scraper
        finally:
            self._open -= 1
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        parsed = parse_head(head[:-4])
        if parsed is None:
            writer.write(response(400, b"bad request\n", "text/plain"))
        else:
            writer.write(answer(*parsed, self._render, self.name))
        await writer.drain()
