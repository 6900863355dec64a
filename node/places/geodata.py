"""The shipped place extract: its file format and the grid index that answers radius queries.

File format (one gzip member; all integers little-endian):

    MAGIC                     8 bytes
    header length             uint32
    header                    UTF-8 JSON: format, count, cells, cell_e5, regions, source
    cell ids                  int32 x cells      ascending; id = row * columns + column
    cell starts               int32 x (cells+1)  first place of each cell, then count
    latitude, longitude       int32 x count      each, in 1e-5 degrees (GeoNames precision)
    population, geonameid     int32 x count      each
    region                    uint16 x count     index into header "regions" (vicinity text)
    names                     UTF-8, one name per place, joined by LF

Places are sorted by cell, then population descending, then geonameid, so a query walks each
nearby cell from its most prominent place and stops as soon as nothing left can make the cut.
Numeric columns are stored byte-planed (all first bytes, then all second bytes, ...), which
makes the compressed file smaller (like values sit together); undoing it is a few C-speed slice
assignments, so loading is decompress + `array.frombytes`, with no per-place Python work except
splitting the names.
"""

from __future__ import annotations

import gzip
import heapq
import json
import math
import struct
import sys
from array import array
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

MAGIC = b"HRDPLC\x00\x01"
FORMAT = 1
SCALE = 100_000  # coordinates are stored as integers of 1e-5 degrees
EARTH_RADIUS_M = 6_371_008.8  # mean Earth radius (IUGG), metres
_MARGIN_DEG = 1e-6  # widens the query box so float rounding never drops a boundary cell
_HEADER_LEN = struct.Struct("<I")


class PlaceDataError(Exception):
    """The place data file is missing, truncated or not in the expected format."""


@dataclass(frozen=True, slots=True)
class Place:
    """One named place: what the builder writes and what a query hands back."""

    geonameid: int
    name: str
    lat: float
    lng: float
    population: int
    vicinity: str


def _grid_shape(cell_e5: int) -> tuple[int, int]:
    if cell_e5 <= 0 or (180 * SCALE) % cell_e5 or (360 * SCALE) % cell_e5:
        raise PlaceDataError(f"cell size {cell_e5 / SCALE} degrees does not tile the globe")
    return 180 * SCALE // cell_e5, 360 * SCALE // cell_e5


