"""The LL-HLS viewers benchmark, run small: 10 viewers for 3 s from SanKe and from nginx in front of it.  Every
viewer must get parts, each after it was written (a benchmark whose viewers got nothing would measure
nothing), only 200 answers, and the figures must be there."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.utils.hls_live import PART_S
from tests.utils.hls_nginx import require_nginx
from tests.utils.sanke_proc import REPO


@pytest.mark.parametrize("origin", ["sanke", "nginx"])
def test_the_viewers_get_every_part_after_it_was_written(origin: str) -> None:
    if origin == "nginx":
        require_nginx()
    done = subprocess.run([sys.executable, "-m", "bench.hls_viewers", "--viewers", "10", "--seconds", "3",
                           "--warmup", "1", "--origin", origin, "--no-split"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["origin"] == origin and result["viewers"] == 10
    assert result["parts_received"] >= 10 * 3 / PART_S / 2, result  # at least half of the parts, on a loaded machine
    assert set(result["answers"]) == {"200"} and result["errors"] == {}, result
    assert 0 < result["delay_p50_s"] <= result["delay_p99_s"] <= result["delay_max_s"], result
    assert result["server_cpu_cores"] > 0, result
