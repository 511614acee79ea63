"""Transport-cc feedback to a publisher on a timer (``ArrivalRecorder`` + ``WebRtcTransport``'s timer).

The recorder's tests run on a fake clock (every call gets ``now``; the "timer" is a loop over
fake ticks).  The transport's test drives the real per-packet path (an SRTP datagram handed to
the socket hook the transport installs) and the real asyncio timer, and reads the feedback the
publisher would get from a UDP socket on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from typing import Any

import pylibsrtp

from media.rtp import add_extension
from media.transportcc import FEEDBACK_INTERVAL_S, MAX_STATUSES, ArrivalRecorder
from media.twcc import feedback_packets, parse

EXT = 3


def _packet(twcc_seq: int, rtp_seq: int = 1, ssrc: int = 0x1111) -> bytes:
    pkt, off = add_extension(struct.pack(">BBHII", 0x80, 96, rtp_seq & 0xFFFF, 0, ssrc) + b"x" * 200, EXT, 2)
    pkt[off:off + 2] = struct.pack(">H", twcc_seq & 0xFFFF)
    return bytes(pkt)


def _statuses(packets: list[bytes]) -> list[tuple[int, int | None]]:
    out: list[tuple[int, int | None]] = []
    for data in packets:
        out.extend(parse(data).arrivals_us())
    return out


class Ticker:
    """A fake clock and the transport's timer on it: ``run_until(t)`` calls ``feedback`` every interval."""

    def __init__(self, rec: ArrivalRecorder, t0: float) -> None:
        self.rec = rec
        self.next_tick = t0 + FEEDBACK_INTERVAL_S
        self.sent: list[tuple[float, list[bytes]]] = []

    def run_until(self, t: float) -> None:
        while self.next_tick <= t:
            packets = self.rec.feedback(0xAAAA, 0xBBBB, self.next_tick)
            if packets:
                self.sent.append((self.next_tick, packets))
            self.next_tick += FEEDBACK_INTERVAL_S


def test_after_a_loss_burst_the_timer_reports_the_lost_numbers_though_nothing_more_arrives() -> None:
    rec = ArrivalRecorder()
    rec.ext_id = EXT
    t0 = 50.0
    clock = Ticker(rec, t0)
    # 200 packets/s from 65500 (the numbers wrap at 65536); 65520..65539 are lost in a burst, one more
    # packet arrives after it, then the link goes silent (a blackout: nothing at all arrives)
    arrived = [s for s in range(65500, 65541) if not 65520 <= s < 65540]
    for s in arrived:
        t = t0 + (s - 65500) * 0.005
        clock.run_until(t)
        rec.record(_packet(s), t)
    last_arrival = t0 + (65540 - 65500) * 0.005
    clock.run_until(last_arrival + 2.0)  # two seconds of silence: the timer keeps running
    assert clock.sent, "no feedback at all"
    reported = [st for _, packets in clock.sent for st in _statuses(packets)]
    # every number from the first to the last that arrived is reported exactly once, across the wrap
    assert [seq for seq, _ in reported] == [s & 0xFFFF for s in range(65500, 65541)]
    lost = {seq for seq, a in reported if a is None}
    assert lost == {s & 0xFFFF for s in range(65520, 65540)}
    # the burst is reported by the first tick after the packet that followed it, though no packet came after
    when, packets = clock.sent[-1]
    assert last_arrival < when <= last_arrival + FEEDBACK_INTERVAL_S + 1e-9
    assert {seq for seq, a in _statuses(packets) if a is None} >= {s & 0xFFFF for s in range(65530, 65540)}
    # arrival times are the packets' own (250 µs units), the clock of each feedback does not matter
    times = dict(reported)
    first = times[65500 & 0xFFFF]
    assert first is not None and abs(times[65540 & 0xFFFF] - first - 40 * 5000) <= 250  # type: ignore[operator]


def test_arrivals_are_reported_on_the_timer_not_on_the_next_packet() -> None:
    rec = ArrivalRecorder()
    rec.ext_id = EXT
    t0 = 10.0
    clock = Ticker(rec, t0)
    for s in range(5):  # five packets, then a stall (an encoder between frames, a capped link's queue)
        rec.record(_packet(s), t0 + 0.002 * s)
    clock.run_until(t0 + 0.3)
    assert len(clock.sent) == 1 and clock.sent[0][0] <= t0 + FEEDBACK_INTERVAL_S + 1e-9
    assert [a is not None for _, a in _statuses(clock.sent[0][1])] == [True] * 5


