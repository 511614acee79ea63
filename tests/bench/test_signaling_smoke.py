"""The signaling benchmark, run small: a real node and two client processes on loopback, 40 clients in
rooms of 10 from 8 source addresses.  Every chat line and roster change must reach every member it was
meant for (a benchmark that loses deliveries would measure nothing), and the figures must be there."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from tests.utils.sanke_proc import REPO


def test_every_chat_line_and_roster_change_reaches_every_member(tmp_path: Path) -> None:
    out = tmp_path / "signaling.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.signaling", "--steps", "20,40", "--room-size", "10", "--window", "3",
         "--chat-every", "0.5", "--procs", "2", "--addresses", "8", "--workdir", str(tmp_path / "work"),
         "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    steps = json.loads(out.read_text())["steps"]
    assert [s["clients"] for s in steps] == [20, 40]
    for s in steps:
        assert s["failures"] == 0, done.stdout
        assert s["chat_expected"] >= s["rooms"] * 10 * 4, s  # at least 4 lines a room, to 10 members each
        assert s["chat_got"] == s["chat_expected"], s
        # each room: one member left and came back, seen by the 9 others twice
        assert s["roster_expected"] == s["rooms"] * 9 * 2 and s["roster_got"] == s["roster_expected"], s
        assert all(math.isfinite(float(v)) and float(v) >= 0 for v in s["chat_ms"].values()), s
        assert s["rss_mib"] > 0
    assert "goal: chat fan-out p99 < 50 ms" in done.stdout
