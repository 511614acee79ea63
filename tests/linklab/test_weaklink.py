"""A receiving classroom's Chromium through the weak-link lab, SanKe serving (``bench/weaklink.py``).

Shortened conditions (``WINDOW_S`` each, after ``SETTLE_S`` of a clean link), one SanKe server, an
aiortc main classroom (live VP8 encoder, 1.5 Mbit/s, Opus tone) in the server namespace and
Debian's Chromium as the receiving classroom in the classroom namespace, on the real
``/assets/lesson-client.js``.

Asserted here (what SanKe already meets, and what is not timing-sensitive on a shared machine):

- clean link: video flows at ``CLEAN_MIN_FPS`` or more, never paused by the SFU;
- 5 % loss + 300 ms RTT: the audio keeps flowing (samples arrive, concealment under
  ``LOSS5_MAX_AUDIO_CONCEALED_PCT``) and the video keeps decoding (``LOSS5_MIN_FPS``);
- a 2 s blackout: the video resumes (a frame is rendered within ``BLACKOUT_MAX_RECOVERY_S`` of the
  link's return).

Bench-only (``python -m bench.weaklink``, figures in docs/performance.md "Weak links"), because they
are not met yet or depend on timing a loaded 2-core machine cannot promise: the issue's goals of
≥ 25 fps with no freeze > 1 s and never paused at 5 % loss + 300 ms RTT, audio concealment < 2 %
(5 %), < 3 % (10 %), < 5 % (20 %), a decodable picture ≤ 1 s after a 2 s blackout, the 300 kbit/s
cap (audio < 2 %, back to the top layer ≤ 5 s after it lifts) and retransmissions ≤ 1.5 × the
packets lost. Tighten the constants below towards those goals as the SFU meets them.
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
LOSS5_MIN_FPS = 1.0
"""Issue goal at 5 % loss + 300 ms RTT: ≥ 25 fps, never paused (bench-only for now). The SFU's gate may
pause the video for 5-10 s of such a window, so here the only check is that video still decodes."""
LOSS5_MAX_AUDIO_CONCEALED_PCT = 25.0
"""Issue goal at 5 % loss + 300 ms RTT: audio concealment < 2 % (bench-only for now). Unprotected audio
conceals about 5-8 % here, and more on a machine loaded by other jobs. Audio that stopped would conceal
nearly 100 %, so this bound checks only that the audio keeps flowing."""
BLACKOUT_MAX_RECOVERY_S = 14.0
"""Issue goal after a 2 s blackout: a decodable picture ≤ 1 s after the link returns (bench-only for now).

Usually the picture is back within 0.3 s, but in about one run in three the SFU's video gate pauses the
video right after the outage (the receiver's REMB has fallen below 0.8 × the 1.5 Mbit/s layer) and
resumes it ~10 s later: the bound here is what that gate guarantees today."""

BLACKOUT = Condition("blackout_2s", lambda s: [
    Phase(0), Phase(2, Impairment(blackout=True), Impairment(blackout=True)), Phase(4, mark="link_back"),
], seconds=19.0)


ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "linklab-weaklink"
"""The run's logs and samples (server, publisher, receiver, page and SFU samples), kept for a failure."""


@pytest.fixture(scope="module")
def rows(netns_ok):
    conditions = [c for c in CONDITIONS if c.name in ("clean", "loss5_rtt300")] + [BLACKOUT]
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


def test_video_resumes_after_a_blackout(rows):
    blackout = rows["blackout_2s"]
    assert blackout.longest_freeze_s >= 1.5, "the blackout did freeze the picture (the lab cut the link)"
    (recovery,) = blackout.recoveries_s
    assert not math.isnan(recovery) and recovery <= BLACKOUT_MAX_RECOVERY_S, blackout
