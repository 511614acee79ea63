"""PipeTransport in one process: two ends on 127.0.0.1, a producer piped from one to the other.

What the far end receives is what the publisher sent (sequence numbers, timestamps, payload type,
header extensions and payload untouched) under the pipe's SSRC; a packet lost on the pipe is NACKed
and comes back as RTX; a keyframe request at the far end reaches the origin's publisher; datagrams
from anywhere else, or protected with another key, are dropped and counted."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

from aiortc.rtp import RtpPacket

from media.pipe import PipeTransport, _session, new_key
from media.producer import Producer
from media.rtp import rtx_wrap
from tests.utils.wait import until

VP8 = "video/VP8"


class Publisher:
    """The origin producer's transport, as far as a pipe can tell: it records keyframe requests."""

    def __init__(self) -> None:
        self.ssrc_table: dict[int, Any] = {}
        self.plis: list[int] = []

    def send_pli(self, ssrc: int) -> None:
        self.plis.append(ssrc)

    def nack_due(self, now: float) -> None:
        pass


def packet(seq: int, ts: int, ssrc: int = 1111, pt: int = 96) -> bytes:
    return RtpPacket(payload_type=pt, sequence_number=seq & 0xFFFF, timestamp=ts, ssrc=ssrc,
                     payload=bytes([0x10, 0x01]) + seq.to_bytes(2, "big") * 20).serialize()


async def pair() -> tuple[PipeTransport, PipeTransport]:
    origin, far = PipeTransport("p", "lesson-1", "127.0.0.1"), PipeTransport("p", "lesson-1@1", "127.0.0.1")
    a, b = await origin.open(), await far.open()
    origin.connect(b[0], b[1], far.key)
    far.connect(a[0], a[1], origin.key)
    return origin, far


def video_producer(publisher: Publisher) -> Producer:
    return Producer("pub:camera", publisher, kind="video", mid="0", source="camera", mime=VP8,  # type: ignore[arg-type]
                    clock_rate=90000, payload_type=96, rtx_payload_type=97, extmap={}, layers=[(None, 1111)])


def test_packets_cross_the_pipe_as_they_came_under_the_pipes_ssrc() -> None:
    async def main() -> None:
        origin, far = await pair()
        publisher = Publisher()
        producer = video_producer(publisher)
        description = origin.consume(producer)
        assert origin.consume(producer) is description  # idempotent for the same producer
        piped, replaced = far.produce(description)
        assert replaced is None and piped.producer_id == "pub:camera"
        pipe_ssrc = description["layers"][0]["ssrc"]
        assert pipe_ssrc != 1111
        stream = producer.streams[0]
        sent = [packet(1000 + i, 9000 + 3000 * i) for i in range(20)]
        for pkt in sent:
            stream.receive(pkt, time.monotonic())
        far_stream = piped.streams[0]
        await until("20 packets across", lambda: far_stream.stats.received >= 20, 5)
        assert far_stream.fast_packets >= 18  # in order on the pipe: received whole in C (not the first)
        assert far.received == 20
        now = time.monotonic()
        for i, pkt in enumerate(sent):
            got = far_stream.cache.get(1000 + i, now)  # type: ignore[union-attr]
            assert got is not None
            assert got[:8] == pkt[:8] and got[12:] == pkt[12:]  # header and payload as sent
            assert int.from_bytes(got[8:12], "big") == pipe_ssrc
        # the far end asks for a keyframe: the origin asks its publisher (for the publisher's SSRC)
        far_stream.request_keyframe(time.monotonic())
        await until("the PLI at the publisher", lambda: publisher.plis == [1111], 5)
        await origin.close()
        await far.close()

    asyncio.run(main())


