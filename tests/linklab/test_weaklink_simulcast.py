"""The real main-classroom page as the publisher (three simulcast layers up to 720p, RED on its microphone),
a receiving classroom's Chromium through the weak-link lab (``bench/weaklink.py --publisher chromium``).

What the one-layer aiortc publisher of ``test_weaklink.py`` cannot show: that a 720p layer from Chromium's
own encoder reaches a far, lossy classroom as a picture, not a stutter.  Chromium's default for VP8
simulcast is three temporal layers; its receiver drops an upper temporal layer's frame whose repair comes a
round trip late (measured: 11.6 of 20 fps at 5 % loss + 300 ms RTT), so the page sends one temporal layer
per simulcast layer and the receiving page holds its video as long as repairs take
(``web/assets/playout.js``); measured then: 29.7 of 30 fps.

Asserted, with margins for a loaded 2-core machine (two Chromiums, one encoding three layers): on 5 % loss +
300 ms RTT the top layer keeps coming, is never paused, decodes at least ``MIN_FPS_SHARE`` of the clean
link's rate, and the audio conceals less than ``MAX_AUDIO_CONCEALED_PCT``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.weaklink import CONDITIONS, run

WINDOW_S = 15.0
SETTLE_S = 3.0
MIN_FPS_SHARE = 0.75
"""Decoded fps at 5 % loss ÷ on the clean link (measured 0.99 on a quiet machine; three temporal layers and
no playout hold gave 0.58)."""
MAX_AUDIO_CONCEALED_PCT = 3.0
"""Issue goal at 5 % loss: < 2 % (measured 0.2-0.7 % with the browser's RED)."""

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "linklab-weaklink-simulcast"


@pytest.fixture(scope="module")
def rows(netns_ok):
    conditions = [c for c in CONDITIONS if c.name in ("clean", "loss5_rtt300")]
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    result = run(conditions, WINDOW_S, SETTLE_S, workdir=ARTIFACTS, publisher="chromium")
    return {row.name: row for row in result}


def test_a_far_lossy_classroom_sees_the_teachers_720p_layer_at_nearly_the_clean_rate(rows):
    clean, lossy = rows["clean"], rows["loss5_rtt300"]
    assert clean.height == 720 and clean.fps > 10, clean
    assert lossy.height == 720, f"the top layer did not keep coming: {lossy}"
    assert lossy.paused_s == 0, lossy
    assert lossy.fps >= MIN_FPS_SHARE * clean.fps, f"decoded {lossy.fps:.1f} of {clean.fps:.1f} fps: {lossy}"
    assert lossy.audio_concealed_pct < MAX_AUDIO_CONCEALED_PCT, lossy
    assert lossy.playout_ms is not None and lossy.playout_ms >= 350, lossy
