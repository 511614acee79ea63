"""media.probe and the consumer's probing: padding-only RTX packets a receiver accepts, paced at the
gate's rate; a paused video is probed with them (never with the video itself) and comes back."""

from __future__ import annotations

import struct

import pytest
from aiortc.rtp import RtcpReceiverInfo, RtpPacket

from media.probe import PADDING_BYTES, Pacer, padding_packet
from media.rtp import find_extension, header_size, payload_range
from tests.media.test_forwarding import DELTA, KEY, make_consumer, make_producer, rtp, sent


def test_a_padding_packet_is_padding_only_and_parses_like_libwebrtcs() -> None:
    pkt = padding_packet(97, 65535, 123456, 0xC0FFEF, ast_id=3, now_s=1.5)
    assert pkt[0] & 0x20 and pkt[0] & 0x10  # P and X
    assert pkt[-1] == PADDING_BYTES and len(pkt) == 12 + 8 + PADDING_BYTES
    assert payload_range(pkt)[0] == payload_range(pkt)[1]  # no payload at all
    parsed = RtpPacket.parse(pkt)  # what aiortc (a receiver) makes of it
    assert parsed.payload == b"" and parsed.padding_size == PADDING_BYTES
    assert parsed.payload_type == 97 and parsed.sequence_number == 65535 and parsed.ssrc == 0xC0FFEF
    off = find_extension(pkt, 3)
    assert off == 12 + 4 + 1 and header_size(pkt) == 20
    assert int.from_bytes(pkt[off:off + 3], "big") == int(1.5 * (1 << 18))
    plain = padding_packet(97, 1, 2, 3)
    assert not plain[0] & 0x10 and len(plain) == 12 + PADDING_BYTES
    for bad in ({"padding": 0}, {"padding": 256}, {"ast_id": 15}):
        with pytest.raises(ValueError):
            padding_packet(97, 1, 2, 3, **bad)  # type: ignore[arg-type]


def test_the_pacer_spreads_the_rate_and_stops_at_the_end() -> None:
    pacer = Pacer(500_000, 1.5, 1.0, 250)
    total = 0
    t = 1.0
    while t < 2.0:
        n = pacer.due(t)
        assert n <= 6  # never more than 20 ms worth (5 packets) at once, plus rounding
        total += n
        t = round(t + 0.01, 6)
    assert total == pytest.approx(500_000 / 8 * 0.5 / 250, abs=2)  # half a second of 500 kbit/s
    assert not pacer.active(2.0) and pacer.due(3.0) == 0
    late = Pacer(1_000_000, 10.0, 0.0, 250)
    assert late.due(5.0) <= 11  # a timer that fired late does not make up with a burst


def report(consumer, loss: float, now: float) -> None:  # type: ignore[no-untyped-def]
    consumer.on_receiver_report(RtcpReceiverInfo(ssrc=0xC0FFEE, fraction_lost=int(loss * 256), packets_lost=0,
                                                 highest_sequence=0, jitter=0, lsr=0, dlsr=0), now)


def test_a_paused_video_is_probed_with_padding_and_comes_back_when_the_link_does() -> None:
    video, _ = make_producer()
    cam = make_consumer()
    cam.bind(video, 0.0)
    seq = 0

    def second(t: float) -> None:  # ~300 kbit/s of video a second, a keyframe each
        nonlocal seq
        for k in range(40):
            head = KEY if k == 0 else DELTA
            video.streams[0].receive(rtp(seq, int(t * 90000) + k, 1000, head + bytes(900)), t + k * 0.025)
            seq += 1

    changes = []
    for t in range(0, 8):
        second(float(t))
        cam.on_remb(40_000, t + 0.9)
        report(cam, 0.3, t + 0.9)
        changes.append(cam.tick(t + 0.95))
    assert "paused" in changes and cam.paused
    # paused: no video, but within 2 s a padding burst on the RTX stream, at most the layer's rate
    before = len(sent(cam))
    t = 8.0
    while cam.pacer is None:
        second(t)
        cam.on_remb(40_000, t + 0.9)
        assert cam.tick(t + 0.95) is None
        t += 1.0
        assert t < 11.0, "no probe while paused"
    assert t - 8.0 <= 2.0
    start = t - 0.05
    now = start
    while cam.pace(now):
        now = round(now + 0.02, 6)
        assert now < start + 2.0
    probes = sent(cam)[before:]
    assert probes and all(p[1] & 0x7F == 97 and struct.unpack_from(">I", p, 8)[0] == 0xC0FFEF for p in probes)
    assert all(p[0] & 0x20 and payload_range(p)[0] == payload_range(p)[1] for p in probes)  # padding only
    assert len(probes) * len(probes[0]) * 8 <= 1.2 * 300_000 * (now - start) + 2000
    # the link is back: the receiver's estimate climbs; the video returns on a keyframe
    est = 40_000.0
    back = None
    for k in range(8):
        now = t + k
        second(now)
        est *= 1.08
        cam.on_remb(int(est), now + 0.5)
        report(cam, 0.0, now + 0.5)
        if cam.tick(now + 0.95) == "resumed":
            back = now + 0.95
            break
    assert back is not None and back - t <= 3.0
    second(back + 0.1)
    out = sent(cam)
    assert out[-1][1] & 0x7F == 96 and payload_range(out[-1])[0] < payload_range(out[-1])[1]  # video again
