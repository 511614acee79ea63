"""SFU fan-out benchmark: one publisher (720p VP8 ~1.5 Mbps + Opus) -> N counting subscribers.

    .venv/bin/python -m bench.fanout [--n 1,5,10,20,40] [--seconds 10] [--warmup 3]
                                     [--targets janus,sanke]

Runs as root; re-execs itself under ``unshare -n`` (private network namespace, ``lo`` + a veth
with 127.0.0.2/8). Per target and N it prints SFU CPU, RTP packets forwarded per SFU CPU-second,
per-subscriber bitrate and loss, forwarding delay p50/p99 and join-to-first-packet, then the
SanKe/Janus ratio; JSON goes to ``bench/results/fanout.json``.

Targets: ``janus`` (``bench/fanout_janus.py``) and ``sanke`` (``bench/fanout_sanke.py``, class
``SankeTarget``, see :class:`bench.fanout_common.Target`); a missing SanKe target is skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import math
import multiprocessing
import os
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any

TARGETS = {
    "janus": "bench.fanout_janus:JanusTarget",
    "sanke": "bench.fanout_sanke:SankeTarget",
}

GOALS_N = 20
GOAL_RATIO = 1.0
GOAL_LOSS = 0.5  # %
GOAL_DELAY_P99_MS = 5.0


class TargetUnavailable(Exception):
    """The target cannot run here (not written yet, not installed): skipped with a note."""


def load_target_class(path: str) -> type:
    module_name, _, class_name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise TargetUnavailable(f"{module_name} does not exist yet") from None
        raise
    except NotImplementedError as exc:
        raise TargetUnavailable(f"{module_name}: not implemented ({exc})") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise TargetUnavailable(f"{module_name} has no {class_name}")
    return cls


# ---------------------------------------------------------------------- results


@dataclass
class Row:
    target: str
    n: int
    subscribers_ok: int = 0
    window_s: float = math.nan
    sfu_cpu_pct: float = math.nan  # % of one core (schedstat run time, exact)
    sfu_cpu_pct_stat: float = (
        math.nan
    )  # same from tick-based utime+stime, for comparison
    machine_busy_pct: float = math.nan  # % of all cores
    publisher_cpu_pct: float = (
        math.nan
    )  # main process (publisher + signalling), % of one core
    subscriber_cpu_pct: list[float] = field(
        default_factory=list
    )  # per subscriber process
    sent_pkts_per_s: float = math.nan  # publisher
    forwarded_pkts_per_s: float = math.nan  # sum over subscribers
    pkts_per_cpu_s: float = math.nan
    sub_kbps_mean: float = math.nan
    sub_kbps_min: float = math.nan
    loss_pct: float = math.nan  # all subscribers together
    loss_pct_max: float = math.nan  # worst subscriber
    delay_p50_ms: float = math.nan
    delay_p99_ms: float = math.nan
    delay_samples: int = 0
    delay_unmatched: int = 0
    join_p50_ms: float = math.nan
    join_max_ms: float = math.nan
    errors: list[str] = field(default_factory=list)

    @property
    def subscribers_saturated(self) -> bool:
        return any(c >= 90 for c in self.subscriber_cpu_pct)


def _f(value: float, fmt: str) -> str:
    """``format(value, fmt)``, or "-" right-aligned to the same width when there is no value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        width = fmt.split(".")[0].rstrip("df")
        return "-".rjust(int(width)) if width.isdigit() else "-"
    return format(value, fmt)


HEADER = (
    f"{'target':<7} {'N':>3} {'ok':>3} {'sfu cpu%':>8} {'mach%':>6} {'fwd pkt/s':>9} {'pkt/cpu-s':>9} "
    f"{'kbps/sub':>8} {'min':>6} {'loss%':>6} {'max%':>6} {'dly p50':>7} {'p99 ms':>7} "
    f"{'join p50':>8} {'max ms':>7} {'pub%':>5} {'sub cpu%':>11}"
)


