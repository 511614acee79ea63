"""Repairing a subscriber's losses: retransmissions stamped with the SFU's clock, at most once per RTT,
a keyframe when the cache cannot repair or a keyframe is cheaper, and a keyframe at once when a
subscriber comes back from an outage.

Unit tests drive a real ``Producer``/``Consumer`` whose transport writer sends SRTP to a socket on
127.0.0.1 (``tests/media/test_forwarding.py``); the end-to-end ones are aiortc clients against a
server the test starts, on 127.0.0.1 only, with a link filter below the subscriber's aiortc
(delay, loss, blackout) (``tests/media/sfu_harness.py`` fixtures).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import socket
import struct
import time
from typing import Any

import pylibsrtp
import pytest
from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket

from media.codecs import is_keyframe
from media.consumer import Consumer
from media.retransmit import MAX_RESENDS, FeedbackWatch, ResendLog, RetransmitBudget, resend_interval
from media.router import Router
from media.rtp import URI_ABS_SEND_TIME, URI_MID, find_extension, header_size, rtx_unwrap
from media.srtp import SrtpWriter
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
from tests.media.test_forwarding import DELTA, KEY, VP8, Capture, FakeTransport, make_producer, rtp
from tests.utils.wait import until


class LossyCapture(Capture):
    """What a subscriber receives over a link that loses the packets with the sequence numbers in
    ``lose`` (the first time each is sent): the sender allows a repeated index (as aiortc's SRTP
    session does), and the receiver never saw the lost original, so the resent one is not a replay."""

    def __init__(self, writer: SrtpWriter) -> None:
        key = os.urandom(30)
        profile = pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80
        self.rx = pylibsrtp.Session(pylibsrtp.Policy(key=key, srtp_profile=profile,
                                                     ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))
        tx_policy = pylibsrtp.Policy(key=key, srtp_profile=profile, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
        tx_policy.allow_repeat_tx = True
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)  # a burst of retransmissions
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.out.bind(("127.0.0.1", 0))
        self.out.setblocking(False)
        writer.open(pylibsrtp.Session(tx_policy), self.out, self.sock.getsockname())
        self._sent: list[bytes] = []
        self.lose: set[int] = set()

    @property
    def sent(self) -> list[bytes]:
        while True:
            try:
                data = self.sock.recv(2048)
            except BlockingIOError:
                return self._sent
            seq = struct.unpack_from(">H", data, 2)[0]
            if data[1] & 0x7F == 96 and seq in self.lose:
                self.lose.discard(seq)
                continue
            self._sent.append(self.rx.unprotect(data))


class LossyTransport(FakeTransport):
    def __init__(self) -> None:
        self.writer = SrtpWriter()
        self.capture = LossyCapture(self.writer)
        self.extension_ids = {1, 3}
        self.participant_id = "sub"
        self.plis: list[int] = []
        self.rtx_budget = RetransmitBudget()


def make_consumer(producer_id: str = "main:camera", *, kind: str = "video") -> Consumer:
    """A subscriber that negotiated RTX (pt 97), abs-send-time as id 3 and MID as id 1."""
    consumer = Consumer("c1", LossyTransport(), kind=kind, producer_id=producer_id)  # type: ignore[arg-type]
    consumer.configure(ssrc=0xC0FFEE, rtx_ssrc=0xC0FFEF, payload_type=96, rtx_payload_type=97,
                       clock_rate=90000 if kind == "video" else 48000, mime=VP8 if kind == "video" else "audio/opus",
                       extmap={URI_MID: 1, URI_ABS_SEND_TIME: 3})
    return consumer


def sent(consumer: Consumer) -> list[bytes]:
    return consumer.transport.capture.sent  # type: ignore[attr-defined]


def lose(consumer: Consumer, seqs: list[int]) -> None:
    consumer.transport.capture.lose.update(seqs)  # type: ignore[attr-defined]


AST_SCALE = 1 << 18
PUBLISHER_STAMP = b"\x12\x34\x56"


def ast_value(now: float) -> int:
    return int(now * AST_SCALE) & 0xFFFFFF


def out_seq(pkt: bytes) -> int:
    return struct.unpack_from(">H", pkt, 2)[0]


def publish(producer: Any, count: int, *, start: float = 0.0, interval: float = 0.01, size: int = 40,
            first_seq: int = 100) -> None:
    """``count`` packets of the producer's first layer, a keyframe first, stamped by the publisher."""
    stream = producer.streams[0]
    for i in range(count):
        head = KEY if i == 0 else DELTA
        stream.receive(rtp(first_seq + i, 3000 * i, 1000, head + bytes(size),
                           exts=((4, b"1"), (2, PUBLISHER_STAMP))), start + interval * i)
        if i % 32 == 31:
            for consumer in stream.consumers:  # read what arrived before the socket's buffer is full
                sent(consumer)


