"""docs/protocol.md's example exchanges, run against a real node process on loopback.

The page marks each example as a fenced `exchange` block (its "Reading the examples" section
says how); every block is one connection to a lone node called Welsh with the offline places
provider. A block the node answers differently, or a page with no blocks, fails.
"""

from __future__ import annotations

import enum
import json
import os
import re
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path

import pytest

from node.protocol import TIME, valid_location
from tests.support import DEADLINE, Herd, write_topology

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
NODE = "Welsh"
OPEN_FENCE = "```exchange"
DIFF = re.compile(rb"[+-]\d+\.\d{9}")
PROBE = b"PROBE-END-OF-STEP"  # sent after each step; never valid, so answered `? ` + itself
PROBE_ANSWER = b"? " + PROBE + b"\n"
CLOCK_SLACK = Decimal(1)  # seconds either side of the test's run a receive time may fall


class DocError(Exception):
    """The page has no example, or an example that breaks the page's own conventions."""


class Mismatch(AssertionError):
    """The node answered an example other than the page shows."""


class Kind(enum.Enum):
    EXACT = "<"  # these bytes, then LF
    CLOCK = "<~"  # an AT line, exact but for its diff
    SKIP = "<..."  # any number of lines


@dataclass(frozen=True)
class Expect:
    """One line of a reply as the page shows it."""

    kind: Kind
    text: bytes
    line_no: int


@dataclass(frozen=True)
class Step:
    """Lines the client sends in one write, and the reply lines the page shows for them."""

    sent: tuple[bytes, ...]
    expected: tuple[Expect, ...]
    line_no: int


@dataclass(frozen=True)
class Example:
    """One `exchange` block: one connection, its steps in order."""

    line_no: int
    heading: str
    steps: tuple[Step, ...]

    @property
    def name(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.heading.lower()).strip("-")
        return f"line{self.line_no}-{slug}"


# -- reading the page ---------------------------------------------------------------------


def extract_examples(text: str) -> list[Example]:
    """Every `exchange` block of `text`, in page order; DocError when there is none or one
    is malformed."""
    examples: list[Example] = []
    heading = ""
    block: list[tuple[int, str]] | None = None
    other_fence = False
    start = 0
    for line_no, line in enumerate(text.splitlines(), 1):
        if block is not None:
            if line.strip() == "```":
                examples.append(Example(start, heading, _steps(block, start)))
                block = None
            else:
                block.append((line_no, line))
        elif line.startswith("```"):
            if line.strip() == OPEN_FENCE and not other_fence:
                block, start = [], line_no
            else:
                other_fence = not other_fence
        elif line.startswith("#") and not other_fence:
            heading = line.lstrip("#").strip()
    if block is not None:
        raise DocError(f"line {start}: exchange block never closed")
    if not examples:
        raise DocError(f"no {OPEN_FENCE} block: the page shows no example")
    return examples


def _steps(block: list[tuple[int, str]], start: int) -> tuple[Step, ...]:
    steps: list[Step] = []
    sent: list[bytes] = []
    expected: list[Expect] = []
    first = start
    for line_no, line in block:
        raw = line.encode()
        if raw == b">" or raw.startswith(b"> "):
            if expected:
                steps.append(_step(sent, expected, first))
                sent, expected = [], []
            if not sent:
                first = line_no
            sent.append(raw[2:])
            continue
        expect = _expect(raw, line_no)
        if not sent:
            raise DocError(f"line {line_no}: a reply before any line is sent")
        expected.append(expect)
    if not sent:
        raise DocError(f"line {start}: empty exchange block")
    steps.append(_step(sent, expected, first))
    return tuple(steps)


def _expect(raw: bytes, line_no: int) -> Expect:
    if raw == b"<...":
        return Expect(Kind.SKIP, b"", line_no)
    if raw.startswith(b"<~ "):
        text = raw[3:]
        fields = text.split(b" ")
        if len(fields) != 6 or fields[0] != b"AT" or not DIFF.fullmatch(fields[2]):
            raise DocError(f"line {line_no}: `<~` needs an AT line with a 9-decimal diff")
        return Expect(Kind.CLOCK, text, line_no)
    if raw == b"<" or raw.startswith(b"< "):
        return Expect(Kind.EXACT, raw[2:], line_no)
    raise DocError(f"line {line_no}: exchange lines start with `>`, `<`, `<~` or `<...`")


