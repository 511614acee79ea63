"""media.gcc.SendSideEstimator on a simulated link: convergence, a capacity drop and return, random loss, bad input.

The link is a small deterministic model of what `../shared/notes/weak-link-lab.md` builds with
namespaces: a drop-tail bottleneck (like `tbf`: capacity, at most ``queue_s`` of backlog), a base
one-way delay with uniform jitter released in FIFO order, Bernoulli loss from a seeded RNG, and
blackouts.  The sender sends what the estimator allows (or a fixed stream, capped by it), the
receiver reports every packet in transport-cc style every 50–100 ms on its own clock (offset by
an arbitrary 1000 s), and the report reaches the sender one base delay later.  Probes are sent
by a sender policy of the test's own (``Prober``, libwebrtc's ProbeController in small: the SFU's own
probing is its layer gates') and measured with `measure_probe`, as the SFU does.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.gcc import PacketResult, SendSideEstimator, measure_probe, probe_delivery, probe_queue_growth

PACKET = 1200
RECEIVER_CLOCK_OFFSET = 1000.0
FEEDBACK_INTERVALS = (0.05, 0.1, 0.075)
PROBE_DURATION_S = 0.06
PROBE_MIN_PACKETS = 5


@dataclass
class Sent:
    send: float
    arrival: float | None
    size: int
    cluster: int = -1


class Link:
    """One direction of a bottleneck: drop-tail FIFO + delay/jitter + random loss + blackouts.

    A capacity change applies to the packets still queued too (they drain at the new rate).
    """

    def __init__(
        self,
        *,
        capacity_bps: float,
        delay_s: float,
        jitter_s: float = 0.0,
        loss: float = 0.0,
        queue_s: float = 0.5,
        seed: int = 1,
    ) -> None:
        self.capacity_bps = capacity_bps
        self.delay_s = delay_s
        self.jitter_s = jitter_s
        self.loss = loss
        self.queue_s = queue_s
        self.rng = random.Random(seed)
        self.free_at = 0.0
        self.last_release = 0.0
        self.blackouts: list[tuple[float, float]] = []
        self.in_flight: list[tuple[Sent, float, float]] = []  # (packet, transmission end, jitter)

    def backlog_s(self, t: float) -> float:
        return max(0.0, self.free_at - t)

    def set_capacity(self, t: float, bps: float) -> None:
        old = self.capacity_bps
        self.capacity_bps = bps
        self.in_flight = [e for e in self.in_flight if e[0].arrival is not None and e[0].arrival > t]
        release = max([e[0].arrival for e in self.in_flight if e[1] <= t] + [0.0])  # type: ignore[type-var]
        cur = t
        kept = []
        for pkt, end, jit in self.in_flight:
            if end > t:  # still queued or being sent: drains at the new rate
                start = end - pkt.size * 8 / old
                end = t + (end - t) * old / bps if start < t else cur + pkt.size * 8 / bps
                cur = end
                pkt.arrival = max(end + self.delay_s + jit, release)
                release = pkt.arrival
            kept.append((pkt, end, jit))
        self.in_flight = kept
        if cur > t:
            self.free_at = cur
        if kept:
            self.last_release = release

    def send(self, t: float, pkt: Sent) -> None:
        pkt.arrival = None
        if any(a <= t < b for a, b in self.blackouts):
            return
        if self.loss and self.rng.random() < self.loss:
            return
        if self.backlog_s(t) > self.queue_s:
            return  # tail drop
        self.free_at = max(t, self.free_at) + pkt.size * 8 / self.capacity_bps
        jit = self.rng.uniform(-self.jitter_s, self.jitter_s) if self.jitter_s else 0.0
        pkt.arrival = max(self.free_at + self.delay_s + jit, self.last_release)  # FIFO: never overtakes
        self.last_release = pkt.arrival
        self.in_flight.append((pkt, self.free_at, jit))
        if len(self.in_flight) > 4096:
            self.in_flight = [e for e in self.in_flight if e[0].arrival is not None and e[0].arrival > t]


@dataclass
class Trace:
    t: list[float] = field(default_factory=list)
    target: list[int] = field(default_factory=list)
    queue_s: list[float] = field(default_factory=list)
    state: list[str] = field(default_factory=list)

    def at(self, t: float) -> int:
        for ti, v in zip(self.t, self.target):
            if ti >= t:
                return v
        return self.target[-1]

    def first_time(self, after: float, pred) -> float | None:  # type: ignore[no-untyped-def]
        for ti, v in zip(self.t, self.target):
            if ti >= after and pred(v):
                return ti
        return None

    def between(self, a: float, b: float) -> list[int]:
        return [v for ti, v in zip(self.t, self.target) if a <= ti <= b]

    def queue_between(self, a: float, b: float) -> list[float]:
        return [q for ti, q in zip(self.t, self.queue_s) if a <= ti <= b]


class Prober:
    """When a sender probes and at what rate: 3× then 6× the start rate; then 2× the target while the
    estimator says normal (for ``NORMAL_FOR_S``), the loss is at the link's own level and the sender uses
    what it is given — at once after a probe that found room, else every ``INTERVAL_S``.  A probe with no
    result within 1 s failed.  (The SFU's probing is its layer gates', ``media/bwe.py``; this is the
    generic sender the estimator's own tests need.)"""

    STARTUP = (3.0, 6.0)
    INTERVAL_S = 2.0
    FACTOR = 2.0
    NORMAL_FOR_S = 1.0
    FOUND_ROOM = 0.8
    """A probe that got this share of its rate through found room: probe again at once, 2× higher."""
    ROOM_OVER_TARGET = 1.2
    """So did one that got this × the target through (on a jittery link a short cluster measures low)."""
    LOSS_LOW = 0.02

    def __init__(self, est: SendSideEstimator, start_bps: float) -> None:
        self.est = est
        self.start_bps = start_bps
        self.startup = 0
        self.normal_since: float | None = None
        self.last_s: float | None = None
        self.sent_s: float | None = None
        self.target = 0.0
        self.base = 0.0
        self.found_room = False
        self.timeouts = 0

    def rate(self, now: float) -> int:
        """The rate worth probing at now (0 = none); report the result with :meth:`result`."""
        est = self.est
        if est.delay_state != "normal":
            self.normal_since = None
        elif self.normal_since is None:
            self.normal_since = now
        target = est.target_bps
        if target >= est.max_bps:
            return 0
        if self.sent_s is not None:
            if now - self.sent_s < 1.0:
                return 0
            self.sent_s = None  # no result: lost, or too few packets arrived to measure
            self.timeouts += 1
            if self.timeouts > 1:
                self.found_room = False
        if self.startup < len(self.STARTUP):
            rate = self.start_bps * self.STARTUP[self.startup]
            self.startup += 1
        else:
            if self.normal_since is None or est.loss_excess >= self.LOSS_LOW:
                return 0
            sent = est.acked_bps / (1.0 - min(est.loss_fraction, 0.5))
            if sent < 0.8 * target:
                return 0  # application-limited: more room would not be used
            if not self.found_room:
                if now - self.normal_since < self.NORMAL_FOR_S:
                    return 0
                if self.last_s is not None and now - self.last_s < self.INTERVAL_S:
                    return 0
            rate = target * self.FACTOR
        rate = min(rate, float(est.max_bps))
        if rate <= target:
            return 0
        self.last_s = self.sent_s = now
        self.target, self.base = rate, float(target)
        return int(rate)

    def result(self, bps: int, now: float) -> None:
        self.timeouts = 0
        if self.sent_s is not None:
            self.found_room = bps >= self.FOUND_ROOM * self.target or bps >= self.ROOM_OVER_TARGET * self.base
            if bps < 0.7 * self.target:
                self.startup = len(self.STARTUP)  # the link is below what we probed: stop climbing
        self.sent_s = None
        self.est.on_probe(bps, now)


class Sim:
    """Sender + link + transport-cc receiver, stepped every millisecond."""

    def __init__(
        self,
        est: SendSideEstimator,
        link: Link,
        *,
        stream_bps: float | None = None,
        probing: bool = True,
    ) -> None:
        self.est = est
        self.link = link
        self.stream_bps = stream_bps
        self.fixed_bps: float | None = None
        """A sender that ignores the estimate (one simulcast layer forwarded as it comes)."""
        self.probing = probing
        self.prober = Prober(est, est.target_bps)
        self.t = 0.0
        self.pkts: list[Sent] = []
        self.budget = 0.0
        self.next_report = 0
        self.next_feedback = 0.05
        self.fb_i = 0
        self.in_flight: list[tuple[float, list[PacketResult], list[int]]] = []
        self.next_rtt = 1.0
        self.probe: tuple[float, float, int] | None = None  # (end, rate, id)
        self.probe_budget = 0.0
        self.clusters: dict[int, list[int]] = {}
        self.cluster_seen: dict[int, int] = {}
        self.trace = Trace()
        self.on_step = None
        self.clock_offset = RECEIVER_CLOCK_OFFSET

    def _send(self, size: int, cluster: int = -1) -> None:
        pkt = Sent(self.t, None, size, cluster)
        self.link.send(self.t, pkt)
        self.pkts.append(pkt)
        if cluster >= 0:
            self.clusters.setdefault(cluster, []).append(len(self.pkts) - 1)

    def _feedback(self) -> None:
        """The receiver reports up to the newest packet it has (losses before it included)."""
        tr = self.t
        hi = -1
        j = self.next_report
        while j < len(self.pkts) and self.pkts[j].send <= tr:
            a = self.pkts[j].arrival
            if a is not None and a <= tr:
                hi = j
            j += 1
        if hi < 0:
            return
        results = []
        seqs = []
        for k in range(self.next_report, hi + 1):
            p = self.pkts[k]
            arr = p.arrival + self.clock_offset if p.arrival is not None and p.arrival <= tr else None
            results.append(PacketResult(p.send, arr, p.size))
            seqs.append(k)
        self.next_report = hi + 1
        self.in_flight.append((tr + self.link.delay_s, results, seqs))

    def _deliver(self) -> None:
        while self.in_flight and self.in_flight[0][0] <= self.t:
            _, results, seqs = self.in_flight.pop(0)
            self.est.on_feedback(results, self.t)
            for k, r in zip(seqs, results):
                c = self.pkts[k].cluster
                if c >= 0:
                    self.cluster_seen[c] = self.cluster_seen.get(c, 0) + 1
                    if self.cluster_seen[c] == len(self.clusters[c]) and (self.probe is None or self.probe[2] != c):
                        rs = [
                            PacketResult(
                                self.pkts[i].send,
                                None if self.pkts[i].arrival is None else self.pkts[i].arrival + self.clock_offset,
                                self.pkts[i].size,
                            )
                            for i in self.clusters[c]
                        ]
                        got = measure_probe(rs)
                        if got is not None:
                            self.prober.result(got, self.t)

    def run(self, until_s: float, dt: float = 0.001) -> Trace:
        while self.t < until_s:
            if self.on_step is not None:
                self.on_step(self)
            target = self.est.target_bps
            rate = target if self.stream_bps is None else min(target, self.stream_bps)
            if self.fixed_bps is not None:
                rate = self.fixed_bps
            if self.probing and self.probe is None:
                p = self.prober.rate(self.t)
                if p:
                    cid = len(self.clusters)
                    self.clusters[cid] = []
                    self.probe = (self.t + PROBE_DURATION_S, float(p), cid)
                    self.probe_budget = PACKET * 8  # the first probe packet goes now
            if self.probe is not None:
                end, prate, cid = self.probe
                self.probe_budget += prate * dt
                while self.probe_budget >= PACKET * 8:
                    self.probe_budget -= PACKET * 8
                    self._send(PACKET, cid)  # media rides in the probe: its budget is spent here
                self.budget = 0.0
                if self.t >= end and len(self.clusters[cid]) >= PROBE_MIN_PACKETS:
                    self.probe = None
            else:
                self.budget = min(self.budget + rate * dt, 4 * PACKET * 8)
                while self.budget >= PACKET * 8:
                    self.budget -= PACKET * 8
                    self._send(PACKET)
            if self.t >= self.next_feedback:
                self._feedback()
                self.next_feedback = self.t + FEEDBACK_INTERVALS[self.fb_i % len(FEEDBACK_INTERVALS)]
                self.fb_i += 1
            self._deliver()
            if self.t >= self.next_rtt:
                self.est.on_rtt(2 * self.link.delay_s + self.link.backlog_s(self.t), self.t)
                self.next_rtt = self.t + 1.0
            if not self.trace.t or self.t - self.trace.t[-1] >= 0.05:
                self.trace.t.append(self.t)
                self.trace.target.append(self.est.target_bps)
                self.trace.queue_s.append(self.link.backlog_s(self.t))
                self.trace.state.append(self.est.delay_state)
            self.t = round(self.t + dt, 6)
        return self.trace


def _est(start: int, *, lo: int = 50_000, hi: int = 10_000_000) -> SendSideEstimator:
    return SendSideEstimator(start_bps=start, min_bps=lo, max_bps=hi)


@pytest.mark.parametrize("clock_offset", [1000.0, -5000.0])
def test_converges_on_a_2mbit_link_from_300kbit(clock_offset: float) -> None:
    link = Link(capacity_bps=2_000_000, delay_s=0.04)
    sim = Sim(_est(300_000), link)
    sim.clock_offset = clock_offset  # the receiver's clock: arrivals may even read "before" their sending
    tr = sim.run(30.0)
    t_in = tr.first_time(0.0, lambda v: v >= 0.7 * 2_000_000)
    assert t_in is not None and t_in <= 10.0, (t_in, tr.at(10.0))
    late = tr.between(10.0, 30.0)
    assert min(late) >= 0.7 * 2_000_000, min(late)
    assert max(late) <= 1.1 * 2_000_000, max(late)
    assert max(tr.queue_between(10.0, 30.0)) < 0.3


def test_without_probes_it_still_converges_at_8_percent_per_second() -> None:
    link = Link(capacity_bps=2_000_000, delay_s=0.04)
    sim = Sim(_est(300_000), link, probing=False)
    tr = sim.run(45.0)
    t_in = tr.first_time(0.0, lambda v: v >= 0.7 * 2_000_000)
    # 300k × 1.08^t = 1.4M → t ≈ 20 s
    assert t_in is not None and 15.0 <= t_in <= 30.0, t_in
    late = tr.between(35.0, 45.0)
    assert 0.7 * 2_000_000 <= min(late) and max(late) <= 1.1 * 2_000_000, (min(late), max(late))


def _drop_and_return(link: Link, start: int = 1_000_000) -> Trace:
    """2 Mbit/s for 20 s, 300 kbit/s for 20 s, 2 Mbit/s again for 20 s."""
    sim = Sim(_est(start), link)

    def cap(s: Sim) -> None:
        if s.t == 20.0:
            s.link.set_capacity(s.t, 300_000)
        if s.t == 40.0:
            s.link.set_capacity(s.t, 2_000_000)

    sim.on_step = cap
    return sim.run(60.0)


def test_capacity_drop_then_return() -> None:
    # a deep buffer (1 s): what the delay trend cannot see, a standing queue, must drain too
    tr = _drop_and_return(Link(capacity_bps=2_000_000, delay_s=0.04, queue_s=1.0))
    assert tr.at(19.9) >= 1_400_000
    fell = tr.first_time(20.0, lambda v: v < 350_000)
    assert fell is not None and fell - 20.0 <= 2.0, fell
    assert max(tr.between(22.0, 40.0)) <= 400_000
    late_q = tr.queue_between(30.0, 40.0)
    assert sum(late_q) / len(late_q) < 0.1, late_q  # drained: what remains is the probes' and the increases'
    assert max(late_q) < 0.3, max(late_q)
    back = tr.first_time(40.0, lambda v: v > 1_500_000)
    assert back is not None and back - 40.0 <= 5.0, back
    assert min(tr.between(48.0, 60.0)) >= 1_400_000


@pytest.mark.parametrize("seed", [1, 4])
def test_rural_link_capped_to_300kbit_then_lifted(seed: int) -> None:
    # the weak-link lab's rural link: 150 ± 20 ms each way, 5 % loss, `tbf` holding at most 250 ms
    link = Link(capacity_bps=2_000_000, delay_s=0.15, jitter_s=0.02, loss=0.05, queue_s=0.25, seed=seed)
    tr = _drop_and_return(link)
    fell = tr.first_time(20.0, lambda v: v < 350_000)
    assert fell is not None and fell - 20.0 <= 2.0, fell
    during = tr.between(22.0, 40.0)
    assert 200_000 <= min(during) and max(during) <= 450_000, (min(during), max(during))  # the layer that fits
    q = tr.queue_between(25.0, 40.0)
    assert sum(q) / len(q) < 0.15, sum(q) / len(q)  # not sitting in a full shaper
    back = tr.first_time(40.0, lambda v: v > 1_500_000)
    assert back is not None and back - 40.0 <= 8.0, back


@pytest.mark.parametrize("loss", [0.05, 0.10])
@pytest.mark.parametrize("seed", [7, 11])
def test_random_loss_on_a_far_link_keeps_the_stream(loss: float, seed: int) -> None:
    # 3 Mbit/s, 150 ± 20 ms each way (≈ 300 ms RTT, the weak-link lab's jitter), the teacher's 1.5 Mbit/s layer
    link = Link(capacity_bps=3_000_000, delay_s=0.15, jitter_s=0.02, loss=loss, seed=seed)
    sim = Sim(_est(1_500_000), link, stream_bps=1_500_000)
    tr = sim.run(60.0)
    assert min(tr.target) >= 1_500_000, (loss, min(tr.target), sim.est.inherent_loss)


@pytest.mark.parametrize("seed", [3, 5])
def test_twenty_percent_loss_goes_down_but_not_below_min(seed: int) -> None:
    link = Link(capacity_bps=3_000_000, delay_s=0.15, jitter_s=0.02, loss=0.20, seed=seed)
    est = _est(1_500_000, lo=100_000)
    sim = Sim(est, link, stream_bps=1_500_000)
    tr = sim.run(60.0)
    late = tr.between(20.0, 60.0)
    # 10 % above the inherent-loss bound at 1.5 Mbit/s: down, to where the bound covers the loss
    assert sum(late) / len(late) < 1_300_000, sum(late) / len(late)
    assert min(tr.target) >= 500_000, min(tr.target)  # not to the floor
    assert 0.1 <= est.loss_fraction <= 0.3
    assert 0.08 <= est.inherent_loss <= 0.2


def test_a_blackout_does_not_count_as_congestion() -> None:
    link = Link(capacity_bps=3_000_000, delay_s=0.05, seed=5)
    link.blackouts.append((20.0, 22.0))
    sim = Sim(_est(1_500_000), link, stream_bps=1_500_000)
    tr = sim.run(30.0)
    assert min(tr.between(18.0, 30.0)) >= 1_500_000, min(tr.between(18.0, 30.0))


def test_a_longer_path_is_not_taken_for_a_standing_queue() -> None:
    # a route change: 150 ms more each way for good, no queue. One cut at most, then the new delay is the base.
    link = Link(capacity_bps=2_000_000, delay_s=0.04)
    sim = Sim(_est(1_000_000), link)

    def reroute(s: Sim) -> None:
        if s.t == 20.0:
            s.link.delay_s = 0.19

    sim.on_step = reroute
    tr = sim.run(40.0)
    assert min(tr.between(20.0, 40.0)) >= 0.5 * 2_000_000
    assert min(tr.between(26.0, 40.0)) >= 0.7 * 2_000_000
    assert sim.est.standing_queue_s < 0.05


def _far_and_lossy_at(t0: float, loss: float):
    """The weak-link lab's step from a clean link to a far lossy one: 150 ms more each way, random loss."""

    def step(s: Sim) -> None:
        if s.t == t0:
            s.link.delay_s = 0.15
            s.link.jitter_s = 0.01
            s.link.loss = loss

    return step


@pytest.mark.parametrize("seed", [3, 5, 8])
def test_a_path_that_gets_far_and_lossy_at_once_is_not_a_queue(seed: int) -> None:
    # one 1.5 Mbit/s layer forwarded as it comes (it cannot slow down); at 20 s the path becomes 150 ms
    # longer each way and loses a fifth at random, with capacity to spare: never "full"
    sim = Sim(_est(1_500_000, lo=30_000), Link(capacity_bps=3_000_000, delay_s=0.001, seed=seed), probing=False)
    sim.fixed_bps = 1_500_000
    samples: list[tuple[float, bool, int]] = []
    step = _far_and_lossy_at(20.0, 0.20)

    def look(s: Sim) -> None:
        step(s)
        if s.t >= 20.0 and round(s.t * 1000) % 50 == 0:
            samples.append((s.t, s.est.congested, s.est.target_bps))

    sim.on_step = look
    sim.run(80.0)
    congested = [t for t, c, _ in samples if c]
    assert len(congested) <= 2, congested  # a feedback or two at most, never a second of "full"
    # the loss-based rate settles where the inherent-loss bound covers the loss, however long it
    # lasts: the same loss after every cut is the link's own, not the sender's doing
    low = min(b for _, _, b in samples)
    assert low >= 300_000, low


@pytest.mark.parametrize("seed", [3, 5, 8])
def test_a_step_whose_feedback_was_lost_is_still_a_step_not_a_queue(seed: int) -> None:
    # the same step, but the feedback about the packets just before and after it is lost (the lab's
    # uplink loses a fifth of the feedback too): the nearest packets the estimator can compare were sent
    # ~0.1 s apart, and the 150 ms jump between them is more than a queue fed at 1.25 × what arrives
    # (a fifth lost at random) could grow in that time
    sim = Sim(_est(1_500_000, lo=30_000), Link(capacity_bps=3_000_000, delay_s=0.001, seed=seed), probing=False)
    sim.fixed_bps = 1_500_000
    samples: list[tuple[float, bool]] = []
    step = _far_and_lossy_at(20.0, 0.20)

    def look(s: Sim) -> None:
        step(s)
        if 19.96 <= s.t <= 20.2:  # every feedback sent in this time is lost
            s.in_flight = [f for f in s.in_flight if f[0] - s.link.delay_s < 19.96]
        if s.t >= 20.0 and round(s.t * 1000) % 50 == 0:
            samples.append((s.t, s.est.congested))

    sim.on_step = look
    sim.run(40.0)
    congested = [t for t, c in samples if c]
    assert len(congested) <= 2, congested


def _congested_share(sim: Sim, start: float, until: float) -> float:
    samples: list[bool] = []

    def look(s: Sim) -> None:
        if s.t >= start and round(s.t * 1000) % 50 == 0:
            samples.append(s.est.congested)

    sim.on_step = look
    sim.run(until)
    return sum(samples) / len(samples)


def test_a_full_link_is_congested_and_a_lossy_one_is_not() -> None:
    # one 1.5 Mbit/s layer forwarded as it comes into the lab's 300 kbit/s cap (tbf: 250 ms of queue)
    capped = Sim(_est(1_500_000), Link(capacity_bps=300_000, delay_s=0.15, jitter_s=0.02, queue_s=0.25, seed=2),
                 probing=False)
    capped.fixed_bps = 1_500_000
    assert _congested_share(capped, 2.0, 20.0) >= 0.9
    # the same layer over a far link that loses 10 % or 20 % at random, with room to spare: never full
    for loss, seed in ((0.10, 3), (0.20, 5)):
        lossy = Sim(_est(1_500_000), Link(capacity_bps=3_000_000, delay_s=0.15, jitter_s=0.02, loss=loss, seed=seed),
                    probing=False)
        lossy.fixed_bps = 1_500_000
        assert _congested_share(lossy, 2.0, 30.0) <= 0.05, loss


def test_probe_delivery() -> None:
    # 0.4 s at 600 kbit/s (1200 bytes every 16 ms) through a 300 kbit/s link: half of it delivered
    capped = [PacketResult(i * 0.016, 7.0 + i * 0.032, 1200) for i in range(25)]
    share, bps = probe_delivery(capped)  # type: ignore[misc]
    assert share == pytest.approx(0.5, abs=0.03) and bps == pytest.approx(300_000, rel=0.06)
    # a link with room that loses a fifth at random (its own loss): all of it delivered
    lossy = [PacketResult(i * 0.016, None if i % 5 == 2 else 7.0 + i * 0.016, 1200) for i in range(25)]
    share, bps = probe_delivery(lossy, inherent_loss=0.2)  # type: ignore[misc]
    assert share >= 0.95 and bps >= 0.95 * 600_000
    share, _ = probe_delivery(lossy)  # type: ignore[misc]
    assert share < 0.85  # taken as the path's, the same loss fails the probe
    assert probe_delivery([PacketResult(i * 0.016, None, 1200) for i in range(25)]) == (0.0, 0)  # nothing through
    assert probe_delivery(capped[:2]) is None and probe_delivery([]) is None
    # a full drop-tail queue: only every other packet gets through, at the link's rate
    dropped = [PacketResult(i * 0.016, 7.0 + i * 0.016 if i % 2 == 0 else None, 1200) for i in range(25)]
    share, _ = probe_delivery(dropped)  # type: ignore[misc]
    assert share == pytest.approx(0.5, abs=0.05)


# -- pieces --------------------------------------------------------------------------------------


def test_measure_probe() -> None:
    # 10 packets sent at 4 Mbit/s (2.4 ms apart) arrive 4.8 ms apart: the link carries 2 Mbit/s
    sent = [PacketResult(i * 0.0024, 5.0 + i * 0.0048, 1200) for i in range(10)]
    got = measure_probe(sent)
    assert got is not None and 0.9 * 1_900_000 <= got <= 2_000_000
    # not saturated: the send rate
    fast = [PacketResult(i * 0.0024, 5.0 + i * 0.0024, 1200) for i in range(10)]
    assert measure_probe(fast) == pytest.approx(4_000_000, rel=1e-3)
    lossy = [PacketResult(i * 0.0024, None if i % 3 else 5.0 + i * 0.0024, 1200) for i in range(10)]
    assert measure_probe(lossy) is None
    assert measure_probe([]) is None


def test_a_growing_queue_is_over_use_and_a_steady_one_is_normal() -> None:
    est = _est(1_000_000)
    t = 0.0
    seq_t = 0.0
    for k in range(40):  # 2 s at ~1 Mbit/s, constant delay
        batch = []
        for _ in range(5):
            batch.append(PacketResult(seq_t, seq_t + 0.03, 1200))
            seq_t += 0.0096
        t = seq_t + 0.05
        est.on_feedback(batch, t)
    assert est.delay_state == "normal"
    assert 900_000 <= est.acked_bps <= 1_100_000
    before = est.target_bps
    extra = 0.0
    for k in range(10):  # each packet 4 ms later than the one before: a queue builds
        batch = []
        for _ in range(5):
            extra += 0.004
            batch.append(PacketResult(seq_t, seq_t + 0.03 + extra, 1200))
            seq_t += 0.0096
        t = seq_t + 0.05
        est.on_feedback(batch, t)
    assert est.delay_state == "overusing"
    assert est.target_bps < before


_times = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0]),
)
_packet = st.builds(
    PacketResult,
    send_time_s=_times,
    arrival_time_s=st.one_of(st.none(), _times),
    size=st.integers(min_value=-10, max_value=70_000),
)


