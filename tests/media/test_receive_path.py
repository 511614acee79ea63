"""The in-order receive path in C (``sk_stream_receive``) against Python's path.

The common packet — the next of its stream, nobody waiting for a keyframe, nothing to convert or
record — is taken whole by C: statistics, the NACK generator's newest number, the cache and the
fan-out.  Everything else comes to Python.  These tests drive real producer streams with fake
transports around real SRTP writers (``tests/media/test_forwarding.py``) and check what a
subscriber receives, what the statistics and the NACK state say, and that both paths send the
same bytes."""

from __future__ import annotations

import struct

from media.nack_generator import SCHEDULE
from media.producer import Producer
from media.rtp import find_extension, payload_range

from tests.media.test_forwarding import DELTA, KEY, FakeTransport, make_consumer, make_producer, rtp, sent


def feed(producer: Producer, seqs: list[int], t0: float = 0.0) -> None:
    stream = producer.streams[0]
    for k, seq in enumerate(seqs):
        stream.receive(rtp(seq, 3000 * (seq - 100), 1000, (KEY if seq == 100 else DELTA) + bytes([seq % 256]) * 300),
                       t0 + (seq - 100) / 30)


def test_in_order_packets_are_forwarded_counted_and_cached_by_c() -> None:
    producer, _ = make_producer()
    consumer = make_consumer()
    consumer.bind(producer, 0.0)
    stream = producer.streams[0]
    feed(producer, list(range(100, 160)))
    # the first packet (the NACK state starts) and the keyframe release go through Python
    assert stream.fast_packets >= 55
    out = sent(consumer)
    assert len(out) == 60
    seqs = [struct.unpack_from(">H", p, 2)[0] for p in out]
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:]))
    last = out[-1]
    assert struct.unpack_from(">I", last, 8)[0] == 0xC0FFEE and last[1] & 0x7F == 96
    start, end = payload_range(last)
    assert last[start:end] == DELTA + bytes([159]) * 300
    assert find_extension(last, 3) >= 0 and find_extension(last, 4) == -1  # renumbered for the subscriber
    assert (stream.stats.received, stream.stats.expected, stream.stats.lost) == (60, 60, 0)
    assert stream.nack is not None and stream.nack.highest == 159
    cached = stream.cache.get(150, 2.0) if stream.cache is not None else None
    assert cached == rtp(150, 3000 * 50, 1000, DELTA + bytes([150]) * 300)  # as the publisher sent it
    assert stream.last_ts == 3000 * 59
    assert stream.stats.bitrate_bps(2.0) > 0


def test_a_gap_goes_to_python_and_the_packets_after_it_back_to_c() -> None:
    producer, _ = make_producer()
    consumer = make_consumer()
    consumer.bind(producer, 0.0)
    stream = producer.streams[0]
    nack = stream.nack
    assert nack is not None
    feed(producer, list(range(100, 110)))
    before = stream.fast_packets
    feed(producer, [111])  # 110 is missing
    assert stream.fast_packets == before  # Python saw the gap
    assert nack.pending == 1 and nack.is_missing(110)
    feed(producer, list(range(112, 120)))
    assert stream.fast_packets == before + 8  # in order again after the gap: C
    assert stream.stats.lost == 1
    feed(producer, [110])  # late (or repaired): Python, recovered
    assert nack.pending == 0 and nack.recovered == 1
    assert stream.stats.lost == 0
    seqs = [struct.unpack_from(">H", p, 2)[0] for p in sent(consumer)]
    assert len(seqs) == 20 and len(set(seqs)) == 20


def test_a_jump_far_ahead_is_python_s_and_asks_for_a_keyframe() -> None:
    producer, _ = make_producer()
    consumer = make_consumer()
    consumer.bind(producer, 0.0)
    stream = producer.streams[0]
    feed(producer, list(range(100, 105)))
    assert stream.nack is not None
    assert stream.nack.update(2000, 1.0) == SCHEDULE  # (as Python's path would for a jump)
    assert stream.nack.keyframe_wanted


def test_both_paths_send_the_same_bytes() -> None:
    """The same packets through C (nothing to record) and through Python (a recorder attached,
    which makes every packet Python's): byte for byte the same at a subscriber with transport-cc."""
    outputs = []
    for record in (False, True):
        producer, _ = make_producer()
        consumer = make_consumer()
        consumer.transport.writer.twcc_id = 5
        consumer.bind(producer, 0.0)
        stream = producer.streams[0]
        recorded: list[bytes] = []
        if record:
            stream.recorder = lambda pkt, now: recorded.append(pkt)
        feed(producer, [100, 101, 102, 104, 105, 103, 106, 107])
        if record:
            assert stream.fast_packets == 0 and len(recorded) == 8
        else:
            assert stream.fast_packets >= 4
        outputs.append(sent(consumer))
    fast, slow = outputs
    assert len(fast) == 8 and len(slow) == 8

    def relative(pkts: list[bytes]) -> list[tuple[int, int, bytes]]:
        """Each packet with its sequence number and timestamp counted from the first (a consumer
        starts both at random)."""
        seq0, ts0 = struct.unpack_from(">HI", pkts[0], 2)
        return [((struct.unpack_from(">H", p, 2)[0] - seq0) & 0xFFFF, (struct.unpack_from(">I", p, 4)[0] - ts0)
                 & 0xFFFFFFFF, p[:2] + p[8:]) for p in pkts]

    assert relative(fast) == relative(slow)
    # the transport-wide sequence number was appended (the publisher sent none) and counts up
    offsets = [find_extension(p, 5) for p in fast]
    assert all(o > 0 for o in offsets)
    assert [struct.unpack_from(">H", p, o)[0] for p, o in zip(fast, offsets)] == list(range(8))


def test_a_paused_producer_forwards_nothing_and_resumes_in_c() -> None:
    producer, _ = make_producer()
    consumer = make_consumer()
    consumer.bind(producer, 0.0)
    stream = producer.streams[0]
    feed(producer, list(range(100, 105)))
    producer.paused = True
    feed(producer, list(range(105, 110)))
    assert len(sent(consumer)) == 5
    producer.paused = False
    feed(producer, list(range(110, 115)))  # a gap of 5 for the NACK state (not counted while muted)
    assert len(sent(consumer)) == 10
    before = stream.fast_packets
    feed(producer, list(range(115, 120)))
    assert stream.fast_packets == before + 5


def test_groups_with_different_extension_ids_each_get_their_own() -> None:
    producer, _ = make_producer()
    a = make_consumer()
    b_transport = FakeTransport("sub-b")
    from media.consumer import Consumer
    from media.rtp import URI_ABS_SEND_TIME, URI_MID

    from tests.media.test_forwarding import VP8

    b = Consumer("c2", b_transport, kind="video", producer_id="main:camera")  # type: ignore[arg-type]
    b.configure(ssrc=0xB0B, rtx_ssrc=0xB0C, payload_type=98, rtx_payload_type=99, clock_rate=90000, mime=VP8,
                extmap={URI_MID: 7, URI_ABS_SEND_TIME: 9})
    a.bind(producer, 0.0)
    b.bind(producer, 0.0)
    stream = producer.streams[0]
    assert len(stream.groups) == 2
    feed(producer, list(range(100, 130)))
    assert stream.fast_packets >= 25
    got_a, got_b = sent(a), b_transport.capture.sent
    assert len(got_a) == 30 and len(got_b) == 30
    assert all(find_extension(p, 3) >= 0 for p in got_a)
    assert all(find_extension(p, 9) >= 0 and find_extension(p, 3) == -1 for p in got_b)
    assert {p[1] & 0x7F for p in got_b} == {98}