def _step(sent: list[bytes], expected: list[Expect], line_no: int) -> Step:
    for i, expect in enumerate(expected):
        if expect.kind is Kind.SKIP and (
            i in (0, len(expected) - 1) or expected[i + 1].kind is Kind.SKIP
        ):
            raise DocError(f"line {expect.line_no}: `<...` between two shown reply lines only")
    return Step(tuple(sent), tuple(expected), line_no)


def examples_or_none() -> list[Example]:
    """The page's examples for parametrising; a broken page fails `test_page_has_examples`."""
    try:
        return extract_examples(DOC.read_text(encoding="utf-8"))
    except (DocError, OSError):
        return []


# -- running an example -------------------------------------------------------------------


@dataclass
class Clock:
    """What a `<~` line is checked against: the test's own clock and the diffs seen."""

    since: Decimal  # POSIX seconds before the node started
    diffs: dict[bytes, bytes] = field(default_factory=dict)  # page's diff -> node's diff


class Connection:
    """A client connection that reads one step's reply at a time.

    After a step's lines it sends PROBE, an invalid line the page never shows: everything
    before its `? ` answer is the step's reply, so a missing, extra or misplaced reply line
    shows at once, with no waiting to prove that nothing more is coming.
    """

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        self.buf = b""
        self.eof = False

    def send(self, lines: Sequence[bytes], *, last: bool) -> None:
        try:
            self.sock.sendall(b"".join(line + b"\n" for line in (*lines, PROBE)))
            if last:
                self.sock.shutdown(socket.SHUT_WR)
        except OSError:  # the node may have hung up (after a failed AUTH): read what it said
            pass

    def reply(self, line_no: int) -> list[bytes]:
        """The lines before the PROBE's answer, or before the node closed."""
        while True:
            framed = b"\n" + self.buf
            at = framed.find(b"\n" + PROBE_ANSWER)
            if at >= 0:
                self.buf = framed[at + 1 + len(PROBE_ANSWER) :]
                return framed[1 : at + 1].split(b"\n")[:-1]
            if self.eof:
                reply, self.buf = self.buf, b""
                return reply.removesuffix(b"\n").split(b"\n") if reply else []
            self.read_more(f"the reply to line {line_no}")

    def read_more(self, what: str) -> None:
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            raise Mismatch(f"no reply within {DEADLINE:g}s while the page expects {what}") from None
        except ConnectionResetError:
            chunk = b""
        self.buf += chunk
        self.eof = not chunk

    def rest(self) -> bytes:
        """Everything the node sends until it closes."""
        while not self.eof:
            self.read_more("the node to close")
        return self.buf

    def close(self) -> None:
        self.sock.close()


def run_example(port: int, example: Example, clock: Clock) -> None:
    """Send each step's lines, check its reply; Mismatch at the first difference."""
    conn = Connection(port)
    try:
        for i, step in enumerate(example.steps):
            conn.send(step.sent, last=i == len(example.steps) - 1)
            got = conn.reply(step.line_no)
            count = _match(step.expected, got, clock)
            if count is None or count < len(got):
                shown = [e.text for e in step.expected]
                raise Mismatch(
                    f"line {step.line_no}: the page shows the reply\n  {shown}\n"
                    f"the node sent\n  {got}"
                )
            _check_places(step, got)
        if extra := conn.rest():
            raise Mismatch(f"the node sent more than the page shows: {extra!r}")
    finally:
        conn.close()


def _match(expected: Sequence[Expect], got: Sequence[bytes], clock: Clock) -> int | None:
    """How many of `got` the page's reply lines cover; None when it shows more lines."""
    j = 0
    for i, expect in enumerate(expected):
        if expect.kind is Kind.SKIP:
            following = expected[i + 1]
            while j < len(got) and not _fits(following, got[j]):
                j += 1
            continue
        if j >= len(got):
            return None
        _check(expect, got[j], clock)
        j += 1
    return j