@given(
    st.lists(
        st.tuples(st.lists(_packet, max_size=30), st.floats(min_value=0.0, max_value=1e5)),
        max_size=40,
    ),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=5),
)
@settings(max_examples=200, deadline=None)
def test_bad_input_never_breaks_the_estimate(feedbacks, rtts) -> None:  # type: ignore[no-untyped-def]
    est = _est(500_000, lo=30_000, hi=5_000_000)
    now = 0.0
    for i, (batch, dt) in enumerate(feedbacks):
        now += dt if i % 7 else -dt / 3  # the caller's clock may even step back
        est.on_feedback(batch, now)
        if i < len(rtts):
            est.on_rtt(rtts[i], now)
        est.on_probe(int(abs(dt) * 1000), now)
        v = est.target_bps
        assert isinstance(v, int) and 30_000 <= v <= 5_000_000
        assert est.acked_bps >= 0 and not math.isnan(est.loss_fraction)
        assert 0.0 <= est.loss_fraction <= 1.0
        assert est.delay_state in ("normal", "overusing", "underusing")


def test_all_lost_and_empty_feedback_hold_the_estimate() -> None:
    est = _est(800_000)
    for k in range(50):
        est.on_feedback([], k * 0.1)
        est.on_feedback([PacketResult(k * 0.1 + i * 0.01, None, 1200) for i in range(10)], k * 0.1 + 0.05)
    assert est.target_bps == 800_000
    assert est.acked_bps == 0


