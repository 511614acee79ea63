"""网络教研 / 同课异构 (web/research/) in Chromium: an activity set up through the page, its lessons side by side.

Two lessons of 三年级数学 on ``LESSON_DAY``, 王老师's (period 1, the site's lesson) and 李老师's (period 2), both
held and recorded by the real recorder (``test_replay_page.record_lesson``: 6 s, a red camera that turns green at
3 s).  东区教研员 sets up a 同课异构 activity linking them (one lesson alone is refused with the server's message)
and adds 刘助教; each recording plays in its own pane on
its own clock; a comment placed at pane B's time reaches 刘助教's page by polling and takes pane B there; 刘助教
scores lesson A in pane A's 评课 panel and the activity shows the score; the organizer closes the activity with its
outcome and it turns read-only.  A second test watches a lesson in progress in a pane (the patrol full view,
embedded): the teacher's fake camera decodes there, for the organizer and for a teacher the organizer adds on the
activity's page.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from scheduler.models import InstanceStatus, LessonInstance
from scheduler.recordings_models import Recording, RecordingStatus
from tests.media.sfu_helpers import GREEN, RED
from tests.web.conftest import LESSON_DAY, NOW, Site
from tests.web.test_patrol_page import STATS_JS
from tests.web.test_replay_page import PIXEL, near_js, record_lesson

RUBRIC = {"name": "课堂教学评价表",
          "items": [{"name": "教学目标", "max_score": 10}, {"name": "师生互动", "max_score": 20, "weight": 2}]}


def frame_at(page: Any, part: str, timeout: float = 15.0) -> Any:
    """The page's frame whose address holds ``part``: an iframe exists (``window.frames``) before its page
    has navigated (its address is about:blank until then)."""
    deadline = time.monotonic() + timeout
    while True:
        frame = next((f for f in page.frames if part in f.url), None)
        if frame is not None:
            return frame
        assert time.monotonic() < deadline, [f.url for f in page.frames]
        page.wait_for_timeout(100)  # (Playwright delivers the frame events while it is called)


def frame_js(lesson_id: int) -> str:
    """JS: the window of the pane of ``lesson_id`` (its embedded page)."""
    return f"document.querySelector(\"#panes [data-lesson='{lesson_id}'] iframe\").contentWindow"


def ready_js(lesson_id: int) -> str:
    """JS: the pane of ``lesson_id`` is there and its player is ready (false until then, never an error)."""
    return (f"(() => {{ const f = document.querySelector(\"#panes [data-lesson='{lesson_id}'] iframe\");"
            f" return !!(f && f.contentWindow && f.contentWindow.sankeReplay); }})()")


def clock_js(lesson_id: int) -> str:
    return f"{frame_js(lesson_id)}.sankeReplay.clock()"


def camera_js(lesson_id: int) -> str:
    return f"{frame_js(lesson_id)}.document.getElementById('v-camera')"


def pixel_js(lesson_id: int, want: tuple[int, int, int]) -> str:
    """JS: the centre of the pane's camera picture is near ``want`` (the replay test's pixel probe, in the pane)."""
    probe = PIXEL.replace("document.getElementById(id)", f"{frame_js(lesson_id)}.document.getElementById(id)")
    return f"(() => {{ const c = ({probe})('v-camera'); return {near_js(want, 'c')}; }})()"


def book_second_lesson(site: Site) -> int:
    """李老师's 三年级数学 in the other main classroom, period 2 of the same day (to the same classrooms)."""
    w = site.world
    site.book(title="三年级数学（李老师）", main_classroom_id=w.main_room2.id, main_teacher_id=w.teacher2.id, period_from=2)
    day = LESSON_DAY.isoformat()
    others = [x["id"] for x in site.lessons(w.urban_admin, date_from=day, date_to=day) if x["id"] != site.lesson_id]
    assert len(others) == 1, others
    return int(others[0])


