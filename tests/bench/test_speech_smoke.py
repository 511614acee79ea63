"""bench/speech.py runs: its packets take the C fast path and are counted in the level bins (it asserts so)."""

from __future__ import annotations

from bench import speech


def test_the_speech_benchmark_measures_the_fast_path_with_and_without_metering() -> None:
    assert speech.per_packet(2000, 0) > 0 and speech.per_packet(2000, 2) > 0
    assert speech.per_sample(3, 10) > 0
