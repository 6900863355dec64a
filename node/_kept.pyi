# The C of node/_kept.c, built with the compiled core; node.kept picks it up.
def append_kept(
    entries: list[bytes], flood: list[bytes], client: bytes, packed: bytes, /
) -> None: ...
