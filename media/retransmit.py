"""How the SFU repairs a subscriber's losses: when to resend, when a keyframe is cheaper, when silence was an outage.

A subscriber on a lossy, far link repeats its NACK for a packet about once per
round trip until the packet arrives (libwebrtc's NACK module), and aiortc
repeats the whole missing list on every new gap.  Answering each NACK with a
retransmission sends the same packet several times into a link that is
already losing (measured: 3-4× as many RTX as packets lost).  So, as in
libwebrtc's RTP sender and mediasoup's ``RtpStreamSend``:

* :class:`ResendLog` remembers, per consumer, when each outgoing sequence
  number was last resent; a packet is resent again only one RTT later (at
  least ``MIN_RESEND_INTERVAL_S``; ``DEFAULT_RTT_S`` while the RTT is unknown)
  and at most ``MAX_RESENDS`` times in all;
* a NACK that cannot be repaired (the packet is older than the cache, or from
  before a source or layer switch) or whose repair would cost more than a
  keyframe (more than ``KEYFRAME_CHEAPER_S`` of the stream's bytes) asks the
  publisher for a keyframe at once instead of waiting for the receiver's own
  keyframe request (once per ``NACK_KEYFRAME_INTERVAL_S`` per subscriber);
* :class:`RetransmitBudget` keeps retransmissions within a congested
  subscriber link: no more than the estimate leaves above the media being
  sent (at least ``RTX_FLOOR`` of the estimate), as libwebrtc's
  retransmission rate limiter bounds them by the target rate.  Under a cap, resending every
  NACKed packet into a full queue only multiplies the loss (measured: 3.7×
  as many RTX as packets lost at 300 kbit/s) and starves the audio;
* :class:`FeedbackWatch` notices that a subscriber's RTCP (receiver reports,
  NACK, REMB, transport-cc) resumes after a silence: the link was down both
  ways, so its decoder needs a keyframe.

This module only keeps state and decides; the consumer does the sending and
asking (``media/consumer.py``).  Nothing here allocates per packet or logs.
"""

from __future__ import annotations

MIN_RESEND_INTERVAL_S = 0.02
"""Floor of the resend interval (an RTT measured on a LAN is a millisecond)."""
DEFAULT_RTT_S = 0.1
"""Resend interval while no receiver report has given the subscriber's RTT yet."""
MAX_RESENDS = 10
"""A packet is retransmitted at most this many times to one subscriber."""
KEYFRAME_CHEAPER_S = 1.0
"""A NACK asking for more than this much of the stream's bytes is answered with a keyframe instead."""
NACK_KEYFRAME_INTERVAL_S = 1.0
"""One subscriber's NACKs ask for a keyframe at most this often: the one asked for is on its way, and a
congested link that NACKs everything would otherwise make the publisher send keyframes back to back
(for every subscriber of the layer)."""
RESEND_LOG_SIZE = 2048
"""Sequence numbers remembered per consumer (the packet cache holds as many)."""
BLACKOUT_S = 1.0
"""Feedback silent at least this long (and ``BLACKOUT_FACTOR`` × its longest recent interval) was an outage."""
BLACKOUT_FACTOR = 2.0
"""A subscriber that reports only once a second (receiver reports 0.5-1.5 s apart) must be silent
twice as long as its longest usual gap before the silence counts as an outage: a keyframe is not free."""
GAP_WINDOW_S = 10.0
"""The longest usual gap is the longest of the last 10-20 s (two windows)."""
WARMUP_GAPS = 3
"""Gaps seen before any silence may count as an outage (the usual interval is not known before)."""
RTX_FLOOR = 0.1
"""Retransmissions may always use this fraction of the estimate (a full link's worst holes still get mended)."""
RTX_BURST_S = 0.25
"""The budget saves up at most this long of its rate (a loss burst's NACKs come together)..."""
RTX_MIN_BURST_BITS = 2 * 1500 * 8
"""...and at least two full packets."""


def resend_interval(rtt_ms: float | None) -> float:
    """Seconds before the same packet may be resent to a subscriber whose RTT is ``rtt_ms`` (None: unknown)."""
    rtt = DEFAULT_RTT_S if rtt_ms is None else rtt_ms / 1000.0
    return rtt if rtt > MIN_RESEND_INTERVAL_S else MIN_RESEND_INTERVAL_S


