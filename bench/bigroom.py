"""One big lesson on 1, 2 and 4 media workers of this machine: subscribers, loss, and what the pipes cost.

    .venv/bin/python -m bench.bigroom [--n 40,80] [--workers 1,2,4] [--seconds 10] [--warmup 3] [--rounds 1]

``bench.fanout``'s load and measurement (one publisher: 720p VP8 ~1.5 Mbps + Opus; N counting
subscribers in two processes; everything inside a private network namespace on 127.0.0.2), against
SanKe only. For each N and each worker count k it starts the server with k media workers and a
consumer limit per worker of ceil(2N / k) (each subscriber takes camera and microphone), so the
lesson's subscribers spread evenly over the k workers, every worker but the lesson's own fed by a
pipe (``media.pipe``). Per run it prints SFU CPU (the server and all its workers), RTP packets the
subscribers received per SFU CPU-second, loss, forwarding delay, the packets each worker forwarded
(from the server's ``/metrics``, so the spread is seen, not assumed), and the efficiency against
the single worker at the same N in the same run (goal: >= 85 %).

A few percent of a core at N = 40 is near what this 2-core machine's CPU accounting can tell
apart: the same run repeated gives the single worker's figure ±30 %. ``--rounds R`` runs the worker
counts R times, interleaved (1, 2, 4, 1, 2, 4, ...: drift of the machine falls on every k alike),
and ends with the median packets per CPU-second per k and the efficiency of the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import statistics
import sys
import time
import urllib.request
from typing import Any

from bench import fanout
from bench.fanout_sanke import LIMIT_ENV, WORKERS_ENV, SankeTarget

GOAL_EFFICIENCY = 0.85
GOAL_LOSS = 0.5  # %
_FORWARDED = re.compile(r'^sanke_forwarded_packets_total\{[^}]*worker="(\d+)"[^}]*\} ([0-9.e+]+)$', re.M)
_LAST_SPREAD: list[dict[int, float]] = []


class BigRoomTarget(SankeTarget):
    """``SankeTarget`` that reads, before stopping, how many packets each worker forwarded."""

    async def stop(self) -> None:
        spread: dict[int, float] = {}
        try:
            text = await asyncio.to_thread(lambda: urllib.request.urlopen(self._base + "/metrics", None, 5)
                                           .read().decode())
            spread = {int(w): float(v) for w, v in _FORWARDED.findall(text)}
        except OSError as exc:
            print(f"  /metrics not read: {exc}", file=sys.stderr, flush=True)
        _LAST_SPREAD.append(spread)
        await super().stop()


def _module() -> Any:
    import importlib

    return importlib.import_module("bench.bigroom")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.bigroom", description=__doc__.split("\n\n")[0])
    p.add_argument("--n", default="40,80", help="subscriber counts, comma-separated (at most 128)")
    p.add_argument("--workers", default="1,2,4", help="media worker counts, comma-separated (1 first: the baseline)")
    p.add_argument("--seconds", type=float, default=10.0, help="measurement window per run")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds between all joined and the window")
    p.add_argument("--sub-procs", type=int, default=2, help="subscriber processes")
    p.add_argument("--join-timeout", type=float, default=60.0)
    p.add_argument("--rounds", type=int, default=1, help="the worker counts this many times, interleaved")
    p.add_argument("--split-cores", action="store_true",
                   help="the SFU (server and workers) on the last core, the publisher and subscribers on the others")
    args = p.parse_args(argv)
    args.n = [int(x) for x in args.n.split(",") if x.strip()]
    args.workers = [int(x) for x in args.workers.split(",") if x.strip()]
    if any(not 1 <= n <= 128 for n in args.n) or any(not 1 <= k <= 16 for k in args.workers):
        p.error("N must be 1..128 and workers 1..16")
    if not 1 <= args.rounds <= 10:
        p.error("rounds must be 1..10")
    return args


async def amain(args: argparse.Namespace) -> int:
    from bench import fanout_common as common

    common.apply_ice_policy()
    clip = common.load_clip()
    print(f"clip: {common.CLIP_WIDTH}x{common.CLIP_HEIGHT} VP8 {clip.video_bitrate() / 1e6:.2f} Mbps + Opus "
          f"{clip.audio_bitrate() / 1e3:.0f} kbps; window {args.seconds:.0f} s after {args.warmup:.0f} s warm-up; "
          f"{os.cpu_count()} cores", flush=True)
    fanout.TARGETS["bigroom"] = "bench.bigroom:BigRoomTarget"
    if args.split_cores:
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < 2:
            print("--split-cores needs two cores", file=sys.stderr)
            return 2
        _module().BigRoomTarget.sfu_cores = {cores[-1]}
        os.sched_setaffinity(0, set(cores[:-1]))  # the publisher here and the subscriber processes spawned later
        print(f"SFU on core {cores[-1]}, publisher and subscribers on {cores[:-1]}", flush=True)
    results: list[tuple[int, int, Any, dict[int, float]]] = []
    for n in args.n:
        for k in args.workers * args.rounds:
            os.environ[WORKERS_ENV] = str(k)
            os.environ[LIMIT_ENV] = str(math.ceil(2 * n / k))
            run_args = argparse.Namespace(**{**vars(args), "n": [n]})
            print(f"  N={n} on {k} worker(s), {os.environ[LIMIT_ENV]} consumers each ...", file=sys.stderr,
                  flush=True)
            rows, note = await fanout.run_target("bigroom", run_args, clip)
            shares = _module()._LAST_SPREAD  # the target class lives in the imported module, not in __main__
            spread = shares.pop() if shares else {}
            if note or not rows:
                print(note or f"N={n} k={k}: no result", flush=True)
                continue
            results.append((n, k, rows[0], spread))
    print()
    header = (f"{'N':>4} {'workers':>7} {'ok':>4} {'sfu cpu%':>8} {'mach%':>6} {'fwd pkt/s':>9} {'pkt/cpu-s':>9} "
              f"{'eff':>6} {'loss%':>6} {'max%':>6} {'dly p50':>7} {'p99 ms':>7} {'sub cpu%':>9}  forwarded per worker")
    print(header)
    print("-" * len(header))
    base: dict[int, float] = {}
    verdicts = []
    for n, k, row, spread in results:
        if k == 1:
            base[n] = row.pkts_per_cpu_s
        eff = row.pkts_per_cpu_s / base[n] if base.get(n) else math.nan
        total = sum(spread.values()) or math.nan
        shares = " ".join(f"w{w}:{v / total:.0%}" for w, v in sorted(spread.items())) if spread else "-"
        subs = "/".join(f"{c:.0f}" for c in row.subscriber_cpu_pct) + ("!" if row.subscribers_saturated else "")
        print(f"{n:>4} {k:>7} {row.subscribers_ok:>4} {fanout._f(row.sfu_cpu_pct, '8.1f')} "
              f"{fanout._f(row.machine_busy_pct, '6.1f')} {fanout._f(row.forwarded_pkts_per_s, '9.0f')} "
              f"{fanout._f(row.pkts_per_cpu_s, '9.0f')} {fanout._f(eff * 100, '5.0f')}% "
              f"{fanout._f(row.loss_pct, '6.2f')} {fanout._f(row.loss_pct_max, '6.2f')} "
              f"{fanout._f(row.delay_p50_ms, '7.2f')} {fanout._f(row.delay_p99_ms, '7.2f')} {subs:>9}  {shares}")
        if k > 1:
            verdicts.append(f"N={n} k={k}: efficiency {eff:.0%} (>= {GOAL_EFFICIENCY:.0%}: "
                            f"{'met' if eff >= GOAL_EFFICIENCY else 'NOT met'}), loss {row.loss_pct:.2f} % "
                            f"(< {GOAL_LOSS} %: {'met' if row.loss_pct < GOAL_LOSS else 'NOT met'}), "
                            f"{row.subscribers_ok}/{n} subscribers received video")
    if args.rounds > 1:
        verdicts = []
        for n in args.n:
            medians = {k: statistics.median(row.pkts_per_cpu_s for n2, k2, row, _ in results if (n2, k2) == (n, k))
                       for k in dict.fromkeys(args.workers) if any((n2, k2) == (n, k) for n2, k2, _, _ in results)}
            losses = {k: max(row.loss_pct for n2, k2, row, _ in results if (n2, k2) == (n, k)) for k in medians}
            if 1 not in medians:
                continue
            for k, m in medians.items():
                line = f"N={n} k={k}: median {m:.0f} pkt/cpu-s of {args.rounds} runs"
                if k > 1:
                    eff = m / medians[1]
                    line += (f", efficiency of the medians {eff:.0%} (>= {GOAL_EFFICIENCY:.0%}: "
                             f"{'met' if eff >= GOAL_EFFICIENCY else 'NOT met'}), worst loss {losses[k]:.2f} %")
                verdicts.append(line)
    for line in verdicts:
        print(line)
    print(time.strftime("run ended %Y-%m-%d %H:%M:%S %Z"))
    return 0 if results else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    from bench import fanout_common as common

    common.ensure_netns("bench.bigroom", argv)
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