def _figures() -> None:  # pragma: no cover - `python -m tests.media.test_gcc` prints the figures in the docs
    tr = Sim(_est(300_000), Link(capacity_bps=2_000_000, delay_s=0.04), probing=False).run(45.0)
    t = tr.first_time(0.0, lambda v: v >= 1_400_000)
    print(f"2 Mbit/s from 300 kbit/s without probes: 0.7 × capacity after {t} s")
    for seed in range(1, 9):
        link = Link(capacity_bps=2_000_000, delay_s=0.15, jitter_s=0.02, loss=0.05, queue_s=0.25, seed=seed)
        tr = _drop_and_return(link)
        fell = (tr.first_time(20.0, lambda v: v < 350_000) or math.nan) - 20
        back = (tr.first_time(40.0, lambda v: v > 1_500_000) or math.nan) - 40
        d, q = tr.between(22, 40), tr.queue_between(25, 40)
        print(
            f"rural 2M→300k→2M seed {seed}: <350k after {fell:.2f} s,"
            f" {min(d) // 1000}-{max(d) // 1000}k under the cap, queue mean {1000 * sum(q) / len(q):.0f} ms,"
            f" >1.5M {back:.2f} s after the lift"
        )
    for loss in (0.05, 0.10, 0.20):
        lows = []
        for seed in range(1, 11):
            link = Link(capacity_bps=3_000_000, delay_s=0.15, jitter_s=0.02, loss=loss, seed=seed)
            lows.append(min(Sim(_est(1_500_000), link, stream_bps=1_500_000).run(60.0).target))
        print(f"3 Mbit/s, {loss:.0%} random loss, 1.5 Mbit/s stream, 10 seeds: lowest target {min(lows) // 1000}k")


