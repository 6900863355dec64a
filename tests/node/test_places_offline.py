"""The offline places provider: real data near UCLA, exact radius, order, edges of the map."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import pytest

from node.places import offline
from node.places.base import failure_response
from node.places.geodata import Place, PlaceDataError, PlaceIndex, encode
from node.places.offline import OfflinePlaces

UCLA = (34.068930, -118.445127)
RADIUS_OF_EARTH_M = 6371008.8
RESULT_KEYS = {"geometry", "name", "place_id", "types", "vicinity"}


def haversine_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance, written out independently of the provider."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2) - math.radians(lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * RADIUS_OF_EARTH_M * math.asin(min(1.0, math.sqrt(a)))


@pytest.fixture(scope="module")
def provider() -> OfflinePlaces:
    places = OfflinePlaces()
    places.load()
    return places


@pytest.fixture(scope="module")
def every_place(provider: OfflinePlaces) -> list[Place]:
    index = provider.load()
    return [index.place(i) for i in range(len(index))]


def brute_force(places: list[Place], lat: float, lng: float, radius_m: float) -> list[Place]:
    """All places within the radius, most populous first, then nearest, then by id."""
    slack = math.degrees(radius_m / RADIUS_OF_EARTH_M) + 0.01
    hits = []
    for place in places:
        if abs(place.lat - lat) <= slack:
            distance = haversine_m(lat, lng, place.lat, place.lng)
            if distance <= radius_m:
                hits.append((-place.population, distance, place.geonameid, place))
    hits.sort(key=lambda hit: hit[:3])
    return [hit[3] for hit in hits]


def ids(response: dict[str, Any]) -> list[str]:
    return [result["place_id"] for result in response["results"]]


def write_places(path: Path, places: list[tuple[float, float, str, int]]) -> Path:
    """A small data file in the shipped format, for cases the real map lacks."""
    records = [
        Place(geonameid=n + 1, name=name, lat=lat, lng=lng, population=pop, vicinity="Test, ZZ")
        for n, (lat, lng, name, pop) in enumerate(places)
    ]
    path.write_bytes(encode(records, cell_deg=0.2, source="test"))
    return path


async def test_ucla_radius_10_km_returns_real_places_in_prominence_order(
    provider: OfflinePlaces, every_place: list[Place]
) -> None:
    response = await provider.nearby(*UCLA, 10_000, 20)

    assert response["status"] == "OK"
    assert "error_message" not in response
    names = {result["name"] for result in response["results"]}
    assert names & {"Santa Monica", "Beverly Hills", "Culver City", "Westwood", "Sawtelle"}
    for result in response["results"]:
        location = result["geometry"]["location"]
        assert haversine_m(*UCLA, location["lat"], location["lng"]) <= 10_000
        assert result["vicinity"] == "California, US"
    expected = brute_force(every_place, *UCLA, 10_000)
    assert len(expected) >= 10
    assert ids(response) == [f"geonames:{place.geonameid}" for place in expected[:20]]


@pytest.mark.parametrize(
    ("lat", "lng", "radius_m"),
    [(35.681236, 139.767125, 50_000), (19.4326, -99.1332, 50_000), (28.6139, 77.209, 2_500)],
)
async def test_dense_areas_match_a_brute_force_scan(
    provider: OfflinePlaces, every_place: list[Place], lat: float, lng: float, radius_m: float
) -> None:
    response = await provider.nearby(lat, lng, radius_m, 20)

    expected = brute_force(every_place, lat, lng, radius_m)[:20]
    assert ids(response) == [f"geonames:{place.geonameid}" for place in expected]


async def test_bound_limits_the_results_to_the_most_prominent(provider: OfflinePlaces) -> None:
    one = await provider.nearby(*UCLA, 50_000, 1)
    twenty = await provider.nearby(*UCLA, 50_000, 20)

    assert len(one["results"]) == 1
    assert len(twenty["results"]) == 20
    assert one["results"][0] == twenty["results"][0]


async def test_radius_zero_finds_only_a_place_exactly_there(provider: OfflinePlaces) -> None:
    nowhere = await provider.nearby(*UCLA, 0, 20)
    assert nowhere["status"] == "ZERO_RESULTS"
    assert nowhere["results"] == []

    somewhere = (await provider.nearby(*UCLA, 10_000, 1))["results"][0]
    location = somewhere["geometry"]["location"]
    exactly = await provider.nearby(location["lat"], location["lng"], 0, 20)
    assert somewhere["place_id"] in ids(exactly)


async def test_middle_of_the_ocean_has_zero_results(provider: OfflinePlaces) -> None:
    response = await provider.nearby(0.0, -140.0, 50_000, 20)

    assert response["status"] == "ZERO_RESULTS"
    assert response["results"] == []
    assert "error_message" not in response


@pytest.mark.parametrize("lng", [179.9, 180.0, -180.0])
async def test_real_places_across_the_antimeridian(provider: OfflinePlaces, lng: float) -> None:
    # Egvekinot, Chukotka, lies at longitude -179.11838: about 45 km east of 179.9.
    response = await provider.nearby(66.32321, lng, 50_000, 20)

    assert "Egvekinot" in {result["name"] for result in response["results"]}


async def test_antimeridian_and_poles_on_a_small_map(tmp_path: Path) -> None:
    path = write_places(
        tmp_path / "places.bin.gz",
        [
            (-17.0, 179.99, "West of the line", 100),
            (-17.0, -179.99, "East of the line", 50),
            (-17.0, 179.5, "Too far west", 900),
            (89.95, 10.0, "North A", 10),
            (89.95, -170.0, "North B", 20),
            (-89.99, 45.0, "South", 5),
        ],
    )
    places = OfflinePlaces(path)

    async def names(lat: float, lng: float, radius_m: float) -> list[str]:
        response = await places.nearby(lat, lng, radius_m, 20)
        return [result["name"] for result in response["results"]]

    both = ["West of the line", "East of the line"]
    assert await names(-17.0, 179.99, 5_000) == both
    assert await names(-17.0, -179.99, 5_000) == both
    assert await names(-17.0, 180.0, 2_000) == both
    assert await names(-17.0, -180.0, 2_000) == both
    assert await names(90.0, 0.0, 10_000) == ["North B", "North A"]
    assert await names(89.99, 100.0, 10_000) == ["North B", "North A"]
    assert await names(-90.0, 0.0, 5_000) == ["South"]
    assert await names(-17.0, 179.99, 0) == ["West of the line"]


async def test_response_is_json_with_the_exact_result_shape(provider: OfflinePlaces) -> None:
    response = await provider.nearby(*UCLA, 10_000, 5)

    assert json.loads(json.dumps(response)) == response
    assert list(response) == ["html_attributions", "results", "status"]
    assert response["html_attributions"]
    assert all(isinstance(text, str) for text in response["html_attributions"])
    assert "GeoNames" in response["html_attributions"][0]
    for result in response["results"]:
        assert set(result) == RESULT_KEYS
        assert set(result["geometry"]) == {"location"}
        assert set(result["geometry"]["location"]) == {"lat", "lng"}
        assert all(isinstance(v, float) for v in result["geometry"]["location"].values())
        assert isinstance(result["name"], str) and result["name"]
        assert result["place_id"].startswith("geonames:")
        assert result["types"] == ["locality", "political"]


def test_dataset_holds_over_100000_places(provider: OfflinePlaces) -> None:
    assert len(provider.load()) >= 100_000


async def test_concurrent_first_queries_share_one_load(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real_read = offline.read_index

    def counting_read(path: Path | None = None) -> PlaceIndex:
        calls.append(path)
        return real_read(path)

    monkeypatch.setattr(offline, "read_index", counting_read)
    places = OfflinePlaces()
    assert not places.loaded
    await places.start()
    responses = await asyncio.gather(*(places.nearby(*UCLA, 10_000, 3) for _ in range(8)))

    assert len(calls) == 1
    assert places.loaded
    assert all(response == responses[0] for response in responses)
    assert responses[0]["status"] == "OK"


async def test_a_cancelled_caller_does_not_cancel_the_shared_load() -> None:
    places = OfflinePlaces()
    first = asyncio.create_task(places.nearby(*UCLA, 10_000, 3))
    second = asyncio.create_task(places.nearby(*UCLA, 10_000, 3))
    await asyncio.sleep(0)
    first.cancel()

    assert (await second)["status"] == "OK"
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_missing_data_is_an_error_response_not_an_exception(tmp_path: Path) -> None:
    places = OfflinePlaces(tmp_path / "absent.bin.gz")

    response = await places.nearby(*UCLA, 10_000, 3)

    assert response["status"] == "UNKNOWN_ERROR"
    assert response["results"] == []
    assert "error_message" in response


def test_corrupt_data_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(PlaceDataError):
        PlaceIndex(b"not a places file")
    good = encode([Place(1, "A", 1.0, 2.0, 3, "ZZ")], cell_deg=0.2, source="test")
    with pytest.raises(PlaceDataError):
        PlaceIndex(good[: len(good) // 2])


@pytest.mark.parametrize(
    ("lat", "lng", "radius_m", "bound"),
    [
        (91.0, 0.0, 10.0, 5),
        (0.0, 181.0, 10.0, 5),
        (0.0, 0.0, -1.0, 5),
        (0.0, 0.0, 1.0, 0),
        (math.nan, 0.0, 1.0, 5),
    ],
)
async def test_invalid_requests_get_invalid_request(
    provider: OfflinePlaces, lat: float, lng: float, radius_m: float, bound: int
) -> None:
    response = await provider.nearby(lat, lng, radius_m, bound)

    assert response["status"] == "INVALID_REQUEST"
    assert response["results"] == []
    assert response["error_message"]


async def test_closed_provider_answers_with_an_error() -> None:
    places = OfflinePlaces()
    await places.start()
    await places.close()

    response = await places.nearby(*UCLA, 10_000, 3)

    assert response["status"] == "UNKNOWN_ERROR"
    assert response["results"] == []


def test_failure_response_shape() -> None:
    assert failure_response("UNKNOWN_ERROR", "timed out") == {
        "html_attributions": [],
        "results": [],
        "status": "UNKNOWN_ERROR",
        "error_message": "timed out",
    }


async def test_nearby_now_answers_at_once_what_nearby_answers(provider: OfflinePlaces) -> None:
    for lat, lng, radius_m, bound in ((*UCLA, 10_000, 5), (*UCLA, 0, 1), (0.0, -30.0, 50_000, 20)):
        assert provider.nearby_now(lat, lng, radius_m, bound) == await provider.nearby(
            lat, lng, radius_m, bound
        )
    refused = provider.nearby_now(91.0, 0.0, 10, 1)
    assert refused is not None and refused["status"] == "INVALID_REQUEST"


def test_nearby_now_waits_for_nothing_before_the_data_is_loaded() -> None:
    fresh = OfflinePlaces()
    assert fresh.nearby_now(*UCLA, 10_000, 5) is None  # `nearby` would wait for the load
