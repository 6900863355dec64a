"""`python -m herdctl`: the same as the `herdctl` console script."""

from __future__ import annotations

import sys

from herdctl.cli import main

if __name__ == "__main__":
    sys.exit(main())
