"""What the Google providers share: one pooled HTTP session, coalescing, key redaction.

Choices, in one place:

* One `aiohttp.ClientSession` per provider (so one per node), created on first use inside the
  running loop and closed by `close()`. Its connector keeps connections to Google alive and
  caps them at `MAX_CONNECTIONS`; every request has a total deadline (the configured timeout)
  that also covers waiting for a pooled connection, so a slow or silent upstream can never
  hold a WHATSAT reply longer than that.
* Concurrent identical queries are coalesced: while one upstream request for a key is in
  flight, later callers with the same key await that same task instead of sending their own.
  A caller that goes away (its client hung up) does not cancel the request for the others.
* No TTL cache. Google's terms restrict storing Places content, answers should be as fresh as
  Google's, and coalescing already absorbs the bursts that matter (a herd answering the same
  WHATSAT at once). A finished request is forgotten at once.
* The API key never leaves this process except in the request to Google. aiohttp puts URLs,
  query strings included, into its exception texts, so error messages are built here from the
  exception's type and a URL with `key=REDACTED`; and every message a provider hands back is
  passed through `redact`, which removes the literal key (raw and URL-encoded) wherever it is.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import quote, quote_plus

import aiohttp

from node.places.base import UNKNOWN_ERROR, failure_response

REQUEST_DENIED = "REQUEST_DENIED"
OVER_QUERY_LIMIT = "OVER_QUERY_LIMIT"
INVALID_REQUEST = "INVALID_REQUEST"
REDACTED = "REDACTED"

MAX_CONNECTIONS = 16  # per provider: plenty for one node, polite to Google
MAX_BODY_BYTES = 4 << 20  # a Nearby Search page is a few tens of KiB; refuse anything absurd

_KEY_PARAM = re.compile(r"(?i)\b(key=)[^&#\s'\"]*")

# Non-JSON HTTP failures, as the closest Nearby Search status.
_HTTP_STATUS = {
    400: INVALID_REQUEST,
    401: REQUEST_DENIED,
    403: REQUEST_DENIED,
    429: OVER_QUERY_LIMIT,
}


def redact(text: str, key: str) -> str:
    """`text` with the API key gone: any `key=...` query value, and the key itself anywhere."""
    text = _KEY_PARAM.sub(rf"\g<1>{REDACTED}", text)
    if key:
        for form in {key, quote(key, safe=""), quote_plus(key, safe="")}:
            text = text.replace(form, REDACTED)
    return text


def plain_number(x: float) -> str:
    """A float in plain decimal notation, shortest round-trip digits: 2500.0 -> "2500"."""
    text = format(Decimal(repr(float(x))).normalize(), "f")
    return "0" if text == "-0" else text


def status_for_http(code: int) -> str:
    """The Nearby Search status closest to an HTTP failure with no usable JSON error."""
    return _HTTP_STATUS.get(code, UNKNOWN_ERROR)


class UpstreamError(Exception):
    """The upstream request failed before a usable answer; the message is already redacted."""

    def __init__(self, message: str, status: str = UNKNOWN_ERROR) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Answer:
    """What Google sent back: the HTTP status and the body parsed as JSON (None if it was not)."""

    status: int
    reason: str
    data: Any
    is_json: bool

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def describe(self) -> str:
        """The HTTP status line, e.g. `HTTP 500 Internal Server Error`."""
        return f"HTTP {self.status} {self.reason}".rstrip()


class HttpClient:
    """One pooled aiohttp session with a total deadline per request, made on first use."""

    def __init__(self, key: str, timeout: float) -> None:
        self._key = key
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def __repr__(self) -> str:  # never show the key
        return f"HttpClient(timeout={self.timeout:g})"

    @property
    def closed(self) -> bool:
        return self._closed

    def _get_session(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed:
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                raise_for_status=False,
                trust_env=False,
            )
            self._session = session
        return session

    async def send(
        self,
        method: str,
        url: str,
        *,
        shown_url: str,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> Answer:
        """Send one request and read its whole body; raises only `UpstreamError`.

        `shown_url` is how the request appears in error messages; it must not hold the key.
        """
        if self._closed:
            raise UpstreamError("the places provider is shut down")
        shown = redact(shown_url, self._key)
        try:
            session = self._get_session()
            async with session.request(
                method, url, headers=headers, params=params, data=body
            ) as resp:
                raw = await _read_capped(resp)
                status, reason = resp.status, resp.reason or ""
        except TimeoutError:
            raise UpstreamError(
                f"no answer from {shown} within {self.timeout:g} s (timeout)"
            ) from None
        except UpstreamError as e:
            raise UpstreamError(f"{e} from {shown}") from None
        except Exception as e:  # network, TLS, bad URL, bad header: all the same to the client
            raise UpstreamError(f"request to {shown} failed: {type(e).__name__}") from None
        try:
            data = json.loads(raw)
        except ValueError:  # includes UnicodeDecodeError
            return Answer(status, reason, None, False)
        return Answer(status, reason, data, True)

    async def close(self) -> None:
        """Close the session; later requests fail at once with a clear message."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()


