"""The replay page in Chromium: the library lists a recorded lesson, the player plays it and seeks.

The recording is made by the real recorder from RTP packets of aiortc's encoders (6 s: a red
camera that turns green at 3 s, a blue shared screen from 1 s, a 440 Hz tone), so the files are
what a lesson leaves behind.  The browser fetches them through the signed URLs, with ranges.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

from media.recorder import RoomRecorder
from scheduler.recordings_models import Recording, RecordingStatus
from scheduler.records_models import SessionEvent
from tests.media.sfu_helpers import BLUE, GREEN, RED
from tests.media.test_recorder import FakeTransport, ToneSource, VideoSource, producer
from tests.web.conftest import NOW, Site

SECONDS = 6.0


def record_lesson(directory: Path) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        t = FakeTransport()
        cam, mic = producer("video/VP8", "camera", t, 1111), producer("audio/opus", "microphone", t, 2222)
        screen = producer("video/VP8", "screen", t, 3333)
        screen.producer_id = "p1:screen"
        recorder = RoomRecorder("lesson-web", directory, asyncio.get_running_loop())
        recorder.want([cam, mic, screen])
        v_cam, v_screen, tone = VideoSource("video/VP8", 1111), VideoSource("video/VP8", 3333), ToneSource()
        now = 0.0
        for i in range(int(SECONDS * 50)):  # 20 ms steps: audio every step, video every other (25 fps)
            mic.streams[0].receive(tone.packet(), now)
            if i % 2 == 0:
                for pkt in v_cam.frame(RED if now < 3 else GREEN, key=i % 50 == 0):
                    cam.streams[0].receive(pkt, now)
                if now >= 1.0:
                    for pkt in v_screen.frame(BLUE, key=(i - 50) % 50 == 0):
                        screen.streams[0].receive(pkt, now)
            now += 0.02
            if i % 25 == 0:
                await asyncio.sleep(0)
        return await recorder.stop()

    with ThreadPoolExecutor(1) as pool:  # Playwright's loop runs in this thread
        return pool.submit(asyncio.run, main()).result()


def add_recording(site: Site, settings: Any) -> int:
    with site.session_factory() as s:
        row = Recording(instance_id=site.lesson_id, status=RecordingStatus.recording, directory="", started_at=NOW,
                        duration_s=0.0, size_bytes=0, codecs="")
        s.add(row)
        s.flush()
        row.directory = f"recordings/{site.lesson_id}/{row.id}"
        summary = record_lesson(settings.data_dir / row.directory)
        row.files, row.duration_s = summary["files"], summary["duration_s"]
        row.size_bytes, row.codecs, row.status, row.ended_at = summary["size"], "opus,vp8", RecordingStatus.ready, NOW
        s.commit()
        return row.id


PIXEL = """(id) => { const v = document.getElementById(id); const c = document.createElement('canvas');
  c.width = 16; c.height = 12; const g = c.getContext('2d'); g.drawImage(v, 0, 0, 16, 12);
  const d = g.getImageData(8, 6, 1, 1).data; return [d[0], d[1], d[2]]; }"""


def near(rgb: list[int], want: tuple[int, int, int], tolerance: int = 60) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(rgb, want, strict=True))


def test_the_replay_page_plays_a_recorded_lesson_and_seeks(web_server: Site, settings: Any, open_page: Any,
                                                          js_poll: Any, screenshot: Any) -> None:
    w = web_server.world
    rid = add_recording(web_server, settings)

    page = open_page(w.teacher, "/replay/")
    js_poll(page, "document.querySelectorAll('#library tbody tr[data-id]').length === 1")
    assert "三年级数学" in page.inner_text("#library tbody") and "共 1 节" in page.inner_text("#count")
    page.select_option("#f-subject", "数学")
    page.click("#filters button[type=submit]")
    js_poll(page, "document.querySelectorAll('#library tbody tr[data-id]').length === 1")
    page.click(f"#library tr[data-id='{rid}'] a")
    page.wait_for_url(f"**/replay/?id={rid}")
    js_poll(page, "document.getElementById('total').textContent === '00:06'")

    page.click("#play")  # a person presses play: the camera, the screen and the sound run on one clock
    # Every check waits (with a deadline) for a state that lasts, never for a count reached in a fixed
    # time: on a busy machine playback may be anywhere in its 6 s by the time a check runs. All three
    # playing at once holds from 1.2 s to the end; the colours are checked paused, at a chosen time.
    js_poll(page, "[['v-camera', 1.2], ['v-screen', 0.2], ['a-microphone', 1]].every(([id, t]) => {"
                  " const m = document.getElementById(id); return m.currentTime > t && !m.paused; })", timeout=20)
    js_poll(page, "document.getElementById('v-camera').getVideoPlaybackQuality().totalVideoFrames > 10")
    screenshot(page, "playing")

    pause(page, js_poll)  # then the slider to 2 s: the camera was red, the screen blue
    seek(page, js_poll, 2.0)
    js_poll(page, f"(() => {{ const c = ({PIXEL})('v-camera'), s = ({PIXEL})('v-screen');"
                  f" return {near_js(RED, 'c')} && {near_js(BLUE, 's')}; }})()")
    seek(page, js_poll, 4.5)  # and to 4.5 s: green
    js_poll(page, f"({PIXEL})('v-camera')[1] > 150 && ({PIXEL})('v-camera')[0] < 100", timeout=10)
    assert page.inner_text("#now") == "00:04"
    before = page.evaluate("document.getElementById('v-camera').getVideoPlaybackQuality().totalVideoFrames")
    page.click("#play")
    js_poll(page, f"document.getElementById('v-camera').getVideoPlaybackQuality().totalVideoFrames > {before + 5}")
    js_poll(page, "document.getElementById('v-camera').currentTime > 4.9")
    page.eval_on_selector("#seek", "(s) => { s.value = '0.5'; s.dispatchEvent(new Event('change')); }")
    js_poll(page, "document.getElementById('v-camera').currentTime < 2")  # back, while playing (or ended)
    pause(page, js_poll)
    seek(page, js_poll, 0.5)
    js_poll(page, "!document.getElementById('off-screen').hidden")  # before 1 s nothing was shared
    screenshot(page, "seeked")


def test_the_replay_draws_the_teachers_annotation_over_the_screen_at_its_times(
        web_server: Site, settings: Any, open_page: Any, js_poll: Any) -> None:
    """A stroke drawn 2 s into the lesson and an arrow at 3 s, the arrow undone at 4 s and the screen cleared
    at 5 s (the lesson's log, as signaling.annotation writes it): seeking shows what was on the screen then."""
    w = web_server.world
    rid = add_recording(web_server, settings)
    pen = {"id": "k1", "tool": "pen", "color": "#dc2626", "width": 0.01, "points": [[0.3, 0.5], [0.7, 0.5]], "text": None}
    arrow = {"id": "k2", "tool": "arrow", "color": "#dc2626", "width": 0.01, "points": [[0.2, 0.2], [0.4, 0.3]],
             "text": None}
    with web_server.session_factory() as s:
        for at, data in ((2.0, {"action": "stroke", "stroke": pen}), (3.0, {"action": "stroke", "stroke": arrow}),
                         (4.0, {"action": "undo", "stroke": arrow}), (5.0, {"action": "clear"})):
            s.add(SessionEvent(instance_id=web_server.lesson_id, at=NOW + timedelta(seconds=at), kind="annotation",
                               participant_id="m1", user_id=w.teacher.id, classroom_id=w.main_room.id, role="main",
                               data=data))
        s.commit()
    r = web_server.http.get(f"/api/v1/recordings/{rid}", headers=web_server.headers(w.teacher))
    assert [(a["t"], a["action"]) for a in r.json()["annotations"]] == [
        (2.0, "stroke"), (3.0, "stroke"), (4.0, "undo"), (5.0, "clear")]
    page = open_page(w.teacher, f"/replay/?id={rid}")
    js_poll(page, "document.getElementById('total').textContent === '00:06'")
    for t, tools in ((1.5, ""), (2.5, "pen"), (3.5, "pen,arrow"), (4.5, "pen"), (5.5, "")):
        page.eval_on_selector("#seek", f"(s) => {{ s.value = '{t}'; s.dispatchEvent(new Event('change')); }}")
        js_poll(page, f"window.sankeBoard.strokes.map((s) => s.tool).join() === '{tools}'", timeout=10)
    page.eval_on_selector("#seek", "(s) => { s.value = '2.5'; s.dispatchEvent(new Event('change')); }")
    js_poll(page, "window.sankeBoard.strokes.length === 1 && window.sankeBoard.canvas.dataset.strokes === '1'")


def near_js(want: tuple[int, int, int], var: str, tolerance: int = 60) -> str:
    """JS: the pixel ``var`` is within ``tolerance`` of ``want`` (as :func:`near`)."""
    return " && ".join(f"Math.abs({var}[{i}] - {v}) <= {tolerance}" for i, v in enumerate(want))


def pause(page: Any, js_poll: Any) -> None:
    """Pause the player unless it is paused already (it pauses itself at the end)."""
    if page.get_attribute("#play", "aria-label") == "暂停":
        page.click("#play")
    js_poll(page, "document.getElementById('play').getAttribute('aria-label') === '播放'")


def seek(page: Any, js_poll: Any, t: float) -> None:
    """Move the slider to ``t`` s (paused) and wait until the camera is there."""
    page.eval_on_selector("#seek", f"(s) => {{ s.value = '{t}'; s.dispatchEvent(new Event('change')); }}")
    js_poll(page, f"Math.abs(document.getElementById('v-camera').currentTime - {t}) < 0.4")


def test_a_lesson_recorded_across_a_server_restart_replays_as_one_with_the_gap_shown(
        web_server: Site, settings: Any, open_page: Any, js_poll: Any, screenshot: Any) -> None:
    """Two recordings of one lesson, the first recovered after a kill (partial), the second started 20 s
    after the first: one row in the library, one 26 s timeline, 6 s – 20 s shown as a gap."""
    from datetime import timedelta

    w = web_server.world
    first = add_recording(web_server, settings)
    second = add_recording(web_server, settings)
    with web_server.session_factory() as s:
        s.get(Recording, first).status = RecordingStatus.partial
        s.get(Recording, first).error = "服务器意外中断，录像已恢复到中断前（最后约 1 秒可能缺失）"
        s.get(Recording, second).started_at = NOW + timedelta(seconds=20)
        s.commit()

    page = open_page(w.teacher, "/replay/")
    js_poll(page, "document.querySelectorAll('#library tbody tr[data-id]').length === 1")
    assert "共 1 节" in page.inner_text("#count")
    page.click(f"#library tr[data-id='{second}'] a")
    page.wait_for_url(f"**/replay/?id={second}")
    js_poll(page, "document.getElementById('total').textContent === '00:26'")
    js_poll(page, "!document.getElementById('gaps').hidden")
    assert "00:06–00:20" in page.inner_text("#gaps")
    seek_to(page, 10.0)  # the server was down: no picture, said so
    js_poll(page, "!document.getElementById('off-camera').hidden && document.getElementById('v-camera').paused")
    seek(page, js_poll, 2.0)  # the part before the restart (recovered) plays...
    js_poll(page, f"(() => {{ const c = ({PIXEL})('v-camera'); return {near_js(RED, 'c')}; }})()")
    seek_to(page, 22.0)  # ...and the part after it, 2 s into the second recording
    js_poll(page, "document.getElementById('off-camera').hidden"
                  " && Math.abs(document.getElementById('v-camera').currentTime - 2) < 0.4")
    js_poll(page, f"(() => {{ const c = ({PIXEL})('v-camera'); return {near_js(RED, 'c')}; }})()")
    screenshot(page, "across-restart")


def seek_to(page: Any, t: float) -> None:
    page.eval_on_selector("#seek", f"(s) => {{ s.value = '{t}'; s.dispatchEvent(new Event('change')); }}")