class ResendLog:
    """When each outgoing sequence number was last resent, and how often: a ring keyed by ``seq & mask``.

    A slot belongs to one sequence number until a newer one with the same low bits
    takes it; the lists are allocated once.
    """

    __slots__ = ("_count", "_mask", "_seq", "_time")

    def __init__(self, size: int = RESEND_LOG_SIZE) -> None:
        if size < 1 or size > 65536 or size & (size - 1):
            raise ValueError("ResendLog size must be a power of two in 1..65536")
        self._mask = size - 1
        self._seq: list[int] = [-1] * size
        self._time: list[float] = [0.0] * size
        self._count: list[int] = [0] * size

    def allow(self, seq: int, now: float, interval: float) -> bool:
        """Record a resend of ``seq`` at ``now`` and return True, unless it was resent less than
        ``interval`` ago or ``MAX_RESENDS`` times already (then nothing is recorded)."""
        i = seq & self._mask
        if self._seq[i] == seq:
            if now - self._time[i] < interval or self._count[i] >= MAX_RESENDS:
                return False
            self._count[i] += 1
        else:
            self._seq[i] = seq
            self._count[i] = 1
        self._time[i] = now
        return True

    def resends(self, seq: int) -> int:
        """How many times ``seq`` was resent (0 if it is not remembered)."""
        i = seq & self._mask
        return self._count[i] if self._seq[i] == seq else 0

    def clear(self) -> None:
        self._seq[:] = [-1] * len(self._seq)


class RetransmitBudget:
    """Bits of retransmission one subscriber's link has room for: a token bucket.

    :meth:`set_rate` (about once a second, by the transport) refills it at the
    estimate less the media sent meanwhile, never below ``RTX_FLOOR`` × the
    estimate; with no estimate (``None``) nothing is limited.  :meth:`take`
    spends one packet's bits, or refuses it and counts the refusal.
    """

    __slots__ = ("rate_bps", "refused", "spent_bytes", "_at", "_bits")

    def __init__(self) -> None:
        self.rate_bps: float | None = None
        self.refused = 0
        self.spent_bytes = 0
        """Bytes retransmitted within the budget, in all (the transport tells media from repairs by it)."""
        self._bits = 0.0
        self._at = 0.0

    def set_rate(self, estimate_bps: float | None, media_bps: float, now: float) -> None:
        """The link's estimate and what the media (not the repairs) sent lately; None lifts the limit."""
        if estimate_bps is None or estimate_bps <= 0:
            self.rate_bps = None
            return
        self._refill(now)
        self.rate_bps = max(estimate_bps - max(media_bps, 0.0), RTX_FLOOR * estimate_bps)

    def take(self, size: int, now: float) -> bool:
        """True (and spent) when ``size`` bytes fit the budget now."""
        if self.rate_bps is None:
            self.spent_bytes += size
            return True
        self._refill(now)
        bits = size * 8
        if self._bits < bits:
            self.refused += 1
            return False
        self._bits -= bits
        self.spent_bytes += size
        return True

    def _refill(self, now: float) -> None:
        rate = self.rate_bps
        if rate is not None and now > self._at:
            bits = self._bits + (now - self._at) * rate
            cap = rate * RTX_BURST_S
            if cap < RTX_MIN_BURST_BITS:
                cap = RTX_MIN_BURST_BITS  # (at a few kbit/s a quarter second is less than one packet)
            self._bits = bits if bits < cap else cap
        if now > self._at:
            self._at = now


class FeedbackWatch:
    """The arrival times of one subscriber's RTCP: :meth:`heard` says when it ends an outage.

    The threshold is ``max(BLACKOUT_S, BLACKOUT_FACTOR × the longest usual gap)``, the longest
    usual gap being the longest one of the last one or two ``GAP_WINDOW_S`` windows that was
    not itself an outage.  A subscriber that sends transport-cc feedback every 100 ms is
    caught after 1 s of silence, one that only sends receiver reports once a second after
    about 3 s (its NACKs for the gap come first anyway, and ``Consumer.on_nack`` asks for the
    keyframe then).
    """

    __slots__ = ("_gaps", "_longest", "_longest_prev", "_window_start", "last", "outages")

    def __init__(self) -> None:
        self.last: float | None = None
        self.outages = 0
        self._gaps = 0
        self._longest = 0.0
        self._longest_prev = 0.0
        self._window_start = 0.0

    def threshold(self) -> float:
        longest = self._longest if self._longest > self._longest_prev else self._longest_prev
        return max(BLACKOUT_S, BLACKOUT_FACTOR * longest)

    def heard(self, now: float) -> bool:
        """Feedback arrived at ``now``; True when the silence before it was an outage."""
        last = self.last
        self.last = now
        if last is None:
            self._window_start = now
            return False
        gap = now - last
        outage = self._gaps >= WARMUP_GAPS and gap >= self.threshold()
        elapsed = now - self._window_start
        if elapsed >= GAP_WINDOW_S:
            self._longest_prev = self._longest if elapsed < 2 * GAP_WINDOW_S else 0.0
            self._longest = 0.0
            self._window_start = now
        if outage:
            self.outages += 1
            return True
        self._gaps += 1
        if gap > self._longest:
            self._longest = gap
        return False
