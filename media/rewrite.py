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
"""

from __future__ import annotations

import random

_SEQ_MOD = 1 << 16
_SEQ_MASK = _SEQ_MOD - 1
_TS_MOD = 1 << 32
_TS_MASK = _TS_MOD - 1

MAX_DROPOUT = 3000
"""Largest forward jump inside an epoch taken as loss rather than a foreign/restarted sequence."""
MAX_MISORDER = 100
"""Largest backward distance inside an epoch taken as reordering."""


class SeqTsRewriter:
    """Maps (source seq, source ts) to the consumer stream's (seq, ts); see the module docstring.

    :meth:`rewrite` returns the output sequence number (or -1 = drop) and leaves
    the output timestamp in :attr:`out_ts`, to avoid a tuple per packet.
    """

    __slots__ = (
        "_bad_seq",
        "_epoch_ext",
        "_first_ts",
        "_highest_in_seq",
        "_new_epoch",
        "_ref_s",
        "_ref_ts",
        "_started",
        "clock_rate",
        "highest_out_seq",
        "out_ts",
        "seq_offset",
        "ts_offset",
    )

    def __init__(self, clock_rate: int, first_seq: int | None = None, first_ts: int | None = None) -> None:
        if clock_rate <= 0:
            raise ValueError("clock_rate must be positive")
        self.clock_rate: int = clock_rate
        seq0 = random.getrandbits(16) if first_seq is None else first_seq & _SEQ_MASK
        ts0 = random.getrandbits(32) if first_ts is None else first_ts & _TS_MASK
        self.highest_out_seq: int = (seq0 - 1) & _SEQ_MASK
        """Highest output sequence number sent (the one before the first, initially)."""
        self.out_ts: int = ts0
        """Output timestamp of the last packet :meth:`rewrite` accepted."""
        self.seq_offset: int = 0
        """Current epoch: ``out_seq = (in_seq + seq_offset) % 2**16``."""
        self.ts_offset: int = 0
        """Current epoch: ``out_ts = (in_ts + ts_offset) % 2**32``; also added to the producer's RTP clock in SRs."""
        self._first_ts = ts0
        self._started = False
        self._new_epoch = True
        self._highest_in_seq = 0
        self._epoch_ext = 0
        """Highest input seq of the epoch, counted from the epoch's first packet (= 0)."""
        self._ref_ts = ts0
        """Highest output timestamp so far, and the wall time it was first sent."""
        self._ref_s = 0.0
        self._bad_seq = -1

    def mark_discontinuity(self) -> None:
        """The next packet passed to :meth:`rewrite` starts a new epoch (new source, or resume after a gap)."""
        self._new_epoch = True

    def rewrite(self, seq: int, ts: int, now_s: float) -> int:
        """Output sequence number for the source packet (``seq``, ``ts``) sent at ``now_s``, or -1 to drop it.

        On success the output timestamp is in :attr:`out_ts`.
        """
        if not self._new_epoch:
            d = ((seq - self._highest_in_seq + 0x8000) & _SEQ_MASK) - 0x8000
            if d > MAX_DROPOUT or d < -MAX_MISORDER:
                if seq != self._bad_seq:
                    self._bad_seq = (seq + 1) & _SEQ_MASK
                    return -1
                self._new_epoch = True  # two consecutive packets: the source restarted
            else:
                ext = self._epoch_ext + d
                if ext < 0:
                    return -1  # before the epoch's first packet
                self._bad_seq = -1
                out_seq = (seq + self.seq_offset) & _SEQ_MASK
                out_ts = (ts + self.ts_offset) & _TS_MASK
                if d > 0:
                    self._highest_in_seq = seq & _SEQ_MASK
                    self._epoch_ext = ext
                    self.highest_out_seq = out_seq
                if ((out_ts - self._ref_ts + 0x80000000) & _TS_MASK) - 0x80000000 > 0:
                    self._ref_ts = out_ts
                    self._ref_s = now_s
                self.out_ts = out_ts
                return out_seq

        # first packet of an epoch
        self._new_epoch = False
        self._bad_seq = -1
        out_seq = (self.highest_out_seq + 1) & _SEQ_MASK
        if self._started:
            step = round((now_s - self._ref_s) * self.clock_rate)
            out_ts = (self._ref_ts + (max(1, step))) & _TS_MASK
        else:
            self._started = True
            out_ts = self._first_ts
        self.seq_offset = (out_seq - seq) & _SEQ_MASK
        self.ts_offset = (out_ts - ts) & _TS_MASK
        self._highest_in_seq = seq & _SEQ_MASK
        self._epoch_ext = 0
        self.highest_out_seq = out_seq
        self.out_ts = out_ts
        self._ref_ts = out_ts
        self._ref_s = now_s
        return out_seq

    def to_source_seq(self, out_seq: int) -> int:
        """Source sequence number of an output one (to answer a NACK), or -1 if not from the current epoch."""
        if not self._started or self._new_epoch:
            return -1
        d = ((out_seq - self.highest_out_seq + 0x8000) & _SEQ_MASK) - 0x8000
        if d > 0 or self._epoch_ext + d < 0:
            return -1
        return (out_seq - self.seq_offset) & _SEQ_MASK
