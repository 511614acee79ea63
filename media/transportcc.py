"""Transport-wide congestion control state of one transport: both ends of the feedback loop.

* **Send side** (a subscriber's transport): ``match_feedback`` pairs a subscriber's
  ``TransportFeedback`` with what the transport's writer remembers of each transport-wide
  sequence number it stamped (send time, size; ``SrtpWriter.sent_record``) and gives the
  estimator's ``PacketResult`` list.  ``split_estimate`` shares the transport's estimate
  among its consumers (audio first).
* **Receive side** (a publisher's transport): ``ArrivalRecorder`` remembers when each
  transport-wide sequence number arrived, in a fixed ring (no allocation per packet), and
  builds the feedback packets the publisher's own congestion controller needs.  The
  transport asks for them on a timer (every ``FEEDBACK_INTERVAL_S``, as libwebrtc's
  ``RemoteEstimatorProxy`` and mediasoup's ``TransportCongestionControlServer`` do), not
  per packet: on a weak uplink the feedback that says "lost" must go out even when
  nothing more arrives.

Wire format lives in ``media/twcc.py``; sending, timers and the estimator's policy live in
``media/transport.py``.  Nothing here touches sockets or clocks: every call gets ``now``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from media._fastpath import ffi, lib
from media.twcc import TransportFeedback, build_feedback

_record = lib.sk_arrivals_record

RING = 4096
"""Arrival slots per publisher transport (~16 s at 250 packets/s); a power of two (``SK_ARRIVAL_RING``)."""
FEEDBACK_INTERVAL_S = 0.05
"""How often a publisher gets feedback (libwebrtc sends every 50–250 ms, 50 ms from ~250 kbit/s up)."""
MAX_STATUSES = 250
"""Sequence numbers per feedback packet (keeps a packet well under the MTU)."""
MAX_PENDING = 2000
"""A longer backlog (the publisher's numbers jumped, or a long silence) is skipped, not reported
(``SK_ARRIVAL_MAX_PENDING``)."""
AUDIO_SHARE_BPS = 64_000
"""What the estimate reserves per audio consumer before video gets the rest."""


def match_feedback(fb: TransportFeedback, lookup: Callable[[int], tuple[float, int] | None],
                   make: Callable[[float, float | None, int], Any]) -> list[Any]:
    """``make(send_time_s, arrival_time_s or None, size)`` for every reported number the sender knows,
    in sequence order; arrival times are on the receiver's clock (only differences matter)."""
    out = []
    for seq, arrival_us in fb.arrivals_us():
        sent = lookup(seq)
        if sent is None:
            continue
        out.append(make(sent[0], None if arrival_us is None else arrival_us / 1e6, sent[1]))
    return out


def split_estimate(target_bps: int, audio: int, video_needs: Sequence[int]) -> list[int]:
    """Each video consumer's share of ``target_bps`` after ``audio`` consumers took
    ``AUDIO_SHARE_BPS`` each; video shares are proportional to ``video_needs`` (what each
    consumer's best allowed layer sends; equal when unknown)."""
    rest = max(0, target_bps - AUDIO_SHARE_BPS * audio)
    if not video_needs:
        return []
    needs = [max(1, n) for n in video_needs]
    total = sum(needs)
    return [rest * n // total for n in needs]


class ArrivalRecorder:
    """Arrival times of a publisher's transport-wide sequence numbers, and the feedback about them."""

    __slots__ = ("c", "_times", "_seqs", "fb_count", "sent_feedback")

    def __init__(self) -> None:
        self.c = ffi.new("sk_arrivals *")
        """The ring, in C (``sk_arrivals``): a publisher's transport notes every packet's arrival there
        in its receive path in C (``sk_receive_rtp``), without Python."""
        lib.sk_arrivals_init(self.c)
        self._times = self.c.times
        """Arrival time in µs per slot."""
        self._seqs = self.c.seqs
        """Extended (unwrapped) sequence number per slot, -1: empty."""
        self.fb_count = 0
        self.sent_feedback = 0

    @property
    def ext_id(self) -> int:
        """The transport-cc id the publisher's packets carry (0: not negotiated, nothing recorded)."""
        return int(self.c.ext_id)

    @ext_id.setter
    def ext_id(self, value: int) -> None:
        self.c.ext_id = value

    @property
    def received(self) -> int:
        return int(self.c.received)

    @property
    def _highest(self) -> int:
        return int(self.c.highest)

    @property
    def _next(self) -> int:
        """First extended number not yet reported (-1: nothing received yet)."""
        return int(self.c.next)

    @_next.setter
    def _next(self, value: int) -> None:
        self.c.next = value

    @property
    def active(self) -> bool:
        """The publisher does send transport-wide sequence numbers."""
        return self.received > 0

    def record(self, plain: bytes, now: float) -> None:
        """Note the arrival of one plain RTP packet (the per-packet path: nothing is sent here).

        A duplicate keeps its first arrival time.  A late packet (reordered, or a retransmission
        of a number already reported lost) moves the next feedback's start back to it, as
        libwebrtc's receiver does: the publisher learns it did arrive; numbers between it and
        the newest are listed again with the same times (a sender ignores what it already
        matched).  (In C: ``sk_arrivals_record``; a publisher's transport calls it from its own
        receive path in C.)"""
        _record(self.c, plain, len(plain), now)

    def feedback(self, sender_ssrc: int, media_ssrc: int, now: float) -> list[bytes]:
        """The feedback packets for every number from the last one reported to the newest received
        (none if nothing new arrived), at most ``MAX_STATUSES`` numbers per packet; a number not
        received by now is reported lost (it may be reported again if it arrives late)."""
        start, end = self._next, self._highest + 1
        if start < 0 or end <= start:
            return []
        if end - start > MAX_PENDING:
            start = end - MAX_PENDING
        self._next = end
        packets: list[bytes] = []
        seqs, times = self._seqs, self._times
        while start < end:
            stop = min(end, start + MAX_STATUSES)
            arrivals: list[int | None] = []
            for ext in range(start, stop):
                slot = ext & (RING - 1)
                arrivals.append(times[slot] if seqs[slot] == ext else None)
            try:
                fb = build_feedback(sender_ssrc, media_ssrc, start, arrivals, self.fb_count)
            except ValueError:  # nothing received in this span, or arrivals too far apart for 16-bit deltas
                start = stop
                continue
            self.fb_count = (self.fb_count + 1) & 0xFF
            packets.append(fb.serialize())
            start = stop
        self.sent_feedback += len(packets)
        return packets
