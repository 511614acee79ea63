"""Glass-to-glass latency of a 名校网络课堂's LL-HLS stream (and of regular HLS) in Chromium.

```
nice -n 19 .venv/bin/python -m bench.hls_latency [--warmup 10] [--seconds 30] [--modes ll,regular,webrtc]
                                                  [--width 640] [--height 360]
```

SanKe runs as ``bench.fanout_sanke`` runs it (its own process, SQLite, one media worker, loopback only) with
one 名校网络课堂 booked (``stream_from`` 0, recorded: its recording is its LL-HLS stream) and its room open.
An aiortc publisher joins as the main classroom (``signaling.client.LessonClient``) and publishes its camera
as H.264 (aiortc's encoder, ``--width``x``--height`` at 30 fps) and its microphone (Opus, silence).  Each
picture carries this machine's wall clock (ms, modulo 2^32) taken just before the picture goes to the
encoder, drawn as 32 black/white blocks in a row at the top and its complement in the row below (a read
counts only when both agree).  Headless Chromium (``/usr/bin/chromium``) opens a page of the server, plays
``<prefix>main.m3u8`` (the prefix signed with the server's key, as ``POST /lessons/{id}/hls-link`` signs it)
with the vendored hls.js (``/vendor/hls.min.js``) configured as
``web/lesson/stream.js`` configures it, and on each presented frame (``requestVideoFrameCallback``), at most
every 100 ms, draws the <video>'s top rows into a canvas, reads the code and records ``Date.now()`` minus
it: the glass-to-glass latency on one clock.  Modes, one after the other on the same stream, each in a new
page: ``ll`` (``lowLatencyMode: true`` and ``maxLiveSyncPlaybackRate: 1.5``, as the page plays it: after a late
start hls.js may play up to 1.5x fast back to its target latency) and ``regular`` (``lowLatencyMode: false``:
hls.js reads the same playlists by whole segments only); for reference,
``webrtc`` opens the home student's page itself (signed in, the series' ``stream_from`` set to none first, so
it subscribes to the camera by WebRTC) and reads its ``#teacher-video`` the same way.  The first
``--warmup`` seconds of each mode are not counted; printed (one JSON line): per mode, p50/p90/max/min over
``--seconds``, how many frames were read (and how many could not be), hls.js's stalls, its own latency estimate
and its target latency.  Everything it starts (server, worker, browser) is stopped at the end; every step
has a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import json
import os
import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("SANKE_CHROMIUM", "/usr/bin/chromium")
FPS = 30
BITS = 32
"""Bits of the drawn clock (ms modulo 2^32)."""
LL_CONFIG = {"lowLatencyMode": True, "maxLiveSyncPlaybackRate": 1.5, "enableWorker": False, "backBufferLength": 30}
"""hls.js settings of ``web/lesson/stream.js`` (its loader only rewrites the prefix of a renewed link)."""
MODES: dict[str, dict[str, Any]] = {
    "ll": {},
    "regular": {"lowLatencyMode": False, "maxLiveSyncPlaybackRate": 1},
    "webrtc": {},
}
"""Each mode's hls.js settings over ``LL_CONFIG``: ``ll`` as the page plays the stream, ``regular`` the same
playlists by whole segments (hls.js's defaults otherwise); ``webrtc`` is
not HLS: the home student's page (``/lesson/student.html``) with the series' ``stream_from`` set to none, so it
subscribes to the camera by WebRTC, for reference."""

def block_size(width: int) -> int:
    return width // (BITS + 4)


def prepare(data_dir: Path) -> dict[str, Any]:
    """The database of the run: one 名校网络课堂 (stream_from 0), its room open; the main classroom's join token."""
    from sqlalchemy import select

    from bench.fanout_sanke import SECRET, _settings
    from scheduler.access import scope_of
    from scheduler.bookings import SeriesSpec, create_series
    from scheduler.models import LessonInstance, LessonKind
    from server.core.migrate import migrated_database
    from server.core.security import JoinClaims, create_access_token, create_join_token
    from tests.utils.factory import World

    with migrated_database(_settings(data_dir)) as factory, factory() as s:
        w = World.build(s)
        series = create_series(s, SeriesSpec(
            kind=LessonKind.famous_school, title="名校网络课堂（时延压测）", subject="语文", grade="三年级",
            term_id=w.term.id, main_classroom_id=w.main_room.id, main_teacher_id=w.teacher.id,
            weekday=1, period_from=1, period_to=1, receivers=(), participant_ids=(w.student.id,), stream_from=0,
        ), actor=w.urban_admin, scope=scope_of(s, w.urban_admin))
        inst = s.scalars(select(LessonInstance).where(LessonInstance.series_id == series.id)
                         .order_by(LessonInstance.starts_at)).first()
        inst.room_opened_at = datetime.now()
        s.commit()
        expires = int(time.time()) + 3600
        main = create_join_token(JoinClaims(w.teacher.id, inst.id, "main", w.main_room.id, expires), SECRET)
        return {"lesson": inst.id, "main": main, "series": series.id,
                "teacher": create_access_token(w.teacher.id, w.teacher.role.value, SECRET, 3600),
                "student": create_access_token(w.student.id, w.student.role.value, SECRET, 3600)}


def clock_track(width: int, height: int) -> Any:
    """A camera whose every picture carries the wall clock (ms) taken just before it goes to the encoder."""
    import av
    from aiortc import MediaStreamTrack

    block = block_size(width)

    class ClockTrack(MediaStreamTrack):
        kind = "video"

        def __init__(self) -> None:
            super().__init__()
            self.n = 0
            self.start: float | None = None

        async def recv(self) -> Any:
            if self.start is None:
                self.start = time.monotonic()
            due = self.start + self.n / FPS
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            frame = av.VideoFrame(width, height, "yuv420p")
            stride = frame.planes[0].line_size
            y = bytearray([90]) * (stride * height)
            bar = (self.n * 8) % (width - 16)  # something that moves, as a camera's picture does
            for row in range(4 * block, height):
                y[row * stride + bar:row * stride + bar + 16] = b"\xc8" * 16
            value = int(time.time() * 1000) % (1 << BITS)
            for k, word in enumerate((value, ~value & ((1 << BITS) - 1))):
                line = bytearray([90]) * stride
                for b in range(BITS):
                    on = (word >> (BITS - 1 - b)) & 1
                    line[(2 + b) * block:(3 + b) * block] = (b"\xeb" if on else b"\x10") * block
                for row in range((1 + 2 * k) * block, (2 + 2 * k) * block):
                    y[row * stride:(row + 1) * stride] = line
            frame.planes[0].update(bytes(y))
            for plane in frame.planes[1:]:
                plane.update(bytes([128]) * plane.buffer_size)
            frame.pts = self.n * (90000 // FPS)
            frame.time_base = fractions.Fraction(1, 90000)
            self.n += 1
            return frame

    return ClockTrack()


async def publish(base: str, info: dict[str, Any], width: int, height: int) -> tuple[Any, Any]:
    """The main classroom's camera (H.264 only) and microphone, published by the lesson protocol."""
    from aiortc import RTCPeerConnection, RTCRtpSender
    from aiortc.mediastreams import AudioStreamTrack

    from bench import fanout_common as common
    from signaling.client import LessonClient

    common.apply_ice_policy()
    pc = RTCPeerConnection(common.rtc_configuration())
    ta = pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    tv = pc.addTransceiver(clock_track(width, height), direction="sendonly")
    ta.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType == "audio/opus"])
    tv.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                            if c.mimeType in ("video/H264", "video/rtx")])
    client = LessonClient(base, info["lesson"], info["main"], policy=common.ice_policy(), publisher=pc)
    await asyncio.wait_for(client.connect(), 30)
    await asyncio.wait_for(client.negotiate_publisher({"microphone": ta, "camera": tv}), 30)
    return client, pc


