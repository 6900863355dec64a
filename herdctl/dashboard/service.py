"""The supervisor's side of its dashboard: start it where the topology says, move or stop
it on reload, and say where it is (the `dashboard` of `ping`'s answer).

aiohttp is imported here only when a site is started: a topology without `dashboard:` costs
the supervisor nothing. A site that cannot start (its port is taken) never stops the
supervisor: the failure is logged once (`DASHBOARD_ERROR`), reported by `ping` (so `herdctl
up` and `herdctl dashboard` say it), and tried again by the next reload.
"""

from __future__ import annotations

import errno
import ipaddress
from collections.abc import Callable
from typing import TYPE_CHECKING

from herdctl.control import Handler
from herdctl.dashboard.access import new_token
from herdctl.manager import Manager
from herdctl.messages import DashboardInfo
from node.config import DashboardConfig

if TYPE_CHECKING:
    from aiohttp import web

SHUTDOWN_TIMEOUT = 1.0  # seconds open pages get to end their streams when the site stops
_WILDCARD = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def url_for(host: str, port: int) -> str:
    """The address a browser on this machine opens: a wildcard bind is reached on loopback,
    an IPv6 address goes in brackets."""
    host = _WILDCARD.get(host, host)
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:  # a host name
        pass
    return f"http://{host}:{port}/"


def why_not(e: OSError, host: str, port: int) -> str:
    """Why the site could not listen, in one line."""
    if e.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is already in use"
    if e.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine (port {port})"
    return f"cannot listen on {host} port {port}: {e.strerror or e}"


class DashboardService:
    """The dashboard site, if the topology asks for one; one token for the supervisor's life.
    `_url` is the site's root; the page is under the token."""

    def __init__(
        self, manager: Manager, handle: Handler, *, log: Callable[[str], None] = lambda t: None
    ) -> None:
        self.manager = manager
        self.handle = handle
        self.token = new_token()
        self._log = log
        self._wanted: DashboardConfig | None = None
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._error: str | None = None

    def info(self) -> DashboardInfo:
        """Where the page is (its address with the token), or why it is not served."""
        url = f"{self._url}{self.token}/" if self._url else None
        return {"url": url, "error": self._error}

    async def apply(self, wanted: DashboardConfig | None) -> str | None:
        """Serve the dashboard as `wanted` says (None: none); one line saying what changed,
        or None when nothing did. A site that failed to start is tried again."""
        if wanted == self._wanted and self._error is None:
            return None
        was = self._url
        await self.stop()
        self._wanted, self._error = wanted, None
        if wanted is None:
            return "dashboard: stopped" if was else None
        error = await self._start(wanted)
        if error is not None:
            return f"dashboard: not served: {error}"
        return f"dashboard: {self.info()['url']}" + (" (moved)" if was else "")

    async def _start(self, wanted: DashboardConfig) -> str | None:
        from aiohttp import web  # the supervisor's only, and only with a dashboard

        from herdctl.dashboard.app import make_app

        app = make_app(self.manager, self.handle, self.token, log=self._log)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        try:
            await web.TCPSite(runner, wanted.host, wanted.port).start()
        except OSError as e:
            await runner.cleanup()
            self._error = why_not(e, wanted.host, wanted.port)
            self._log(f"DASHBOARD_ERROR host={wanted.host} port={wanted.port} error={self._error}")
            return self._error
        self._runner = runner
        port = int(runner.addresses[0][1])
        self._url = url_for(wanted.host, port)
        # The token stays out of the log: logs get pasted into bug reports.
        self._log(f"DASHBOARD_START url={self._url}TOKEN/ bind={wanted.host}:{port}")
        return None

    async def stop(self) -> None:
        """Stop serving: open pages end their streams, then the port is closed."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        await runner.cleanup()
        self._log(f"DASHBOARD_STOP url={self._url}TOKEN/")
        self._url = None