def test_a_late_packet_moves_the_next_feedback_back_and_duplicates_are_ignored() -> None:
    rec = ArrivalRecorder()
    rec.ext_id = EXT
    for s in (0, 1, 2, 4, 5, 3):  # 3 reordered: it arrives before the feedback, nothing special
        rec.record(_packet(s), 1.0 + s * 0.001)
    (fb,) = rec.feedback(1, 2, 1.05)
    assert all(a is not None for _, a in parse(fb).arrivals_us())
    for s in (6, 8, 9):
        rec.record(_packet(s), 1.06 + s * 0.001)
    (fb,) = rec.feedback(1, 2, 1.1)
    first = dict(parse(fb).arrivals_us())
    assert first[7] is None and len(first) == 4
    rec.record(_packet(7), 1.2)  # 7 arrives late (a retransmission): reported again, as received now
    rec.record(_packet(9), 1.21)  # a duplicate keeps its first arrival time
    (fb,) = rec.feedback(1, 2, 1.25)
    again = dict(parse(fb).arrivals_us())
    assert sorted(again) == [7, 8, 9] and again[7] is not None
    # the numbers listed again carry the same arrival times as before (the sender ignores what it matched)
    assert again[9] - again[8] == first[9] - first[8]  # type: ignore[operator]
    assert again[7] - again[8] > 0.09 * 1e6  # type: ignore[operator]
    assert rec.feedback(1, 2, 1.3) == []


def test_a_large_backlog_is_split_into_bounded_feedback_packets() -> None:
    rec = ArrivalRecorder()
    rec.ext_id = EXT
    n = 3 * MAX_STATUSES + 17
    for s in range(n):
        if s % 10 != 3:
            rec.record(_packet(s + 1000), 5.0 + s * 0.0001)
    packets = rec.feedback(1, 2, 5.2)
    assert len(packets) == 4 and all(len(p) < 1200 for p in packets)
    assert [parse(p).fb_count for p in packets] == [0, 1, 2, 3]
    statuses = _statuses(packets)
    assert [seq for seq, _ in statuses] == list(range(1000, 1000 + n))
    assert {seq for seq, a in statuses if a is None} == {s + 1000 for s in range(n) if s % 10 == 3}


class _Stream:
    def __init__(self, ssrc: int) -> None:
        self.ssrc = ssrc
        self.packets = 0

    def receive(self, plain: bytes, now: float) -> None:
        self.packets += 1


class _Protocol:
    """What the transport hooks: aioice's datagram protocol, its transport and socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.passed: list[bytes] = []
        self.transport = self
        self._sock = sock

    def get_extra_info(self, name: str) -> Any:
        return self._sock if name == "socket" else None

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.passed.append(data)


def _srtp_pair() -> tuple[pylibsrtp.Session, pylibsrtp.Session]:
    key = os.urandom(30)
    profile = pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80
    tx = pylibsrtp.Session(pylibsrtp.Policy(key=key, srtp_profile=profile, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    rx = pylibsrtp.Session(pylibsrtp.Policy(key=key, srtp_profile=profile, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))
    return tx, rx


def test_a_publishers_transport_sends_feedback_on_its_timer_after_its_packets_stop() -> None:
    from media.ice import IcePolicy
    from media.transport import WebRtcTransport

    async def scenario() -> None:
        transport = WebRtcTransport("t", "pub", "send", IcePolicy(), on_state=lambda t, s: None)
        publisher_tx, sfu_rx = _srtp_pair()  # the publisher's SRTP towards the SFU
        sfu_tx, publisher_rx = _srtp_pair()  # the SFU's SRTCP towards the publisher
        publisher = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        publisher.bind(("127.0.0.1", 0))
        publisher.setblocking(False)
        sfu = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sfu.bind(("127.0.0.1", 0))
        sfu.setblocking(False)
        remote = publisher.getsockname()
        try:
            transport.writer.open(sfu_tx, sfu, remote)
            transport.reader.open(sfu_rx)
            protocol = _Protocol(sfu)
            transport._install(protocol, remote)
            stream = _Stream(0x1111)
            transport.ssrc_table[0x1111] = stream
            transport.arrivals.ext_id = EXT
            transport.arm_twcc_feedback()
            # 30 packets, 10..24 lost on the way (never handed to the SFU), 25..29 arrive, then nothing
            for s in [*range(10), *range(25, 30)]:
                protocol.datagram_received(publisher_tx.protect(_packet(s, rtp_seq=s)), remote)
            assert stream.packets == 15 and not protocol.passed
            sent_at = time.monotonic()

            # the per-packet path sent nothing: the feedback comes from the timer, without another packet
            statuses: dict[int, int | None] = {}
            deadline = time.monotonic() + 5.0
            while 29 not in statuses:
                assert time.monotonic() < deadline, f"no feedback on the timer: {statuses}"
                await asyncio.sleep(0.01)
                try:
                    data = publisher.recv(2048)
                except BlockingIOError:
                    continue
                for raw in feedback_packets(publisher_rx.unprotect_rtcp(data)):
                    statuses.update(parse(raw).arrivals_us())
            assert time.monotonic() - sent_at < 1.0
            assert sorted(statuses) == list(range(30))
            assert {s for s, a in statuses.items() if a is None} == set(range(10, 25))
            # nothing new: the timer keeps running and sends nothing more
            await asyncio.sleep(4 * FEEDBACK_INTERVAL_S)
            try:
                extra = publisher.recv(2048)
            except BlockingIOError:
                extra = b""
            assert extra == b""
            assert transport._twcc_timer is not None
            await transport.close()
            assert transport._twcc_timer is None
        finally:
            transport.writer.close()
            publisher.close()
            sfu.close()

    asyncio.run(scenario())
