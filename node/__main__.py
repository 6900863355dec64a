"""`python -m node NAME [-c PATH]`: run one herd node until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from node import collector
from node.config import ConfigError, HerdConfig, LogRotation, default_config_path, load_config
from node.eventloop import loop_factory, loop_name
from node.journal import Journal, JournalError
from node.logbook import LogBook
from node.places.choose import ProviderError, choose_provider
from node.private import private_dir
from node.rotation import rotate_stderr
from node.scheduling import SliceGovernor
from node.secret import SecretError, load_secret
from node.server import NodeServer, StartupError

# A wrong command line exits 2 (argparse). EXIT_CONFIG (sysexits' EX_CONFIG): the node cannot
# start as configured here (bad topology, port taken, unreadable secret or journal). Retrying
# cannot help until something is changed, so a supervisor treats it as fatal at once.
EXIT_CONFIG = 78


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m node", description="Run one herd node.")
    parser.add_argument("name", help="this node's name in the topology, e.g. Goloman")
    parser.add_argument(
        "-c",
        "--config",
        default=None,
        help="topology file (default: $HERD_CONFIG, else ./topology.yaml)",
    )
    return parser.parse_args(argv)


async def run_node(config: HerdConfig, name: str) -> int:
    """Start the node, serve until a stop signal, shut down in order; the exit status."""
    # First of all: a stop signal during the start (a long journal replay, or right after
    # the port opens) ends the node in order once it has started, never by the default
    # action, which would leave its last log events unwritten.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:  # where it logs and reports, made first: one line and 78 when it cannot
        for folder in (config.log_dir, config.run_dir):
            private_dir(folder)
    except OSError as e:
        print(f"node {name}: cannot make folder {e.filename}: {e.strerror or e}", file=sys.stderr)
        return EXIT_CONFIG
    rotation = config.log_rotation
    log = LogBook(
        config.log_dir / f"{name}.log", max_bytes=rotation.max_bytes, backups=rotation.backups
    )
    try:
        secret = load_secret(config.secret_file)
        places, why = choose_provider(config.places)
    except (SecretError, ProviderError) as e:
        log.event(f"START_FAILED node={name} reason={e}")
        log.close()
        print(f"node {name}: {e}", file=sys.stderr)
        return EXIT_CONFIG
    log.event(f"PLACES provider={places.name} reason={why}")
    log.event(f"LOOP {loop_name()}")
    scheduling = config.scheduling
    slices = SliceGovernor(scheduling.quiet_slice_us, scheduling.busy_above, log.event)
    slices.start()  # before any thread: a thread starts with its creator's slice
    settings = config.journal
    journal = Journal(
        config.data_dir / name,
        fsync=settings.fsync,
        compact_factor=settings.compact_factor,
        compact_min=settings.compact_min_records,
        log=log.event,
    )
    node = NodeServer(config, name, secret=secret, places=places, log=log, journal=journal)
    slices.report_to(node.counters)
    try:
        await node.bind()  # a port in use is known before the replay, however long
        stats = journal.open(node.store)
        log.event(
            f"JOURNAL_REPLAY folder={journal.folder} files={stats.files} entries={stats.entries}"
            f" clients={len(node.store)} damaged={stats.damaged} torn={stats.torn}"
            f" moved_aside={stats.moved_aside}"
            f" fsync={settings.fsync} seconds={stats.seconds:.3f}"
        )
        await node.start()
    except (StartupError, JournalError) as e:
        log.event(f"START_FAILED node={name} reason={e}")
        node.unbind()
        await places.close()
        log.close()
        print(f"node {name}: {e}", file=sys.stderr)
        return EXIT_CONFIG
    journal.start()
    frozen = collector.set_for_serving()
    log.event(f"GC frozen={frozen} young_threshold={collector.YOUNG_THRESHOLD}")
    rotator = asyncio.get_running_loop().create_task(
        _rotate_stderr_log(config.log_dir / f"{name}.stderr.log", rotation)
    )
    slice_watch = asyncio.get_running_loop().create_task(slices.run(node.counters.lines_handled))
    print(f"node {name}: listening on {node.spec.bind}:{node.port}", file=sys.stderr, flush=True)
    await stop.wait()
    rotator.cancel()
    slice_watch.cancel()
    await node.stop()
    await journal.close()
    log.event(f"JOURNAL_CLOSED clients={len(node.store)}")
    log.close()
    return 0


STDERR_CHECK_INTERVAL = 5.0  # seconds between looks at the size of NAME.stderr.log


async def _rotate_stderr_log(path: Path, rotation: LogRotation) -> None:
    """Rotate the supervisor's NAME.stderr.log (our fds 1 and 2) like the node's own log."""
    while True:
        await asyncio.sleep(STDERR_CHECK_INTERVAL)
        try:
            rotate_stderr(path, rotation.max_bytes, rotation.backups)
        except OSError as e:  # a full disk: try again next time
            print(f"stderr log rotation failed: {e}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        config = load_config(args.config or default_config_path())
        config.node(args.name)
    except ConfigError as e:
        print(f"node: {e}", file=sys.stderr)
        return EXIT_CONFIG
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(run_node(config, args.name))


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop when installed (`pip install .[fast]`) unless HERD_LOOP=asyncio; else asyncio."""
    choice = "asyncio" if os.environ.get("HERD_LOOP", "auto") == "asyncio" else "auto"
    return loop_factory(choice)[1]


if __name__ == "__main__":
    sys.exit(main())