def held_with_recording(site: Site, settings: Any, lesson_id: int) -> int:
    """The lesson took place (its room closed) and left a recording; its id."""
    with site.session_factory() as s:
        inst = s.get(LessonInstance, lesson_id)
        inst.status = InstanceStatus.held
        inst.room_opened_at = inst.room_opened_at or NOW
        inst.room_closed_at = NOW
        row = Recording(instance_id=lesson_id, status=RecordingStatus.recording, directory="", started_at=NOW,
                        duration_s=0.0, size_bytes=0, codecs="")
        s.add(row)
        s.flush()
        row.directory = f"recordings/{lesson_id}/{row.id}"
        summary = record_lesson(settings.data_dir / row.directory)
        row.files, row.duration_s = summary["files"], summary["duration_s"]
        row.size_bytes, row.codecs, row.status, row.ended_at = summary["size"], "opus,vp8", RecordingStatus.ready, NOW
        s.commit()
        return int(row.id)


def add_rubric(site: Site) -> None:
    w = site.world
    r = site.http.post("/api/v1/patrol/rubrics", headers=site.headers(w.city_admin),
                       json={"region_id": w.city.id, **RUBRIC})
    assert r.status_code == 201, r.text


def seek_pane(page: Any, lesson_id: int, t: float) -> None:
    """Move the pane's own slider to ``t`` s, as a person would."""
    page.frame_locator(f"#panes [data-lesson='{lesson_id}'] iframe").locator("#seek").evaluate(
        f"(s) => {{ s.value = '{t}'; s.dispatchEvent(new Event('change')); }}")


def play_then_pause(page: Any, js_poll: Any, lesson_id: int) -> float:
    """Press play in the pane; once its camera has decoded frames while playing, pause it. Its clock then."""
    pane = page.frame_locator(f"#panes [data-lesson='{lesson_id}'] iframe")
    pane.locator("#poster").click()
    js_poll(page, f"(() => {{ const v = {camera_js(lesson_id)}; return !v.paused && v.currentTime > 1.0"
                  f" && v.getVideoPlaybackQuality().totalVideoFrames > 10; }})()", timeout=20)
    # paused through the player (idempotent: the button would start it again had it reached the end meanwhile)
    page.evaluate(f"{frame_js(lesson_id)}.sankeReplay.pause()")
    js_poll(page, f"{frame_js(lesson_id)}.document.getElementById('play').getAttribute('aria-label') === '播放'")
    return float(page.evaluate(clock_js(lesson_id)))


