"""media.rewrite.SeqTsRewriter: concrete cases and properties over switches, reorders and wraps."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from media.rewrite import SeqTsRewriter


def test_first_epoch_and_switch_concrete() -> None:
    r = SeqTsRewriter(90000, first_seq=65534, first_ts=2**32 - 3000)
    assert r.rewrite(1000, 50000, 10.0) == 65534 and r.out_ts == 2**32 - 3000
    assert r.seq_offset == (65534 - 1000) % 65536
    assert r.ts_offset == (2**32 - 3000 - 50000) % 2**32
    assert r.rewrite(1001, 53000, 10.033) == 65535 and r.out_ts == 0
    assert r.rewrite(1002, 56000, 10.066) == 0 and r.out_ts == 3000
    assert r.highest_out_seq == 0

    # switch to another source 0.5 s after the highest timestamp was first sent
    r.mark_discontinuity()
    assert r.rewrite(40000, 7, 10.566) == 1
    assert r.out_ts == 3000 + 45000
    assert r.rewrite(40001, 3007, 10.6) == 2 and r.out_ts == 48000 + 3000
    # reordered packet inside the epoch maps with the same offsets, highest unchanged
    assert r.rewrite(40003, 6007, 10.7) == 4
    assert r.rewrite(40002, 6007, 10.71) == 3
    assert r.highest_out_seq == 4
    # late packet of the previous (other-SSRC) source, far from this epoch: not forwarded
    assert r.rewrite(1003, 59000, 10.72) == -1
    assert r.out_ts == 51000 + 3000  # unchanged by the dropped packet
    assert r.rewrite(40004, 9007, 10.73) == 5

    # NACK mapping
    assert r.to_source_seq(3) == 40002
    assert r.to_source_seq(1) == 40000
    assert r.to_source_seq(0) == -1  # previous epoch
    assert r.to_source_seq(5) == 40004
    assert r.to_source_seq(6) == -1  # not sent yet


def test_switch_immediately_advances_at_least_one_tick() -> None:
    r = SeqTsRewriter(48000, first_seq=0, first_ts=100)
    assert r.rewrite(7, 7, 1.0) == 0
    r.mark_discontinuity()
    assert r.rewrite(9000, 123456, 1.0) == 1
    assert r.out_ts == 101


def test_resume_same_source_after_pause_drops_stale_packets() -> None:
    r = SeqTsRewriter(90000, first_seq=10, first_ts=0)
    for i in range(5):
        r.rewrite(500 + i, 3000 * i, i * 0.033)
    r.mark_discontinuity()  # paused: packets 505..599 were not forwarded
    assert r.rewrite(600, 3000 * 100, 5.0) == 15
    assert r.rewrite(599, 3000 * 99, 5.01) == -1  # before the resume point
    assert r.rewrite(601, 3000 * 101, 5.02) == 16


def test_source_restarting_its_sequence_numbers_starts_a_new_epoch() -> None:
    r = SeqTsRewriter(90000, first_seq=100, first_ts=0)
    assert r.rewrite(10, 0, 0.0) == 100
    assert r.rewrite(11, 3000, 0.033) == 101
    assert r.rewrite(30000, 777, 0.066) == -1  # one stray packet far ahead: dropped
    assert r.rewrite(12, 6000, 0.066) == 102
    assert r.rewrite(50000, 5, 1.0) == -1  # restart: the first packet is dropped ...
    assert r.rewrite(50001, 3005, 1.033) == 103  # ... the next one starts a new epoch
    assert r.out_ts == 6000 + round((1.033 - 0.066) * 90000)
    assert r.rewrite(50002, 6005, 1.066) == 104


def test_epoch_longer_than_half_the_sequence_space() -> None:
    r = SeqTsRewriter(90000, first_seq=0, first_ts=0)
    for i in range(70000):
        assert r.rewrite(i & 0xFFFF, i * 10, i * 0.001) == i & 0xFFFF
    assert r.rewrite((70000 - 5) & 0xFFFF, 0, 70.0) == (70000 - 5) & 0xFFFF
    assert r.to_source_seq((70000 - 5) & 0xFFFF) == (70000 - 5) & 0xFFFF


def test_random_initial_values_in_range() -> None:
    r = SeqTsRewriter(90000)
    out = r.rewrite(1, 1, 0.0)
    assert 0 <= out < 65536 and 0 <= r.out_ts < 2**32


_epoch = st.fixed_dictionaries(
    {
        "resume": st.booleans(),  # same source resumed (seq continues after a gap) or a new source
        "start_seq": st.integers(0, 65535),
        "start_ts": st.integers(0, 2**32 - 1),
        "seq_gap": st.integers(1, 3000),
        "n": st.integers(1, 40),
        "ts_step": st.sampled_from([0, 1, 960, 3000, 3003]),
        "gap_s": st.floats(0.0, 30.0),
        "swaps": st.lists(st.integers(1, 38), max_size=8),
        "late": st.integers(0, 3),
    }
)


@settings(max_examples=300, deadline=None)
@given(
    first_seq=st.integers(0, 65535),
    first_ts=st.integers(0, 2**32 - 1),
    clock=st.sampled_from([48000, 90000]),
    epochs=st.lists(_epoch, min_size=1, max_size=8),
)
def test_output_is_one_continuous_stream(first_seq: int, first_ts: int, clock: int, epochs: list[dict]) -> None:
    r = SeqTsRewriter(clock, first_seq=first_seq, first_ts=first_ts)
    now = 100.0
    delivered: list[tuple[int, int]] = []  # (out_seq, out_ts) in source order
    prev_last: tuple[int, int] | None = None  # (seq, ts) of the previous epoch's last source packet
    prev_max_ts: int | None = None
    for e in epochs:
        if e["resume"] and prev_last is not None:
            seq0 = (prev_last[0] + e["seq_gap"]) & 0xFFFF
            ts0 = (prev_last[1] + e["seq_gap"] * 3000) & 0xFFFFFFFF
        else:
            seq0, ts0 = e["start_seq"], e["start_ts"]
        n = e["n"]
        order = list(range(n))
        for i in e["swaps"]:  # adjacent swaps after the first packet: reordering within a window
            if i + 1 < n:
                order[i], order[i + 1] = order[i + 1], order[i]
        now += e["gap_s"]
        r.mark_discontinuity()
        outs: dict[int, tuple[int, int]] = {}
        for pos, k in enumerate(order):
            seq = (seq0 + k) & 0xFFFF
            ts = (ts0 + k * e["ts_step"]) & 0xFFFFFFFF
            out = r.rewrite(seq, ts, now + pos * 0.005)
            assert out >= 0
            outs[k] = (out, r.out_ts)
            if pos == 0 and e["resume"] and prev_last is not None:
                # late packets of the same source from before the resume point are refused
                for j in range(e["late"]):
                    late_seq = (prev_last[0] - j) & 0xFFFF
                    assert r.rewrite(late_seq, prev_last[1], now) == -1
                    assert r.out_ts == outs[0][1]
        first_ts_out = outs[0][1]
        if prev_max_ts is not None:
            # timestamps never go backwards across a switch
            assert 0 < ((first_ts_out - prev_max_ts) & 0xFFFFFFFF) < 2**31
        epoch_out = [outs[k] for k in range(n)]
        # NACK mapping back to the source for every packet of the current epoch
        for k, (out_seq, _) in enumerate(epoch_out):
            assert r.to_source_seq(out_seq) == (seq0 + k) & 0xFFFF
        if delivered:
            assert r.to_source_seq(delivered[-1][0]) == -1
        delivered.extend(epoch_out)
        prev_max_ts = max(
            (t for _, t in epoch_out), key=lambda t: (t - first_ts_out) & 0xFFFFFFFF
        )
        prev_last = ((seq0 + n - 1) & 0xFFFF, (ts0 + (n - 1) * e["ts_step"]) & 0xFFFFFFFF)
        now += n * 0.005

    seqs = [s for s, _ in delivered]
    assert seqs == [(first_seq + i) & 0xFFFF for i in range(len(seqs))]
    assert delivered[0][1] == first_ts