def test_a_packet_lost_on_the_pipe_is_nacked_and_resent_as_rtx() -> None:
    async def main() -> None:
        origin, far = await pair()
        producer = video_producer(Publisher())
        piped, _ = far.produce(origin.consume(producer))
        far.drop_every = 5  # every fifth video packet arriving at the far end is lost
        stream = producer.streams[0]
        for i in range(40):
            stream.receive(packet(2000 + i, 3000 * i), time.monotonic())
            await asyncio.sleep(0.005)
        far.drop_every = 0
        stream.receive(packet(2040, 3000 * 40), time.monotonic())
        nack = piped.streams[0].nack
        assert nack is not None
        await until("every lost packet recovered", lambda: nack.recovered >= 8, 5)
        now = time.monotonic()
        assert all(piped.streams[0].cache.get(2000 + i, now) is not None for i in range(41))  # type: ignore[union-attr]
        assert far.dropped_on_purpose == 8 and origin.retransmitted >= 8 and nack.pending == 0
        await origin.close()
        await far.close()

    asyncio.run(main())


def test_strangers_and_wrong_keys_are_dropped() -> None:
    async def main() -> None:
        origin, far = await pair()
        producer = video_producer(Publisher())
        piped, _ = far.produce(origin.consume(producer))
        assert far.remote is not None and origin.remote is not None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # from another port of this machine
            for i in range(10):
                s.sendto(packet(i, i), origin.remote)
        # from the right address (the origin's own socket) but protected with another key
        wrong = _session(new_key(), outbound=True)
        for i in range(10):
            origin._sock.sendto(wrong.protect(packet(500 + i, i, ssrc=1)), far._sock.getsockname())  # type: ignore[union-attr]
        await until("the stranger counted", lambda: far.foreign >= 10 and far.srtp_errors >= 10, 5)
        assert piped.streams[0].stats.received == 0
        await origin.close()
        await far.close()

    asyncio.run(main())


def test_a_packet_the_origin_is_still_repairing_follows_without_a_keyframe() -> None:
    async def main() -> None:
        origin, far = await pair()
        publisher = Publisher()
        producer = video_producer(publisher)
        piped, _ = far.produce(origin.consume(producer))
        stream = producer.streams[0]
        for i in range(10):
            if i != 5:  # lost on the publisher's uplink: the origin NACKs it to the publisher
                stream.receive(packet(3000 + i, 3000 * i), time.monotonic())
        nack = piped.streams[0].nack
        assert nack is not None
        await until("the far end asked the origin for it", lambda: nack.nacks_sent >= 1, 5)
        await asyncio.sleep(0.05)
        assert origin.nack_misses == 0 and publisher.plis == []  # no keyframe: the packet is on its way
        stream.receive(rtx_wrap(packet(3005, 15000), 97, 2222, 1), time.monotonic())  # the publisher's RTX
        await until("it reached the far end", lambda: nack.recovered >= 1 and nack.pending == 0, 5)
        assert publisher.plis == []
        await origin.close()
        await far.close()

    asyncio.run(main())


def test_red_audio_crosses_as_red() -> None:
    async def main() -> None:
        origin, far = await pair()
        producer = Producer("pub:microphone", Publisher(), kind="audio", mid="1", source="microphone",  # type: ignore[arg-type]
                            mime="audio/opus", clock_rate=48000, payload_type=111, rtx_payload_type=None, extmap={},
                            layers=[(None, 3333)], red_payload_type=63)
        piped, _ = far.produce(origin.consume(producer))
        assert piped.red_payload_type == 63
        red = [RtpPacket(payload_type=63, sequence_number=100 + i, timestamp=960 * i, ssrc=3333,
                         payload=bytes([111]) + bytes([0xF8, 0xFF, 0xFE])).serialize() for i in range(5)]
        for pkt in red:
            producer.streams[0].receive(pkt, time.monotonic())
        await until("5 RED packets across", lambda: piped.streams[0].stats.received >= 5, 5)
        assert piped.streams[0].red_received == 5  # still RED at the far end, for its own subscribers' forms
        await origin.close()
        await far.close()

    asyncio.run(main())