async def _read_capped(resp: aiohttp.ClientResponse) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_any():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise UpstreamError(f"answer larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


Response = dict[str, Any]


class Coalescer:
    """Runs at most one upstream request per key at a time; concurrent callers share it."""

    def __init__(self) -> None:
        self._inflight: dict[Hashable, asyncio.Task[Response]] = {}

    def __len__(self) -> int:
        return len(self._inflight)

    async def run(self, key: Hashable, fetch: Callable[[], Awaitable[Response]]) -> Response:
        """The result of `fetch()`, or of the identical fetch already under way."""
        task = self._inflight.get(key)
        if task is None or task.get_loop() is not asyncio.get_running_loop():
            task = asyncio.ensure_future(fetch())
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))
        try:
            # shield: one caller going away must not cancel the request the others wait for
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if task.cancelled() and (me is None or not me.cancelling()):
                # the shared request was cancelled by `cancel_all`, not this caller: answer
                return failure_response(UNKNOWN_ERROR, "the places provider shut down")
            raise

    def _forget(self, key: Hashable, task: asyncio.Task[Response]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved, so an abandoned failure is not reported as unseen

    async def cancel_all(self) -> None:
        """Cancel what is in flight (at shutdown) and wait for it to end."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class GoogleProvider:
    """What both Google providers are: a key, an endpoint, one HTTP client, a coalescer.

    A subclass names itself, its default endpoint and search path, and implements `_search`;
    `_answer` runs it coalesced on `share_key`, cuts the results to the bound and scrubs the
    key from any error message.
    """

    name = "google-base"
    default_endpoint = ""
    search_path = ""

    def __init__(self, api_key: str, *, endpoint: str | None = None, timeout: float = 5.0) -> None:
        if not api_key:
            raise ValueError(f"{type(self).__name__} needs an API key")
        self._key = api_key
        self.endpoint = (endpoint or self.default_endpoint).rstrip("/")
        self.url = self.endpoint + self.search_path
        self._http = HttpClient(api_key, timeout)
        self._coalescer = Coalescer()

    def __repr__(self) -> str:  # never show the key
        return f"{type(self).__name__}(endpoint={self.endpoint!r}, timeout={self._http.timeout:g})"

    async def _answer(
        self, share_key: Hashable, search: Callable[[], Awaitable[Response]], bound: int
    ) -> Response:
        shared = await self._coalescer.run(share_key, search)
        response = {**shared, "results": list(shared["results"])[: max(0, int(bound))]}
        if "error_message" in response:
            response["error_message"] = redact(str(response["error_message"]), self._key)
        return response

    async def start(self) -> None:
        """Nothing to warm up: the HTTP session opens on the first request."""

    async def close(self) -> None:
        """End what is in flight and close the HTTP session."""
        await self._coalescer.cancel_all()
        await self._http.close()
