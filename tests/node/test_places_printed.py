"""print_places prints a response byte for byte as json.dumps does with Google's layout."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.places.printed import print_places


def dumped(value: Any) -> bytes:
    return json.dumps(value, indent=3, separators=(",", " : "), ensure_ascii=False).encode()


scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and both infinities included
    | st.text()
)
keys = st.text() | st.integers() | st.floats() | st.booleans() | st.none()
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(keys, inner, max_size=4)
    ),
    max_leaves=30,
)


@given(st.dictionaries(st.text(), values, max_size=5))
def test_any_response_prints_as_json_dumps_prints_it(response: dict[str, Any]) -> None:
    assert print_places(response) == dumped(response)


def test_a_real_nearby_search_response_prints_as_google_lays_it_out() -> None:
    response = {
        "html_attributions": [],
        "results": [
            {
                "geometry": {"location": {"lat": 34.0689, "lng": -118.4452}},
                "name": "Café 1919 — Westwood",
                "place_id": "geonames:5408211",
                "types": ["locality", "political"],
                "user_ratings_total": 12,
                "open_now": True,
                "rating": math.pi,
                "price_level": None,
            }
        ],
        "status": "OK",
    }
    printed = print_places(response)
    assert printed == dumped(response)
    assert b'\n   "results" : [\n      {\n' in printed
    assert "Café 1919 — Westwood".encode() in printed


@pytest.mark.parametrize(
    ("value", "error"),
    [({"x": object()}, TypeError), ({"x": {(1, 2): 3}}, TypeError), ({"x": b"raw"}, TypeError)],
)
def test_what_json_cannot_print_fails_as_json_fails(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        dumped(value)
    with pytest.raises(error):
        print_places(value)
