"""The control channel between the `herdctl` CLI and its supervisor daemon.

A Unix stream socket at `run_dir/herdctl.sock` (mode 0600). The client sends one request as a
JSON object on one line; the supervisor answers with zero or more progress lines
`{"progress": "text"}` and then exactly one final line: `{"ok": true, ...}` or
`{"ok": false, "error": "one clear sentence"}`. One request per connection.

Requests (`cmd` and its arguments; the types are in herdctl.messages):
    {"cmd": "ping"}                           -> {"ok", "pid", "config", "topology"}
    {"cmd": "status"}                         -> {"ok", "nodes": [NodeRow, ...]}
    {"cmd": "start",   "names": [...]}        -> {"ok"}  (returns once spawned; poll status)
    {"cmd": "stop",    "names": [...]}        -> {"ok"}  (returns once stopped)
    {"cmd": "restart", "names": [...], "rolling": bool} -> {"ok"}
    {"cmd": "shutdown"}                       -> {"ok"}  (stops every node, then the daemon)
    {"cmd": "reload", "text": "..."}          -> {"ok", "changes", "failed"}  (herdctl.reload)
`names` is a list of node names; ["all"] means every local node.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, cast

from herdctl.messages import Answer, ProgressNote, Request
from node.private import private_dir

if TYPE_CHECKING:
    import asyncio

SOCKET_NAME = "herdctl.sock"
PID_NAME = "herdctl.pid"
MAX_MESSAGE = 16 * 1024 * 1024

Progress = Callable[[str], Awaitable[None]]
# Takes the request as received (a JSON object, not yet checked: see messages.checked_request).
Handler = Callable[[Mapping[str, object], Progress], Awaitable[Answer]]


class ControlError(Exception):
    """The supervisor could not be reached, or answered with an error; str() says which."""


def socket_path(run_dir: Path) -> Path:
    return run_dir / SOCKET_NAME


def pid_path(run_dir: Path) -> Path:
    return run_dir / PID_NAME


def request(
    sock: Path,
    payload: Request,
    *,
    on_progress: Callable[[str], None] | None = None,
    timeout: float | None = 30.0,
) -> Answer:
    """Send one request; return the final answer when ok, else raise ControlError.

    Blocking, with a timeout on every read: the CLI asks and waits, and needs no event loop
    for it (sparing each command the import of asyncio).
    """
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with conn:
        try:
            conn.settimeout(5.0)
            conn.connect(str(sock))
        except OSError as e:
            raise ControlError(f"cannot reach the supervisor at {sock}: {_reason(e)}") from None
        try:
            conn.settimeout(timeout)
            conn.sendall(json.dumps(payload).encode() + b"\n")
            reader = conn.makefile("rb")
            while True:
                line = reader.readline(MAX_MESSAGE)
                if not line.endswith(b"\n"):
                    raise ControlError("the supervisor closed the connection without an answer")
                message = json.loads(line)
                if "progress" in message:
                    if on_progress is not None:
                        on_progress(str(message["progress"]))
                    continue
                if not message.get("ok"):
                    raise ControlError(str(message.get("error") or "the supervisor refused"))
                return cast(Answer, message)  # the supervisor's own answer, as the command gives
        except TimeoutError:
            raise ControlError(f"the supervisor did not answer within {timeout:g}s") from None
        except (OSError, ValueError) as e:
            raise ControlError(f"lost the supervisor connection: {_reason(e)}") from None


async def serve(sock: Path, handler: Handler) -> asyncio.Server:
    """Listen on `sock` (replacing a stale socket file) and answer each request with `handler`.

    `handler(request, progress)` returns the final answer; it may `await progress(text)` any
    number of times first. A handler exception becomes `{"ok": false, "error": str(e)}`.
    """
    import asyncio  # the supervisor's side only: the CLI's commands never import it

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def progress(text: str) -> None:
            note: ProgressNote = {"progress": text}
            writer.write(json.dumps(note).encode() + b"\n")
            await writer.drain()

        try:
            line = await reader.readline()
            try:
                payload = json.loads(line)
                if not isinstance(payload, dict):
                    raise ValueError("request must be a JSON object")
            except ValueError as e:
                answer: Answer = {"ok": False, "error": f"bad request: {e}"}
            else:
                try:
                    answer = await handler(payload, progress)
                except Exception as e:  # one bad request must not take the daemon down
                    answer = {"ok": False, "error": str(e) or type(e).__name__}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass  # the client went away; nothing to answer
        finally:
            writer.close()

    private_dir(sock.parent)
    with contextlib.suppress(FileNotFoundError):
        sock.unlink()
    server = await asyncio.start_unix_server(on_connection, str(sock), limit=MAX_MESSAGE)
    os.chmod(sock, 0o600)
    return server


def _reason(e: BaseException) -> str:
    if isinstance(e, FileNotFoundError):
        return "no such socket (is the supervisor running?)"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused (stale socket?)"
    if isinstance(e, TimeoutError):
        return "timed out"
    return str(e) or type(e).__name__
