"""node.metrics_http: the small HTTP/1.1 a Prometheus scrape needs, without a network."""

from __future__ import annotations

import gzip

import pytest

from node.metrics_http import GZIP_ABOVE, answer, parse_head

BODY = b"herd_client_records 3.0\n" * 100  # over GZIP_ABOVE


def render(accept: str) -> tuple[bytes, str]:
    return BODY + accept.encode(), "text/plain; version=0.0.4; charset=utf-8"


def split(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines)}
    return status, headers, body


def test_a_scrape_gets_the_metrics_with_their_length_and_type() -> None:
    parsed = parse_head(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain")
    assert parsed == ("GET", "/metrics", {"host": "x", "accept": "text/plain"})
    status, headers, body = split(answer(*parsed, render, "Hands"))
    assert status == "HTTP/1.1 200 OK"
    assert body == BODY + b"text/plain"
    assert headers["content-length"] == str(len(body))
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    assert headers["connection"] == "close"


def test_gzip_when_the_scraper_accepts_it() -> None:
    assert len(BODY) > GZIP_ABOVE
    parsed = parse_head(b"GET /metrics?x=1 HTTP/1.1\r\nAccept-Encoding: gzip, deflate")
    assert parsed is not None
    _, headers, body = split(answer(*parsed, render, "Hands"))
    assert headers["content-encoding"] == "gzip"
    assert gzip.decompress(body) == BODY


def test_head_has_the_headers_and_no_body() -> None:
    parsed = parse_head(b"HEAD /metrics HTTP/1.0")
    assert parsed is not None
    status, headers, body = split(answer(*parsed, render, "Hands"))
    assert status == "HTTP/1.1 200 OK" and body == b"" and int(headers["content-length"]) > 0


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"POST /metrics HTTP/1.1", "HTTP/1.1 405 Method Not Allowed"),
        (b"GET /other HTTP/1.1", "HTTP/1.1 404 Not Found"),
        (b"GET / HTTP/1.1", "HTTP/1.1 200 OK"),
    ],
)
def test_other_requests(head: bytes, status: str) -> None:
    parsed = parse_head(head)
    assert parsed is not None
    assert split(answer(*parsed, render, "Hands"))[0] == status


@pytest.mark.parametrize(
    "head",
    [
        b"GET /metrics",
        b"GET /metrics SPDY/3",
        b"GET  /metrics HTTP/1.1",
        b"GET / HTTP/1.1\r\nno colon",
    ],
)
def test_what_is_not_http_is_refused(head: bytes) -> None:
    assert parse_head(head) is None
