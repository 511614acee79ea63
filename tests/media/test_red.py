"""RED (RFC 2198) audio: the wire format, the SFU's conversion between RED and plain Opus, and
its negotiation.

* Wire format: round trips, a browser's packet, and fuzzing (only ``ValueError`` on junk).
* Forwarding without a network (fake transports around a real ``SrtpWriter``, as in
  ``test_forwarding``): RED passes through to a RED subscriber with its Opus payload type, is
  unwrapped for a plain subscriber (lost packets rebuilt from the redundancy) and for the recorder,
  and plain Opus is wrapped for a RED subscriber.
* Through a Router with aiortc peers on 127.0.0.1: an aiortc publisher of plain Opus and a
  subscriber whose answer takes RED (aiortc has no RED: the answer is munged and the test reads
  the packets below aiortc's receiver) gets RED whose redundant blocks are the previous primaries;
  a publisher whose audio the test turns into RED and drops 20 % of, to a plain subscriber, which
  still gets every Opus payload.
"""

from __future__ import annotations

import asyncio
import random
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.rtp import RtcpReceiverInfo
from hypothesis import given, settings
from hypothesis import strategies as st

from media import ice, red
from media.ice import IcePolicy
from media import redforward
from media.redforward import RedDepth, RedUnwrapper, RedWrapper
from media.router import Router
from media.rtp import payload_range
from media.sdp import accept_red, offer_red, red_payload_types
from tests.media.sfu_helpers import ToneTrack
from tests.utils.wait import until
from tests.media.test_forwarding import make_consumer, make_producer, rtp, sent

OPUS_PT = 100
"""The publisher's Opus payload type in the fake forwarding tests (``make_producer``)."""
RED_PT = 63

# ---------------------------------------------------------------------- wire format


def test_a_browsers_red_packet_parses_into_its_blocks() -> None:
    # two redundant blocks (offsets 1920 and 960, 3 and 2 bytes), then the primary: Opus PT 111
    data = bytes([0x80 | 111, 1920 >> 6, (1920 & 0x3F) << 2, 3,
                  0x80 | 111, 960 >> 6, (960 & 0x3F) << 2, 2,
                  111]) + b"AAA" + b"BB" + b"primary"
    parsed = red.parse(data)
    assert parsed.payload_type == 111
    assert parsed.primary == b"primary"
    assert [(b.payload_type, b.ts_offset, b.data) for b in parsed.redundant] == [(111, 1920, b"AAA"), (111, 960, b"BB")]
    assert red.primary_offset(data) == len(data) - len(b"primary")
    assert red.block_count(data) == 2
    assert red.redundant_block(data, 1) == (111, 960, 12, 14)
    assert red.to_bytes(parsed) == data


def test_the_first_packet_of_a_stream_has_only_its_primary() -> None:
    data = red.build(111, b"\xfc\x01\x02")
    assert data == bytes([111]) + b"\xfc\x01\x02"
    assert red.parse(data).redundant == []


def test_block_payload_types_are_rewritten_in_place() -> None:
    buf = bytearray(b"HDR" + red.build(111, b"p", [(111, 960, b"r")]))
    red.set_block_payload_type(buf, 3, 96)
    parsed = red.parse(bytes(buf[3:]))
    assert parsed.payload_type == 96 and parsed.redundant[0].payload_type == 96
    assert parsed.primary == b"p" and parsed.redundant[0].data == b"r"


@pytest.mark.parametrize("data", [b"", bytes([0x80 | 111, 0, 0]), bytes([0x80 | 111, 0, 0, 9, 111]) + b"abc",
                                  bytes([0x80 | 111, 0, 0, 1])])
def test_truncated_red_is_a_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        red.parse(data)
    with pytest.raises(ValueError):
        red.primary_offset(data)


def test_fields_that_do_not_fit_are_refused_when_building() -> None:
    with pytest.raises(ValueError):
        red.build(111, b"p", [(111, red.MAX_TS_OFFSET + 1, b"r")])
    with pytest.raises(ValueError):
        red.build(111, b"p", [(111, 960, b"r" * (red.MAX_BLOCK_LENGTH + 1))])
    with pytest.raises(ValueError):
        red.build(128, b"p")


