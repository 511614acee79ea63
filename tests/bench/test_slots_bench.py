"""The slot finder benchmark times real answers and checks each against the generated timetable.

A tiny province (scale 0.005) on SQLite, a few samples: enough to make sure the benchmark cannot
silently measure nothing, and that every cell the timetable leaves free is proposed without a clash.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.province import Sizes
from bench.scheduler import build
from bench.slots import measure


@pytest.mark.parametrize("samples", [12])
def test_every_free_cell_of_the_timetable_is_proposed_clean(tmp_path: Path, samples: int) -> None:
    url = f"sqlite:///{tmp_path / 'bench.db'}"
    b = build(url, Sizes.for_scale(0.005), log=lambda _line: None)
    t = measure(url, b.province, samples=samples, budget_s=60)
    s = t.summary()
    assert s["n"] == samples and s["wrong_answers"] == 0, s
    # the answers are not trivial: some slots are free, some are in the way
    assert 0 < s["clean_proposals_avg"] < s["proposals_avg"], s
    assert s["p95_ms"] > 0
