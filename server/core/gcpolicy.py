"""The garbage collector's settings of a serving node: the one place they are made (``sanke serve``).

Why: a node holds thousands of sockets and their sessions, a couple of hundred objects each that the
collector tracks, and one full collection scans every tracked object while the event loop waits
(``server.core.loopwatch``: 444 ms at 1,000 signaling clients and 1,021 ms at 2,000 while every session
still kept its ``joined`` listing; about 1 s at 5,000 now, ~0.9 us per object, most of it waiting for
memory).  Chat and roster fan-out p99 carried those pauses.  Two settings, once the node has started
(``settle``):

* ``gc.freeze()`` after a collection: what is alive then (modules, the app, its routes and schemas,
  the ORM's metadata: about 200,000 objects) moves to the permanent generation, never scanned again;
* ``gc.set_threshold(700, 10, OLD_THRESHOLD)``: a full collection at most once per ``OLD_THRESHOLD``
  (100) collections of the middle generation instead of 10.  Python also waits until the old
  generation has grown by a quarter, but with thousands of sockets that is no brake: every socket
  re-arms its waits (the next frame, the next message to write) for each message, those objects
  live about a second, long enough to reach the old generation, and die there; at 5,000 clients
  that "growth" came to a quarter of the heap every ~20 s, and so did a full collection (~1 s).
  With 100 a full collection comes every few minutes of a steady lesson.  What it delays is only
  the freeing of reference cycles that reached the old generation (closed sockets leave some).

The young thresholds stay Python's (700, 10): a young collection's objects point into a heap of
hundreds of MiB, each reference a cache and TLB miss on this kind of machine (~5-10 us per young
object), so a larger young generation is a longer pause (raised to 10,000: 5-16 ms per young
collection and 65 ms for the next generation, measured and undone).

Must not: disable the collector (cycles must be collected), or freeze again later (an object frozen
while in use and part of a cycle once it is garbage would never be freed).  ``reset`` undoes both
(tests).
"""

from __future__ import annotations

import gc

OLD_THRESHOLD = 100
"""Collections of the middle generation between two full collections (Python's default: 10)."""
_DEFAULT = gc.get_threshold()


def settle() -> int:
    """The node has started: collect, freeze what is alive, and space out full collections.  Answers
    how many objects were frozen."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(_DEFAULT[0], _DEFAULT[1], OLD_THRESHOLD)
    return gc.get_freeze_count()


def reset() -> None:
    """Python's defaults again, nothing frozen."""
    gc.unfreeze()
    gc.set_threshold(*_DEFAULT)
