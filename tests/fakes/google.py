"""A fake Google Places server: both Nearby Search APIs, their errors, and worse.

A real aiohttp server on 127.0.0.1, port 0. It speaks
* Places API (New): `POST /v1/places:searchNearby` (key in `X-Goog-Api-Key`, field mask in
  `X-Goog-FieldMask`, JSON body), answering with only the masked fields, `{}` when nothing is
  found, and `{"error": {...}}` bodies with HTTP 400/401/403/429/500, printed as Google prints
  them (2-space indent);
* Places API (Legacy): `GET /maps/api/place/nearbysearch/json?location=&radius=&key=`,
  answering HTTP 200 with `status` OK (and a `next_page_token`), ZERO_RESULTS, or an error
  status with `error_message`, printed as Google prints them (3-space indent, `" : "`).

Set `fake.mode` to one of `MODES` to choose the answer; the same mode applies to both APIs.
Set `fake.hold` to an `asyncio.Event` (async tests) to keep answers back until it is set.
Beyond Google's own errors: `html500` (HTTP 500 with an HTML page), `not_json` (HTTP 200 with
a body that is not JSON), `hang` (never answers until the server stops) and `leaky` (an error
message that quotes the caller's API key back). Every request is recorded in `fake.requests`.

Use `async with FakeGoogle() as fake:` in async tests, or `with FakeGoogleThread() as fake:`
for sync tests (the server then runs on its own event loop in a background thread).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

NEW_PATH = "/v1/places:searchNearby"
LEGACY_PATH = "/maps/api/place/nearbysearch/json"
MODES = (
    "ok",
    "empty",
    "denied",
    "unauthenticated",
    "bad_key",
    "over_limit",
    "invalid",
    "error",
    "leaky",
    "html500",
    "not_json",
    "hang",
)
JSON_TYPE = "application/json; charset=UTF-8"
LEGACY_PAGE = 20
ICONS = "https://maps.gstatic.com/mapfiles/place_api/icons"
ICON = f"{ICONS}/v1/png_71/generic_business-71.png"
ICON_MASK = f"{ICONS}/v2/generic_pinlet"

# (name, types, address, rating, user ratings, business status); None = Google sends nothing
PLACES: list[tuple[str, list[str], str, float | None, int | None, str | None]] = [
    ("Royce Hall", ["tourist_attraction", "point_of_interest", "establishment"],
     "340 Royce Dr, Los Angeles, CA 90095, USA", 4.8, 1312, "OPERATIONAL"),
    ("Café 1919", ["cafe", "restaurant", "food", "point_of_interest", "establishment"],
     "Ackerman Union, Los Angeles, CA 90095, USA", 4.3, 211, "OPERATIONAL"),
    ("Powell Library", ["library", "point_of_interest", "establishment"],
     "10740 Dickson Ct, Los Angeles, CA 90095, USA", 4.8, 905, "OPERATIONAL"),
    ("Janss Steps", ["tourist_attraction", "point_of_interest", "establishment"],
     "Janss Steps, Los Angeles, CA 90095, USA", None, None, None),
    ("Pauley Pavilion", ["stadium", "point_of_interest", "establishment"],
     "301 Westwood Plaza, Los Angeles, CA 90095, USA", 4.7, 2964, "OPERATIONAL"),
    ("Fowler Museum at UCLA", ["museum", "tourist_attraction", "point_of_interest"],
     "308 Charles E Young Dr N, Los Angeles, CA 90024, USA", 4.6, 388, "CLOSED_TEMPORARILY"),
]  # fmt: skip
PLACES += [
    (f"Westwood Spot {i}", ["point_of_interest", "establishment"],
     f"{1000 + i} Westwood Blvd, Los Angeles, CA 90024, USA", 3.5 + i % 15 / 10, 10 * i,
     "OPERATIONAL")
    for i in range(len(PLACES), 25)
]  # fmt: skip


@dataclass(frozen=True)
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeGoogle:
    """The fake server; `mode` picks the answer, `requests` records what arrived."""

    mode: str = "ok"
    honour_max: bool = True  # False: ignore maxResultCount, always send every place
    hold: asyncio.Event | None = None  # when set to an Event: answer only once it is set
    requests: list[Recorded] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = field(default=None, init=False, repr=False)
    _release: asyncio.Event | None = field(default=None, init=False, repr=False)
    _hanging: int = field(default=0, init=False, repr=False)

    @property
    def hanging(self) -> int:
        """How many requests are being held unanswered right now (mode `hang`)."""
        return self._hanging

    def count(self, path: str | None = None) -> int:
        return sum(1 for r in self.requests if path is None or r.path == path)

    async def start(self) -> None:
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_post(NEW_PATH, self._new)
        app.router.add_get(LEGACY_PATH, self._legacy)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        for gate in (self._release, self.hold):
            if gate is not None:
                gate.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeGoogle:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the two APIs ----------------------------------------------------------------------

    async def _record(self, request: web.Request) -> Recorded:
        recorded = Recorded(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=CIMultiDict(request.headers),
            body=await request.read(),
        )
        self.requests.append(recorded)
        return recorded

    async def _special(self) -> web.Response | None:
        """The answers that are the same whatever the API: hangs and broken bodies."""
        if self.hold is not None:
            await self.hold.wait()
        if self.mode == "hang":
            assert self._release is not None
            self._hanging += 1
            try:
                await self._release.wait()
            finally:
                self._hanging -= 1
            return web.Response(status=503, text="released at shutdown")
        if self.mode == "html500":
            return web.Response(
                status=500,
                content_type="text/html",
                text="<html><head><title>500 Internal Server Error</title></head>"
                "<body><h1>Internal Server Error</h1></body></html>\n",
            )
        if self.mode == "not_json":
            return web.Response(
                status=200, content_type="text/html", text="<html><body>Hello!</body></html>\n"
            )
        return None

    async def _new(self, request: web.Request) -> web.Response:
        recorded = await self._record(request)
        special = await self._special()
        if special is not None:
            return special
        key = recorded.headers.get("X-Goog-Api-Key", "")
        if not key:
            return new_error(403, "PERMISSION_DENIED", "The request is missing a valid API key.")
        mode_error = NEW_ERRORS.get(self.mode)
        if mode_error is not None:
            code, status, message, reason = mode_error
            return new_error(code, status, message.replace("{key}", key), reason)
        mask = recorded.headers.get("X-Goog-FieldMask", "")
        if not mask:
            return new_error(400, "INVALID_ARGUMENT", "FieldMask is a required parameter.")
        try:
            body = recorded.json
            circle = body["locationRestriction"]["circle"]
            lat = float(circle["center"]["latitude"])
            lng = float(circle["center"]["longitude"])
            radius = float(circle["radius"])
            count = int(body.get("maxResultCount", 20))
        except (ValueError, KeyError, TypeError):
            return new_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        if not 0 < radius <= 50000:
            return new_error(400, "INVALID_ARGUMENT", "Invalid radius: must be in (0, 50000].")
        if not 1 <= count <= 20:
            return new_error(400, "INVALID_ARGUMENT", "maxResultCount must be in [1, 20].")
        if self.mode == "empty":
            return json_response({}, indent=2)
        places = [new_place(i, lat, lng) for i in range(len(PLACES))]
        places = places[:count] if self.honour_max else places
        fields = {f.removeprefix("places.") for f in mask.split(",")}
        masked = [{k: v for k, v in p.items() if k in fields or "*" in fields} for p in places]
        return json_response({"places": masked}, indent=2)

    async def _legacy(self, request: web.Request) -> web.Response:
        recorded = await self._record(request)
        special = await self._special()
        if special is not None:
            return special
        key = recorded.query.get("key", "")
        if not key:
            return legacy_error(
                "REQUEST_DENIED",
                "You must use an API key to authenticate each request to Google Maps Platform "
                "APIs. For additional information, please refer to "
                "http://g.co/dev/maps-no-account",
            )
        mode_error = LEGACY_ERRORS.get(self.mode)
        if mode_error is not None:
            status, message = mode_error
            return legacy_error(status, message.replace("{key}", key))
        try:
            lat_text, lng_text = recorded.query["location"].split(",")
            lat, lng = float(lat_text), float(lng_text)
            radius = float(recorded.query["radius"])
        except (ValueError, KeyError):
            return legacy_error("INVALID_REQUEST", "Invalid request. Invalid 'location' parameter.")
        if radius <= 0:
            return legacy_error("INVALID_REQUEST", "Invalid request. Invalid 'radius' parameter.")
        if self.mode == "empty":
            return json_response(
                {"html_attributions": [], "results": [], "status": "ZERO_RESULTS"}, indent=3
            )
        results = [legacy_result(i, lat, lng) for i in range(min(LEGACY_PAGE, len(PLACES)))]
        doc = {
            "html_attributions": [],
            "next_page_token": "AW30NDxFAKE-next-page-token-" + "x" * 40,
            "results": results,
            "status": "OK",
        }
        return json_response(doc, indent=3)


# (HTTP status, google.rpc status, message, ErrorInfo reason or None); `{key}` is the key
NEW_ERRORS: dict[str, tuple[int, str, str, str | None]] = {
    "denied": (
        403,
        "PERMISSION_DENIED",
        "Places API (New) has not been used in project 123456789012 before or it is disabled. "
        "Enable it by visiting https://console.developers.google.com/apis/api/"
        "places.googleapis.com/overview?project=123456789012 then retry.",
        "SERVICE_DISABLED",
    ),
    "unauthenticated": (
        401,
        "UNAUTHENTICATED",
        "Request is missing required authentication credential. Expected OAuth 2 access token,"
        " login cookie or other valid authentication credential.",
        None,
    ),
    "bad_key": (
        400,
        "INVALID_ARGUMENT",
        "API key not valid. Please pass a valid API key.",
        "API_KEY_INVALID",
    ),
    "over_limit": (
        429,
        "RESOURCE_EXHAUSTED",
        "Quota exceeded for quota metric 'SearchNearby requests' and limit 'SearchNearby "
        "requests per minute' of service 'places.googleapis.com' for consumer "
        "'project_number:123456789012'.",
        "RATE_LIMIT_EXCEEDED",
    ),
    "invalid": (
        400,
        "INVALID_ARGUMENT",
        "Invalid value at 'location_restriction.circle.center.latitude' (TYPE_DOUBLE).",
        None,
    ),
    "error": (500, "INTERNAL", "Internal error encountered.", None),
    "leaky": (403, "PERMISSION_DENIED", "The API key {key} is not allowed here.", None),
}

# (status, error_message); `{key}` is the key
LEGACY_ERRORS: dict[str, tuple[str, str]] = {
    "denied": ("REQUEST_DENIED", "This API project is not authorized to use this API."),
    "unauthenticated": ("REQUEST_DENIED", "You must enable Billing on the Google Cloud Project."),
    "bad_key": ("REQUEST_DENIED", "The provided API key is invalid."),
    "over_limit": ("OVER_QUERY_LIMIT", "You have exceeded your daily request quota for this API."),
    "invalid": ("INVALID_REQUEST", "Invalid request. Invalid 'location' parameter."),
    "error": ("UNKNOWN_ERROR", "An internal error occurred. Please try again."),
    "leaky": ("REQUEST_DENIED", "The provided API key {key} is expired."),
}


def json_response(doc: Any, *, indent: int, status: int = 200) -> web.Response:
    """JSON printed the way the API in question prints it."""
    if indent == 3:  # the legacy web service: 3 spaces, " : "
        text = json.dumps(doc, indent=3, separators=(",", " : "), ensure_ascii=False)
    else:  # the new APIs: 2 spaces, ": "
        text = json.dumps(doc, indent=2, ensure_ascii=False)
    return web.Response(
        status=status, body=(text + "\n").encode(), headers={"Content-Type": JSON_TYPE}
    )


def new_error(code: int, status: str, message: str, reason: str | None = None) -> web.Response:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if reason is not None:
        error["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "googleapis.com",
                "metadata": {"service": "places.googleapis.com"},
            }
        ]
    return json_response({"error": error}, indent=2, status=code)


def legacy_error(status: str, message: str) -> web.Response:
    doc = {"error_message": message, "html_attributions": [], "results": [], "status": status}
    return json_response(doc, indent=3)


def place_id(i: int) -> str:
    return f"ChIJfake{i:02d}_UCLAplaceIdXYZ"


def _position(i: int, lat: float, lng: float) -> tuple[float, float]:
    """Place i, a little north-east of the centre: well inside any radius the tests use."""
    return round(lat + 0.0003 * (i + 1), 7), round(lng + 0.0002 * (i + 1), 7)


def new_place(i: int, lat: float, lng: float) -> dict[str, Any]:
    """Place i as Places API (New) sends it, with every field we might ask for."""
    name, types, address, rating, count, business = PLACES[i]
    plat, plng = _position(i, lat, lng)
    place: dict[str, Any] = {
        "name": f"places/{place_id(i)}",
        "id": place_id(i),
        "types": types,
        "formattedAddress": address,
        "location": {"latitude": plat, "longitude": plng},
    }
    if rating is not None:
        place["rating"] = rating
    if business is not None:
        place["businessStatus"] = business
    if count is not None:
        place["userRatingCount"] = count
    place["displayName"] = {"text": name, "languageCode": "en"}
    place["primaryType"] = types[0]
    return place


def legacy_result(i: int, lat: float, lng: float) -> dict[str, Any]:
    """Place i as the legacy Nearby Search sends it (keys in Google's alphabetical order)."""
    name, types, address, rating, count, business = PLACES[i]
    plat, plng = _position(i, lat, lng)
    result: dict[str, Any] = {}
    if business is not None:
        result["business_status"] = business
    result["geometry"] = {
        "location": {"lat": plat, "lng": plng},
        "viewport": {
            "northeast": {"lat": round(plat + 0.0013, 7), "lng": round(plng + 0.0013, 7)},
            "southwest": {"lat": round(plat - 0.0013, 7), "lng": round(plng - 0.0013, 7)},
        },
    }
    result["icon"] = ICON
    result["icon_background_color"] = "#7B9EB0"
    result["icon_mask_base_uri"] = ICON_MASK
    result["name"] = name
    result["place_id"] = place_id(i)
    if rating is not None:
        result["rating"] = rating
    result["reference"] = place_id(i)
    result["scope"] = "GOOGLE"
    result["types"] = types
    if count is not None:
        result["user_ratings_total"] = count
    result["vicinity"] = address.removesuffix(", USA")
    return result


class FakeGoogleThread:
    """`FakeGoogle` on its own event loop in a daemon thread, for tests that are not async."""

    def __init__(self) -> None:
        self.fake = FakeGoogle()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fake-google", daemon=True
        )

    def __enter__(self) -> FakeGoogle:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.fake.start(), self._loop).result(10)
        return self.fake

    def __exit__(self, *exc: object) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.fake.stop(), self._loop).result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
