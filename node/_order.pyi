# The C of node/_order.c, built with the compiled core; node.store picks it up.
def newer_than_packed(
    location: bytes, time_sent: bytes, time_received: bytes, server: bytes, held: bytes, /
) -> bool: ...
