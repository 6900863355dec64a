"""`python -m herdctl` and the `herdctl` console script.

The CLI is imported inside `main`, so a Ctrl-C while it loads ends with status 130 like one
at any other moment, not with a traceback of the import.
"""

from __future__ import annotations

import sys

EXIT_INTERRUPTED = 130  # herdctl.console's, which is not loaded yet


def main() -> int:
    """Load the CLI and run it; Ctrl-C while loading exits 130 quietly."""
    try:
        from herdctl.cli import main as run
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return run()


if __name__ == "__main__":
    sys.exit(main())