def test_a_researcher_sets_up_a_same_topic_activity_and_the_members_discuss_score_and_close_it(
        web_server: Site, settings: Any, open_page: Any, js_poll: Any, screenshot: Any) -> None:
    w = web_server.world
    a = web_server.lesson_id
    b = book_second_lesson(web_server)
    add_rubric(web_server)
    held_with_recording(web_server, settings, a)
    held_with_recording(web_server, settings, b)

    # the researcher sets it up through the page: two lessons of two teachers, 刘助教 added
    page = open_page(w.researcher_a, "/research/", allow_console=(r"status of 422 .*/api/v1/research/activities\]$",))
    assert page.query_selector("a.nav-link[href='/research/']") is not None  # 教研活动 in the menu
    js_poll(page, "document.getElementById('count').textContent === '共 0 项'")
    page.click("#btn-new")
    page.wait_for_selector(f"#lesson-table input[data-lesson='{b}']", timeout=10_000)
    page.fill("#new-form [name=title]", "三年级数学 同课异构")
    page.fill("#new-form [name=topic]", "分数的初步认识")
    page.select_option("#new-form [name=kind]", "same_topic")
    page.check(f"#lesson-table input[data-lesson='{a}']")
    page.click("#new-form button[type=submit]")  # one lesson is not a 同课异构: the server says so, nothing is made
    page.wait_for_selector("#form-error:not([hidden])")
    assert "同课异构需要 2" in page.inner_text("#form-error") and "/research/?id=" not in page.url
    page.check(f"#lesson-table input[data-lesson='{b}']")
    assert page.inner_text("#picked-note") == "已选 2 节，2 位教师"
    assert page.input_value("#new-form [name=subject]") == "数学"  # taken from the first lesson chosen
    page.fill("#cand-q", "刘助教")
    page.click("#btn-cand")
    page.click(f"#candidates li[data-candidate='{w.assistant.id}'] button")
    assert "刘助教" in page.inner_text("#chosen")
    screenshot(page, "new-activity")
    page.click("#new-form button[type=submit]")
    page.wait_for_url(re.compile(r"/research/\?id=\d+$"))
    aid = int(page.url.rsplit("=", 1)[1])

    # both recordings side by side, each pane its own player
    js_poll(page, f"document.querySelectorAll('#panes .pane').length === 2 && {ready_js(a)} && {ready_js(b)}",
            timeout=20)
    boxes = [page.locator(f"#panes [data-lesson='{x}']").bounding_box() for x in (a, b)]
    assert boxes[0] and boxes[1], boxes
    assert abs(boxes[0]["y"] - boxes[1]["y"]) < 2 and boxes[1]["x"] > boxes[0]["x"] + 300, boxes
    assert page.get_attribute(f"#panes [data-lesson='{a}']", "data-mode").startswith("replay:")
    members = {m: page.get_attribute(f"#members li[data-member='{m}']", "data-took-part")
               for m in (w.researcher_a.id, w.teacher.id, w.teacher2.id, w.assistant.id)}
    assert None not in members.values(), members

    # the member teacher opens it too (before anyone writes: what comes later comes by polling)
    teacher = open_page(w.assistant, f"/research/?id={aid}")
    js_poll(teacher, f"{ready_js(a)} && {ready_js(b)}", timeout=20)
    js_poll(teacher, "document.querySelector('#comments .empty') !== null")

    # pane A plays (frames decode) while pane B stays at 0; then B plays on its own
    t_a = play_then_pause(page, js_poll, a)
    assert page.evaluate(clock_js(b)) == 0 and page.evaluate(f"{camera_js(b)}.paused")
    t_b = play_then_pause(page, js_poll, b)
    assert page.evaluate(clock_js(a)) == t_a  # paused A did not move while B played
    # seeking B moves B only: B green at 4.5 s, A still where it was, red
    seek_pane(page, b, 4.5)
    js_poll(page, f"Math.abs({camera_js(b)}.currentTime - 4.5) < 0.4 && {pixel_js(b, GREEN)}", timeout=10)
    assert page.evaluate(clock_js(a)) == t_a and abs(page.evaluate(clock_js(b)) - 4.5) < 0.01, t_b
    seek_pane(page, a, 2.0)
    js_poll(page, f"Math.abs({camera_js(a)}.currentTime - 2.0) < 0.4 && {pixel_js(a, RED)}", timeout=10)
    assert abs(page.evaluate(clock_js(b)) - 4.5) < 0.01
    screenshot(page, "side-by-side")

    # a comment at pane B's time
    page.select_option("#comment-lesson", str(b))
    js_poll(page, "document.getElementById('comment-at').textContent === '记在录像 00:04 处'")
    page.fill("#comment-text", "李老师用折纸引入分数，学生参与度高")
    page.click("#comment-form button[type=submit]")
    mine = "#comments li[data-comment]"
    js_poll(page, f"document.querySelectorAll('{mine}').length === 1")
    assert page.get_attribute(mine, "data-lesson") == str(b) and float(page.get_attribute(mine, "data-offset")) == 4.5
    assert "课例 B" in page.inner_text(mine) and "00:04" in page.inner_text(mine)

    # ...reaches the teacher's page by polling, with its lesson and time; clicking it takes pane B there
    js_poll(teacher, f"document.querySelector('{mine}') && document.querySelector('{mine}').textContent.includes('折纸')",
            timeout=15)
    assert "课例 B" in teacher.inner_text(mine) and "00:04" in teacher.inner_text(mine)
    assert "东区教研员" in teacher.inner_text(mine)
    assert teacher.evaluate(clock_js(b)) == 0
    teacher.click(f"{mine} p")
    js_poll(teacher, f"Math.abs({clock_js(b)} - 4.5) < 0.01 && Math.abs({camera_js(b)}.currentTime - 4.5) < 0.4")
    assert teacher.evaluate(clock_js(a)) == 0

    # the teacher scores lesson A in pane A's 评课 panel; the activity shows the score
    pane_a = teacher.frame_locator(f"#panes [data-lesson='{a}'] iframe")
    pane_a.locator("#btn-evaluate").click()
    pane_a.locator("#rubric-items input").nth(1).wait_for(timeout=10_000)
    pane_a.locator("#rubric-items input").nth(0).fill("9")
    pane_a.locator("#rubric-items input").nth(1).fill("16")
    pane_a.locator("#eval-comment").fill("导入自然，板书清晰")
    pane_a.locator("#btn-save").click()
    js_poll(teacher, f"{frame_js(a)}.document.getElementById('eval-saved').textContent.startsWith('已保存')")
    ev = web_server.http.get(f"/api/v1/patrol/lessons/{a}/evaluation", headers=web_server.headers(w.assistant)).json()
    assert ev["mode"] == "replay" and ev["total_score"] == 83.3
    for p in (teacher, page):
        js_poll(p, f"document.querySelector(\"#scores tr[data-lesson='{a}'] [data-average]\").textContent === '83.3'",
                timeout=20)
        assert p.inner_text(f"#scores tr[data-lesson='{b}'] [data-average]") == "—"
        assert "平均 83.3 分" in p.inner_text(f"#panes [data-lesson='{a}'] [data-score]")
    took_part = f"document.querySelector(\"#members li[data-member='{w.assistant.id}']\").dataset.tookPart === 'true'"
    js_poll(page, took_part, timeout=20)
    screenshot(teacher, "teacher-scored")

    # the export holds the lessons, the members and the comment
    with page.expect_download() as info:
        page.click("#btn-export")
    text = Path(info.value.path()).read_bytes().decode("utf-8-sig")
    assert "折纸引入分数" in text and "三年级数学（李老师）" in text and "刘助教" in text

    # the organizer closes it with the outcome: read-only for everyone
    page.fill("#outcome-text", "两节课都重视直观操作；建议增加学生表达的时间。")
    page.click("#btn-close")
    page.click("dialog[open] .btn-danger")
    js_poll(page, "document.querySelector('#a-status [data-status]').dataset.status === 'closed'")
    assert "增加学生表达" in page.inner_text("#a-outcome") and page.is_visible("#outcome-card")
    for selector in ("#comment-form", "#close-card", "#add-members"):
        assert not page.is_visible(selector), selector
    js_poll(teacher, "document.getElementById('comment-form').hidden"
                     " && !document.getElementById('outcome-card').hidden", timeout=20)
    r = web_server.http.post(f"/api/v1/research/activities/{aid}/comments", headers=web_server.headers(w.assistant),
                             json={"text": "再补充一点"})
    assert r.status_code == 409, r.text
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "closed")

    # closed activities are listed as such; the teacher's development record counts it
    page.goto("/research/")
    page.click(".tabs [data-status=closed]")
    page.wait_for_selector(f"#activities tr[data-activity='{aid}']")
    record = open_page(w.teacher, "/records/teacher.html")
    record.wait_for_selector("body[data-loaded='1']", timeout=20_000)
    assert record.inner_text("#research-facts dd[data-fact='research-taught']") == "1 次"
    assert record.get_attribute(f"#research li[data-activity='{aid}'] a", "href") == f"/research/?id={aid}"


