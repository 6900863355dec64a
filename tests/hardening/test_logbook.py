"""Review findings in node/logbook.py."""

from __future__ import annotations

from pathlib import Path

from node.logbook import LogBook


def test_log_rotation_failure_keeps_logging(tmp_path: Path) -> None:
    path = tmp_path / "node.log"
    blocker = tmp_path / "node.log.1"  # a non-empty directory: the rename onto it fails
    blocker.mkdir()
    (blocker / "keep").write_text("x")
    book = LogBook(path, max_bytes=1024, backups=1)
    book.event("x" * 2000)
    book.flush()  # rotation fails here; that alone must not break the log
    book.event("after the failed rotation")
    book.flush()
    book.close()
    assert "after the failed rotation" in path.read_text()
