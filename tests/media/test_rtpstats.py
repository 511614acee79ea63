"""media.rtpstats: RFC 3550 A.1/A.3/A.8 receive statistics and RR-based send statistics."""

from __future__ import annotations

import pytest
from aiortc.rtp import RtcpReceiverInfo

from media.rtpstats import ReceiveStats, SendStats


def test_loss_and_extended_sequence_across_wrap() -> None:
    s = ReceiveStats(ssrc=5, clock_rate=90000)
    seqs = [65530, 65531, 65532, 65533, 65534, 65535, 0, 1, 2, 4, 5, 6, 7, 8, 9]  # 3 missing
    for i, seq in enumerate(seqs):
        s.update(seq, i * 3000, i * 0.033, 1200)
    assert s.received == 15
    assert s.expected == 16
    assert s.lost == 1
    block = s.report_block(1.0)
    assert block.ssrc == 5
    assert block.highest_sequence == 65536 + 9
    assert block.packets_lost == 1
    assert block.fraction_lost == 256 // 16
    assert s.loss_fraction == pytest.approx(1 / 16)


def test_fraction_lost_is_per_interval() -> None:
    s = ReceiveStats(1, 48000)
    for seq in range(20):
        if seq not in (3, 7, 11, 15):
            s.update(seq, seq * 960, seq * 0.02, 100)
    b1 = s.report_block(1.0)
    assert (b1.fraction_lost, b1.packets_lost) == (4 * 256 // 20, 4)
    for seq in range(20, 40):
        s.update(seq, seq * 960, seq * 0.02, 100)
    b2 = s.report_block(2.0)
    assert (b2.fraction_lost, b2.packets_lost, b2.highest_sequence) == (0, 4, 39)
    assert s.loss_fraction == 0.0


def test_duplicates_and_reordering() -> None:
    s = ReceiveStats(1, 90000)
    for seq in (10, 12, 11, 12):  # reordered 11, duplicate 12
        s.update(seq, 0, 0.0, 10)
    assert (s.received, s.expected, s.lost) == (4, 3, -1)
    assert s.report_block(1.0).fraction_lost == 0


def test_sequence_restart_needs_two_packets() -> None:
    s = ReceiveStats(1, 90000)
    for seq in range(100, 105):
        s.update(seq, 0, 0.0, 10)
    s.update(40000, 0, 0.1, 10)  # ignored
    assert (s.received, s.expected) == (5, 5)
    s.update(40001, 0, 0.2, 10)  # restart from here
    s.update(40002, 0, 0.3, 10)
    assert (s.received, s.expected, s.extended_highest_seq) == (2, 2, 40002)


def test_jitter_hand_computed() -> None:
    s = ReceiveStats(1, 48000)
    # transit 0, 240, 0 → |D| 240, 240: J = 15, then 15 + (240 - 15)/16 = 29.06
    s.update(0, 0, 10.0, 100)
    s.update(1, 960, 10.025, 100)
    s.update(2, 1920, 10.040, 100)
    assert s.report_block(11.0).jitter == 29
    assert s.jitter_ms == pytest.approx(29 / 48)


def test_jitter_converges_to_alternating_offset() -> None:
    s = ReceiveStats(1, 48000)
    for i in range(400):
        s.update(i, i * 960, 5.0 + i * 0.02 + (0.005 if i % 2 else 0.0), 100)
    # A.8's integer form (J*16 += |D| - ((J*16 + 8) >> 4)) settles just under |D| = 240 from below
    assert s.report_block(20.0).jitter == 239
    assert s.jitter_ms == pytest.approx(5.0, rel=0.01)

    steady = ReceiveStats(2, 90000)
    for i in range(50):
        steady.update(i, 1000 + i * 3000, i / 30, 100)
    assert steady.report_block(2.0).jitter == 0


def test_lsr_dlsr() -> None:
    s = ReceiveStats(1, 90000)
    s.update(0, 0, 10.0, 100)
    b = s.report_block(10.0)
    assert (b.lsr, b.dlsr) == (0, 0)
    s.on_sender_report(0x1122334455667788, 10.0)
    b = s.report_block(10.5)
    assert (b.lsr, b.dlsr) == (0x33445566, 32768)


def test_bitrate_two_counter_window() -> None:
    s = ReceiveStats(1, 90000)
    assert s.bitrate_bps(0.0) == 0.0
    # 100 packets/s × 1000 bytes = 800 kbit/s for 5 s
    for i in range(500):
        s.update(i, i * 900, 100.0 + i * 0.01, 1000)
    assert s.bitrate_bps(105.0) == pytest.approx(800_000, rel=0.03)
    # halve the rate for 4 s: the window follows
    for i in range(200):
        s.update(500 + i, 0, 105.0 + i * 0.02, 1000)
    assert s.bitrate_bps(109.0) == pytest.approx(400_000, rel=0.05)
    # silence longer than two windows: nothing left
    assert s.bitrate_bps(120.0) == 0.0


def test_bitrate_first_window() -> None:
    s = ReceiveStats(1, 90000)
    for i in range(100):
        s.update(i, 0, 1.0 + i * 0.01, 500)
    assert s.bitrate_bps(2.0) == pytest.approx(400_000, rel=0.02)


def test_report_before_any_packet() -> None:
    b = ReceiveStats(9, 90000).report_block(1.0)
    assert (b.ssrc, b.fraction_lost, b.packets_lost, b.highest_sequence, b.jitter) == (9, 0, 0, 0, 0)


def test_send_stats() -> None:
    s = SendStats(ssrc=7, clock_rate=90000)
    assert s.rtt_ms is None

    s.remember_sr(0xAABBCCDD, 100.0)
    s.remember_sr(0x01020304, 101.0)
    info = RtcpReceiverInfo(ssrc=7, fraction_lost=64, packets_lost=12, highest_sequence=5000,
                            jitter=900, lsr=0xAABBCCDD, dlsr=6554)
    s.on_receiver_report(info, 100.35, None)
    assert s.rtt_ms == pytest.approx(250.0, abs=0.01)
    assert s.loss_fraction == 0.25
    assert s.jitter_ms == pytest.approx(10.0)
    assert s.cumulative_lost == 12

    # unknown LSR keeps the last RTT; an external history is used when given
    info.lsr = 0xDEADBEEF
    s.on_receiver_report(info, 102.0, None)
    assert s.rtt_ms == pytest.approx(250.0, abs=0.01)
    s.on_receiver_report(info, 102.0, {0xDEADBEEF: 101.5})
    assert s.rtt_ms == pytest.approx(400.0, abs=0.01)


def test_send_stats_forgets_old_srs() -> None:
    s = SendStats(1, 48000)
    for i in range(20):
        s.remember_sr(1000 + i, float(i))
    info = RtcpReceiverInfo(ssrc=1, fraction_lost=0, packets_lost=0, highest_sequence=0,
                            jitter=0, lsr=1000, dlsr=0)
    s.on_receiver_report(info, 30.0)
    assert s.rtt_ms is None
    info.lsr = 1019
    s.on_receiver_report(info, 19.2)
    assert s.rtt_ms == pytest.approx(200.0)