def rtx_sent(consumer: Consumer) -> list[bytes]:
    return [p for p in sent(consumer) if p[1] & 0x7F == 97]


def nack(consumer: Consumer, seqs: list[int], now: float) -> None:
    consumer.on_nack([s & 0xFFFF for s in seqs], now)


def measure_rtt(consumer: Consumer, rtt_s: float, now: float) -> None:
    """An SR goes out at ``now``, the subscriber's RR about it comes back ``rtt_s`` later."""
    ntp = 7 << 32
    assert consumer.sender_report(ntp=ntp, now=now) is not None
    consumer.on_receiver_report(RtcpReceiverInfo(ssrc=consumer.ssrc, fraction_lost=0, packets_lost=0,
                                                 highest_sequence=1, jitter=0, lsr=(ntp >> 16) & 0xFFFFFFFF,
                                                 dlsr=int(0.05 * 65536)), now + rtt_s + 0.05)
    assert consumer.stats.rtt_ms == pytest.approx(rtt_s * 1000, abs=1)


# ---------------------------------------------------------------------------------------- unit


def test_a_retransmission_carries_the_sfus_send_time_of_the_resend() -> None:
    producer, _ = make_producer()
    consumer = make_consumer()  # abs-send-time is id 2 at the publisher, id 3 at the subscriber
    consumer.bind(producer, 0.0)
    publish(producer, 5, start=1.0)
    forwarded = list(sent(consumer))
    assert len(forwarded) == 5
    # forwarded packets carry the SFU's clock when they were forwarded, not the publisher's stamp
    offset = find_extension(forwarded[2], 3)
    assert forwarded[2][offset:offset + 3] == ast_value(1.02).to_bytes(3, "big")
    nack(consumer, [out_seq(forwarded[2])], 1.3)
    (retransmission,) = rtx_sent(consumer)
    restored = rtx_unwrap(retransmission, 96, consumer.ssrc)
    assert out_seq(restored) == out_seq(forwarded[2])
    offset = find_extension(retransmission, 3)
    assert offset >= 0 and find_extension(retransmission, 2) == -1
    stamp = int.from_bytes(retransmission[offset:offset + 3], "big")
    assert stamp == ast_value(1.3), (stamp, ast_value(1.3))  # this send's time, not 1.02 nor the publisher's
    assert restored[header_size(restored):] == forwarded[2][header_size(forwarded[2]):]


def test_without_rtx_the_resent_packet_is_stamped_too_and_without_abs_send_time_nothing_is_added() -> None:
    producer, _ = make_producer()
    consumer = make_consumer()
    consumer.configure(ssrc=0xC0FFEE, rtx_ssrc=0, payload_type=96, rtx_payload_type=None, clock_rate=90000,
                       mime="video/VP8", extmap={URI_ABS_SEND_TIME: 3})
    consumer.bind(producer, 0.0)
    publish(producer, 2, start=1.0)
    lost = (out_seq(sent(consumer)[1]) + 1) & 0xFFFF
    lose(consumer, [lost])
    publish(producer, 1, start=1.02, first_seq=102)
    assert len(sent(consumer)) == 2
    nack(consumer, [lost], 2.5)
    resent = sent(consumer)[-1]
    assert len(sent(consumer)) == 3 and out_seq(resent) == lost and resent[1] & 0x7F == 96
    offset = find_extension(resent, 3)
    assert resent[offset:offset + 3] == ast_value(2.5).to_bytes(3, "big")

    plain = make_consumer()
    plain.configure(ssrc=0xBEEF, rtx_ssrc=0xBEF0, payload_type=96, rtx_payload_type=97, clock_rate=90000,
                    mime="video/VP8", extmap={})
    assert plain.ast_id == 0
    plain.bind(producer, 3.0)
    publish(producer, 3, start=3.0, first_seq=200)
    nack(plain, [out_seq(sent(plain)[1])], 3.5)
    assert plain.retransmitted == 1  # resent with what it has: no abs-send-time was negotiated