blocks = st.lists(st.tuples(st.integers(0, 127), st.integers(0, red.MAX_TS_OFFSET),
                            st.binary(max_size=red.MAX_BLOCK_LENGTH)), max_size=3)


@settings(max_examples=300, deadline=None)
@given(pt=st.integers(0, 127), primary=st.binary(max_size=1200), redundant=blocks)
def test_build_and_parse_round_trip(pt: int, primary: bytes, redundant: list[tuple[int, int, bytes]]) -> None:
    data = red.build(pt, primary, redundant)
    parsed = red.parse(data)
    assert parsed.payload_type == pt and parsed.primary == primary
    assert [(b.payload_type, b.ts_offset, b.data) for b in parsed.redundant] == redundant
    assert red.to_bytes(parsed) == data
    assert data[red.primary_offset(data):] == primary


@settings(max_examples=1000, deadline=None)
@given(data=st.binary(max_size=64))
def test_junk_raises_value_error_and_nothing_else(data: bytes) -> None:
    for parse in (red.parse, red.primary_offset, red.block_count, lambda d: red.redundant_block(d, 0)):
        try:
            parse(data)
        except ValueError:
            pass


@settings(max_examples=300, deadline=None)
@given(payload=st.binary(max_size=64), drop=st.booleans())
def test_junk_red_packets_only_raise_value_error_in_the_unwrapper(payload: bytes, drop: bool) -> None:
    unwrapper = RedUnwrapper(OPUS_PT)
    unwrapper.unwrap(rtp(1, 960, 1, red.build(OPUS_PT, b"x")))
    try:
        unwrapper.unwrap(rtp(3 if drop else 2, 2880, 1, payload, pt=RED_PT))
    except ValueError:
        pass


# ---------------------------------------------------------------------- forwarding (no network)

def opus(i: int) -> bytes:
    """The test's Opus payload number ``i`` (distinct, of varying length)."""
    return bytes([0xFC, i & 0xFF]) + struct.pack(">I", i) * (1 + i % 5)


def red_of(i: int, distance: int = 2) -> bytes:
    """What a browser sends for packet ``i``: its payload with the previous ``distance`` as redundancy."""
    prev = [(OPUS_PT, 960 * k, opus(i - k)) for k in range(min(distance, i), 0, -1)]
    return red.build(OPUS_PT, opus(i), prev)


def audio_producer(red_pt: int | None) -> Any:
    producer, transport = make_producer(kind="audio", pid="main:microphone")
    producer.red_payload_type = red_pt
    return producer


def audio_consumer(red_pt: int | None, opus_pt: int = 96) -> Any:
    consumer = make_consumer("main:microphone", kind="audio")
    consumer.configure(ssrc=0xC0FFEE, rtx_ssrc=0, payload_type=opus_pt, rtx_payload_type=None, clock_rate=48000,
                       mime="audio/opus", extmap=consumer.extmap, red_payload_type=red_pt)
    return consumer


def payloads(packets: list[bytes]) -> list[tuple[int, int, int, bytes]]:
    """(seq, ts, pt, payload) of received packets, in arrival order."""
    out = []
    for p in packets:
        start, end = payload_range(p)
        seq, ts = struct.unpack_from(">HI", p, 2)
        out.append((seq, ts, p[1] & 0x7F, p[start:end]))
    return out


def test_red_from_the_publisher_passes_to_a_red_subscriber_with_its_opus_payload_type() -> None:
    producer = audio_producer(RED_PT)
    same, other = audio_consumer(110, opus_pt=OPUS_PT), audio_consumer(110, opus_pt=111)
    for c in (same, other):
        c.bind(producer, time.monotonic())
    assert same.red and other.red
    for i in range(5):
        producer.streams[0].receive(rtp(i, 960 * i, 1000, red_of(i), pt=RED_PT), time.monotonic())
    for consumer, inner in ((same, OPUS_PT), (other, 111)):
        got = payloads(sent(consumer))
        assert len(got) == 5
        for i, (_, _, pt, payload) in enumerate(got):
            parsed = red.parse(payload)
            assert pt == 110
            assert parsed.primary == opus(i)
            assert [b.data for b in parsed.redundant] == [opus(i - k) for k in range(min(2, i), 0, -1)]
            assert {parsed.payload_type, *(b.payload_type for b in parsed.redundant)} == {inner}


