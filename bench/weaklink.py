"""Weak links: what a receiving classroom's Chromium sees through the lab's far, lossy, slow link.

``python -m bench.weaklink [--seconds 60] [--settle 5] [--only NAME,...]`` builds a ``LinkLab``
(``bench/linklab.py``) and runs, in its namespaces:

- server namespace: the SanKe server (``--serve``: the real app, one media worker process, ICE on
  the namespace address only, plus a ``/bench/dump`` route with the worker's ``router.dump``) and a
  main-classroom publisher (``--publish``): aiortc with its own VP8 encoder (640×360 test pattern,
  30 fps, the encoder's target set to 1.5 Mbit/s, answering PLI with a key frame) and an Opus tone
  at 32 kbit/s (what Chromium's Opus sends by default; aiortc's own default is 96 kbit/s stereo);
  it also samples the SFU's counters once a second. ``--publisher chromium`` makes the main
  classroom a second Chromium instead (``--publish-chromium``: the real lesson client, a fake 720p
  camera in the main page's simulcast layers), so the SFU can choose a layer (SanKe only);
- classroom namespace: Debian's Chromium (``--receive``: Playwright, fake devices) on a minimal page
  that imports the real ``/assets/lesson-client.js`` from the server, joins as the receiving
  classroom (publishing its own fake camera and microphone, as the real page does), subscribes to
  the main classroom's camera and microphone, and reports ``getStats`` and every rendered frame's
  time (``requestVideoFrameCallback``) once a second.

Then the same for Janus 1.1.2 (``--targets``, default ``sanke,janus``): Janus's VideoRoom in the
server namespace (``bench/fanout_janus.py``'s trimmed config, its HTTP API and ICE on the namespace
address), the same aiortc publisher content, and the same Chromium receiver on a page served by
Janus's HTTP transport that subscribes with Janus's JSON API. Janus exposes no counters here, so its
paused seconds and RTX are not reported.

Each condition (``CONDITIONS``) holds for ``--seconds``, after ``--settle`` seconds of a clean
link; one row per target and condition is printed. ``run()`` is what
``tests/linklab/test_weaklink.py`` calls with short windows. Every process is stopped and the
namespaces are deleted at the end (also on Ctrl-C).

This module must not change what SanKe does; it only observes it (page stats, the worker's dump,
the bridge's counters).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.linklab import Impairment, LinkLab

SECRET = "bench-weaklink-secret-key-0123456789abcdef"
PORT = 8080
FAR = Impairment(delay_ms=150, jitter_ms=10)
"""150 ± 10 ms each way: ≈ 300 ms RTT."""
CHROMIUM = os.environ.get("SANKE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu",
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
    "--disable-quic",
    "--disable-features=WebRtcHideLocalIpsWithMdns,MediaRouter",
    "--autoplay-policy=no-user-gesture-required",
]


# ---------------------------------------------------------------------- conditions


@dataclass
class Phase:
    """From ``at`` seconds into the window on: this condition (and cap)."""

    at: float
    down: Impairment = field(default_factory=Impairment)
    up: Impairment = field(default_factory=Impairment)
    cap_down_kbit: int | None = None
    cap_up_kbit: int | None = None
    mark: str | None = None
    """``link_back`` (a blackout ends: recovery measured) or ``cap_lifted``."""


@dataclass
class Condition:
    name: str
    phases: Callable[[float], list[Phase]]
    """The window's phases for a window of ``seconds``."""
    seconds: float | None = None
    """This condition's own window (None: the run's ``seconds``)."""


def _lossy(loss: float) -> Impairment:
    return Impairment(delay_ms=FAR.delay_ms, jitter_ms=FAR.jitter_ms, loss=loss)


def _blackouts(seconds: float) -> list[Phase]:
    """Three 2 s blackouts, evenly spread over the window (on a clean link)."""
    phases = [Phase(0)]
    step = seconds / 3
    for i in range(3):
        start = i * step + max(1.0, step / 2 - 1)
        phases.append(Phase(start, Impairment(blackout=True), Impairment(blackout=True)))
        phases.append(Phase(start + 2, mark="link_back"))
    return phases


CONDITIONS: list[Condition] = [
    Condition("clean", lambda s: [Phase(0)]),
    Condition("rtt300", lambda s: [Phase(0, FAR, FAR)]),
    Condition("loss5_rtt300", lambda s: [Phase(0, _lossy(0.05), _lossy(0.05))]),
    Condition("loss10_rtt300", lambda s: [Phase(0, _lossy(0.10), _lossy(0.10))]),
    Condition("loss20_rtt300", lambda s: [Phase(0, _lossy(0.20), _lossy(0.20))]),
    # Gilbert–Elliott: bad state entered with 1 % per packet, left with 20 % (bursts of ~5), ~5 % loss
    Condition("bursty_rtt300", lambda s: [Phase(0, Impairment(FAR.delay_ms, FAR.jitter_ms, p_gb=0.01, p_bg=0.2),
                                                Impairment(FAR.delay_ms, FAR.jitter_ms, p_gb=0.01, p_bg=0.2))]),
    Condition("blackouts_3x2s", _blackouts),
    Condition("cap300k", lambda s: [Phase(0, cap_down_kbit=300)]),
    Condition("cap300k_lifted", lambda s: [Phase(0, cap_down_kbit=300), Phase(s / 2, mark="cap_lifted")]),
    # the receiving classroom's own uplink is weak: 300 kbit/s, 5 % loss, far
    Condition("weak_uplink", lambda s: [Phase(0, FAR, _lossy(0.05), cap_up_kbit=300)]),
]


# ---------------------------------------------------------------------- server side


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _settings(data_dir: Path, address: str, subnet: str) -> Any:
    from server.core.config import Settings

    return Settings(data_dir=data_dir, database_url=f"sqlite:///{data_dir}/sanke.db", secret_key=SECRET,
                    host=address, ice_host_addresses=address, ice_allowed_networks=subnet, media_workers=1)


