"""Per-consumer video decision for weak rural links: which simulcast layer, or no video at all.

Classrooms in villages watch over 4G or satellite links whose capacity drops
below what even the lowest video layer needs.  Sending video anyway starves
the audio on the same link, and in a lesson the teacher's voice matters more
than the picture.  So each consumer has a gate that follows the receiver's
bandwidth estimate (REMB) and loss (receiver reports):

* start with the highest layer allowed by :attr:`VideoGate.max_layer`, and
  ignore the estimate for the first ``PROBE_S``: a receiver estimates the link
  from the video it gets, so its first REMBs are far below what the link carries;
* keep the current layer while the estimate holds it (≥ bitrate × 0.8): a
  receive-side estimate of a link that is not congested hovers around the rate
  it receives, so asking for a margin above the *current* rate would drop a
  layer the link carries well (and pause a single-layer camera or screen);
* when it does not hold, step down to the highest layer whose bitrate × 1.15
  fits the estimate, or to the lowest layer;
* step one more layer down when loss stays above 10 % for 2 s;
* pause video (-1) when the estimate stays below what even the lowest layer
  needs for ``STARVED_PAUSE_S``, or loss stays above 20 % on the lowest layer
  for 3 s — audio keeps flowing;
* step up one layer only after 5 s of headroom (estimate ≥ next layer × 1.3
  and loss < 2 %), so the gate does not flap;
* while paused, the receiver's REMB cannot grow (no video to measure), so
  resuming is a probe: after a back-off (5 s, doubling on each failed probe up
  to 60 s) the lowest layer is sent again and the stale estimate is ignored
  for ``PROBE_S``.  A probe fails when video pauses again within ``PROBE_OK_S``.

Pure and clock-driven: every method takes the current time, nothing reads a
clock, so tests use a fake one.
"""

from __future__ import annotations

from collections.abc import Sequence

FIT_MARGIN = 1.15
"""Stepping down: a layer fits when bitrate × this ≤ estimate."""
KEEP_MARGIN = 0.8
"""The current layer holds while bitrate × this ≤ estimate."""
STARVED_PAUSE_S = 3.0
"""The estimate must stay below the lowest layer's needs this long before video pauses."""
UP_MARGIN = 1.3
"""Headroom needed to go up: estimate ≥ next layer × this."""
UP_AFTER_S = 5.0
LOSS_STEP_DOWN = 0.10
LOSS_STEP_DOWN_S = 2.0
LOSS_PAUSE = 0.20
LOSS_PAUSE_S = 3.0
LOSS_UP_MAX = 0.02
BACKOFF_MIN_S = 5.0
BACKOFF_MAX_S = 60.0
PROBE_S = 3.0
"""After resuming, the estimate from before is ignored this long."""
PROBE_OK_S = 15.0
"""A resume that lasts this long without pausing again resets the back-off."""


