"""The replay page playing a famous-school recording from the stream it keeps, in Chromium.

The recording is made by the real recorder with its stream (``RoomRecorder(hls=True)``, the egress of
a 名校网络课堂) from RTP packets of aiortc's H.264 and Opus encoders: 8 s of a camera that is red, then
green from 4 s, a blue shared screen from 1 s, a 440 Hz tone. Each picture carries its own time: the
time code of ``tests/web/hls_stream.py`` (the frame's number since the lesson's start, 25 fps) across
its top rows, the camera's and the screen's of one instant the same number; so the page's pictures
say which instant each <video> shows.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import av

from media.recorder import RoomRecorder
from scheduler.recordings_models import Recording, RecordingStatus
from tests.media.sfu_helpers import BLUE, GREEN, RED
from tests.media.test_recorder import CODECS, FakeTransport, ToneSource, VideoSource, producer, rtp
from tests.web.conftest import NOW, Site
from tests.web.hls_stream import BITS, BLOCK, HEIGHT, WIDTH, frame_code
from tests.web.test_replay_page import PIXEL, near_js, pause
from tests.web.test_student_stream import skip_without_h264

SECONDS = 8.0
FPS = 25
GREEN_FROM = 4.0
SCREEN_FROM = 1.0
WALL = 1_804_500_000.0
"""The stream's clock (program date time) at arrival time 0."""

READ_CODES_JS = f"""() => {{
  const read = (v) => {{
    if (!v.videoWidth) return null;
    const c = document.createElement('canvas'); c.width = {WIDTH}; c.height = {HEIGHT};
    const g = c.getContext('2d', {{willReadFrequently: true}}); g.drawImage(v, 0, 0, {WIDTH}, {HEIGHT});
    const row = g.getImageData(0, {BLOCK // 2}, {WIDTH}, 1).data;
    const grey = row[{BLOCK // 2} * 4];
    if (grey < 15 || grey > 70) return null;  // not the time code's margin: no picture yet
    let n = 0;
    for (let b = 0; b < {BITS}; b++) n = n * 2 + (row[((2 + b) * {BLOCK} + {BLOCK // 2}) * 4] > 128 ? 1 : 0);
    return n;
  }};
  return [read(document.getElementById('v-camera')), read(document.getElementById('v-screen'))];
}}"""


def picture(n: int, tint: tuple[int, int, int]) -> av.VideoFrame:
    """Frame ``n``: its time code in the top rows, the rest ``tint``."""
    plain = bytes(tint) * WIDTH
    frame = av.VideoFrame(WIDTH, HEIGHT, "rgb24")
    plane = frame.planes[0]
    pad = b"\x00" * (plane.line_size - WIDTH * 3)
    plane.update(b"".join(r + pad for r in [frame_code(n)] * BLOCK + [plain] * (HEIGHT - BLOCK)))
    return frame.reformat(format="yuv420p")


def h264_packets(source: VideoSource, n: int, tint: tuple[int, int, int], key: bool) -> list[bytes]:
    frame = picture(n, tint)
    frame.pts = n * 3600  # the instant of frame n, 25 fps on the 90 kHz clock (time away is in the RTP time)
    frame.time_base = fractions.Fraction(1, 90000)
    ts = source.ts0 + frame.pts
    source.n += 1
    payloads, _ = source.encoder.encode(frame, force_keyframe=key)
    out = []
    for i, p in enumerate(payloads):
        out.append(rtp(source.seq, ts, p, i == len(payloads) - 1, CODECS["video/H264"].payloadType, source.ssrc))
        source.seq += 1
    return out


