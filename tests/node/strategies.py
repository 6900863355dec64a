"""Hypothesis strategies shared by the store and ingest property tests."""

from __future__ import annotations

from hypothesis import strategies as st

# Valid locations only: few of them, so records with equal times tie on them.
VALID_LOCATIONS = st.one_of(
    st.sampled_from([b"+34.068930-118.445127", b"+34.06893-118.445127", b"-0+0", b"+90-180"]),
    st.builds(
        lambda lat, lon: b"%+.4f%+.3f" % (lat, lon),
        st.integers(-900_000, 900_000).map(lambda n: n / 10_000),
        st.integers(-180_000, 180_000).map(lambda n: n / 1000),
    ),
)


@st.composite
def valid_times(draw: st.DrawFn) -> bytes:
    """`DIGITS[.DIGITS]`, with leading and trailing zeros so equal values are spelled apart."""
    if draw(st.booleans()):  # few values: ties to break by server, location, bytes
        whole = b"%d" % draw(st.integers(0, 3))
        frac = draw(st.sampled_from([b"", b"5", b"25", b"000000001", b"123456789123"]))
    else:  # anything, including more digits than a 64-bit integer holds
        whole = b"%d" % draw(st.integers(0, 10**30))
        frac = draw(st.text("0123456789", max_size=15)).encode()
    whole = b"0" * draw(st.integers(0, 2)) + whole
    if frac or draw(st.booleans()):
        return whole + b"." + (frac or b"0") + b"0" * draw(st.integers(0, 3))
    return whole