def test_a_lesson_in_progress_plays_live_in_its_pane(web_server: Site, open_page: Any, js_poll: Any,
                                                      screenshot: Any) -> None:
    """王老师 is teaching (the fake camera); 李老师's lesson starts later: one live pane, one that says when."""
    w, a = web_server.world, web_server.lesson_id
    b = book_second_lesson(web_server)
    teacher = open_page(w.teacher, "/lesson/main.html")
    teacher.click(f"[data-action=start][data-lesson='{a}']")
    js_poll(teacher, "window.sankeLesson && window.sankeLesson.state === 'joined'", timeout=15)
    js_poll(teacher, "window.sankeLesson.local.has('camera')", timeout=10)
    main = str(teacher.evaluate("window.sankeLesson.participantId"))

    r = web_server.http.post("/api/v1/research/activities", headers=web_server.headers(w.researcher_a), json={
        "title": "三年级数学 同课异构", "topic": "分数的初步认识", "kind": "same_topic", "subject": "数学",
        "grade": "三年级", "description": "", "instance_ids": [a, b], "member_ids": []})
    assert r.status_code == 201, r.text
    aid = r.json()["id"]

    page = open_page(w.researcher_a, f"/research/?id={aid}")
    page.wait_for_selector(f"#panes [data-lesson='{a}'][data-mode='live'] iframe", timeout=10_000)
    assert page.inner_text(f"#panes [data-lesson='{b}'] .pane-wait") == "尚未开课 9月7日 周一 08:50"
    js_poll(page, "window.frames.length === 1")
    live = frame_at(page, "/patrol/?embed=1")
    js_poll(live, "window.sankeLesson && window.sankeLesson.state === 'joined'", timeout=15)
    key = f"{main}/camera"
    js_poll(live, f"({STATS_JS})().then((s) => (s['{key}'] || 0) > 0)", timeout=15)
    before = live.evaluate(STATS_JS)[key]  # and keeps decoding
    js_poll(live, f"({STATS_JS})().then((s) => (s['{key}'] || 0) >= {before + 10})", timeout=15)
    assert live.evaluate("window.sankeLesson.role") == "observer"
    assert live.is_hidden("#btn-back") and live.is_hidden("#wall-view")

    # a comment on the live lesson: the server places it on the lesson's time
    page.select_option("#comment-lesson", str(a))
    js_poll(page, "document.getElementById('comment-at').textContent === '记在直播的此刻'")
    page.fill("#comment-text", "小组合作的分工很清楚")
    page.click("#comment-form button[type=submit]")
    js_poll(page, f"document.querySelector(\"#comments li[data-lesson='{a}']\") !== null")
    assert "课例 A" in page.inner_text(f"#comments li[data-lesson='{a}']")
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "live-pane")

    # the organizer adds a teacher on the activity's page; she watches it too, as a silent observer (the
    # activity's invitation)
    page.fill("#member-q", "刘助教")
    page.click("#btn-member-q")
    page.click(f"#member-candidates li[data-candidate='{w.assistant.id}'] button")
    page.wait_for_selector(f"#members li[data-member='{w.assistant.id}']")
    other = open_page(w.assistant, f"/research/?id={aid}")
    other.wait_for_selector(f"#panes [data-lesson='{a}'][data-mode='live'] iframe", timeout=10_000)
    js_poll(other, "window.frames.length === 1")
    seen = frame_at(other, "/patrol/?embed=1")
    js_poll(seen, "window.sankeLesson && window.sankeLesson.state === 'joined'", timeout=15)
    assert seen.evaluate("window.sankeLesson.role") == "observer"
    js_poll(seen, f"({STATS_JS})().then((s) => (s['{key}'] || 0) > 10)", timeout=15)
    js_poll(seen, "document.querySelectorAll('#rubric-items input').length === 0"
                  " && document.getElementById('eval-saved').textContent === '尚未评价'")