if __name__ == "__main__":
    _figures()


def test_a_clean_measured_probe_lifts_a_loss_cut_from_a_cap_since_lifted() -> None:
    # one 1.5 Mbit/s layer into a 300 kbit/s cap for 10 s: the losses cut the loss-based rate
    sim = Sim(_est(1_500_000), Link(capacity_bps=300_000, delay_s=0.05, queue_s=0.25, seed=3), probing=False)
    sim.fixed_bps = 1_500_000
    sim.run(10.0)
    # the cap lifts; the video is paused, only ~100 kbit/s flows, the path drains and is calm
    sim.link.set_capacity(sim.t, 5_000_000)
    sim.fixed_bps = 100_000
    sim.run(14.0)
    est = sim.est
    assert est.loss_based_bps < 700_000 and est.delay_state != "overusing", (est.loss_based_bps, est.delay_state)
    low = est.target_bps
    # a probe measured only as a rate (no delivered share) does not undo the loss cut...
    est.on_probe(1_500_000, sim.t)
    assert est.target_bps < 700_000
    # ...one the path delivered whole (probe_delivery's share) does: the cut was the cap's
    est.on_probe(1_500_000, sim.t, delivered=0.98)
    assert est.target_bps >= 1_400_000 > low


def test_the_queue_a_probe_built_shows_as_delay_growth_even_where_a_bucket_delivered_its_first_part() -> None:
    """Half a second at 420 kbit/s: through a 300 kbit/s shaper whose 4.5 kB bucket was full (the first part
    at line rate, then a queue that fills at 120 kbit/s), and through a path with room; both with ±10 ms of
    jitter (FIFO).  The delivered share hardly tells them apart; the delay growth does."""
    rng = random.Random(5)
    size, rate, cap, bucket = 600, 420_000, 300_000, 4500
    n = int(0.5 * rate / 8 / size)
    sends = [i * size * 8 / rate for i in range(n)]

    def through(capped: bool) -> list[PacketResult]:
        out, link_free, tokens, last_arr = [], 0.0, float(bucket), 0.0
        for t in sends:
            if capped:
                tokens = min(bucket, tokens + (t - link_free) * cap / 8) if t > link_free else tokens
                if tokens >= size:
                    tokens -= size
                    leave = t
                else:
                    leave = max(t, link_free) + size * 8 / cap
                link_free = max(link_free, leave)
            else:
                leave = t
            arr = max(last_arr, leave + 0.15 + rng.uniform(-0.01, 0.01))
            last_arr = arr
            out.append(PacketResult(t, arr + 1000.0, size))
        return out

    capped, roomy = through(True), through(False)
    d_capped, d_roomy = probe_delivery(capped), probe_delivery(roomy)
    assert d_capped is not None and d_roomy is not None
    assert d_capped[0] > 0.75  # mostly "delivered": the bucket and the queue took it
    g_capped, g_roomy = probe_queue_growth(capped), probe_queue_growth(roomy)
    assert g_capped is not None and g_roomy is not None
    assert g_capped > 0.06, g_capped
    assert abs(g_roomy) < 0.02, g_roomy
    assert probe_queue_growth(roomy[:4]) is None
    assert probe_queue_growth([PacketResult(float("nan"), None, 600)] * 10) is None