def test_the_same_nack_within_one_rtt_is_answered_once_and_again_after_an_rtt() -> None:
    producer, _ = make_producer()
    consumer = make_consumer()
    consumer.bind(producer, 0.0)
    publish(producer, 10, start=1.0)
    measure_rtt(consumer, 0.3, 1.1)
    lost = [out_seq(sent(consumer)[i]) for i in (3, 4)]
    for t in (1.5, 1.6, 1.7):  # a receiver 300 ms away repeats its NACK before the RTX can arrive
        nack(consumer, lost, t)
    assert len(rtx_sent(consumer)) == 2 and consumer.retransmitted == 2 and consumer.rtx_suppressed == 4
    nack(consumer, lost, 1.81)  # one RTT later: the retransmission was lost too, resend
    assert len(rtx_sent(consumer)) == 4
    assert [out_seq(rtx_unwrap(p, 96, consumer.ssrc)) for p in rtx_sent(consumer)] == lost + lost


def test_an_unknown_rtt_waits_100_ms_and_a_packet_is_resent_at_most_ten_times() -> None:
    assert resend_interval(None) == pytest.approx(0.1)
    assert resend_interval(1.0) == pytest.approx(0.02)  # a LAN: the 20 ms floor
    assert resend_interval(450.0) == pytest.approx(0.45)
    producer, _ = make_producer()
    consumer = make_consumer()
    consumer.bind(producer, 0.0)
    publish(producer, 4, start=1.0)
    lost = out_seq(sent(consumer)[2])
    nack(consumer, [lost], 1.1)
    nack(consumer, [lost], 1.19)
    assert consumer.retransmitted == 1
    for k in range(1, 20):
        nack(consumer, [lost], 1.1 + 0.11 * k)
    assert consumer.retransmitted == MAX_RESENDS and consumer.resends.resends(lost) == MAX_RESENDS


def test_the_resend_log_is_a_ring_keyed_by_sequence_number() -> None:
    log = ResendLog(16)
    assert log.allow(5, 0.0, 0.1) and not log.allow(5, 0.05, 0.1) and log.allow(5, 0.1, 0.1)
    assert log.allow(21, 0.11, 0.1)  # same slot, another packet: a first resend
    assert log.resends(5) == 0 and log.resends(21) == 1
    assert log.allow(65535, 0.0, 0.1) and log.allow(0, 0.0, 0.1)  # wrap-around
    with pytest.raises(ValueError):
        ResendLog(1000)


def test_more_than_64_lost_packets_are_all_repaired() -> None:
    producer, pub = make_producer()
    consumer = make_consumer()
    consumer.bind(producer, 0.0)
    publish(producer, 300, start=1.0, interval=0.005, size=900)  # 1.5 s at ~1.5 Mbit/s
    plis = len(pub.plis)
    lost = [out_seq(p) for p in sent(consumer)[100:200]]  # a burst of 100 packets, half a second
    nack(consumer, lost, 2.5)
    assert consumer.retransmitted == 100 and consumer.nack_misses == 0
    assert sorted(out_seq(rtx_unwrap(p, 96, consumer.ssrc)) for p in rtx_sent(consumer)) == sorted(lost)
    assert len(pub.plis) == plis  # repairable: no keyframe asked


def test_a_gap_of_more_than_a_second_of_the_stream_asks_for_a_keyframe_instead() -> None:
    producer, pub = make_producer()
    consumer = make_consumer()
    consumer.bind(producer, 0.0)
    publish(producer, 400, start=1.0, interval=0.005, size=900)
    plis = len(pub.plis)
    lost = [out_seq(p) for p in sent(consumer)[20:390]]  # 1.85 s of the stream: a keyframe is cheaper
    nack(consumer, lost, 3.0)
    assert rtx_sent(consumer) == [] and consumer.retransmitted == 0
    assert pub.plis[plis:] == [1000] and consumer.nack_keyframes == 1


