"""Google Places API (Legacy) provider: Nearby Search (Legacy), passed on as Google sent it.

Request: `GET {endpoint}/maps/api/place/nearbysearch/json?location=LAT,LNG&radius=M&key=KEY`.
The legacy API has no result count: it always answers a page of up to 20, so the bound is
applied here and is not part of the request (callers differing only in bound share it).

Answer: Google's JSON unchanged except `results` cut to the bound and `next_page_token`
dropped (we never fetch the next page, and the token is only good with this key). Google
reports errors as HTTP 200 with a status such as REQUEST_DENIED, OVER_QUERY_LIMIT,
INVALID_REQUEST or UNKNOWN_ERROR and an `error_message`: they are passed on as they are, with
`results` empty. Anything else (HTTP errors, non-JSON bodies, network failures, timeouts)
becomes a failure response built here.

Radius 0: answered ZERO_RESULTS at once, with no (billed) request; see `node.places.google`.

Sessions, timeouts, coalescing and key redaction: see `node.places.http`.
"""

from __future__ import annotations

from typing import Any

from node.places.base import OK, UNKNOWN_ERROR, ZERO_RESULTS, failure_response, success_response
from node.places.http import (
    Answer,
    GoogleProvider,
    UpstreamError,
    plain_number,
    status_for_http,
)

DEFAULT_ENDPOINT = "https://maps.googleapis.com"
SEARCH_PATH = "/maps/api/place/nearbysearch/json"
DROPPED_KEYS = ("next_page_token",)


class GoogleLegacyPlaces(GoogleProvider):
    """Places provider backed by Google's legacy Places API Nearby Search."""

    name = "google-legacy"
    default_endpoint = DEFAULT_ENDPOINT
    search_path = SEARCH_PATH

    async def nearby(self, lat: float, lng: float, radius_m: float, bound: int) -> dict[str, Any]:
        """Google's answer for the circle, with at most `bound` results."""
        if not radius_m > 0:
            return success_response([], [])
        return await self._answer(
            (lat, lng, radius_m), lambda: self._search(lat, lng, radius_m), bound
        )

    async def _search(self, lat: float, lng: float, radius_m: float) -> dict[str, Any]:
        location = f"{plain_number(lat)},{plain_number(lng)}"
        radius = plain_number(max(round(radius_m, 3), 0.001))  # whole mm: no float noise
        params = {"location": location, "radius": radius, "key": self._key}
        shown = f"{self.url}?location={location}&radius={radius}&key=REDACTED"
        try:
            answer = await self._http.send("GET", self.url, shown_url=shown, params=params)
        except UpstreamError as e:
            return failure_response(e.status, str(e))
        return read_answer(answer, self.url)


def read_answer(answer: Answer, url: str) -> dict[str, Any]:
    """Google's Nearby Search answer as we pass it on, or a failure response."""
    data = answer.data if answer.is_json else None
    status = data.get("status") if isinstance(data, dict) else None
    if not isinstance(data, dict) or not isinstance(status, str) or not status:
        what = "a JSON answer without a status" if answer.is_json else "an answer that is not JSON"
        code = UNKNOWN_ERROR if answer.ok else status_for_http(answer.status)
        return failure_response(code, f"{url} answered {answer.describe()} with {what}")
    response = {k: v for k, v in data.items() if k not in DROPPED_KEYS}
    if status in (OK, ZERO_RESULTS):
        if not isinstance(response.get("results", []), list):
            problem = f"{url} answered {status} without a results list"
            return failure_response(UNKNOWN_ERROR, problem)
        response.setdefault("results", [])
        return response
    response["results"] = []
    message = response.get("error_message")
    if not isinstance(message, str) or not message:
        response["error_message"] = f"{url} answered {answer.describe()} with status {status}"
    return response