def _fits(expect: Expect, line: bytes) -> bool:
    if expect.kind is Kind.CLOCK:
        want, have = expect.text.split(b" "), line.split(b" ")
        return len(have) == 6 and want[:2] + want[3:] == have[:2] + have[3:]
    return line == expect.text


def _check(expect: Expect, line: bytes, clock: Clock) -> None:
    where = f"line {expect.line_no}: the page shows\n  {expect.text!r}\nthe node sent\n  {line!r}"
    if not _fits(expect, line):
        raise Mismatch(where)
    if expect.kind is not Kind.CLOCK:
        return
    shown, diff, sent = expect.text.split(b" ")[2], line.split(b" ")[2], line.split(b" ")[5]
    if not DIFF.fullmatch(diff):
        raise Mismatch(f"{where}\nwhose diff is not signed with exactly 9 decimals")
    received = Decimal(sent.decode()) + Decimal(diff.decode())
    now = Decimal(time.time_ns()) / 1_000_000_000
    if not clock.since - CLOCK_SLACK <= received <= now + CLOCK_SLACK:
        raise Mismatch(f"{where}\nwhose diff puts the receive time at {received}, not {now}")
    if clock.diffs.setdefault(shown, diff) != diff:
        raise Mismatch(f"{where}\nthe page shows this diff before, the node sent another then")


def _check_places(step: Step, got: list[bytes]) -> None:
    """A WHATSAT reply's JSON: Nearby Search keys, at most `bound` results, one blank end."""
    fields = step.sent[-1].split()
    if len(step.sent) != 1 or fields[:1] != [b"WHATSAT"] or not got[:1] or got[0][:3] != b"AT ":
        return
    body = b"\n".join(got[1:]) + b"\n"
    if not body.endswith(b"}\n\n") or b"\n\n" in body[:-2]:
        raise Mismatch(f"line {step.line_no}: the JSON does not end its reply once: {body!r}")
    doc = json.loads(body)
    if list(doc)[:3] != ["html_attributions", "results", "status"]:
        raise Mismatch(f"line {step.line_no}: not a Nearby Search response: {list(doc)}")
    if len(doc["results"]) > int(fields[3]):
        raise Mismatch(f"line {step.line_no}: more results than the bound")


# -- the tests ----------------------------------------------------------------------------

EXAMPLES = examples_or_none()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Decimal]]:
    """A lone node called Welsh, offline places, no key: its port, and the POSIX time just
    before it started."""
    since = Decimal(time.time_ns()) / 1_000_000_000
    env = {k: v for k, v in os.environ.items() if k not in ("HERD_SECRET", "GOOGLE_PLACES_API_KEY")}
    config = write_topology(tmp_path_factory.mktemp("protocol-doc"), [NODE], [])
    with Herd(config, env=env) as herd:
        herd.start()
        yield herd.nodes[NODE].port, since


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_example(node: tuple[int, Decimal], example: Example) -> None:
    port, since = node
    run_example(port, example, Clock(since))


def test_page_has_examples() -> None:
    """The page parses, and shows each case a client writer needs to see."""
    examples = extract_examples(DOC.read_text(encoding="utf-8"))
    missing = [what for what, found in _coverage(examples).items() if not found]
    assert not missing, f"docs/protocol.md has no example of: {', '.join(missing)}"


def _pairs(examples: list[Example]) -> list[tuple[bytes, Expect | None]]:
    """Each line sent alone in a step, with the first reply line the page shows for it."""
    return [
        (step.sent[0], step.expected[0] if step.expected else None)
        for example in examples
        for step in example.steps
        if len(step.sent) == 1
    ]


