"""Per-stream RTP statistics: what RTCP receiver reports and link-quality decisions are made of.

The SFU terminates RTCP on both sides.  Towards each publisher it is the
receiver and must send receiver reports (RFC 3550 §6.4.2) built from
:class:`ReceiveStats` — sequence validation and extended highest sequence
number (appendix A.1), cumulative and interval loss (A.3), interarrival jitter
(A.8) — and it also needs the incoming bitrate of each simulcast layer for the
video gate.  Towards each consumer it is the sender: :class:`SendStats` counts
what was sent (for sender reports) and reads the consumer's receiver reports
into RTT, loss and jitter — the signals of a weak rural link.

``update`` runs per packet, in C (``sk_rstats_update``): the in-order receive path of
``media/fastpath.c`` calls it without Python, Python's own path through :meth:`ReceiveStats.update`.  Reports allocate (an :class:`aiortc.rtp.RtcpReceiverInfo`), but
only once per RTCP interval.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiortc.rtp import RtcpReceiverInfo, clamp_packets_lost

from media._fastpath import ffi, lib

_update = lib.sk_rstats_update
_roll = lib.sk_rstats_roll

MAX_DROPOUT = 3000
MAX_MISORDER = 100
"""(``SK_STATS_MAX_DROPOUT``/``SK_STATS_MAX_MISORDER`` in ``media/fastpath.c``, which applies them.)"""
BITRATE_WINDOW_S = 2.0
_SR_HISTORY = 8


class ReceiveStats:
    """Statistics of one incoming RTP stream (one SSRC), per RFC 3550 appendix A.

    Sequence validation follows A.1 without the probation period (packets are
    authenticated by SRTP, so a stray source cannot inject them): a jump beyond
    ``MAX_DROPOUT``/``MAX_MISORDER`` is ignored unless the next packet follows
    it, in which case the sequence is restarted.

    The counters live in a C struct (``sk_rstats``, ``media/fastpath.c``): a producer stream's
    in-order packets are counted there by the C receive path without coming to Python; ``c``
    is that struct when the stream owns it (``owner`` keeps it alive), else one of its own.
    """

    __slots__ = ("_c", "_lsr", "_owner", "_sr_arrival_s", "loss_fraction", "ssrc")

    def __init__(self, ssrc: int, clock_rate: int, c: Any = None, owner: Any = None) -> None:
        self.ssrc = ssrc
        if c is None:
            c = owner = ffi.new("sk_rstats *")
        self._c = c
        self._owner = owner
        c.clock_rate = clock_rate
        c.bad_seq = -1
        self.loss_fraction: float = 0.0
        """Loss in the last report interval (0..1), set by :meth:`report_block`."""
        self._lsr = 0
        self._sr_arrival_s = 0.0

    @property
    def clock_rate(self) -> int:
        return int(self._c.clock_rate)

    @property
    def received(self) -> int:
        """Packets received (duplicates included, as in A.3)."""
        return int(self._c.received)

    @received.setter
    def received(self, value: int) -> None:
        self._c.received = value

    def update(self, seq: int, ts: int, arrival_s: float, size: int) -> None:
        """Account one packet: sequence number, RTP timestamp, arrival time (s), size in bytes."""
        _update(self._c, seq, ts, arrival_s, size)

    @property
    def expected(self) -> int:
        """Packets expected from the first to the extended highest sequence number."""
        c = self._c
        if not c.started:
            return 0
        return int(c.cycles) + c.max_seq - c.base_seq + 1

    @property
    def lost(self) -> int:
        """Cumulative packets lost (negative when duplicates outnumber losses)."""
        return self.expected - self.received

    @property
    def extended_highest_seq(self) -> int:
        return int(self._c.cycles) + self._c.max_seq

    @property
    def jitter_ms(self) -> float:
        """Interarrival jitter in milliseconds."""
        c = self._c
        return (int(c.jitter_q4) >> 4) * 1000.0 / c.clock_rate

    def bitrate_bps(self, now_s: float) -> float:
        """Incoming bitrate over the last ~2 s.

        Two counters: the bytes of the current 2-s bucket and of the previous
        one, which is weighted by the part of it still inside the window.  During
        the first window the bytes are divided by the time since the first packet.
        """
        c = self._c
        if not c.started:
            return 0.0
        _roll(c, now_s)
        elapsed = now_s - c.bucket_start_s
        if not c.has_prev_bucket:
            span = max(now_s - c.first_arrival_s, 0.5)
            return c.bucket_bytes * 8 / span
        weight = 1.0 - elapsed / BITRATE_WINDOW_S
        return (c.bucket_bytes + c.prev_bucket_bytes * weight) * 8 / BITRATE_WINDOW_S

    def on_sender_report(self, ntp_timestamp: int, now_s: float) -> None:
        """Remember the publisher's last SR (64-bit NTP time) and when it arrived, for LSR/DLSR."""
        self._lsr = (ntp_timestamp >> 16) & 0xFFFFFFFF
        self._sr_arrival_s = now_s

    def report_block(self, now_s: float) -> RtcpReceiverInfo:
        """A receiver report block for this stream; starts a new loss interval.

        Before any packet was received, all counters are 0.
        """
        c = self._c
        expected = self.expected
        received = self.received
        expected_interval = expected - c.expected_prior
        received_interval = received - c.received_prior
        c.expected_prior = expected
        c.received_prior = received
        lost_interval = expected_interval - received_interval
        if expected_interval <= 0 or lost_interval <= 0:
            fraction = 0
            self.loss_fraction = 0.0
        else:
            fraction = (lost_interval << 8) // expected_interval
            self.loss_fraction = lost_interval / expected_interval
        dlsr = int((now_s - self._sr_arrival_s) * 65536) if self._lsr else 0
        return RtcpReceiverInfo(
            ssrc=self.ssrc,
            fraction_lost=min(fraction, 255),
            packets_lost=clamp_packets_lost(self.lost),
            highest_sequence=self.extended_highest_seq & 0xFFFFFFFF if c.started else 0,
            jitter=int(c.jitter_q4) >> 4,
            lsr=self._lsr,
            dlsr=max(dlsr, 0) & 0xFFFFFFFF,
        )