def test_a_nack_beyond_the_cache_asks_for_a_keyframe_at_once() -> None:
    producer, pub = make_producer()
    consumer = make_consumer()
    consumer.bind(producer, 0.0)
    publish(producer, 10, start=1.0)
    plis = len(pub.plis)
    old = out_seq(sent(consumer)[5])
    nack(consumer, [old], 4.5)  # 3.5 s later: the cache keeps 3 s
    assert pub.plis[plis:] == [1000] and consumer.nack_misses == 1 and consumer.retransmitted == 0
    # a list with one packet gone and others in the cache: repair those, and ask for the keyframe
    publish(producer, 10, start=10.0, first_seq=110)
    plis = len(pub.plis)
    recent = [out_seq(p) for p in sent(consumer)[-4:]]
    nack(consumer, [old] + recent, 10.5)
    assert consumer.retransmitted == 4 and pub.plis[plis:] == [1000]
    # mostly gone: the keyframe alone (resending the rest would not make the picture decodable); within
    # a second of the last one it is not asked for again (it is on its way)
    plis = len(pub.plis)
    gone = [(old + k) & 0xFFFF for k in range(4)]
    nack(consumer, gone + [recent[0]], 11.0)
    assert consumer.retransmitted == 4 and len(pub.plis) == plis and consumer.nack_misses == 6
    nack(consumer, gone + [recent[0]], 11.6)
    assert consumer.retransmitted == 4 and len(pub.plis) == plis + 1 and consumer.nack_misses == 10


def test_a_nack_for_packets_from_before_a_layer_switch_asks_for_a_keyframe() -> None:
    producer, pub = make_producer(layers=2)
    consumer = make_consumer()
    consumer.bind(producer, 0.0)
    top = producer.streams[1]
    for i in range(5):
        top.receive(rtp(500 + i, 3000 * i, 1001, KEY if i == 0 else DELTA), 1.0 + 0.01 * i)
    before = out_seq(sent(consumer)[3])
    consumer._detach()
    consumer._attach(producer.streams[0], 1.1)
    for i in range(5):
        producer.streams[0].receive(rtp(500 + i, 3000 * i, 1000, KEY if i == 0 else DELTA), 1.2 + 0.01 * i)
    assert not consumer.waiting
    plis = len(pub.plis)
    nack(consumer, [before], 1.5)  # same source seq in the new layer's cache, but another picture
    assert consumer.retransmitted == 0 and consumer.nack_misses == 1 and pub.plis[plis:] == [1000]


def test_audio_is_retransmitted_unless_red_protects_it() -> None:
    producer, _ = make_producer(kind="audio", pid="main:microphone")
    consumer = make_consumer("main:microphone", kind="audio")
    consumer.bind(producer, 0.0)
    stream = producer.streams[0]
    for i in range(5):
        stream.receive(rtp(40 + i, 960 * i, 1000, b"opus" * 20), 1.0 + 0.02 * i)
    lost = out_seq(sent(consumer)[2])
    nack(consumer, [lost], 1.2)
    assert consumer.retransmitted == 1
    red = make_consumer("main:microphone", kind="audio")
    red.red_negotiated = True  # set where RED is negotiated: the next packets carry the lost frame
    red.bind(producer, 1.2)
    for i in range(5, 10):
        stream.receive(rtp(40 + i, 960 * i, 1000, b"opus" * 20), 1.2 + 0.02 * i)
    nack(red, [out_seq(sent(red)[2])], 1.5)
    assert red.retransmitted == 0 and len(sent(red)) == 5


def test_feedback_silence_is_an_outage_only_when_much_longer_than_usual() -> None:
    def every_100_ms() -> tuple[FeedbackWatch, float]:
        watch, t = FeedbackWatch(), 0.0
        for _ in range(50):
            t += 0.1
            assert not watch.heard(t)
        return watch, t

    watch, t = every_100_ms()
    assert not watch.heard(t + 0.9) and watch.outages == 0
    watch, t = every_100_ms()
    assert watch.heard(t + 1.05) and watch.outages == 1  # silent 1.05 s where it reported every 100 ms
    assert not watch.heard(t + 1.15)

    rng = random.Random(11)
    reports_only = FeedbackWatch()  # receiver reports 0.5-1.5 s apart (aiortc, Chromium without transport-cc)
    t = 0.0
    for _ in range(120):
        t += 0.5 + rng.random()
        assert not reports_only.heard(t)
    assert reports_only.outages == 0
    assert reports_only.heard(t + 3.2)


