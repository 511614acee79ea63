"""Per-consumer video decision for weak rural links: which simulcast layer, when to probe, or no video.

Classrooms in villages watch over 4G or satellite links that lose packets, are
far away and sometimes carry less than even the lowest video layer needs.  A
picture at a lower layer is always better than none, so each video consumer has
a gate that gives it the best layer its bandwidth estimate carries and pauses the
video only as the very last step.  It owns the decision and the probe schedule;
it must not send anything or read a clock (the consumer does that, see
``media/probe.py``), so tests drive it with a fake clock.

The estimate is fed through :meth:`VideoGate.on_estimate`: the receiver's REMB
today, a send-side (transport-cc) estimate the same way.  Both are delay-based
AIMD estimators with the same two properties the gate relies on:

* while the link is not congested the estimate stays at or above what is sent,
  but it cannot grow much past it (libwebrtc caps it at 1.5 × the throughput it
  measures and raises it by at most 8 %/s): a low layer's estimate never shows
  that the link would carry the next one — that has to be *probed*;
* when a queue builds (over-use) the estimate *falls*, to about 0.85 × the
  throughput.  Random loss does not lower it.

Rules:

* start on the highest allowed layer and ignore the estimate for ``START_S``
  (a receiver's first estimates are far below what the link carries);
* keep the layer while the estimate holds it (≥ bitrate × ``KEEP_MARGIN``); when
  it does not, step down to the highest layer whose bitrate × ``FIT_MARGIN``
  fits, never below the lowest layer;
* step one layer down when loss stays above ``LOSS_STEP_DOWN`` for
  ``LOSS_STEP_DOWN_S`` (the repairs cost less on a smaller layer), or when the
  path's own loss before repair (transport-cc, :meth:`VideoGate.on_path_loss`:
  a browser's receiver reports count what retransmission repaired) averages
  above ``PATH_LOSS_STEP_DOWN`` that long — at 20 % loss a 720p frame of six
  packets often needs a fourth round of repairs, and the picture stops for
  seconds; after that, no probe up while it averages above ``PATH_LOSS_HOLD`` (a band
  wide enough that a 10 % link, whose average wanders, never flaps);
* pause (-1, audio goes on) only on the lowest layer, when the estimate stays
  below ``STARVED_FRACTION`` × what it needs *and* the link is congested, both
  for ``STARVED_PAUSE_S``.  Congested: the receiver reports loss above
  ``LOSS_CONGESTED`` (:meth:`VideoGate.on_loss`), or the send-side estimator
  says the path is full — a queue, or loss well above the link's own
  (:meth:`VideoGate.on_congestion`; a browser's receiver reports count the
  packets retransmission repaired, so under a cap their loss stays low while
  the link drops most of what is sent).  Random loss alone, or an estimate
  that hovers somewhat below a single layer (a shared screen, a camera
  without simulcast), never pauses.  An estimate below ``STARVED_DEEP_FRACTION``
  of the lowest layer on a path the send-side estimator finds full pauses
  after ``STARVED_DEEP_PAUSE_S`` already;
* go up only through a probe: padding at the next layer's rate on top of the
  current one for ``PROBE_S`` (:attr:`VideoGate.probe`), then ``PROBE_GRACE_S``
  to see the result.  With transport-cc the result is measured: the share of
  what was sent in the probe's window that the path delivered
  (:meth:`VideoGate.on_probe_measured`, ``gcc.probe_delivery``); the probe
  passes when it is at least ``PROBE_DELIVERED``, judged as soon as the feedback
  covers the probe's window, and one whose first feedback already shows the
  path delivering less than ``PROBE_CUT_SHARE`` is cut short
  (:meth:`VideoGate.on_probe_progress`).  Without it, the receiver's
  reaction is all there is: the probe passes when the estimate rose (it
  only rises while the link is not over-used), held while it showed room on the
  current layer (≥ ``PROBE_ROOMY`` × it: Chromium's REMB repeats one value for
  seconds; over-use would have cut it) or already carries the target,
  did not fall (> ``PROBE_DROP`` below where it was) and loss did not rise by
  more than ``PROBE_LOSS_RISE``; then the gate switches up and gives the new layer a
  ``TRIAL_S`` trial in which only a falling estimate or loss brings it down (the
  estimate needs a few seconds to climb to the new rate).  Probes up start
  ``UP_WAIT_MIN_S`` after a change, doubling after each failed probe or trial
  up to ``UP_WAIT_MAX_S`` (measured: ``MEASURED_UP_WAIT_MIN_S``; after a
  measured probe that the link carried whole, ≥ ``PROBE_ROOM``, the next one
  ``MEASURED_ROOM_WAIT_S`` after the switch);
* while paused, probe every ``PAUSED_PROBE_EVERY_S`` with a short padding burst
  (``PAUSED_PROBE_S``) — never the layer itself — starting at a rate the
  estimate suggests and doubling on each pass (going straight to the layer's
  rate after a measured pass); a pass at the lowest layer's rate (× ``KEEP_MARGIN``)
  resumes the video on it (so a link that recovers gets the picture back within
  about two seconds, and a starved link is never sent a whole layer).

Pure and clock-driven: every method takes the current time, nothing reads a
clock and nothing is sent from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

START_S = 3.0
"""At start the estimate is ignored this long (the receiver is still learning the link)."""
FIT_MARGIN = 1.15
"""Stepping down: a layer fits when bitrate × this ≤ estimate."""
KEEP_MARGIN = 0.8
"""The current layer holds while bitrate × this ≤ estimate."""
STARVED_FRACTION = 0.7
"""The lowest layer is starved when the estimate is below its bitrate × this..."""
LOSS_CONGESTED = 0.10
"""...and loss above this says the link is congested (not merely lossy)..."""
STARVED_PAUSE_S = 3.0
"""...both for this long: then video pauses."""
STARVED_DEEP_FRACTION = 0.3
STARVED_DEEP_PAUSE_S = 0.5
"""An estimate below this fraction of the lowest layer on a path the send-side estimator finds full (a
queue) pauses after this long: a single big layer into a capped link starves the audio meanwhile (the
transport asks for a decision on each feedback while the path is full, not only once a second)."""
LOSS_STEP_DOWN = 0.10
LOSS_STEP_DOWN_S = 2.0
PATH_LOSS_STEP_DOWN = 0.15
PATH_LOSS_HOLD = 0.10
"""The path's loss before repair (a moving average of the send-side estimator's windows): above the first a
layer steps down (never a reason to pause); after such a step, none is probed up until it is below the second.
Only after such a step: a cap's queue overflowing, or the queue flushed when a cap is lifted, raises the
average too, and holding the scouts on it kept a lifted cap from being noticed for 5 s.  A single bar (0.08, tried
first) flapped between layers at 10 % loss, about ten switches a minute."""
PROBE_S = 0.5
"""Length of a padding probe before switching up."""
PROBE_GRACE_S = 0.5
"""After a probe, the receiver's reaction (an estimate that falls) is awaited this long."""
PROBE_DROP = 0.10
"""A probe fails when the estimate falls by more than this fraction below its value at the start."""
PROBE_RISE = 0.005
"""A probe passes when the estimate rose at least this fraction (or already carries the target)."""
PROBE_DELIVERED = 0.85
"""A measured probe passes when the path delivered this share of what was sent in its window."""
PROBE_ROOMY = 1.3
"""A probe from a layer whose estimate is ≥ this × its bitrate passes when the estimate merely held."""
PROBE_LOSS_RISE = 0.05
"""A probe fails when loss rises by more than this (fraction) above its usual level (a moving average:
one receiver report of a link with random loss is noisy) and above ``LOSS_STEP_DOWN``."""
UP_WAIT_MIN_S = 4.0
UP_WAIT_MAX_S = 10.0
MEASURED_UP_WAIT_MIN_S = 1.5
MEASURED_UP_WAIT_MAX_S = 1.5
"""With measured probes (transport-cc) a probe costs half a second of padding and says exactly whether
the link carried it: probe up sooner, and keep trying every few seconds on a capped link, so the top
layer is back within seconds of a cap lifting."""
PROBE_ROOM = 0.95
"""A measured probe that delivered this share found a clean link (no loss of its own): after switching
up, the next layer is probed after only ``MEASURED_ROOM_WAIT_S``, so a lifted cap climbs all layers
within a few seconds."""
MEASURED_ROOM_WAIT_S = 0.5
SCOUT_OVER = 1.25
"""On a measured path whose last probe up failed (a cap), the next probes are *scouts*: the path's whole
traffic at this × the rate it carried then, instead of the next layer's whole rate.  A scout into the same
cap grows the queue slowly enough (0.25 × the cap) that a half-second of it drops nothing, so the audio
hardly notices (at 1.4 × with a scout a second, the low layer under a 300 kbit/s cap lost ~10 % of its packets
to the lab's queue, and Chromium froze for a fifth of the time); one that the path carries whole says the cap
is gone, and a probe for the *top* layer
follows at once (a lifted cap is usually gone altogether: one step to the top, not one per layer; if the
path carries less, that probe fails, measures the new cap, and the climb goes on layer by layer)."""
SCOUT_MAX_GROWTH_S = 0.04
"""A scout passes only when, besides being delivered (``PROBE_DELIVERED``), the one-way delay grew less than
this across its window: into the same cap a scout is still mostly delivered, because a shaper's bucket and
queue take its first part at line rate (the lab's ``tbf``: 4.5 kB of burst and 250 ms of queue absorb most of
a half-second at 1.4 × 300 kbit/s, ~0.87 delivered), but the queue it builds raises the delay by ~0.1 s;
through a lifted cap the delay stays flat within the link's jitter."""
SCOUT_MAX_QUEUE_S = 0.1
"""...nor while a queue this long stands on the path at its end (a cap's queue already full: measured, a scout
passed so under a 300 kbit/s cap, then the top probe, and the top layer came back down 2 s later)."""
SCOUT_DELIVERED = 0.95
"""Without the delay (no arrival times), a scout passes only when this share of it was delivered."""
SCOUT_EVERY_S = 1.5
"""A failed scout (or a failed probe followed by scouts) is tried again this long after its result (the
queue it left drains meanwhile)."""
CAP_MEMORY_S = 30.0
"""A cap measured by a failed probe is trusted this long; then the full probe measures the path again."""
PROBE_CUT_AFTER_S = 0.15
PROBE_CUT_SHARE = 0.7
"""A measured probe whose first ``PROBE_CUT_AFTER_S`` of feedback shows the path delivering less than this
share of what was sent is cut short (:meth:`VideoGate.on_probe_progress`): it has failed already, and each
further packet only lengthens the queue the audio waits behind.  Cut probes make trying again often cheap,
so a capped link that is lifted is found within a second or two."""
TRIAL_S = 8.0
"""After switching up, the new layer is judged by a falling estimate or loss only, this long."""
PAUSED_PROBE_EVERY_S = 1.5
"""While paused, a padding burst starts this often (start to start)."""
PAUSED_PROBE_S = 0.4
PAUSED_PROBE_START_BPS = 300_000
"""The first paused probe is at the lowest layer's rate up to this, or at twice the estimate."""


