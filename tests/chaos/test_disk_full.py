"""A real node whose journal disk fills up: nothing acknowledged is lost, nothing unjournalled
leaves the node, and it recovers by itself when space returns.

Welsh's journal folder is a 1 MiB tmpfs (root only; skipped with the reason otherwise),
nearly filled by a file of ours before the writers start. Clients write to Welsh until its
journal refuses them, and to Holiday, whose flood then waits at Welsh. Then:
- every record Holiday holds from Welsh is in Welsh's journal (nothing unjournalled was
  flooded), and Welsh's memory holds nothing its journal does not;
- Welsh is killed with SIGKILL and restarted on the full disk: every AT a client got back is
  there;
- the filler is removed: with no restart, Welsh takes IAMATs again and applies Holiday's
  waiting records, and the two nodes agree on every client.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from node.entries import ReplayStats, replay_file
from node.store import ClientStore
from tests.chaos.lines import LIMITS, send_lines, whatsat_records
from tests.support import Herd, wait_until, write_topology

TMPFS_BYTES = 1 << 20
LEFT_FREE = 48 * 1024  # what the filler leaves: a few hundred entries
Report = Callable[..., None]


@contextlib.contextmanager
def small_tmpfs(path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted at `path`, unmounted at the end even on failure."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(folder: Path, leave: int) -> Path:
    """A file that takes all but `leave` bytes of the filesystem holding `folder`."""
    filler = folder / "filler"
    st = os.statvfs(folder)
    size = max(0, st.f_bavail * st.f_frsize - leave)
    with open(filler, "wb") as f:
        f.write(b"\0" * size)
    return filler


def iamats(prefix: str, start: int, count: int) -> list[tuple[bytes, bytes, bytes]]:
    return [
        (f"{prefix}-{i:05d}.full".encode(), b"+%d.5-%d.25" % (i % 80, i % 170), b"17200.%d" % i)
        for i in range(start, start + count)
    ]


def write(port: int, batch: list[tuple[bytes, bytes, bytes]]) -> list[bytes]:
    """Send a pipelined batch; the AT lines that came back for it."""
    reply, _ = send_lines(port, b"".join(b"IAMAT %s %s %s\n" % u for u in batch))
    return [line for line in reply.split(b"\n")[:-1] if line.startswith(b"AT ")]


def journalled(folder: Path) -> dict[bytes, bytes]:
    """What a journal folder replays to, read beside the running node (only reading)."""
    store = ClientStore()
    stats = ReplayStats()
    for path in sorted(folder.glob("*.log")):
        replay_file(path, store, stats)
    assert stats.damaged == stats.torn == 0, stats.damage
    return dict(store.packed())


def acked_records(lines: list[bytes]) -> dict[bytes, tuple[bytes, bytes]]:
    out = {}
    for line in lines:
        _, _server, _diff, client, location, sent = line.split()
        out[client] = (location, sent)
    return out


def test_a_full_journal_disk_loses_and_leaks_nothing_and_recovers(
    tmp_path: Path, figures: Report
) -> None:
    config = write_topology(
        tmp_path,
        ("Welsh", "Holiday"),
        [("Holiday", "Welsh")],
        extra={"limits": LIMITS, "journal": {"fsync": "always"}},
    )
    journal_dir = tmp_path / "data" / "Welsh"
    with small_tmpfs(journal_dir), Herd(config) as herd:
        herd.start()
        herd.wait_links_up()
        welsh, holiday = herd.nodes["Welsh"].port, herd.nodes["Holiday"].port

        filler = fill(journal_dir, LEFT_FREE)
        acked: list[bytes] = []
        refused_batches = 0
        start = 0
        while refused_batches < 5:  # keep writing until the journal has refused a few times
            batch = iamats("w", start, 20)
            start += 20
            got = write(welsh, batch)
            acked += got
            if len(got) < len(batch):
                refused_batches += 1
            assert start < 20_000, "the journal never filled up"
        while True:  # then single entries into whatever room a refused batch left
            got = write(welsh, iamats("w", start, 1))
            start += 1
            acked += got
            if not got:
                break
            assert start < 20_000, "the journal never filled up"
        for i in range(10):  # a full disk: batches all refused, the node still answers reads
            assert write(welsh, iamats("late", i * 10, 10)) == []
        assert whatsat_records(welsh, [b"w-00000.full"])[b"w-00000.full"] is not None
        from_holiday = iamats("h", 0, 200)
        acked_at_holiday = write(holiday, from_holiday)
        assert len(acked_at_holiday) == 200

        # Nothing left Welsh that its journal does not hold: read Holiday first, then Welsh's
        # journal, which only grows while the node runs.
        sent_to_welsh = [c for c, _, _ in iamats("w", 0, start)]
        at_holiday = whatsat_records(holiday, sent_to_welsh)
        on_disk = journalled(journal_dir)
        leaked = [
            c
            for c, line in at_holiday.items()
            if line is not None and line.split()[1] == b"Welsh" and c not in on_disk
        ]
        assert leaked == []
        at_welsh = whatsat_records(welsh, sent_to_welsh)
        in_memory_only = [c for c, line in at_welsh.items() if line and c not in on_disk]
        assert in_memory_only == []
        status = tmp_path / "run" / "Welsh.status.json"
        wait_until(
            lambda: json.loads(status.read_text()).get("journal_error") == "ENOSPC",
            "the status file to say the journal refuses writes",
        )

        # One line per episode (a refused batch can leave room for a smaller one: then the
        # disk "recovers" for a write), not one per refused batch or retry. The log reaches
        # its file within the node's flush interval, not at once: poll until it has.
        def episodes_logged() -> bool:
            log = herd.nodes["Welsh"].log_text()
            failed = log.count(" JOURNAL_WRITE_FAILED ")
            paused = " PEER_IN_PAUSED peer=Holiday " in log
            return paused and failed == log.count(" JOURNAL_WRITE_RECOVERED ") + 1

        wait_until(episodes_logged, "Welsh's log to show each episode and Holiday's link paused")
        log = herd.nodes["Welsh"].log_text()
        assert log.count(" JOURNAL_WRITE_FAILED ") <= refused_batches + 1

        # kill -9 on the full disk, and back: every acknowledged record is there.
        herd.nodes["Welsh"].stop(signal.SIGKILL)
        herd.start("Welsh")
        expected = acked_records(acked)
        after = whatsat_records(welsh, list(expected))
        lost = [
            c
            for c, (loc, sent) in expected.items()
            if after[c] is None or after[c].split()[4:] != [loc, sent]  # type: ignore[union-attr]
        ]
        assert lost == []

        # Space returns: Welsh takes writes again and catches up, with no restart.
        filler.unlink()
        again = iamats("again", 0, 50)
        wait_until(lambda: len(write(welsh, again[:1])) == 1, "Welsh to take IAMATs again")
        assert len(write(welsh, again)) == 50
        holiday_clients = [c for c, _, _ in from_holiday]
        wait_until(
            lambda: all(whatsat_records(welsh, holiday_clients).values()),
            "Holiday's records to reach Welsh",
        )
        every = sent_to_welsh + holiday_clients + [c for c, _, _ in again]
        wait_until(
            lambda: whatsat_records(welsh, every) == whatsat_records(holiday, every),
            "Welsh and Holiday to agree",
        )
        assert " JOURNAL_WRITE_RECOVERED " in herd.nodes["Welsh"].log_text()
        wait_until(
            lambda: json.loads(status.read_text()).get("journal_error") is None,
            "the status file to clear the journal error",
        )
        figures(
            written=start + 100,
            acked=len(acked),
            lost=len(lost),
            leaked=len(leaked),
            refused_batches=refused_batches,
        )
