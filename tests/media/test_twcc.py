"""Transport-wide congestion control: the feedback wire format (against a browser's packet and by
round trip), the SDP that negotiates it, the transport-wide sequence numbers the C fan-out stamps
on a subscriber's packets, matching a subscriber's feedback with what was sent, and the feedback
the SFU sends a publisher."""

from __future__ import annotations

import struct
import time
from typing import Any

import pytest
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, pack_remb_fci
from hypothesis import given, settings
from hypothesis import strategies as st

from media import twcc
from media.gcc import PacketResult, SendSideEstimator
from media.rtp import URI_ABS_SEND_TIME, URI_MID, add_extension, extension_offsets, find_extension, payload_range
from media.sdp import accept_transport_cc, offer_transport_cc, transport_cc_id
from media.transportcc import ArrivalRecorder, match_feedback, split_estimate
from media.twcc import URI_TRANSPORT_CC, TransportFeedback, build_feedback, feedback_packets, parse
from tests.media.test_forwarding import DELTA, Capture, KEY, make_consumer, make_producer, rtp, sent

# A feedback Chromium sent (kept in mediasoup's parser tests): base 39, 13 statuses in one one-bit
# vector (7 received, 3 lost, 3 received), reference time 0x5FC2F1, feedback count 3.
CHROMIUM_FEEDBACK = bytes([
    0x8F, 0xCD, 0x00, 0x07, 0xFA, 0x17, 0xFA, 0x17, 0x09, 0xFA, 0xFF, 0x67, 0x00, 0x27, 0x00, 0x0D,
    0x5F, 0xC2, 0xF1, 0x03, 0xBF, 0x8E, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1C, 0x04, 0x00,
])


# ---------------------------------------------------------------- wire format


def test_a_browsers_feedback_parses_and_serializes_to_the_same_bytes() -> None:
    fb = parse(CHROMIUM_FEEDBACK)
    assert (fb.sender_ssrc, fb.media_ssrc) == (0xFA17FA17, 0x09FAFF67)
    assert (fb.base_seq, fb.status_count, fb.reference_time, fb.fb_count) == (39, 13, 0x5FC2F1, 3)
    assert fb.deltas == (16, 0, 0, 0, 0, 0, 0, None, None, None, 28, 4, 0)
    arrivals = list(fb.arrivals_us())
    assert [s for s, a in arrivals if a is None] == [46, 47, 48]
    ref_us = 0x5FC2F1 * 64_000
    assert arrivals[0] == (39, ref_us + 16 * 250)
    assert arrivals[10] == (49, ref_us + (16 + 28) * 250)
    assert fb.serialize() == CHROMIUM_FEEDBACK


def test_negative_reference_time_and_empty_feedback() -> None:
    data = bytes([0x8F, 0xCD, 0x00, 0x04, 0xFA, 0x17, 0xFA, 0x17, 0x09, 0xFA, 0xFF, 0x67,
                  0x00, 0x27, 0x00, 0x00, 0xFF, 0xFF, 0xFE, 0x01])
    fb = parse(data)
    assert fb.reference_time == -2 and fb.deltas == () and fb.fb_count == 1
    assert fb.serialize() == data


def test_chunk_kinds_run_length_two_bit_vector_and_large_deltas() -> None:
    # 1 received then 1000 lost: a one-bit vector (1 + 13 lost), then a run of the other 987 lost;
    # a negative and a large delta at the end: a two-bit vector
    deltas: list[int | None] = [4] + [None] * 1000 + [8, -4, 1000, 3]
    fb = TransportFeedback(1, 2, 65000, 100, 7, tuple(deltas))
    data = fb.serialize()
    assert len(data) % 4 == 0 and struct.unpack_from(">H", data, 2)[0] == len(data) // 4 - 1
    back = parse(data)
    assert back == fb
    chunks = [struct.unpack_from(">H", data, 20 + 2 * i)[0] for i in range(3)]
    assert chunks[0] == 0x8000 | (1 << 13)  # one-bit vector: received, then 13 × not received
    assert chunks[1] == 987  # run of 987 "not received"
    assert chunks[2] >> 14 == 0b11  # two-bit vector: small, large (negative), large, small
    assert [s for s, a in back.arrivals_us() if a is not None] == [65000, 65000 + 1001 - 65536, 466, 467, 468]


