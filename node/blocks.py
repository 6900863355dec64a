"""A read's block of IAMAT or CHANGELOC lines cut into their fields in one call.

`iamat_lines(block)` and `changeloc_lines(block)` return the fields of the block's
LF-separated lines, in order, as `protocol.IAMAT_LINES` and `protocol.CHANGELOC_LINES`
give them; when the list is shorter than the block, some line was not of the form and the
caller goes line by line. They are the C scanner (`node/_blocks.c`) when the compiled core
is built with it, else the regex's `findall`: the same lines accepted, the same fields (a
hypothesis test holds the two to each other), about a fifth of the regex's cost per line.
"""

from __future__ import annotations

from collections.abc import Callable

from node.protocol import CHANGELOC_LINES, IAMAT_LINES, ChangeLocFields, IAmAtFields

iamat_lines: Callable[[bytes], list[IAmAtFields]] = IAMAT_LINES.findall
changeloc_lines: Callable[[bytes], list[ChangeLocFields]] = CHANGELOC_LINES.findall
SCANNER = "regex"  # which cuts them: "regex", or "c"

try:
    from node import _blocks
except ImportError:  # the compiled core is not built, or not used (node.native)
    pass
else:
    iamat_lines = _blocks.iamat_lines
    changeloc_lines = _blocks.changeloc_lines
    SCANNER = "c"
