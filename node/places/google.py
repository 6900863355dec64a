"""Google Places API (New) provider: Nearby Search (New), answered in Nearby Search format.

Request: `POST {endpoint}/v1/places:searchNearby` with the key in `X-Goog-Api-Key`, a field
mask naming only the fields we map (`FIELD_MASK`; it also decides the billing SKU), and a body
restricting the search to the circle of `radius_m` metres around the point, with
`maxResultCount` = the WHATSAT bound (Google allows 1..20; the protocol's bound is 1..20 too).

Answer: each place becomes a Nearby Search result (`business_status`, `geometry.location`,
`name`, `place_id`, `rating`, `types`, `user_ratings_total`, `vicinity`), each field only where
Google sent it. `{}` is Google's "nothing found": ZERO_RESULTS. Errors come as HTTP 4xx/5xx
with `{"error": {"code", "message", "status"}}` and map to the closest Nearby Search status,
with Google's message as `error_message`.

Radius 0: Google rejects a zero radius (INVALID_ARGUMENT), and a circle of radius 0 holds no
place, so `WHATSAT c 0 n` is answered ZERO_RESULTS at once, with no (billed) request.

Sessions, timeouts, coalescing and key redaction: see `node.places.http`.
"""

from __future__ import annotations

import json
from typing import Any

from node.places.base import UNKNOWN_ERROR, failure_response, success_response
from node.places.http import (
    INVALID_REQUEST,
    OVER_QUERY_LIMIT,
    REQUEST_DENIED,
    Answer,
    GoogleProvider,
    UpstreamError,
    status_for_http,
)

DEFAULT_ENDPOINT = "https://places.googleapis.com"
SEARCH_PATH = "/v1/places:searchNearby"
PLACE_FIELDS = (
    "id",
    "displayName",
    "location",
    "types",
    "formattedAddress",
    "rating",
    "userRatingCount",
    "businessStatus",
)
FIELD_MASK = ",".join(f"places.{field}" for field in PLACE_FIELDS)
MAX_RESULT_COUNT = 20  # Google's limit for maxResultCount

# google.rpc.Code names, as Nearby Search statuses.
_ERROR_STATUS = {
    "PERMISSION_DENIED": REQUEST_DENIED,
    "UNAUTHENTICATED": REQUEST_DENIED,
    "RESOURCE_EXHAUSTED": OVER_QUERY_LIMIT,
    "INVALID_ARGUMENT": INVALID_REQUEST,
}


class GooglePlaces(GoogleProvider):
    """Places provider backed by Google's Places API (New) Nearby Search."""

    name = "google"
    default_endpoint = DEFAULT_ENDPOINT
    search_path = SEARCH_PATH

    async def nearby(self, lat: float, lng: float, radius_m: float, bound: int) -> dict[str, Any]:
        """Places within `radius_m` metres of the point, at most `bound`, most prominent first."""
        bound = max(1, min(int(bound), MAX_RESULT_COUNT))
        if not radius_m > 0:
            return success_response([], [])
        return await self._answer(
            (lat, lng, radius_m, bound), lambda: self._search(lat, lng, radius_m, bound), bound
        )

    async def _search(self, lat: float, lng: float, radius_m: float, bound: int) -> dict[str, Any]:
        body = {
            "locationRestriction": {
                "circle": {
                    "center": {"latitude": lat, "longitude": lng},
                    "radius": radius_m,
                }
            },
            "maxResultCount": bound,
        }
        headers = {
            "Content-Type": "application/json",
            "X-Goog-Api-Key": self._key,
            "X-Goog-FieldMask": FIELD_MASK,
        }
        try:
            answer = await self._http.send(
                "POST",
                self.url,
                shown_url=self.url,
                headers=headers,
                body=json.dumps(body).encode(),
            )
        except UpstreamError as e:
            return failure_response(e.status, str(e))
        return read_answer(answer, self.url)


def read_answer(answer: Answer, url: str) -> dict[str, Any]:
    """A Nearby Search response from a searchNearby answer, success or error."""
    data = answer.data if answer.is_json else None
    if answer.ok:
        places = data.get("places", []) if isinstance(data, dict) else None
        if not isinstance(places, list):
            what = "without a list of places" if answer.is_json else "with a body that is not JSON"
            return failure_response(UNKNOWN_ERROR, f"{url} answered {answer.describe()} {what}")
        return success_response([to_result(p) for p in places if isinstance(p, dict)], [])
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        message = error.get("message")
        if not isinstance(message, str) or not message:
            message = f"{url} answered {answer.describe()}"
        return failure_response(error_status(error, answer.status), message)
    return failure_response(status_for_http(answer.status), f"{url} answered {answer.describe()}")


def error_status(error: dict[str, Any], http_status: int) -> str:
    """The Nearby Search status for a Google API error object."""
    for detail in error.get("details") or ():
        reason = detail.get("reason") if isinstance(detail, dict) else None
        if isinstance(reason, str) and reason.startswith("API_KEY_"):
            return REQUEST_DENIED  # a bad key comes as INVALID_ARGUMENT, reason API_KEY_INVALID
    status = error.get("status")
    if isinstance(status, str) and status in _ERROR_STATUS:
        return _ERROR_STATUS[status]
    return status_for_http(http_status)


def to_result(place: dict[str, Any]) -> dict[str, Any]:
    """One Places API (New) place as a Nearby Search result; only the fields it has."""
    result: dict[str, Any] = {}
    status = place.get("businessStatus")
    if isinstance(status, str):
        result["business_status"] = status
    location = place.get("location")
    if isinstance(location, dict) and ("latitude" in location or "longitude" in location):
        # proto3 JSON may leave out a zero coordinate: a missing one is 0
        lat, lng = location.get("latitude", 0.0), location.get("longitude", 0.0)
        if _is_number(lat) and _is_number(lng):
            result["geometry"] = {"location": {"lat": lat, "lng": lng}}
    display = place.get("displayName")
    if isinstance(display, dict) and isinstance(display.get("text"), str):
        result["name"] = display["text"]
    if isinstance(place.get("id"), str):
        result["place_id"] = place["id"]
    if _is_number(place.get("rating")):
        result["rating"] = place["rating"]
    types = place.get("types")
    if isinstance(types, list) and all(isinstance(t, str) for t in types):
        result["types"] = list(types)
    if _is_number(place.get("userRatingCount")):
        result["user_ratings_total"] = place["userRatingCount"]
    if isinstance(place.get("formattedAddress"), str):
        result["vicinity"] = place["formattedAddress"]
    return result


def _is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)