def test_red_to_a_plain_subscriber_is_unwrapped_and_lost_packets_are_rebuilt() -> None:
    producer = audio_producer(RED_PT)
    plain = audio_consumer(None)
    plain.bind(producer, time.monotonic())
    assert not plain.red
    rng = random.Random(11)
    lost = set()
    run = 0
    for i in range(1, 400):
        if i > 3 and run < 2 and rng.random() < 0.2:  # 20 % loss, at most two in a row
            lost.add(i)
            run += 1
            continue
        run = 0
        producer.streams[0].receive(rtp(i, 960 * i, 1000, red_of(i), pt=RED_PT, marker=False), time.monotonic())
        if i % 50 == 0:
            sent(plain)  # read the capture socket before its buffer fills
    assert len(lost) > 50
    got = payloads(sent(plain))
    seqs = [s for s, _, _, _ in got]
    assert seqs == [(seqs[0] + k) & 0xFFFF for k in range(399)], "a gap or a duplicate reached the subscriber"
    assert [p for _, _, _, p in got] == [opus(i) for i in range(1, 400)]
    assert {pt for _, _, pt, _ in got} == {96}
    ts = [t for _, t, _, _ in got]
    assert all((b - a) & 0xFFFFFFFF == 960 for a, b in zip(ts, ts[1:]))
    assert producer.streams[0].unwrapper.recovered == len(lost)


def test_a_late_original_of_a_rebuilt_packet_is_not_sent_twice() -> None:
    producer = audio_producer(RED_PT)
    plain = audio_consumer(None)
    plain.bind(producer, time.monotonic())
    stream = producer.streams[0]
    for i in (1, 2, 4, 3, 5):  # 3 arrives after 4, which carried it
        stream.receive(rtp(i, 960 * i, 1000, red_of(i), pt=RED_PT), time.monotonic())
    assert [p for _, _, _, p in payloads(sent(plain))] == [opus(i) for i in (1, 2, 3, 4, 5)]


def test_plain_opus_to_a_red_subscriber_carries_the_previous_two_payloads() -> None:
    producer = audio_producer(None)
    red_sub, plain_sub = audio_consumer(RED_PT), audio_consumer(None)
    for c in (red_sub, plain_sub):
        c.bind(producer, time.monotonic())
    for i in range(10):
        if i == 6:
            continue  # lost on the way to the SFU: packet 7's redundancy does not pretend to have it
        producer.streams[0].receive(rtp(i, 960 * i, 1000, opus(i), pt=OPUS_PT), time.monotonic())
    got = payloads(sent(red_sub))
    assert [pt for _, _, pt, _ in got] == [RED_PT] * 9
    expected = {0: [], 1: [0], 2: [0, 1], 7: [5], 8: [7]}
    for (_, _, _, payload), i in zip(got, [0, 1, 2, 3, 4, 5, 7, 8, 9]):
        parsed = red.parse(payload)
        assert parsed.primary == opus(i) and parsed.payload_type == 96
        want = expected.get(i, [i - 2, i - 1])
        assert [b.data for b in parsed.redundant] == [opus(k) for k in want]
        assert [b.ts_offset for b in parsed.redundant] == [960 * (i - k) for k in want]
    assert [p for _, _, _, p in payloads(sent(plain_sub))] == [opus(i) for i in range(10) if i != 6]


def _report(loss: float) -> RtcpReceiverInfo:
    return RtcpReceiverInfo(ssrc=0xC0FFEE, fraction_lost=int(loss * 256), packets_lost=0, highest_sequence=1,
                            jitter=0, lsr=0, dlsr=0)