def test_a_pane_turns_from_the_live_lesson_to_its_recording_when_the_lesson_is_over(
        web_server: Site, settings: Any, open_page: Any, js_poll: Any) -> None:
    """The page follows the activity: a lesson whose room closes and whose recording is ready is replayed in its
    pane (the live view it had is let go)."""
    w, a = web_server.world, web_server.lesson_id
    b = book_second_lesson(web_server)
    r = web_server.http.post("/api/v1/research/activities", headers=web_server.headers(w.researcher_a), json={
        "title": "三年级数学 同课异构", "topic": "分数的初步认识", "kind": "same_topic", "subject": "数学",
        "grade": "三年级", "description": "", "instance_ids": [a, b], "member_ids": []})
    assert r.status_code == 201, r.text
    # the live view asks for a seat and a visit while the room closes: refused (409) until the pane moves on
    page = open_page(w.researcher_a, f"/research/?id={r.json()['id']}",
                     allow_console=(r"status of 409 .*/api/v1/(lessons/\d+/join-token|patrol/lessons/\d+/visits)\]$",))
    page.wait_for_selector(f"#panes [data-lesson='{a}'][data-mode='live'] iframe", timeout=10_000)
    rid = held_with_recording(web_server, settings, a)
    page.wait_for_selector(f"#panes [data-lesson='{a}'][data-mode='replay:{rid}'] iframe", timeout=20_000)
    js_poll(page, ready_js(a), timeout=20)
    assert page.evaluate("window.frames.length") == 1 and page.locator(f"#panes [data-lesson='{a}']").count() == 1
