"""The figures tests report (chaos, multi-host), gathered into one summary at the end."""

from __future__ import annotations

from collections.abc import Callable

import pytest

_FIGURES = pytest.StashKey[list[str]]()

Report = Callable[..., None]


@pytest.fixture
def figures(
    request: pytest.FixtureRequest, record_property: Callable[[str, object], None]
) -> Report:
    """`figures(written=..., acked=...)`: printed (pytest -s), put in the junit properties,
    and repeated in a "figures" section of the terminal summary, so they can be quoted."""

    def report(**values: object) -> None:
        line = f"{request.node.nodeid}: " + ", ".join(f"{k}={v}" for k, v in values.items())
        print(line)
        for key, value in values.items():
            record_property(key, value)
        request.config.stash.setdefault(_FIGURES, []).append(line)

    return report


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    lines = config.stash.get(_FIGURES, [])
    if lines:
        terminalreporter.section("figures")
        for line in lines:
            terminalreporter.write_line(line)