class VideoGate:
    """Chooses the simulcast layer (index, lowest first) to forward to one consumer, or -1 = paused.

    Feed it :meth:`on_remb`, :meth:`on_loss` and :meth:`on_producer_bitrate`;
    call :meth:`decide` whenever a decision is needed (on each input and
    periodically).  ``max_layer`` caps the layer (observers get 0).
    Layers whose producer bitrate is 0 are not being sent and are skipped.
    """

    def __init__(self, layers_bps: Sequence[int], *, now_s: float) -> None:
        if not layers_bps:
            raise ValueError("VideoGate needs at least one layer")
        self.layers_bps: list[int] = list(layers_bps)
        self.max_layer: int | None = None
        """Highest layer index allowed (None = no cap); observers get 0."""
        self.estimate_bps: int | None = None
        self.loss: float = 0.0
        self._layer: int = -2  # not decided yet
        self._layer_since: float = now_s
        self._high_loss_since: float | None = None
        self._severe_loss_since: float | None = None
        self._headroom_since: float | None = None
        self._backoff_s: float = BACKOFF_MIN_S
        self._resume_at: float = 0.0
        self._resumed_at: float | None = None
        self._probe_until: float = 0.0
        self._starved_since: float | None = None

    # -- inputs ------------------------------------------------------------

    def on_remb(self, bps: int, now_s: float) -> None:
        """The receiver's estimated maximum bitrate (REMB) for this consumer's streams."""
        self.estimate_bps = bps
        self._track_headroom(now_s)

    def on_loss(self, fraction: float, now_s: float) -> None:
        """Loss fraction (0..1) from the consumer's latest receiver report."""
        self.loss = fraction
        if fraction > LOSS_STEP_DOWN:
            if self._high_loss_since is None:
                self._high_loss_since = now_s
        else:
            self._high_loss_since = None
        if fraction > LOSS_PAUSE:
            if self._severe_loss_since is None:
                self._severe_loss_since = now_s
        else:
            self._severe_loss_since = None
        self._track_headroom(now_s)

    def on_producer_bitrate(self, layer: int, bps: int) -> None:
        """Measured bitrate of one of the producer's layers (0 = layer not sent)."""
        if not 0 <= layer < len(self.layers_bps):
            raise ValueError("no such layer")
        self.layers_bps[layer] = bps

    # -- decision ----------------------------------------------------------

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

    def _holds(self, layer: int, estimate: int) -> bool:
        return self.layers_bps[layer] * KEEP_MARGIN <= estimate

    def _next_up(self, layer: int, top: int) -> int:
        i = layer + 1
        while i <= top and self.layers_bps[i] <= 0:
            i += 1
        return i if i <= top else -1

    def _headroom(self, layer: int, now_s: float) -> bool:
        if layer < 0 or self.loss >= LOSS_UP_MAX:
            return False
        up = self._next_up(layer, self._top())
        if up < 0:
            return False
        if self.estimate_bps is None or now_s < self._probe_until:
            return True  # nothing limits us but loss
        return self.estimate_bps >= self.layers_bps[up] * UP_MARGIN

    def _track_headroom(self, now_s: float) -> None:
        if self._headroom(self._layer, now_s):
            if self._headroom_since is None:
                self._headroom_since = now_s
        else:
            self._headroom_since = None

    def _set(self, layer: int, now_s: float) -> None:
        if layer == self._layer:
            return
        if layer == -1:
            recent = self._resumed_at is not None and now_s - self._resumed_at < PROBE_OK_S
            if recent:
                self._backoff_s = min(self._backoff_s * 2, BACKOFF_MAX_S)
            else:
                self._backoff_s = BACKOFF_MIN_S
            self._resume_at = now_s + self._backoff_s
        self._layer = layer
        self._layer_since = now_s
        self._headroom_since = None
        self._track_headroom(now_s)  # headroom for the next layer up counts from now

    def decide(self, now_s: float) -> int:
        """The layer index to forward now, or -1 = video paused."""
        top = self._top()
        if self._layer == -2:  # the first decision: the receiver has no estimate worth the name yet
            self._layer = top
            self._layer_since = now_s
            self._probe_until = now_s + PROBE_S
        if self._layer == -1:
            if now_s < self._resume_at:
                return -1
            # probe: lowest layer, forget the estimate measured without video
            self._set(self._lowest(top), now_s)
            self._resumed_at = now_s
            self._probe_until = now_s + PROBE_S
            self._starved_since = None
            self.estimate_bps = None
        layer = min(self._layer, top)
        self._set(layer, now_s)

        estimate = self.estimate_bps
        if estimate is not None and now_s >= self._probe_until and not self._holds(layer, estimate):
            lowest = self._lowest(top)
            fit = self._fit(top, estimate)
            if fit < 0 and not self._holds(lowest, estimate):  # starved: not even the lowest layer
                if self._starved_since is None:
                    self._starved_since = now_s
                if now_s - self._starved_since >= STARVED_PAUSE_S:
                    self._starved_since = None
                    self._set(-1, now_s)
                    return -1
            else:
                self._starved_since = None
            fit = max(fit, lowest)
            if fit < layer:
                self._set(fit, now_s)
                layer = fit
        elif estimate is not None and now_s >= self._probe_until:
            self._starved_since = None

        since = self._layer_since
        if layer > self._lowest(top):
            if self._high_loss_since is not None and now_s - max(self._high_loss_since, since) >= LOSS_STEP_DOWN_S:
                i = layer - 1
                while i > 0 and self.layers_bps[i] <= 0:
                    i -= 1
                self._set(i, now_s)
                return i
        elif self._severe_loss_since is not None and now_s - max(self._severe_loss_since, since) >= LOSS_PAUSE_S:
            self._set(-1, now_s)
            return -1

        self._track_headroom(now_s)
        if self._headroom_since is not None and now_s - max(self._headroom_since, since) >= UP_AFTER_S:
            up = self._next_up(layer, top)
            if up >= 0:
                self._set(up, now_s)
                return up
        return layer
