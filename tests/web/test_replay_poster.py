"""The replay player before play and around gaps, in Chromium, with the demo's clips (``server.demo_media``).

Before play the teacher's view shows the recording's first picture under a play prompt, never the
"此时段无教师画面" notice on black (a recording's camera starts a little after its sound, at its first
keyframe); the notice shows only where the camera really has a gap at the playhead.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from scheduler.recordings_models import Recording, RecordingStatus
from server.demo_media import camera_clip, tone_clip, write_clip
from tests.web.conftest import NOW, Site

LUMA = """(id) => { const v = document.getElementById(id); if (v.readyState < 2) return -1;
  const c = document.createElement('canvas'); c.width = 32; c.height = 18; const g = c.getContext('2d');
  g.drawImage(v, 0, 0, 32, 18); const d = g.getImageData(0, 0, 32, 18).data; let sum = 0;
  for (let i = 0; i < d.length; i += 4) sum += d[i] + d[i + 1] + d[i + 2]; return sum / (d.length / 4) / 3; }"""
"""The mean brightness of what the element shows (−1: no picture yet); the demo's classroom is ~120-130, black ~0-17."""


def _recording(site: Site, settings: Any, make: Any) -> int:
    with site.session_factory() as s:
        row = Recording(instance_id=site.lesson_id, status=RecordingStatus.recording, directory="", started_at=NOW,
                        duration_s=0.0, size_bytes=0, codecs="")
        s.add(row)
        s.flush()
        row.directory = f"recordings/{site.lesson_id}/{row.id}"
        files = make(settings.data_dir / row.directory)
        row.files = files
        row.duration_s = max(f["start_s"] + f["duration_s"] for f in files)
        row.size_bytes, row.codecs, row.status = sum(f["size"] for f in files), "opus,vp8", RecordingStatus.ready
        row.ended_at = NOW + timedelta(seconds=row.duration_s)
        s.commit()
        return row.id


def _with_gap(directory: Any) -> list[dict[str, Any]]:
    """Sound 0–10 s; the camera from 0.6 s (its first keyframe) to 3.6 s, and again 6–10 s after a republish."""
    directory.mkdir(parents=True, exist_ok=True)
    first = camera_clip(directory / "camera-1.webm", 3) | {"start_s": 0.6}
    second = camera_clip(directory / "camera-2.webm", 4, 1) | {"start_s": 6.0}
    return [tone_clip(directory / "microphone-1.webm", 10), first, second]


def test_before_play_the_teacher_view_shows_the_first_picture_and_a_play_prompt(
        web_server: Site, settings: Any, open_page: Any, js_poll: Any, screenshot: Any) -> None:
    rid = _recording(web_server, settings, _with_gap)
    page = open_page(web_server.world.teacher, f"/replay/?id={rid}")
    js_poll(page, "document.getElementById('total').textContent === '00:10'")
    assert page.is_visible("#poster") and "点击播放录像" in page.inner_text("#poster")
    js_poll(page, f"({LUMA})('v-camera') > 60", timeout=15)  # the classroom, not black
    assert page.is_hidden("#off-camera")
    screenshot(page, "poster")

    page.click("#poster")  # the prompt plays, as the play button does
    assert page.is_hidden("#poster")
    js_poll(page, "document.getElementById('v-camera').currentTime > 0.5 && !document.getElementById('v-camera').paused",
            timeout=15)
    assert page.is_hidden("#off-camera")
    page.click("#play")  # pause, then seek into the real gap (3.6–6 s): there the notice shows
    page.eval_on_selector("#seek", "(s) => { s.value = '4.2'; s.dispatchEvent(new Event('change')); }")
    js_poll(page, "!document.getElementById('off-camera').hidden")
    assert page.inner_text("#off-camera") == "此时段无教师画面"
    page.eval_on_selector("#seek", "(s) => { s.value = '7'; s.dispatchEvent(new Event('change')); }")
    js_poll(page, "document.getElementById('off-camera').hidden")
    js_poll(page, "Math.abs(document.getElementById('v-camera').currentTime - 1) < 0.4")  # 7 s is 1 s into the second file
    js_poll(page, f"({LUMA})('v-camera') > 60")


def test_a_demo_recording_plays_in_the_browser(web_server: Site, settings: Any, open_page: Any, js_poll: Any) -> None:
    rid = _recording(web_server, settings, lambda d: write_clip(d, 20))
    page = open_page(web_server.world.teacher, "/replay/")
    js_poll(page, f"document.querySelector('#library tr[data-id=\"{rid}\"]') !== null")
    page.click(f"#library tr[data-id='{rid}'] a")
    page.wait_for_url(f"**/replay/?id={rid}")
    js_poll(page, "document.getElementById('total').textContent === '00:20'")
    js_poll(page, f"({LUMA})('v-camera') > 60", timeout=15)
    page.click("#play")
    js_poll(page, "document.getElementById('a-microphone').currentTime > 1.5", timeout=15)
    js_poll(page, "document.getElementById('v-camera').currentTime > 1.5")
    js_poll(page, "document.getElementById('v-camera').getVideoPlaybackQuality().totalVideoFrames > 15")
    assert page.is_hidden("#off-camera") and page.is_hidden("#player-error")


def test_an_empty_library_says_what_will_appear_there(web_server: Site, open_page: Any, js_poll: Any) -> None:
    page = open_page(web_server.world.teacher, "/replay/")
    js_poll(page, "document.getElementById('count').textContent === '共 0 节'")
    assert "还没有可回看的录播" in page.inner_text("#library tbody")
    page.fill("#f-q", "物理")
    page.click("#filters button[type=submit]")
    js_poll(page, "document.querySelector('#library tbody').textContent.includes('没有符合条件的录播')")