def test_a_very_lossy_subscriber_gets_a_browsers_red_deepened_to_two_copies_and_back() -> None:
    """Chromium's RED repeats one payload: at 20 % loss ~4 % of the audio is lost twice.  A subscriber whose
    receiver reports show that much loss gets two copies instead (the unwrapped payloads, recovered ones
    included, re-wrapped); the others keep the publisher's RED as it is; after ten quiet seconds it is
    back to one."""
    producer = audio_producer(RED_PT)
    lossy, fine = audio_consumer(RED_PT), audio_consumer(RED_PT)
    now = time.monotonic()
    for c in (lossy, fine):
        c.bind(producer, now)
    stream = producer.streams[0]
    lossy.on_receiver_report(_report(0.2), now)
    fine.on_receiver_report(_report(0.01), now)
    assert lossy.red_depth.deep and not fine.red_depth.deep
    for i in range(1, 12):
        if i == 6:
            continue  # lost on the way to the SFU: packet 7's one copy brings it back
        stream.receive(rtp(i, 960 * i, 1000, red_of(i, distance=1), pt=RED_PT), now)
    deep = [red.parse(p) for _, _, _, p in payloads(sent(lossy))]
    assert [b.primary for b in deep] == [opus(i) for i in range(1, 12)]  # 6 rebuilt from 7's copy
    for i, parsed in zip(range(1, 12), deep):
        want = [k for k in (i - 2, i - 1) if k >= 1]
        assert [b.data for b in parsed.redundant] == [opus(k) for k in want], i
    as_is = [red.parse(p) for _, _, _, p in payloads(sent(fine))]
    assert [len(b.redundant) for b in as_is] == [1] * 10  # the publisher's own packets (6 missing)
    # quiet: still deep for a while (hysteresis), then one copy again
    for k in range(1, 12):
        lossy.on_receiver_report(_report(0.0), now + k)
        assert lossy.red_depth.deep == (k < 1 + redforward.SHALLOW_AFTER_S)  # quiet since the first
    stream.receive(rtp(12, 960 * 12, 1000, red_of(12, distance=1), pt=RED_PT), now + 12)
    got = payloads(sent(lossy))  # (the capture keeps everything sent to it)
    assert len(got) == 12
    back = red.parse(got[-1][3])
    assert back.primary == opus(12) and [b.data for b in back.redundant] == [opus(11)]


def test_a_subscriber_whose_path_is_full_is_not_deepened() -> None:
    """Under a cap the loss is the queue overflowing: another copy would only feed it (measured: with it the
    low layer under a 300 kbit/s cap lost ~15 % and froze half the time).  A full path is never deepened,
    and a deepened one goes back to one copy the moment its path fills."""
    producer = audio_producer(RED_PT)
    sub = audio_consumer(RED_PT)
    now = time.monotonic()
    sub.bind(producer, now)
    sub.transport.congested = True
    sub.on_receiver_report(_report(0.2), now)
    assert not sub.red_depth.deep
    sub.transport.congested = False
    sub.on_receiver_report(_report(0.2), now + 1)
    assert sub.red_depth.deep
    producer.streams[0].receive(rtp(1, 960, 1000, red_of(1, distance=1), pt=RED_PT), now + 1)
    sub.transport.congested = True
    sub.on_receiver_report(_report(0.2), now + 2)
    assert not sub.red_depth.deep
    for i in (2, 3, 4):
        producer.streams[0].receive(rtp(i, 960 * i, 1000, red_of(i, distance=1), pt=RED_PT), now + 2)
    assert [len(red.parse(p).redundant) for _, _, _, p in payloads(sent(sub))][-3:] == [1, 1, 1]


def test_red_depth_has_hysteresis_and_ignores_nonsense() -> None:
    d = RedDepth()
    assert not d.update(0.05, 0.0) and not d.deep
    assert d.update(redforward.DEEP_LOSS, 1.0) and d.deep
    assert not d.update(0.05, 2.0)  # between the two bars: stays
    assert not d.update(0.0, 3.0) and not d.update(0.04, 5.0)  # a loss above the low bar restarts the wait
    assert not d.update(0.0, 6.0) and not d.update(0.0, 6.0 + redforward.SHALLOW_AFTER_S - 0.1)
    assert d.update(0.0, 6.0 + redforward.SHALLOW_AFTER_S) and not d.deep
    assert not d.update(float("nan"), 100.0) and not d.update(-1.0, 100.0) and not d.update(7.0, 100.0)


