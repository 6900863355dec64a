"""How a node sets CPython's cyclic garbage collector, once it has started.

A node's lasting state holds nothing the collector tracks: the store, the journal's index
and the peers' tables are dicts of bytes. What it does track are a turn's batches: under
load, thousands of short-lived tuples and lists that are freed when the turn ends. With
CPython's default young threshold (700 net new containers) a relay ran a young collection
about a hundred times a second in the middle of its turns, and each promotion of a turn's
batch brought on full collections that walked the ~27,000 objects of the start-up (25 ms
each): together about a tenth of the herd's CPU under the ingest load (bench/README.md,
"The garbage collector"). So the start-up's objects are frozen out of every later
collection, and the young generation is collected only after `YOUNG_THRESHOLD` net new
containers: more than the busiest turn keeps alive, and few enough that cyclic garbage
(a caught exception's traceback, a closed connection's futures) is still freed within
seconds.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000  # net new tracked objects between young collections
OLDER_THRESHOLDS = (10, 10)  # CPython's defaults for the two older generations


def set_for_serving() -> int:
    """Collect the start-up's garbage, freeze what remains, raise the young threshold.

    Returns how many objects were frozen. Called once, when the node is serving.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
    return gc.get_freeze_count()
