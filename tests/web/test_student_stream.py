"""The home student's page watching a famous-school lesson's live stream (LL-HLS), in real Chromium.

The lesson's stream folder holds a real H.264 + AAC LL-HLS stream that grows while the test runs
(``tests/web/hls_stream.py``: camera with audio from the start, the shared screen from 3 s later,
each picture with its frame number drawn in its top rows); the server serves it behind the signed
prefix of ``POST /lessons/{id}/hls-link``. The teacher's page (``main.html``) runs the lesson as
usual and publishes by WebRTC. Checked on what the student's <video>s decode and show.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from server.core import hls_files
from tests.web.conftest import NOW
from tests.web.hls_stream import BITS, BLOCK, FPS, HEIGHT, WIDTH, LiveStream
from tests.web.test_lesson_pages import STATS_JS, pid, start_famous_school_lesson, wait_joined

H264 = 'MediaSource.isTypeSupported(\'video/mp4; codecs="avc1.42c00c"\')'

FRAMES_JS = """(id) => { const v = document.getElementById(id);
  return {t: v.currentTime, frames: v.getVideoPlaybackQuality().totalVideoFrames, paused: v.paused}; }"""

READ_CODES_JS = f"""() => {{
  const read = (v) => {{
    const c = document.createElement('canvas'); c.width = {WIDTH}; c.height = {HEIGHT};
    const g = c.getContext('2d', {{willReadFrequently: true}}); g.drawImage(v, 0, 0, {WIDTH}, {HEIGHT});
    const row = g.getImageData(0, {BLOCK // 2}, {WIDTH}, 1).data;
    const grey = row[{BLOCK // 2} * 4];
    if (grey < 15 || grey > 70) return null;  // not the time code's margin: no picture yet
    let n = 0;
    for (let b = 0; b < {BITS}; b++) n = n * 2 + (row[((2 + b) * {BLOCK} + {BLOCK // 2}) * 4] > 128 ? 1 : 0);
    return n;
  }};
  return [read(document.getElementById('teacher-video')), read(document.getElementById('screen-video'))];
}}"""


@pytest.fixture
def famous(web_server: Any, settings: Any, open_page: Any, js_poll: Any) -> Any:
    """A famous-school lesson (home student ``world.student``; the series' stream_from 0: not on stage, the
    stream), its teacher's page started, and its stream growing; the stream is stopped at the end."""
    lesson, teacher = start_famous_school_lesson(web_server, open_page, js_poll, stream_from=0)
    js_poll(teacher, "window.sankeLesson.local.has('camera')", timeout=15)
    folder = own_stream_folder(settings, lesson["id"])
    # the stream's clock: the server's (pinned) now, as the egress would stamp it
    stream = LiveStream(folder, NOW.replace(tzinfo=ZoneInfo("Asia/Shanghai")), seconds=90)
    stream.start()
    yield {"lesson": lesson, "teacher": teacher, "stream": stream, "folder": folder}
    stream.stop()


def own_stream_folder(settings: Any, lesson_id: int) -> Path:
    """An empty stream folder of the test's own, where the lesson's link leads from now on. The lesson's
    recording writes its own stream (the teacher's page: H.264 camera, Opus audio) once it begins, and
    points the link there (``hls_files.point_lesson``); the link is pointed here after that, in a folder
    beside the recording's."""
    link = hls_files.lesson_link(settings.data_dir, lesson_id)
    deadline = time.monotonic() + 10
    while not link.is_symlink() and time.monotonic() < deadline:
        time.sleep(0.1)
    own = settings.data_dir / "recordings" / str(lesson_id) / "test-stream"
    hls_files.point_lesson(settings.data_dir, lesson_id, own)
    folder = own / hls_files.HLS_DIR
    folder.mkdir(parents=True)
    return folder


def student_page(web_server: Any, open_page: Any, lesson_id: int, **kw: Any) -> Any:
    return open_page(web_server.world.student, f"/lesson/student.html?lesson={lesson_id}", **kw)


def assert_frames_advance(page: Any, video_id: str, timeout: float = 15) -> None:
    """The <video> shows new frames: currentTime and totalVideoFrames rising (10 more frames)."""
    deadline = time.monotonic() + timeout
    first = page.evaluate(FRAMES_JS, video_id)
    while True:
        now = page.evaluate(FRAMES_JS, video_id)
        if now["frames"] - first["frames"] >= 10 and now["t"] > first["t"]:
            return
        assert time.monotonic() < deadline, f"{video_id}: frames not advancing: {first} -> {now}"
        time.sleep(0.2)


def webrtc_frames(page: Any, key: str) -> int:
    return int(page.evaluate(STATS_JS).get(key, {}).get("frames", 0))


def skip_without_h264(page: Any) -> None:
    if not page.evaluate(H264):
        pytest.skip("this Chromium cannot play H.264 through Media Source Extensions")


def test_the_student_watches_the_stream_on_one_clock_goes_on_stage_and_back(
        famous: Any, web_server: Any, open_page: Any, js_poll: Any, screenshot: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    teacher, stream, lesson = famous["teacher"], famous["stream"], famous["lesson"]
    requests: list[str] = []  # the stream's requests
    student = student_page(web_server, open_page, lesson["id"])
    skip_without_h264(student)
    student.on("request", lambda r: requests.append(r.url) if "/hls/" in r.url else None)
    ps = wait_joined(student, js_poll)
    main = pid(teacher)

    # the stream plays: camera frames advance, the label says 直播流, no WebRTC media at all
    js_poll(student, "window.sankeStream && window.sankeStream.mode === 'stream'", timeout=15)
    assert_frames_advance(student, "teacher-video")
    assert student.inner_text("#watch-mode") == "直播流"
    assert not student.is_visible("#my-quality")  # the WebRTC link's quality: there is none
    assert student.evaluate("window.sankeLesson.remote.size") == 0
    assert student.evaluate("document.getElementById('teacher-video').muted") is False  # the classroom's sound

    # the screen, shared after the camera (its own clock starts 3 s later): shown on the camera's clock
    teacher.click("#btn-screen")
    js_poll(student, "!document.getElementById('screen-view').hidden", timeout=15)
    assert_frames_advance(student, "screen-video")
    gap = "Math.abs(window.sankeStream.cameraDate() - window.sankeStream.screenDate())"
    js_poll(student, f"window.sankeStream.screenDate() !== null && {gap} < 50", timeout=15)  # caught up
    gaps, codes = [], []
    for _ in range(10):  # and stays within 100 ms (program date times, and the pictures themselves)
        gaps.append(student.evaluate(gap))
        codes.append(student.evaluate(READ_CODES_JS))
        time.sleep(0.3)
    print(f"camera - screen program date time gaps (ms): {gaps}; time codes (camera, screen): {codes}")
    assert max(gaps) < 100, gaps
    read = [(c, s) for c, s in codes if c is not None and s is not None]
    assert len(read) >= 8, codes
    assert max(abs(c - s) for c, s in read) * 1000 / FPS < 100, codes
    screenshot(student, "student-stream-with-screen")

    # the link renewed (the server's clock moved on, so the new prefix differs): the players go on with it
    later = NOW + timedelta(minutes=5)
    monkeypatch.setattr("scheduler.clock.now", lambda: later)
    old = student.evaluate("window.sankeStream.stream.link.prefix")
    before = student.evaluate(FRAMES_JS, "teacher-video")
    student.evaluate("window.sankeStream.renew()")
    new = student.evaluate("window.sankeStream.stream.link.prefix")
    assert new != old
    deadline = time.monotonic() + 10
    while not any(new in u for u in requests):
        assert time.monotonic() < deadline, requests[-5:]
        student.wait_for_timeout(100)  # (Playwright delivers the request events while it is called)
    assert_frames_advance(student, "teacher-video")
    after = student.evaluate(FRAMES_JS, "teacher-video")
    assert after["t"] > before["t"] and not after["paused"], (before, after)
    cut = len(requests)
    student.wait_for_timeout(1500)
    assert not any(old in u for u in requests[cut:]), requests[cut:]
    monkeypatch.setattr("scheduler.clock.now", lambda: NOW)

    # brought on stage: WebRTC (the teacher's camera decoding from the peer connection) within seconds
    # (about 1 s on an idle machine; the figure is printed, the deadline is what a student would notice)
    started = time.monotonic()
    teacher.click(f"#student-list [data-participant='{ps}'] [data-action=stage]")
    deadline = started + 5
    while webrtc_frames(student, f"{main}/camera") == 0:
        assert time.monotonic() < deadline, student.evaluate(STATS_JS)
        time.sleep(0.05)
    switch = time.monotonic() - started
    load = os.getloadavg()[0]
    print(f"on stage -> first WebRTC frame of the teacher's camera: {switch:.2f} s (load {load:.2f})")
    assert student.evaluate("window.sankeStream.mode") == "webrtc"
    assert student.inner_text("#watch-mode") == "实时互动"
    assert student.is_visible("#my-quality")
    assert student.evaluate("window.sankeStream.stream") is None
    js_poll(student, "!document.getElementById('local-view').hidden", timeout=15)
    screenshot(student, "student-on-stage")

    # off stage: the stream again, and the WebRTC media goes
    teacher.click(f"#student-list [data-participant='{ps}'] [data-action=stage]")
    js_poll(student, "window.sankeStream.mode === 'stream'", timeout=10)
    assert_frames_advance(student, "teacher-video")
    js_poll(student, "window.sankeLesson.remote.size === 0 && window.sankeLesson.local.size === 0", timeout=10)

    # the stream ends (#EXT-X-ENDLIST): back to WebRTC
    stream.end()
    js_poll(student, "window.sankeStream.mode === 'webrtc'", timeout=20)
    js_poll(student, f"({STATS_JS})().then((s) => (s['{main}/camera'] || {{}}).frames > 0)", timeout=15)


def test_without_a_stream_or_a_policy_the_student_watches_by_webrtc(
        web_server: Any, settings: Any, open_page: Any, js_poll: Any) -> None:
    lesson, teacher = start_famous_school_lesson(web_server, open_page, js_poll)
    main = pid(teacher)
    own_stream_folder(settings, lesson["id"])  # empty: the stream has not begun
    for stream_from in (None, 0):  # the series does not use the stream; it does, but there is none
        r = web_server.http.put(f"/api/v1/series/{lesson['series_id']}/stream-from", json={"stream_from": stream_from},
                                headers=web_server.headers(web_server.world.teacher2))
        assert r.status_code == 200, r.text
        student = student_page(web_server, open_page, lesson["id"])
        wait_joined(student, js_poll)
        js_poll(student, f"({STATS_JS})().then((s) => (s['{main}/camera'] || {{}}).frames > 0)", timeout=15)
        js_poll(student, "window.sankeStream && window.sankeStream.mode === 'webrtc'")
        assert student.inner_text("#watch-mode") == "实时互动"
        student.close()
    # no WebRTC seat left (the server's error as tests/media/test_seats.py gets it): the page says so until
    # a track arrives
    student = student_page(web_server, open_page, lesson["id"])
    wait_joined(student, js_poll)
    js_poll(student, f"({STATS_JS})().then((s) => (s['{main}/camera'] || {{}}).frames > 0)", timeout=15)
    student.evaluate("""() => window.sankeLesson._onMessage({type: "error", seq: 0, code: "seats_full",
        message: "本节课的实时观看席位已满：有人离开后自动为你接通画面和声音，举手和聊天照常可用"})""")
    assert student.inner_text("#watch-mode") == "实时观看席位已满，有空位后自动接通"
    assert "席位已满" in student.inner_text("body")  # the toast too
    student.evaluate("() => window.sankeLesson._emit('track', {source: 'camera', participantId: 'x', stream: null})")
    js_poll(student, "document.getElementById('watch-mode').textContent === '实时互动'")
    student.close()


@pytest.mark.parametrize("viewport", [(390, 844), (844, 390)], ids=["portrait", "landscape"])
def test_a_phone_watches_raises_a_hand_and_chats(famous: Any, web_server: Any, open_page: Any, js_poll: Any,
                                                 screenshot: Any, viewport: tuple[int, int]) -> None:
    teacher, lesson = famous["teacher"], famous["lesson"]
    student = student_page(web_server, open_page, lesson["id"], viewport=viewport, phone=True)
    skip_without_h264(student)
    ps = wait_joined(student, js_poll)
    js_poll(student, "window.sankeStream && window.sankeStream.mode === 'stream'", timeout=15)
    assert_frames_advance(student, "teacher-video")
    box = {sel: student.eval_on_selector(sel, "e => { const r = e.getBoundingClientRect(); "
                                              "return {x: r.x, y: r.y, w: r.width, h: r.height}; }")
           for sel in ("#teacher-video", "#btn-hand", ".chat-input")}
    width, height = viewport
    assert student.evaluate("document.documentElement.scrollWidth") <= width  # nothing wider than the phone
    v = box["#teacher-video"]
    assert v["w"] >= 0.55 * width and v["y"] < height / 2, box  # the video first, large
    for sel in ("#btn-hand", ".chat-input"):
        assert box[sel]["h"] >= 44 and box[sel]["x"] >= 0 and box[sel]["x"] + box[sel]["w"] <= width, box
    if width > height:  # landscape: the controls beside the video, not under it
        assert box["#btn-hand"]["x"] >= v["x"] + v["w"] - 1, box
    else:  # portrait: under it, as wide as the page
        assert box["#btn-hand"]["y"] >= v["y"] + v["h"] and box["#btn-hand"]["w"] >= 0.8 * width, box
    screenshot(student, f"phone-{width}x{height}")

    # a tap raises the hand: the teacher's page (the server's roster) shows it
    student.tap("#btn-hand")
    js_poll(teacher, f"document.querySelector(\"#hand-list [data-participant='{ps}']\") !== null", timeout=10)
    # the chat: tap the box, type, send
    student.tap(".chat-input")
    student.keyboard.type("老师，这一段能再讲一遍吗？")
    student.tap(".chat-send .btn")
    js_poll(teacher, "document.querySelector('.chat-list').textContent.includes('这一段能再讲一遍吗')", timeout=10)
    js_poll(student, "document.querySelector('.chat-list').textContent.includes('这一段能再讲一遍吗')", timeout=10)
    assert student.evaluate("window.sankeStream.mode") == "stream"



def test_end_to_end_the_teachers_camera_reaches_the_student_by_the_lessons_own_stream(
        web_server: Any, settings: Any, open_page: Any, js_poll: Any, screenshot: Any) -> None:
    """No stand-in: the teacher's page publishes H.264 (Chromium's fake camera), the lesson's recording
    writes the stream, the server serves it, the student's page plays it."""
    lesson, teacher = start_famous_school_lesson(web_server, open_page, js_poll, stream_from=0)
    codec = ("(window.sankeLesson.publisher && window.sankeLesson.publisher.getSenders()"
             ".find((s) => s.track && s.track.kind === 'video'))")
    js_poll(teacher, f"{codec} && {codec}.getParameters().codecs.length > 0", timeout=15)
    mime = teacher.evaluate(f"{codec}.getParameters().codecs[0].mimeType")
    if mime.lower() != "video/h264":
        pytest.skip(f"the teacher's page sends {mime}, not H.264: the lesson's stream has no picture")
    main_m3u8 = hls_files.lesson_link(settings.data_dir, lesson["id"]) / "main.m3u8"
    deadline = time.monotonic() + 20
    while not main_m3u8.is_file():
        assert time.monotonic() < deadline, "the lesson's recording wrote no main.m3u8"
        time.sleep(0.2)
    student = student_page(web_server, open_page, lesson["id"])
    skip_without_h264(student)
    wait_joined(student, js_poll)
    js_poll(student, "window.sankeStream && window.sankeStream.mode === 'stream'", timeout=20)
    assert_frames_advance(student, "teacher-video")
    assert student.evaluate("window.sankeLesson.remote.size") == 0
    js_poll(student, "document.getElementById('teacher-video').videoWidth > 0")
    screenshot(student, "student-stream-of-the-teacher")
    # how far behind the camera the student watches: the shown picture's program date time (the teacher's
    # capture clock, from its sender reports) against the real clock (the page's own clock is pinned)
    behind = []
    for _ in range(10):
        shown = student.evaluate("window.sankeStream.cameraDate()")
        behind.append(time.time() - shown / 1000)
        time.sleep(0.3)
    behind.sort()
    print(f"stream latency, capture to the student's <video>: median {behind[5]:.2f} s, max {behind[-1]:.2f} s "
          f"(load {os.getloadavg()[0]:.2f})")

    # 下课: the page says so, and the stream (with its sound) stops there
    teacher.click("#btn-end")
    teacher.click("dialog .btn-danger")
    js_poll(student, "document.getElementById('next-title').textContent === '本节课已结束'", timeout=10)
    assert student.evaluate("window.sankeStream.stream === null && !document.getElementById('teacher-video').src")


def test_the_policy_counts_home_students_with_hysteresis(web_server: Any, open_page: Any) -> None:
    """stream_from N: the stream above N home students; back to WebRTC only at N - max(1, N/10) or fewer,
    and not within 20 s of the last change."""
    page = open_page(web_server.world.student, "/assets/app.css")
    seen = page.evaluate("""async () => {
      const { StreamPolicy } = await import('/lesson/stream.js');
      const run = (n, steps) => { const p = new StreamPolicy(n); return steps.map(([count, at]) => p.wants(count, at)); };
      return {
        never: run(null, [[0, 0], [5000, 1]]),
        always: run(0, [[0, 0], [1, 1]]),
        // N = 30 (band 3): 30 no, 31 yes; 28 still yes; 27 no, but only 20 s after the last change; 31 again
        // likewise only 20 s later
        thirty: run(30, [[30, 0], [31, 1000], [28, 5000], [27, 10000], [27, 21000], [31, 30000], [31, 41000]]),
      };
    }""")
    assert seen == {"never": [False, False], "always": [True, True],
                    "thirty": [False, True, True, True, False, False, True]}, seen


def test_a_browser_without_media_source_extensions_plays_the_stream_itself(
        famous: Any, web_server: Any, open_page: Any, js_poll: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """As on an iPhone (no MSE, HLS in the <video> itself): Chromium's own HLS player, MSE taken away."""
    lesson = famous["lesson"]
    student = open_page(web_server.world.student, "/assets/app.css")  # the site's origin
    student.context.add_init_script("delete window.MediaSource; delete window.ManagedMediaSource;")
    student.goto(f"/lesson/student.html?lesson={lesson['id']}")
    if not student.evaluate("document.createElement('video').canPlayType('application/vnd.apple.mpegurl')"):
        pytest.skip("this Chromium does not play HLS by itself")
    wait_joined(student, js_poll)
    js_poll(student, "window.sankeStream && window.sankeStream.mode === 'stream'", timeout=15)
    assert student.evaluate("window.sankeStream.stream.native") is True
    assert student.evaluate("document.getElementById('teacher-video').src").endswith("/main.m3u8")
    assert_frames_advance(student, "teacher-video")
    # a renewed link: the <video> is opened again at the new prefix, and goes on
    monkeypatch.setattr("scheduler.clock.now", lambda: NOW + timedelta(minutes=5))
    old = student.evaluate("window.sankeStream.stream.link.prefix")
    student.evaluate("window.sankeStream.renew()")
    new = student.evaluate("window.sankeStream.stream.link.prefix")
    assert new != old and new in student.evaluate("document.getElementById('teacher-video').src")
    assert_frames_advance(student, "teacher-video")
