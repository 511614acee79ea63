"""Outgoing sequence numbers and timestamps of one consumer stream, continuous across source switches.

A consumer's receiver sees a single SSRC whose content changes: the on-stage
slot switches from one classroom's camera to another's, the simulcast layer
changes with the link, video is paused on a weak link and resumed.  Each source
has its own random sequence-number and timestamp spaces, but the receiver's
jitter buffer and NACK logic expect one stream: consecutive sequence numbers
(a gap means loss and triggers NACKs) and timestamps that never jump backwards
(or it would hold or drop frames).  So the SFU rewrites both:

* An *epoch* is a run of packets from one source.  Inside an epoch the
  mapping is a pair of constant offsets, ``out = in + offset`` modulo 2**16 /
  2**32, so reordered packets map consistently and a NACKed output sequence
  number maps back to the source's (:meth:`SeqTsRewriter.to_source_seq`).
* The first packet of a new epoch gets the next output sequence number and a
  timestamp advanced from the previous highest one by the wall time since it
  was sent (at least 1 tick), so playout pacing survives the switch.
* Packets older than the epoch's first packet (late packets of the previous
  source, or reordered before the switch point) get -1: they must be dropped,
  since their output numbers were already used by the previous epoch.

The rewriter only sees sequence numbers: late packets of a previous source
with a *different* SSRC must be filtered by the caller, which knows which SSRC
it currently forwards.  Paused-then-resumed same-SSRC streams are recognised
here.  As a safety net (RFC 3550 A.1 style), a packet more than
``MAX_DROPOUT`` ahead of or ``MAX_MISORDER`` behind the epoch's highest
sequence number is dropped too — unless the next packet follows it directly,
in which case the source has restarted its sequence numbers and that next
packet starts a new epoch.

``ts_offset`` is also what the Sender Report generator adds (mod 2**32) to the
producer's RTP clock — the RTP time derived from the producer's own SR — so the
consumer's SR maps its NTP time to the *output* timestamp space and lip sync
with audio keeps working after a switch.

The algorithm runs in C (``sk_rewrite`` in ``media/fastpath.c``), because it runs
once per packet and subscriber inside the fan-out loop; this class is its Python
face, for the consumer's control code and for tests.
"""

from __future__ import annotations

import random
from typing import Any

from media._fastpath import ffi, lib

MAX_DROPOUT = 3000
"""Largest forward jump inside an epoch taken as loss rather than a foreign/restarted sequence
(``SK_MAX_DROPOUT`` in the C code)."""
MAX_MISORDER = 100
"""Largest backward distance inside an epoch taken as reordering (``SK_MAX_MISORDER``)."""


class SeqTsRewriter:
    """Maps (source seq, source ts) to the consumer stream's (seq, ts); see the module docstring.

    :meth:`rewrite` returns the output sequence number (or -1 = drop) and leaves
    the output timestamp in :attr:`out_ts`, to avoid a tuple per packet.

    ``c``: a ``sk_rewriter *`` inside a C object owned by ``owner`` (a consumer's sink), so the
    fan-out loop and this object share one state; by default the rewriter owns its own.
    """

    __slots__ = ("_c", "_owner")

    def __init__(self, clock_rate: int, first_seq: int | None = None, first_ts: int | None = None,
                 *, c: Any = None, owner: Any = None) -> None:
        if clock_rate <= 0:
            raise ValueError("clock_rate must be positive")
        seq0 = random.getrandbits(16) if first_seq is None else first_seq & 0xFFFF
        ts0 = random.getrandbits(32) if first_ts is None else first_ts & 0xFFFFFFFF
        if c is None:
            c = owner = ffi.new("sk_rewriter *")
        self._c = c
        self._owner = owner
        lib.sk_rewriter_init(c, clock_rate, seq0, ts0)

    @property
    def clock_rate(self) -> int:
        return int(self._c.clock_rate)

    @property
    def highest_out_seq(self) -> int:
        """Highest output sequence number sent (the one before the first, initially)."""
        return int(self._c.highest_out_seq)

    @property
    def out_ts(self) -> int:
        """Output timestamp of the last packet :meth:`rewrite` accepted."""
        return int(self._c.out_ts)

    @property
    def seq_offset(self) -> int:
        """Current epoch: ``out_seq = (in_seq + seq_offset) % 2**16``."""
        return int(self._c.seq_offset)

    @property
    def ts_offset(self) -> int:
        """Current epoch: ``out_ts = (in_ts + ts_offset) % 2**32``; also added to the producer's RTP clock in SRs."""
        return int(self._c.ts_offset)

    def mark_discontinuity(self) -> None:
        """The next packet passed to :meth:`rewrite` starts a new epoch (new source, or resume after a gap)."""
        self._c.new_epoch = 1

    def rewrite(self, seq: int, ts: int, now_s: float) -> int:
        """Output sequence number for the source packet (``seq``, ``ts``) sent at ``now_s``, or -1 to drop it.

        On success the output timestamp is in :attr:`out_ts`.
        """
        return int(lib.sk_rewrite(self._c, seq & 0xFFFF, ts & 0xFFFFFFFF, now_s))

    def to_source_seq(self, out_seq: int) -> int:
        """Source sequence number of an output one (to answer a NACK), or -1 if not from the current epoch."""
        return int(lib.sk_to_source_seq(self._c, out_seq & 0xFFFF))