MEASURE_JS = """async ([src, config, width, bits, block, videoId]) => {
  // src: play it with hls.js in a <video> of our own; videoId: read the page's own <video> (WebRTC)
  const out = window.latency = {samples: [], bad: 0, errors: [], stalls: [], playing: false};
  let video, hls = null;
  if (videoId) {
    video = document.getElementById(videoId);
    out.playing = true;
  } else {
    const {default: Hls} = await import('/vendor/hls.min.js');
    document.body.innerHTML = '';
    video = document.createElement('video');
    video.muted = true; video.autoplay = true; video.playsInline = true;
    document.body.appendChild(video);
    hls = new Hls(config);
    hls.on(Hls.Events.ERROR, (_e, d) => {
      if (d.fatal) out.errors.push(d.type + ':' + d.details);
      else if (d.details === 'bufferStalledError') out.stalls.push(Date.now());
    });
    hls.loadSource(src);
    hls.attachMedia(video);
    video.addEventListener('playing', () => { out.playing = true; });
  }
  const canvas = document.createElement('canvas');
  canvas.width = width; canvas.height = 5 * block;
  const g = canvas.getContext('2d', {willReadFrequently: true});
  const read = (rowTop) => {
    const line = g.getImageData(0, rowTop + (block >> 1), width, 1).data;
    let n = 0;
    for (let b = 0; b < bits; b++) n = n * 2 + (line[((2 + b) * block + (block >> 1)) * 4] > 128 ? 1 : 0);
    return n;
  };
  let last = 0;
  const onFrame = () => {
    const now = Date.now();
    if (now - last >= 100 && video.videoWidth) {
      last = now;
      g.drawImage(video, 0, 0, video.videoWidth, 5 * block * video.videoWidth / width, 0, 0, width, 5 * block);
      const value = read(block), check = read(3 * block);
      if (value + check === 2 ** bits - 1) {
        let d = (now % 2 ** bits) - value;
        if (d < -(2 ** (bits - 1))) d += 2 ** bits;
        out.samples.push([now, d, hls ? hls.latency || 0 : 0, hls ? hls.targetLatency || 0 : 0]);
      } else out.bad++;
    }
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
  return true;
}"""


