"""Send-side bandwidth estimation from transport-wide feedback, in the spirit of Google Congestion Control.

Owns the estimate of how many bits per second the path from the SFU to one
subscriber carries, computed from transport-cc feedback (which packets
arrived, when, which were lost) and the round-trip time.  It must not send,
schedule or read anything: no socket, no clock, no asyncio, no logging.
Every input carries its own time (``now_s``), so tests drive it with a fake
clock.  Arrival times come from the receiver's clock: only their differences
are used.

Two estimators, the target is the lower of them (clamped to [min, max]):

* **Delay-based** (draft-ietf-rmcat-gcc-02 §5, libwebrtc ``goog_cc``):
  packets are grouped into 5 ms send-time bursts; the change of one-way
  delay between groups is accumulated, smoothed (0.9) and a least-squares
  trend over the last 20 groups is compared with an adaptive threshold
  (gain 4, the threshold follows the trend slowly up and faster down, 6..600).
  *Over-use* (the trend stays above the threshold and grows) cuts the rate to
  0.85 × the acknowledged bitrate (what the receiver got over the last 0.5 s,
  divided by 1 − the link's inherent loss: random loss is no rate limit), at
  most once per RTT, once the feedbacks have said over-use for 0.25 s without
  a break (with 150 ± 20 ms of jitter the detector flickers into over-use for
  up to ~0.15 s a few times a minute); *normal* increases it, multiplicatively
  (8 %/s) far from the last congested rate, additively (about one packet per
  response time) near it, never above 1.5 × the acknowledged bitrate
  + 10 kbit/s; *under-use* (a queue draining) holds, and so does "normal"
  until the delay stops falling (the threshold adapts to a long drain, and
  increasing then would keep a standing queue).
* **Loss-based**: the loss fraction over windows of ~1 s.  The classic rule
  (< 2 % increase 8 %/s, 2–10 % hold, > 10 % decrease by (1 − 0.5 × loss))
  drives the estimate to nothing on a rural link whose loss is *random*
  (radio, satellite) and does not fall when the sender slows down.  So the
  rule is applied to the loss **above the link's inherent loss**: an average
  of the loss in windows with no queue (neither a growing one nor a standing
  one), bounded as libwebrtc's newer loss-based estimator (LossBasedBweV2,
  which fits an inherent loss and a capacity) bounds it: at most 5 % +
  75 kbit/s ÷ the sending rate (10 % at 1.5 Mbit/s, 20 % at 500 kbit/s).
  Growing needs the loss (two windows' average) within one standard error of
  the inherent loss + 2 %; a cut needs it 10 % above and starts from what was
  sent.  A link with 5 % or 10 % random loss and capacity to spare thus keeps
  its rate; 20 % random loss is 10 % excess at 1.5 Mbit/s and brings the rate
  down until the bound covers it (about 1 Mbit/s in the tests), never to
  nothing: a sender that cannot slow down (one layer forwarded as it comes)
  sees the same loss after every cut, so no cut goes below the rate at which
  the bound takes all of the loss for the link's own (500 kbit/s at 20 %).  Windows in which a queue was growing are left to the delay-based
  rate (cutting again for the same overshoot's losses would undershoot the
  link).  A run of losses over ``BLACKOUT_S`` with nothing delivered is a link
  that was down, not full (a full link still delivers at its capacity), and is
  not counted.  The price: a policer that drops without any queue is taken for
  inherent loss up to that bound, so the rate may sit 10–25 % above a policed
  rate.
* **Standing queue**: the delay trend cannot see a drop-tail queue that stays
  full (a shaper at its limit, bufferbloat).  The one-way delay above the
  lowest of the last 30 s is the queue standing now; a queue of > 100 ms for a
  whole window is drained (0.85 × what gets through, as an over-use), its
  tail drops are acted on and never learned as inherent loss, and if it does
  not shrink after the cut the path got longer, so its delay becomes the base.
  A delay that jumps from one packet to the next by more than any queue could
  have grown in between (a new route, a radio link's stall, the lab switching
  to a far link) is taken as the path's new delay at once, and the jump is
  no trend for the delay detector.

Probes: the caller sends a burst of padding above the target, measures what
got through with :func:`measure_probe` and reports it with
:meth:`SendSideEstimator.on_probe`; while the delay detector says normal the
estimate jumps to the probed rate (GCC climbs 8 %/s otherwise: 300 kbit/s to
2 Mbit/s takes ~20 s).  When to probe, and for what, is the caller's policy:
the SFU's layer gates probe for the next layer up (``media/bwe.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple


class PacketResult(NamedTuple):
    """One packet as transport-cc feedback reports it."""

    send_time_s: float
    """When the sender sent it (sender's clock)."""
    arrival_time_s: float | None
    """When it arrived (receiver's clock, arbitrary offset); None = lost."""
    size: int
    """Bytes on the wire (RTP)."""


# -- delay-based: grouping and trendline (libwebrtc inter_arrival_delta / trendline_estimator) --
GROUP_S = 0.005
"""Packets sent within this of a group's first packet form one group."""
BURST_DELTA_S = 0.005
BURST_MAX_S = 0.1
ARRIVAL_JUMP_S = 3.0
"""An arrival clock that jumps this much more than the sender's clock resets the grouping."""
REORDER_RESET = 3
STREAM_TIMEOUT_S = 2.0
"""No feedback for this long: the delay history is stale, start over."""

TREND_WINDOW = 20
TREND_SMOOTHING = 0.9
THRESHOLD_GAIN = 4.0
MIN_NUM_DELTAS = 60
OVERUSE_TIME_MS = 10.0
THRESHOLD_INIT_MS = 12.5
THRESHOLD_MIN_MS = 6.0
THRESHOLD_MAX_MS = 600.0
K_UP = 0.0087
K_DOWN = 0.039
MAX_ADAPT_OFFSET_MS = 15.0

OVERUSE_CONFIRM_S = 0.25
"""The rate is cut once feedbacks have said over-use without a break for this long: on a link with
150 ± 20 ms of jitter the detector flickers into over-use for up to ~0.15 s (three feedbacks) a few
times a minute; a real queue keeps it there."""

# -- delay-based: rate control (libwebrtc aimd_rate_control) --
BETA = 0.85
"""Over-use: the rate becomes this × the acknowledged bitrate."""
INCREASE_PER_S = 1.08
"""Multiplicative increase far from the last congested rate."""
MIN_ADDITIVE_BPS_PER_S = 4_000.0
ACKED_WINDOW_S = 0.5
ACKED_BUCKET_S = 0.05

# -- loss-based --
LOSS_WINDOW_S = 1.0
LOSS_WINDOW_MIN_PACKETS = 20
LOSS_WINDOW_MAX_S = 3.0
LOSS_LOW = 0.02
LOSS_HIGH = 0.10
LOSS_CONGESTED = 0.30
"""Loss this far above the link's own says the path is full (``SendSideEstimator.congested``)."""
INHERENT_LOSS_OFFSET = 0.05
INHERENT_LOSS_BALANCE_BPS = 75_000.0
"""The inherent loss is capped at OFFSET + BALANCE / sending rate (libwebrtc LossBasedBweV2's bound):
10 % at 1.5 Mbit/s, 20 % at 500 kbit/s, so heavy random loss settles at a low rate instead of zero."""
INHERENT_LOSS_MAX = 0.5
LOSS_AVG_ALPHA = 0.5
"""Weight of the newest window in the loss the decisions use."""
INHERENT_ALPHA = 0.3
"""Weight of the newest window in the inherent-loss average."""
LOSS_DECREASE_INTERVAL_S = 0.3
"""Loss-based decreases at most once per this + RTT."""
BLACKOUT_S = 0.5
"""A run of lost packets spanning this much send time with nothing delivered: the link was down."""

BASE_WINDOW_S = 30
"""The path's base one-way delay is the lowest of this many seconds."""
STANDING_QUEUE_S = 0.1
"""A queue standing this long (above the base delay) makes the window's loss congestion loss."""
PATH_STEP_S = 0.05
"""A one-way delay that rises this much from one received packet to the next, beyond what a queue could
have grown in between, is a path that got longer (a new route, a radio link's stall), not a queue.  A
queue fed at the send rate and drained at the delivered rate grows by (sent ÷ delivered − 1) × the time
between the two sends (at most ``PATH_STEP_MAX_EXCESS`` × it), plus two packets' time for the grouping:
that is the allowance.  (A far, lossy link whose feedback around the step was lost compares two packets
sent 0.1 s apart: at 20 % random loss the allowance is 25 ms of it, not all of it.)"""
PATH_STEP_MAX_EXCESS = 3.0
PATH_STEP_GAP_S = 0.2
"""Packets sent further apart than this (a lost feedback, a pause) are not compared."""

# -- probing --
PROBE_MIN_RECEIVED = 0.8
PROBE_UNSATURATED = 0.9
PROBE_UTILIZATION = 0.95
PROBE_CLEAN = 0.95
"""A probe window delivered this share of what was sent (``probe_delivery``): no loss of the path's own."""

DEFAULT_RTT_S = 0.2

_NAMES = ("normal", "overusing", "underusing")
_NORMAL, _OVER, _UNDER = 0, 1, 2


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _probe_rates(results: Sequence[PacketResult]) -> tuple[int, int, float, float] | None:
    """(packets, arrived, send bps, receive bps) of a cluster, or None when fewer than 3 arrived.

    The send rate counts every arrived packet's bytes but the last sent over the send span; the
    receive rate is the least-squares slope of bytes received against arrival time (the first and
    last arrivals alone carry the jitter of two packets, and a late packet delays every one behind
    it); ``math.inf`` when everything arrived at once."""
    n = 0
    got = 0
    first_send = last_send = 0.0
    size_all = 0
    last_size = 0
    arr: list[tuple[float, int]] = []
    for r in results:
        if not (_finite(r.send_time_s) and isinstance(r.size, int) and r.size > 0):
            continue
        n += 1
        if r.arrival_time_s is None or not _finite(r.arrival_time_s):
            continue
        if got == 0:
            first_send = last_send = r.send_time_s
            last_size = r.size
        else:
            if r.send_time_s < first_send:
                first_send = r.send_time_s
            if r.send_time_s >= last_send:
                last_send, last_size = r.send_time_s, r.size
        got += 1
        size_all += r.size
        arr.append((r.arrival_time_s, r.size))
    if got < 3:
        return None
    send_s = last_send - first_send
    if send_s <= 0.0:
        return None
    send_bps = (size_all - last_size) * 8 / send_s
    # bytes that had arrived before each packet, against its arrival time: the slope is the rate
    arr.sort()
    t0 = arr[0][0]
    cum = 0
    sx = sy = sxx = sxy = 0.0
    for t, size in arr:
        x = t - t0
        sx += x
        sy += cum
        sxx += x * x
        sxy += x * cum
        cum += size
    den = got * sxx - sx * sx
    if den <= 0.0:
        return n, got, send_bps, math.inf
    return n, got, send_bps, (got * sxy - sx * sy) / den * 8


def measure_probe(results: Sequence[PacketResult]) -> int | None:
    """The rate a probe cluster got through: min(send rate, receive rate), or None if it says nothing.

    ``results`` are the feedback entries of one probe cluster's packets (send
    a cluster of at least 5 packets over ≥ 60 ms: on a link with ±20 ms of
    jitter a shorter one measures mostly jitter).  None when fewer than 80 %
    arrived or fewer than 3 did.  When the receive rate is clearly below the
    send rate the link was saturated: 95 % of the receive rate (libwebrtc's
    ProbeBitrateEstimator).
    """
    rates = _probe_rates(results)
    if rates is None:
        return None
    n, got, send_bps, recv_bps = rates
    if got < PROBE_MIN_RECEIVED * n:
        return None
    if recv_bps == math.inf:
        return int(send_bps)  # arrived all at once: the link carried at least the send rate
    if recv_bps <= 0.0:
        return None
    # arrivals bunched closer than they were sent (jitter released in a burst): the link carried the
    # send rate at least (libwebrtc discards such a cluster; on a jittery link that is most of them)
    res = min(send_bps, recv_bps)
    if recv_bps < PROBE_UNSATURATED * send_bps:
        res = PROBE_UTILIZATION * recv_bps
    return int(res)


def probe_queue_growth(results: Sequence[PacketResult]) -> float | None:
    """How much the one-way delay grew across a probe window, in seconds: the least-squares slope of
    (arrival − send) against send time, times the window's send span.  A path that carries what was sent
    keeps it flat (± its jitter); one that cannot builds a queue, and the delay climbs while the queue
    fills — even where a shaper's bucket let the first part through at line rate, which the delivered
    share alone cannot tell from a path with room.  None when fewer than 5 packets arrived.  (The two
    clocks' offset cancels in the slope.)"""
    n = 0
    sx = sy = sxx = sxy = 0.0
    first = last = 0.0
    x0 = y0 = None
    for r in results:
        a = r.arrival_time_s
        if a is None or not (_finite(a) and _finite(r.send_time_s)):
            continue
        if x0 is None:
            x0, y0 = r.send_time_s, a - r.send_time_s
            first = last = r.send_time_s
        x = r.send_time_s - x0
        y = (a - r.send_time_s) - y0
        first, last = min(first, r.send_time_s), max(last, r.send_time_s)
        n += 1
        sx += x
        sy += y
        sxx += x * x
        sxy += x * y
    span = last - first
    if n < 5 or span <= 0.0:
        return None
    den = n * sxx - sx * sx
    if den <= 0.0:
        return None
    return (n * sxy - sx * sy) / den * span


def probe_delivery(results: Sequence[PacketResult], inherent_loss: float = 0.0) -> tuple[float, int] | None:
    """How much of what was sent during a probe window the path carried: (delivered share, bits per second).

    ``results`` are the feedback entries of every packet sent on the transport in the window
    (the media and the probe's padding).  The share is the receive rate, undone by the link's
    own random loss (``inherent_loss``: those packets were not lost to a full queue), over the
    send rate, at most 1; the rate is that share of the send rate.  A probe into a link that
    cannot carry it delivers its capacity's share of it (a 600 kbit/s window through a
    300 kbit/s cap: 0.5); one that fits delivers about 1 whatever the link's random loss.
    (0, 0) when packets were sent and (almost) none arrived; None when fewer than 5 were sent.
    """
    # what was sent: every packet, lost or not (a full queue drops what exceeds the link, so the packets
    # that arrived were sent at about the link's rate)
    n = size_all = last_size = 0
    first = last = 0.0
    for r in results:
        if not (_finite(r.send_time_s) and isinstance(r.size, int) and r.size > 0):
            continue
        if n == 0:
            first = last = r.send_time_s
            last_size = r.size
        elif r.send_time_s >= last:
            last, last_size = r.send_time_s, r.size
        elif r.send_time_s < first:
            first = r.send_time_s
        n += 1
        size_all += r.size
    if n < 5 or last <= first:
        return None
    send_bps = (size_all - last_size) * 8 / (last - first)
    rates = _probe_rates(results)
    if rates is None:
        return 0.0, 0
    recv_bps = rates[3]
    keep = 1.0 - min(max(inherent_loss, 0.0), 0.5)
    share = min(1.0, recv_bps / keep / send_bps) if recv_bps != math.inf else 1.0
    share = max(share, 0.0)
    return share, int(share * send_bps)


class _InterArrival:
    """Groups packets into 5 ms send bursts and yields (send delta, arrival delta) between groups."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.empty = True
        self.first_send = self.send = self.first_arr = self.complete = self.sys = 0.0
        self.prev_valid = False
        self.prev_send = self.prev_complete = self.prev_sys = 0.0
        self.reordered = 0
        self.send_delta = 0.0
        self.arrival_delta = 0.0

    def _belongs_to_burst(self, arrival: float, send: float) -> bool:
        arr_delta = arrival - self.complete
        send_delta = send - self.send
        if send_delta == 0.0:
            return True
        return (
            arr_delta - send_delta < 0.0
            and arr_delta <= BURST_DELTA_S
            and arrival - self.first_arr < BURST_MAX_S
        )

    def add(self, send: float, arrival: float, sys_now: float) -> bool:
        """Feed one received packet (arrival order); True when a group completed (deltas set)."""
        done = False
        if self.empty:
            self.empty = False
            self.first_send = self.send = send
            self.first_arr = arrival
        elif send < self.first_send:
            return False  # older than the current group: reordered, skip
        elif not self._belongs_to_burst(arrival, send) and send - self.first_send > GROUP_S:
            if self.prev_valid:
                self.send_delta = self.send - self.prev_send
                self.arrival_delta = self.complete - self.prev_complete
                sys_delta = self.sys - self.prev_sys
                if self.arrival_delta - sys_delta >= ARRIVAL_JUMP_S:
                    self.reset()
                    self.empty = False
                    self.first_send = self.send = send
                    self.first_arr = self.complete = arrival
                    self.sys = sys_now
                    return False
                if self.arrival_delta < 0.0:
                    self.reordered += 1
                    if self.reordered >= REORDER_RESET:
                        self.reset()
                    return False
                self.reordered = 0
                done = True
            self.prev_valid = True
            self.prev_send, self.prev_complete, self.prev_sys = self.send, self.complete, self.sys
            self.first_send = self.send = send
            self.first_arr = arrival
        elif send > self.send:
            self.send = send
        self.complete = arrival
        self.sys = sys_now
        return done


class _Trendline:
    """Trend of the smoothed one-way delay over the last groups, and the over-use detector on it."""

    def __init__(self) -> None:
        self.xs = [0.0] * TREND_WINDOW
        self.ys = [0.0] * TREND_WINDOW
        self.reset()

    def reset(self) -> None:
        self.count = 0  # points in the ring
        self.head = 0
        self.num_deltas = 0
        self.first_arrival_ms: float | None = None
        self.accumulated = 0.0
        self.smoothed = 0.0
        self.prev_trend = 0.0
        self.threshold = THRESHOLD_INIT_MS
        self.last_threshold_ms: float | None = None
        self.time_over = -1.0
        self.over_count = 0
        self.state = _NORMAL
        self.modified_trend = 0.0

    def _slope(self) -> float | None:
        """Least-squares slope of the (full) window; the ring's order does not matter."""
        xs, ys = self.xs, self.ys
        mx = sum(xs) / TREND_WINDOW
        my = sum(ys) / TREND_WINDOW
        num = den = 0.0
        for x, y in zip(xs, ys):
            dx = x - mx
            num += dx * (y - my)
            den += dx * dx
        if den <= 0.0:
            return None
        return num / den

    def update(self, recv_delta_ms: float, send_delta_ms: float, arrival_ms: float) -> None:
        delta = recv_delta_ms - send_delta_ms
        self.num_deltas = min(self.num_deltas + 1, 1000)
        if self.first_arrival_ms is None:
            self.first_arrival_ms = arrival_ms
        self.accumulated += delta
        self.smoothed = TREND_SMOOTHING * self.smoothed + (1 - TREND_SMOOTHING) * self.accumulated
        self.xs[self.head] = arrival_ms - self.first_arrival_ms
        self.ys[self.head] = self.smoothed
        self.head = (self.head + 1) % TREND_WINDOW
        if self.count < TREND_WINDOW:
            self.count += 1
        trend = self.prev_trend
        if self.count == TREND_WINDOW:
            s = self._slope()
            if s is not None:
                trend = s
        self._detect(trend, send_delta_ms, arrival_ms)

    def _detect(self, trend: float, ts_delta_ms: float, now_ms: float) -> None:
        if self.num_deltas < 2:
            self.state = _NORMAL
            return
        modified = min(self.num_deltas, MIN_NUM_DELTAS) * trend * THRESHOLD_GAIN
        self.modified_trend = modified
        if modified > self.threshold:
            if self.time_over == -1.0:
                self.time_over = ts_delta_ms / 2
            else:
                self.time_over += ts_delta_ms
            self.over_count += 1
            if self.time_over > OVERUSE_TIME_MS and self.over_count > 1 and trend >= self.prev_trend:
                self.time_over = 0.0
                self.over_count = 0
                self.state = _OVER
        elif modified < -self.threshold:
            self.time_over = -1.0
            self.over_count = 0
            self.state = _UNDER
        else:
            self.time_over = -1.0
            self.over_count = 0
            self.state = _NORMAL
        self.prev_trend = trend
        self._update_threshold(modified, now_ms)

    def _update_threshold(self, modified: float, now_ms: float) -> None:
        if self.last_threshold_ms is None:
            self.last_threshold_ms = now_ms
        a = abs(modified)
        if a > self.threshold + MAX_ADAPT_OFFSET_MS:
            # a spike (a route change, a burst): do not let it drag the threshold
            self.last_threshold_ms = now_ms
            return
        k = K_DOWN if a < self.threshold else K_UP
        dt = min(max(now_ms - self.last_threshold_ms, 0.0), 100.0)
        self.threshold += k * (a - self.threshold) * dt
        self.threshold = min(max(self.threshold, THRESHOLD_MIN_MS), THRESHOLD_MAX_MS)
        self.last_threshold_ms = now_ms


class _AckedBitrate:
    """What the receiver got over the last ``ACKED_WINDOW_S`` of its clock, in 50 ms buckets."""

    N = int(round(ACKED_WINDOW_S / ACKED_BUCKET_S))

    def __init__(self) -> None:
        self.bytes = [0] * self.N
        self.reset()

    def reset(self) -> None:
        for i in range(self.N):
            self.bytes[i] = 0
        self.first_bucket: int | None = None
        self.last_bucket = 0
        self.last_arrival = 0.0

    def add(self, arrival: float, size: int) -> None:
        b = math.floor(arrival / ACKED_BUCKET_S)
        if self.first_bucket is None:
            self.first_bucket = self.last_bucket = b
            self.last_arrival = arrival
        elif b > self.last_bucket:
            if b - self.last_bucket > 40 * self.N:  # the receiver's clock jumped: start over
                self.reset()
                self.first_bucket = b
            else:
                for k in range(self.last_bucket + 1, min(b, self.last_bucket + self.N) + 1):
                    self.bytes[k % self.N] = 0
            self.last_bucket = b
            self.last_arrival = arrival
        elif b <= self.last_bucket - self.N:
            if self.last_bucket - b > 40 * self.N:
                self.reset()
                self.first_bucket = self.last_bucket = b
                self.last_arrival = arrival
            else:
                return  # older than the window
        elif arrival > self.last_arrival:
            self.last_arrival = arrival
        self.bytes[b % self.N] += size

    def bps(self) -> float | None:
        if self.first_bucket is None:
            return None
        oldest = max(self.first_bucket, self.last_bucket - self.N + 1)
        span = self.last_arrival - oldest * ACKED_BUCKET_S
        if span < 2 * ACKED_BUCKET_S:
            return None
        total = 0
        for k in range(oldest, self.last_bucket + 1):
            total += self.bytes[k % self.N]
        return total * 8 / span


class _StandingQueue:
    """How much one-way delay the path carries above its lowest of the last ``BASE_WINDOW_S``.

    The delay detector sees only the delay's *trend*: a drop-tail queue that stays full (a shaper
    at its limit, bufferbloat) has none, and its tail drops look like random loss.  The lowest
    one-way delay of the last 30 s (per-second minima, as LEDBAT keeps its base delay) is the path
    without a queue; the lowest of the latest feedback, less that, is the queue standing now.
    """

    def __init__(self) -> None:
        self.mins = [0.0] * BASE_WINDOW_S
        self.ids = [0] * BASE_WINDOW_S
        self.reset()

    def reset(self) -> None:
        for i in range(BASE_WINDOW_S):
            self.ids[i] = -(1 << 62)
        self.newest = -(1 << 62)

    def add(self, owd: float, arrival: float) -> None:
        sec = math.floor(arrival)
        i = sec % BASE_WINDOW_S
        if self.ids[i] != sec:
            self.ids[i] = sec
            self.mins[i] = owd
        elif owd < self.mins[i]:
            self.mins[i] = owd
        if sec > self.newest:
            self.newest = sec

    def queue_s(self, recent_owd: float) -> float:
        base = math.inf
        lo = self.newest - BASE_WINDOW_S
        for i in range(BASE_WINDOW_S):
            if lo < self.ids[i] <= self.newest and self.mins[i] < base:
                base = self.mins[i]
        return 0.0 if base == math.inf else max(0.0, recent_owd - base)


class _LinkCapacity:
    """Where the delay-based rate last met congestion (libwebrtc LinkCapacityEstimator), in kbit/s."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.estimate_kbps: float | None = None
        self.deviation = 0.4

    def _dev(self) -> float:
        assert self.estimate_kbps is not None
        return math.sqrt(self.deviation * self.estimate_kbps)

    def upper_bps(self) -> float:
        if self.estimate_kbps is None:
            return math.inf
        return (self.estimate_kbps + 3 * self._dev()) * 1000

    def lower_bps(self) -> float:
        if self.estimate_kbps is None:
            return 0.0
        return max(0.0, self.estimate_kbps - 3 * self._dev()) * 1000

    def update(self, sample_bps: float, alpha: float) -> None:
        s = sample_bps / 1000
        if self.estimate_kbps is None:
            self.estimate_kbps = s
        else:
            self.estimate_kbps = (1 - alpha) * self.estimate_kbps + alpha * s
        norm = max(self.estimate_kbps, 1.0)
        err = self.estimate_kbps - s
        self.deviation = (1 - alpha) * self.deviation + alpha * err * err / norm
        self.deviation = min(max(self.deviation, 0.4), 2.5)


_HOLD, _INCREASE, _DECREASE = 0, 1, 2


class SendSideEstimator:
    """The bitrate to send to one subscriber, from its transport-cc feedback.

    Feed :meth:`on_feedback` with each feedback's packets (in feedback order),
    :meth:`on_rtt` with RTT samples, :meth:`on_probe` with probe results; read
    :attr:`target_bps`.  Nothing here raises on odd input: packets with
    non-finite times or non-positive sizes are skipped.
    """

    def __init__(self, *, start_bps: int, min_bps: int, max_bps: int) -> None:
        if not (0 < min_bps <= max_bps):
            raise ValueError("need 0 < min_bps <= max_bps")
        self.min_bps = int(min_bps)
        self.max_bps = int(max_bps)
        start = float(min(max(int(start_bps), self.min_bps), self.max_bps))
        self._rtt_s = DEFAULT_RTT_S
        self._inter = _InterArrival()
        self._trend = _Trendline()
        self._acked = _AckedBitrate()
        self._sent = _AckedBitrate()
        """What the sender sent (every packet the feedback reports, lost or not), on the send clock."""
        self._link = _LinkCapacity()
        self._queue = _StandingQueue()
        self._queue_s = 0.0
        self._win_queue = False
        self._win_queue_min = math.inf
        self._drained_queue_s: float | None = None
        self._last_raw_excess = 0.0
        self._last_feedback_s: float | None = None
        self._prev_owd = math.inf
        self._prev_send = -math.inf
        # delay-based (AIMD)
        self._delay_bps = start
        self._rc_state = _HOLD
        self._last_change_s: float | None = None
        self._last_throughput = start
        self._state = _NORMAL
        self._normal_since_s: float | None = None
        self._over_since_s: float | None = None
        # loss-based
        self._loss_bps = float(self.max_bps)  # no loss seen: no loss limit
        self._win_start_s: float | None = None
        self._win_lost = 0
        self._win_recv = 0
        self._win_congested = False
        self._run_lost = 0
        self._run_first_send = 0.0
        self._run_last_send = 0.0
        self._inherent: float | None = None
        self._loss_fraction = 0.0
        self._loss_avg = 0.0
        self._loss_n = 0.0
        self._excess_sig = 0.0
        self._excess = 0.0
        self._last_loss_update_s: float | None = None
        self._last_loss_decrease_s: float | None = None

    # -- read-only --------------------------------------------------------

    @property
    def target_bps(self) -> int:
        """min(delay-based, loss-based), clamped to [min_bps, max_bps]."""
        t = min(self._delay_bps, self._loss_bps)
        return int(min(max(t, self.min_bps), self.max_bps))

    @property
    def delay_based_bps(self) -> int:
        return int(self._delay_bps)

    @property
    def loss_based_bps(self) -> int:
        return int(self._loss_bps)

    @property
    def delay_state(self) -> str:
        """The delay detector's last verdict: "normal", "overusing" or "underusing"."""
        return _NAMES[self._state]

    @property
    def loss_fraction(self) -> float:
        """Loss over the last completed window (0..1)."""
        return self._loss_fraction

    @property
    def inherent_loss(self) -> float:
        """The loss taken for the link's own (random) loss, not caused by sending too much."""
        return self._inherent or 0.0

    @property
    def loss_excess(self) -> float:
        """The loss above the link's own, smoothed, as the loss-based rate acts on it (0: none)."""
        return self._excess_sig

    @property
    def congested(self) -> bool:
        """The path is full now, not merely lossy: the delay detector says over-use, a queue stands
        (> ``STANDING_QUEUE_S``), or the last window lost ``LOSS_CONGESTED`` more than the link's own
        loss (so little arrives through a flooded link that its delay says nothing).  Moderate loss
        alone never says so: a rural link's random loss looks like a policer's to the loss-based rate
        (see above), but it builds no queue."""
        return (self._state == _OVER or self._queue_s > STANDING_QUEUE_S
                or self._loss_fraction - (self._inherent or 0.0) > LOSS_CONGESTED)

    @property
    def acked_bps(self) -> int:
        """What the receiver got over the last 0.5 s (0 = not known yet)."""
        b = self._acked.bps()
        return int(b) if b is not None else 0

    @property
    def standing_queue_s(self) -> float:
        """One-way delay above the path's lowest of the last 30 s, at the latest feedback."""
        return self._queue_s

    @property
    def rtt_s(self) -> float:
        return self._rtt_s

    # -- inputs -----------------------------------------------------------

    def on_rtt(self, rtt_s: float, now_s: float) -> None:
        """A round-trip time sample (from RTCP); bounds how fast the rate may fall again and rise."""
        if _finite(rtt_s) and 0.0 < rtt_s < 60.0:
            self._rtt_s = float(rtt_s)

    def on_feedback(self, results: Sequence[PacketResult], now_s: float) -> None:
        """One transport-cc feedback: its packets in feedback (sequence) order, lost ones included."""
        if not _finite(now_s):
            return
        if self._last_feedback_s is not None and now_s - self._last_feedback_s > STREAM_TIMEOUT_S:
            self._inter.reset()
            self._trend.reset()
            self._queue.reset()
        self._last_feedback_s = now_s
        received: list[PacketResult] = []
        for r in results:
            if not (_finite(r.send_time_s) and isinstance(r.size, int) and r.size > 0):
                continue
            self._sent.add(r.send_time_s, r.size)
            if r.arrival_time_s is None:
                if self._run_lost == 0:
                    self._run_first_send = self._run_last_send = r.send_time_s
                else:
                    self._run_first_send = min(self._run_first_send, r.send_time_s)
                    self._run_last_send = max(self._run_last_send, r.send_time_s)
                self._run_lost += 1
                continue
            if not _finite(r.arrival_time_s):
                continue
            self._end_lost_run()
            self._win_recv += 1
            received.append(r)
        received.sort(key=_arrival)
        recent_owd = math.inf
        acked = self._acked.bps()
        sent = self._sent.bps()
        excess = (min(max(sent / acked - 1.0, 0.0), PATH_STEP_MAX_EXCESS) if acked and sent
                  else PATH_STEP_MAX_EXCESS)
        for r in received:
            arrival = r.arrival_time_s
            assert arrival is not None
            self._acked.add(arrival, r.size)
            owd = arrival - r.send_time_s
            gap = r.send_time_s - self._prev_send
            if (acked and gap < PATH_STEP_GAP_S
                    and owd - self._prev_owd > PATH_STEP_S + gap * excess + 2 * r.size * 8 / acked):
                # the path got longer at once: its new delay is the base, and the jump is no trend
                self._queue.reset()
                self._inter.reset()
                self._trend.reset()
                recent_owd = math.inf
            self._prev_owd, self._prev_send = owd, r.send_time_s
            self._queue.add(owd, arrival)
            if owd < recent_owd:
                recent_owd = owd
            if self._inter.add(r.send_time_s, arrival, now_s):
                inter = self._inter
                self._trend.update(inter.arrival_delta * 1000, inter.send_delta * 1000, arrival * 1000)
        if received:
            self._queue_s = self._queue.queue_s(recent_owd)
            if self._queue_s > STANDING_QUEUE_S:
                self._win_queue = True
            if self._queue_s < self._win_queue_min:
                self._win_queue_min = self._queue_s
            # nothing received, nothing learnt about delay or throughput (libwebrtc skips it too)
            self._set_state(self._trend.state, now_s)
            self._update_delay_based(now_s)
        self._update_loss_based(now_s)

    def on_probe(self, bitrate_bps: int, now_s: float, *, delivered: float | None = None) -> None:
        """A probe got ``bitrate_bps`` through (see :func:`measure_probe`): raise the delay-based rate to it.

        Ignored while the delay detector says over-use (the probe built a queue).  The
        loss-based limit follows only while the loss is at the link's own level (in the
        average and in the last window): a probe measures capacity, not loss — unless the
        probe itself says so: ``delivered`` (``probe_delivery``'s share) of at least
        ``PROBE_CLEAN`` means the path carried it at its own loss, so a loss cut from before
        (a cap since lifted) no longer holds either.
        """
        if not _finite(bitrate_bps) or bitrate_bps <= 0 or not _finite(now_s):
            return
        if self._state == _OVER:
            return
        p = min(float(bitrate_bps), float(self.max_bps))
        self._link.update(p, 0.5)
        if p > self._delay_bps:
            self._delay_bps = p
            self._last_change_s = now_s
        clean = delivered is not None and delivered >= PROBE_CLEAN
        if (clean or self._excess_sig < LOSS_LOW and self._last_raw_excess < LOSS_LOW) and p > self._loss_bps:
            # the loss is back at the link's own level: an older loss cut no longer says anything
            self._loss_bps = p

    def _inherent_cap(self) -> float:
        rate = self._sent_bps() or float(self.target_bps)
        return min(INHERENT_LOSS_OFFSET + INHERENT_LOSS_BALANCE_BPS / max(rate, 1.0), INHERENT_LOSS_MAX)

    def _sent_bps(self) -> float:
        """What the sender sent lately, as the receiver's acknowledged rate undone by the loss."""
        acked = self._acked.bps()
        if acked is None:
            return 0.0
        return acked / (1.0 - min(self._loss_fraction, 0.5))

    # -- internals --------------------------------------------------------

    def _end_lost_run(self) -> None:
        if self._run_lost:
            if self._run_last_send - self._run_first_send < BLACKOUT_S:
                self._win_lost += self._run_lost
            self._run_lost = 0

    def _set_state(self, state: int, now_s: float) -> None:
        if state == _NORMAL:
            if self._state != _NORMAL or self._normal_since_s is None:
                self._normal_since_s = now_s
        else:
            self._normal_since_s = None
            if state == _OVER:
                self._win_congested = True
        self._state = state

    def _update_delay_based(self, now_s: float) -> None:
        acked = self._acked.bps()
        if self._state == _OVER:
            if self._over_since_s is None:
                self._over_since_s = now_s
            if now_s - self._over_since_s < OVERUSE_CONFIRM_S:
                return  # a short over-use on a jittery link is noise; a queue persists
            if acked is not None and self._time_to_reduce(now_s, acked):
                self._rate_control(now_s, acked)
            elif acked is None and (self._last_change_s is None or now_s - self._last_change_s >= 0.2):
                # over-use before anything was acknowledged: halve every 200 ms
                self._delay_bps = max(self._delay_bps / 2, float(self.min_bps))
                self._last_change_s = now_s
        else:
            self._over_since_s = None
            self._rate_control(now_s, acked)

    def _time_to_reduce(self, now_s: float, acked: float) -> bool:
        interval = min(max(self._rtt_s, 0.01), 0.2)
        if self._last_change_s is None or now_s - self._last_change_s >= interval:
            return True
        return acked < 0.5 * self._delay_bps

    def _rate_control(self, now_s: float, acked: float | None) -> None:
        if acked is not None:
            # what the sender can push through: the link's own random loss is not a rate limit
            self._last_throughput = acked / (1.0 - (self._inherent or 0.0))
        throughput = self._last_throughput
        # state machine: over-use → decrease; normal after hold → increase; under-use → hold
        if self._state == _NORMAL:
            # the adaptive threshold rises with a long drain, so "normal" comes while a queue is still
            # draining; increasing then would keep a standing queue (bufferbloat): wait until it stops
            if self._rc_state == _HOLD and self._trend.prev_trend >= 0.0:
                self._last_change_s = now_s
                self._rc_state = _INCREASE
        elif self._state == _OVER:
            if self._rc_state != _DECREASE:
                self._rc_state = _DECREASE
        else:
            self._rc_state = _HOLD
        cur = self._delay_bps
        new = cur
        if self._rc_state == _INCREASE:
            limit = 1.5 * throughput + 10_000
            if throughput > self._link.upper_bps():
                self._link.reset()
            if cur < limit:
                dt = 0.0 if self._last_change_s is None else min(max(now_s - self._last_change_s, 0.0), 1.0)
                if self._link.estimate_kbps is not None:
                    inc = self._additive_per_s(cur) * dt
                else:
                    inc = max(cur * (INCREASE_PER_S**dt - 1), 1000.0 * dt)
                new = min(cur + inc, limit)
            self._last_change_s = now_s
        elif self._rc_state == _DECREASE:
            dec = BETA * throughput
            if dec > 5_000:
                dec -= 5_000
            if dec > cur and self._link.estimate_kbps is not None:
                dec = BETA * self._link.estimate_kbps * 1000
            if dec < cur:
                new = dec
            if throughput < self._link.lower_bps():
                self._link.reset()
            self._link.update(throughput, 0.05)
            self._rc_state = _HOLD
            self._last_change_s = now_s
        self._delay_bps = min(max(new, float(self.min_bps)), float(self.max_bps))

    def _additive_per_s(self, bps: float) -> float:
        """About one average packet per response time (RTT + 100 ms), as libwebrtc near convergence."""
        frame_bytes = bps / 30 / 8
        packets = max(1.0, math.ceil(frame_bytes / 1200))
        avg_bits = frame_bytes / packets * 8
        return max(MIN_ADDITIVE_BPS_PER_S, avg_bits / (self._rtt_s + 0.1))

    def _standing_queue(self, queue_min: float) -> None:
        """A queue that stood a whole window without a trend (bufferbloat, a full shaper): drain it.

        Cut to 0.85 × what gets through, as an over-use would; if the next window's queue did
        not shrink, it was the path that got longer (a route change), not a queue: take the new
        delay as the base.
        """
        if queue_min == math.inf or queue_min <= STANDING_QUEUE_S:
            self._drained_queue_s = None
            return
        if self._drained_queue_s is not None:
            if queue_min >= 0.8 * self._drained_queue_s:
                self._queue.reset()
                self._queue_s = 0.0
                self._drained_queue_s = None
            else:
                self._drained_queue_s = queue_min  # draining: let it
            return
        acked = self._acked.bps()
        if acked is None:
            return
        throughput = acked / (1.0 - (self._inherent or 0.0))
        self._loss_bps = max(min(self._loss_bps, BETA * throughput), float(self.min_bps))
        self._drained_queue_s = queue_min

    def _loss_window(self, p: float, total: int, now_s: float, *, learn: bool) -> None:
        """A window of loss ``p`` over ``total`` packets without a queue building: learn, then decide."""
        first = self._inherent is None and learn
        base = self._inherent or 0.0
        # random loss over ~100 packets is noisy (±4 % at 20 %): decide on two windows' average, less
        # one standard error of a Bernoulli count at the inherent rate (at 300 kbit/s, 30 packets a
        # second, 5 % random loss reads anywhere from 0 to 10 %)
        if not learn:
            # tail drops at a standing queue: this window's own loss, not mixed into the average
            self._excess = self._excess_sig = max(0.0, p - base)
        else:
            if first:
                self._loss_avg, self._loss_n = p, float(total)
            else:
                self._loss_avg = LOSS_AVG_ALPHA * p + (1 - LOSS_AVG_ALPHA) * self._loss_avg
                self._loss_n = LOSS_AVG_ALPHA * total + (1 - LOSS_AVG_ALPHA) * self._loss_n
            q = max(base, 0.01)
            noise = math.sqrt(q * (1 - q) / max(2 * self._loss_n, 1.0))
            # nothing to compare the first window with: learn, hold
            self._excess = 0.0 if first else max(0.0, self._loss_avg - base)
            # growing (and probing) needs the loss to be within noise of the inherent loss; cutting
            # needs it 10 % above, where noise no longer matters
            self._excess_sig = 0.0 if first else max(0.0, self._excess - noise)
        self._last_raw_excess = 0.0 if first else max(0.0, p - base)
        if learn:
            sample = min(p, self._inherent_cap())
            self._inherent = sample if first else (1 - INHERENT_ALPHA) * base + INHERENT_ALPHA * sample
        if self._excess > LOSS_HIGH:
            interval = LOSS_DECREASE_INTERVAL_S + self._rtt_s
            if self._last_loss_decrease_s is None or now_s - self._last_loss_decrease_s >= interval:
                # from what was sent when the loss happened: an application-limited sender's target
                # stands above it, and cutting the target there would change nothing
                cur = min(self._loss_bps, self._delay_bps, self._sent_bps() or math.inf)
                # never below the rate at which the inherent-loss bound takes all this loss for the
                # link's own: a sender that cannot slow down (one layer forwarded as it comes) would
                # otherwise see the same loss at every cut and be cut to nothing
                floor = INHERENT_LOSS_BALANCE_BPS / max(base + self._excess - INHERENT_LOSS_OFFSET, 1e-6)
                self._loss_bps = max(cur * (1 - 0.5 * self._excess), min(floor, cur), float(self.min_bps))
                self._last_loss_decrease_s = now_s

    def _update_loss_based(self, now_s: float) -> None:
        if self._win_start_s is None:
            self._win_start_s = now_s
            self._last_loss_update_s = now_s
        elapsed = now_s - self._win_start_s
        total = self._win_lost + self._win_recv
        if elapsed < 0.0:
            self._win_start_s = now_s  # the caller's clock went back: start the window again
            return
        complete = (elapsed >= LOSS_WINDOW_S and total >= LOSS_WINDOW_MIN_PACKETS) or (
            elapsed >= LOSS_WINDOW_MAX_S and total > 0
        )
        if complete:
            p = self._win_lost / total
            self._loss_fraction = p
            congested = self._win_congested
            queue = self._win_queue
            queue_min = self._win_queue_min
            self._win_start_s = now_s
            self._win_lost = self._win_recv = 0
            self._win_congested = self._state == _OVER
            self._win_queue = self._queue_s > STANDING_QUEUE_S
            self._win_queue_min = math.inf
            if not congested:
                self._standing_queue(queue_min)
                # a standing queue's losses are tail drops: act on them, never learn them as the link's
                self._loss_window(p, total, now_s, learn=not queue)
            # else: a queue was building, and the delay-based rate answers that (0.85 × what got
            # through); cutting again for the losses of the same overshoot would undershoot the link
        last = self._last_loss_update_s if self._last_loss_update_s is not None else now_s
        dt = min(max(now_s - last, 0.0), 1.0)
        self._last_loss_update_s = now_s
        if self._excess_sig < LOSS_LOW and dt > 0.0:
            # not capped by the delay-based rate: a cut starts from the target (the lower of the two),
            # and a link whose loss is low should not have to climb back at 8 %/s after a delay cut
            self._loss_bps = self._loss_bps * INCREASE_PER_S**dt + 1000.0 * dt
        self._loss_bps = min(max(self._loss_bps, float(self.min_bps)), float(self.max_bps))


def _arrival(r: PacketResult) -> float:
    a = r.arrival_time_s
    return a if a is not None else 0.0
