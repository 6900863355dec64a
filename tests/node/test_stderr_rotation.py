"""NAME.stderr.log is rotated like the node's own log, by the process writing to it."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys
from pathlib import Path
from node.rotation import rotate_stderr

path = Path(sys.argv[1])
results = []
for round in range(4):
    sys.stderr.write("x" * 600 + "\\n")
    print("out %d" % round, flush=True)
    results.append(rotate_stderr(path, 1000, 2))
print("final out", flush=True)
sys.stderr.write("last\\n")
sys.stderr.flush()
print(results, file=sys.stderr)
"""


def run_script(rotated: Path, output: Path) -> None:
    """SCRIPT rotating `rotated`, with stdout and stderr appended to `output`."""
    with open(output, "ab") as log:  # as the supervisor opens it
        subprocess.run(
            [sys.executable, "-c", SCRIPT, str(rotated)],
            stdout=log,
            stderr=subprocess.STDOUT,
            check=True,
            cwd=Path(__file__).resolve().parents[2],
        )


def test_the_file_behind_stderr_is_rotated_and_reopened(tmp_path: Path) -> None:
    path = tmp_path / "Solo.stderr.log"
    run_script(path, path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["Solo.stderr.log", "Solo.stderr.log.1", "Solo.stderr.log.2"]
    current = path.read_text()
    # What both streams wrote after the last rotation went to the new file.
    assert current == "final out\nlast\n[False, True, False, True]\n"
    assert "out 3" in (tmp_path / "Solo.stderr.log.1").read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert all(p.stat().st_size < 2000 for p in tmp_path.iterdir())


def test_a_terminal_or_another_file_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "Solo.stderr.log"
    path.write_bytes(b"y" * 5000)
    other = tmp_path / "elsewhere.log"
    run_script(path, other)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Solo.stderr.log", "elsewhere.log"]
    assert other.read_text().endswith("[False, False, False, False]\n")
