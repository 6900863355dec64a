"""The dashboard's routes (aiohttp.web), served from the supervisor's own event loop.

Everything lives under the supervisor's token (herdctl.dashboard.access), /TOKEN/:

    GET  /TOKEN/                       the page (static/index.html; its links are relative)
    GET  /TOKEN/static/NAME            its script and style, shipped in the package
    GET  /TOKEN/api/state              the snapshot (herdctl.dashboard.state)
    GET  /TOKEN/api/events             server-sent events: `state`, `log`, `probe` (hub)
    GET  /TOKEN/api/logs?n=50          the last entries of every log, merged
    POST /TOKEN/api/probe              {"source": NAME}: a propagation probe (propagation)
    POST /TOKEN/api/nodes/NAME/ACTION  start, stop or restart one node

A wrong token is answered 404, as any other path; `/` says how to get the address. A POST
also needs the token in its header. A node's buttons go through the same control handler
as `herdctl start|stop|restart` (the request a CLI would send, to the function that
answers the control socket), so both behave alike. Only the supervisor imports this
module, and only when its topology asks for a dashboard.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from herdctl.control import Handler
from herdctl.daemon import LOG_NAME
from herdctl.dashboard import access, logfeed, propagation
from herdctl.dashboard.hub import EVERY, TICK, Hub, frame
from herdctl.dashboard.state import RateTracker, Snapshot, snapshot
from herdctl.manager import Manager
from herdctl.messages import Request, RequestError

STATIC = Path(__file__).with_name("static")
FILES = ("dashboard.js", "dashboard.css")  # what /TOKEN/static/ serves
ACTIONS = ("start", "stop", "restart")
HISTORY = 50  # log entries a page gets when it connects
MAX_HISTORY = 1000
SUPERVISOR_LOG = "herdctl"  # the supervisor's log's name among the nodes'
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass
class Dashboard:
    """What the routes share: the supervisor's manager and control handler, the token, the
    rates between looks, the event hub, and one probe at a time."""

    manager: Manager
    handle: Handler
    token: str
    log: Callable[[str], None]
    rates: RateTracker = field(default_factory=RateTracker)
    probing: asyncio.Lock = field(default_factory=asyncio.Lock)
    hub: Hub = field(init=False)

    async def look(self) -> Snapshot:
        """The snapshot of now: the manager's status rows, as `herdctl status` gets them."""
        rows = await self.manager.status()
        return snapshot(
            self.manager.config,
            rows,
            self.rates,
            now=time.monotonic(),
            wall=time.time(),
            supervisor_pid=os.getpid(),
        )

    def signature(self) -> object:
        """What changes when a node changes state or process; no I/O."""
        return tuple(
            (name, str(slot.policy.state), slot.proc.pid if slot.proc else None)
            for name, slot in self.manager.slots.items()
        )

    def log_paths(self) -> dict[str, Path]:
        """Every node's log and the supervisor's, by the name the page shows."""
        config = self.manager.config
        paths = {name: config.log_dir / f"{name}.log" for name in config.nodes}
        paths[SUPERVISOR_LOG] = config.log_dir / LOG_NAME
        return paths


KEY = web.AppKey("dashboard", Dashboard)


def make_app(
    manager: Manager,
    handle: Handler,
    token: str,
    *,
    log: Callable[[str], None] = lambda text: None,
    tick: float = TICK,
    every: float = EVERY,
) -> web.Application:
    """The dashboard of the herd `manager` supervises; `handle` answers its control socket."""
    board = Dashboard(manager, handle, token, log)
    board.hub = Hub(board.look, board.signature, board.log_paths, log=log, tick=tick, every=every)
    app = web.Application(middlewares=[_headers, _guard])
    app[KEY] = board
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    app.router.add_get("/", _no_token)
    app.router.add_get("/{token}", _to_page)
    app.router.add_get("/{token}/", _page(page))
    app.router.add_get("/{token}/static/{name}", _static)
    app.router.add_get("/{token}/api/state", _state)
    app.router.add_get("/{token}/api/events", _events)
    app.router.add_get("/{token}/api/logs", _logs)
    app.router.add_post("/{token}/api/probe", _probe)
    app.router.add_post("/{token}/api/nodes/{name}/{action}", _action)
    app.on_startup.append(_start_hub)
    app.on_shutdown.append(_end_streams)
    return app


Route = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _headers(request: web.Request, handler: Route) -> web.StreamResponse:
    """Never framed, never cached, no referrer: the token must stay on this page."""
    try:
        response = await handler(request)
    except web.HTTPException as e:
        response = e
    if not response.prepared:
        response.headers.update(_HEADERS)
        response.headers.setdefault("Cache-Control", "no-store")
    if isinstance(response, web.HTTPException):
        raise response
    return response


@web.middleware
async def _guard(request: web.Request, handler: Route) -> web.StreamResponse:
    """Under /TOKEN/, the token or a 404 (the same as for a path that is not there); a
    POST must carry the token in its header too, and come from this host's page."""
    board = request.app[KEY]
    given = request.match_info.get("token")
    if given is not None and not access.matches(board.token, given):
        raise _refused(404, "not found")
    if request.method == "POST":
        why = access.refusal(board.token, request.headers, request.host)
        if why is not None:
            raise _refused(403, why)
    return await handler(request)


