"""The Google providers against a fake Google: what they send, what they answer, how they fail."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

import pytest

from node.config import PlacesConfig
from node.places.choose import ProviderError, choose_provider
from node.places.google import FIELD_MASK, GooglePlaces, to_result
from node.places.google_legacy import GoogleLegacyPlaces
from node.places.http import plain_number, redact
from node.places.offline import OfflinePlaces
from node.places.printed import print_places
from tests.fakes.google import LEGACY_PATH, NEW_PATH, PLACES, FakeGoogle, legacy_result
from tests.support import free_ports

KEY = "AIzaSyFAKE-test_key-0123456789abcdefXYZ"
ODD_KEY = "AIza+/=&?#%é key"  # every character a URL or a header could mangle
UCLA = (34.068930, -118.445127)
FAILURE_KEYS = ["html_attributions", "results", "status", "error_message"]

Provider = GooglePlaces | GoogleLegacyPlaces
Factory = Callable[..., Provider]


@pytest.fixture
async def fake() -> AsyncIterator[FakeGoogle]:
    async with FakeGoogle() as server:
        yield server


@pytest.fixture
async def opened() -> AsyncIterator[list[Provider]]:
    """Providers made by a test, closed when it ends."""
    made: list[Provider] = []
    yield made
    for provider in made:
        await provider.close()


def make(opened: list[Provider], kind: type[Provider], endpoint: str, **kw: Any) -> Provider:
    provider = kind(kw.pop("key", KEY), endpoint=endpoint, **kw)
    opened.append(provider)
    return provider


@pytest.fixture
def google(fake: FakeGoogle, opened: list[Provider]) -> Provider:
    return make(opened, GooglePlaces, fake.url, timeout=5.0)


@pytest.fixture
def legacy(fake: FakeGoogle, opened: list[Provider]) -> Provider:
    return make(opened, GoogleLegacyPlaces, fake.url, timeout=5.0)


def assert_no_key(response: dict[str, Any], key: str = KEY) -> None:
    text = json.dumps(response, ensure_ascii=False) + print_places(response).decode()
    for form in (key, quote(key, safe="")):
        assert form not in text


# -- Places API (New) --------------------------------------------------------------------


async def test_new_sends_the_documented_request(google: Provider, fake: FakeGoogle) -> None:
    await google.nearby(*UCLA, 10000.0, 5)
    [request] = fake.requests
    assert (request.method, request.path, request.query) == ("POST", NEW_PATH, {})
    assert request.headers["X-Goog-Api-Key"] == KEY
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Goog-FieldMask"] == (
        "places.id,places.displayName,places.location,places.types,places.formattedAddress,"
        "places.rating,places.userRatingCount,places.businessStatus"
    )
    assert request.headers["X-Goog-FieldMask"] == FIELD_MASK
    assert request.json == {
        "locationRestriction": {
            "circle": {
                "center": {"latitude": 34.06893, "longitude": -118.445127},
                "radius": 10000.0,
            }
        },
        "maxResultCount": 5,
    }


async def test_new_maps_each_place_to_a_nearby_search_result(
    google: Provider, fake: FakeGoogle
) -> None:
    response = await google.nearby(*UCLA, 2500.0, 20)
    assert list(response) == ["html_attributions", "results", "status"]
    assert response["status"] == "OK" and response["html_attributions"] == []
    results = response["results"]
    assert len(results) == 20
    assert results[0] == {
        "business_status": "OPERATIONAL",
        "geometry": {"location": {"lat": 34.06923, "lng": -118.444927}},
        "name": "Royce Hall",
        "place_id": "ChIJfake00_UCLAplaceIdXYZ",
        "rating": 4.8,
        "types": ["tourist_attraction", "point_of_interest", "establishment"],
        "user_ratings_total": 1312,
        "vicinity": "340 Royce Dr, Los Angeles, CA 90095, USA",
    }
    assert results[1]["name"] == "Café 1919"  # not escaped, not mangled
    assert "Café 1919" in print_places(response).decode()
    # Janss Steps has no rating, no rating count and no business status: none are invented
    assert results[3] == {
        "geometry": {"location": {"lat": 34.07013, "lng": -118.444327}},
        "name": "Janss Steps",
        "place_id": "ChIJfake03_UCLAplaceIdXYZ",
        "types": ["tourist_attraction", "point_of_interest", "establishment"],
        "vicinity": "Janss Steps, Los Angeles, CA 90095, USA",
    }
    assert [r["name"] for r in results] == [p[0] for p in PLACES[:20]]


async def test_new_cuts_results_to_the_bound(google: Provider, fake: FakeGoogle) -> None:
    fake.honour_max = False  # Google sending more than asked must not reach the client
    response = await google.nearby(*UCLA, 10000.0, 3)
    assert [r["name"] for r in response["results"]] == ["Royce Hall", "Café 1919", "Powell Library"]
    assert fake.requests[0].json["maxResultCount"] == 3


async def test_new_empty_object_is_zero_results(google: Provider, fake: FakeGoogle) -> None:
    fake.mode = "empty"
    response = await google.nearby(*UCLA, 10.0, 5)
    assert response == {"html_attributions": [], "results": [], "status": "ZERO_RESULTS"}


async def test_radius_zero_answers_zero_results_without_a_request(
    google: Provider, legacy: Provider, fake: FakeGoogle
) -> None:
    for provider in (google, legacy):
        response = await provider.nearby(*UCLA, 0.0, 5)
        assert response == {"html_attributions": [], "results": [], "status": "ZERO_RESULTS"}
    assert fake.requests == []


NEW_FAILURES = [
    ("denied", "REQUEST_DENIED", "Places API (New) has not been used in project 123456789012"),
    ("unauthenticated", "REQUEST_DENIED", "Request is missing required authentication"),
    ("bad_key", "REQUEST_DENIED", "API key not valid. Please pass a valid API key."),
    ("over_limit", "OVER_QUERY_LIMIT", "Quota exceeded for quota metric 'SearchNearby requests'"),
    ("invalid", "INVALID_REQUEST", "Invalid value at 'location_restriction.circle.center"),
    ("error", "UNKNOWN_ERROR", "Internal error encountered."),
    ("leaky", "REQUEST_DENIED", "The API key REDACTED is not allowed here."),
    ("html500", "UNKNOWN_ERROR", "/v1/places:searchNearby answered HTTP 500 Internal Server Error"),
    ("not_json", "UNKNOWN_ERROR", "answered HTTP 200 OK with a body that is not JSON"),
]


@pytest.mark.parametrize(("mode", "status", "message"), NEW_FAILURES)
async def test_new_failures_become_failure_responses(
    google: Provider, fake: FakeGoogle, mode: str, status: str, message: str
) -> None:
    fake.mode = mode
    response = await google.nearby(*UCLA, 10000.0, 5)
    assert list(response) == FAILURE_KEYS
    assert response["status"] == status
    assert response["results"] == [] and response["html_attributions"] == []
    assert message in response["error_message"]
    assert_no_key(response)
    assert fake.count(NEW_PATH) == 1


def test_new_mapping_keeps_only_what_google_sent() -> None:
    assert to_result({}) == {}
    assert to_result({"id": "x", "rating": True, "types": ["a", 1], "displayName": {}}) == {
        "place_id": "x"
    }
    # proto3 JSON leaves a zero coordinate out: a place on the equator is still placed
    assert to_result({"location": {"longitude": 5.5}}) == {
        "geometry": {"location": {"lat": 0.0, "lng": 5.5}}
    }
    assert to_result({"location": {}, "userRatingCount": 0}) == {"user_ratings_total": 0}


# -- Places API (Legacy) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("radius_m", "sent"),
    [
        (10000.0, "10000"),
        (2500.0, "2500"),
        (1.1 * 1000, "1100"),
        (0.1, "0.1"),
        (0.0001, "0.001"),
        (50000.0, "50000"),
    ],
)
async def test_legacy_sends_the_documented_request(
    legacy: Provider, fake: FakeGoogle, radius_m: float, sent: str
) -> None:
    await legacy.nearby(*UCLA, radius_m, 5)
    [request] = fake.requests
    assert (request.method, request.path, request.body) == ("GET", LEGACY_PATH, b"")
    assert request.query == {"location": "34.06893,-118.445127", "radius": sent, "key": KEY}
    assert "X-Goog-Api-Key" not in request.headers


async def test_legacy_passes_googles_json_on_cut_to_the_bound(
    legacy: Provider, fake: FakeGoogle
) -> None:
    response = await legacy.nearby(*UCLA, 10000.0, 4)
    assert list(response) == ["html_attributions", "results", "status"]  # no next_page_token
    assert response == {
        "html_attributions": [],
        "results": [legacy_result(i, *UCLA) for i in range(4)],
        "status": "OK",
    }
    assert response["results"][1]["name"] == "Café 1919"


async def test_legacy_zero_results_passed_on(legacy: Provider, fake: FakeGoogle) -> None:
    fake.mode = "empty"
    response = await legacy.nearby(*UCLA, 10.0, 5)
    assert response == {"html_attributions": [], "results": [], "status": "ZERO_RESULTS"}


LEGACY_FAILURES = [
    ("denied", "REQUEST_DENIED", "This API project is not authorized to use this API."),
    ("bad_key", "REQUEST_DENIED", "The provided API key is invalid."),
    ("over_limit", "OVER_QUERY_LIMIT", "You have exceeded your daily request quota for this API."),
    ("invalid", "INVALID_REQUEST", "Invalid request. Invalid 'location' parameter."),
    ("error", "UNKNOWN_ERROR", "An internal error occurred. Please try again."),
]


@pytest.mark.parametrize(("mode", "status", "message"), LEGACY_FAILURES)
async def test_legacy_google_errors_passed_on_as_they_are(
    legacy: Provider, fake: FakeGoogle, mode: str, status: str, message: str
) -> None:
    fake.mode = mode
    response = await legacy.nearby(*UCLA, 10000.0, 5)
    assert response == {
        "error_message": message,
        "html_attributions": [],
        "results": [],
        "status": status,
    }


@pytest.mark.parametrize(
    ("mode", "status", "message"),
    [
        ("leaky", "REQUEST_DENIED", "The provided API key REDACTED is expired."),
        ("html500", "UNKNOWN_ERROR", "answered HTTP 500 Internal Server Error with an answer"),
        ("not_json", "UNKNOWN_ERROR", "answered HTTP 200 OK with an answer that is not JSON"),
    ],
)
async def test_legacy_broken_answers_become_failure_responses(
    legacy: Provider, fake: FakeGoogle, mode: str, status: str, message: str
) -> None:
    fake.mode = mode
    response = await legacy.nearby(*UCLA, 10000.0, 5)
    assert sorted(response) == sorted(FAILURE_KEYS)
    assert response["status"] == status and response["results"] == []
    assert message in response["error_message"]
    assert_no_key(response)


# -- both: timeouts, refused connections, coalescing, shutdown ---------------------------

KINDS = [GooglePlaces, GoogleLegacyPlaces]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("key", [KEY, ODD_KEY])
async def test_a_silent_google_times_out(
    fake: FakeGoogle, opened: list[Provider], kind: type[Provider], key: str
) -> None:
    fake.mode = "hang"
    provider = make(opened, kind, fake.url, timeout=0.3, key=key)
    started = time.monotonic()
    response = await provider.nearby(*UCLA, 10000.0, 5)
    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 3.0
    assert response["status"] == "UNKNOWN_ERROR" and response["results"] == []
    assert "within 0.3 s (timeout)" in response["error_message"]
    assert_no_key(response, key)
    if kind is GoogleLegacyPlaces:
        assert "key=REDACTED" in response["error_message"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("key", [KEY, ODD_KEY])
async def test_connection_refused_is_a_failure_response(
    opened: list[Provider], kind: type[Provider], key: str
) -> None:
    [port] = free_ports(1)
    provider = make(opened, kind, f"http://127.0.0.1:{port}", timeout=2.0, key=key)
    response = await provider.nearby(*UCLA, 10000.0, 5)
    assert list(response) == FAILURE_KEYS
    assert response["status"] == "UNKNOWN_ERROR"
    assert response["error_message"].startswith(f"request to http://127.0.0.1:{port}/")
    assert response["error_message"].endswith("failed: ClientConnectorError")
    assert_no_key(response, key)


@pytest.mark.parametrize("kind", KINDS)
async def test_odd_keys_reach_google_intact(
    fake: FakeGoogle, opened: list[Provider], kind: type[Provider]
) -> None:
    key = "AIza+/=&?#%-key_0123"
    provider = make(opened, kind, fake.url, key=key)
    assert (await provider.nearby(*UCLA, 100.0, 1))["status"] == "OK"
    [request] = fake.requests
    sent = request.headers.get("X-Goog-Api-Key") or request.query["key"]
    assert sent == key


async def test_identical_concurrent_queries_share_one_request(
    google: Provider, fake: FakeGoogle
) -> None:
    responses = await asyncio.gather(*(google.nearby(*UCLA, 10000.0, 5) for _ in range(10)))
    assert fake.count() == 1
    assert all(r == responses[0] for r in responses) and responses[0]["status"] == "OK"
    assert len({id(r) for r in responses}) == 10  # each caller gets its own dict
    # Different query, different request; and nothing is cached once a request is done.
    await asyncio.gather(google.nearby(*UCLA, 10000.0, 5), google.nearby(*UCLA, 9000.0, 5))
    assert fake.count() == 3


async def test_legacy_coalesces_across_bounds(legacy: Provider, fake: FakeGoogle) -> None:
    responses = await asyncio.gather(*(legacy.nearby(*UCLA, 10000.0, b) for b in (1, 5, 20)))
    assert fake.count() == 1
    assert [len(r["results"]) for r in responses] == [1, 5, 20]


async def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


async def test_a_caller_going_away_does_not_cancel_the_others(
    google: Provider, fake: FakeGoogle
) -> None:
    fake.hold = asyncio.Event()
    first = asyncio.create_task(google.nearby(*UCLA, 10000.0, 5))
    second = asyncio.create_task(google.nearby(*UCLA, 10000.0, 5))
    await wait_for(lambda: fake.count() == 1, "the shared request to arrive")
    first.cancel()
    fake.hold.set()
    assert (await second)["status"] == "OK"
    with pytest.raises(asyncio.CancelledError):
        await first
    assert fake.count() == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_close_ends_requests_in_flight_with_an_answer(
    fake: FakeGoogle, opened: list[Provider], kind: type[Provider]
) -> None:
    provider = make(opened, kind, fake.url)
    fake.hold = asyncio.Event()
    waiting = asyncio.create_task(provider.nearby(*UCLA, 10000.0, 5))
    await wait_for(lambda: fake.count() == 1, "the request to arrive")
    await asyncio.wait_for(provider.close(), 5)
    response = await asyncio.wait_for(waiting, 5)
    assert response["status"] == "UNKNOWN_ERROR" and "shut down" in response["error_message"]
    after = await provider.nearby(*UCLA, 10000.0, 5)
    assert after["status"] == "UNKNOWN_ERROR" and "shut down" in after["error_message"]
    assert fake.count() == 1


# -- helpers -----------------------------------------------------------------------------


def test_redact_removes_the_key_in_every_form() -> None:
    key = "abc+/= é"
    text = f"x {key} y {quote(key, safe='')} z https://h/p?location=1,2&key={key}&radius=3"
    out = redact(text, key)
    assert key not in out and quote(key, safe="") not in out
    assert out.startswith("x REDACTED y REDACTED z https://h/p?location=1,2&key=REDACTED")
    assert redact("https://h/p?key=other-key&radius=3", KEY) == "https://h/p?key=REDACTED&radius=3"


@pytest.mark.parametrize(
    ("x", "text"),
    [
        (2500.0, "2500"),
        (0.1, "0.1"),
        (1e-05, "0.00001"),
        (-118.445127, "-118.445127"),
        (34.06893, "34.06893"),
        (0.0, "0"),
        (-0.0, "0"),
        (50000.0, "50000"),
    ],
)
def test_plain_number(x: float, text: str) -> None:
    assert plain_number(x) == text


# -- choose_provider ---------------------------------------------------------------------


def test_auto_with_a_key_is_google() -> None:
    provider, why = choose_provider(PlacesConfig(), {"GOOGLE_PLACES_API_KEY": KEY})
    assert isinstance(provider, GooglePlaces)
    assert provider.endpoint == "https://places.googleapis.com"
    assert why.startswith("auto: $GOOGLE_PLACES_API_KEY is set")
    assert KEY not in why and KEY not in repr(provider)


@pytest.mark.parametrize("env", [{}, {"GOOGLE_PLACES_API_KEY": ""}, {"GOOGLE_PLACES_API_KEY": " "}])
def test_auto_without_a_key_is_offline(env: dict[str, str]) -> None:
    provider, why = choose_provider(PlacesConfig(), env)
    assert isinstance(provider, OfflinePlaces)
    assert why == "auto: $GOOGLE_PLACES_API_KEY is not set"


@pytest.mark.parametrize("name", ["google", "google-legacy"])
def test_google_without_a_key_is_an_error_naming_the_variable(name: str) -> None:
    config = PlacesConfig(provider=name, api_key_env="MY_PLACES_KEY")
    with pytest.raises(ProviderError, match="MY_PLACES_KEY"):
        choose_provider(config, {"GOOGLE_PLACES_API_KEY": KEY})


@pytest.mark.parametrize(
    ("name", "kind"), [("google", GooglePlaces), ("google-legacy", GoogleLegacyPlaces)]
)
def test_google_providers_by_name(name: str, kind: type[Provider]) -> None:
    config = PlacesConfig(
        provider=name, api_key_env="MY_PLACES_KEY", endpoint="http://127.0.0.1:9/", timeout=0.5
    )
    provider, why = choose_provider(config, {"MY_PLACES_KEY": KEY})
    assert isinstance(provider, kind) and provider.name == name
    assert provider.endpoint == "http://127.0.0.1:9"
    assert why == (
        f"configured: {name}, $MY_PLACES_KEY is set; endpoint http://127.0.0.1:9, timeout 0.5 s"
    )
    assert KEY not in why


def test_offline_ignores_the_key() -> None:
    config = PlacesConfig(provider="offline")
    provider, why = choose_provider(config, {"GOOGLE_PLACES_API_KEY": KEY})
    assert isinstance(provider, OfflinePlaces) and why == "configured: offline"