def format_row(row: Row) -> str:
    subs = "/".join(f"{c:.0f}" for c in row.subscriber_cpu_pct) or "-"
    if row.subscribers_saturated:
        subs += "!"
    return (
        f"{row.target:<7} {row.n:>3} {row.subscribers_ok:>3} {_f(row.sfu_cpu_pct, '8.1f')} "
        f"{_f(row.machine_busy_pct, '6.1f')} {_f(row.forwarded_pkts_per_s, '9.0f')} "
        f"{_f(row.pkts_per_cpu_s, '9.0f')} {_f(row.sub_kbps_mean, '8.0f')} {_f(row.sub_kbps_min, '6.0f')} "
        f"{_f(row.loss_pct, '6.2f')} {_f(row.loss_pct_max, '6.2f')} {_f(row.delay_p50_ms, '7.2f')} "
        f"{_f(row.delay_p99_ms, '7.2f')} {_f(row.join_p50_ms, '8.0f')} {_f(row.join_max_ms, '7.0f')} "
        f"{_f(row.publisher_cpu_pct, '5.0f')} {subs:>11}"
    )


def format_table(rows: list[Row]) -> str:
    lines = [HEADER, "-" * len(HEADER)]
    lines += [format_row(r) for r in rows]
    return "\n".join(lines)


def format_ratios(rows: list[Row]) -> list[str]:
    """``SanKe/Janus`` packets per CPU-second per N, and the goals at N = 20."""
    by = {(r.target, r.n): r for r in rows}
    ns = sorted({r.n for r in rows})
    lines = []
    parts = []
    for n in ns:
        s, j = by.get(("sanke", n)), by.get(("janus", n))
        if (
            s is None
            or j is None
            or not (j.pkts_per_cpu_s > 0)
            or math.isnan(s.pkts_per_cpu_s)
        ):
            continue
        parts.append(f"N={n}: {s.pkts_per_cpu_s / j.pkts_per_cpu_s:.2f}x")
    if parts:
        lines.append("SanKe/Janus packets per CPU-second: " + ", ".join(parts))
    else:
        lines.append("SanKe/Janus ratio: n/a (needs both targets at the same N)")
    s, j = by.get(("sanke", GOALS_N)), by.get(("janus", GOALS_N))
    if s is not None:
        ratio = (
            s.pkts_per_cpu_s / j.pkts_per_cpu_s
            if j is not None and j.pkts_per_cpu_s > 0
            else math.nan
        )
        checks = [
            ("ratio", ratio, ratio >= GOAL_RATIO, f">= {GOAL_RATIO:.1f}x", ".2f"),
            ("loss", s.loss_pct, s.loss_pct < GOAL_LOSS, f"< {GOAL_LOSS}%", ".2f"),
            (
                "delay p99",
                s.delay_p99_ms,
                s.delay_p99_ms < GOAL_DELAY_P99_MS,
                f"< {GOAL_DELAY_P99_MS} ms",
                ".2f",
            ),
        ]
        lines.append(
            f"goals at N={GOALS_N}: "
            + "; ".join(
                f"{name} {_f(v, fmt)} ({goal}): {'met' if ok else 'NOT met'}"
                for name, v, ok, goal, fmt in checks
            )
        )
    return lines


# ---------------------------------------------------------------------- subscriber processes


def _subscriber_process(
    conn: Any, target_path: str, spec: dict, indices: list[int]
) -> None:
    """Entry point of a subscriber process (spawned): hosts ``len(indices)`` counting subscribers."""
    try:
        asyncio.run(_subscriber_main(conn, target_path, spec, indices))
    except Exception:  # noqa: BLE001
        with contextlib.suppress(Exception):
            conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


async def _recv(conn: Any, timeout: float) -> Any:
    def get() -> Any:
        if conn.poll(timeout):
            return conn.recv()
        raise TimeoutError(f"no message within {timeout:.0f} s")

    return await asyncio.to_thread(get)


