"""media.bwe.VideoGate: layer choice, probing up, pausing as the last step and coming back, on a fake clock."""

from __future__ import annotations

import random

import pytest

from media import bwe
from media.bwe import VideoGate

LAYERS = [150_000, 500_000, 1_500_000]


def run(g: VideoGate, t0: float, t1: float, remb: int | None = None, step: float = 0.1,
        grow: float = 0.0) -> list[int]:
    """Decide every ``step`` from ``t0`` to ``t1`` (feeding ``remb`` each time when given, growing by
    ``grow`` a second: an estimator that is not over-used); the decisions."""
    out = []
    t = t0
    while t < t1 - 1e-9:
        if remb is not None:
            g.on_estimate(int(remb * (1.0 + grow) ** (t - t0)), t)
        out.append(g.decide(t))
        t = round(t + step, 6)
    return out


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


def test_a_single_layer_never_pauses_on_an_estimate_below_it_without_congestion() -> None:
    """A shared screen or a camera without simulcast: a receive-side estimate that hovers (even well)
    below the layer, with random loss, must not take the picture away."""
    g = VideoGate([1_000_000], now_s=0.0)
    assert g.decide(0.0) == 0
    for t in range(3, 120):
        g.on_remb(600_000 + (t % 3) * 150_000, float(t))
        g.on_loss(0.05, float(t))
        assert g.decide(float(t)) == 0
    # far below it but the link loses little: still not congested, still not paused
    for t in range(120, 180):
        g.on_remb(300_000, float(t))
        g.on_loss(0.03, float(t))
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
    g.on_remb(10_000, 8.0)  # far below even the lowest layer: still the lowest, not paused (no loss)
    assert g.decide(8.0) == 0 and g.decide(30.0) == 0


def test_step_down_one_more_on_sustained_loss_but_random_loss_never_pauses() -> None:
    g = VideoGate(LAYERS, now_s=0.0)
    g.on_remb(5_000_000, 0.0)
    assert g.decide(0.0) == 2
    g.on_loss(0.15, 0.0)
    assert g.decide(1.9) == 2
    assert g.decide(2.0) == 1
    assert g.decide(3.9) == 1  # another 2 s on the new layer
    assert g.decide(4.0) == 0
    for t in range(5, 60):  # 25 % random loss, the estimate above the lowest layer: never paused
        g.on_loss(0.25, float(t))
        g.on_remb(400_000, float(t))
        assert g.decide(float(t)) == 0


def test_pause_only_when_starved_and_congested_for_3_s() -> None:
    g = VideoGate(LAYERS, now_s=0.0)
    g.decide(0.0)
    g.on_remb(70_000, 4.0)  # < 150k × 0.5
    assert g.decide(4.0) == 0  # the lowest layer first
    g.on_loss(0.3, 5.0)  # and the link is congested
    assert g.decide(7.9) == 0
    assert g.decide(8.0) == -1
    assert g.layer == -1
    # a congested moment that recovers does not pause
    g = VideoGate(LAYERS, now_s=0.0)
    g.decide(0.0)
    g.on_remb(70_000, 4.0)
    g.on_loss(0.3, 4.0)
    assert g.decide(6.0) == 0
    g.on_loss(0.02, 6.5)
    assert g.decide(7.5) == 0
    g.on_loss(0.3, 8.0)
    assert g.decide(10.9) == 0  # the 3 s started again
    assert g.decide(11.0) == -1


def test_paused_video_is_probed_with_small_padding_bursts_and_comes_back_when_the_link_does() -> None:
    g = VideoGate(LAYERS, now_s=0.0)
    g.decide(0.0)
    g.on_remb(40_000, 3.0)
    g.on_loss(0.5, 3.0)
    assert g.decide(3.0) == 0 and g.decide(6.0) == -1
    # still a dead link: every 1.5 s a padding burst of at most the lowest layer's rate, the estimate
    # falls under it, video stays paused
    bursts = []
    t = 6.0
    while t < 20.0:
        if g.probe is not None:
            bursts.append((round(t, 1), g.probe.bps))
            g.on_remb(28_000, t)  # over-use: the estimate falls...
        else:
            g.on_remb(40_000, t)  # ...and recovers when the burst is over
        assert g.decide(t) == -1
        t = round(t + 0.1, 6)
    starts = sorted({b for b, _ in bursts if (round(b - 0.1, 1), _) not in bursts})
    assert all(bps <= LAYERS[0] for _, bps in bursts)
    assert len(starts) >= 6 and all(b - a <= 2.2 for a, b in zip(starts, starts[1:]))
    # the link comes back at t = 20: within 2 s the video is back, on the lowest layer
    g.on_loss(0.0, 20.0)
    t, back = 20.0, None
    while t < 25.0 and back is None:
        g.on_remb(int(40_000 * 1.08 ** (t - 20.0)), t)  # not over-used: it climbs (8 %/s at most)
        if g.decide(t) == 0:
            back = t
        t = round(t + 0.1, 6)
    assert back is not None and back - 20.0 <= 2.0
    # the low estimate right after resuming does not pause it again (trial: only a fall counts)
    assert run(g, t, t + 10.0, remb=60_000) == [0] * 100