def _cell_of(lat_e5: int, lng_e5: int, cell_e5: int, rows: int, cols: int) -> int:
    row = min((lat_e5 + 90 * SCALE) // cell_e5, rows - 1)
    col = ((lng_e5 + 180 * SCALE) // cell_e5) % cols
    return row * cols + col


def _planes(column: array[int]) -> bytes:
    """Column bytes in little-endian order, regrouped byte plane by byte plane."""
    if sys.byteorder == "big":
        column = array(column.typecode, column)
        column.byteswap()
    raw = column.tobytes()
    width = column.itemsize
    return b"".join(raw[k::width] for k in range(width))


def _unplane(data: memoryview, start: int, typecode: str, count: int) -> tuple[array[int], int]:
    """Read a byte-planed column written by `_planes`; returns it and the offset after it."""
    column = array(typecode)
    width = column.itemsize
    end = start + width * count
    if end > len(data):
        raise PlaceDataError("place data is truncated")
    raw = bytearray(width * count)
    for k in range(width):
        raw[k::width] = data[start + k * count : start + (k + 1) * count]
    column.frombytes(raw)
    if sys.byteorder == "big":
        column.byteswap()
    return column, end


def encode(places: Iterable[Place], *, cell_deg: float, source: str) -> bytes:
    """Serialise places into the gzip file format described above (used by the builder)."""
    cell_e5 = round(cell_deg * SCALE)
    rows, cols = _grid_shape(cell_e5)
    regions: dict[str, int] = {}
    keyed = []
    for place in places:
        if "\n" in place.name:
            raise ValueError(f"place name contains a newline: {place.name!r}")
        lat_e5, lng_e5 = round(place.lat * SCALE), round(place.lng * SCALE)
        cell = _cell_of(lat_e5, lng_e5, cell_e5, rows, cols)
        region = regions.setdefault(place.vicinity, len(regions))
        keyed.append((cell, -place.population, place.geonameid, lat_e5, lng_e5, region, place))
    if len(regions) > 0xFFFF:
        raise ValueError("too many distinct vicinities for a uint16 index")
    keyed.sort(key=lambda item: item[:3])

    cell_ids: array[int] = array("i")
    cell_starts: array[int] = array("i")
    for index, item in enumerate(keyed):
        if not cell_ids or cell_ids[-1] != item[0]:
            cell_ids.append(item[0])
            cell_starts.append(index)
    cell_starts.append(len(keyed))

    header = {
        "format": FORMAT,
        "count": len(keyed),
        "cells": len(cell_ids),
        "cell_e5": cell_e5,
        "regions": list(regions),
        "source": source,
    }
    header_bytes = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode()
    columns = [
        cell_ids,
        cell_starts,
        array("i", (item[3] for item in keyed)),
        array("i", (item[4] for item in keyed)),
        array("i", (-item[1] for item in keyed)),
        array("i", (item[2] for item in keyed)),
        array("H", (item[5] for item in keyed)),
    ]
    names = "\n".join(item[6].name for item in keyed).encode()
    payload = b"".join(
        [MAGIC, _HEADER_LEN.pack(len(header_bytes)), header_bytes]
        + [_planes(column) for column in columns]
        + [names]
    )
    return gzip.compress(payload, compresslevel=9, mtime=0)


class PlaceIndex:
    """All places in memory, bucketed in a latitude/longitude grid for radius queries."""

    def __init__(self, data: bytes) -> None:
        """Decode a file produced by `encode` (gzip-compressed or already decompressed)."""
        try:
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise PlaceDataError(f"place data is not valid gzip: {exc}") from exc
        view = memoryview(data)
        if bytes(view[: len(MAGIC)]) != MAGIC:
            raise PlaceDataError("place data has the wrong magic number")
        try:
            (header_len,) = _HEADER_LEN.unpack_from(view, len(MAGIC))
            offset = len(MAGIC) + _HEADER_LEN.size
            header: dict[str, Any] = json.loads(bytes(view[offset : offset + header_len]))
            offset += header_len
            if header.get("format") != FORMAT:
                raise PlaceDataError(f"unsupported place data format {header.get('format')!r}")
            count: int = header["count"]
            ncells: int = header["cells"]
            self.cell_e5: int = header["cell_e5"]
            self.regions: list[str] = header["regions"]
            self.source: str = header["source"]
        except (struct.error, ValueError, KeyError, TypeError) as exc:
            raise PlaceDataError(f"place data header is malformed: {exc}") from exc
        self.rows, self.cols = _grid_shape(self.cell_e5)
        self._cell_deg = self.cell_e5 / SCALE

        cell_ids, offset = _unplane(view, offset, "i", ncells)
        self._starts, offset = _unplane(view, offset, "i", ncells + 1)
        self._lat, offset = _unplane(view, offset, "i", count)
        self._lng, offset = _unplane(view, offset, "i", count)
        self._pop, offset = _unplane(view, offset, "i", count)
        self._gid, offset = _unplane(view, offset, "i", count)
        self._region, offset = _unplane(view, offset, "H", count)
        self._names = str(view[offset:], "utf-8").split("\n") if count else []
        if len(self._names) != count or (ncells and self._starts[-1] != count):
            raise PlaceDataError("place data columns disagree on the number of places")
        self._cell_ids = cell_ids

    def __len__(self) -> int:
        return len(self._gid)

    def place(self, i: int) -> Place:
        """The place stored at position `i`."""
        return Place(
            geonameid=self._gid[i],
            name=self._names[i],
            lat=self._lat[i] / SCALE,
            lng=self._lng[i] / SCALE,
            population=self._pop[i],
            vicinity=self.regions[self._region[i]],
        )

    def _cells_near(self, lat: float, lng: float, radius_m: float) -> list[int]:
        """Positions of the non-empty cells covering the bounding box of the circle."""
        angle = radius_m / EARTH_RADIUS_M
        dlat = math.degrees(angle) + _MARGIN_DEG
        size, rows, cols = self._cell_deg, self.rows, self.cols
        row_lo = max(0, math.floor((lat - dlat + 90.0) / size))
        row_hi = min(rows - 1, math.floor((lat + dlat + 90.0) / size))
        all_columns = lat - dlat <= -90.0 or lat + dlat >= 90.0
        if not all_columns:
            # Widest longitude offset of a spherical cap of this angular radius.
            spread = math.sin(angle) / math.cos(math.radians(lat))
            all_columns = spread >= 1.0
        if all_columns:
            spans = [(0, cols - 1)]
        else:
            dlng = math.degrees(math.asin(spread)) + _MARGIN_DEG
            col_lo = math.floor((lng - dlng + 180.0) / size)
            col_hi = math.floor((lng + dlng + 180.0) / size)
            if col_hi - col_lo + 1 >= cols:
                spans = [(0, cols - 1)]
            elif col_lo < 0:  # across the antimeridian, westwards
                spans = [(col_lo + cols, cols - 1), (0, col_hi)]
            elif col_hi >= cols:  # across the antimeridian, eastwards
                spans = [(col_lo, cols - 1), (0, col_hi - cols)]
            else:
                spans = [(col_lo, col_hi)]
        # Cell ids are row-major and sorted, so each row's span is one run of positions.
        ids = self._cell_ids
        found: list[int] = []
        for row in range(row_lo, row_hi + 1):
            base = row * cols
            for first_col, last_col in spans:
                first = bisect_left(ids, base + first_col)
                found.extend(range(first, bisect_left(ids, base + last_col + 1, first)))
        return found

    def search(self, lat: float, lng: float, radius_m: float, bound: int) -> list[int]:
        """Positions of the `bound` most prominent places within `radius_m` of the point.

        Order: population descending, then great-circle distance ascending, then geonameid.
        Distances are haversine on a sphere of radius EARTH_RADIUS_M; a place exactly
        `radius_m` away is included.
        """
        if bound <= 0 or radius_m < 0:
            return []
        lng = (lng + 180.0) % 360.0 - 180.0
        starts, lats, lngs, pops, gids = self._starts, self._lat, self._lng, self._pop, self._gid
        cells = self._cells_near(lat, lng, radius_m)
        # Visit the cells with the most prominent places first: the cut-off rises sooner.
        cells.sort(key=lambda k: pops[starts[k]], reverse=True)

        phi = math.radians(lat)
        cos_phi = math.cos(phi)
        radians, sin, cos, asin, sqrt = math.radians, math.sin, math.cos, math.asin, math.sqrt
        diameter = 2.0 * EARTH_RADIUS_M
        e5_per_metre = math.degrees(1.0 / EARTH_RADIUS_M) * SCALE
        # Distance >= R * |latitude difference|, so a latitude window is a cheap exact pre-check.
        centre_e5 = lat * SCALE
        reach_e5 = radius_m * e5_per_metre + 1.0
        # The best so far, in a min-heap keyed so that its root is the worst of them. Once it
        # is full, a place less populous than the root cannot enter, and one exactly as
        # populous must be nearer than the root: the latitude window narrows to that distance.
        best: list[tuple[int, float, int, int]] = []
        cut_pop, cut_reach_e5 = -1, reach_e5
        for k in cells:
            for i in range(starts[k], starts[k + 1]):
                population = pops[i]
                window = reach_e5
                if population <= cut_pop:
                    if population < cut_pop:
                        break  # cells are sorted by population: nothing left here can enter
                    window = cut_reach_e5
                lat_e5 = lats[i]
                if abs(lat_e5 - centre_e5) > window:
                    continue
                phi2 = radians(lat_e5 / SCALE)
                half_dphi = sin((phi2 - phi) / 2.0)
                half_dlam = sin(radians(lngs[i] / SCALE - lng) / 2.0)
                h = half_dphi * half_dphi + cos_phi * cos(phi2) * half_dlam * half_dlam
                distance = diameter * asin(min(1.0, sqrt(h)))
                if distance > radius_m:
                    continue
                item = (population, -distance, -gids[i], i)
                if len(best) < bound:
                    heapq.heappush(best, item)
                    if len(best) < bound:
                        continue
                elif item > best[0]:
                    heapq.heapreplace(best, item)
                else:
                    continue
                cut_pop = best[0][0]
                cut_reach_e5 = -best[0][1] * e5_per_metre + 1.0
        best.sort(reverse=True)
        return [item[3] for item in best]
