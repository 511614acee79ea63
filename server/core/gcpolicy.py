"""The garbage collector's settings of a serving node: the one place they are made (``sanke serve``).

Why: a node holds thousands of sockets and their sessions, a few hundred objects each that the
collector tracks, and one full collection scans every tracked object while the event loop waits
(``server.core.loopwatch`` measured 444 ms at 1,000 signaling clients and 1,021 ms at 2,000, with each
session's ``joined`` listing still kept; chat and roster fan-out p99 carried those pauses).  Once the
node has started (``settle``), after a collection, ``gc.freeze()`` moves what is alive then (modules,
the app, its routes and schemas, the ORM's metadata: about 200,000 objects) to the permanent
generation, which is never scanned again: every full collection is that much shorter.

The thresholds stay Python's (700, 10, 10).  Raising the young one (10,000) was measured and undone:
a young collection's objects point into a heap of hundreds of MiB, each reference a cache miss, so a
young collection of 10,000 objects took 5-16 ms of CPU and the next generation's 65 ms, pauses of
their own on every message in flight; at 700 they stay near a millisecond.

Must not: disable the collector (a closed socket leaves reference cycles behind: they must be
collected), or freeze again later (an object frozen while in use and part of a cycle once it is
garbage would never be freed).  ``reset`` undoes it (tests).
"""

from __future__ import annotations

import gc


def settle() -> int:
    """The node has started: collect, then freeze what is alive.  Answers how many objects were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def reset() -> None:
    """Nothing frozen any more (what was frozen is scanned again by the next full collection)."""
    gc.unfreeze()
