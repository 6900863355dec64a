"""The herd's node: one asyncio server per process (`python -m node NAME`)."""

from node import native as _native

# Before any other module of the package is imported: the compiled core, when built from
# this source, is found first (see `node.native`).
NATIVE = _native.activate(__path__)