def _coverage(examples: list[Example]) -> dict[str, bool]:
    pairs = _pairs(examples)

    def answered(keyword: bytes, *, refused: bool) -> list[list[bytes]]:
        """The fields of the lines sent alone that start with `keyword` and are answered
        (refused: with `? ` and the line; else with anything else)."""
        return [
            sent.split()
            for sent, reply in pairs
            if reply is not None
            and sent.startswith(keyword)
            and (reply.kind is Kind.EXACT and reply.text == b"? " + sent) == refused
        ]

    iamat_ok, iamat_bad = answered(b"IAMAT ", refused=False), answered(b"IAMAT ", refused=True)
    whatsat_ok = answered(b"WHATSAT ", refused=False)
    whatsat_bad = answered(b"WHATSAT ", refused=True)
    sent_anywhere = {line for e in examples for s in e.steps for line in s.sent}
    return {
        "a valid IAMAT": bool(iamat_ok),
        "an older IAMAT still answered": any(_has_older(e) for e in examples),
        "a location out of range": any(
            len(f) == 4 and TIME.fullmatch(f[3]) and not valid_location(f[2]) for f in iamat_bad
        ),
        "a bad time": any(
            len(f) == 4 and valid_location(f[2]) and not TIME.fullmatch(f[3]) for f in iamat_bad
        ),
        "radius 50 answered": any(f[2:3] == [b"50"] for f in whatsat_ok),
        "radius 50.1 refused": any(f[2:3] == [b"50.1"] for f in whatsat_bad),
        "bound 20 answered": any(f[3:4] == [b"20"] for f in whatsat_ok),
        "bound 21 refused": any(f[3:4] == [b"21"] for f in whatsat_bad),
        "WHATSAT for an unknown client": any(
            f[2:] == [b"10", b"5"] and f[1].startswith(b"nobody") for f in whatsat_bad
        ),
        "a blank line": b"" in sent_anywhere,
        "CHANGELOC from a client": bool(answered(b"CHANGELOC ", refused=True)),
        "a whole JSON reply": any(
            [x.text for x in s.expected[-2:]] == [b"}", b""]
            and all(x.kind is not Kind.SKIP for x in s.expected)
            for e in examples
            for s in e.steps
        ),
    }


def _has_older(example: Example) -> bool:
    """Whether a client's IAMAT is answered after one of its with a later time."""
    latest: dict[bytes, Decimal] = {}
    for sent, reply in _pairs([example]):
        fields = sent.split()
        if fields[:1] == [b"IAMAT"] and len(fields) == 4 and reply and reply.kind is Kind.CLOCK:
            t = Decimal(fields[3].decode())
            if t < latest.get(fields[1], t):
                return True
            latest[fields[1]] = t
    return False


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("# P\n\nProse.\n\n```text\n> IAMAT a +1+1 1\n```\n", id="no-exchange"),
        pytest.param("```exchange\n```\n", id="empty-block"),
        pytest.param("```exchange\n< ? x\n```\n", id="reply-first"),
        pytest.param("```exchange\n> x\nx\n```\n", id="no-marker"),
        pytest.param("```exchange\n> x\n<~ AT Welsh +0.1 a +1+1 1\n```\n", id="bad-diff"),
        pytest.param("```exchange\n> x\n< a\n<...\n```\n", id="skip-last"),
        pytest.param("```exchange\n> x\n", id="unclosed"),
    ],
)
def test_a_page_without_good_examples_fails(text: str) -> None:
    with pytest.raises(DocError):
        extract_examples(text)


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_a_wrong_or_missing_reply_in_the_page_fails(
    node: tuple[int, Decimal], example: Example
) -> None:
    """The last shown reply line of each example, changed by one byte or left out (with a
    `<...` before it), makes the example fail against the same node."""
    port, since = node
    i = max(n for n, step in enumerate(example.steps) if step.expected)
    step = example.steps[i]
    *before, last = step.expected
    wrong = (*before, replace(last, text=last.text + b"!"))
    while before and before[-1].kind is Kind.SKIP:
        before.pop()
    for expected in (wrong, tuple(before)):
        steps = list(example.steps)
        steps[i] = replace(step, expected=expected)
        with pytest.raises(Mismatch):
            run_example(port, replace(example, steps=tuple(steps)), Clock(since))