class _Writer:
    """A subscriber transport's writer that keeps the packets resent to it (plain RTP)."""

    is_open = True

    def __init__(self, keep: list[bytes]) -> None:
        self.send_rtp = keep.append


def test_a_nack_of_a_plain_subscriber_of_a_red_publisher_is_answered_with_opus_and_red_needs_none() -> None:
    producer = audio_producer(RED_PT)
    plain, redsub = audio_consumer(None), audio_consumer(RED_PT)
    for c in (plain, redsub):
        c.bind(producer, time.monotonic())
    for i in (1, 2, 4, 5):  # 3 is rebuilt from 4's redundancy
        producer.streams[0].receive(rtp(i, 960 * i, 1000, red_of(i), pt=RED_PT), time.monotonic())
    first = payloads(sent(plain))[0][0]
    resends: dict[Any, list[bytes]] = {plain: [], redsub: []}
    for c in (plain, redsub):  # read below SRTP: a resend without RTX repeats a sequence number,
        c.transport.writer = _Writer(resends[c])  # which a replay check would refuse
        c.on_nack([(first + 1) & 0xFFFF, (first + 2) & 0xFFFF], time.monotonic())  # 2 and the rebuilt 3
    resent = payloads([bytes(p) for p in resends[plain]])
    assert [(s, pt, p) for s, _, pt, p in resent] == [((first + 1) & 0xFFFF, 96, opus(2)),
                                                      ((first + 2) & 0xFFFF, 96, opus(3))]
    assert resends[redsub] == []  # RED carried the lost frame already: nothing resent


def test_the_recorder_gets_plain_opus_from_a_red_publisher() -> None:
    producer = audio_producer(RED_PT)
    fed: list[bytes] = []
    producer.streams[0].recorder = lambda pkt, now: fed.append(pkt)
    for i in (1, 2, 3, 5, 6):
        producer.streams[0].receive(rtp(i, 960 * i, 1000, red_of(i), pt=RED_PT), time.monotonic())
    assert [(s, p) for s, _, _, p in payloads(fed)] == [(i, opus(i)) for i in range(1, 7)]


def test_wrapper_and_unwrapper_round_trip() -> None:
    wrapper, unwrapper = RedWrapper(OPUS_PT), RedUnwrapper(OPUS_PT)
    out = []
    for i in range(1, 50):
        wrapped = wrapper.wrap(rtp(i, 960 * i, 7, opus(i), pt=OPUS_PT))
        if i % 3 == 0:
            continue
        out += [pkt for pkt, _, _ in unwrapper.unwrap(wrapped)]
    assert [p for _, _, _, p in payloads(out)] == [opus(i) for i in range(1, 50)]


# ---------------------------------------------------------------------- SDP

CHROME_AUDIO = (
    "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 63 111 9 0 8\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\n"
    "a=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\na=rtpmap:111 opus/48000/2\r\n"
    "a=rtcp-fb:111 transport-cc\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n"
    "a=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
)


def test_an_answer_takes_red_where_offered_first_and_asks_for_opus_fec() -> None:
    aiortc_answer = ("v=0\r\no=- 3 4 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
                     "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=recvonly\r\n"
                     "a=rtpmap:111 opus/48000/2\r\n")
    answer = accept_red(CHROME_AUDIO, aiortc_answer)
    assert "m=audio 9 UDP/TLS/RTP/SAVPF 63 111\r\n" in answer
    assert "a=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\n" in answer
    assert "a=fmtp:111 minptime=10;useinbandfec=1\r\n" in answer
    assert red_payload_types(answer) == {"0": (63, 111)}
    # offered after Opus: answered after Opus (the browser then sends plain Opus)
    later = CHROME_AUDIO.replace("SAVPF 63 111", "SAVPF 111 63")
    assert "SAVPF 111 63\r\n" in accept_red(later, aiortc_answer)
    # not offered: not answered, FEC still asked for
    none = accept_red(CHROME_AUDIO.replace("SAVPF 63 111", "SAVPF 111"), aiortc_answer)
    assert red_payload_types(none) == {} and "useinbandfec=1" in none


