"""Per-stream RTP statistics: what RTCP receiver reports and link-quality decisions are made of.

The SFU terminates RTCP on both sides.  Towards each publisher it is the
receiver and must send receiver reports (RFC 3550 §6.4.2) built from
:class:`ReceiveStats` — sequence validation and extended highest sequence
number (appendix A.1), cumulative and interval loss (A.3), interarrival jitter
(A.8) — and it also needs the incoming bitrate of each simulcast layer for the
video gate.  Towards each consumer it is the sender: :class:`SendStats` counts
what was sent (for sender reports) and reads the consumer's receiver reports
into RTT, loss and jitter — the signals of a weak rural link.

``update`` runs per packet: integer arithmetic on plain attributes, no
allocation.  Reports allocate (an :class:`aiortc.rtp.RtcpReceiverInfo`), but
only once per RTCP interval.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiortc.rtp import RtcpReceiverInfo, clamp_packets_lost

_SEQ_MOD = 1 << 16
MAX_DROPOUT = 3000
MAX_MISORDER = 100
BITRATE_WINDOW_S = 2.0
_SR_HISTORY = 8


class ReceiveStats:
    """Statistics of one incoming RTP stream (one SSRC), per RFC 3550 appendix A.

    Sequence validation follows A.1 without the probation period (packets are
    authenticated by SRTP, so a stray source cannot inject them): a jump beyond
    ``MAX_DROPOUT``/``MAX_MISORDER`` is ignored unless the next packet follows
    it, in which case the sequence is restarted.
    """

    __slots__ = (
        "_bad_seq",
        "_base_seq",
        "_bucket_bytes",
        "_bucket_start_s",
        "_cycles",
        "_expected_prior",
        "_first_arrival_s",
        "_has_prev_bucket",
        "_jitter_q4",
        "_lsr",
        "_max_seq",
        "_prev_bucket_bytes",
        "_received_prior",
        "_sr_arrival_s",
        "_started",
        "_transit",
        "clock_rate",
        "loss_fraction",
        "received",
        "ssrc",
    )

    def __init__(self, ssrc: int, clock_rate: int) -> None:
        self.ssrc = ssrc
        self.clock_rate = clock_rate
        self.received: int = 0
        """Packets received (duplicates included, as in A.3)."""
        self.loss_fraction: float = 0.0
        """Loss in the last report interval (0..1), set by :meth:`report_block`."""
        self._started = False
        self._base_seq = 0
        self._max_seq = 0
        self._cycles = 0
        self._bad_seq = -1
        self._expected_prior = 0
        self._received_prior = 0
        self._transit = 0
        self._jitter_q4 = 0
        """Jitter in clock-rate units × 16 (A.8 in integers)."""
        self._lsr = 0
        self._sr_arrival_s = 0.0
        self._bucket_start_s = 0.0
        self._bucket_bytes = 0
        self._prev_bucket_bytes = 0
        self._first_arrival_s = 0.0
        self._has_prev_bucket = False

    def _init_seq(self, seq: int) -> None:
        self._base_seq = seq
        self._max_seq = seq
        self._bad_seq = -1
        self._cycles = 0
        self._expected_prior = 0
        self._received_prior = 0
        self.received = 0

    def update(self, seq: int, ts: int, arrival_s: float, size: int) -> None:
        """Account one packet: sequence number, RTP timestamp, arrival time (s), size in bytes."""
        arrival = int(arrival_s * self.clock_rate + 0.5)
        if not self._started:
            self._started = True
            self._init_seq(seq)
            self._transit = arrival - ts
            self._first_arrival_s = arrival_s
            self._bucket_start_s = arrival_s
        else:
            udelta = (seq - self._max_seq) & 0xFFFF
            if udelta < MAX_DROPOUT:
                if seq < self._max_seq:
                    self._cycles += _SEQ_MOD
                self._max_seq = seq
            elif udelta <= _SEQ_MOD - MAX_MISORDER:
                if seq == self._bad_seq:
                    self._init_seq(seq)  # two sequential packets: the source restarted
                else:
                    self._bad_seq = (seq + 1) & 0xFFFF
                    return
            # else: duplicate or reordered packet, counted below
            transit = arrival - ts
            d = ((transit - self._transit + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            self._transit = transit
            if d < 0:
                d = -d
            self._jitter_q4 += d - ((self._jitter_q4 + 8) >> 4)
        self.received += 1
        self._roll(arrival_s)
        self._bucket_bytes += size

    def _roll(self, now_s: float) -> None:
        elapsed = now_s - self._bucket_start_s
        if elapsed >= BITRATE_WINDOW_S:
            if elapsed >= 2 * BITRATE_WINDOW_S:
                self._prev_bucket_bytes = 0
                self._bucket_start_s = now_s
            else:
                self._prev_bucket_bytes = self._bucket_bytes
                self._bucket_start_s += BITRATE_WINDOW_S
            self._bucket_bytes = 0
            self._has_prev_bucket = True

    @property
    def expected(self) -> int:
        """Packets expected from the first to the extended highest sequence number."""
        if not self._started:
            return 0
        return self._cycles + self._max_seq - self._base_seq + 1

    @property
    def lost(self) -> int:
        """Cumulative packets lost (negative when duplicates outnumber losses)."""
        return self.expected - self.received

    @property
    def extended_highest_seq(self) -> int:
        return self._cycles + self._max_seq

    @property
    def jitter_ms(self) -> float:
        """Interarrival jitter in milliseconds."""
        return (self._jitter_q4 >> 4) * 1000.0 / self.clock_rate

    def bitrate_bps(self, now_s: float) -> float:
        """Incoming bitrate over the last ~2 s.

        Two counters: the bytes of the current 2-s bucket and of the previous
        one, which is weighted by the part of it still inside the window.  During
        the first window the bytes are divided by the time since the first packet.
        """
        if not self._started:
            return 0.0
        self._roll(now_s)
        elapsed = now_s - self._bucket_start_s
        if not self._has_prev_bucket:
            span = max(now_s - self._first_arrival_s, 0.5)
            return self._bucket_bytes * 8 / span
        weight = 1.0 - elapsed / BITRATE_WINDOW_S
        return (self._bucket_bytes + self._prev_bucket_bytes * weight) * 8 / BITRATE_WINDOW_S

    def on_sender_report(self, ntp_timestamp: int, now_s: float) -> None:
        """Remember the publisher's last SR (64-bit NTP time) and when it arrived, for LSR/DLSR."""
        self._lsr = (ntp_timestamp >> 16) & 0xFFFFFFFF
        self._sr_arrival_s = now_s

    def report_block(self, now_s: float) -> RtcpReceiverInfo:
        """A receiver report block for this stream; starts a new loss interval.

        Before any packet was received, all counters are 0.
        """
        expected = self.expected
        expected_interval = expected - self._expected_prior
        received_interval = self.received - self._received_prior
        self._expected_prior = expected
        self._received_prior = self.received
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
            highest_sequence=self.extended_highest_seq & 0xFFFFFFFF if self._started else 0,
            jitter=self._jitter_q4 >> 4,
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
