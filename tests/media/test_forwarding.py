"""Producer → Consumer forwarding without a network: header rewriting, keyframe gating on a
source switch, NACK answers with RTX, sender reports, simulcast layer choice and pausing video on
a weak link.  The transports are fakes around a real ``SrtpWriter`` that sends to a socket on
127.0.0.1, where the test unprotects what a subscriber would receive."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time

import pylibsrtp

from aiortc.rtp import RtcpReceiverInfo

from media.consumer import Consumer, extension_table
from media.producer import Producer
from media.retransmit import RetransmitBudget
from media.srtp import SrtpWriter
from media.rtp import URI_ABS_SEND_TIME, URI_MID, find_extension, payload_range, rtx_unwrap

VP8 = "video/VP8"
KEY = bytes([0x10, 0x00, 0x9D, 0x01, 0x2A]) + b"K" * 40
"""VP8 descriptor S=1 PID=0, then a payload header with P=0 (a keyframe)."""
DELTA = bytes([0x10, 0x01]) + b"D" * 40


class Capture:
    """Opens a transport's real ``SrtpWriter`` towards a UDP socket on 127.0.0.1 and keeps what
    arrives there, unprotected with the matching SRTP session: the packets a subscriber would get."""

    def __init__(self, writer: SrtpWriter) -> None:
        key = os.urandom(30)
        profile = pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80
        self.rx = pylibsrtp.Session(pylibsrtp.Policy(key=key, srtp_profile=profile,
                                                     ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))
        tx = pylibsrtp.Session(pylibsrtp.Policy(key=key, srtp_profile=profile,
                                                ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.out.bind(("127.0.0.1", 0))
        self.out.setblocking(False)
        writer.open(tx, self.out, self.sock.getsockname())
        self._sent: list[bytes] = []

    @property
    def sent(self) -> list[bytes]:
        while True:
            try:
                data = self.sock.recv(2048)
            except BlockingIOError:
                return self._sent
            self._sent.append(self.rx.unprotect(data))

    def close(self) -> None:
        self.sock.close()
        self.out.close()


class FakeTransport:
    def __init__(self, participant_id: str = "p") -> None:
        self.writer = SrtpWriter()
        self.capture = Capture(self.writer)
        self.extension_ids: set[int] = set()
        self.participant_id = participant_id
        self.plis: list[int] = []
        self.rtx_budget = RetransmitBudget()
        self.congested = False
        """What the send-side estimator says of this subscriber's path (``twcc_active`` while set by a test)."""
        self.estimator = self

    def twcc_active(self, now: float) -> bool:
        return self.congested

    def send_pli(self, ssrc: int) -> None:
        self.plis.append(ssrc)

    def nack_due(self, now: float) -> None:
        """A gap opened: the real transport sends the stream's NACKs (``media/transport.py``)."""


