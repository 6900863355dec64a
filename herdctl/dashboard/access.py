"""Who may use the dashboard: whoever has this supervisor's token. Pure.

The control socket is 0600 and the logs are the herd user's only; a port on 127.0.0.1 is
open to every user of the machine, and to every web page in the operator's browser. So the
supervisor draws a random token at start and serves everything under it,
`http://127.0.0.1:12110/TOKEN/`: the page, its files, its API and its event stream, so any
client (a browser, curl, a script) uses the address as it is printed. `herdctl dashboard`
gets it over the control socket, which only the herd's user can reach; any other path is
answered with how to get it.

A change (every POST) must also carry the token in the `X-Herd-Token` header, which the
page sends from the copy it was served and which a form or a page of another site cannot
send without a CORS preflight the dashboard never grants; and its `Origin`, when it has
one, must be this host. So a leaked address alone does not let another site press a button.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from urllib.parse import urlsplit

HEADER = "X-Herd-Token"


def new_token() -> str:
    """A fresh token: 192 random bits, URL-safe."""
    return secrets.token_urlsafe(24)


def matches(token: str, presented: str | None) -> bool:
    """Whether `presented` is the token (in constant time)."""
    return presented is not None and hmac.compare_digest(token.encode(), presented.encode())


def refusal(token: str, headers: Mapping[str, str], host: str) -> str | None:
    """Why a change (a POST) to the herd is refused, or None when it may go ahead: it must
    carry the token in the header, and come from a page of this host if it says where from."""
    origin = headers.get("Origin")
    if origin is not None and urlsplit(origin).netloc != host:
        return f"cross-site request refused (Origin {origin}, not this dashboard)"
    if not matches(token, headers.get(HEADER)):
        return f"missing or wrong {HEADER} header (the page sends it; reload the page)"
    return None