def quantiles(values: list[float]) -> dict[str, Any]:
    v = sorted(values)
    if not v:
        return {"frames_read": 0}
    q = lambda f: round(v[min(len(v) - 1, int(f * len(v)))] / 1000, 3)  # noqa: E731
    return {"frames_read": len(v), "p50_s": q(0.5), "p90_s": q(0.9), "max_s": round(v[-1] / 1000, 3),
            "min_s": round(v[0] / 1000, 3)}


async def measure(browser: Any, base: str, src: str, mode: str, args: argparse.Namespace,
                  student: dict[str, Any] | None = None) -> dict[str, Any]:
    """One mode in a page of its own; ``webrtc``: the home student's page (``student``: its session and lesson)."""
    ctx = await browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN",
                                    timezone_id="Asia/Shanghai")
    try:
        page = await ctx.new_page()
        if mode == "webrtc":
            assert student is not None
            await ctx.add_init_script(f"localStorage.setItem('sanke.session', {json.dumps(json.dumps(student['session']))});")
            await page.goto(f"{base}/lesson/student.html?lesson={student['lesson']}", timeout=60_000)
            deadline = time.monotonic() + 30
            while not await page.evaluate("(() => { const v = document.getElementById('teacher-video');"
                                          " return !!(v && v.srcObject && v.videoWidth > 0 && !v.paused); })()"):
                if time.monotonic() > deadline:
                    raise RuntimeError("webrtc: the student page's teacher video did not play within 30 s")
                await asyncio.sleep(0.2)
            await page.evaluate(MEASURE_JS, [None, None, args.width, BITS, block_size(args.width), "teacher-video"])
        else:
            await page.goto(base + "/healthz", timeout=30_000)
            await page.evaluate(MEASURE_JS, [src, {**LL_CONFIG, **MODES[mode]}, args.width, BITS,
                                             block_size(args.width), None])
        deadline = time.monotonic() + 30
        while not await page.evaluate("window.latency.playing || window.latency.errors.length > 0"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{mode}: the stream did not play within 30 s")
            await asyncio.sleep(0.2)
        began = time.time() * 1000
        await asyncio.sleep(args.warmup + args.seconds)
        result = await page.evaluate("window.latency")
    finally:
        await ctx.close()
    counted = [sample for sample in result["samples"] if sample[0] >= began + args.warmup * 1000]
    median = lambda v: round(sorted(v)[len(v) // 2], 3) if v and mode != "webrtc" else None  # noqa: E731
    return {"mode": mode, **quantiles([s[1] for s in counted]), "unreadable": result["bad"],
            "stalls": sum(t >= began + args.warmup * 1000 for t in result["stalls"]),
            "errors": result["errors"][:5], "hls_js_latency_p50_s": median([s[2] for s in counted]),
            "hls_js_target_latency_p50_s": median([s[3] for s in counted])}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import httpx
    from playwright.async_api import async_playwright

    from tests.web.conftest import CHROMIUM_ARGS  # the loopback recipe of the browser tests (WebRTC included)

    from bench.fanout_sanke import SECRET, start_server, stop_server
    from server.core import hls_files, hls_sign

    modes = args.modes.split(",")
    if not set(modes) <= set(MODES):
        raise SystemExit(f"--modes: of {', '.join(MODES)}")
    data = Path(tempfile.mkdtemp(prefix="sanke-hls-latency-"))
    proc = client = pc = None
    try:
        info = await asyncio.to_thread(prepare, data)
        proc, base = await start_server(data, "1")
        client, pc = await publish(base, info, args.width, args.height)
        main = hls_files.lesson_link(data, info["lesson"]) / "main.m3u8"  # the link leads to the hls/ folder
        deadline = time.monotonic() + 30
        while not main.exists():  # the recording began and its stream has its first segment
            if time.monotonic() > deadline:
                raise RuntimeError(f"no stream within 30 s ({main})")
            await asyncio.sleep(0.2)
        prefix = hls_sign.sign(info["lesson"], hls_sign.expiry(int(time.time()), 3600),
                               hls_sign.link_secret(SECRET)).prefix
        results = []
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                for mode in modes:
                    student = None
                    if mode == "webrtc":  # the home student's page, told to watch by WebRTC
                        async with httpx.AsyncClient(base_url=base, timeout=20) as http:
                            r = await http.put(f"/api/v1/series/{info['series']}/stream-from", json={"stream_from": None},
                                               headers={"Authorization": f"Bearer {info['teacher']}"})
                            r.raise_for_status()
                            me = await http.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {info['student']}"})
                            me.raise_for_status()
                        student = {"lesson": info["lesson"], "session": {"token": info["student"], "user": me.json()}}
                    results.append(await asyncio.wait_for(
                        measure(browser, base, prefix + "main.m3u8", mode, args, student), args.warmup + args.seconds + 120))
            finally:
                await browser.close()
        return {"size": f"{args.width}x{args.height}", "fps": FPS, "warmup_s": args.warmup,
                "window_s": args.seconds, "results": results}
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 10)
        if pc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pc.close(), 10)
        await stop_server(proc)
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--warmup", type=float, default=10.0, help="seconds of each mode not counted")
    p.add_argument("--seconds", type=float, default=30.0, help="seconds counted per mode")
    p.add_argument("--modes", default="ll,regular", help=f"comma-separated, of {', '.join(MODES)}")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    print(json.dumps(asyncio.run(run(p.parse_args())), ensure_ascii=False))


if __name__ == "__main__":
    main()