def test_padding_sets_the_p_bit_and_parses_back() -> None:
    fb = TransportFeedback(1, 2, 10, 0, 0, (1,))
    data = fb.serialize()
    assert data[0] & 0x20 and data[-1] == len(data) - 23  # 20 header + 2 chunk + 1 delta, then padding
    assert parse(data) == fb


@pytest.mark.parametrize("bad", [
    b"",
    CHROMIUM_FEEDBACK[:19],
    CHROMIUM_FEEDBACK[:-4],  # length field says more
    bytes([0x8E]) + CHROMIUM_FEEDBACK[1:],  # FMT 14
    bytes([0x4F]) + CHROMIUM_FEEDBACK[1:],  # version 1
    CHROMIUM_FEEDBACK[:14] + b"\x00\x40" + CHROMIUM_FEEDBACK[16:],  # 64 statuses, chunks run out
    CHROMIUM_FEEDBACK[:20] + b"\x60\x05" + CHROMIUM_FEEDBACK[22:],  # run of the reserved symbol
])
def test_malformed_feedback_raises_value_error(bad: bytes) -> None:
    with pytest.raises(ValueError):
        parse(bad)


_delta = st.one_of(st.none(), st.integers(0, 255), st.integers(-0x8000, 0x7FFF))


@settings(max_examples=300, deadline=None)
@given(st.lists(_delta, max_size=300), st.integers(0, 0xFFFF), st.integers(-(1 << 23), (1 << 23) - 1),
       st.integers(0, 255))