def test_a_subscriber_back_from_an_outage_gets_a_keyframe_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("media.transport.time.monotonic", lambda: clock[0])

    async def main() -> None:
        transport = WebRtcTransport("t", "p", "recv", POLICY, on_state=lambda t, s: None)
        try:
            producer, pub = make_producer()
            consumer = make_consumer()
            consumer.bind(producer, clock[0])
            publish(producer, 3, start=clock[0])
            assert not consumer.waiting
            transport.consumers[consumer.consumer_id] = consumer
            transport.consumers_by_ssrc[consumer.ssrc] = consumer
            report = bytes(RtcpRrPacket(ssrc=5, reports=[]))
            for _ in range(30):  # transport-cc-like feedback every 100 ms
                clock[0] += 0.1
                transport._handle_rtcp(report)
            plis = len(pub.plis)
            clock[0] += 0.45
            transport._handle_rtcp(report)
            assert len(pub.plis) == plis and consumer.outage_keyframes == 0
            clock[0] += 1.2  # the link was down both ways
            transport._handle_rtcp(report)
            assert pub.plis[plis:] == [1000] and consumer.outage_keyframes == 1
            clock[0] += 0.5  # the throttled keyframe path: one PLI per 300 ms at most
            transport._handle_rtcp(report)
            assert pub.plis[plis:] == [1000] and consumer.outage_keyframes == 1
        finally:
            await transport.close()

    asyncio.run(main())


def test_the_repair_counters_are_in_the_dump_and_the_link_samples() -> None:
    producer, _ = make_producer()
    consumer = make_consumer()
    consumer.bind(producer, 0.0)
    publish(producer, 10, start=1.0)
    lost = out_seq(sent(consumer)[4])
    for t in (1.2, 1.25):
        nack(consumer, [lost, (lost + 3000) & 0xFFFF], t)
    router = Router("r", POLICY, lambda event, data: None)
    router.consumers[consumer.consumer_id] = consumer
    dumped = router.dump()["consumers"][consumer.consumer_id]
    assert dumped["retransmitted"] == 1 and dumped["rtx_suppressed"] == 1 and dumped["nack_misses"] == 2
    assert dumped["nack_keyframes"] == 1 and dumped["outage_keyframes"] == 0  # (the second within 1 s: not asked)

    async def sample() -> dict[str, Any]:
        transport = WebRtcTransport("t", "p", "recv", POLICY, on_state=lambda t, s: None)
        transport.consumers[consumer.consumer_id] = consumer
        try:
            return transport.sample(2.0)
        finally:
            transport.consumers.clear()
            await transport.close()

    s = asyncio.run(sample())
    assert (s["retransmitted"], s["rtx_suppressed"], s["nack_misses"]) == (1, 1, 2)


# ---------------------------------------------------------------------------------------- end to end