async def _subscriber_main(
    conn: Any, target_path: str, spec: dict, indices: list[int]
) -> None:
    from bench import fanout_common as common

    common.apply_ice_policy()
    common.install_counting_hooks()
    cls = load_target_class(target_path)
    client = cls.attach(spec)
    subs: list[common.CountingSubscriber] = []
    errors: list[str] = []
    try:
        msg = await _recv(conn, 60)
        assert msg[0] == "join", msg
        join_deadline = msg[1]
        sem = asyncio.Semaphore(4)

        async def join(index: int) -> None:
            sub = common.CountingSubscriber(index)
            common.register_subscriber(sub)
            subs.append(sub)
            async with sem:
                sub.join_started = time.monotonic()
                try:
                    await asyncio.wait_for(
                        client.subscribe(sub),
                        max(1.0, join_deadline - time.monotonic()),
                    )
                    sub.joined = time.monotonic()
                except Exception as exc:  # noqa: BLE001
                    sub.error = f"subscriber {index}: {type(exc).__name__}: {exc}"
                    errors.append(sub.error)

        await asyncio.gather(*(join(i) for i in indices))
        # wait (bounded) for the first video packet of every joined subscriber
        while time.monotonic() < join_deadline and any(
            s.error is None and s.first_video is None for s in subs
        ):
            await asyncio.sleep(0.05)
        conn.send(
            (
                "joined",
                len([s for s in subs if s.error is None and s.first_video is not None]),
                errors,
            )
        )

        msg = await _recv(conn, 60)
        assert msg[0] == "window", msg
        t0, t1 = msg[1], msg[2]
        for s in subs:
            s.window = (t0, t1)
        await asyncio.sleep(max(0.0, t0 - time.monotonic()))
        start = [s.snapshot() for s in subs]
        await asyncio.sleep(max(0.0, t1 - time.monotonic()))
        end = [s.snapshot() for s in subs]
        stats = []
        for s, a, b in zip(subs, start, end):
            stats.append(
                {
                    "index": s.index,
                    "error": s.error,
                    "t0": a.t,
                    "t1": b.t,
                    "start": asdict(a),
                    "end": asdict(b),
                    "join_to_first_ms": (s.first_packet - s.join_started) * 1000
                    if s.first_packet is not None and s.join_started is not None
                    else None,
                    "arrivals": s.arrivals,
                }
            )
            s.window = None
        conn.send(("stats", stats))
        msg = await _recv(conn, 60)
    finally:
        for s in subs:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(s.close(), 5)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.detach(), 5)


def subscriber_window_stats(stat: dict) -> dict[str, float]:
    """Packets, bytes, expected and received media packets of one subscriber in the window."""
    a, b = stat["start"], stat["end"]
    packets = sum(b["packets"].values()) - sum(a["packets"].values())
    nbytes = sum(b["bytes"].values()) - sum(a["bytes"].values())
    expected = received = 0
    for ssrc, (recv_end, max_end, first_seq, kind) in b["ssrcs"].items():
        if kind not in ("audio", "video"):
            continue
        recv_start, max_start, _, _ = a["ssrcs"].get(
            ssrc, (0, first_seq - 1, first_seq, kind)
        )
        expected += max_end - max_start
        received += recv_end - recv_start
    return {
        "packets": packets,
        "bytes": nbytes,
        "expected": expected,
        "received": received,
    }


# ---------------------------------------------------------------------- one target


async def _publisher_pc(clip: Any) -> Any:
    from aiortc import RTCPeerConnection, RTCRtpSender

    from bench import fanout_common as common

    pc = RTCPeerConnection(common.rtc_configuration())
    audio, video = common.clip_tracks(clip)
    ta = pc.addTransceiver(audio, direction="sendonly")
    tv = pc.addTransceiver(video, direction="sendonly")
    ta.setCodecPreferences(
        [
            c
            for c in RTCRtpSender.getCapabilities("audio").codecs
            if c.mimeType == "audio/opus"
        ]
    )
    tv.setCodecPreferences(
        [
            c
            for c in RTCRtpSender.getCapabilities("video").codecs
            if c.mimeType in ("video/VP8", "video/rtx")
        ]
    )
    return pc


