"""What a quick herdctl command leaves unimported (issue 13: a command in <= 150 ms).

Each of these costs 10-100 ms at every start and is needed only by other paths: pydantic by
typer's coercion of typed values (herdctl.plain_params), yaml by reading a topology,
psutil by the commands that look at processes, asyncio by the probes of an unsupervised herd,
aiohttp by the supervisor's dashboard alone.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.herdctl_cli import herdctl
from tests.support import write_topology

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("pydantic", "yaml", "psutil", "asyncio", "secrets", "herdctl.loadgen.run", "aiohttp")


def imported_by(argv: list[str], cwd: Path) -> set[str]:
    """The HEAVY modules loaded by running herdctl `argv` in `cwd`, in one process."""
    probe = (
        "import sys\n"
        "from herdctl.cli import main\n"
        f"code = main({argv!r})\n"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True, check=False
    )
    return set(done.stderr.splitlines()[-1].split())


@pytest.mark.parametrize(
    "argv", [["--help"], ["status", "--help"], ["send", "--help"], ["dashboard", "--help"]]
)
def test_help_imports_nothing_heavy(argv: list[str], tmp_path: Path) -> None:
    assert imported_by(argv, tmp_path) == set()


def test_status_of_a_running_herd_reads_yaml_only(folder: Path) -> None:
    config = write_topology(folder)
    result = herdctl("up", config=config)
    assert result.returncode == 0, result.stderr
    assert imported_by(["status"], folder) == {"yaml"}
    assert imported_by(["-c", str(config), "status"], ROOT) == {"yaml"}