class SubscriberLink:
    """The network between the SFU and a subscriber's aiortc, below its SRTP: a delay each way, every
    n-th video packet lost on the way down, and a blackout (nothing either way) when asked.

    It also reads what arrives, as the subscriber's receiver would: the times keyframes arrive, and
    how far each packet's abs-send-time is from the SFU's clock (``time.monotonic``, the same clock
    in this process and in the server's) when it arrives.
    """

    def __init__(self, pc: Any, *, one_way_delay: float = 0.0, drop_every: int = 0) -> None:
        self.loop = asyncio.get_running_loop()
        self.delay = one_way_delay
        self.drop_every = drop_every
        self.blackout = False
        self.video = self.rtx = self.dropped = 0
        self.keyframes: list[float] = []
        self.rtx_stamp_errors: list[float] = []
        self.video_stamp_errors: list[float] = []
        self.video_pts: dict[int, str] = {}
        self.rtx_pts: set[int] = set()
        for t in pc.getTransceivers():
            for codec in getattr(t, "_codecs", []):
                mime = codec.mimeType.lower()
                if mime == "video/rtx":
                    self.rtx_pts.add(codec.payloadType)
                elif mime.startswith("video/"):
                    self.video_pts[codec.payloadType] = mime
        found = re.search(r"a=extmap:(\d+)\S* " + re.escape(URI_ABS_SEND_TIME), pc.remoteDescription.sdp)
        assert found, "the SFU offers abs-send-time"
        self.ast_id = int(found.group(1))
        dtls = pc.getTransceivers()[0].receiver.transport
        self._rtp_in, self._rtcp_in, self._out = dtls._handle_rtp_data, dtls._handle_rtcp_data, dtls._send_rtp
        dtls._handle_rtp_data = self._on_rtp
        dtls._handle_rtcp_data = self._on_rtcp
        dtls._send_rtp = self._on_send

    def _later(self, coro_fn: Any, *args: Any) -> None:
        self.loop.call_later(self.delay, lambda: self.loop.create_task(coro_fn(*args)))

    def _stamp_error(self, data: bytes, now: float) -> float | None:
        offset = find_extension(data, self.ast_id)
        if offset < 0:
            return None
        diff = (ast_value(now) - int.from_bytes(data[offset:offset + 3], "big")) & 0xFFFFFF
        return (diff if diff < 0x800000 else diff - 0x1000000) / AST_SCALE

    async def _on_rtp(self, data: bytes, arrival_time_ms: int) -> None:
        if self.blackout:
            return
        now = time.monotonic()
        pt = data[1] & 0x7F
        if pt in self.rtx_pts:
            self.rtx += 1
            error = self._stamp_error(data, now)
            if error is not None:
                self.rtx_stamp_errors.append(error)
        elif pt in self.video_pts:
            self.video += 1
            if self.drop_every and self.video % self.drop_every == 0:
                self.dropped += 1
                return
            error = self._stamp_error(data, now)
            if error is not None:
                self.video_stamp_errors.append(error)
            try:
                if is_keyframe(self.video_pts[pt], memoryview(data)[header_size(data):]):
                    self.keyframes.append(now)
            except ValueError:
                pass
        if self.delay:
            self._later(self._rtp_in, data, arrival_time_ms)
        else:
            await self._rtp_in(data, arrival_time_ms)

    async def _on_rtcp(self, data: bytes) -> None:
        if self.blackout:
            return
        if self.delay:
            self._later(self._rtcp_in, data)
        else:
            await self._rtcp_in(data)

    async def _on_send(self, data: bytes) -> None:
        if self.blackout:
            return
        if self.delay:
            self._later(self._out, data)
        else:
            await self._out(data)


def test_a_far_lossy_subscriber_gets_each_loss_resent_about_once_with_the_sfus_clock(lesson: Lesson, app: Any) -> None:
    w = lesson.world
    samples = link_samples(app)  # the worker's link samples, every 2 s

    def recv_sample(participant_id: str) -> dict[str, Any] | None:
        return next((x for x in reversed(samples) if x["participant_id"] == participant_id
                     and x["direction"] == "recv"), None)

    async def scenario() -> None:
        main = await lesson.join(w.teacher)
        far = await lesson.join(w.terminal_recv)
        await main.publish({"camera": ColorTrack(RED)})
        await far.subscribe([{"participant_id": main.participant_id, "source": "camera"}])
        track = await far.track(main.participant_id, "camera")
        await frames(track, 3)
        # 300 ms round trip, 1 video packet in 6 lost: a new loss (and a NACK repeating every packet
        # still missing) about every 170 ms, so each lost packet is NACKed about twice per round trip
        link = SubscriberLink(far.subscriber, one_way_delay=0.15, drop_every=6)

        def far_rtt() -> int:
            sample = recv_sample(far.participant_id)
            return sample["rtt_ms"] if sample else 0

        async def watch() -> None:
            while True:
                await frames(track, 1, timeout=15)  # keep decoding (aiortc's queue is unbounded)

        watching = asyncio.get_running_loop().create_task(watch())
        try:  # the SFU learns the round trip from the subscriber's receiver reports about its SRs
            await until(f"the SFU never measured the RTT: {recv_sample(far.participant_id)}", lambda: far_rtt() >= 250, 20)
        finally:
            watching.cancel()
        rtx0, dropped0 = link.rtx, link.dropped
        got = await frames(track, 150, timeout=20)
        rtx, dropped = link.rtx - rtx0, link.dropped - dropped0
        assert dropped >= 15, (rtx, dropped)
        assert 0.7 * dropped <= rtx <= 1.5 * dropped, (rtx, dropped)
        assert all(close_to(x, RED) for x in got), got
        # every packet, retransmitted or not, carries the SFU's clock of its send (one clock for the
        # receiver's delay-based estimate), not the publisher's
        assert link.rtx_stamp_errors and link.video_stamp_errors
        assert all(-0.01 < e < 0.5 for e in link.rtx_stamp_errors), sorted(link.rtx_stamp_errors)[-5:]
        assert all(-0.01 < e < 0.5 for e in link.video_stamp_errors), sorted(link.video_stamp_errors)[-5:]
        # the worker's next sample counts what it resent (all the subscriber got, at least) and what it held back
        received, seen = link.rtx, len(samples)
        await until("no link sample", lambda: any(x["participant_id"] == far.participant_id and x["direction"] == "recv"
                                                 for x in samples[seen:]), 10)
        sample = recv_sample(far.participant_id)
        assert sample is not None and sample["retransmitted"] >= received and sample["rtx_suppressed"] > 0, sample

    lesson.play(scenario)


