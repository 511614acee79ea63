"""media.bwe.VideoGate: layer choice, pause and probing resume on a fake clock."""

from __future__ import annotations

import pytest

from media.bwe import VideoGate

LAYERS = [150_000, 500_000, 1_500_000]


def test_no_estimate_forwards_highest_allowed() -> None:
    g = VideoGate(LAYERS, now_s=0.0)
    assert g.decide(0.0) == 2
    g.max_layer = 1
    assert g.decide(0.1) == 1
    with pytest.raises(ValueError):
        VideoGate([], now_s=0.0)


def test_step_down_to_fitting_layer() -> None:
    g = VideoGate(LAYERS, now_s=0.0)
    assert g.decide(0.0) == 2
    g.on_remb(1_700_000, 1.0)  # 1.5M × 1.15 = 1.725M does not fit
    assert g.decide(1.0) == 1
    g.on_remb(575_000, 2.0)  # 500k × 1.15 = 575k fits exactly
    assert g.decide(2.0) == 1
    g.on_remb(574_999, 3.0)
    assert g.decide(3.0) == 0


def test_step_down_one_more_on_sustained_loss() -> None:
    g = VideoGate(LAYERS, now_s=0.0)
    g.on_remb(5_000_000, 0.0)
    assert g.decide(0.0) == 2
    g.on_loss(0.15, 0.0)
    assert g.decide(1.9) == 2
    assert g.decide(2.0) == 1
    assert g.decide(3.9) == 1  # another 2 s on the new layer
    assert g.decide(4.0) == 0
    assert g.decide(30.0) == 0  # 10-20 % loss does not pause
    g.on_loss(0.05, 30.0)  # loss fell below 10 %: timer reset
    g.on_loss(0.15, 31.0)
    assert g.decide(32.0) == 0


def test_pause_when_lowest_does_not_fit() -> None:
    g = VideoGate(LAYERS, now_s=0.0)
    g.on_remb(172_000, 1.0)  # 150k × 1.15 = 172.5k
    assert g.decide(1.0) == -1
    assert g.layer == -1


def test_pause_on_severe_loss_on_lowest_layer() -> None:
    g = VideoGate([300_000], now_s=0.0)
    assert g.decide(0.0) == 0
    g.on_loss(0.25, 0.0)
    assert g.decide(2.9) == 0
    assert g.decide(3.0) == -1


def test_resume_after_backoff_and_backoff_doubling() -> None:
    g = VideoGate(LAYERS, now_s=0.0)
    g.on_remb(100_000, 10.0)
    assert g.decide(10.0) == -1
    assert g.decide(14.9) == -1
    assert g.decide(15.0) == 0  # probe with the lowest layer, stale estimate ignored
    assert g.estimate_bps is None
    g.on_remb(100_000, 16.0)  # still too little
    assert g.decide(16.0) == 0  # within the probe window
    assert g.decide(18.0) == -1  # probe failed
    assert g.decide(27.9) == -1  # back-off doubled to 10 s
    assert g.decide(28.0) == 0
    g.on_remb(100_000, 29.0)
    assert g.decide(31.0) == -1
    assert g.decide(50.9) == -1  # 20 s
    assert g.decide(51.0) == 0
    # keep failing: 40 s, then capped at 60 s
    g.on_remb(1, 52.0)
    assert g.decide(54.0) == -1
    assert g.decide(93.9) == -1 and g.decide(94.0) == 0
    g.on_remb(1, 95.0)
    assert g.decide(97.0) == -1
    assert g.decide(156.9) == -1 and g.decide(157.0) == 0
    g.on_remb(1, 158.0)
    assert g.decide(160.0) == -1
    assert g.decide(219.9) == -1 and g.decide(220.0) == 0


def test_successful_resume_resets_backoff() -> None:
    g = VideoGate(LAYERS, now_s=0.0)
    g.on_remb(100_000, 0.0)
    assert g.decide(0.0) == -1
    assert g.decide(5.0) == 0
    g.on_remb(200_000, 6.0)  # the probe works: lowest layer fits
    assert g.decide(8.0) == 0
    assert g.decide(25.0) == 0
    g.on_remb(100_000, 30.0)  # a new drop long after the resume
    assert g.decide(30.0) == -1
    assert g.decide(34.9) == -1
    assert g.decide(35.0) == 0  # back to 5 s


def test_step_up_after_sustained_headroom() -> None:
    g = VideoGate(LAYERS, now_s=0.0)
    g.on_remb(600_000, 0.0)
    assert g.decide(0.0) == 1
    g.on_remb(1_950_000, 10.0)  # 1.5M × 1.3
    assert g.decide(10.0) == 1
    assert g.decide(14.9) == 1
    assert g.decide(15.0) == 2


def test_step_up_interrupted_by_dip_or_loss() -> None:
    g = VideoGate(LAYERS, now_s=0.0)
    g.on_remb(300_000, 0.0)
    assert g.decide(0.0) == 0
    g.on_remb(650_000, 1.0)  # 500k × 1.3
    g.on_remb(640_000, 3.0)  # dip: headroom restarts
    g.on_remb(650_000, 4.0)
    assert g.decide(8.9) == 0
    assert g.decide(9.0) == 1
    g.on_remb(2_000_000, 10.0)
    g.on_loss(0.03, 12.0)  # loss ≥ 2 %: no headroom
    g.on_loss(0.0, 13.0)
    assert g.decide(17.9) == 1
    assert g.decide(18.0) == 2


def test_max_layer_cap_for_observers() -> None:
    g = VideoGate(LAYERS, now_s=0.0)
    g.max_layer = 0
    g.on_remb(10_000_000, 0.0)
    assert g.decide(0.0) == 0
    assert g.decide(100.0) == 0
    g.max_layer = None  # promoted: climbs one layer per 5 s of headroom
    assert g.decide(100.0) == 0
    assert g.decide(105.0) == 1
    assert g.decide(110.0) == 2
    g.max_layer = 1
    assert g.decide(110.1) == 1


def test_producer_bitrate_updates_and_missing_layers() -> None:
    g = VideoGate(LAYERS, now_s=0.0)
    g.on_producer_bitrate(2, 0)  # top layer not sent (publisher's own uplink is weak)
    assert g.decide(0.0) == 1
    g.on_producer_bitrate(1, 900_000)
    g.on_remb(1_000_000, 1.0)  # 900k × 1.15 = 1.035M does not fit
    assert g.decide(1.0) == 0
    with pytest.raises(ValueError):
        g.on_producer_bitrate(3, 1)
