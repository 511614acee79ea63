"""The garbage collector's settings of a serving node: the one place they are made (``sanke serve``).

Why: a node holds thousands of sockets and their sessions, a couple of hundred objects each that the
collector tracks, and one full collection scans every tracked object while the event loop waits
(``server.core.loopwatch``: 444 ms at 1,000 signaling clients and 1,021 ms at 2,000 while every session
still kept its ``joined`` listing; about 1 s at 5,000 now, ~0.9 us per object, most of it waiting for
memory).  Chat and roster fan-out p99 carried those pauses.  Two settings, once the node has started
(``settle``):

* ``gc.freeze()`` after a collection: what is alive then (modules, the app, its routes and schemas,
  the ORM's metadata: about 200,000 objects) moves to the permanent generation, never scanned again;
* ``gc.set_threshold(700, MIDDLE_THRESHOLD, OLD_THRESHOLD)`` = (700, 3, 300): the middle generation is
  collected after 3 young collections instead of 10, and a full collection comes at most once per 300
  of those instead of 10.  Python also waits until the old generation has grown by a quarter, but
  with thousands of sockets that is no brake: every socket re-arms its waits (the next frame, the
  next message to write) for each message, those objects live about a second, long enough to reach
  the old generation, and die there; at 5,000 clients that "growth" came to a quarter of the heap
  every ~20 s, and so did a full collection (~1 s).  What the spacing delays is only the freeing of
  reference cycles that reached the old generation (closed sockets leave some).  The middle
  generation's collections took 50-115 ms each at 5,000 clients with 10; with 3 they are shorter
  (40-77 ms) and more frequent, and chat fan-out p99 over a steady minute went from 189 ms (700, 10,
  100) to 75 ms (``bench.signaling --steps 5000 --window 60 --watch``, other work on the machine).

The young threshold stays Python's (700): a young collection's objects point into a heap of hundreds
of MiB, each reference a cache and TLB miss on this kind of machine, so a larger young generation is a
longer pause (raised to 10,000: 5-16 ms per young collection and 65 ms for the next generation,
measured and undone).

Must not: disable the collector (cycles must be collected), or freeze again later (an object frozen
while in use and part of a cycle once it is garbage would never be freed).  ``reset`` undoes both
(tests).
"""

from __future__ import annotations

import gc

OLD_THRESHOLD = 300
"""Collections of the middle generation between two full collections (Python's default: 10)."""
MIDDLE_THRESHOLD = 3
"""Young collections between two collections of the middle generation (Python's default: 10)."""
_DEFAULT = gc.get_threshold()


def settle() -> int:
    """The node has started: collect, freeze what is alive, and space out full collections.  Answers
    how many objects were frozen."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(_DEFAULT[0], MIDDLE_THRESHOLD, OLD_THRESHOLD)
    return gc.get_freeze_count()


def reset() -> None:
    """Python's defaults again, nothing frozen."""
    gc.unfreeze()
    gc.set_threshold(*_DEFAULT)
