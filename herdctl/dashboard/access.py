"""Who may use the dashboard: whoever brings this supervisor's token. Pure.

The control socket is 0600 and the logs are the herd user's only; a port on 127.0.0.1 is
open to every user of the machine, and to every web page in the operator's browser. So the
supervisor draws a random token at start, `herdctl dashboard` (which asks over the control
socket) prints the page's address with it, and the page trades it for a cookie on its first
load (HttpOnly, SameSite=Strict, named after the port: cookies do not tell ports apart):

- reading (`/`, `/api/state`, `/api/events`, `/api/logs`) needs the cookie or the header;
- a change (every POST) needs the token in the `X-Herd-Token` header, which the page sends
  from the copy it was served and another site cannot read or set without a CORS
  preflight the dashboard never grants, and an `Origin`, when there is one, of this host.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from urllib.parse import urlsplit

HEADER = "X-Herd-Token"
QUERY = "token"


def new_token() -> str:
    """A fresh token: 192 random bits, URL-safe."""
    return secrets.token_urlsafe(24)


def cookie_name(port: int) -> str:
    return f"herd-dashboard-{port}"


def matches(token: str, presented: str | None) -> bool:
    """Whether `presented` is the token (in constant time)."""
    return presented is not None and hmac.compare_digest(token.encode(), presented.encode())


def may_read(token: str, headers: Mapping[str, str], cookies: Mapping[str, str], port: int) -> bool:
    """Whether a GET brings the token, as the page's cookie or the header."""
    return matches(token, cookies.get(cookie_name(port))) or matches(token, headers.get(HEADER))


def refusal(token: str, headers: Mapping[str, str], host: str) -> str | None:
    """Why a change (a POST) to the herd is refused, or None when it may go ahead: it must
    carry the token in the header, and come from a page of this host if it says where from."""
    origin = headers.get("Origin")
    if origin is not None and urlsplit(origin).netloc != host:
        return f"cross-site request refused (Origin {origin}, not this dashboard)"
    if not matches(token, headers.get(HEADER)):
        return f"missing or wrong {HEADER} header (the page sends it; reload the page)"
    return None