class SendStats:
    """Statistics of one outgoing RTP stream: the SRs sent, and the consumer's view from its RRs.

    (The packet and octet counts an SR carries are kept by the fan-out loop, in the consumer's
    C sink: ``Consumer.sent_packets``.)"""

    __slots__ = (
        "_sr_mid",
        "_sr_next",
        "_sr_time",
        "clock_rate",
        "cumulative_lost",
        "jitter_ms",
        "loss_fraction",
        "rtt_ms",
        "ssrc",
    )

    def __init__(self, ssrc: int, clock_rate: int) -> None:
        self.ssrc = ssrc
        self.clock_rate = clock_rate
        self.rtt_ms: float | None = None
        """Round-trip time from the last RR whose LSR matched an SR we sent; None until then."""
        self.loss_fraction: float = 0.0
        self.jitter_ms: float = 0.0
        self.cumulative_lost: int = 0
        self._sr_mid: list[int] = [-1] * _SR_HISTORY
        self._sr_time: list[float] = [0.0] * _SR_HISTORY
        self._sr_next = 0

    def remember_sr(self, ntp_mid32: int, now_s: float) -> None:
        """Record an SR we sent: middle 32 bits of its NTP time and the local send time."""
        i = self._sr_next
        self._sr_mid[i] = ntp_mid32 & 0xFFFFFFFF
        self._sr_time[i] = now_s
        self._sr_next = (i + 1) % _SR_HISTORY

    def on_receiver_report(
        self, info: RtcpReceiverInfo, now_s: float, sr_history: Mapping[int, float] | None = None
    ) -> None:
        """Read a receiver report block about this stream.

        RTT = arrival − (send time of the SR named by LSR) − DLSR (RFC 3550
        §6.4.1).  The SR send time is looked up in ``sr_history`` (LSR → send
        time) when given, else among the SRs passed to :meth:`remember_sr`.
        An unknown or zero LSR leaves ``rtt_ms`` unchanged.
        """
        self.loss_fraction = info.fraction_lost / 256.0
        self.jitter_ms = info.jitter * 1000.0 / self.clock_rate
        self.cumulative_lost = info.packets_lost
        if not info.lsr:
            return
        sent_s: float | None = None
        if sr_history is not None:
            sent_s = sr_history.get(info.lsr)
        else:
            for i in range(_SR_HISTORY):
                if self._sr_mid[i] == info.lsr:
                    sent_s = self._sr_time[i]
                    break
        if sent_s is None:
            return
        rtt = now_s - sent_s - info.dlsr / 65536.0
        self.rtt_ms = max(rtt, 0.0) * 1000.0