def test_a_big_single_layer_is_probed_up_in_steps_not_with_the_whole_layer() -> None:
    g = VideoGate([1_500_000], now_s=0.0)
    g.decide(0.0)
    g.on_remb(200_000, 3.0)
    g.on_loss(0.4, 3.0)
    assert g.decide(3.0) == 0 and g.decide(6.0) == -1
    g.on_loss(0.0, 7.0)
    rates = []
    t = 6.0
    while g.decide(t) == -1:
        if g.probe is not None and (not rates or rates[-1] != g.probe.bps):
            rates.append(g.probe.bps)
        g.on_remb(int(200_000 * 1.05 ** (t - 6.0)), t)
        t = round(t + 0.1, 6)
        assert t < 30.0
    assert rates[0] <= 800_000 and rates[-1] == 1_500_000 and rates == sorted(rates)


def test_going_up_only_after_a_padding_probe_that_the_link_carries() -> None:
    g = VideoGate(LAYERS, now_s=0.0)
    g.decide(0.0)
    g.on_remb(600_000, 3.0)  # 1.5M does not hold; 500k × 1.15 fits
    assert g.decide(3.0) == 1
    assert g.probe is None
    # a receive-side estimate on 500k cannot show the 1.5M the link carries: a probe must
    out = run(g, 3.1, 7.0, remb=760_000)
    assert set(out) == {1} and g.probe is None  # waits 4 s after the change
    assert g.decide(7.0) == 1
    assert g.probe is not None and g.probe.bps == 1_000_000 and g.probe.until_s == pytest.approx(7.5)
    out = run(g, 7.1, 8.0, remb=760_000, grow=0.05)  # the estimate climbs: the link carries the probe
    assert set(out) == {1}
    assert g.decide(8.0) == 2 and g.probe is None
    # on trial: the estimate climbs slowly from below 0.8 × 1.5M and that is fine
    est = 790_000.0
    for i in range(60):
        est *= 1.01
        g.on_remb(int(est), 8.6 + i * 0.1)
        assert g.decide(8.6 + i * 0.1) == 2
    assert g.probes == 1 and g.probes_passed == 1


def test_a_probe_that_makes_the_estimate_fall_or_loss_rise_fails_and_waits_longer() -> None:
    g = VideoGate(LAYERS, now_s=0.0)
    g.decide(0.0)
    g.on_remb(300_000, 3.0)
    assert g.decide(3.0) == 0
    assert set(run(g, 3.1, 7.0, remb=235_000)) == {0}
    assert g.decide(7.0) == 0 and g.probe is not None and g.probe.bps == 350_000
    g.on_remb(180_000, 7.5)  # over-use: it falls
    assert g.decide(7.6) == 0 and g.probe is None
    assert set(run(g, 7.7, 15.6, remb=235_000)) == {0} and g.probes == 1  # 8 s now
    assert g.decide(15.6) == 0 and g.probes == 2
    g.on_loss(0.12, 16.0)  # loss rises by more than 5 points: fails too
    assert set(run(g, 16.1, 17.5, remb=235_000)) == {0}
    assert g.probe is None and g.probes_passed == 0
    g.on_loss(0.0, 17.6)
    assert set(run(g, 17.6, 26.0, remb=180_000)) == {0} and g.probes == 2  # 10 s (the most)
    assert g.decide(26.1) == 0 and g.probes == 3
    # an estimate without room on its layer (< 1.3 × 150k) that stays flat: not a pass either
    assert set(run(g, 26.2, 28.0, remb=180_000)) == {0} and g.probes_passed == 0
    assert set(run(g, 28.0, 37.0, remb=180_000)) == {0} and g.probes == 3
    assert set(run(g, 37.0, 39.0, remb=180_000, grow=0.05)) == {0, 1} and g.probes == 4