async def _wait_connected(pc: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while pc.connectionState != "connected":
        if pc.connectionState in ("failed", "closed") or time.monotonic() > deadline:
            raise RuntimeError(f"publisher connection {pc.connectionState}")
        await asyncio.sleep(0.05)


async def run_n(
    target: Any, target_path: str, n: int, args: argparse.Namespace, send_log: Any
) -> Row:
    from bench import fanout_common as common

    row = Row(target=target.name, n=n)
    spec = target.spec()
    n_procs = 1 if n <= 1 else max(1, min(args.sub_procs, n))
    groups = [list(range(i, n, n_procs)) for i in range(n_procs)]
    ctx = multiprocessing.get_context("spawn")
    procs = []
    conns = []
    try:
        for group in groups:
            parent, child = ctx.Pipe()
            p = ctx.Process(
                target=_subscriber_process,
                args=(child, target_path, spec, group),
                daemon=True,
            )
            p.start()
            child.close()
            procs.append(p)
            conns.append(parent)
        join_deadline = time.monotonic() + args.join_timeout
        for c in conns:
            c.send(("join", join_deadline))
        ok = 0
        for c in conns:
            msg = await _recv(c, args.join_timeout + 30)
            if msg[0] == "error":
                raise RuntimeError(f"subscriber process failed:\n{msg[1]}")
            ok += msg[1]
            row.errors += msg[2]
        row.subscribers_ok = ok

        t0 = time.monotonic() + args.warmup
        t1 = t0 + args.seconds
        for c in conns:
            c.send(("window", t0, t1))
        await asyncio.sleep(max(0.0, t0 - 1.0 - time.monotonic()))
        send_log.clear()
        await asyncio.sleep(max(0.0, t0 - time.monotonic()))
        sub_pids = [p.pid for p in procs]
        me = [os.getpid()]
        cpu0 = common.process_cpu_seconds(target.pids())
        stat0 = common.process_stat_cpu_seconds(target.pids())
        sub0 = [common.process_cpu_seconds([pid]) for pid in sub_pids]
        pub0 = common.process_cpu_seconds(me, descendants=False)
        mach0 = common.machine_times()
        w0 = time.monotonic()
        sent0 = send_log.packets
        await asyncio.sleep(max(0.0, t1 - time.monotonic()))
        cpu1 = common.process_cpu_seconds(target.pids())
        stat1 = common.process_stat_cpu_seconds(target.pids())
        sub1 = [common.process_cpu_seconds([pid]) for pid in sub_pids]
        pub1 = common.process_cpu_seconds(me, descendants=False)
        mach1 = common.machine_times()
        w1 = time.monotonic()
        sent1 = send_log.packets
        window = w1 - w0
        row.window_s = window
        row.sfu_cpu_pct = (cpu1 - cpu0) / window * 100
        row.sfu_cpu_pct_stat = (stat1 - stat0) / window * 100
        row.subscriber_cpu_pct = [(b - a) / window * 100 for a, b in zip(sub0, sub1)]
        row.publisher_cpu_pct = (pub1 - pub0) / window * 100
        row.machine_busy_pct = common.machine_busy(mach0, mach1) * 100
        row.sent_pkts_per_s = (sent1 - sent0) / window

        stats: list[dict] = []
        for c in conns:
            msg = await _recv(c, 60)
            if msg[0] == "error":
                raise RuntimeError(f"subscriber process failed:\n{msg[1]}")
            stats += msg[1]
        for c in conns:
            c.send(("stop",))
        fill_row(row, stats, send_log, cpu1 - cpu0)
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
        for c in conns:
            c.close()
    return row


def fill_row(row: Row, stats: list[dict], send_log: Any, sfu_cpu_s: float) -> None:
    """Aggregate subscriber statistics into ``row`` (bitrate, loss, delays, join times)."""
    from bench.fanout_common import percentile

    live = [s for s in stats if s["error"] is None]
    kbps, losses, joins = [], [], []
    total_packets = total_expected = total_received = 0
    arrivals = []
    for s in live:
        w = subscriber_window_stats(s)
        span = s["t1"] - s["t0"]
        kbps.append(w["bytes"] * 8 / span / 1000 if span > 0 else math.nan)
        total_packets += w["packets"]
        total_expected += w["expected"]
        total_received += w["received"]
        losses.append(
            100 * (1 - w["received"] / w["expected"]) if w["expected"] > 0 else 100.0
        )
        if s["join_to_first_ms"] is not None:
            joins.append(s["join_to_first_ms"])
        arrivals.extend(s["arrivals"])
    if live:
        span = sum(s["t1"] - s["t0"] for s in live) / len(live)
        row.forwarded_pkts_per_s = total_packets / span
        row.pkts_per_cpu_s = total_packets / sfu_cpu_s if sfu_cpu_s > 0 else math.nan
        row.sub_kbps_mean = sum(kbps) / len(kbps)
        row.sub_kbps_min = min(kbps)
        row.loss_pct = (
            100 * (1 - total_received / total_expected) if total_expected > 0 else 100.0
        )
        row.loss_pct_max = max(losses)
    delays, unmatched = send_log.delays(arrivals)
    row.delay_samples = len(delays)
    row.delay_unmatched = unmatched
    row.delay_p50_ms = percentile(delays, 50) * 1000
    row.delay_p99_ms = percentile(delays, 99) * 1000
    row.join_p50_ms = percentile(joins, 50)
    row.join_max_ms = max(joins) if joins else math.nan


async def run_target(
    name: str, args: argparse.Namespace, clip: Any
) -> tuple[list[Row], str | None]:
    """All N for one target; returns the rows and a note when the target was skipped."""
    from bench import fanout_common as common

    path = TARGETS[name]
    try:
        cls = load_target_class(path)
        target = cls()
    except (TargetUnavailable, NotImplementedError) as exc:
        return [], f"{name}: skipped ({exc})"
    rows: list[Row] = []
    pc = None
    try:
        try:
            await target.start()
            pc = await _publisher_pc(clip)
            await target.publish(pc)
        except NotImplementedError as exc:
            return [], f"{name}: skipped (not implemented: {exc})"
        await _wait_connected(pc, 15)
        send_log = common.SendLog()
        send_log.attach(pc)
        await asyncio.sleep(1.0)
        for n in args.n:
            print(f"  {name}: N={n} ...", file=sys.stderr, flush=True)
            try:
                row = await run_n(target, path, n, args, send_log)
            except Exception as exc:  # noqa: BLE001
                row = Row(target=name, n=n, errors=[f"{type(exc).__name__}: {exc}"])
            rows.append(row)
            for e in row.errors[:3]:
                print(f"  {name} N={n}: {e}", file=sys.stderr, flush=True)
            await asyncio.sleep(1.0)
    finally:
        if pc is not None:
            await pc.close()
        await target.stop()
    return rows, None


# ---------------------------------------------------------------------- main


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.fanout", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--n", default="1,5,10,20,40", help="subscriber counts, comma-separated"
    )
    p.add_argument(
        "--seconds", type=float, default=10.0, help="measurement window per N"
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=3.0,
        help="seconds between all joined and the window",
    )
    p.add_argument(
        "--targets", default="janus,sanke", help="comma-separated: janus, sanke"
    )
    p.add_argument(
        "--sub-procs", type=int, default=2, help="subscriber processes (N > 1)"
    )
    p.add_argument("--join-timeout", type=float, default=30.0)
    args = p.parse_args(argv)
    args.n = [int(x) for x in args.n.split(",") if x.strip()]
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    for t in args.targets:
        if t not in TARGETS:
            p.error(f"unknown target {t!r} (known: {', '.join(TARGETS)})")
    return args