def test_after_a_two_second_blackout_a_keyframe_arrives_within_a_second(lesson: Lesson) -> None:
    w = lesson.world

    async def scenario() -> None:
        main = await lesson.join(w.teacher)
        rural = await lesson.join(w.terminal_recv)
        await main.publish({"camera": ColorTrack(RED)})
        await rural.subscribe([{"participant_id": main.participant_id, "source": "camera"}])
        track = await rural.track(main.participant_id, "camera")
        await frames(track, 30)
        link = SubscriberLink(rural.subscriber)
        await until("video flows", lambda: link.video > 30, 10)
        link.blackout = True  # nothing either way: media, reports, NACKs
        await asyncio.sleep(2.0)
        keyframes_before = len(link.keyframes)
        back = time.monotonic()
        link.blackout = False
        await until("no keyframe after the blackout", lambda: len(link.keyframes) > keyframes_before, 5)
        elapsed = link.keyframes[keyframes_before] - back
        assert elapsed <= 1.0, f"first keyframe {elapsed:.3f} s after the link returned"
        seen = await frames(track, 10, timeout=10)
        assert all(close_to(x, RED) for x in seen), seen

    lesson.play(scenario)


def test_the_budget_holds_retransmissions_to_what_a_full_link_has_room_for() -> None:
    budget = RetransmitBudget()
    assert all(budget.take(1200, 1.0) for _ in range(100))  # no estimate: no limit
    # a congested 300 kbit/s link already carrying 280 kbit/s of media: RTX get the 10 % floor, 30 kbit/s
    budget.set_rate(300_000, 280_000, 10.0)
    assert budget.rate_bps == pytest.approx(30_000)
    sent = sum(budget.take(1200, 10.0 + k * 0.01) for k in range(1000))  # NACKs for 10 s worth
    assert 28 <= sent <= 33 and budget.refused == 1000 - sent  # ~30 kbit/s × 10 s ÷ 9.6 kbit
    # room above the media: the difference
    budget.set_rate(2_000_000, 1_500_000, 20.0)
    assert budget.rate_bps == pytest.approx(500_000)
    budget.set_rate(None, 0.0, 21.0)
    assert budget.take(10**6, 21.0)


def test_a_subscriber_on_a_full_link_gets_only_the_retransmissions_its_budget_allows() -> None:
    producer, _ = make_producer()
    consumer = make_consumer()
    consumer.bind(producer, 0.0)
    publish(producer, 60, start=1.0, size=1100)
    ids = [out_seq(p) for p in sent(consumer)[40:50]]
    consumer.transport.rtx_budget.set_rate(200_000, 190_000, 1.5)  # type: ignore[attr-defined]
    nack(consumer, ids, 2.5)  # 10 packets NACKed at once; 20 kbit/s saved up for 1 s buys two
    assert consumer.retransmitted == 2 and consumer.rtx_over_budget == 8, (
        consumer.retransmitted, consumer.rtx_over_budget, consumer.nack_misses, consumer.rtx_suppressed)
    consumer.transport.rtx_budget.set_rate(None, 0.0, 2.6)  # not congested: everything may be repaired
    nack(consumer, ids, 3.0)
    assert consumer.retransmitted == 2 + 10  # (the two resent at 2.5 s are due again one RTT later)