def record_streamed_lesson(directory: Path, camera_gap: tuple[float, float] | None = None) -> dict[str, Any]:
    """8 s recorded with its stream; ``camera_gap``: (from, to) s when the camera sends nothing (more than
    1.1 s: its stream has a discontinuity, the time away in the program date time and not in the media)."""
    async def main() -> dict[str, Any]:
        t = FakeTransport()
        cam, mic = producer("video/H264", "camera", t, 1111), producer("audio/opus", "microphone", t, 2222)
        screen = producer("video/H264", "screen", t, 3333)
        screen.producer_id = "p1:screen"
        recorder = RoomRecorder("lesson-web", directory, asyncio.get_running_loop(), hls=True)
        assert recorder.hls is not None
        recorder.hls.wall_offset = WALL
        recorder.want([cam, mic, screen])
        v_cam, v_screen, tone = VideoSource("video/H264", 1111), VideoSource("video/H264", 3333), ToneSource()
        now = 0.0
        for i in range(int(SECONDS * 50)):  # 20 ms steps: audio every step, video every other (25 fps)
            mic.streams[0].receive(tone.packet(), now)
            if i % 2 == 0:
                n = i // 2  # the frame's number since the start: the same instant on the camera and the screen
                away = camera_gap is not None and round(camera_gap[0] * FPS) <= n < round(camera_gap[1] * FPS)
                for pkt in [] if away else h264_packets(v_cam, n, RED if now < GREEN_FROM else GREEN, key=n % FPS == 0):
                    cam.streams[0].receive(pkt, now)
                if now >= SCREEN_FROM:
                    for pkt in h264_packets(v_screen, n, BLUE, key=(n - FPS) % FPS == 0):
                        screen.streams[0].receive(pkt, now)
            now += 0.02
            if i % 25 == 0:
                await asyncio.sleep(0)
        return await recorder.stop()

    with ThreadPoolExecutor(1) as pool:  # Playwright's loop runs in this thread
        return pool.submit(asyncio.run, main()).result()


def add_streamed_recording(site: Site, settings: Any, *, after_s: float = 0.0,
                           camera_gap: tuple[float, float] | None = None) -> int:
    with site.session_factory() as s:
        row = Recording(instance_id=site.lesson_id, status=RecordingStatus.recording, directory="",
                        started_at=NOW + timedelta(seconds=after_s), duration_s=0.0, size_bytes=0, codecs="")
        s.add(row)
        s.flush()
        row.directory = f"recordings/{site.lesson_id}/{row.id}"
        summary = record_streamed_lesson(settings.data_dir / row.directory, camera_gap)
        assert set(summary["hls"]["renditions"]) == {"camera", "screen", "audio"}, summary["hls"]
        row.files, row.duration_s = summary["files"], summary["duration_s"]
        row.size_bytes, row.codecs, row.status, row.ended_at = summary["size"], "h264,opus", RecordingStatus.ready, NOW
        s.commit()
        return row.id


def codes(page: Any) -> list[int | None]:
    return page.evaluate(READ_CODES_JS)  # type: ignore[no-any-return]


def seek_and_read(page: Any, js_poll: Any, t: float, *, screen: bool = True, since: float = 0.0) -> list[int]:
    """Move the slider to ``t`` s (paused) and wait until the camera's picture (and the screen's) is the one of
    ``t`` (±2 frames; ``since``: when the recording began on the lesson's axis, its time codes count from
    there)."""
    page.eval_on_selector("#seek", f"(s) => {{ s.value = '{t}'; s.dispatchEvent(new Event('change')); }}")
    want = round((t - since) * FPS)
    return js_poll(page, f"(() => {{ const c = ({READ_CODES_JS})();"
                         f" return c[0] !== null && Math.abs(c[0] - {want}) <= 2"
                         f" && {'c[1] !== null && Math.abs(c[1] - ' + str(want) + ') <= 2' if screen else 'true'}"
                         f" ? c : null; }})()", timeout=15)