def test_a_flat_estimate_with_room_on_its_layer_passes_a_probe() -> None:
    """Chromium's REMB often repeats one value for seconds; at ~1.5 × the layer it shows no over-use."""
    g = VideoGate(LAYERS, now_s=0.0)
    g.decide(0.0)
    g.on_remb(300_000, 3.0)
    assert g.decide(3.0) == 0
    out = run(g, 3.1, 10.0, remb=235_000)  # 1.57 × 150k, flat
    assert out[-1] == 1 and g.probes == 1 and g.probes_passed == 1


def test_a_switch_up_that_makes_the_estimate_fall_is_undone_and_doubles_the_wait() -> None:
    g = VideoGate(LAYERS, now_s=0.0)
    g.decide(0.0)
    g.on_remb(600_000, 3.0)
    assert g.decide(3.0) == 1
    run(g, 3.1, 8.0, remb=760_000, grow=0.01)
    assert g.decide(8.0) == 2
    g.on_remb(900_000, 9.0)
    assert g.decide(9.0) == 2
    g.on_remb(700_000, 10.0)  # fell from 900k: the link does not carry 1.5M
    assert g.decide(10.0) == 1
    out = run(g, 10.1, 17.9, remb=760_000)
    assert set(out) == {1} and g.probe is None  # 8 s wait, not 4
    assert g.decide(18.0) == 1 and g.probe is not None


def test_max_layer_cap_for_observers() -> None:
    g = VideoGate(LAYERS, now_s=0.0)
    g.max_layer = 0
    g.on_remb(10_000_000, 0.0)
    assert g.decide(0.0) == 0
    assert set(run(g, 0.1, 100.0)) == {0} and g.probes == 0  # never probes above its cap
    g.max_layer = None  # promoted: probes, then climbs one layer at a time
    out = run(g, 100.0, 130.0, remb=10_000_000)  # an estimate that carries every layer
    assert out[0] == 0 and out[-1] == 2 and out == sorted(out)
    g.max_layer = 1
    assert g.decide(130.1) == 1


def test_producer_bitrate_updates_and_missing_layers() -> None:
    g = VideoGate(LAYERS, now_s=0.0)
    g.on_producer_bitrate(2, 0)  # top layer not sent (publisher's own uplink is weak, or nobody wants it)
    assert g.decide(0.0) == 1
    g.on_producer_bitrate(1, 900_000)
    g.on_remb(700_000, 4.0)  # 900k × 0.8 = 720k does not hold; 150k × 1.15 fits
    assert g.decide(4.0) == 0
    with pytest.raises(ValueError):
        g.on_producer_bitrate(3, 1)


class Link:
    """A bottleneck with a capacity and random loss, and a receive-side AIMD estimator behind it
    (libwebrtc's: falls to 0.85 × throughput on over-use, otherwise +8 %/s at most, capped at
    1.5 × throughput + 10 kbit/s)."""

    def __init__(self, capacity: int, loss: float) -> None:
        self.capacity = capacity
        self.loss = loss
        self.estimate = 300_000.0
        self.rng = random.Random(7)

    def step(self, sent: float, dt: float) -> tuple[int, float]:
        through = min(sent, self.capacity)
        if sent > self.capacity * 1.05:
            self.estimate = 0.85 * through
        else:
            self.estimate = min(self.estimate * 1.08 ** dt, max(self.estimate, 1.5 * sent + 10_000))
        overflow = max(0.0, 1.0 - self.capacity / sent) if sent > 0 else 0.0
        loss = 1.0 - (1.0 - overflow) * (1.0 - self.loss * self.rng.uniform(0.6, 1.4))
        return int(self.estimate), loss


def simulate(link: Link, g: VideoGate, t0: float, t1: float, audio: int = 40_000) -> list[int]:
    out = []
    t = t0
    while t < t1 - 1e-9:
        layer = g.decide(t)
        out.append(layer)
        sent = audio + (LAYERS[layer] if layer >= 0 else 0)
        if g.probe is not None and t < g.probe.until_s:
            sent += g.probe.bps
        est, loss = link.step(sent, 0.2)
        g.on_estimate(est, t)
        if round(t * 5) % 5 == 0:  # a receiver report a second
            g.on_loss(loss, t)
        t = round(t + 0.2, 6)
    return out


