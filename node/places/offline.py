"""The embedded offline places provider: GeoNames places shipped with the node.

The default when no Google API key is configured. Results are real named places (cities,
towns, villages) near the point, most populous first, in Nearby Search format.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from importlib import resources
from pathlib import Path
from typing import Any

from node.places.base import INVALID_REQUEST, UNKNOWN_ERROR, failure_response, success_response
from node.places.geodata import PlaceIndex

log = logging.getLogger(__name__)

DATA_FILE = "places.bin.gz"
HTML_ATTRIBUTIONS = [
    'Places from <a href="https://www.geonames.org/">GeoNames</a>, licensed under '
    '<a href="https://creativecommons.org/licenses/by/4.0/">CC BY 4.0</a>'
]
PLACE_TYPES = ("locality", "political")


def read_index(path: Path | None = None) -> PlaceIndex:
    """Load and decode the place data: the shipped file, or `path` when given."""
    if path is None:
        data = resources.files("node.places").joinpath("data", DATA_FILE).read_bytes()
    else:
        data = path.read_bytes()
    return PlaceIndex(data)


class OfflinePlaces:
    """Places provider answering from the shipped GeoNames extract, with no network.

    Construction is cheap. The data (~0.1 s to load) is read in a worker thread, started by
    `start()` or by the first `nearby()`; concurrent first callers share that one load.
    """

    name = "offline"
    answers_are_fixed = True  # the data does not change while the node runs: node.places.memo

    def __init__(self, data_path: Path | None = None) -> None:
        self._path = data_path
        self._index: PlaceIndex | None = None
        self._load_lock = threading.Lock()
        self._task: asyncio.Task[PlaceIndex] | None = None
        self._closed = False

    @property
    def loaded(self) -> bool:
        """Whether the data is in memory."""
        return self._index is not None

    def load(self) -> PlaceIndex:
        """Read the data now, in this thread, unless already done; safe from any thread."""
        with self._load_lock:
            if self._index is None:
                self._index = read_index(self._path)
            return self._index

    async def start(self) -> None:
        """Begin loading in the background; returns at once without waiting for the data."""
        if self._index is None and not self._closed:
            self._loading()

    def _loading(self) -> asyncio.Task[PlaceIndex]:
        """The shared background load for the running event loop, started if need be."""
        loop = asyncio.get_running_loop()
        task = self._task
        if task is None or task.get_loop() is not loop:
            task = loop.create_task(asyncio.to_thread(self.load), name="offline-places-load")
            task.add_done_callback(_log_load_failure)
            self._task = task
        return task

    def nearby_now(
        self, lat: float, lng: float, radius_m: float, bound: int
    ) -> dict[str, Any] | None:
        """`nearby`'s answer when it needs no waiting (the data is loaded, or the request is
        refused), so the node can reply in the same loop turn; None while the data loads."""
        if self._closed:
            return failure_response(UNKNOWN_ERROR, "offline places provider is closed")
        problem = _check_request(lat, lng, radius_m, bound)
        if problem:
            return failure_response(INVALID_REQUEST, problem)
        index = self._index
        return None if index is None else _search(index, lat, lng, radius_m, bound)

    async def nearby(self, lat: float, lng: float, radius_m: float, bound: int) -> dict[str, Any]:
        """Places within `radius_m` metres of the point, at most `bound`, most populous first."""
        now = self.nearby_now(lat, lng, radius_m, bound)
        if now is not None:
            return now
        index = self._index
        if index is None:
            try:
                # Shielded: a caller cancelled mid-wait must not cancel everyone's load.
                index = await asyncio.shield(self._loading())
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # this caller itself is being cancelled
                return failure_response(UNKNOWN_ERROR, "offline places provider is closed")
            except Exception as exc:
                return failure_response(UNKNOWN_ERROR, f"offline place data unavailable: {exc}")
        return _search(index, lat, lng, radius_m, bound)

    async def close(self) -> None:
        """Stop answering; a load still running in its thread is left to finish and dropped."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()


def _log_load_failure(task: asyncio.Task[PlaceIndex]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("offline place data failed to load: %s", task.exception())


def _check_request(lat: float, lng: float, radius_m: float, bound: int) -> str:
    """Why the request is invalid, or the empty string when it is fine."""
    if not all(math.isfinite(value) for value in (lat, lng, radius_m)):
        return "latitude, longitude and radius must be finite numbers"
    if not -90.0 <= lat <= 90.0 or not -180.0 <= lng <= 180.0:
        return f"location {lat},{lng} is outside [-90, 90] x [-180, 180]"
    if radius_m < 0:
        return f"radius {radius_m} must not be negative"
    if bound < 1:
        return f"bound {bound} must be at least 1"
    return ""


def _search(
    index: PlaceIndex, lat: float, lng: float, radius_m: float, bound: int
) -> dict[str, Any]:
    try:
        results = [_result(index, i) for i in index.search(lat, lng, radius_m, bound)]
    except Exception as exc:  # a bug here must still produce a reply, never a hang
        log.exception("offline places query failed")
        return failure_response(UNKNOWN_ERROR, f"offline places query failed: {exc}")
    return success_response(results, HTML_ATTRIBUTIONS)


def _result(index: PlaceIndex, i: int) -> dict[str, Any]:
    """One Nearby Search result for the place at position `i`."""
    place = index.place(i)
    return {
        "geometry": {"location": {"lat": place.lat, "lng": place.lng}},
        "name": place.name,
        "place_id": f"geonames:{place.geonameid}",
        "types": list(PLACE_TYPES),
        "vicinity": place.vicinity,
    }