def test_a_famous_school_recording_replays_from_its_stream_on_one_clock(
        web_server: Site, settings: Any, open_page: Any, js_poll: Any, screenshot: Any) -> None:
    w = web_server.world
    rid = add_streamed_recording(web_server, settings)
    requests: list[str] = []
    page = open_page(w.teacher, f"/replay/?id={rid}")
    skip_without_h264(page)
    page.on("request", lambda r: requests.append(r.url))
    page.reload()
    js_poll(page, "document.getElementById('total').textContent === '00:08'")
    # before play: the stream's first picture under the poster
    js_poll(page, f"(() => {{ const c = ({READ_CODES_JS})(); return c[0] !== null && c[0] <= 2; }})()", timeout=15)

    page.click("#play")  # the camera with the sound and the screen from the stream, on one clock
    js_poll(page, "['v-camera', 'v-screen'].every((id) => { const m = document.getElementById(id);"
                  " return m.currentTime > 0.5 && !m.paused; })", timeout=20)
    js_poll(page, "document.getElementById('v-camera').getVideoPlaybackQuality().totalVideoFrames > 10")
    # the screen catches up with the camera's instant (it may start a few frames late: it follows the camera)
    js_poll(page, f"(() => {{ const c = ({READ_CODES_JS})(); return c[0] !== null && c[1] !== null"
                  f" && Math.abs(c[0] - c[1]) <= 1; }})()", timeout=15)
    read: list[list[int | None]] = []
    for _ in range(10):  # and stays there (the same time code), within 100 ms
        read.append(codes(page))
        time.sleep(0.25)
    print(f"time codes (camera, screen) while playing: {read}")
    both = [(c, s) for c, s in read if c is not None and s is not None]
    assert len(both) >= 6, read
    assert max(abs(c - s) for c, s in both) * 1000 / FPS < 100, read
    cams = [c for c, _ in both]
    assert cams[-1] > cams[0], read  # frames advance
    screenshot(page, "playing-from-the-stream")

    pause(page, js_poll)  # seeking shows the frame of that time, in the published colours
    seek_and_read(page, js_poll, 2.0)
    js_poll(page, f"(() => {{ const c = ({PIXEL})('v-camera'), s = ({PIXEL})('v-screen');"
                  f" return {near_js(RED, 'c')} && {near_js(BLUE, 's')}; }})()")
    seek_and_read(page, js_poll, 6.0)
    js_poll(page, f"(() => {{ const c = ({PIXEL})('v-camera'); return {near_js(GREEN, 'c')}; }})()")
    assert page.inner_text("#now") == "00:06"
    page.click("#play")  # and plays on from there
    js_poll(page, f"(() => {{ const c = ({READ_CODES_JS})(); return c[0] !== null && c[0] > {6 * FPS + 10}; }})()",
            timeout=15)
    pause(page, js_poll)
    seek_and_read(page, js_poll, 0.5, screen=False)  # before 1 s nothing was shared
    js_poll(page, "!document.getElementById('off-screen').hidden")

    streamed = [u for u in requests if f"/r{rid}/" in u]
    assert any(u.split("?")[0].endswith("main.m3u8") for u in streamed), requests
    assert any(u.split("?")[0].endswith("screen.m3u8") for u in streamed), requests
    assert any("/vod.m3u8" in u for u in streamed) and any(u.endswith(".m4s") for u in streamed), streamed
    assert not [u for u in requests if "/files/" in u], requests  # not the recording's files