def test_red_of_another_codec_or_a_rejected_line_does_not_count() -> None:
    assert red_payload_types(CHROME_AUDIO.replace("a=fmtp:63 111/111", "a=fmtp:63 0/0")) == {}
    assert red_payload_types(CHROME_AUDIO.replace("m=audio 9", "m=audio 0")) == {}


# ---------------------------------------------------------------------- through a Router, aiortc peers

POLICY = IcePolicy.from_strings(None, "127.0.0.1", "127.0.0.0/8", None)


@pytest.fixture(autouse=True)
def loopback_clients() -> Iterator[None]:
    ice.apply(POLICY)
    yield
    ice.reset()


def _pub(pid: str) -> dict[str, Any]:
    return {"producer_id": f"{pid}:microphone", "source": "microphone", "mid": "0", "track_id": f"{pid}-mic"}


def _red_first(sdp: str) -> str:
    """An aiortc offer that offers RED of its Opus first, as a browser with RED preferred does."""
    offer = offer_red(sdp)
    (red_pt, opus_pt), = red_payload_types(offer).values()
    return offer.replace(f" {opus_pt} {red_pt}", f" {red_pt} {opus_pt}", 1)


def _tap(pc: RTCPeerConnection, pt: int, keep: list[tuple[int, bytes]], *, swallow: bool) -> None:
    """Keep (seq, payload) of the packets of payload type ``pt`` arriving at ``pc``, below aiortc."""
    dtls = pc.getTransceivers()[0].receiver.transport
    original = dtls._handle_rtp_data

    async def handle(data: bytes, arrival_time_ms: int) -> None:
        if 127 < data[0] < 192 and not 191 < data[1] < 224 and data[1] & 0x7F == pt:
            start, end = payload_range(data)
            keep.append(((data[2] << 8) | data[3], bytes(data[start:end])))
            if swallow:
                return
        await original(data, arrival_time_ms)

    dtls._handle_rtp_data = handle


async def _subscriber(router: Router, pid: str, target: str, *, take_red: bool) -> tuple[RTCPeerConnection, str]:
    tid = f"{pid}-recv"
    router.create_transport(tid, pid, "recv")
    assert router.set_consumers(tid, [{"consumer_id": f"{pid}~{target}~mic", "producer_id": f"{target}:microphone",
                                       "kind": "audio"}])
    offer = await router.offer(tid)
    assert offer is not None
    assert red_payload_types(offer["sdp"]), "the SFU offers RED of Opus to every subscriber"
    pc = RTCPeerConnection()
    await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    answer = pc.localDescription.sdp
    if take_red:  # what a browser answers; aiortc itself knows no RED
        answer = accept_red(offer["sdp"], answer)
    return pc, answer


def test_a_red_subscriber_of_a_plain_opus_publisher_gets_the_previous_payloads_as_redundancy() -> None:
    async def scenario() -> None:
        router = Router("lesson-1", POLICY, lambda event, data: None)
        pub = RTCPeerConnection()
        pub.addTransceiver(ToneTrack(), direction="sendonly")
        await pub.setLocalDescription(await pub.createOffer())
        router.create_transport("m-send", "m", "send")
        result = await router.publish("m-send", pub.localDescription.sdp, [_pub("m")])
        await pub.setRemoteDescription(RTCSessionDescription(result["sdp"], "answer"))
        assert router.producers["m:microphone"].red_payload_type is None

        sub, answer = await _subscriber(router, "v", "m", take_red=True)
        red_pt, opus_pt = red_payload_types(answer)["0"]
        got: list[tuple[int, bytes]] = []
        _tap(sub, red_pt, got, swallow=True)
        await router.answer("v-recv", answer)
        consumer = router.consumers["v~m~mic"]
        await until("the subscriber's answer never configured the consumer", lambda: consumer.ready)
        assert consumer.red and consumer.red_pt == red_pt
        await until("no RED packets reached the subscriber", lambda: len(got) >= 60)

        by_seq = {seq: red.parse(payload) for seq, payload in got}
        checked = 0
        for seq, parsed in by_seq.items():
            assert parsed.payload_type == opus_pt
            assert {b.payload_type for b in parsed.redundant} <= {opus_pt}
            previous = [by_seq.get((seq - k) & 0xFFFF) for k in (2, 1)]
            if all(p is not None for p in previous):
                assert [b.data for b in parsed.redundant] == [p.primary for p in previous]  # type: ignore[union-attr]
                assert [b.ts_offset for b in parsed.redundant] == [1920, 960]
                checked += 1
        assert checked >= 50
        for peer in (pub, sub):
            await peer.close()
        await router.close()

    asyncio.run(asyncio.wait_for(scenario(), 90))


