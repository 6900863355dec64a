"""Real node processes answering WHATSAT from a fake Google, with both Google providers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from node.__main__ import EXIT_CONFIG
from tests.fakes.google import LEGACY_PATH, NEW_PATH, FakeGoogle, FakeGoogleThread, legacy_result
from tests.support import NAMES, Herd, exchange_sync, wait_until, write_topology

KEY = "AIzaSyHERD-integration_key-9876543210zyx"
UCLA = b"+34.068930-118.445127"
LAT, LNG = 34.068930, -118.445127
CLIENT = b"kiwi.cs.ucla.edu"


@pytest.fixture
def fake() -> Iterator[FakeGoogle]:
    with FakeGoogleThread() as server:
        yield server


def node_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HERD_SECRET", "GOOGLE_PLACES_API_KEY")}
    return env | extra


def places(provider: str, endpoint: str, timeout: float = 5.0) -> dict[str, Any]:
    return {"places": {"provider": provider, "endpoint": endpoint, "timeout": timeout}}


def whatsat(herd: Herd, name: str, radius: bytes = b"2.5", bound: bytes = b"3") -> bytes:
    return exchange_sync(herd.nodes[name].port, b"WHATSAT %s %s %s\n" % (CLIENT, radius, bound))


def wait_for_answer(herd: Herd, name: str, at_line: bytes) -> dict[str, Any]:
    """Poll WHATSAT at `name` until it answers with `at_line`; the JSON that followed it."""
    box: list[bytes] = []

    def answered() -> bool:
        box[:] = [whatsat(herd, name)]
        return box[0].startswith(at_line)

    wait_until(answered, f"{name} to answer WHATSAT with {at_line!r}")
    return parse_body(box[0][len(at_line) :])


def parse_body(body: bytes) -> dict[str, Any]:
    assert body.endswith(b"}\n\n") and b"\n\n" not in body[:-2], body
    doc: dict[str, Any] = json.loads(body)
    return doc


def assert_key_nowhere(folder: Path, *texts: bytes) -> None:
    forms = [KEY.encode(), quote(KEY, safe="").encode()]
    for text in texts:
        assert not any(form in text for form in forms)
    logs = sorted((folder / "logs").glob("*"))
    assert logs, "no log files"
    for log in logs:
        data = log.read_bytes()
        assert not any(form in data for form in forms), f"key in {log.name}"
        assert b"Traceback" not in data


@pytest.mark.parametrize("provider", ["google", "google-legacy"])
def test_every_node_answers_whatsat_from_google(
    tmp_path: Path, fake: FakeGoogle, provider: str
) -> None:
    config = write_topology(tmp_path, extra=places(provider, fake.url))
    replies: list[bytes] = []
    with Herd(config, env=node_env(GOOGLE_PLACES_API_KEY=KEY)) as herd:
        herd.start()
        herd.wait_links_up()
        at = exchange_sync(
            herd.nodes["Welsh"].port, b"IAMAT %s %s 1520023934.918963997\n" % (CLIENT, UCLA)
        )
        assert at.startswith(b"AT Welsh +")
        replies.append(at)
        for name in NAMES:
            doc = wait_for_answer(herd, name, at)
            reply = whatsat(herd, name)
            replies.append(reply)
            if provider == "google-legacy":
                # Google's own JSON, as Google prints it, cut to 3, no next_page_token
                expected = {
                    "html_attributions": [],
                    "results": [legacy_result(i, LAT, LNG) for i in range(3)],
                    "status": "OK",
                }
                body = json.dumps(expected, indent=3, separators=(",", " : "), ensure_ascii=False)
                assert reply == at + body.encode() + b"\n\n"
            else:
                assert doc["status"] == "OK" and doc["html_attributions"] == []
                assert [r["name"] for r in doc["results"]] == [
                    "Royce Hall",
                    "Café 1919",
                    "Powell Library",
                ]
                assert doc["results"][0]["geometry"] == {
                    "location": {"lat": 34.06923, "lng": -118.444927}
                }
                assert "Café 1919".encode() in reply
        assert fake.requests, "no request reached the fake Google"
        for request in fake.requests:
            if provider == "google":
                assert request.path == NEW_PATH and request.headers["X-Goog-Api-Key"] == KEY
                circle = request.json["locationRestriction"]["circle"]
                assert circle == {"center": {"latitude": LAT, "longitude": LNG}, "radius": 2500.0}
                assert request.json["maxResultCount"] == 3
            else:
                assert request.path == LEGACY_PATH
                assert request.query == {
                    "location": "34.06893,-118.445127",
                    "radius": "2500",
                    "key": KEY,
                }
        herd.stop()
    log = (tmp_path / "logs" / "Goloman.log").read_text()
    assert f" PLACES provider={provider} reason=configured: {provider}, " in log
    assert_key_nowhere(tmp_path, *replies)


FAILURES = {
    "google": [  # via `auto`: the key is set, so auto picks the Places API (New)
        ("denied", "REQUEST_DENIED", "Places API (New) has not been used in project"),
        ("over_limit", "OVER_QUERY_LIMIT", "Quota exceeded for quota metric"),
        ("html500", "UNKNOWN_ERROR", "answered HTTP 500 Internal Server Error"),
        ("not_json", "UNKNOWN_ERROR", "with a body that is not JSON"),
        ("leaky", "REQUEST_DENIED", "The API key REDACTED is not allowed here."),
        ("hang", "UNKNOWN_ERROR", "within 0.5 s (timeout)"),
        ("empty", "ZERO_RESULTS", None),
    ],
    "google-legacy": [
        ("denied", "REQUEST_DENIED", "This API project is not authorized to use this API."),
        ("invalid", "INVALID_REQUEST", "Invalid request. Invalid 'location' parameter."),
        ("html500", "UNKNOWN_ERROR", "answered HTTP 500 Internal Server Error"),
        ("leaky", "REQUEST_DENIED", "The provided API key REDACTED is expired."),
        ("hang", "UNKNOWN_ERROR", "&key=REDACTED within 0.5 s (timeout)"),
        ("empty", "ZERO_RESULTS", None),
    ],
}


@pytest.mark.parametrize("provider", ["google", "google-legacy"])
def test_google_failures_answered_with_the_at_line_and_a_failure(
    tmp_path: Path, fake: FakeGoogle, provider: str
) -> None:
    configured = "auto" if provider == "google" else provider
    config = write_topology(
        tmp_path, ["Alpha", "Beta"], [("Alpha", "Beta")], extra=places(configured, fake.url, 0.5)
    )
    replies: list[bytes] = []
    with Herd(config, env=node_env(GOOGLE_PLACES_API_KEY=KEY)) as herd:
        herd.start()
        at = exchange_sync(herd.nodes["Alpha"].port, b"IAMAT %s %s 1700000000\n" % (CLIENT, UCLA))
        fake.mode = "ok"
        assert wait_for_answer(herd, "Beta", at)["status"] == "OK"
        for mode, status, message in FAILURES[provider]:
            fake.mode = mode
            reply = whatsat(herd, "Beta")
            replies.append(reply)
            assert reply.startswith(at), (mode, reply)
            doc = parse_body(reply[len(at) :])
            assert doc["status"] == status and doc["results"] == [], (mode, doc)
            if message is None:
                assert "error_message" not in doc
            else:
                assert message in doc["error_message"], (mode, doc)
        herd.stop()
    log = (tmp_path / "logs" / "Beta.log").read_text()
    why = "auto: $GOOGLE_PLACES_API_KEY is set" if configured == "auto" else "configured: "
    assert f" PLACES provider={provider} reason={why}" in log
    assert_key_nowhere(tmp_path, *replies)


@pytest.mark.parametrize("provider", ["google", "google-legacy"])
def test_google_without_a_key_refuses_to_start(tmp_path: Path, provider: str) -> None:
    config = write_topology(tmp_path, ["Solo"], [], extra=places(provider, "http://127.0.0.1:9"))
    done = subprocess.run(
        [sys.executable, "-m", "node", "Solo", "-c", str(config)],
        env=node_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == EXIT_CONFIG
    assert "GOOGLE_PLACES_API_KEY" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
