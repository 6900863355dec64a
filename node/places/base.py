"""The interface every WHATSAT places provider implements, and its response helpers.

A provider answers with a dict shaped like a Google Places Nearby Search response. It never
raises for its own failures: they come back as a response with an error status (see
`failure_response`), so the server can always reply to the client.
"""

from __future__ import annotations

from typing import Any, Protocol

OK = "OK"
ZERO_RESULTS = "ZERO_RESULTS"
INVALID_REQUEST = "INVALID_REQUEST"
UNKNOWN_ERROR = "UNKNOWN_ERROR"


class PlacesProvider(Protocol):
    """Where WHATSAT answers come from: places near a point, most prominent first."""

    name: str

    async def nearby(self, lat: float, lng: float, radius_m: float, bound: int) -> dict[str, Any]:
        """A Nearby Search response with at most `bound` results within `radius_m` metres."""
        ...

    async def start(self) -> None:
        """Begin slow set-up in the background (the node calls it once, at start-up)."""
        ...

    async def close(self) -> None:
        """Release whatever the provider holds (sessions, pending loads)."""
        ...


def success_response(results: list[dict[str, Any]], html_attributions: list[str]) -> dict[str, Any]:
    """A successful response: status OK, or ZERO_RESULTS when nothing was found."""
    return {
        "html_attributions": list(html_attributions),
        "results": results,
        "status": OK if results else ZERO_RESULTS,
    }


def failure_response(status: str, message: str) -> dict[str, Any]:
    """A failed response: no results, the failing `status` and a human-readable message."""
    return {
        "html_attributions": [],
        "results": [],
        "status": status or UNKNOWN_ERROR,
        "error_message": message,
    }