def test_a_red_publisher_losing_a_fifth_of_its_packets_reaches_a_plain_subscriber_complete() -> None:
    async def scenario() -> None:
        router = Router("lesson-1", POLICY, lambda event, data: None)
        pub = RTCPeerConnection()
        pub.addTransceiver(ToneTrack(), direction="sendonly")
        await pub.setLocalDescription(await pub.createOffer())
        router.create_transport("m-send", "m", "send")
        offer = _red_first(pub.localDescription.sdp)
        result = await router.publish("m-send", offer, [_pub("m")])
        red_pt, opus_pt = red_payload_types(result["sdp"])["0"]
        assert result["sdp"].index(f" {red_pt} {opus_pt}") > 0, "RED offered first is answered first"
        await pub.setRemoteDescription(RTCSessionDescription(result["sdp"], "answer"))
        assert router.producers["m:microphone"].red_payload_type == red_pt

        # The publisher's Opus becomes RED (each packet with the two before it), and a datagram
        # filter then drops a fifth of the packets, never more than two in a row.
        sent_payloads: dict[int, bytes] = {}
        history: list[tuple[int, bytes]] = []
        rng = random.Random(2198)
        dropped = {"n": 0, "run": 0}
        dtls = pub.getTransceivers()[0].sender.transport
        original = dtls._send_rtp

        async def send_rtp(data: bytes) -> None:
            if not 191 < data[1] < 224 and data[1] & 0x7F == opus_pt:
                start, end = payload_range(data)
                seq = (data[2] << 8) | data[3]
                ts = int.from_bytes(data[4:8], "big")
                primary = bytes(data[start:end])
                blocks = [(opus_pt, (ts - t) & 0xFFFFFFFF, p) for t, p in history[-2:]]
                history.append((ts, primary))
                sent_payloads[seq] = primary
                data = bytes([data[0] & 0xDF, (data[1] & 0x80) | red_pt]) + data[2:start] + red.build(
                    opus_pt, primary, blocks)
                if dropped["run"] < 2 and rng.random() < 0.2:
                    dropped["n"] += 1
                    dropped["run"] += 1
                    return
                dropped["run"] = 0
            await original(data)

        dtls._send_rtp = send_rtp
        sub, answer = await _subscriber(router, "v", "m", take_red=False)
        got: list[tuple[int, bytes]] = []
        _tap(sub, opus_pt, got, swallow=False)
        await router.answer("v-recv", answer)
        consumer = router.consumers["v~m~mic"]
        await until("the subscriber's answer never configured the consumer", lambda: consumer.ready)
        assert not consumer.red
        await until("too little audio reached the subscriber", lambda: len(got) >= 150)

        seqs = [seq for seq, _ in got]
        assert seqs == [(seqs[0] + k) & 0xFFFF for k in range(len(seqs))], "the subscriber saw a gap"
        offset = consumer.rewriter.seq_offset  # out = source + offset, for the whole test
        assert [p for _, p in got] == [sent_payloads[(s - offset) & 0xFFFF] for s in seqs]
        assert dropped["n"] >= 0.12 * len(sent_payloads), dropped
        assert router.producers["m:microphone"].streams[0].unwrapper.recovered >= 20
        for peer in (pub, sub):
            await peer.close()
        await router.close()

    asyncio.run(asyncio.wait_for(scenario(), 90))