def prepare(data_dir: Path, address: str, subnet: str) -> dict[str, Any]:
    """The database of the run: one open master lesson, tokens for its main and one receiving classroom."""
    from sqlalchemy import select

    from scheduler.access import scope_of
    from scheduler.bookings import ReceiverSpec, SeriesSpec, create_series
    from scheduler.models import LessonInstance, LessonKind
    from server.core.migrate import migrated_database
    from server.core.security import JoinClaims, create_join_token
    from tests.utils.factory import World

    settings = _settings(data_dir, address, subnet)
    with migrated_database(settings) as factory, factory() as s:
        w = World.build(s)
        series = create_series(s, SeriesSpec(
            kind=LessonKind.master, recording=False, title="名师课堂（弱网）", subject="数学", grade="三年级",
            term_id=w.term.id, main_classroom_id=w.main_room.id, main_teacher_id=w.teacher.id,
            weekday=1, period_from=1, period_to=1, receivers=(ReceiverSpec(w.recv_room.id),),
        ), actor=w.urban_admin, scope=scope_of(s, w.urban_admin))
        inst = s.scalars(select(LessonInstance).where(LessonInstance.series_id == series.id)
                         .order_by(LessonInstance.starts_at)).first()
        inst.room_opened_at = datetime.now()
        s.commit()
        expires = int(time.time()) + 6 * 3600
        main = create_join_token(JoinClaims(w.teacher.id, inst.id, "main", w.main_room.id, expires), SECRET)
        recv = create_join_token(JoinClaims(w.terminal_recv.id, inst.id, "receiving", w.recv_room.id, expires),
                                 SECRET)
        return {"lesson": inst.id, "main": main, "receiving": recv}


def serve(data_dir: Path, address: str, subnet: str, port: int) -> None:
    """The SanKe app (as ``sanke serve`` builds it) plus ``GET /bench/dump?router=…``."""
    import logging

    from server.main import create_app
    from server.serving import serve as serve_app

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s sanke %(name)s: %(message)s")
    app = create_app(_settings(data_dir, address, subnet), migrate=False, run_lifecycle=False)

    @app.get("/bench/dump", include_in_schema=False)
    async def dump(router: str) -> dict[str, Any]:
        pool = app.state.media
        return await pool.request(router, "router.dump", {"router_id": router})

    app.router.routes.insert(0, app.router.routes.pop())  # before the pages' catch-all

    serve_app(app, host=address, port=port, log_level="warning")


