"""``bench.bigroom`` without root: its arguments and how it reads each worker's share from ``/metrics``."""

from __future__ import annotations

import pytest

from bench import bigroom


def test_arguments() -> None:
    args = bigroom.parse_args(["--n", "40,80", "--workers", "1,2,4", "--seconds", "5"])
    assert args.n == [40, 80] and args.workers == [1, 2, 4] and args.seconds == 5.0
    with pytest.raises(SystemExit):
        bigroom.parse_args(["--n", "200"])  # more subscribers than the benchmark has tokens for
    assert bigroom.parse_args([]).rounds == 1
    assert bigroom.parse_args(["--rounds", "3"]).rounds == 3
    with pytest.raises(SystemExit):
        bigroom.parse_args(["--rounds", "0"])


def test_the_forwarded_packets_per_worker_are_read_from_the_metrics_text() -> None:
    text = """# HELP sanke_forwarded_packets_total RTP packets forwarded to subscribers.
# TYPE sanke_forwarded_packets_total counter
sanke_forwarded_packets_total{node="a:1",worker="0"} 1200.0
sanke_forwarded_packets_total{node="a:1",worker="1"} 1.25e+03
sanke_forwarded_bytes_total{node="a:1",worker="1"} 99.0
"""
    assert {int(w): float(v) for w, v in bigroom._FORWARDED.findall(text)} == {0: 1200.0, 1: 1250.0}