@dataclass(frozen=True)
class Probe:
    """Padding to send on top of the forwarded layer: ``bps`` until ``until_s``."""

    bps: int
    until_s: float


class VideoGate:
    """Chooses the simulcast layer (index, lowest first) to forward to one consumer, or -1 = paused.

    Feed it :meth:`on_estimate` (or :meth:`on_remb`), :meth:`on_loss` and
    :meth:`on_producer_bitrate`; call :meth:`decide` periodically (about once a
    second) and send the padding :attr:`probe` asks for.  ``max_layer`` caps the
    layer (observers get 0).  Layers whose producer bitrate is 0 are not being
    sent and are skipped.
    """

    def __init__(self, layers_bps: Sequence[int], *, now_s: float) -> None:
        if not layers_bps:
            raise ValueError("VideoGate needs at least one layer")
        self.layers_bps: list[int] = list(layers_bps)
        self.max_layer: int | None = None
        """Highest layer index allowed (None = no cap); observers get 0."""
        self.estimate_bps: int | None = None
        self.loss: float = 0.0
        self._loss_avg: float = 0.0
        self.probe: Probe | None = None
        """The padding probe running now, if any (set by :meth:`decide`)."""
        self.probes = 0
        self.probes_passed = 0
        self._layer: int = -2  # not decided yet
        self._layer_since: float = now_s
        self._start_until: float = 0.0
        self._high_loss_since: float | None = None
        self._path_loss_avg = 0.0
        self._path_loss_since: float | None = None
        self._path_held = False
        """A layer stepped down for the path's loss: no probe up until its average is ≤ ``PATH_LOSS_HOLD``."""
        self._starved_since: float | None = None
        self._congested_since: float | None = None
        self._deep_since: float | None = None
        # probing
        self._probe_target: int = -1  # the layer a probe is for (-1: none running)
        self._probe_started: float = 0.0
        self._probe_end: float = 0.0
        self._probe_e0: int | None = None
        self._probe_loss0: float = 0.0
        self._probe_fell = False
        self._probe_heard = False
        self._probe_max = 0
        self._probe_enough = 0
        self._probe_roomy = False
        self._probe_lossy = False
        self._up_wait_s: float = UP_WAIT_MIN_S
        self._next_probe_at: float = 0.0
        self._trial_until: float = 0.0
        self._trial_peak: int = 0
        self._trial_fell = False
        self._paused_rate: int = 0
        self.measured: bool = False
        """The consumer's transport measures probes (transport-cc): :meth:`on_probe_measured` gives results."""
        self._probe_delivery: float | None = None
        self._probe_measured_in = False
        self._probe_room = False
        self._probe_carried: int | None = None
        self._probe_growth: float | None = None
        self._probe_queue: float | None = None
        self._probe_padding = 0
        self._probe_scout = False
        self._cap_bps: int | None = None
        """What the path carried (all of the transport's traffic) in the last failed measured probe up."""
        self._cap_base_bps = 0
        """The transport's other traffic (audio, other tracks) in that probe's window, besides this layer."""
        self._cap_at = 0.0
        self._probe_top_next = False
        """A scout just passed: the next probe is for the top layer, not the next one up."""

    # -- inputs ------------------------------------------------------------

    def on_estimate(self, bps: int, now_s: float) -> None:
        """The link's estimated bitrate for this consumer (a receiver's REMB, or a send-side estimate)."""
        self.estimate_bps = bps
        if self._probe_target != -1 and now_s > self._probe_started + 0.05:
            self._probe_heard = True
            self._probe_max = max(self._probe_max, bps)
            if self._probe_e0 is not None and bps < self._probe_e0 * (1.0 - PROBE_DROP):
                self._probe_fell = True
        if now_s < self._trial_until:
            if self._layer >= 0 and bps >= self.layers_bps[self._layer] * KEEP_MARGIN and not self._trial_fell:
                self._trial_until = now_s  # it holds the new layer: the switch up worked
            elif bps > self._trial_peak:
                self._trial_peak = bps
            elif bps < self._trial_peak * (1.0 - PROBE_DROP):
                self._trial_fell = True

    on_remb = on_estimate

    def on_loss(self, fraction: float, now_s: float) -> None:
        """Loss fraction (0..1) from the consumer's latest receiver report."""
        self.loss = fraction
        self._loss_avg += 0.3 * (fraction - self._loss_avg)
        if fraction > LOSS_STEP_DOWN:
            if self._high_loss_since is None:
                self._high_loss_since = now_s
        else:
            self._high_loss_since = None
        if self._probe_target != -1 and fraction > max(self._probe_loss0 + PROBE_LOSS_RISE, LOSS_STEP_DOWN):
            self._probe_lossy = True

    def on_path_loss(self, fraction: float, now_s: float) -> None:
        """The path's loss before repair (0..1), from the send-side estimator (transport-cc)."""
        if not 0.0 <= fraction <= 1.0:
            return
        self._path_loss_avg += 0.3 * (fraction - self._path_loss_avg)
        if self._path_loss_avg > PATH_LOSS_STEP_DOWN:
            if self._path_loss_since is None:
                self._path_loss_since = now_s
        else:
            self._path_loss_since = None
        if self._path_loss_avg <= PATH_LOSS_HOLD:
            self._path_held = False

    @property
    def next_probe_at(self) -> float:
        """When the next probe may start (the caller may :meth:`decide` then rather than at its next tick)."""
        return self._next_probe_at

    def on_probe_measured(self, delivered: float | None, carried_bps: int | None = None,
                          growth_s: float | None = None, queue_s: float | None = None) -> None:
        """The share (0..1) of what was sent in the probe's window that the path delivered (None: unknown),
        the rate that share is of everything the transport sent in the window (``carried_bps``), and how
        much the one-way delay grew across the window (``growth_s``, ``gcc.probe_queue_growth``), and the
        queue standing on the path at the window's end (``queue_s``, ``SendSideEstimator.standing_queue_s``).

        The transport calls it once the feedback covers the whole window (or its grace is over): the
        next :meth:`decide` judges the probe at once."""
        if self._probe_target != -1:
            self._probe_delivery = delivered
            self._probe_carried = carried_bps
            self._probe_growth = growth_s
            self._probe_queue = queue_s
            self._probe_measured_in = True

    def on_probe_progress(self, delivered: float, now_s: float) -> bool:
        """The share the path delivered of what the running probe has sent so far (feedback about its
        first packets).  True when that already fails it: the probe ends now (the caller stops the
        padding; its window ends here and is measured as usual)."""
        if (self._probe_target == -1 or not self.measured or now_s >= self._probe_end
                or now_s - self._probe_started < PROBE_CUT_AFTER_S or delivered >= PROBE_CUT_SHARE):
            return False
        self._probe_end = now_s
        self.probe = None
        return True

    def _up_wait(self, wait_s: float) -> float:
        """The wait before the next probe up: ``wait_s``, or with measured probes scaled from
        [``UP_WAIT_MIN_S``, ``UP_WAIT_MAX_S``] down to [``MEASURED_UP_WAIT_MIN_S``, ``MEASURED_UP_WAIT_MAX_S``]."""
        if self.measured:
            return min(wait_s * MEASURED_UP_WAIT_MIN_S / UP_WAIT_MIN_S, MEASURED_UP_WAIT_MAX_S)
        return wait_s

    def on_congestion(self, congested: bool, now_s: float) -> None:
        """The send-side estimator's verdict: the path to this subscriber is full (a queue, or loss
        above the link's own), not merely lossy."""
        if not congested:
            self._congested_since = None
        elif self._congested_since is None:
            self._congested_since = now_s

    def on_producer_bitrate(self, layer: int, bps: int) -> None:
        """Measured bitrate of one of the producer's layers (0 = layer not sent)."""
        if not 0 <= layer < len(self.layers_bps):
            raise ValueError("no such layer")
        self.layers_bps[layer] = bps

    # -- layers ------------------------------------------------------------

    @property
    def layer(self) -> int:
        """The last decision (-1 = paused)."""
        return max(self._layer, -1)

    def _top(self) -> int:
        top = len(self.layers_bps) - 1
        if self.max_layer is not None:
            top = max(0, min(top, self.max_layer))
        while top > 0 and self.layers_bps[top] <= 0:
            top -= 1
        return top

    def _lowest(self, top: int) -> int:
        i = 0
        while i < top and self.layers_bps[i] <= 0:
            i += 1
        return i

    def _fit(self, top: int, estimate: int) -> int:
        for i in range(top, -1, -1):
            bps = self.layers_bps[i]
            if bps > 0 and bps * FIT_MARGIN <= estimate:
                return i
        return -1

    def _next_up(self, layer: int, top: int) -> int:
        i = layer + 1
        while i <= top and self.layers_bps[i] <= 0:
            i += 1
        return i if i <= top else -1

    def _set(self, layer: int, now_s: float) -> None:
        if layer == self._layer:
            return
        if layer == -1:
            self._paused_rate = 0
            self._next_probe_at = now_s + PAUSED_PROBE_EVERY_S
        elif self._layer >= 0 and layer < self._layer:  # stepped down
            if now_s < self._trial_until:  # the last switch up did not hold
                self._up_wait_s = min(self._up_wait_s * 2, UP_WAIT_MAX_S)
            self._next_probe_at = now_s + self._up_wait(self._up_wait_s)
            self._trial_until = 0.0
        self._cancel_probe()
        self._probe_top_next = False
        self._layer = layer
        self._layer_since = now_s
        self._starved_since = self._deep_since = None

    def _switch_up(self, layer: int, now_s: float) -> None:
        self._set(layer, now_s)
        self._trial_until = now_s + TRIAL_S
        self._trial_peak = self.estimate_bps or 0
        self._trial_fell = False
        wait = MEASURED_ROOM_WAIT_S if self.measured and self._probe_room else self._up_wait(self._up_wait_s)
        self._next_probe_at = now_s + wait

    # -- probes ------------------------------------------------------------

    def _start_probe(self, target: int, bps: int, length_s: float, now_s: float, *, scout: bool = False) -> None:
        """Padding at ``bps`` for ``length_s``, to see whether the link carries ``target`` (a ``scout``:
        whether a cap measured before is still there)."""
        self._probe_target = target
        self._probe_scout = scout
        self._probe_padding = max(0, bps)
        self._probe_carried = None
        self._probe_growth = None
        self._probe_queue = None
        self._probe_max = 0
        self._probe_enough = int(self.layers_bps[target] * KEEP_MARGIN)
        self._probe_roomy = (self._layer >= 0 and self.estimate_bps is not None
                             and self.estimate_bps >= self.layers_bps[self._layer] * PROBE_ROOMY)
        self._probe_started = now_s
        self._probe_end = now_s + length_s
        self._probe_e0 = self.estimate_bps
        self._probe_loss0 = self._loss_avg
        self._probe_fell = self._probe_heard = self._probe_lossy = False
        self._probe_delivery = None
        self._probe_measured_in = False
        self.probe = Probe(max(0, bps), self._probe_end)
        self.probes += 1

    def _cancel_probe(self) -> None:
        self._probe_target = -1
        self.probe = None

    def _probe_result(self, now_s: float) -> bool | None:
        """None while the probe (and its grace) runs; then whether it passed."""
        if (self._probe_fell or self._probe_lossy) and not self.measured:
            self._cancel_probe()
            return False
        judged_early = self.measured and self._probe_measured_in and now_s >= self._probe_end
        if now_s < self._probe_end + PROBE_GRACE_S and not judged_early:
            if now_s >= self._probe_end:
                self.probe = None  # padding over, the reaction is awaited
            return None
        if self.measured:
            d, growth = self._probe_delivery, self._probe_growth
            passed = d is not None and d >= PROBE_DELIVERED
            if passed and self._probe_scout:
                # into the same cap a scout is still mostly delivered (a shaper's bucket and queue take its
                # first part): what says the cap is gone is that no queue grew
                passed = growth < SCOUT_MAX_GROWTH_S if growth is not None else d >= SCOUT_DELIVERED
                # and a queue that was already full grows no further: what it drops, the link's "inherent"
                # loss (learned under the cap) makes look random, so the standing queue must be gone too
                passed = passed and (self._probe_queue is None or self._probe_queue < SCOUT_MAX_QUEUE_S)
            self._probe_room = passed and self._probe_delivery is not None and self._probe_delivery >= PROBE_ROOM
            if not passed and self._layer >= 0 and self._probe_carried and self._probe_delivery:
                # a cap: remember what the path carried and what else the transport sent then.  A failed
                # scout never raises it: a shaper's bucket lets its first part through at line rate, so it
                # "carried" more than the cap — the next scout would go further over, and overflow the queue
                sent = self._probe_carried / self._probe_delivery
                carried = self._probe_carried
                if self._probe_scout and self._cap_bps is not None:
                    carried = min(carried, self._cap_bps)
                self._cap_bps = carried
                self._cap_base_bps = max(0, int(sent) - self._probe_padding - self.layers_bps[self._layer])
                self._cap_at = now_s
            elif passed:
                self._cap_bps = None
            self._cancel_probe()
            if passed:
                self.probes_passed += 1
            return passed
        # An estimator that has spoken before must speak during the probe (a dead link does not), and
        # say it is not over-used: it rose (it only rises while the link is not congested; over-use
        # holds or lowers it), or it already carries the target.
        e0 = self._probe_e0
        # A layer whose estimate already shows room (a receive-side one sits at ~1.5 × what it gets)
        # passes on an estimate that held: over-use would have cut it to 0.85 × the throughput.
        passed = e0 is None or (self._probe_heard and (
            self._probe_max > e0 * (1.0 + PROBE_RISE) or self._probe_max >= self._probe_enough
            or self._probe_roomy))
        self._cancel_probe()
        if passed:
            self.probes_passed += 1
        return passed

    # -- decision ----------------------------------------------------------

    def decide(self, now_s: float) -> int:
        """The layer index to forward now, or -1 = video paused."""
        top = self._top()
        lowest = self._lowest(top)
        if self._layer == -2:  # the first decision: the receiver has no estimate worth the name yet
            self._layer = top
            self._layer_since = now_s
            self._start_until = now_s + START_S
            self._next_probe_at = now_s + START_S + UP_WAIT_MIN_S
        if self._layer == -1:
            return self._decide_paused(lowest, now_s)
        layer = min(self._layer, top)
        if layer != self._layer:  # capped (observer) or the top layer stopped
            self._set(layer, now_s)
        if self._probe_target > top:
            self._cancel_probe()

        estimate = self.estimate_bps
        trial = now_s < self._trial_until
        judged = estimate is not None and now_s >= self._start_until
        if judged and trial and self._trial_fell:
            trial = False  # the estimate fell after switching up: judge the layer by its level now
            self._trial_until = now_s + 1e-9  # still counts as a failed switch in ``_set``
        if judged and not trial:
            assert estimate is not None
            if self.layers_bps[layer] * KEEP_MARGIN > estimate and layer > lowest:
                fit = max(self._fit(layer - 1, estimate), lowest)
                self._set(fit, now_s)
                layer = fit
            if layer == lowest and estimate < self.layers_bps[lowest] * STARVED_FRACTION:
                if self._starved_since is None:
                    self._starved_since = now_s
            else:
                self._starved_since = None
            if layer == lowest and estimate < self.layers_bps[lowest] * STARVED_DEEP_FRACTION:
                if self._deep_since is None:
                    self._deep_since = now_s
            else:
                self._deep_since = None
        elif not trial:
            self._starved_since = self._deep_since = None
        if now_s >= self._trial_until > 0.0 and layer == self._layer and not self._trial_fell:
            self._trial_until = 0.0  # the switch up held: probe again soon
            self._up_wait_s = UP_WAIT_MIN_S
            self._next_probe_at = min(self._next_probe_at, self._layer_since + self._up_wait(UP_WAIT_MIN_S))

        since = self._layer_since
        lossy = [t for t in (self._high_loss_since, self._path_loss_since) if t is not None]
        loss_for = now_s - max(min(lossy), since) if lossy else -1.0
        if layer > lowest and loss_for >= LOSS_STEP_DOWN_S:
            i = layer - 1
            while i > lowest and self.layers_bps[i] <= 0:
                i -= 1
            self._path_held = self._path_held or self._path_loss_since is not None
            self._set(i, now_s)
            return i
        congested = [t for t in (self._high_loss_since, self._congested_since) if t is not None]
        if (layer == lowest and self._starved_since is not None and congested
                and now_s - max(self._starved_since, min(congested)) >= STARVED_PAUSE_S):
            self._set(-1, now_s)
            return -1
        if (layer == lowest and self._deep_since is not None and self._congested_since is not None
                and now_s - max(self._deep_since, self._congested_since) >= STARVED_DEEP_PAUSE_S):
            self._set(-1, now_s)
            return -1

        # probing up
        if self._probe_target != -1:
            scout, target = self._probe_scout, self._probe_target
            result = self._probe_result(now_s)
            if result is None:
                return layer
            if result and scout:
                # the cap is gone: at once, a probe for the top layer (it may be gone altogether)
                self._next_probe_at = now_s
                self._probe_top_next = True
            elif result:
                up = target if layer < target <= top and self.layers_bps[target] > 0 else self._next_up(layer, top)
                if up >= 0:
                    self._switch_up(up, now_s)
                    return up
                return layer
            elif self._scout_padding(layer, now_s) is not None:
                self._next_probe_at = now_s + SCOUT_EVERY_S  # scouts are cheap: no back-off
                return layer
            else:
                self._up_wait_s = min(self._up_wait_s * 2, UP_WAIT_MAX_S)
                self._next_probe_at = now_s + self._up_wait(self._up_wait_s)
                return layer
        up = self._next_up(layer, top)
        if (up >= 0 and now_s >= self._next_probe_at and now_s >= self._start_until and not trial
                and self.loss <= LOSS_STEP_DOWN and self._high_loss_since is None
                and not self._path_held
                and (estimate is None or estimate >= self.layers_bps[layer] * KEEP_MARGIN)):
            if self._probe_top_next:
                self._probe_top_next = False
                self._start_probe(top, self.layers_bps[top] - self.layers_bps[layer], PROBE_S, now_s)
                return layer
            full = self.layers_bps[up] - self.layers_bps[layer]
            scout = self._scout_padding(layer, now_s)
            if scout is not None and scout < full:
                self._start_probe(up, scout, PROBE_S, now_s, scout=True)
            else:
                self._start_probe(up, full, PROBE_S, now_s)
        return layer

    def _scout_padding(self, layer: int, now_s: float) -> int | None:
        """The padding of a scout on top of ``layer`` (the path's traffic at ``SCOUT_OVER`` × the cap last
        measured), or None when there is no such cap to test."""
        if not self.measured or self._cap_bps is None or now_s - self._cap_at > CAP_MEMORY_S:
            return None
        padding = int(self._cap_bps * SCOUT_OVER) - self._cap_base_bps - self.layers_bps[layer]
        return padding if padding > 0 else None

    def _decide_paused(self, lowest: int, now_s: float) -> int:
        need = self.layers_bps[lowest]
        if self._probe_target != -1:
            result = self._probe_result(now_s)
            if result is None:
                return -1
            if result and self._paused_rate >= need * KEEP_MARGIN:
                # (the layer holds where its bitrate × KEEP_MARGIN is carried: an encoder's rate moves
                # by a tenth from one second to the next, and a probe at its rate of a second ago
                # must not send another)
                self._paused_rate = 0
                self._switch_up(lowest, now_s)
                return lowest
            if result:
                # a measured pass says the link carried it, queue-free: try the layer's whole rate next
                self._paused_rate = need if self.measured else min(need, self._paused_rate * 2)
                self._next_probe_at = now_s  # the next step at once
            else:
                self._next_probe_at = self._probe_started + PAUSED_PROBE_EVERY_S
        if now_s < self._next_probe_at:
            return -1
        if self._paused_rate <= 0:
            guess = 2 * (self.estimate_bps or 0)
            self._paused_rate = min(need, max(PAUSED_PROBE_START_BPS, guess))
        self._start_probe(lowest, self._paused_rate, PAUSED_PROBE_S, now_s)
        return -1
