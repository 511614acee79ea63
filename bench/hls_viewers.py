"""LL-HLS viewers at the real request rate, served by SanKe itself or by nginx in front of it.

```
.venv/bin/python -m bench.hls_viewers --viewers 200 [--seconds 20] [--origin sanke|nginx] [--nginx-workers 1]
```

A writer adds a part of ``--part-kib`` KiB to a lesson's camera rendition every 0.334 s (six to a segment),
replacing the playlist atomically as the media worker does (``tests/utils/hls_live.py``); each part starts
with the time it was written.  SanKe (``sanke serve``, its own process, SQLite) serves the lesson; with
``--origin nginx``, Debian's nginx runs the configuration of ``docs/operations.md`` in front of it.  Each
viewer holds one keep-alive connection and does what an LL-HLS player does for one rendition: a blocking
playlist reload for the next part (``_HLS_msn``/``_HLS_part``), then that part.  The viewers run in
another process (uvloop) on the other core (``--split``: the servers on core 0, the viewers and the writer
on core 1; ``--viewer-procs`` spreads them over several processes).  Printed: each part's delay from its writing to its arrival at a viewer (p50/p99/max), the
share that arrived within one part (0.334 s) and within PART-HOLD-BACK (1.002 s: the player's deadline),
the answers by status, and the CPU the servers (SanKe and nginx) and the viewers used.  The first ``--warmup`` seconds are not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from server.core import hls_sign
from tests.utils.hls_live import PART_S, LiveRendition, live_lesson
from tests.utils.hls_nginx import nginx_origin
from tests.utils.live import free_port
from tests.utils.wait import wait_until

LESSON = 41
KEY = "bench-hls-viewers-secret-key-0123456789"
HINT = re.compile(rb'PRELOAD-HINT:TYPE=PART,URI="s(\d+)\.(\d+)\.m4s"')


class TimedRendition(LiveRendition):
    """Parts that start with the time they were written (what a viewer measures its delay from)."""

    size = 40 * 1024

    def part_bytes(self, msn: int, part: int) -> bytes:
        return struct.pack("<d", time.time()) + bytes(self.size - 8)


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> tuple[int, bytes]:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    return int(head[9:12]), await reader.readexactly(int(m.group(1)) if m else 0)


async def _viewer(port: int, prefix: str, until: float, warm: float, delays: list[float],
                  answers: Counter[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        status, playlist = await _get(reader, writer, prefix + "camera/index.m3u8")
        while time.time() < until:
            hint = HINT.search(playlist)
            if hint is None:
                return
            msn, part = int(hint.group(1)), int(hint.group(2))
            status, reloaded = await _get(reader, writer, f"{prefix}camera/index.m3u8?_HLS_msn={msn}&_HLS_part={part}")
            answers[status] += 1
            if status != 200:
                continue
            playlist = reloaded
            status, body = await _get(reader, writer, f"{prefix}camera/s{msn}.{part}.m4s")
            answers[status] += 1
            now = time.time()
            if status == 200 and now > warm:
                delays.append(now - struct.unpack("<d", body[:8])[0])
    finally:
        writer.close()


def _viewers(port: int, prefix: str, n: int, seconds: float, warmup: float, out: Any) -> None:
    import uvloop

    async def run() -> dict[str, Any]:
        delays: list[float] = []
        answers: Counter[int] = Counter()
        start = time.time()
        until, warm = start + warmup + seconds, start + warmup
        tasks = []
        for i in range(n):  # connect over the first second, as an audience arrives
            tasks.append(asyncio.create_task(_viewer(port, prefix, until, warm, delays, answers)))
            await asyncio.sleep(1.0 / n)
        cpu0 = time.process_time()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        cpu = (time.process_time() - cpu0) / max(1e-9, time.time() - (start + 1.0))
        errors = Counter(type(r).__name__ for r in results if isinstance(r, BaseException))
        return {"delays": delays, "answers": dict(answers), "errors": dict(errors), "cpu": cpu}

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        out.send(runner.run(run()))


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tree_cpu_s(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        for child in [pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]:
            try:
                total += _cpu_s(child)
            except FileNotFoundError:
                pass
    return total


def run(args: argparse.Namespace) -> dict[str, Any]:
    TimedRendition.size = args.part_kib * 1024
    with tempfile.TemporaryDirectory(prefix="sanke-hls-bench-") as tmp:
        data = Path(tmp) / "data"
        camera = live_lesson(data, LESSON, 1, datetime(2026, 9, 7, 8, 0))["camera"]
        camera = TimedRendition(camera.folder, datetime(2026, 9, 7, 8, 0))
        for _ in range(camera.per_segment * 2):
            camera.add_part()
        port = free_port()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("SANKE_")},
               "SANKE_DATA_DIR": str(data), "SANKE_SECRET_KEY": KEY, "SANKE_PORT": str(port),
               "SANKE_MEDIA_WORKERS": "0", "SANKE_HOST": "127.0.0.1"}
        server = subprocess.Popen([sys.executable, "-m", "server.cli", "serve"], env=env,
                                  cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            if args.split:
                os.sched_setaffinity(server.pid, {0})
                os.sched_setaffinity(0, {1})
            sanke = f"http://127.0.0.1:{port}"
            wait_until("SanKe serving", lambda: httpx.get(sanke + "/healthz").status_code == 200, 60,
                       ignoring=(httpx.TransportError,))
            secret = hls_sign.link_secret(KEY)
            prefix = hls_sign.sign(LESSON, hls_sign.expiry(int(time.time()), 3600), secret).prefix
            if args.origin == "nginx":
                with nginx_origin(sanke, data, secret, Path(tmp) / "nginx", workers=args.nginx_workers) as base:
                    pids = [server.pid, int((Path(tmp) / "nginx" / "nginx.pid").read_text())]
                    if args.split:
                        for pid in pids[1:]:
                            for child in [pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]:
                                os.sched_setaffinity(child, {0})
                    return _measure(args, camera, int(base.rsplit(":", 1)[1]), prefix, pids)
            return _measure(args, camera, port, prefix, [server.pid])
        finally:
            server.terminate()
            server.wait(30)


def _measure(args: argparse.Namespace, camera: LiveRendition, port: int, prefix: str, pids: list[int]) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    pipes, procs = [], []
    for k in range(args.viewer_procs):  # each a share of the audience, on its own loop
        receive, send = ctx.Pipe(duplex=False)
        share = args.viewers // args.viewer_procs + (k < args.viewers % args.viewer_procs)
        proc = ctx.Process(target=_viewers, args=(port, prefix, share, args.seconds, args.warmup, send))
        proc.start()
        if args.split:
            os.sched_setaffinity(proc.pid, {1})
        pipes.append(receive)
        procs.append(proc)
    cpu0 = t0 = None
    start = next_at = time.monotonic()
    while not all(pipe.poll() for pipe in pipes):
        now = time.monotonic()
        if cpu0 is None and now - start > args.warmup + 1.0:  # the audience has arrived
            cpu0, t0 = _tree_cpu_s(pids), now
        if now >= next_at:
            camera.add_part()
            next_at += PART_S
        time.sleep(max(0.0, min(0.01, next_at - time.monotonic())))
    cpu = (_tree_cpu_s(pids) - cpu0) / (time.monotonic() - t0) if cpu0 is not None else float("nan")
    results = [pipe.recv() for pipe in pipes]
    for proc in procs:
        proc.join(10)
    delays = sorted(d for r in results for d in r["delays"])
    answers: Counter[int] = sum((Counter(r["answers"]) for r in results), Counter())
    errors: Counter[str] = sum((Counter(r["errors"]) for r in results), Counter())
    q = lambda f: round(delays[min(len(delays) - 1, int(f * len(delays)))], 4) if delays else None  # noqa: E731
    expected = args.viewers * args.seconds / PART_S
    return {"origin": args.origin, "viewers": args.viewers, "seconds": args.seconds, "part_kib": args.part_kib,
            "parts_received": len(delays), "parts_expected": round(expected),
            "delay_p50_s": q(0.5), "delay_p99_s": q(0.99), "delay_max_s": round(delays[-1], 4) if delays else None,
            "within_one_part": round(sum(d <= PART_S for d in delays) / max(1, len(delays)), 4),
            "within_part_hold_back": round(sum(d <= 3 * PART_S for d in delays) / max(1, len(delays)), 4),
            "answers": dict(answers), "errors": dict(errors),
            "server_cpu_cores": round(cpu, 3), "viewers_cpu_cores": round(sum(r["cpu"] for r in results), 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--viewers", type=int, default=100)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--origin", choices=("sanke", "nginx"), default="sanke")
    p.add_argument("--nginx-workers", type=int, default=1)
    p.add_argument("--viewer-procs", type=int, default=1, help="processes the viewers are spread over")
    p.add_argument("--part-kib", type=int, default=40, help="part size (40 KiB: ~1 Mbit/s of video)")
    p.add_argument("--split", action=argparse.BooleanOptionalAction, default=True,
                   help="servers on core 0, viewers and writer on core 1")
    print(json.dumps(run(p.parse_args()), ensure_ascii=False))


if __name__ == "__main__":
    main()
