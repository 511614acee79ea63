"""The weak-link lab itself: what a probe through it sees is what the condition says.

UDP probes go from the classroom namespace to an echo server in the server namespace (requests
travel "up", answers "down"). Bounds are statistical (several standard deviations wide) and allow
for a loaded machine; each test runs in a few seconds.
"""

from __future__ import annotations

import statistics
import time

import pytest

from bench.linklab import Impairment, LinkLab, list_namespaces

ECHO_PORT = 7000


@pytest.fixture
def echo(lab, probe):
    proc = probe.start(lab.server_ns, "echo", "--port", str(ECHO_PORT), "--seconds", "60")
    # the echo server is up once a probe comes back
    deadline = time.monotonic() + 10
    while True:
        out = probe(lab.classroom_ns, "ping", "--to", f"{lab.server_address}:{ECHO_PORT}", "--count", "1",
                    "--wait-s", "0.5")
        if out["order"]:
            return proc
        assert time.monotonic() < deadline, "the echo server did not answer through the clean lab"


def ping(lab, probe, count: int, interval_ms: float, **kw) -> dict:
    return probe(lab.classroom_ns, "ping", "--to", f"{lab.server_address}:{ECHO_PORT}", "--count", str(count),
                 "--interval-ms", str(interval_ms), *[x for k, v in kw.items() for x in (f"--{k}", str(v))])


def loss_runs(sent: int, received: list[int]) -> list[int]:
    """Lengths of the runs of consecutive lost probes."""
    got = set(received)
    runs, run = [], 0
    for seq in range(sent):
        if seq in got:
            if run:
                runs.append(run)
            run = 0
        else:
            run += 1
    if run:
        runs.append(run)
    return runs


def test_delay_with_jitter_gives_the_rtt_and_keeps_order(lab, probe, echo):
    lab.set_both(Impairment(delay_ms=150, jitter_ms=20))
    lab.wait_applied()
    out = ping(lab, probe, 300, 5)
    rtts = out["rtt_ms"]
    assert len(rtts) == 300, "no loss was configured"
    assert out["order"] == sorted(out["order"]), "the bridge reordered frames (it must release in FIFO order)"
    assert min(rtts) >= 260, min(rtts)  # 2 × (150 − 20) ms at least, never less
    # 300 ms configured; a loaded machine adds its scheduling delays (bridge, probe) on top, never less
    assert 290 <= statistics.median(rtts) <= 400, statistics.median(rtts)
    # jitter is there: the RTTs spread (uniform ±20 ms each way)
    assert statistics.pstdev(rtts) >= 5, statistics.pstdev(rtts)


def test_bernoulli_loss_rate_is_within_statistical_bounds(lab, probe, echo):
    lab.set_condition(down=Impairment(loss=0.10))
    lab.wait_applied()
    out = ping(lab, probe, 3000, 1)
    lost = 1 - len(out["order"]) / out["sent"]
    # σ = sqrt(0.1 × 0.9 / 3000) ≈ 0.0055: ±0.025 is 4.5 σ
    assert 0.075 <= lost <= 0.125, lost
    runs = loss_runs(out["sent"], out["order"])
    assert statistics.mean(runs) < 1.5, "Bernoulli losses come mostly one at a time"
    stats = lab.bridge_stats()
    assert stats["up"]["dropped_loss"] == 0
    assert stats["down"]["dropped_loss"] == out["sent"] - len(out["order"])


def test_gilbert_elliott_losses_come_in_bursts(lab, probe, echo):
    # bad state entered with 2 % per frame, left with 25 %: ~7 % loss in runs of ~4
    lab.set_condition(down=Impairment(p_gb=0.02, p_bg=0.25, loss_bad=1.0))
    lab.wait_applied()
    out = ping(lab, probe, 4000, 1)
    lost = 1 - len(out["order"]) / out["sent"]
    runs = loss_runs(out["sent"], out["order"])
    assert 0.03 <= lost <= 0.13, lost
    assert statistics.mean(runs) >= 2.5, runs  # Bernoulli at this rate: ~1.08
    assert max(runs) >= 8, runs


def test_blackout_loses_everything_then_the_link_comes_back(lab, probe, echo):
    proc = probe.start(lab.classroom_ns, "ping", "--to", f"{lab.server_address}:{ECHO_PORT}", "--count", "400",
                       "--interval-ms", "10", "--wait-s", "1")
    time.sleep(1.2)
    lab.blackout(True)
    time.sleep(1.0)
    lab.blackout(False)
    out = probe.result(proc)
    runs = loss_runs(out["sent"], out["order"])
    # one gap of about a second (100 probes at 10 ms), nothing lost outside it
    assert len(runs) == 1, runs
    assert 70 <= runs[0] <= 140, runs
    assert out["order"][-1] == out["sent"] - 1, "probes flow again after the blackout"
    assert lab.bridge_stats()["up"]["dropped_blackout"] > 0


def _rate_kbit(arrivals: list[list[float]], t0: float, t1: float) -> float:
    total = sum(size for t, size in arrivals if t0 <= t < t1)
    return total * 8 / (t1 - t0) / 1000


def test_tbf_caps_throughput_and_lifting_it_restores_it(lab, probe):
    lab.set_cap(down_kbit=800)
    sink = probe.start(lab.classroom_ns, "sink", "--port", "7001", "--seconds", "5")
    time.sleep(0.5)
    probe(lab.server_ns, "blast", "--to", f"{lab.classroom_address}:7001", "--kbit", "2500", "--seconds", "3",
          "--size", "1200")
    out = probe.result(sink)
    rate = _rate_kbit(out["arrivals"], 0.5, 2.5)
    # tbf counts Ethernet frames (1242 bytes per 1200-byte datagram): ~773 kbit/s of payload
    assert 650 <= rate <= 880, rate
    assert lab.bridge_stats()["down"]["dropped_cap"] > 0, "the excess is dropped at the cap"

    lab.set_cap(down_kbit=None)
    sink = probe.start(lab.classroom_ns, "sink", "--port", "7002", "--seconds", "4")
    time.sleep(0.5)
    probe(lab.server_ns, "blast", "--to", f"{lab.classroom_address}:7002", "--kbit", "2500", "--seconds", "2",
          "--size", "1200")
    out = probe.result(sink)
    assert _rate_kbit(out["arrivals"], 0.2, 1.8) >= 2000


def test_teardown_leaves_no_namespace_even_on_failure(netns_ok):
    with LinkLab() as lab:
        names = [lab.server_ns, lab.middle_ns, lab.classroom_ns]
        assert set(names) <= set(list_namespaces())
    assert not set(names) & set(list_namespaces())

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with LinkLab() as lab:
            names = [lab.server_ns, lab.middle_ns, lab.classroom_ns]
            sleeper = lab.popen(lab.server_ns, ["sleep", "60"])
            raise Boom
    assert not set(names) & set(list_namespaces())
    assert sleeper.poll() is not None, "processes started in the lab are stopped at teardown"
