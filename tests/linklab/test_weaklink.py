"""A receiving classroom's Chromium through the weak-link lab, SanKe serving (``bench/weaklink.py``).

Shortened conditions (``WINDOW_S`` each, after ``SETTLE_S`` of a clean link), one SanKe server, an
aiortc main classroom (live VP8 encoder, 1.5 Mbit/s, Opus tone) in the server namespace and
Debian's Chromium as the receiving classroom in the classroom namespace, on the real
``/assets/lesson-client.js``.

Asserted here, the goals of the weak-link table with a margin for a loaded 2-core machine (the
bench, ``python -m bench.weaklink``, measures them in full; figures in docs/performance.md):

- clean link: video flows at ``CLEAN_MIN_FPS`` or more, never paused by the SFU;
- 5 % loss + 300 ms RTT: never paused, ``LOSS5_MIN_FPS`` decoded, audio concealment under
  ``LOSS5_MAX_AUDIO_CONCEALED_PCT``, retransmissions at most ``MAX_RTX_PER_LOST`` × the packets lost;
- the same link: the page's video playout target is one or two round trips plus a margin (repairs
  come in time); on the clean link it is the browser's own;
- 20 % loss + 300 ms RTT: the video is not paused (random loss builds no queue: the SFU repairs it)
  and the audio, under RED, conceals less than ``LOSS20_MAX_AUDIO_CONCEALED_PCT``;
- a 2 s blackout: a frame is rendered within ``BLACKOUT_MAX_RECOVERY_S`` of the link's return;
- a 300 kbit/s cap under the one 1.5 Mbit/s layer: the SFU pauses the video (no layer fits) and the
  audio conceals less than ``CAP_MAX_AUDIO_CONCEALED_PCT``.

Bench-only, because a loaded machine cannot promise their timing: ≥ 25 fps with no freeze > 1 s, a
decodable picture ≤ 1 s after a blackout, back on the top layer ≤ 5 s after a cap lifts.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest

from bench.linklab import Impairment
from bench.weaklink import CONDITIONS, Condition, Phase, run

WINDOW_S = 12.0
SETTLE_S = 3.0

CLEAN_MIN_FPS = 25.0
"""Issue goal table, clean link: the full 30 fps of the publisher (25 allows for a loaded machine)."""
LOSS5_MIN_FPS = 15.0
"""Issue goal at 5 % loss + 300 ms RTT: ≥ 25 fps (measured 29-30 on a quiet machine)."""
LOSS5_MAX_AUDIO_CONCEALED_PCT = 5.0
"""Issue goal: < 2 % (measured 0-1.2 %, RED carries each lost frame in the next packet)."""
MAX_RTX_PER_LOST = 1.5
"""Issue goal: retransmissions ≤ 1.5 × the packets lost (measured 1.0-1.2 ×)."""
LOSS20_MAX_AUDIO_CONCEALED_PCT = 5.0
"""Issue goal at 20 % loss: < 5 % (measured 0.5-1.3 %)."""
PLAYOUT_MIN_MS, PLAYOUT_MAX_MS = 350, 1200
"""One or two of the lab's 300 ms round trips (two at 5 % of packets repaired) + the margin of
``web/assets/playout.js``, at most its ``MAX_MS``."""
BLACKOUT_MAX_RECOVERY_S = 3.0
"""Issue goal after a 2 s blackout: ≤ 1 s (measured 0.2-0.3 s)."""
CAP_MAX_AUDIO_CONCEALED_PCT = 6.0
"""Issue goal under a 300 kbit/s cap: < 2 % (measured 0.3-2.1 % with one layer, which the SFU pauses
within 1-2 s; 25 % before it paused)."""
CAP_MIN_PAUSED_FRACTION = 0.5
"""The one 1.5 Mbit/s layer cannot fit 300 kbit/s: paused most of the window (the first 1-2 s it is
still sent, then a probe may resume it for a second now and then)."""

BLACKOUT = Condition("blackout_2s", lambda s: [
    Phase(0), Phase(2, Impairment(blackout=True), Impairment(blackout=True)), Phase(4, mark="link_back"),
], seconds=19.0)


ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "linklab-weaklink"
"""The run's logs and samples (server, publisher, receiver, page and SFU samples), kept for a failure."""


@pytest.fixture(scope="module")
def rows(netns_ok):
    conditions = [c for c in CONDITIONS if c.name in ("clean", "loss5_rtt300", "loss20_rtt300", "cap300k")] + [BLACKOUT]
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    result = run(conditions, WINDOW_S, SETTLE_S, workdir=ARTIFACTS)
    return {row.name: row for row in result}


def test_clean_link_video_flows_at_full_rate(rows):
    clean = rows["clean"]
    assert clean.fps >= CLEAN_MIN_FPS, clean
    assert clean.paused_s == 0, clean


def test_audio_keeps_flowing_at_5_percent_loss(rows):
    lossy = rows["loss5_rtt300"]
    assert lossy.audio_concealed_pct < LOSS5_MAX_AUDIO_CONCEALED_PCT, f"audio concealment: {lossy}"
    assert lossy.fps >= LOSS5_MIN_FPS, f"decoded fps: {lossy}"
    assert lossy.paused_s == 0, lossy
    assert lossy.rtx_per_lost is not None and lossy.rtx_per_lost <= MAX_RTX_PER_LOST, lossy


def test_the_page_waits_one_round_trip_for_repairs_only_while_the_link_loses(rows):
    """A far lossy link: the receiving page's video playout target is as many round trips (~300 ms here) as
    repairs take, plus a margin, so repaired frames come in time instead of freezing the picture; a clean
    link keeps the browser's own (no added delay)."""
    assert rows["clean"].playout_ms is None, rows["clean"]
    lossy = rows["loss5_rtt300"]
    assert lossy.playout_ms is not None and PLAYOUT_MIN_MS <= lossy.playout_ms <= PLAYOUT_MAX_MS, lossy


def test_random_loss_of_20_percent_keeps_the_video_and_the_audio(rows):
    lossy = rows["loss20_rtt300"]
    assert lossy.paused_s == 0, lossy
    assert lossy.fps > 0, lossy
    assert lossy.audio_concealed_pct < LOSS20_MAX_AUDIO_CONCEALED_PCT, lossy


def test_a_cap_below_the_only_layer_pauses_the_video_and_keeps_the_audio(rows):
    capped = rows["cap300k"]
    assert capped.paused_s >= CAP_MIN_PAUSED_FRACTION * capped.seconds, capped
    assert capped.audio_concealed_pct < CAP_MAX_AUDIO_CONCEALED_PCT, capped


def test_video_resumes_after_a_blackout(rows):
    blackout = rows["blackout_2s"]
    assert blackout.longest_freeze_s >= 1.5, "the blackout did freeze the picture (the lab cut the link)"
    (recovery,) = blackout.recoveries_s
    assert not math.isnan(recovery) and recovery <= BLACKOUT_MAX_RECOVERY_S, blackout