async def amain(args: argparse.Namespace) -> int:
    from bench import fanout_common as common

    common.apply_ice_policy()
    clip = common.load_clip()
    print(
        f"clip: {common.CLIP_WIDTH}x{common.CLIP_HEIGHT} VP8 {clip.video_bitrate() / 1e6:.2f} Mbps "
        f"(keyframes every {common.CLIP_KEYFRAME_INTERVAL / common.CLIP_FPS:.1f} s) + Opus "
        f"{clip.audio_bitrate() / 1e3:.0f} kbps, {clip.duration:.0f} s loop; "
        f"window {args.seconds:.0f} s after {args.warmup:.0f} s warm-up; {os.cpu_count()} cores",
        flush=True,
    )
    rows: list[Row] = []
    notes: list[str] = []
    order = [t for t in ("janus", "sanke") if t in args.targets]
    for name in order:
        target_rows, note = await run_target(name, args, clip)
        rows += target_rows
        if note:
            notes.append(note)
            print(note, flush=True)
    print()
    print(format_table(rows))
    for line in format_ratios(rows):
        print(line)
    for r in rows:
        if r.subscribers_saturated:
            print(
                f"note: {r.target} N={r.n}: a subscriber process used >= 90% of a core (figures may be capped)"
            )
        if r.subscribers_ok < r.n:
            print(
                f"note: {r.target} N={r.n}: only {r.subscribers_ok}/{r.n} subscribers received video"
            )
    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = common.RESULTS_DIR / "fanout.json"
    out.write_text(
        json.dumps(
            {
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "args": {k: v for k, v in vars(args).items()},
                "clip": {
                    "width": common.CLIP_WIDTH,
                    "height": common.CLIP_HEIGHT,
                    "fps": common.CLIP_FPS,
                    "video_bps": clip.video_bitrate(),
                    "audio_bps": clip.audio_bitrate(),
                },
                "rows": [asdict(r) for r in rows],
                "notes": notes,
            },
            indent=2,
            default=str,
        )
    )
    print(f"JSON: {out}")
    return 0 if rows or notes else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    from bench import fanout_common as common

    common.ensure_netns("bench.fanout", argv)
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
