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


def test_the_first_estimates_are_ignored_while_the_receiver_learns_the_link() -> None:
    g = VideoGate(LAYERS, now_s=0.0)
    assert g.decide(0.0) == 2
    g.on_remb(300_000, 0.5)  # a browser's first REMB: far below what it will measure
    assert g.decide(0.5) == 2
    assert g.decide(2.9) == 2
    g.on_remb(1_600_000, 3.0)  # by now it measures what it receives
    assert g.decide(3.0) == 2  # 1.5M × 0.8 = 1.2M ≤ 1.6M: the layer holds


def test_a_single_layer_holds_on_an_estimate_around_its_own_rate() -> None:
    """A shared screen or a camera without simulcast: the receive-side estimate of a link that is
    not congested hovers around the rate it receives, and the video must go on."""
    g = VideoGate([1_000_000], now_s=0.0)
    assert g.decide(0.0) == 0
    for t in range(3, 60):
        g.on_remb(950_000 + (t % 3) * 50_000, float(t))
        assert g.decide(float(t)) == 0


def test_step_down_to_fitting_layer() -> None:
    g = VideoGate(LAYERS, now_s=0.0)
    assert g.decide(0.0) == 2
    g.on_remb(1_200_000, 4.0)  # 1.5M × 0.8 = 1.2M: still holds
    assert g.decide(4.0) == 2
    g.on_remb(1_199_999, 5.0)  # no longer; 500k × 1.15 fits
    assert g.decide(5.0) == 1
    g.on_remb(400_000, 6.0)  # 500k × 0.8 holds
    assert g.decide(6.0) == 1
    g.on_remb(399_999, 7.0)
    assert g.decide(7.0) == 0


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


def test_pause_when_even_the_lowest_layer_is_starved_for_3_s() -> None:
    g = VideoGate(LAYERS, now_s=0.0)
    g.decide(0.0)
    g.on_remb(119_999, 4.0)  # 150k × 0.8 = 120k
    assert g.decide(4.0) == 0  # the lowest layer first
    assert g.decide(6.9) == 0
    assert g.decide(7.0) == -1
    assert g.layer == -1
    # a starved moment that recovers does not pause
    g = VideoGate(LAYERS, now_s=0.0)
    g.decide(0.0)
    g.on_remb(100_000, 4.0)
    assert g.decide(4.0) == 0
    g.on_remb(130_000, 5.0)
    assert g.decide(5.0) == 0  # the lowest layer holds again
    g.on_remb(100_000, 6.0)
    assert g.decide(6.0) == 0
    assert g.decide(8.9) == 0  # the 3 s started again
    assert g.decide(9.0) == -1


def test_pause_on_severe_loss_on_lowest_layer() -> None:
    g = VideoGate([300_000], now_s=0.0)
    assert g.decide(0.0) == 0
    g.on_loss(0.25, 0.0)
    assert g.decide(2.9) == 0
    assert g.decide(3.0) == -1


def test_resume_after_backoff_and_backoff_doubling() -> None:
    g = VideoGate(LAYERS, now_s=0.0)
    g.decide(0.0)
    g.on_remb(100_000, 10.0)
    assert g.decide(10.0) == 0 and g.decide(13.0) == -1
    assert g.decide(17.9) == -1
    assert g.decide(18.0) == 0  # probe with the lowest layer after 5 s, stale estimate ignored
    assert g.estimate_bps is None
    g.on_remb(100_000, 19.0)  # still too little
    assert g.decide(19.0) == 0  # within the probe window
    assert g.decide(21.0) == 0  # starved from here...
    assert g.decide(24.0) == -1  # ...for 3 s: the probe failed
    assert g.decide(33.9) == -1  # back-off doubled to 10 s
    assert g.decide(34.0) == 0
    g.on_remb(100_000, 35.0)
    assert g.decide(37.0) == 0 and g.decide(40.0) == -1
    assert g.decide(59.9) == -1 and g.decide(60.0) == 0  # 20 s
    # keep failing: 40 s, then capped at 60 s
    g.on_remb(1, 61.0)
    assert g.decide(63.0) == 0 and g.decide(66.0) == -1
    assert g.decide(105.9) == -1 and g.decide(106.0) == 0
    g.on_remb(1, 107.0)
    assert g.decide(109.0) == 0 and g.decide(112.0) == -1
    assert g.decide(171.9) == -1 and g.decide(172.0) == 0


def test_successful_resume_resets_backoff() -> None:
    g = VideoGate(LAYERS, now_s=0.0)
    g.decide(0.0)
    g.on_remb(100_000, 3.0)
    assert g.decide(3.0) == 0 and g.decide(6.0) == -1
    assert g.decide(11.0) == 0  # probe after 5 s
    g.on_remb(200_000, 12.0)  # the probe works: the lowest layer holds
    assert g.decide(14.0) == 0 and g.decide(30.0) == 0
    g.on_remb(100_000, 40.0)  # a new drop long after the resume
    assert g.decide(40.0) == 0 and g.decide(43.0) == -1
    assert g.decide(47.9) == -1 and g.decide(48.0) == 0  # back to 5 s


def test_step_up_after_sustained_headroom() -> None:
    g = VideoGate(LAYERS, now_s=0.0)
    g.decide(0.0)
    g.on_remb(600_000, 3.0)  # 1.5M does not hold; 500k × 1.15 fits
    assert g.decide(3.0) == 1
    g.on_remb(1_950_000, 10.0)  # 1.5M × 1.3
    assert g.decide(10.0) == 1
    assert g.decide(14.9) == 1
    assert g.decide(15.0) == 2


def test_step_up_interrupted_by_dip_or_loss() -> None:
    g = VideoGate(LAYERS, now_s=0.0)
    g.decide(0.0)
    g.on_remb(300_000, 3.0)
    assert g.decide(3.0) == 0
    g.on_remb(650_000, 4.0)  # 500k × 1.3
    g.on_remb(640_000, 6.0)  # dip: headroom restarts
    g.on_remb(650_000, 7.0)
    assert g.decide(11.9) == 0
    assert g.decide(12.0) == 1
    g.on_remb(2_000_000, 13.0)
    g.on_loss(0.03, 15.0)  # loss ≥ 2 %: no headroom
    g.on_loss(0.0, 16.0)
    assert g.decide(20.9) == 1
    assert g.decide(21.0) == 2


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
    g.on_remb(700_000, 4.0)  # 900k × 0.8 = 720k does not hold; 150k × 1.15 fits
    assert g.decide(4.0) == 0
    with pytest.raises(ValueError):
        g.on_producer_bitrate(3, 1)