def test_a_discontinuity_and_a_lesson_recorded_twice_stay_on_the_lesson_clock(
        web_server: Site, settings: Any, open_page: Any, js_poll: Any, screenshot: Any) -> None:
    """The first recording's camera sent nothing from 4.5 s to 6 s (its stream: a discontinuity, 1.5 s that
    are not in its media); a second recording began 20 s after the first (a restart). Each picture is found
    through the program date times: the camera and the screen show one instant after the discontinuity, and
    the second recording plays from its own stream after the gap."""
    w = web_server.world
    first = add_streamed_recording(web_server, settings, camera_gap=(4.5, 6.0))
    second = add_streamed_recording(web_server, settings, after_s=20.0)
    requests: list[str] = []
    page = open_page(w.teacher, f"/replay/?id={second}")
    skip_without_h264(page)
    page.on("request", lambda r: requests.append(r.url))
    page.reload()
    js_poll(page, "document.getElementById('total').textContent === '00:28'")

    seek_and_read(page, js_poll, 7.0)  # after the discontinuity: both at 7 s (not 1.5 s on, as the media alone says)
    seek_and_read(page, js_poll, 3.0)
    # in the camera's hole: its next picture, held (it comes within 1.5 s); the screen goes on
    page.eval_on_selector("#seek", "(s) => { s.value = '5'; s.dispatchEvent(new Event('change')); }")
    js_poll(page, f"(() => {{ const c = ({READ_CODES_JS})(); return c[0] !== null && Math.abs(c[0] - {6 * FPS}) <= 2"
                  f" && c[1] !== null && Math.abs(c[1] - {5 * FPS}) <= 2; }})()", timeout=15)
    page.eval_on_selector("#seek", "(s) => { s.value = '5.9'; s.dispatchEvent(new Event('change')); }")
    page.click("#play")  # played across the discontinuity, the screen stays on the camera's instant
    js_poll(page, f"(() => {{ const c = ({READ_CODES_JS})(); return c[0] !== null && c[1] !== null"
                  f" && c[0] > {6 * FPS + 5} && Math.abs(c[0] - c[1]) <= 1; }})()", timeout=15)
    read = []
    for _ in range(6):
        read.append(codes(page))
        time.sleep(0.2)
    print(f"time codes (camera, screen) after the discontinuity: {read}")
    both = [(c, s) for c, s in read if c is not None and s is not None]
    assert len(both) >= 4 and max(abs(c - s) for c, s in both) * 1000 / FPS < 100, read
    pause(page, js_poll)

    page.eval_on_selector("#seek", "(s) => { s.value = '12'; s.dispatchEvent(new Event('change')); }")
    js_poll(page, "!document.getElementById('off-camera').hidden && document.getElementById('v-camera').paused")
    seek_and_read(page, js_poll, 22.0, since=20.0)  # 2 s into the second recording, from its own stream
    screenshot(page, "second-recording-from-its-stream")
    for rid in (first, second):
        assert any(f"/r{rid}/" in u and u.split("?")[0].endswith("main.m3u8") for u in requests), (rid, requests)
    assert not [u for u in requests if "/files/" in u], requests


def test_a_stream_that_cannot_be_played_gives_way_to_the_recordings_files(
        web_server: Site, settings: Any, open_page: Any, js_poll: Any) -> None:
    """The camera's playlist of the stream is gone (a damaged folder): the page plays the recording's files."""
    w = web_server.world
    rid = add_streamed_recording(web_server, settings)
    (settings.data_dir / f"recordings/{web_server.lesson_id}/{rid}/hls/camera/vod.m3u8").unlink()
    requests: list[str] = []
    page = open_page(w.teacher, f"/replay/?id={rid}", allow_console=("replay: the stream", "404", "Failed to load"))
    skip_without_h264(page)
    page.on("request", lambda r: requests.append(r.url))
    page.reload()
    js_poll(page, "document.getElementById('total').textContent === '00:08'")
    js_poll(page, "(() => { const s = document.getElementById('v-camera').currentSrc;"
                  " return s.includes('/files/camera-') && !s.startsWith('blob:'); })()", timeout=20)
    page.eval_on_selector("#seek", "(s) => { s.value = '2'; s.dispatchEvent(new Event('change')); }")
    js_poll(page, f"(() => {{ const c = ({PIXEL})('v-camera'), s = ({PIXEL})('v-screen');"
                  f" return {near_js(RED, 'c')} && {near_js(BLUE, 's')}; }})()", timeout=15)
    seek_and_read(page, js_poll, 2.0)  # the files' pictures: the same instants
    assert any("/files/microphone-" in u for u in requests), requests  # the sound from its own file
    assert any(f"/r{rid}/" in u and "camera/vod.m3u8" in u for u in requests), requests  # tried first