def media_tracks() -> tuple[Any, Any]:
    """(microphone, camera) of the main classroom: a 440 Hz tone that aiortc encodes with Opus at
    32 kbit/s, as Chromium does by default, and a moving 640×360 pattern that aiortc encodes live
    with VP8 (starting at 1.5 Mbit/s; a PLI gets a key frame)."""
    import array
    import fractions
    import math

    import aiortc.codecs.opus as opus
    import aiortc.codecs.vpx as vpx
    import av
    from aiortc import AudioStreamTrack, VideoStreamTrack

    vpx.DEFAULT_BITRATE = 1_500_000  # the encoder starts (and stays, unless told less) at 1.5 Mbit/s
    opus_init = opus.OpusEncoder.__init__

    def voice_rate(encoder: Any) -> None:
        opus_init(encoder)
        encoder.codec.bit_rate = 32_000  # (the codec opens at the first frame, so this is in time)

    opus.OpusEncoder.__init__ = voice_rate  # type: ignore[method-assign]

    # 30 frames of a moving test pattern (a bright bar over gradients), prepared once, played in a loop
    width, height = 640, 360
    patterns = []
    for n in range(30):
        y = bytearray((x * 255 // width + n * 8) % 256 for x in range(width)) * height
        bar = n * (width - 24) // 30
        for row in range(height):
            y[row * width + bar: row * width + bar + 24] = b"\xff" * 24
        u = bytes(((r * 2 + n * 4) % 256) for r in range(height // 2) for _ in range(width // 2))
        v = bytes(((c * 3) % 256) for _ in range(height // 2) for c in range(width // 2))
        patterns.append((bytes(y), u, v))

    class Pattern(VideoStreamTrack):
        def __init__(self) -> None:
            super().__init__()
            self.n = 0

        async def recv(self) -> av.VideoFrame:
            pts, time_base = await self.next_timestamp()
            frame = av.VideoFrame(width, height, "yuv420p")
            for plane, data in zip(frame.planes, patterns[self.n % len(patterns)]):
                plane.update(data)
            self.n += 1
            frame.pts, frame.time_base = pts, time_base
            return frame

    rate = 48000
    second = array.array("h", (int(8000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(rate))).tobytes()

    class Tone(AudioStreamTrack):
        def __init__(self) -> None:
            super().__init__()
            self.t = 0
            self.start = 0.0

        async def recv(self) -> av.AudioFrame:  # 20 ms of a 440 Hz tone, s16 mono 48 kHz, paced
            n = rate // 50
            if self.t == 0:
                self.start = time.monotonic()
            else:
                await asyncio.sleep(max(0.0, self.start + self.t / rate - time.monotonic()))
            frame = av.AudioFrame(format="s16", layout="mono", samples=n)
            offset = (self.t % rate) * 2
            frame.planes[0].update(second[offset:offset + n * 2])
            frame.pts, frame.sample_rate, frame.time_base = self.t, rate, fractions.Fraction(1, rate)
            self.t += n
            return frame

    return Tone(), Pattern()


def _policy(address: str) -> Any:
    import ipaddress

    from media import ice

    policy = ice.IcePolicy(ice_servers=(), host_addresses=(address,),
                           allowed_networks=(ipaddress.ip_network(f"{address}/24", strict=False),))
    ice.apply(policy)
    return policy


async def publish(base: str, lesson: int, token: str, address: str, out: Path, seconds: float) -> None:
    """The main classroom on SanKe; samples the SFU's dump (``router.dump``) each second into ``out``."""
    import httpx

    from signaling.client import LessonClient

    policy = _policy(address)
    client = LessonClient(base, lesson, token, policy=policy)
    await client.connect()
    microphone, camera = media_tracks()
    await client.publish({"microphone": microphone, "camera": camera}, video_codec="video/VP8")
    pc = client.publisher
    router = f"lesson-{lesson}"
    deadline = time.monotonic() + seconds
    with out.open("a") as f:
        async with httpx.AsyncClient(timeout=5) as http:
            while time.monotonic() < deadline:
                try:
                    dump = (await http.get(f"{base}/bench/dump", params={"router": router})).json()
                    f.write(json.dumps({"at": time.time(), "dump": dump}) + "\n")
                    f.flush()
                except (httpx.HTTPError, ValueError):
                    pass
                await asyncio.sleep(1.0)
    await client.close()
    if pc is not None:
        await pc.close()


def janus_config(folder: Path, address: str) -> None:
    """``bench/fanout_janus.py``'s trimmed config, its HTTP API and ICE on the lab's server address."""
    from bench import fanout_janus as fj

    fj.write_config(folder, max_subscribers=8)
    for name, old, new in (("janus.jcfg", f'ice_enforce_list = "{fj.BENCH_ADDRESS}"', f'ice_enforce_list = "{address}"'),
                           ("janus.transport.http.jcfg", f'ip = "{fj.HTTP_HOST}"', f'ip = "{address}"')):
        path = folder / name
        text = path.read_text()
        if old not in text:
            raise RuntimeError(f"janus config: {old!r} not in {name}")
        path.write_text(text.replace(old, new))


async def publish_janus(address: str, spec_out: Path, seconds: float) -> None:
    """The same main classroom (``media_tracks``) published into Janus's VideoRoom; its feed id into ``spec_out``."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender

    from bench import fanout_janus as fj

    policy = _policy(address)
    fj.HTTP_HOST = address
    fj.ice_policy = lambda: policy  # its SDP checks: the lab's subnet, not 127.0.0.2
    target = fj.JanusTarget()
    session = fj.JanusSession()
    await session.create()
    target._session = session
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    microphone, camera = media_tracks()
    pc.addTransceiver(microphone, direction="sendonly")
    video = pc.addTransceiver(camera, direction="sendonly")
    video.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                               if c.mimeType in ("video/VP8", "video/rtx")])
    await target.publish(pc)
    spec_out.write_text(json.dumps(target.spec()))
    await asyncio.sleep(seconds)
    await session.destroy()
    await pc.close()


# ---------------------------------------------------------------------- the receiving classroom

PAGE_SETUP = """async ({token, lesson, prefix}) => {
  const { LessonClient } = await import("/assets/lesson-client.js");
  const w = window.__wl = { frames: 0, gaps: [], lastFrame: null, state: null, errors: [] };
  const lc = new LessonClient(lesson, {
    getToken: async () => ({ token, room_open: true, lesson_role: "receiving" }),
    resume: false, candidateFilter: (line) => line.includes(" " + prefix),
  });
  w.lc = lc;
  lc.on("state", (s) => { w.state = s.state; });
  lc.on("track", (t) => { if (t.source === "camera" || t.source === "microphone") __wlAttach(w, t.source, t.stream); });
  lc.setSubscriptions((participants) => {
    const main = [...participants.values()].find((p) => p.role === "main");
    return main ? [{ participant_id: main.participant_id, source: "camera" },
                   { participant_id: main.participant_id, source: "microphone" }] : [];
  });
  await lc.connect();
  await lc.publishUserMedia({ video: true, audio: true });
  return lc.participantId;
}"""

JANUS_PAGE_SETUP = """async ({room, feed, prefix}) => {
  const w = window.__wl = { frames: 0, gaps: [], lastFrame: null, state: "connecting", errors: [] };
  const tx = () => Math.random().toString(36).slice(2);
  const post = async (path, body) => (await fetch(path, { method: "POST", body: JSON.stringify(body) })).json();
  const created = await post("/janus", { janus: "create", transaction: tx() });
  const sid = created.data.id;
  const attached = await post(`/janus/${sid}`, { janus: "attach", plugin: "janus.plugin.videoroom", transaction: tx() });
  const hid = attached.data.id;
  const waiters = {};
  (async () => {  // the long poll for events; a failed poll (blackout) is retried
    for (;;) {
      try {
        const evs = await (await fetch(`/janus/${sid}?maxev=10&rid=${Date.now()}`)).json();
        for (const e of [].concat(evs)) {
          if (e.transaction && waiters[e.transaction] && e.janus !== "ack") { waiters[e.transaction](e); delete waiters[e.transaction]; }
        }
      } catch (e) { await new Promise((r) => setTimeout(r, 200)); }
    }
  })();
  setInterval(() => post(`/janus/${sid}`, { janus: "keepalive", transaction: tx() }).catch(() => {}), 20000);
  const message = (body, jsep) => new Promise((resolve, reject) => {
    const t = tx();
    waiters[t] = resolve;
    post(`/janus/${sid}/${hid}`, { janus: "message", body, jsep, transaction: t }).then((r) => {
      if (r.janus === "success") { delete waiters[t]; resolve(r); } else if (r.janus !== "ack") reject(new Error(JSON.stringify(r)));
    }, reject);
  });
  const joined = await message({ request: "join", ptype: "subscriber", room, streams: [{ feed }] });
  const pc = new RTCPeerConnection({ iceServers: [] });
  w.lc = { subscriber: pc };
  pc.addEventListener("track", (ev) => __wlAttach(w, ev.track.kind === "video" ? "camera" : "microphone", new MediaStream([ev.track])));
  await pc.setRemoteDescription(joined.jsep);
  await pc.setLocalDescription(await pc.createAnswer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && resolve());
    setTimeout(resolve, 5000);
  });
  const sdp = pc.localDescription.sdp.split("\\r\\n")
    .filter((l) => !l.startsWith("a=candidate:") || l.includes(" " + prefix)).join("\\r\\n");
  await message({ request: "start" }, { type: "answer", sdp });
  w.state = "joined";
  return hid;
}"""

ATTACH_JS = """window.__wlAttach = (w, source, stream) => {
  if (source === "camera") {
    const v = document.createElement("video");
    v.muted = true; v.autoplay = true; v.playsInline = true; v.srcObject = stream;
    document.body.appendChild(v);
    const onFrame = (now) => {
      const at = performance.timeOrigin + now;
      if (w.lastFrame !== null && at - w.lastFrame > 150) w.gaps.push([w.lastFrame, at]);
      w.lastFrame = at; w.frames++;
      v.requestVideoFrameCallback(onFrame);
    };
    v.requestVideoFrameCallback(onFrame);
    v.play().catch(() => {});
  } else {
    const a = document.createElement("audio");
    a.autoplay = true; a.srcObject = stream; document.body.appendChild(a);
    a.play().catch(() => {});
  }
}"""

def _shifted(sample: dict[str, Any], shift_s: float) -> dict[str, Any]:
    """A page sample with its times (``at`` in s, ``lastFrame`` and ``gaps`` in epoch ms) moved by ``shift_s``.

    The browser runs on the real clock; this process may not (the suite runs under libfaketime), and the
    windows are cut on this process's clock.
    """
    sample["at"] += shift_s
    if sample.get("lastFrame") is not None:
        sample["lastFrame"] += shift_s * 1000
    sample["gaps"] = [[a + shift_s * 1000, b + shift_s * 1000] for a, b in sample.get("gaps", [])]
    return sample


PAGE_SAMPLE = """async () => {
  const w = window.__wl;
  const out = { at: Date.now() / 1000, me: w.lc.participantId || null, state: w.state, frames: w.frames, lastFrame: w.lastFrame,
                gaps: w.gaps.splice(0), playoutMs: w.lc.playout ? w.lc.playout.targetMs : null };
  const pc = w.lc.subscriber;
  if (pc) {
    const stats = await pc.getStats();
    const codecs = {};
    stats.forEach((s) => { if (s.type === "codec") codecs[s.id] = s.payloadType; });
    stats.forEach((s) => {
      if (s.type !== "inbound-rtp") return;
      const common = { packetsLost: s.packetsLost, packetsReceived: s.packetsReceived,
                       jitterBufferDelay: s.jitterBufferDelay, jitterBufferEmittedCount: s.jitterBufferEmittedCount,
                       nackCount: s.nackCount, payloadType: codecs[s.codecId] };
      if (s.kind === "video") out.video = { ...common, framesDecoded: s.framesDecoded, freezeCount: s.freezeCount,
        totalFreezesDuration: s.totalFreezesDuration, frameHeight: s.frameHeight, pliCount: s.pliCount,
        keyFramesDecoded: s.keyFramesDecoded, retransmittedPacketsReceived: s.retransmittedPacketsReceived,
        framesReceived: s.framesReceived, framesDropped: s.framesDropped, bytesReceived: s.bytesReceived,
        retransmittedBytesReceived: s.retransmittedBytesReceived,
        jitterBufferTargetDelay: s.jitterBufferTargetDelay, jitterBufferMinimumDelay: s.jitterBufferMinimumDelay };
      if (s.kind === "audio") out.audio = { ...common, concealedSamples: s.concealedSamples,
        totalSamplesReceived: s.totalSamplesReceived };
    });
  }
  return out;
}"""


PUBLISHER_SAMPLE = """async (which) => {
  // what a page's own publisher connection sends: per video layer (rid) and the microphone
  const lc = which === "main" ? window.__pub : (window.__wl && window.__wl.lc);
  const pc = lc && lc.publisher;
  const out = { at: Date.now() / 1000, me: (lc && lc.participantId) || null, layers: {}, audio: null, available: null };
  if (!pc) return out;
  (await pc.getStats()).forEach((s) => {
    if (s.type === "outbound-rtp" && s.kind === "video")
      out.layers[s.rid || "-"] = { bytesSent: s.bytesSent || 0, targetBitrate: s.targetBitrate || 0,
        limit: s.qualityLimitationReason || "none", framesEncoded: s.framesEncoded || 0, height: s.frameHeight || 0,
        active: s.active !== false };
    if (s.type === "outbound-rtp" && s.kind === "audio") out.audio = { packetsSent: s.packetsSent, bytesSent: s.bytesSent };
    if (s.type === "candidate-pair" && s.nominated && s.availableOutgoingBitrate !== undefined)
      out.available = s.availableOutgoingBitrate;
  });
  return out;
}"""
"""A page's publisher side (``which``: ``"main"`` = the ``PAGE_PUBLISH`` page, else the receiving classroom's
page): per rid its bytes sent, target bitrate and quality limitation; the microphone's packets sent; the
send-side estimate (``availableOutgoingBitrate``)."""


def _launch(pw: Any, base: str, *, camera_fps: int = 0) -> Any:
    """Debian's Chromium with the browser tests' flags, resolving no name and taking ``base`` as secure;
    ``camera_fps``: the fake camera's rate (Chromium's default is 20 fps)."""
    host = base.split("//", 1)[1].split(":", 1)[0]
    # the page comes from a lab address, not a secure context: getUserMedia needs the flag
    flags = [f"--use-fake-device-for-media-stream=fps={camera_fps}" if camera_fps and a == "--use-fake-device-for-media-stream"
             else a for a in CHROMIUM_ARGS]
    args = [*flags, f"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE {host}",
            f"--unsafely-treat-insecure-origin-as-secure={base}"]
    return pw.chromium.launch(executable_path=CHROMIUM, args=args)


PAGE_PUBLISH = """async ({token, lesson, prefix}) => {
  const { LessonClient } = await import("/assets/lesson-client.js");
  const lc = new LessonClient(lesson, {
    getToken: async () => ({ token, room_open: true, lesson_role: "main" }),
    resume: false, candidateFilter: (line) => line.includes(" " + prefix),
  });
  window.__pub = lc;
  await lc.connect();
  await lc.publishUserMedia({ video: { width: 1280, height: 720, frameRate: 30 }, audio: true });
  return lc.participantId;
}"""


def run_chromium_publisher(base: str, lesson: int, token: str, prefix: str, out: Path, seconds: float,
                           sample: Callable[[Any], dict[str, Any] | None], every_s: float) -> None:
    """The main classroom as Chromium on the real lesson client (fake 720p camera, simulcast as the main
    page publishes it); every ``every_s`` one JSON line of ``sample(page)`` (None: nothing this time)
    into ``out``, until ``seconds`` have passed or SIGTERM."""
    from playwright.sync_api import sync_playwright

    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    with sync_playwright() as pw:
        browser = _launch(pw, base, camera_fps=30)  # the main classroom's camera: 30 fps, as the aiortc publisher
        try:
            page = browser.new_page()
            page.on("console", lambda m: m.type == "error" and print("page:", m.text, file=sys.stderr, flush=True))
            page.goto(f"{base}/healthz")
            me = page.evaluate(PAGE_PUBLISH, {"token": token, "lesson": lesson, "prefix": prefix})
            print(f"main classroom published as {me}", file=sys.stderr, flush=True)
            deadline = time.monotonic() + seconds
            with out.open("a") as f:
                while time.monotonic() < deadline and not stop["now"]:
                    line = sample(page)
                    if line is not None:
                        f.write(json.dumps(line) + "\n")
                        f.flush()
                    page.wait_for_timeout(every_s * 1000)
        finally:
            browser.close()


def publish_chromium(base: str, lesson: int, token: str, prefix: str, out: Path, seconds: float) -> None:
    """``run_chromium_publisher`` sampling the SFU's dump each second into ``out``, like ``publish``."""
    import urllib.request

    def dump(page: Any) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"{base}/bench/dump?router=lesson-{lesson}", timeout=5) as r:
                return {"at": time.time(), "dump": json.loads(r.read()), "pub": page.evaluate(PUBLISHER_SAMPLE, "main")}
        except (OSError, ValueError):
            return None

    run_chromium_publisher(base, lesson, token, prefix, out, seconds, dump, 1.0)


def receive(target: str, base: str, first: str, second: str, prefix: str, out: Path, seconds: float) -> None:
    """Chromium as the receiving classroom; one JSON line of page stats per second into ``out``.

    ``sanke``: ``first``/``second`` = lesson id / join token (the real lesson client); ``janus``: room /
    feed id (a VideoRoom subscriber over Janus's HTTP API, the page served by Janus itself)."""
    from playwright.sync_api import sync_playwright

    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    with sync_playwright() as pw:
        browser = _launch(pw, base)
        try:
            page = browser.new_page()
            page.on("console", lambda m: m.type == "error" and print("page:", m.text, file=sys.stderr, flush=True))
            if target == "sanke":
                page.goto(f"{base}/healthz")
                page.evaluate(ATTACH_JS)
                me = page.evaluate(PAGE_SETUP, {"token": second, "lesson": int(first), "prefix": prefix})
            else:
                page.goto(f"{base}/janus/info")
                page.evaluate(ATTACH_JS)
                me = page.evaluate(JANUS_PAGE_SETUP, {"room": int(first), "feed": int(second), "prefix": prefix})
            print(f"receiver joined {target} as {me}", file=sys.stderr, flush=True)
            deadline = time.monotonic() + seconds
            shift_s: float | None = None  # the page's clock onto this process's (they differ under a faked clock)
            with out.open("a") as f:
                while time.monotonic() < deadline and not stop["now"]:
                    sample = page.evaluate(PAGE_SAMPLE)
                    if target == "sanke":  # the receiving classroom's own camera and microphone going up
                        sample["pub"] = page.evaluate(PUBLISHER_SAMPLE, "recv")
                    if shift_s is None:
                        shift_s = time.time() - sample["at"]
                    f.write(json.dumps(_shifted(sample, shift_s)) + "\n")
                    f.flush()
                    page.wait_for_timeout(1000)
        finally:
            browser.close()


# ---------------------------------------------------------------------- measuring a window


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            pass
    return rows


def _delta(samples: list[dict], kind: str, key: str) -> float:
    vals = [s[kind][key] for s in samples if s.get(kind) and s[kind].get(key) is not None]
    return float(vals[-1] - vals[0]) if len(vals) >= 2 else 0.0


_RECEIVER: dict[str, str | None] = {"me": None}
"""The receiving classroom's participant id (from the page's samples), set by ``measure``."""


def _video_consumer(dump: dict) -> dict | None:
    """The receiving classroom's consumer of the main classroom's camera in a worker dump."""
    me = _RECEIVER["me"]
    for cid, c in (dump.get("consumers") or {}).items():
        if str(c.get("producer_id", "")).endswith(":camera") and (me is None or cid.startswith(f"{me}~")):
            return c
    return None


@dataclass
class Row:
    name: str
    seconds: float
    target: str = "sanke"
    sfu_counters: bool = True
    """False: the SFU exposes no counters here (Janus): paused seconds and RTX are not known."""
    fps: float = 0.0
    longest_freeze_s: float = 0.0
    freezes: int = 0
    freeze_s: float = 0.0
    paused_s: float = 0.0
    audio_concealed_pct: float = 0.0
    video_jb_ms: float = 0.0
    height: int = 0
    """The median decoded frame height in the window (which layer arrived)."""
    rtx_sent: int = 0
    video_lost: int = 0
    recoveries_s: list[float] = field(default_factory=list)
    playout_ms: int | None = None
    """The receiving page's playout target at the end of the window (``web/assets/playout.js``; None: the
    browser's own)."""
    notes: list[str] = field(default_factory=list)
    uplink: bool = False
    """The condition impairs the receiving classroom's uplink: ``up_*`` are printed under the table."""
    up_kbps: float | None = None
    """What the receiving classroom's Chromium sent (its camera layers and microphone, payload bytes)."""
    up_layers: str = ""
    """Its camera layers (rids) that sent more than 30 kbit/s in the window."""
    up_estimate_kbps: float | None = None
    """Its send-side estimate (``availableOutgoingBitrate``), median of the window."""
    up_mic_pps: float | None = None
    """Its microphone's packets per second arriving at the SFU (its producer's ``received``)."""

    @property
    def rtx_per_lost(self) -> float | None:
        return self.rtx_sent / self.video_lost if self.video_lost else None


def measure(name: str, t0: float, t1: float, page: list[dict], sfu: list[dict], bridge0: dict, bridge1: dict,
            marks: list[tuple[str, float]]) -> Row:
    """One condition's row from the samples taken between epoch times ``t0`` and ``t1``."""
    row = Row(name, t1 - t0)
    _RECEIVER["me"] = next((s["me"] for s in reversed(page) if s.get("me")), None)
    win = [s for s in page if t0 <= s["at"] <= t1 + 0.5]
    if len(win) >= 2:
        span = win[-1]["at"] - win[0]["at"]
        row.fps = _delta(win, "video", "framesDecoded") / span if span > 0 else 0.0
        row.freezes = int(_delta(win, "video", "freezeCount"))
        row.freeze_s = _delta(win, "video", "totalFreezesDuration")
        total = _delta(win, "audio", "totalSamplesReceived")
        row.audio_concealed_pct = 100 * _delta(win, "audio", "concealedSamples") / total if total else 100.0
        heights = sorted(s["video"].get("frameHeight") or 0 for s in win if s.get("video"))
        row.height = heights[len(heights) // 2] if heights else 0
        emitted = _delta(win, "video", "jitterBufferEmittedCount")
        row.video_jb_ms = 1000 * _delta(win, "video", "jitterBufferDelay") / emitted if emitted else 0.0
        row.playout_ms = win[-1].get("playoutMs")
    # freezes as rendered: gaps between frames (page clock, epoch ms), clipped to the window
    gaps = [(a / 1000, b / 1000) for s in page for a, b in s.get("gaps", [])]
    last = max((s.get("lastFrame") or 0) / 1000 for s in win) if win else 0.0
    frozen_since = last if last else t0
    if frozen_since < t1:  # still frozen at the end of the window (a frame due every 33 ms)
        gaps.append((frozen_since, t1))
    row.longest_freeze_s = max((min(b, t1) - max(a, t0) for a, b in gaps if b > t0 and a < t1), default=0.0)
    for mark, at in marks:
        if frozen_since <= at:
            row.recoveries_s.append(math.nan)  # no frame since the link came back
            continue
        covering = [b - at for a, b in gaps if a <= at <= b]
        row.recoveries_s.append(round(covering[0], 2) if covering else 0.0)
        if mark == "cap_lifted":
            row.recoveries_s[-1] = _time_to_full(page, sfu, at, t0, t1)
    # SFU: paused seconds and retransmissions of the video consumer
    swin = [s for s in sfu if t0 <= s["at"] <= t1 + 0.5]
    prev = None
    for s in swin:
        c = _video_consumer(s["dump"])
        if c is not None and prev is not None and c.get("paused"):
            row.paused_s += s["at"] - prev
        prev = s["at"]
    cons = [c for c in (_video_consumer(s["dump"]) for s in swin) if c is not None]
    if len(cons) >= 2:
        row.rtx_sent = int(cons[-1].get("retransmitted", 0) - cons[0].get("retransmitted", 0))
    _uplink(row, win, swin)
    pts = [s["video"]["payloadType"] for s in win if s.get("video") and s["video"].get("payloadType") is not None]
    if pts:
        key = str(pts[-1])
        lost1 = bridge1.get("down", {}).get("dropped_rtp_pt", {}).get(key, 0)
        lost0 = bridge0.get("down", {}).get("dropped_rtp_pt", {}).get(key, 0)
        row.video_lost = int(lost1 - lost0)
    return row


def _uplink(row: Row, win: list[dict], swin: list[dict]) -> None:
    """The receiving classroom's publisher side in the window: its send rate, layers and estimate (page),
    its microphone's arrival rate at the SFU (dump)."""
    pubs = [s for s in win if s.get("pub")]
    if len(pubs) >= 2 and pubs[-1]["at"] > pubs[0]["at"]:
        a, b = pubs[0]["pub"], pubs[-1]["pub"]
        span = pubs[-1]["at"] - pubs[0]["at"]

        def sent(p: dict) -> float:
            return sum(v["bytesSent"] for v in p["layers"].values()) + ((p.get("audio") or {}).get("bytesSent") or 0)

        row.up_kbps = 8 * (sent(b) - sent(a)) / span / 1000
        row.up_layers = "".join(rid for rid in sorted(b["layers"], key=lambda r: {"q": 0, "h": 1, "f": 2}.get(r, 3))
                                if 8 * (b["layers"][rid]["bytesSent"] - a["layers"].get(rid, {}).get("bytesSent", 0))
                                / span / 1000 > 30) or "-"
        est = sorted(s["pub"]["available"] for s in pubs if s["pub"].get("available") is not None)
        row.up_estimate_kbps = est[len(est) // 2] / 1000 if est else None
    me = _RECEIVER["me"]
    mics = [(s["at"], sum(s["dump"]["producers"][f"{me}:microphone"]["received"])) for s in swin
            if me and f"{me}:microphone" in (s["dump"].get("producers") or {})]
    if len(mics) >= 2 and mics[-1][0] > mics[0][0]:
        row.up_mic_pps = (mics[-1][1] - mics[0][1]) / (mics[-1][0] - mics[0][0])


def _time_to_full(page: list[dict], sfu: list[dict], at: float, t0: float, t1: float) -> float:
    """Seconds from ``at`` until a 1-s sample decodes at the full height (the largest seen before ``at``: the
    top layer) and frame rate (25 fps, or 0.8 × the rate of the clean seconds before ``t0`` when the
    publisher itself sends less) with the SFU not pausing; NaN if not within the window."""
    full = max((s["video"].get("frameHeight") or 0 for s in page if s["at"] < at and s.get("video")), default=0)
    before = [s for s in page if t0 - 5 <= s["at"] <= t0 and s.get("video")]
    clean_fps = (_delta(before, "video", "framesDecoded") / (before[-1]["at"] - before[0]["at"])
                 if len(before) >= 2 and before[-1]["at"] > before[0]["at"] else 30.0)
    min_fps = min(25.0, 0.8 * clean_fps)
    prev = None
    for s in page:
        if s["at"] < at:
            prev = s
            continue
        if s["at"] > t1 + 0.5:
            break
        if prev is None or not s.get("video") or not prev.get("video"):
            prev = s
            continue
        dt = s["at"] - prev["at"]
        fps = (s["video"]["framesDecoded"] - prev["video"]["framesDecoded"]) / dt if dt > 0 else 0
        paused = any(_video_consumer(d["dump"]) and _video_consumer(d["dump"]).get("paused")
                     for d in sfu if prev["at"] <= d["at"] <= s["at"])
        if fps >= min_fps and (s["video"].get("frameHeight") or 0) >= full and not paused:
            return round(s["at"] - at, 1)
        prev = s
    return float("nan")


def format_table(rows: list[Row]) -> str:
    head = (f"{'sfu':<6} {'condition':<15} {'fps':>5} {'px':>4} {'longest':>8} {'freezes':>8} {'paused':>7} {'audio':>7} "
            f"{'jb':>5} {'rtx/lost video':>15} {'recovery s':>14}")
    sub = (f"{'':<6} {'':<15} {'':>5} {'':>4} {'freeze s':>8} {'n / s':>8} {'s':>7} {'conc %':>7} "
           f"{'ms':>5} {'':>15} {'':>14}")
    lines = [head, sub, "-" * len(head)]
    for r in rows:
        if r.sfu_counters:
            ratio = f"{r.rtx_sent}/{r.video_lost}" + (f"={r.rtx_per_lost:.1f}" if r.rtx_per_lost is not None else "")
            paused = f"{r.paused_s:7.1f}"
        else:
            ratio, paused = f"n/a/{r.video_lost}", f"{'n/a':>7}"
        rec = ",".join("never" if math.isnan(x) else f"{x:.1f}" for x in r.recoveries_s) or "-"
        lines.append(f"{r.target:<6} {r.name:<15} {r.fps:5.1f} {r.height:4d} {r.longest_freeze_s:8.1f} "
                     f"{f'{r.freezes}/{r.freeze_s:.1f}':>8} {paused} {r.audio_concealed_pct:7.2f} {r.video_jb_ms:5.0f} "
                     f"{ratio:>15} {rec:>14}")
    for r in rows:
        if r.uplink:
            lines.append(uplink_line(r))
    return "\n".join(lines)


def uplink_line(r: Row) -> str:
    """What the receiving classroom's Chromium did on its own (impaired) uplink in condition ``r``."""
    def num(x: float | None, fmt: str) -> str:
        return "n/a" if x is None else format(x, fmt)

    return (f"{r.target:<6} {r.name:<15} uplink: the receiving classroom sent {num(r.up_kbps, '.0f')} kbit/s "
            f"(layers {r.up_layers or 'n/a'}; its estimate {num(r.up_estimate_kbps, '.0f')} kbit/s), "
            f"its microphone arrived at the SFU at {num(r.up_mic_pps, '.1f')} packets/s")


# ---------------------------------------------------------------------- the run


def _wait_for(what: str, check: Callable[[], bool], timeout: float, alive: Callable[[], bool] = lambda: True) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if not alive():
            raise RuntimeError(f"{what}: a process exited")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.2)


@dataclass
class Stack:
    """One SFU's processes in the lab and where their samples go."""

    target: str
    processes: list[Any]
    page_file: Path
    sfu_file: Path | None
    logs: list[Any]

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.processes)


def _spawn(lab: LinkLab, ns: str, argv: list[str], log: Path, logs: list[Any]) -> Any:
    out = log.open("w")
    logs.append(out)
    return lab.popen(ns, argv, stdout=out, stderr=subprocess_stdout())


def _receiver(lab: LinkLab, work: Path, target: str, base: str, first: str, second: str, total: float,
              logs: list[Any]) -> tuple[Any, Path]:
    page_file = work / "page.jsonl"
    prefix = lab.subnet.rsplit(".", 2)[0] + "."
    proc = _spawn(lab, lab.classroom_ns, [sys.executable, "-m", "bench.weaklink", "--receive", target, base, first,
                                          second, prefix, str(page_file), str(total)], work / "receiver.log", logs)
    return proc, page_file


def start_sanke(lab: LinkLab, work: Path, total: float, publisher: str = "aiortc") -> Stack:
    py, logs = sys.executable, []
    base = f"http://{lab.server_address}:{PORT}"
    data = work / "data"
    shutil.rmtree(data, ignore_errors=True)  # a kept --workdir of an earlier run: start from a new database
    info = prepare(data, lab.server_address, lab.subnet)
    server = _spawn(lab, lab.server_ns, [py, "-m", "bench.weaklink", "--serve", str(data), lab.server_address,
                                         lab.subnet, str(PORT)], work / "server.log", logs)
    health = [py, "-c", f"import urllib.request; urllib.request.urlopen('{base}/healthz', timeout=2)"]
    _wait_for("the SanKe server", lambda: lab.run(lab.server_ns, health, check=False).returncode == 0, 60,
              lambda: server.poll() is None)
    sfu_file = work / "sfu.jsonl"
    if publisher == "chromium":
        prefix = lab.subnet.rsplit(".", 2)[0] + "."
        argv = [py, "-m", "bench.weaklink", "--publish-chromium", base, str(info["lesson"]), info["main"], prefix,
                str(sfu_file), str(total)]
    else:
        argv = [py, "-m", "bench.weaklink", "--publish", base, str(info["lesson"]), info["main"],
                lab.server_address, str(sfu_file), str(total)]
    main = _spawn(lab, lab.server_ns, argv, work / "publisher.log", logs)
    receiver, page_file = _receiver(lab, work, "sanke", base, str(info["lesson"]), info["receiving"], total, logs)
    return Stack("sanke", [server, main, receiver], page_file, sfu_file, logs)


def start_janus(lab: LinkLab, work: Path, total: float, publisher: str = "aiortc") -> Stack:
    from bench import fanout_janus as fj

    if publisher != "aiortc":
        raise ValueError("Janus is driven with the aiortc publisher only")
    py, logs = sys.executable, []
    fj.ensure_janus_installed()
    folder = work / "janus-config"
    janus_config(folder, lab.server_address)
    base = f"http://{lab.server_address}:{fj.HTTP_PORT}"
    janus = _spawn(lab, lab.server_ns, [fj.JANUS_BIN, "-F", str(folder), "-N", "-L", str(work / "janus.log")],
                   work / "janus.out", logs)
    health = [py, "-c", f"import urllib.request; urllib.request.urlopen('{base}/janus/info', timeout=2)"]
    _wait_for("Janus", lambda: lab.run(lab.server_ns, health, check=False).returncode == 0, 30,
              lambda: janus.poll() is None)
    spec = work / "janus-feed.json"
    publisher = _spawn(lab, lab.server_ns, [py, "-m", "bench.weaklink", "--publish-janus", lab.server_address,
                                            str(spec), str(total)], work / "publisher.log", logs)
    _wait_for("the Janus publisher", spec.exists, 60, lambda: publisher.poll() is None)
    feed = json.loads(spec.read_text())
    receiver, page_file = _receiver(lab, work, "janus", base, str(feed["room"]), str(feed["feed"]), total, logs)
    return Stack("janus", [janus, publisher, receiver], page_file, None, logs)


def run_conditions(lab: LinkLab, stack: Stack, conditions: list[Condition], seconds: float, settle: float,
                   log: Callable[[str], None]) -> list[Row]:
    def frames() -> int:
        page = _read_jsonl(stack.page_file)
        return int(page[-1].get("frames", 0)) if page else 0

    _wait_for(f"{stack.target}: video at the receiving classroom", lambda: frames() > 30, 90, stack.alive)
    log(f"weaklink: {stack.target}: video flows; conditions of {seconds:.0f} s after {settle:.0f} s clean")
    rows = []
    for cond in conditions:
        seconds_here = cond.seconds or seconds
        lab.set_both(Impairment())
        lab.set_cap(None, None)
        time.sleep(settle)
        bridge0 = lab.bridge_stats()
        t0 = time.time()
        marks: list[tuple[str, float]] = []
        for phase in cond.phases(seconds_here):
            wait = t0 + phase.at - time.time()
            if wait > 0:
                time.sleep(wait)
            if not stack.alive():
                raise RuntimeError(f"{stack.target}: a process of the run exited")
            lab.set_condition(down=phase.down, up=phase.up)
            if phase.cap_down_kbit or phase.cap_up_kbit or phase.at > 0:
                lab.set_cap(phase.cap_down_kbit, phase.cap_up_kbit)
            if phase.mark:
                marks.append((phase.mark, time.time()))
                at = marks[-1][1]
                log(f"weaklink: {cond.name}: {phase.mark} at "
                    f"{time.strftime('%H:%M:%S', time.gmtime(at))}.{int(at % 1 * 1000):03d} UTC")
        wait = t0 + seconds_here - time.time()
        if wait > 0:
            time.sleep(wait)
        t1 = time.time()
        bridge1 = lab.bridge_stats()
        time.sleep(1.2)  # the last second's samples
        sfu = _read_jsonl(stack.sfu_file) if stack.sfu_file is not None else []
        row = measure(cond.name, t0, t1, _read_jsonl(stack.page_file), sfu, bridge0, bridge1, marks)
        row.target = stack.target
        row.sfu_counters = stack.sfu_file is not None
        row.uplink = stack.target == "sanke" and any(p.cap_up_kbit or p.up.loss or p.up.blackout
                                                     for p in cond.phases(seconds_here))
        rows.append(row)
        log(format_table([replace(row, uplink=False)]).splitlines()[-1])
        if row.uplink:
            log(uplink_line(row))
    lab.set_both(Impairment())
    lab.set_cap(None, None)
    return rows


STARTERS: dict[str, Callable[..., Stack]] = {"sanke": start_sanke, "janus": start_janus}


def run(conditions: list[Condition], seconds: float, settle: float = 5.0, *, targets: tuple[str, ...] = ("sanke",),
        workdir: Path | None = None, log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
        publisher: str = "aiortc") -> list[Row]:
    """Run ``conditions`` for each target SFU in turn, in one lab; the rows (see ``measure``)."""
    work = Path(tempfile.mkdtemp(prefix="weaklink-")) if workdir is None else workdir
    work.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    total = sum((c.seconds or seconds) + settle for c in conditions) + 150
    with LinkLab(workdir=work / "lab") as lab:
        for target in targets:
            (work / target).mkdir(exist_ok=True)
            stack = STARTERS[target](lab, work / target, total, publisher)
            try:
                rows += run_conditions(lab, stack, conditions, seconds, settle, log)
            finally:
                for proc in reversed(stack.processes):
                    lab.stop(proc)
                for f in stack.logs:
                    f.close()
    return rows


def subprocess_stdout() -> int:
    import subprocess

    return subprocess.STDOUT


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="SanKe through an emulated rural link (bench/README.md).")
    parser.add_argument("--seconds", type=float, default=60, help="each condition's window (default 60)")
    parser.add_argument("--settle", type=float, default=5, help="clean link before each condition (default 5)")
    parser.add_argument("--only", default="", help="comma-separated condition names")
    parser.add_argument("--workdir", type=Path, default=None, help="keep logs and samples here")
    parser.add_argument("--serve", nargs=4, metavar=("DIR", "ADDRESS", "SUBNET", "PORT"), help=argparse.SUPPRESS)
    parser.add_argument("--publish", nargs=6, metavar=("BASE", "LESSON", "TOKEN", "ADDRESS", "OUT", "SECONDS"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--targets", default="sanke,janus", help="SFUs to run, in turn (default sanke,janus)")
    parser.add_argument("--publisher", choices=["aiortc", "chromium"], default="aiortc",
                        help="the main classroom: aiortc, one 640x360 VP8 layer (default; also for Janus), or "
                             "Chromium on the real lesson client with simulcast (SanKe only)")
    parser.add_argument("--publish-chromium", nargs=6, metavar=("BASE", "LESSON", "TOKEN", "PREFIX", "OUT", "SECONDS"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--receive", nargs=7, metavar=("TARGET", "BASE", "A", "B", "PREFIX", "OUT", "SECONDS"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--publish-janus", nargs=3, metavar=("ADDRESS", "SPEC", "SECONDS"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.serve:
        d, address, subnet, port = args.serve
        serve(Path(d), address, subnet, int(port))
        return 0
    if args.publish:
        base, lesson, token, address, out, seconds = args.publish
        asyncio.run(publish(base, int(lesson), token, address, Path(out), float(seconds)))
        return 0
    if args.publish_chromium:
        base, lesson, token, prefix, out, seconds = args.publish_chromium
        publish_chromium(base, int(lesson), token, prefix, Path(out), float(seconds))
        return 0
    if args.publish_janus:
        address, spec, seconds = args.publish_janus
        asyncio.run(publish_janus(address, Path(spec), float(seconds)))
        return 0
    if args.receive:
        target, base, first, second, prefix, out, seconds = args.receive
        receive(target, base, first, second, prefix, Path(out), float(seconds))
        return 0
    names = [n for n in args.only.split(",") if n]
    unknown = set(names) - {c.name for c in CONDITIONS}
    if unknown:
        raise SystemExit(f"unknown conditions: {sorted(unknown)}")
    conditions = [c for c in CONDITIONS if not names or c.name in names]
    targets = tuple(t for t in args.targets.split(",") if t)
    if set(targets) - set(STARTERS):
        raise SystemExit(f"unknown targets: {sorted(set(targets) - set(STARTERS))}")
    if args.publisher == "chromium" and "janus" in targets:
        raise SystemExit("--publisher chromium drives SanKe only: add --targets sanke")
    rows = run(conditions, args.seconds, args.settle, targets=targets, workdir=args.workdir, publisher=args.publisher)
    print(f"bench.weaklink: {', '.join(targets)}; {args.publisher} publisher, Chromium receiver; "
          f"{args.seconds:.0f} s per condition after {args.settle:.0f} s clean")
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