def test_a_lossy_far_link_that_carries_the_middle_layer_never_pauses() -> None:
    """5 % random loss on a 1.2 Mbit/s link: the top layer does not fit, the middle one does."""
    g = VideoGate(LAYERS, now_s=0.0)
    out = simulate(Link(1_200_000, 0.05), g, 0.0, 120.0)
    assert -1 not in out
    settled = out[len(out) // 4:]
    assert settled.count(1) / len(settled) >= 0.7


def test_a_300_kbit_cap_keeps_the_lowest_layer_and_the_lifted_cap_brings_the_top_back() -> None:
    g = VideoGate(LAYERS, now_s=0.0)
    link = Link(300_000, 0.01)
    out = simulate(link, g, 0.0, 60.0)
    assert -1 not in out and set(out[len(out) // 4:]) == {0}
    link.capacity = 5_000_000
    out = simulate(link, g, 60.0, 120.0)
    assert out[-1] == 2 and -1 not in out
    top_at = 60.0 + out.index(2) * 0.2
    print("top layer back", top_at - 60.0, "s after the cap lifted")
    assert top_at - 60.0 <= 30.0, top_at


def test_constants_are_consistent() -> None:
    assert bwe.PAUSED_PROBE_EVERY_S + bwe.PAUSED_PROBE_S + bwe.PROBE_GRACE_S <= 2.5
    assert bwe.STARVED_FRACTION < bwe.KEEP_MARGIN < 1.0 < bwe.FIT_MARGIN


def test_noisy_random_loss_does_not_fail_a_probe() -> None:
    """5 % random loss reads 1-9 % from one receiver report to the next: not a rise caused by the probe."""
    g = VideoGate(LAYERS, now_s=0.0)
    g.decide(0.0)
    g.on_remb(600_000, 3.0)
    assert g.decide(3.0) == 1
    t, est, layer = 3.0, 600_000.0, 1
    while t < 12.0 and layer == 1:
        est *= 1.01
        g.on_remb(int(est), t)
        if round(t * 10) % 10 == 0:
            g.on_loss(0.01 if round(t) % 2 else 0.09, t)
        layer = g.decide(t)
        t = round(t + 0.1, 6)
    assert layer == 2 and g.probes == 1


# -- send-side (transport-cc) signals: congestion and measured probes --------------------------------


def test_a_single_big_layer_into_a_full_link_pauses_within_half_a_second_and_random_loss_never_does() -> None:
    # a camera without simulcast (1.5 Mbit/s) and a link the send-side estimator finds full: the estimate
    # falls far below the layer, the receiver's reports show little loss (retransmission repaired it)
    assert bwe.STARVED_DEEP_PAUSE_S == 0.5
    g = VideoGate([1_500_000], now_s=0.0)
    g.measured = True
    g.decide(0.0)
    for t in (3.0, 3.2, 3.4):
        g.on_estimate(120_000, t)
        g.on_congestion(True, t)
        g.on_loss(0.01, t)
        assert g.decide(t) == 0
    assert g.decide(3.5) == -1  # deep starvation on a full path: half a second
    # somewhat starved (below 0.7 × but above 0.3 × the layer) and full: the 3 s rule
    g = VideoGate([1_500_000], now_s=0.0)
    g.decide(0.0)
    g.on_congestion(True, 3.0)
    assert run(g, 3.0, 5.9, remb=900_000) == [0] * 29
    assert g.decide(6.0) == -1
    # the same estimates on a link that only loses at random (no queue): never paused
    g = VideoGate([1_500_000], now_s=0.0)
    g.decide(0.0)
    for k in range(60):
        t = 3.0 + k * 0.5
        g.on_estimate(120_000 if k % 2 else 900_000, t)
        g.on_congestion(False, t)
        g.on_loss(0.02, t)
        assert g.decide(t) == 0
    # a full moment that clears does not pause: the 1 s starts again
    g = VideoGate([1_500_000], now_s=0.0)
    g.decide(0.0)
    g.on_estimate(120_000, 3.0)
    g.on_congestion(True, 3.0)
    assert g.decide(3.0) == 0 and g.decide(3.45) == 0
    g.on_congestion(False, 3.47)
    g.on_congestion(True, 3.5)
    assert g.decide(3.95) == 0 and g.decide(4.0) == -1


def _measured_probe(g: VideoGate, t: float, delivered: float | None) -> tuple[int, float]:
    """Run the probe that started at ``t`` to its end, report ``delivered``; (decision, when)."""
    assert g.probe is not None
    end = g.probe.until_s + bwe.PROBE_GRACE_S  # (the transport measures at this instant, then decides)
    while t < end:
        assert g.decide(t) == g.layer
        t = round(t + 0.05, 6)
    g.on_probe_measured(delivered)
    return g.decide(t), t


def test_measured_probes_pass_on_what_the_path_delivered_not_on_the_estimate() -> None:
    g = VideoGate(LAYERS, now_s=0.0)
    g.measured = True
    g.decide(0.0)
    g.on_estimate(170_000, 3.0)
    assert g.decide(3.0) == 0  # the link carries the lowest layer only
    t = 3.0
    while g.probe is None:
        t = round(t + 0.1, 6)
        g.on_estimate(170_000, t)
        g.decide(t)
    assert g.probe.bps == LAYERS[1] - LAYERS[0] and t - 3.0 <= bwe.MEASURED_UP_WAIT_MIN_S + 0.1
    # the estimate rose during the probe, but the path delivered only 60 % of it: a cap, not passed
    g.on_estimate(400_000, t + 0.2)
    layer, t = _measured_probe(g, t, 0.6)
    assert layer == 0 and g.probes_passed == 0
    # the next try comes within the measured wait (a few seconds), not the REMB gate's 8-10 s
    t0 = t
    while g.probe is None:
        t = round(t + 0.1, 6)
        g.on_estimate(170_000, t)
        g.decide(t)
    assert t - t0 <= bwe.MEASURED_UP_WAIT_MAX_S + 0.1
    # the cap lifted: the estimate did not move (it cannot see room it is not sent), but the path
    # delivered everything: up at once
    layer, t = _measured_probe(g, t, 0.97)
    assert layer == 1 and g.probes_passed == 1
    # a probe whose feedback never came (the link went down) fails
    g2 = VideoGate(LAYERS, now_s=0.0)
    g2.measured = True
    g2.decide(0.0)
    g2.on_estimate(170_000, 3.0)
    t = 3.0
    while g2.probe is None:
        t = round(t + 0.1, 6)
        g2.decide(t)
    layer, _ = _measured_probe(g2, t, None)
    assert layer == 0 and g2.probes_passed == 0


def _paused_then_link_back(layer_bps: int) -> tuple[VideoGate, float]:
    """A measured gate paused on a full path at 4 s, the path calm again at 4.5 s: (gate, when its first
    paused burst started)."""
    g = VideoGate([layer_bps], now_s=0.0)
    g.measured = True
    g.decide(0.0)
    g.on_estimate(60_000, 3.0)
    g.on_congestion(True, 3.0)
    g.decide(3.0)
    assert g.decide(4.0) == -1
    g.on_congestion(False, 4.5)
    t = 4.0
    while g.probe is None:
        t = round(t + 0.1, 6)
        g.decide(t)
    return g, t


def test_a_paused_video_on_a_measured_path_resumes_in_two_probes_when_the_link_returns() -> None:
    g, t = _paused_then_link_back(1_500_000)
    assert g.probe is not None and g.probe.bps == bwe.PAUSED_PROBE_START_BPS  # a small burst first, never the layer
    layer, t = _measured_probe(g, t, 0.98)
    assert layer == -1 and g.probe is not None and g.probe.bps == 1_500_000  # then the layer's whole rate
    layer, t2 = _measured_probe(g, t, 0.95)
    assert layer == 0 and t2 - 4.5 <= 3.0  # (the link came back at 4.5)


def test_a_lifted_cap_climbs_every_layer_within_a_few_seconds_on_clean_measured_probes() -> None:
    """Each probe the path carried whole (≥ PROBE_ROOM) brings the next one half a second after the switch:
    the lowest to the top layer in under 3 s; a probe that passed with some loss waits the usual time."""
    g = VideoGate(LAYERS, now_s=0.0)
    g.measured = True
    g.decide(0.0)
    g.on_estimate(170_000, 3.0)
    assert g.decide(3.0) == 0
    t = 3.0
    while g.probe is None:
        t = round(t + 0.1, 6)
        g.on_estimate(170_000, t)
        g.decide(t)
    start = t
    layer, t = _measured_probe(g, t, 0.99)
    assert layer == 1
    g.on_estimate(LAYERS[0] + LAYERS[1], t)  # the transport lifts the estimate to what the probe carried
    switched = t
    while g.probe is None:
        t = round(t + 0.05, 6)
        g.on_estimate(LAYERS[0] + LAYERS[1], t)
        assert g.decide(t) == 1
    assert t - switched <= bwe.MEASURED_ROOM_WAIT_S + 0.06
    assert g.probe.bps == LAYERS[2] - LAYERS[1]
    layer, t = _measured_probe(g, t, 0.97)
    assert layer == 2 and t - start <= 3.0
    # the same climb on a path that lost some of the probe (passed, not clean): the usual wait
    g = VideoGate(LAYERS, now_s=0.0)
    g.measured = True
    g.decide(0.0)
    g.on_estimate(170_000, 3.0)
    g.decide(3.0)
    t = 3.0
    while g.probe is None:
        t = round(t + 0.1, 6)
        g.on_estimate(170_000, t)
        g.decide(t)
    layer, t = _measured_probe(g, t, 0.88)
    assert layer == 1
    switched = t
    while g.probe is None:
        t = round(t + 0.05, 6)
        g.on_estimate(LAYERS[0] + LAYERS[1], t)
        g.decide(t)
    assert t - switched >= bwe.MEASURED_UP_WAIT_MIN_S - 0.06


def test_a_paused_layer_whose_bitrate_moves_resumes_after_the_probe_at_its_rate() -> None:
    # a single layer whose measured bitrate moves between decisions (a live encoder: ±10 %); after the
    # small burst and the burst at the layer's rate of that moment pass, the video resumes, however the
    # bitrate moved meanwhile (it asked for yet another probe at the new rate, a second each)
    g, t = _paused_then_link_back(1_450_000)
    layer, t = _measured_probe(g, t, 0.98)
    assert layer == -1 and g.probe is not None and g.probe.bps == 1_450_000
    g.on_producer_bitrate(0, 1_560_000)  # the encoder's rate rose by 8 % since
    layer, t = _measured_probe(g, t, 0.97)
    assert layer == 0 and g.probes == 2


def _measured_result(g: VideoGate, t: float, delivered: float, carried_bps: int,
                     growth_s: float | None = None, queue_s: float | None = None) -> tuple[int, float]:
    """Run the probe that started at ``t`` to its end; its feedback is complete 0.1 s later: (decision, when)."""
    assert g.probe is not None
    end = g.probe.until_s
    while t < end:
        assert g.decide(t) == g.layer
        t = round(t + 0.05, 6)
    t = round(end + 0.1, 6)
    g.on_probe_measured(delivered, carried_bps, growth_s, queue_s)
    return g.decide(t), t


def _until_probe(g: VideoGate, t: float, estimate: int, limit: float) -> float:
    while g.probe is None:
        t = round(t + 0.05, 6)
        g.on_estimate(estimate, t)
        g.decide(t)
        assert t < limit, "no probe came"
    return t


def _capped() -> tuple[VideoGate, float]:
    """A measured gate on the lowest layer whose first probe up found a 300 kbit/s cap (50 kbit/s of audio
    + the layer + the probe's padding sent): (gate, when that probe was judged)."""
    g = VideoGate(LAYERS, now_s=0.0)
    g.measured = True
    g.decide(0.0)
    g.on_estimate(170_000, 3.0)
    assert g.decide(3.0) == 0
    t = _until_probe(g, 3.0, 170_000, 20.0)
    assert g.probe is not None and g.probe.bps == LAYERS[1] - LAYERS[0]
    layer, t = _measured_result(g, t, 300_000 / 550_000, 300_000)
    assert layer == 0 and g.probes_passed == 0
    return g, t


def test_a_cap_is_scouted_gently_and_its_lift_brings_the_full_probe_at_once() -> None:
    """Under a cap the first probe up (the next layer's whole rate) fails; it measured what the path carries,
    so the next tries are scouts at 1.25 × that (a queue that grows too slowly to drop the audio), every
    1.5 s without backing off.  A scout the path carries whole says the cap is gone: the full probe starts
    in the same decision, and its pass switches up — the judgment comes with the feedback, not a grace later."""
    g, t = _capped()
    scouts = []
    for _ in range(5):  # the cap stays: a scout a second, each as gentle as the first
        judged = t
        t = _until_probe(g, t, 170_000, t + 5.0)
        assert t - judged <= bwe.SCOUT_EVERY_S + 0.06
        assert g.probe is not None
        scouts.append(g.probe.bps)
        # what a scout sends in all: SCOUT_OVER × the cap (the audio + the layer + its padding)
        assert 50_000 + LAYERS[0] + g.probe.bps == pytest.approx(bwe.SCOUT_OVER * 300_000, abs=2)
        layer, t = _measured_result(g, t, 1 / bwe.SCOUT_OVER, 300_000)
        assert layer == 0
    # each the same, and half as far over the cap as the full probe (which sent 550 kbit/s into it)
    assert len(set(scouts)) == 1 and 50_000 + LAYERS[0] + scouts[0] - 300_000 <= (550_000 - 300_000) / 2
    # the cap lifts: the next scout gets through whole, and a probe for the top layer follows in the same
    # decision; its pass is one step to the top
    t = _until_probe(g, t, 170_000, t + 5.0)
    layer, t = _measured_result(g, t, 1.0, 420_000)
    assert layer == 0 and g.probe is not None and g.probe.bps == LAYERS[2] - LAYERS[0]
    layer, t2 = _measured_result(g, t, 0.99, 1_700_000)
    assert layer == 2 and t2 - t <= bwe.PROBE_S + 0.1 + 1e-9
    # a cap lifted only part of the way: the top probe fails, measures the new cap (900 kbit/s), and the
    # climb goes on a layer at a time (a scout at 1.4 × 900 would be more than the next layer's probe)
    g, t = _capped()
    t = _until_probe(g, t, 170_000, t + 5.0)
    layer, t = _measured_result(g, t, 1.0, 420_000)
    assert g.probe is not None and g.probe.bps == LAYERS[2] - LAYERS[0]
    layer, t = _measured_result(g, t, 900_000 / 1_700_000, 900_000)
    assert layer == 0
    t = _until_probe(g, t, 170_000, t + 5.0)
    assert g.probe.bps == LAYERS[1] - LAYERS[0]
    layer, t = _measured_result(g, t, 0.98, 700_000)
    assert layer == 1
    # a cap measured long ago is not trusted: after CAP_MEMORY_S the full probe measures the path again
    g, t = _capped()
    t = _until_probe(g, round(t + bwe.CAP_MEMORY_S, 6), 170_000, t + bwe.CAP_MEMORY_S + 5.0)
    assert g.probe is not None and g.probe.bps == LAYERS[1] - LAYERS[0]


def test_a_scout_the_shaper_absorbed_in_part_is_no_lift() -> None:
    """Into the same cap a scout is not delivered at 1 / 1.4: a shaper's bucket and queue carry its first part
    at line rate, so it shows ~0.88 delivered — but the queue it built raised the delay by ~0.1 s.  That is no
    lift: the gate keeps scouting, as gently as before (what the bucket let through does not raise the cap it
    remembers), and never probes the top layer.  A scout through a lifted cap — delivered, the delay flat
    within the link's jitter, even if the jitter made it look 0.9 delivered — brings the top probe; without
    arrival times (no growth known) only one delivered whole does."""
    g, t = _capped()
    first = None
    sent = int(bwe.SCOUT_OVER * 300_000)  # what a scout sends in all
    for _ in range(3):
        t = _until_probe(g, t, 170_000, t + 5.0)
        first = first or g.probe.bps
        # what it "carried" (0.88 of what it sent, more than the cap: the bucket's share) does not raise the cap
        assert g.probe.bps == pytest.approx(first, rel=0.01), "the scouts must not creep over the cap"
        layer, t = _measured_result(g, t, 0.88, int(0.88 * sent), growth_s=0.11)
        assert layer == 0
        t = _until_probe(g, t, 170_000, t + 5.0)
        assert g.probe is not None and g.probe.bps == pytest.approx(first, rel=0.01)  # a scout, not the top probe
        layer, t = _measured_result(g, t, 1 / bwe.SCOUT_OVER, 300_000)
    # a queue already full grows no further: flat delay, but a standing queue at the end: no lift either
    t = _until_probe(g, t, 170_000, t + 5.0)
    layer, t = _measured_result(g, t, 0.9, int(0.9 * sent), growth_s=0.004, queue_s=0.24)
    assert layer == 0 and g.probe is None
    t = _until_probe(g, t, 170_000, t + 5.0)
    assert g.probe.bps == pytest.approx(first, rel=0.03)  # a scout again
    layer, t = _measured_result(g, t, 0.9, int(0.9 * sent))  # no growth known: 0.9 is not enough
    assert layer == 0 and g.probe is None
    t = _until_probe(g, t, 170_000, t + 5.0)
    assert g.probe.bps == pytest.approx(first, rel=0.03)  # a scout again
    layer, t = _measured_result(g, t, 0.9, int(0.9 * sent), growth_s=0.008)
    assert g.probe is not None and g.probe.bps == LAYERS[2] - LAYERS[0]


def test_a_probe_is_cut_only_when_its_first_feedback_already_fails_it() -> None:
    g = VideoGate(LAYERS, now_s=0.0)
    g.measured = True
    g.decide(0.0)
    g.on_estimate(170_000, 3.0)
    g.decide(3.0)
    t = _until_probe(g, 3.0, 170_000, 20.0)
    assert not g.on_probe_progress(0.3, t + bwe.PROBE_CUT_AFTER_S / 2)  # too early to tell
    assert not g.on_probe_progress(0.8, t + 0.2)  # a path carrying most of it: the probe goes on
    assert g.probe is not None
    assert g.on_probe_progress(0.5, t + 0.2)
    assert g.probe is None  # the padding stops
    assert not g.on_probe_progress(0.5, t + 0.25)  # (once)
    g.on_probe_measured(0.5, 250_000)
    assert g.decide(t + 0.3) == 0 and g.next_probe_at == pytest.approx(t + 0.3 + bwe.SCOUT_EVERY_S)
    # an unmeasured gate (REMB only) is never cut: it has no delivery to judge by
    r = VideoGate(LAYERS, now_s=0.0)
    r.decide(0.0)
    r.on_estimate(170_000, 3.0)
    r.decide(3.0)
    t = _until_probe(r, 3.0, 170_000, 30.0)
    assert not r.on_probe_progress(0.1, t + 0.3) and r.probe is not None


def test_a_big_layer_steps_down_on_heavy_path_loss_and_a_ten_percent_link_never_flaps() -> None:
    """Random loss builds no queue, and a browser's receiver reports count what RTX repaired (0 % at 20 %):
    only transport-cc shows the path's own loss.  Above 15 % on average for 2 s a layer steps down, one at a
    time, to the lowest — never to a pause — and none is probed up while it stays above 10 %.  A 10 % link,
    whose windows wander from 0 to 25 %, keeps its layer (a single bar of 8 % made it flap)."""
    rng = random.Random(4)
    g = VideoGate(LAYERS, now_s=0.0)
    g.measured = True
    g.decide(0.0)
    t = 0.0
    switches = 0
    last = None
    for _ in range(1200):  # a minute of feedback at 20 Hz, 10 % loss, plenty of estimate: stays on top
        t = round(t + 0.05, 6)
        g.on_estimate(3_000_000, t)
        g.on_path_loss(min(1.0, max(0.0, rng.gauss(0.10, 0.06))), t)
        layer = g.decide(t)
        if g.probe is not None:
            _, t = _measured_result(g, t, 1.0, 2_000_000)
        switches += last is not None and layer != last
        last = layer
    assert last == 2 and switches <= 1, (last, switches)
    for _ in range(200):  # 20 %: down a layer every ~2 s, to the lowest, never paused
        t = round(t + 0.05, 6)
        g.on_estimate(3_000_000, t)
        g.on_path_loss(min(1.0, max(0.0, rng.gauss(0.20, 0.06))), t)
        layer = g.decide(t)
        assert layer >= 0
        if g.probe is not None:
            _, t = _measured_result(g, t, 1.0, 2_000_000)
    assert g.layer == 0
    for _ in range(400):  # the loss goes: probes again, back to the top
        t = round(t + 0.05, 6)
        g.on_estimate(3_000_000, t)
        g.on_path_loss(0.0, t)
        g.decide(t)
        if g.probe is not None:
            _, t = _measured_result(g, t, 1.0, 2_000_000)
    assert g.layer == 2


def test_path_loss_from_a_cap_does_not_hold_the_scouts() -> None:
    """Under a cap the path loses packets too (its queue overflows; lifting it flushes the queue), but the
    layer came down for the estimate, not for the path's loss: the scouts go on, and the lift is found."""
    g, t = _capped()
    for _ in range(10):
        g.on_path_loss(0.3, t)  # the queue overflowing, and flushed at the lift
    t = _until_probe(g, t, 170_000, t + bwe.SCOUT_EVERY_S + 1.0)
    assert g.probe is not None
