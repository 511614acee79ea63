"""The SFU repairs its publishers' uplink losses: it NACKs the missing packets and forwards what comes back.

Unit tests drive ``NackGenerator`` with an explicit clock, and a real ``Producer``/``Consumer`` pair
whose consumer sends SRTP to a socket on 127.0.0.1 (``tests/media/test_forwarding.py``).  The end to
end test is an aiortc publisher and subscriber against a server the test starts, on 127.0.0.1 only;
the publisher's packets pass a filter below its SRTP that loses every tenth video packet on the way
to the SFU (and never a retransmission).
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
import tracemalloc
from typing import Any

import pylibsrtp
from aiortc.rtp import RTCP_RTPFB_NACK, RtcpPacket, RtcpRtpfbPacket

from media.nack_generator import (
    CACHE_ONLY,
    DEFAULT_RTT_S,
    DROP,
    FORWARD,
    FORWARD_BEHIND,
    MAX_AGE_S,
    MAX_GAP,
    MAX_NACK_ITEMS,
    MAX_PENDING,
    MAX_RETRIES,
    MIN_RETRY_S,
    REORDER_WAIT_S,
    SCHEDULE,
    NackGenerator,
    nack_round,
    pack_nack,
)
from media.producer import Producer
from media.rtp import rtx_wrap
from media.transport import WebRtcTransport
from tests.media.sfu_harness import (  # noqa: F401 - the fixtures of the SFU tests
    POLICY,
    Lesson,
    db_url,
    lesson,
    link_samples,
    loopback_clients,
    media_workers,
    settings,
)
from tests.media.sfu_helpers import RED, ColorTrack, close_to, frames
from tests.media.test_forwarding import KEY, FakeTransport, make_consumer, make_producer, rtp
from tests.utils.wait import until


def feed(gen: NackGenerator, seqs: list[int], now: float, rtx: bool = False) -> list[int]:
    return [gen.update(s & 0xFFFF, now, rtx) for s in seqs]


def nacked(data: bytes) -> list[int]:
    """The sequence numbers of an RTCP generic NACK, as a publisher (aiortc) reads them."""
    (packet,) = RtcpPacket.parse(data)
    assert isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK
    return [s & 0xFFFF for s in packet.lost]


# ------------------------------------------------------------------------------------------ unit


def test_a_gap_is_nacked_once_the_reorder_wait_is_over() -> None:
    gen = NackGenerator()
    assert feed(gen, [100, 101, 102], 0.0) == [FORWARD] * 3
    assert gen.update(106, 0.1) == SCHEDULE
    assert gen.pending == 3 and gen.next_due == 0.1 + REORDER_WAIT_S
    assert gen.due(0.1) == []  # not yet: 103-105 may only be reordered
    assert gen.due(0.1 + REORDER_WAIT_S) == [103, 104, 105]
    assert gen.nacks_sent == 3
    assert nacked(pack_nack(1, 2, [103, 104, 105])) == [103, 104, 105]


def test_a_packet_reordered_within_the_wait_is_not_nacked() -> None:
    gen = NackGenerator()
    feed(gen, [10, 11, 13], 1.0)
    assert gen.update(12, 1.0 + REORDER_WAIT_S / 2) == FORWARD
    assert gen.pending == 0 and gen.recovered == 1
    assert gen.due(1.1) == [] and gen.nacks_sent == 0


def test_a_missing_packet_is_nacked_again_every_rtt_and_the_rtt_is_learnt_from_the_rtx() -> None:
    gen = NackGenerator()
    feed(gen, [1, 3], 0.0)
    t = REORDER_WAIT_S
    assert gen.due(t) == [2]
    # the RTT is unknown: the next try after the default 100 ms
    assert gen.due(t + DEFAULT_RTT_S - 0.001) == []
    assert gen.due(t + DEFAULT_RTT_S) == [2]
    # the RTX answering the first NACK arrives 300 ms after it: the RTT
    assert gen.update(2, t + 0.3, rtx=True) == FORWARD
    assert gen.rtt_s is not None and abs(gen.rtt_s - 0.3) < 1e-9 and gen.recovered == 1
    # the next loss is asked for again only after 300 ms
    feed(gen, [4, 6], 1.0)
    assert gen.due(1.0 + t) == [5]
    assert gen.due(1.0 + t + 0.29) == []
    assert gen.due(1.0 + t + 0.3) == [5]
    assert gen.nacks_sent == 4


def test_a_near_rtt_still_waits_the_minimum_between_tries() -> None:
    gen = NackGenerator()
    feed(gen, [1, 3], 0.0)
    gen.due(REORDER_WAIT_S)
    gen.update(2, REORDER_WAIT_S + 0.001, rtx=True)  # 1 ms RTT on a LAN
    feed(gen, [4, 6], 1.0)
    assert gen.due(1.0 + REORDER_WAIT_S) == [5]
    assert gen.due(1.0 + REORDER_WAIT_S + MIN_RETRY_S / 2) == []
    assert gen.due(1.0 + REORDER_WAIT_S + MIN_RETRY_S) == [5]


def test_a_recovered_packet_is_no_longer_nacked_and_a_second_copy_is_dropped() -> None:
    gen = NackGenerator()
    feed(gen, [1, 5], 0.0)
    assert gen.due(0.02) == [2, 3, 4]
    assert gen.update(3, 0.05, rtx=True) == FORWARD
    assert gen.update(3, 0.06, rtx=True) == DROP  # the publisher answered a repeated NACK too
    assert gen.update(4, 0.06) == FORWARD  # late, not by RTX
    assert gen.recovered == 2 and gen.pending == 1
    assert gen.due(0.2) == [2]
    # an RTX of a packet that was never missing (a bandwidth probe re-sending old media)
    assert gen.update(1, 0.21, rtx=True) == DROP


def test_sequence_numbers_wrap_at_65535() -> None:
    gen = NackGenerator()
    feed(gen, [65530, 65531, 65532, 65533], 0.0)
    assert gen.update(2, 0.01) == SCHEDULE
    assert gen.pending == 4  # 65534, 65535, 0, 1
    lost = gen.due(0.03)
    assert lost == [65534, 65535, 0, 1]
    data = pack_nack(7, 8, lost)
    assert len(data) == 16, "one PID and its bitmask cover the wrap"
    assert struct.unpack_from(">HH", data, 12) == (65534, 0b111)
    assert nacked(data) == lost
    assert gen.update(0, 0.05, rtx=True) == FORWARD and gen.is_missing(65535) and not gen.is_missing(0)
    assert gen.due(0.2) == [65534, 65535, 1]


def test_a_source_that_restarts_far_behind_is_followed_afresh() -> None:
    gen = NackGenerator()
    feed(gen, [30000, 30002], 0.0)
    assert gen.pending == 1
    assert feed(gen, [20000, 20001, 20003], 0.1) == [FORWARD, FORWARD, SCHEDULE]
    assert gen.highest == 20003 and gen.pending == 1 and gen.due(0.2) == [20002]


def test_a_gap_too_large_to_nack_asks_for_a_keyframe_instead() -> None:
    gen = NackGenerator()
    feed(gen, [100], 0.0)
    assert gen.update(100 + MAX_GAP + 2, 0.1) == SCHEDULE
    assert gen.keyframe_wanted and gen.keyframes == 1 and gen.pending == 0
    assert gen.due(1.0) == []
    # a gap of exactly MAX_GAP is still NACKed
    gen2 = NackGenerator()
    feed(gen2, [0, MAX_GAP + 1], 0.0)
    assert gen2.pending == MAX_GAP and not gen2.keyframe_wanted


class _Stream:
    def __init__(self, ssrc: int | None, nack: NackGenerator | None) -> None:
        self.ssrc, self.nack, self.keyframes = ssrc, nack, 0

    def request_keyframe(self, now: float) -> None:
        self.keyframes += 1


def test_one_round_puts_every_streams_due_nacks_in_one_compound_and_says_when_to_look_again() -> None:
    a, b, idle, huge = NackGenerator(), NackGenerator(), NackGenerator(), NackGenerator()
    feed(a, [10, 12], 0.0)
    feed(b, [500, 503], 0.0)
    feed(idle, [1, 2, 3], 0.0)
    feed(huge, [100], 0.0)
    huge.update(100 + MAX_GAP + 5, 0.0)
    streams = [_Stream(1, a), _Stream(2, b), _Stream(3, idle), _Stream(4, huge), _Stream(None, NackGenerator()),
               _Stream(5, None)]
    rtcp, wake = nack_round(streams, 99, REORDER_WAIT_S / 2)
    assert rtcp == b"" and wake == a.next_due and REORDER_WAIT_S / 2 < wake  # too early: nothing sent
    assert streams[3].keyframes == 1 and not huge.keyframe_wanted  # the gap too large for NACKs
    rtcp, wake = nack_round(streams, 99, 0.05)
    nacks = [(p.media_ssrc, sorted(s & 0xFFFF for s in p.lost)) for p in RtcpPacket.parse(rtcp)]
    assert nacks == [(1, [11]), (2, [501, 502])] and wake == min(a.next_due, b.next_due) > 0.05
    assert streams[3].keyframes == 1
    feed(a, [11], 0.06)
    feed(b, [501, 502], 0.06)
    assert nack_round(streams, 99, 1.0) == (b"", float("inf"))


def test_more_missing_than_the_cap_asks_for_a_keyframe_and_forgets_them() -> None:
    gen = NackGenerator()
    seq, now = 0, 0.0
    feed(gen, [seq], now)
    while gen.keyframes == 0:  # gaps of 100, none repaired, within a second
        seq += 101
        now += 0.001
        gen.update(seq & 0xFFFF, now)
        assert gen.pending <= MAX_PENDING
    assert gen.keyframe_wanted and gen.pending == 0 and seq == 11 * 101


def test_tries_and_age_are_capped() -> None:
    def with_rtt(rtt: float) -> NackGenerator:
        gen = NackGenerator()
        feed(gen, [1, 3], 0.0)
        gen.due(REORDER_WAIT_S)
        gen.update(2, REORDER_WAIT_S + rtt, rtx=True)
        assert gen.rtt_s is not None and abs(gen.rtt_s - rtt) < 1e-9
        return gen

    def tries(gen: NackGenerator, start: float) -> int:
        count, t = 0, start
        while t < start + 5.0:
            count += len(gen.due(t))
            t += 0.001
        return count

    # a far publisher (300 ms): NACKed at 15, 315, 615 and 915 ms, then a keyframe is the cheaper repair
    gen = with_rtt(0.3)
    feed(gen, [4, 6], 1.0)
    assert tries(gen, 1.0) == 4 and gen.given_up == 1 and not gen.is_missing(5)
    assert 1.0 + MAX_AGE_S < 1.0 + REORDER_WAIT_S + 4 * 0.3
    # a near one (20 ms): ten tries, then it is given up
    gen = with_rtt(0.02)
    feed(gen, [4, 6], 1.0)
    assert tries(gen, 1.0) == MAX_RETRIES and gen.pending == 0 and gen.given_up == 1


def test_one_tick_nacks_at_most_max_nack_items() -> None:
    gen = NackGenerator()
    seqs = [0] + list(range(2, 2 * (MAX_NACK_ITEMS + 50), 2))  # every other packet lost
    feed(gen, seqs, 0.0)
    first = gen.due(0.05)
    assert len(first) == MAX_NACK_ITEMS and first == list(range(1, 2 * MAX_NACK_ITEMS, 2))
    assert gen.next_due <= 0.05 + MIN_RETRY_S  # the rest soon
    assert gen.due(0.06)[:3] == [2 * MAX_NACK_ITEMS + 1, 2 * MAX_NACK_ITEMS + 3, 2 * MAX_NACK_ITEMS + 5]
    # one RTCP packet of 256 scattered sequence numbers (one FCI each at most) fits an MTU
    assert len(pack_nack(1, 2, first)) <= 12 + 4 * MAX_NACK_ITEMS


def test_a_packet_recovered_far_behind_is_cached_not_forwarded() -> None:
    gen = NackGenerator()
    feed(gen, [0, 2], 0.0)
    feed(gen, list(range(3, 3 + FORWARD_BEHIND)), 0.1)
    assert gen.update(1, 0.2, rtx=True) == CACHE_ONLY and gen.recovered == 1


def test_in_order_packets_allocate_nothing() -> None:
    gen = NackGenerator()
    feed(gen, [0], 0.0)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for s in range(1, 20001):
            gen.update(s & 0xFFFF, s * 0.001)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert after - before < 1024, after - before
    assert gen.pending == 0 and gen.highest == 20000


def test_a_bad_nack_is_refused() -> None:
    try:
        pack_nack(1, 2, [])
    except ValueError:
        pass
    else:
        raise AssertionError("an empty NACK was packed")
    try:
        NackGenerator(size=1000)
    except ValueError:
        pass
    else:
        raise AssertionError("a ring that is not a power of two was accepted")


# -------------------------------------------------------------------------- producer and consumer


class NackingTransport(FakeTransport):
    def __init__(self) -> None:
        super().__init__("pub")
        self.due: list[float] = []

    def nack_due(self, now: float) -> None:
        self.due.append(now)


def test_the_stream_unwraps_the_publishers_rtx_and_forwards_the_original() -> None:
    producer, _ = make_producer()
    transport = NackingTransport()
    producer.transport = transport  # type: ignore[assignment]
    stream = producer.streams[0]
    consumer = make_consumer()
    consumer.bind(producer, 0.0)
    packets = {seq: rtp(seq, 9000 * seq, 1000, KEY + bytes([seq]) * 20)
               for seq in range(1, 6)}
    for seq in (1, 2, 4, 5):
        stream.receive(packets[seq], 1.0 + seq * 0.01)
    assert transport.due == [1.04] and stream.nack is not None and stream.nack.is_missing(3)
    assert stream.cache is not None and stream.cache.get(3, 1.1) is None
    # the publisher's RTX of 3 (RFC 4588: its own SSRC, payload type and sequence number)
    retransmission = rtx_wrap(packets[3], 101, 5555, 77)
    stream.receive(retransmission, 1.1)
    assert stream.nack.recovered == 1 and not stream.nack.is_missing(3)
    assert stream.cache.get(3, 1.1) == packets[3]
    sent = consumer.transport.capture.sent  # type: ignore[attr-defined]
    assert [struct.unpack_from(">H", p, 2)[0] for p in sent][-1] == struct.unpack_from(">H", sent[1], 2)[0] + 1
    assert sent[-1].endswith(bytes([3]) * 20) and len(sent) == 5
    # a second answer to a repeated NACK is not forwarded again
    stream.receive(rtx_wrap(packets[3], 101, 5555, 78), 1.12)
    assert len(consumer.transport.capture.sent) == 5  # type: ignore[attr-defined]


def test_a_subscribers_nack_for_a_packet_being_repaired_upstream_asks_no_keyframe() -> None:
    producer, _ = make_producer()
    transport = NackingTransport()
    producer.transport = transport  # type: ignore[assignment]
    stream = producer.streams[0]
    consumer = make_consumer()
    consumer.bind(producer, 0.0)
    key = KEY + b"k" * 20
    for seq in (1, 2, 4):
        stream.receive(rtp(seq, 9000 * seq, 1000, key), 1.0 + seq * 0.01)
    sent = consumer.transport.capture.sent  # type: ignore[attr-defined]
    plis = len(transport.plis)
    missing = (struct.unpack_from(">H", sent[1], 2)[0] + 1) & 0xFFFF
    consumer.on_nack([missing], 1.05)
    assert len(transport.plis) == plis and consumer.nack_keyframes == 0 and consumer.nack_misses == 0
    # once the SFU gave up on it, the subscriber's NACK asks for a keyframe as before
    assert stream.nack is not None
    for t in (1.1, 1.5, 2.5):
        stream.nack.due(t)
    consumer.on_nack([missing], 2.6)
    assert consumer.nack_keyframes == 1 and len(transport.plis) == plis + 1


# ---------------------------------------------------------------------------------------- end to end


class UplinkFilter:
    """The network between a publisher's aiortc and the SFU, below its SRTP: every ``drop_every``-th
    video packet is lost on the way up (retransmissions never are); records the video sequence
    numbers sent and the retransmissions."""

    def __init__(self, pc: Any, drop_every: int) -> None:
        self.drop_every = drop_every
        self.video = self.dropped = self.rtx = 0
        self.lost: list[int] = []
        self.video_pts: set[int] = set()
        self.rtx_pts: set[int] = set()
        for t in pc.getTransceivers():
            for codec in getattr(t, "_codecs", []):
                mime = codec.mimeType.lower()
                if mime == "video/rtx":
                    self.rtx_pts.add(codec.payloadType)
                elif mime.startswith("video/"):
                    self.video_pts.add(codec.payloadType)
        dtls = pc.getTransceivers()[0].sender.transport
        self._send = dtls._send_rtp
        dtls._send_rtp = self._on_send

    async def _on_send(self, data: bytes) -> None:
        if len(data) >= 12 and not 191 < data[1] < 224:  # RTP, not RTCP
            pt = data[1] & 0x7F
            if pt in self.rtx_pts:
                self.rtx += 1
            elif pt in self.video_pts:
                self.video += 1
                if self.drop_every and self.video % self.drop_every == 0:
                    self.dropped += 1
                    self.lost.append(struct.unpack_from(">H", data, 2)[0])
                    return
        await self._send(data)


class SubscriberTap:
    """The video sequence numbers a subscriber's aiortc receives (the original ones, whether sent
    plainly or, on its own NACK, as RTX), below its SRTP."""

    def __init__(self, pc: Any) -> None:
        self.seqs: list[int] = []
        self.rtx = 0
        self.video_pts: set[int] = set()
        self.rtx_pts: set[int] = set()
        for t in pc.getTransceivers():
            for codec in getattr(t, "_codecs", []):
                mime = codec.mimeType.lower()
                if mime == "video/rtx":
                    self.rtx_pts.add(codec.payloadType)
                elif mime.startswith("video/"):
                    self.video_pts.add(codec.payloadType)
        dtls = pc.getTransceivers()[0].receiver.transport
        self._in = dtls._handle_rtp_data
        dtls._handle_rtp_data = self._on_rtp

    async def _on_rtp(self, data: bytes, arrival_time_ms: int) -> None:
        pt = data[1] & 0x7F
        if pt in self.video_pts:
            self.seqs.append(struct.unpack_from(">H", data, 2)[0])
        elif pt in self.rtx_pts:
            self.rtx += 1
        await self._in(data, arrival_time_ms)


def test_a_lossy_uplink_is_repaired_by_the_sfu_before_the_subscribers_notice(lesson: Lesson, app: Any) -> None:
    w = lesson.world
    samples = link_samples(app)  # the worker's link samples, every 2 s

    async def scenario() -> None:
        main = await lesson.join(w.teacher)
        rural = await lesson.join(w.terminal_recv)
        await main.publish({"camera": ColorTrack(RED)})
        await rural.subscribe([{"participant_id": main.participant_id, "source": "camera"}])
        track = await rural.track(main.participant_id, "camera")
        await frames(track, 10)
        assert main.publisher is not None and rural.subscriber is not None
        uplink = UplinkFilter(main.publisher, drop_every=10)
        assert uplink.rtx_pts, "the SFU's answer accepts the publisher's RTX"
        tap = SubscriberTap(rural.subscriber)
        seen = await frames(track, 90, timeout=30)
        await until("the publisher sent too little", lambda: uplink.dropped >= 30, 30)
        assert all(close_to(x, RED) for x in seen), seen
        # every packet the publisher sent reached the subscriber, the lost ones resent by the
        # publisher on the SFU's NACK and forwarded as the originals (all but the newest 60, whose
        # repairs may still be on their way on a loaded machine: a repair arrives after its successors)
        got = {d for d in ((s - tap.seqs[0]) & 0xFFFF for s in tap.seqs) if d < 30000}
        missing = [s for s in range(max(got) - 60) if s not in got]
        assert max(got) > 200 and not missing, missing[:20]
        assert uplink.rtx >= uplink.dropped - 5, (uplink.rtx, uplink.dropped)
        assert tap.rtx <= uplink.dropped // 2, "the subscriber had to ask the SFU for most repairs"
        # the publisher's link sample shows the repair
        seen_samples = len(samples)
        await until("no link sample", lambda: any(x["participant_id"] == main.participant_id and x["direction"] == "send"
                                                 for x in samples[seen_samples:]), 10)
        sample = next(x for x in reversed(samples) if x["participant_id"] == main.participant_id
                      and x["direction"] == "send")
        assert sample["nacks_sent"] >= uplink.dropped - 5 and sample["recovered"] >= uplink.dropped - 5, (
            sample, uplink.dropped)
        assert sample["nacks_sent"] <= 2 * uplink.dropped, (sample, uplink.dropped)

    lesson.play(scenario)


# ------------------------------------------------------------------------------------------ transport


def test_the_send_transport_batches_the_nacks_of_its_streams_on_a_timer() -> None:
    async def main() -> None:
        transport = WebRtcTransport("t", "p", "send", POLICY, on_state=lambda t, s: None)
        key = os.urandom(30)
        profile = pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80
        rx = pylibsrtp.Session(pylibsrtp.Policy(key=key, srtp_profile=profile,
                                                ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))
        tx = pylibsrtp.Session(pylibsrtp.Policy(key=key, srtp_profile=profile,
                                                ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
        publisher = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        publisher.bind(("127.0.0.1", 0))
        publisher.setblocking(False)
        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        out.bind(("127.0.0.1", 0))
        transport.writer.open(tx, out, publisher.getsockname())
        producer = Producer("p:camera", transport, kind="video", mid="0", source="camera", mime="video/VP8",
                            clock_rate=90000, payload_type=100, rtx_payload_type=101, extmap={},
                            layers=[("l", 1000), ("h", 1001)])
        low, high = producer.streams
        transport.ssrc_table.update({1000: low, 1001: high, 2000: low})  # 2000: the low layer's RTX
        received: list[tuple[float, list[tuple[int, list[int]]]]] = []

        async def next_rtcp(timeout: float) -> bool:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    data = publisher.recv(2048)
                except BlockingIOError:
                    await asyncio.sleep(0.002)
                    continue
                packets = RtcpPacket.parse(rx.unprotect_rtcp(data))
                received.append((time.monotonic(), [(p.media_ssrc, [s & 0xFFFF for s in p.lost])
                                                    for p in packets if isinstance(p, RtcpRtpfbPacket)]))
                return True
            return False

        try:
            pkt = {(ssrc, seq): rtp(seq, 3000 * seq, ssrc, KEY) for ssrc in (1000, 1001) for seq in range(1, 5)}
            for seq in (1, 2, 4):
                low.receive(pkt[1000, seq], time.monotonic())
            for seq in (1, 3, 4):
                high.receive(pkt[1001, seq], time.monotonic())
            gap = time.monotonic()
            assert await next_rtcp(2.0), "no NACK"
            at, nacks = received[-1]
            assert sorted(nacks) == [(1000, [3]), (1001, [2])], "both layers' NACKs in one RTCP packet"
            assert REORDER_WAIT_S - 0.002 <= at - gap, at - gap
            # nothing more until the retry, 100 ms later (the RTT is not known yet)
            assert await next_rtcp(2.0), "no retry"
            retry_at, nacks = received[-1]
            # (timed from the gap, not from when this test read the first NACK: a loaded machine may read
            # it late, with the retry already waiting behind it)
            assert sorted(nacks) == [(1000, [3]), (1001, [2])]
            assert retry_at - gap >= REORDER_WAIT_S + DEFAULT_RTT_S - 0.005, (retry_at - gap, at - gap)
            # the low layer's RTX arrives (its own SSRC, routed to the stream it repairs); the high
            # layer's original comes late: nothing is NACKed any more
            transport.ssrc_table[2000].receive(rtx_wrap(pkt[1000, 3], 101, 2000, 1), time.monotonic())
            high.receive(pkt[1001, 2], time.monotonic())
            while True:  # a retry sent before these arrived (the test read the last one late) is no fault
                try:
                    publisher.recv(2048)
                except BlockingIOError:
                    break
            assert low.nack is not None and high.nack is not None
            assert low.nack.recovered == 1 and high.nack.recovered == 1 and low.nack.rtt_s is not None
            assert not await next_rtcp(0.4), received[-1]
            assert transport.sample(time.monotonic())["recovered"] == 2
            assert transport.sample(time.monotonic())["nacks_sent"] == 4
        finally:
            await transport.close()
            publisher.close()
            out.close()

    asyncio.run(main())