async def _start_hub(app: web.Application) -> None:
    task = asyncio.get_running_loop().create_task(app[KEY].hub.run())

    async def stop(app: web.Application) -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.on_cleanup.append(stop)


async def _end_streams(app: web.Application) -> None:
    app[KEY].hub.close()


_ERRORS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    403: web.HTTPForbidden,
    404: web.HTTPNotFound,
    409: web.HTTPConflict,
    500: web.HTTPInternalServerError,
}


def _refused(status: int, error: str) -> web.HTTPException:
    """An error answer: `{"ok": false, "error": ...}`, as the control channel's."""
    body = json.dumps({"ok": False, "error": error})
    return _ERRORS[status](text=body, content_type="application/json")


def _page(template: str) -> Route:
    async def page(request: web.Request) -> web.StreamResponse:
        text = template.replace("{{TOKEN}}", request.app[KEY].token)
        return web.Response(text=text, content_type="text/html")

    return page


async def _to_page(request: web.Request) -> web.StreamResponse:
    """/TOKEN without its slash: the page's relative links need it."""
    raise web.HTTPSeeOther(location=f"/{request.match_info['token']}/")


async def _no_token(request: web.Request) -> web.StreamResponse:
    raise web.HTTPForbidden(text=_NO_TOKEN, content_type="text/html")


async def _static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in FILES:
        raise _refused(404, "not found")
    return web.FileResponse(STATIC / name)


_NO_TOKEN = (
    "<!doctype html><title>herd dashboard</title><p>The dashboard lives under its token. "
    "Open the address <code>herdctl dashboard</code> prints (or run "
    "<code>herdctl dashboard --open</code>).</p>"
)


async def _state(request: web.Request) -> web.StreamResponse:
    return web.json_response(await request.app[KEY].look())


async def _logs(request: web.Request) -> web.StreamResponse:
    try:
        n = int(request.query.get("n", str(HISTORY)))
    except ValueError:
        raise _refused(400, "n must be a whole number") from None
    n = max(0, min(n, MAX_HISTORY))
    board = request.app[KEY]
    return web.json_response({"entries": logfeed.history(board.log_paths(), n)})


async def _events(request: web.Request) -> web.StreamResponse:
    """The page's live feed: a snapshot and the last log entries at once, then the hub's."""
    board = request.app[KEY]
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", **_HEADERS}
    )
    await response.prepare(request)
    stream = board.hub.subscribe()
    try:
        await response.write(b"retry: 2000\n\n")  # the browser's reconnect delay, ms
        await response.write(frame("state", await board.look()))
        history = logfeed.history(board.log_paths(), HISTORY)
        await response.write(frame("log", {"entries": history, "skipped": False}))
        while (data := await stream.get()) is not None:
            await response.write(data)
    except ConnectionError:
        pass  # the page went away
    finally:
        board.hub.unsubscribe(stream)
    return response


async def _json_body(request: web.Request) -> dict[str, object]:
    try:
        body = await request.json()
    except ValueError:
        raise _refused(400, "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise _refused(400, "the body must be a JSON object")
    return body


async def _probe(request: web.Request) -> web.StreamResponse:
    board = request.app[KEY]
    source = (await _json_body(request)).get("source")
    if not isinstance(source, str) or source not in board.manager.config.nodes:
        known = ", ".join(board.manager.config.nodes)
        raise _refused(400, f"'source' must be a node of the herd ({known})")
    async with board.probing:
        try:
            result = await propagation.probe(board.manager.config, source)
        except propagation.ProbeError as e:
            board.log(f"DASHBOARD_PROBE source={source} error={e}")
            raise _refused(409, str(e)) from None
    every = result["all_ms"]
    board.log(
        f"DASHBOARD_PROBE source={source} client={result['client']} "
        f"all_ms={'-' if every is None else every}"
    )
    board.hub.publish(frame("probe", result))
    return web.json_response({"ok": True, **result})


async def _action(request: web.Request) -> web.StreamResponse:
    """One node's button: the request `herdctl ACTION NAME` sends, to the same handler."""
    board = request.app[KEY]
    name, action = request.match_info["name"], request.match_info["action"]
    if action not in ACTIONS:
        raise _refused(404, f"unknown action {action!r} (known: {', '.join(ACTIONS)})")
    if name not in board.manager.config.nodes:
        raise _refused(404, f"unknown node {name!r}")
    command: Request = {"cmd": action, "names": [name]}
    if action == "restart":
        command["rolling"] = False
    notes: list[str] = []

    async def progress(text: str) -> None:
        notes.append(text)

    board.log(f"DASHBOARD_REQUEST cmd={action} names={name} from={request.remote}")
    try:
        await board.handle(dict(command), progress)
    except RequestError as e:
        raise _refused(409, str(e)) from None
    except Exception as e:  # as the control channel: one bad request must not go unanswered
        board.log(f"DASHBOARD_ERROR request={action} names={name} error={e!r}")
        raise _refused(500, str(e) or type(e).__name__) from None
    return web.json_response({"ok": True, "progress": notes})