def rtp(seq: int, ts: int, ssrc: int, payload: bytes, pt: int = 100, marker: bool = True,
        exts: tuple[tuple[int, bytes], ...] = ((4, b"1"), (2, b"\x00\x00\x00"))) -> bytes:
    body = b"".join(bytes([(i << 4) | (len(d) - 1)]) + d for i, d in exts)
    body += b"\x00" * (-len(body) % 4)
    header = struct.pack(">BBHII", 0x90, (0x80 if marker else 0) | pt, seq, ts, ssrc)
    return header + struct.pack(">HH", 0xBEDE, len(body) // 4) + body + payload


def make_producer(layers: int = 1, *, kind: str = "video", pid: str = "main:camera") -> tuple[Producer, FakeTransport]:
    transport = FakeTransport("pub")
    producer = Producer(pid, transport, kind=kind, mid="1", source="camera", mime=VP8 if kind == "video" else "audio/opus",
                        clock_rate=90000 if kind == "video" else 48000, payload_type=100, rtx_payload_type=101,
                        extmap={URI_MID: 4, URI_ABS_SEND_TIME: 2},
                        layers=[(f"r{i}", 1000 + i) for i in range(layers)])
    return producer, transport


def make_consumer(producer_id: str = "main:camera", *, kind: str = "video", max_layer: int | None = None) -> Consumer:
    transport = FakeTransport("sub")
    transport.extension_ids = {1, 3}
    consumer = Consumer("c1", transport, kind=kind, producer_id=producer_id, max_layer=max_layer)  # type: ignore[arg-type]
    consumer.configure(ssrc=0xC0FFEE, rtx_ssrc=0xC0FFEF, payload_type=96, rtx_payload_type=97,
                       clock_rate=90000 if kind == "video" else 48000, mime=VP8 if kind == "video" else "audio/opus",
                       extmap={URI_MID: 1, URI_ABS_SEND_TIME: 3})
    return consumer


def sent(consumer: Consumer) -> list[bytes]:
    return consumer.transport.capture.sent  # type: ignore[attr-defined]


def test_a_forwarded_packet_carries_the_consumers_ids_and_the_same_payload() -> None:
    producer, pub = make_producer()
    consumer = make_consumer()
    consumer.bind(producer, now=0.0)
    assert pub.plis == [1000]  # subscribing asks the publisher for a keyframe at once
    stream = producer.streams[0]
    stream.receive(rtp(500, 9000, 1000, DELTA), 0.01)
    assert sent(consumer) == []  # a delta frame is useless to a decoder that has no keyframe
    stream.receive(rtp(501, 12000, 1000, KEY), 0.02)
    stream.receive(rtp(502, 15000, 1000, DELTA), 0.05)
    out = sent(consumer)
    assert len(out) == 2
    first, second = out
    assert struct.unpack_from(">I", first, 8)[0] == 0xC0FFEE and first[1] & 0x7F == 96 and first[1] & 0x80
    seq1, ts1 = struct.unpack_from(">HI", first, 2)
    seq2, ts2 = struct.unpack_from(">HI", second, 2)
    assert (seq2 - seq1) & 0xFFFF == 1 and (ts2 - ts1) & 0xFFFFFFFF == 3000
    start, end = payload_range(first)
    assert first[start:end] == KEY
    # the publisher's MID (id 4) must not reach the subscriber as its own MID; abs-send-time 2 → 3
    assert find_extension(first, 1) == -1 and find_extension(first, 4) == -1
    assert find_extension(first, 3) >= 0


def test_extension_ids_unknown_to_the_whole_connection_hide_mid() -> None:
    table = extension_table({URI_MID: 1, URI_ABS_SEND_TIME: 3, "urn:x": 5}, {URI_MID: 1, URI_ABS_SEND_TIME: 3},
                            reserved={1, 2, 3, 14})
    assert table is not None
    assert table[1] == 13 and table[3] == 3 and table[5] == 13  # 14 is taken elsewhere on the connection
    assert extension_table({URI_ABS_SEND_TIME: 3}, {URI_ABS_SEND_TIME: 3}) is None


def test_a_subscriber_that_comes_just_after_a_keyframe_went_by_gets_one_of_its_own_within_300_ms() -> None:
    """After a failover every subscriber attaches within a moment: the first one's PLI brings a keyframe, and
    one attaching just after that keyframe went by must not wait for its once-a-second retry (``tick``)."""
    async def body() -> tuple[list[int], list[int], bool, bool, float]:
        producer, pub = make_producer()
        first, second = make_consumer(), make_consumer()
        stream = producer.streams[0]
        first.bind(producer, time.monotonic())
        stream.receive(rtp(501, 12000, 1000, KEY), time.monotonic())
        second.bind(producer, time.monotonic())  # within 300 ms of the first PLI: the publisher is not asked now
        at_bind = list(pub.plis)
        bound = time.monotonic()
        while len(pub.plis) < 2 and time.monotonic() - bound < 2.0:
            await asyncio.sleep(0.005)
        asked_after = time.monotonic() - bound
        stream.receive(rtp(502, 15000, 1000, KEY), time.monotonic())
        await asyncio.sleep(0.4)  # and once it has its keyframe, nobody asks again
        return at_bind, list(pub.plis), first.waiting, second.waiting, asked_after

    at_bind, plis, first_waiting, second_waiting, asked_after = asyncio.run(body())
    assert at_bind == [1000]
    assert plis == [1000, 1000] and asked_after <= 0.3 + 0.1, (plis, asked_after)
    assert not first_waiting and not second_waiting


def test_switching_the_source_waits_for_its_keyframe_and_keeps_numbering_continuous() -> None:
    green, green_pub = make_producer(pid="a:camera")
    blue, blue_pub = make_producer(pid="b:camera")
    blue.streams[0].ssrc = 2000
    consumer = make_consumer("a:camera")
    consumer.bind(green, 0.0)
    green.streams[0].receive(rtp(10, 100, 1000, KEY), 0.0)
    green.streams[0].receive(rtp(11, 3100, 1000, DELTA), 0.033)
    consumer.bind(blue, 0.05)
    assert blue_pub.plis == [2000]
    green.streams[0].receive(rtp(12, 6100, 1000, DELTA), 0.066)  # the old source is detached
    blue.streams[0].receive(rtp(7000, 55, 2000, DELTA), 0.07)  # not a keyframe: dropped
    blue.streams[0].receive(rtp(7001, 3055, 2000, KEY), 0.1)
    blue.streams[0].receive(rtp(7002, 6055, 2000, DELTA), 0.133)
    seqs = [struct.unpack_from(">H", p, 2)[0] for p in sent(consumer)]
    tss = [struct.unpack_from(">I", p, 4)[0] for p in sent(consumer)]
    assert [(s - seqs[0]) & 0xFFFF for s in seqs] == [0, 1, 2, 3]
    assert all((b - a) & 0xFFFFFFFF < 0x80000000 and b != a for a, b in zip(tss, tss[1:], strict=False))
    start, end = payload_range(sent(consumer)[2])
    assert sent(consumer)[2][start:end] == KEY


def test_a_nack_is_answered_from_the_cache_with_rtx() -> None:
    producer, _ = make_producer()
    consumer = make_consumer()
    consumer.bind(producer, 0.0)
    for i in range(5):
        producer.streams[0].receive(rtp(100 + i, 3000 * i, 1000, KEY if i == 0 else DELTA), 0.01 * i)
    originals = list(sent(consumer))
    lost = struct.unpack_from(">H", originals[2], 2)[0]
    consumer.on_nack([lost, (lost + 1000) & 0xFFFF], 0.1)  # the second was never sent: ignored
    assert len(sent(consumer)) == 6 and consumer.retransmitted == 1 and consumer.nack_misses == 1
    retransmission = sent(consumer)[-1]
    assert retransmission[1] & 0x7F == 97 and struct.unpack_from(">I", retransmission, 8)[0] == 0xC0FFEF
    restored = rtx_unwrap(retransmission, 96, 0xC0FFEE)
    assert restored[2:4] == originals[2][2:4]
    assert restored[payload_range(restored)[0]:] == originals[2][payload_range(originals[2])[0]:]


def test_sender_reports_follow_the_rewritten_timestamps() -> None:
    producer, _ = make_producer()
    consumer = make_consumer()
    consumer.bind(producer, 0.0)
    stream = producer.streams[0]
    stream.receive(rtp(1, 90000, 1000, KEY), 1.0)
    out_ts = struct.unpack_from(">I", sent(consumer)[0], 4)[0]
    stream.on_sender_report(ntp_timestamp=5 << 32, rtp_timestamp=90000, now=1.0)
    sr = consumer.sender_report(ntp=(6 << 32), now=1.5)
    assert sr is not None and sr.ssrc == 0xC0FFEE
    # half a second after the SR the source clock is 90000 + 45000; shifted like the packets
    assert sr.sender_info.rtp_timestamp == (out_ts + 45000) & 0xFFFFFFFF
    assert sr.sender_info.packet_count == 1
    assert sr.sender_info.octet_count == len(sent(consumer)[0]) + 10  # as sent: with the SRTP auth tag
    # the receiver's report about it gives the round trip (RFC 3550 6.4.1)
    lsr = ((6 << 32) >> 16) & 0xFFFFFFFF
    consumer.on_receiver_report(RtcpReceiverInfo(ssrc=0xC0FFEE, fraction_lost=0, packets_lost=0, highest_sequence=1,
                                                 jitter=0, lsr=lsr, dlsr=int(0.010 * 65536)), 1.54)
    assert 25 < consumer.stats.rtt_ms < 35


def test_simulcast_picks_a_lower_layer_on_a_weak_link_and_observers_get_the_lowest() -> None:
    producer, pub = make_producer(layers=3)
    consumer = make_consumer()
    consumer.bind(producer, 0.0)
    assert consumer.stream is producer.streams[2]  # no estimate yet: the best layer
    packets_per_tick = [4, 13, 40]  # ~150 kbps, 500 kbps, 1.5 Mbps in 940-byte packets every 0.2 s
    seqs = [0, 0, 0]
    for t in range(0, 30):
        now = t * 0.2
        for i, stream in enumerate(producer.streams):
            for k in range(packets_per_tick[i]):
                head = KEY if (t % 5 == 0 and k == 0) else DELTA
                stream.receive(rtp(seqs[i], t * 18000, 1000 + i, head + bytes(880)), now)
                seqs[i] += 1
        if t % 5 == 4:
            consumer.on_remb(400_000, now)
            consumer.tick(now)
    assert consumer.stream is not None and consumer.stream.layer == 0, consumer.stream
    assert 1000 in pub.plis  # the lower layer was asked for a keyframe
    observer = make_consumer(max_layer=0)
    observer.bind(producer, 10.0)
    assert observer.stream is producer.streams[0]


def test_video_pauses_on_a_link_that_cannot_carry_it_and_audio_goes_on() -> None:
    video, _ = make_producer()
    audio, _ = make_producer(kind="audio", pid="main:microphone")
    cam = make_consumer()
    mic = make_consumer("main:microphone", kind="audio")
    cam.bind(video, 0.0)
    mic.bind(audio, 0.0)
    changes = []
    for t in range(40):
        now = t * 0.25
        video.streams[0].receive(rtp(t, t * 22500, 1000, (KEY if t % 8 == 0 else DELTA) + bytes(900)), now)
        audio.streams[0].receive(rtp(t, t * 12000, 1000, b"opus" * 20, exts=()), now)
        if t % 4 == 3:
            cam.on_remb(10_000, now)  # far below the ~29 kbps the camera sends here...
            cam.on_receiver_report(RtcpReceiverInfo(ssrc=0xC0FFEE, fraction_lost=80, packets_lost=t, highest_sequence=t,
                                                    jitter=0, lsr=0, dlsr=0), now)  # ...and 30 % lost: congested
            changes.append(cam.tick(now))
    assert "paused" in changes and cam.paused
    before = len(sent(cam))
    video.streams[0].receive(rtp(99, 99 * 22500, 1000, KEY), 10.1)
    assert len(sent(cam)) == before  # paused: nothing forwarded
    assert len(sent(mic)) == 40  # the teacher is still heard


def test_a_closed_socket_number_reused_by_another_socket_never_gets_srtp() -> None:
    producer, _ = make_producer()
    consumer = make_consumer()
    consumer.bind(producer, 0.0)
    capture: Capture = consumer.transport.capture  # type: ignore[attr-defined]
    number = capture.out.fileno()
    capture.out.close()  # aioice closed the selected pair's socket
    # another socket gets that number: a new descriptor takes the lowest free one, so open sockets
    # until one lands on it (lower numbers other tests left free are filled on the way)
    fillers: list[socket.socket] = []
    for _ in range(4096):
        intruder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if intruder.fileno() == number:
            break
        fillers.append(intruder)
    else:
        raise AssertionError(f"descriptor {number} was never reused")
    for filler in fillers:
        filler.close()
    intruder.bind(("127.0.0.1", 0))
    intruder.setblocking(False)
    stream = producer.streams[0]
    stream.receive(rtp(1, 90000, 1000, KEY), 1.0)
    assert intruder.fileno() == number
    assert len(sent(consumer)) == 1  # the writer's own descriptor still reaches the subscriber
    consumer.transport.writer.close()  # type: ignore[attr-defined]
    stream.receive(rtp(2, 93000, 1000, DELTA), 1.03)
    assert len(sent(consumer)) == 1  # closed: nothing more
    intruder.close()


def test_a_large_group_reaches_every_subscriber_once_in_order() -> None:
    """12 consumers on 9 subscriber transports (three subscribers take the camera twice, as a
    camera and as the stage slot: one SRTP context and one buffer for two consumers) in one C
    fan-out call per packet: every subscriber gets every packet once, in order, decryptable,
    with its own SSRC."""
    producer, _ = make_producer()
    transports = [FakeTransport(f"s{i}") for i in range(9)]
    consumers = []
    for i in range(12):
        t = transports[i % 9]
        c = Consumer(f"c{i}", t, kind="video", producer_id="main:camera")  # type: ignore[arg-type]
        c.configure(ssrc=0x1000 + i, rtx_ssrc=0x2000 + i, payload_type=96, rtx_payload_type=97, clock_rate=90000,
                    mime=VP8, extmap={URI_MID: 1, URI_ABS_SEND_TIME: 3})
        c.bind(producer, 0.0)
        consumers.append(c)
    stream = producer.streams[0]
    assert stream.waiting == 12
    for k in range(300):
        stream.receive(rtp(100 + k, 3000 * k, 1000, (KEY if k == 0 else DELTA) + bytes([k % 256]) * 500),
                       k / 30)
        if k % 20 == 19:
            for t in transports:  # read as a subscriber would, so no socket buffer overflows
                t.capture.sent
    assert stream.waiting == 0  # every sink's release was counted once
    for t in transports:
        got = t.capture.sent
        by_ssrc: dict[int, list[bytes]] = {}
        for pkt in got:
            by_ssrc.setdefault(struct.unpack_from(">I", pkt, 8)[0], []).append(pkt)
        mine = sorted(c.ssrc for c in consumers if c.transport is t)
        assert sorted(by_ssrc) == mine
        for ssrc, pkts in by_ssrc.items():
            seqs = [struct.unpack_from(">H", p, 2)[0] for p in pkts]
            assert len(pkts) == 300 and all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:]))
            start, end = payload_range(pkts[150])
            assert pkts[150][start:end] == DELTA + bytes([150]) * 500
    assert sum(c.sent_packets for c in consumers) == 12 * 300