def test_any_feedback_round_trips(deltas: list[int | None], base: int, ref: int, count: int) -> None:
    fb = TransportFeedback(0x11111111, 0x22222222, base, ref, count, tuple(deltas))
    data = fb.serialize()
    assert parse(data) == fb
    assert feedback_packets(b"\x81\xc9\x00\x01\x00\x00\x00\x01" + data) == [data]  # found in a compound


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=120))
def test_random_bytes_raise_nothing_but_value_error(data: bytes) -> None:
    for candidate in (data, bytes([0x8F, 0xCD]) + struct.pack(">H", max(0, (len(data) + 4) // 4 - 1)) + data):
        try:
            parse(candidate)
        except ValueError:
            pass
        feedback_packets(candidate)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(CHROMIUM_FEEDBACK) - 1), st.integers(0, 255))
def test_a_corrupted_browser_feedback_raises_nothing_but_value_error(pos: int, value: int) -> None:
    data = bytearray(CHROMIUM_FEEDBACK)
    data[pos] = value
    try:
        parse(bytes(data))
    except ValueError:
        pass


def test_built_feedback_keeps_arrival_times_without_drift() -> None:
    # 400 packets every 1.1 ms (not a multiple of 250 µs), one lost in ten
    base_us = 123_456_789
    arrivals = [None if i % 10 == 3 else base_us + i * 1100 for i in range(400)]
    fb = build_feedback(1, 2, 65500, arrivals, 9)
    back = parse(fb.serialize())
    got = dict(back.arrivals_us())
    for i, a in enumerate(arrivals):
        seq = (65500 + i) & 0xFFFF
        if a is None:
            assert got[seq] is None
        else:
            assert abs(got[seq] - a) < 250  # rounded once, never accumulated
    with pytest.raises(ValueError):
        build_feedback(1, 2, 0, [None, None], 0)


# ---------------------------------------------------------------- SDP

CHROME_OFFER = "\r\n".join([
    "v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0 1",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111", "c=IN IP4 0.0.0.0", "a=mid:0", "a=sendonly",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    f"a=extmap:3 {URI_TRANSPORT_CC}", "a=rtpmap:111 opus/48000/2", "a=rtcp-fb:111 transport-cc",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97", "c=IN IP4 0.0.0.0", "a=mid:1", "a=sendonly",
    f"a=extmap:3 {URI_TRANSPORT_CC}", "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=rtpmap:96 VP8/90000", "a=rtcp-fb:96 goog-remb", "a=rtcp-fb:96 transport-cc", "a=rtcp-fb:96 nack",
    "a=rtpmap:97 rtx/90000", "a=fmtp:97 apt=96", "",
])

AIORTC_ANSWER = "\r\n".join([
    "v=0", "o=- 3 4 IN IP4 0.0.0.0", "s=-", "t=0 0", "a=group:BUNDLE 0 1",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111", "c=IN IP4 0.0.0.0", "a=mid:0", "a=recvonly",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level", "a=rtpmap:111 opus/48000/2",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97", "c=IN IP4 0.0.0.0", "a=mid:1", "a=recvonly",
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid", "a=rtpmap:96 VP8/90000", "a=rtcp-fb:96 nack",
    "a=rtpmap:97 rtx/90000", "a=fmtp:97 apt=96", "",
])


def test_the_sfu_answers_a_publishers_transport_cc_with_the_offered_id() -> None:
    answer, ext_id = accept_transport_cc(CHROME_OFFER, AIORTC_ANSWER)
    assert ext_id == 3 and transport_cc_id(answer) == 3
    video = answer.split("m=video")[1]
    assert f"a=extmap:3 {URI_TRANSPORT_CC}" in video and "a=rtcp-fb:96 transport-cc" in video
    assert "a=rtcp-fb:97 transport-cc" not in video  # not for RTX
    assert "a=rtcp-fb:111 transport-cc" in answer.split("m=video")[0]
    # an offer without it gets an answer without it
    plain_offer = "\r\n".join(line for line in CHROME_OFFER.split("\r\n") if "transport-cc" not in line)
    assert accept_transport_cc(plain_offer, AIORTC_ANSWER) == (AIORTC_ANSWER, 0)


def test_the_sfu_offers_transport_cc_to_subscribers_and_reads_the_answers_id() -> None:
    offer = offer_transport_cc(AIORTC_ANSWER)
    for section in offer.split("m=")[2:]:
        assert f"a=extmap:5 {URI_TRANSPORT_CC}" in section
    assert "a=rtcp-fb:96 transport-cc" in offer and "a=rtcp-fb:111 transport-cc" in offer
    assert "a=rtcp-fb:97 transport-cc" not in offer
    assert transport_cc_id(offer) == 5
    assert transport_cc_id(AIORTC_ANSWER) == 0  # a receiver that did not accept it (aiortc)
    extmap_only = "\r\n".join(line for line in offer.split("\r\n") if "rtcp-fb" not in line)
    assert transport_cc_id(extmap_only) == 0  # without feedback a browser sends none


# ---------------------------------------------------------------- stamping (send side)


def test_add_extension_keeps_other_elements_and_the_payload() -> None:
    pkt = rtp(7, 100, 1, b"payload")
    before = extension_offsets(pkt)
    out, off = add_extension(pkt, 5, 2)
    after = extension_offsets(out)
    assert {k: v for k, v in after.items() if k != 5} == before and after[5] == (off, 2)
    start, end = payload_range(out)
    assert out[start:end] == b"payload"
    bare = struct.pack(">BBHII", 0x80, 96, 1, 2, 3) + b"xyz"
    out, off = add_extension(bare, 5, 2)
    assert find_extension(out, 5) == off and out[payload_range(out)[0]:] == b"xyz"


def _twcc_seq(pkt: bytes, ext_id: int = 5) -> int:
    off = find_extension(pkt, ext_id)
    assert off >= 0, "packet has no transport-wide sequence number"
    return struct.unpack_from(">H", pkt, off)[0]


def _twcc_consumer(cid: str, producer_id: str, kind: str = "video") -> Any:
    consumer = make_consumer(producer_id, kind=kind)
    consumer.consumer_id = cid
    return consumer


def test_a_subscriber_sees_consecutive_transport_wide_numbers_across_its_tracks_and_retransmissions() -> None:
    camera, _ = make_producer(pid="main:camera")
    screen, _ = make_producer(pid="main:screen")
    a = _twcc_consumer("a", "main:camera")
    b = _twcc_consumer("b", "main:screen")
    b.transport = a.transport  # one subscriber transport, two tracks
    b.sink.writer = a.transport.writer.c
    writer = a.transport.writer
    writer.twcc_id = 5
    extmap = {URI_MID: 1, URI_ABS_SEND_TIME: 3, URI_TRANSPORT_CC: 5}
    for c, ssrc in ((a, 0xA), (b, 0xB)):
        c.configure(ssrc=ssrc, rtx_ssrc=ssrc + 0x100, payload_type=96, rtx_payload_type=97, clock_rate=90000,
                    mime="video/VP8", extmap=extmap)
    other = _twcc_consumer("c", "main:camera")  # another subscriber, without transport-cc
    a.bind(camera, now=0.0)
    b.bind(screen, now=0.0)
    other.bind(camera, now=0.0)
    seq = 100
    for i in range(10):
        now = 1.0 + i * 0.01
        camera.streams[0].receive(rtp(seq + i, 3000 * i, 1000, KEY if i == 0 else DELTA), now)
        screen.streams[0].receive(rtp(seq + i, 3000 * i, 1000, KEY if i == 0 else DELTA), now + 0.001)
    a.on_nack([struct.unpack_from(">H", sent(a)[2], 2)[0]], now=2.0)  # one retransmission (RTX)
    out = sent(a)  # the transport's socket: both tracks and the RTX
    assert len(out) == 21
    numbers = [_twcc_seq(p) for p in out]
    assert numbers == list(range(21))
    ssrcs = {struct.unpack_from(">I", p, 8)[0] for p in out}
    assert ssrcs == {0xA, 0xB, 0xA + 0x100}
    for p in out:  # the element did not damage the payload
        start, end = payload_range(p)
        assert p[start:end] in (KEY, DELTA) or p[start + 2:end] in (KEY, DELTA)
    # the writer remembers what it sent: times and sizes for matching feedback
    rec = writer.sent_record(0, now=2.0)
    assert rec is not None and abs(rec[0] - 1.0) < 1e-5 and rec[1] > len(out[0])  # SRTP tag included
    rtx = writer.sent_record(20, now=time.monotonic())  # a resend is timed on the fan-out's clock when sent
    assert rtx is not None and 0 <= time.monotonic() - rtx[0] < 1.0
    assert writer.sent_record(21, now=2.0) is None
    # the subscriber without transport-cc gets no number (and no stray element with a known id)
    assert all(find_extension(p, 5) == -1 for p in sent(other))
    assert len(sent(other)) == 10


# ---------------------------------------------------------------- feedback → estimator


class RecordingEstimator:
    """Records what the transport hands its estimator (the interface of ``SendSideEstimator``)."""

    def __init__(self, target_bps: int = 1_000_000) -> None:
        self.results: list[PacketResult] = []
        self.rtts: list[float] = []
        self.target_bps = target_bps
        self.congested = False
        self.loss_fraction = 0.0

    def on_feedback(self, results: list[PacketResult], now_s: float) -> None:
        self.results.extend(results)

    def on_rtt(self, rtt_s: float, now_s: float) -> None:
        self.rtts.append(rtt_s)


def test_feedback_is_matched_with_send_times_and_sizes() -> None:
    sent_at = {s: (10.0 + s * 0.005, 1000 + s) for s in range(20)}
    arrivals: list[int | None] = [None if s in (4, 5) else int((10.05 + s * 0.005) * 1e6) for s in range(20)]
    fb = build_feedback(1, 2, 0, arrivals, 0)
    fb = TransportFeedback(fb.sender_ssrc, fb.media_ssrc, fb.base_seq, fb.reference_time, fb.fb_count,
                           fb.deltas + (None,))  # and one number the sender never sent
    results = match_feedback(parse(fb.serialize()), sent_at.get, PacketResult)
    assert len(results) == 20
    assert [r.arrival_time_s is None for r in results].count(True) == 2
    assert results[4].arrival_time_s is None and results[4].send_time_s == sent_at[4][0]
    one_way = [r.arrival_time_s - r.send_time_s for r in results if r.arrival_time_s is not None]
    assert max(one_way) - min(one_way) < 0.0005  # constant delay survives the 250 µs units
    assert [r.size for r in results] == [1000 + s for s in range(20)]


def test_the_transport_feeds_its_estimator_and_the_video_gates_from_feedback() -> None:
    from media.transport import WebRtcTransport
    from media.ice import IcePolicy

    transport = WebRtcTransport("t", "p", "recv", IcePolicy(), on_state=lambda t, s: None)
    transport.writer.twcc_id = 5
    transport.estimator = RecordingEstimator(target_bps=1_000_000)
    # packets 0..9 as the C fan-out records them in the writer's ring, sent 1 s ago
    ring = transport.writer.c.twcc_ring
    sent_at = time.monotonic() - 1.0
    for s in range(10):
        ring[s].seq = s
        ring[s].size = 1200
        ring[s].send_us = int((sent_at + s * 0.01) * 1e6) & 0xFFFFFFFF
    fb = build_feedback(7, 0, 0, [int((3.0 + s * 0.01) * 1e6) for s in range(10)], 0)
    compound = bytes.fromhex("81c90001deadbeef") + fb.serialize()
    transport._handle_rtcp(compound)
    transport._handle_rtcp(b"\x8f\xcd\x00\x02garbage!")  # bad feedback: dropped, counted
    results = transport.estimator.results
    assert len(results) == 10 and all(r.size == 1200 and r.arrival_time_s is not None for r in results)
    assert abs(results[9].send_time_s - results[0].send_time_s - 0.09) < 1e-5
    assert abs(results[9].arrival_time_s - results[0].arrival_time_s - 0.09) < 0.0005
    assert transport.twcc_active(transport.twcc_feedback_at) and transport.twcc_bad == 1

    # the estimate, audio first, is what the video gates see; the subscriber's REMB no longer counts
    camera, _ = make_producer(pid="main:camera")
    screen, _ = make_producer(pid="main:screen")
    voice, _ = make_producer(pid="main:microphone", kind="audio")
    video_a, video_b, audio = (_twcc_consumer("a", "main:camera"), _twcc_consumer("b", "main:screen"),
                               _twcc_consumer("m", "main:microphone", kind="audio"))
    now = time.monotonic()
    for i, (c, p) in enumerate(((video_a, camera), (video_b, screen), (audio, voice))):
        c.bind(p, now)
        c.ssrc = 0xA0 + i
        transport.consumers[c.consumer_id] = c
        transport.consumers_by_ssrc[c.ssrc] = c
    camera.layer_bitrates = lambda now: [1_500_000]  # type: ignore[method-assign]
    screen.layer_bitrates = lambda now: [500_000]  # type: ignore[method-assign]
    capture = Capture(transport.writer)  # the once-a-second RTCP tick needs an open writer
    transport.rtcp_tick(now)
    capture.close()
    assert video_a.gate.estimate_bps == 702_000 and video_b.gate.estimate_bps == 234_000  # type: ignore[union-attr]
    remb = bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=pack_remb_fci(50_000, [video_a.ssrc])))
    transport._handle_rtcp(remb)
    assert transport.remb_bps == 50_000 and video_a.gate.estimate_bps == 702_000  # type: ignore[union-attr]
    assert transport.sample(now)["estimate_kbps"] == 1000
    transport.twcc_feedback_at = now - 10  # feedback stopped: REMB is back in charge
    transport._handle_rtcp(remb)
    assert video_a.gate.estimate_bps == 50_000 and transport.sample(now)["estimate_kbps"] is None  # type: ignore[union-attr]
    assert split_estimate(1_000_000, 2, [1_500_000, 500_000]) == [654_000, 218_000]
    assert split_estimate(100_000, 2, [1_000_000]) == [0]


def test_the_real_estimator_takes_matched_feedback() -> None:
    estimator = SendSideEstimator(start_bps=1_000_000, min_bps=50_000, max_bps=5_000_000)
    sent_at = {s: (10.0 + s * 0.004, 1200) for s in range(500)}  # 2.4 Mbit/s for 2 s
    t = 10.0
    for start in range(0, 500, 25):  # feedback every 100 ms, 40 ms one-way, nothing lost
        arrivals: list[int | None] = [int((sent_at[s][0] + 0.04) * 1e6) for s in range(start, start + 25)]
        fb = parse(build_feedback(1, 2, start, arrivals, start // 25).serialize())
        t = sent_at[start + 24][0] + 0.05
        estimator.on_feedback(match_feedback(fb, sent_at.get, PacketResult), t)
    assert estimator.acked_bps > 2_000_000 and estimator.target_bps >= 1_000_000


# ---------------------------------------------------------------- publisher side (receive)


def test_feedback_to_a_publisher_covers_its_numbers_and_says_which_were_lost() -> None:
    rec = ArrivalRecorder()
    rec.ext_id = 3
    t0 = 100.0
    lost = {65534, 2, 3}
    for i in range(40):
        seq = (65530 + i) & 0xFFFF  # wraps
        if seq in lost:
            continue
        pkt, off = add_extension(struct.pack(">BBHII", 0x80, 96, i, 0, 1) + b"x" * 100, 3, 2)
        pkt[off:off + 2] = struct.pack(">H", seq)
        rec.record(bytes(pkt), t0 + i * 0.005)
    packets = rec.feedback(0x1234, 0x5678, t0 + 0.3)
    assert packets and rec.feedback(0x1234, 0x5678, t0 + 0.4) == []  # nothing new: nothing sent
    statuses: dict[int, int | None] = {}
    for data in packets:
        fb = parse(data)
        assert fb.sender_ssrc == 0x1234 and fb.media_ssrc == 0x5678
        statuses.update(fb.arrivals_us())
    assert set(statuses) == {(65530 + i) & 0xFFFF for i in range(40)}
    assert {s for s, a in statuses.items() if a is None} == lost
    first = statuses[65530]
    assert first is not None and abs(statuses[10] - first - 16 * 5000) < 500  # type: ignore[operator]
    # a packet without the element is ignored; a duplicate of the highest is nothing new; later
    # numbers go on from where the feedback stopped
    rec.record(struct.pack(">BBHII", 0x80, 96, 1, 0, 1), t0 + 1)
    assert rec.feedback(1, 2, t0 + 1) == []
    late, off = add_extension(struct.pack(">BBHII", 0x80, 96, 1, 0, 1), 3, 2)
    late[off:off + 2] = struct.pack(">H", 33)
    rec.record(bytes(late), t0 + 1.1)  # 33, the highest, again (a duplicate): still nothing new
    assert rec.feedback(1, 2, t0 + 1.1) == []
    late[off:off + 2] = struct.pack(">H", 34)
    rec.record(bytes(late), t0 + 1.2)
    (only,) = rec.feedback(1, 2, t0 + 1.2)
    assert [s for s, _ in parse(only).arrivals_us()] == [34]


def test_padding_probes_are_numbered_and_timed_on_the_fan_outs_clock() -> None:
    from media.probe import padding_packet

    consumer = _twcc_consumer("p", "main:camera")
    writer = consumer.transport.writer
    writer.twcc_id = 5
    writer.send_rtp(padding_packet(97, 1, 0, 0xBEEF, ast_id=3, now_s=1.0))
    writer.send_rtp(padding_packet(97, 2, 0, 0xBEEF))  # no extension at all: the element is added
    (first, second) = sent(consumer)
    assert _twcc_seq(first) == 0 and _twcc_seq(second) == 1
    assert payload_range(second)[1] == payload_range(second)[0]  # still padding only
    now = time.monotonic()
    for seq in (0, 1):
        rec = writer.sent_record(seq, now)
        assert rec is not None and 0 <= now - rec[0] < 1.0


def test_a_failing_probe_is_cut_from_its_first_feedback_and_judged_when_its_feedback_is_complete() -> None:
    """A probe up into a 300 kbit/s cap: its first feedback shows the path carrying half of it, so the padding
    stops there (not after the whole half-second); the feedback that reaches past the cut completes the
    window and the next tick judges it at once (not after a fixed grace); the cap it found makes the next
    try a gentle scout, not the next layer's whole rate again."""
    from media import bwe
    from media.ice import IcePolicy
    from media.transport import WebRtcTransport

    transport = WebRtcTransport("t", "p", "recv", IcePolicy(), on_state=lambda t, s: None)
    transport.writer.twcc_id = 5
    transport.estimator = SendSideEstimator(start_bps=2_000_000, min_bps=50_000, max_bps=10_000_000)
    camera, _ = make_producer(layers=3, pid="main:camera")
    rates = [150_000, 500_000, 1_500_000]
    camera.layer_bitrates = lambda now: list(rates)  # type: ignore[method-assign]
    consumer = _twcc_consumer("a", "main:camera")
    t = 1000.0
    consumer.bind(camera, now=t)
    transport.consumers[consumer.consumer_id] = consumer
    transport.consumers_by_ssrc[consumer.ssrc] = consumer
    gate = consumer.gate
    assert gate is not None
    gate.measured = True
    while gate.probe is None:  # on the lowest layer (a capped link), until the probe up starts
        t = round(t + 0.05, 6)
        consumer.on_remb(200_000, t)
        consumer.tick(t)
        assert t < 1030.0
    start = t
    assert gate.layer == 0 and gate.probe.bps == rates[1] - rates[0] and consumer.probe_window == (start, start + 0.5)
    assert consumer.pacer is not None

    # what the transport sent from the probe's start: 250-byte packets at 600 kbit/s, through a 300 kbit/s cap
    ring = transport.writer.c.twcc_ring
    sends = [start + i * 250 * 8 / 600_000 for i in range(120)]  # 0.4 s of sending
    arrivals: list[float] = []
    for s in sends:
        arrivals.append(max(s + 0.01, arrivals[-1] + 250 * 8 / 300_000) if arrivals else s + 0.01)
    for seq, s in enumerate(sends):
        ring[seq].seq = seq
        ring[seq].size = 250
        ring[seq].send_us = int(s * 1e6) & 0xFFFFFFFF

    def feedback(first: int, last: int, at: float) -> None:
        fb = build_feedback(7, 0, first, [int(a * 1e6) for a in arrivals[first:last]], first)
        transport.on_twcc_feedback(parse(fb.serialize()), at)

    n1 = sum(1 for a in arrivals if a <= start + 0.2)  # what had arrived 0.2 s into the probe
    assert n1 >= 20
    feedback(0, n1, start + 0.2)
    assert gate.probe is None and consumer.pacer is None  # cut: no more padding into the cap
    assert consumer.probe_window == (start, start + 0.2) and not consumer.probe_covered
    n2 = sum(1 for a in arrivals if a <= start + 0.5)
    assert sends[n2 - 1] > start + 0.2  # this feedback reaches past the cut
    feedback(n1, n2, start + 0.5)
    assert consumer.probe_covered
    capture = Capture(transport.writer)
    try:
        transport.rtcp_tick(start + 0.52)  # before the cut + PROBE_GRACE_S: judged because it is complete
    finally:
        capture.close()
    assert start + 0.52 < start + 0.2 + bwe.PROBE_GRACE_S
    assert consumer.probe_window is None and gate.layer == 0 and gate.probes_passed == 0
    assert gate.next_probe_at == pytest.approx(start + 0.52 + bwe.SCOUT_EVERY_S)
    t = gate.next_probe_at
    consumer.on_remb(200_000, t)
    consumer.tick(t)
    assert gate.probe is not None and 0 < gate.probe.bps < rates[1] - rates[0]  # a scout, gentler than the layer
