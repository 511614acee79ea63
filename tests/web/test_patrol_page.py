"""The patrol dashboard (web/patrol/) in real Chromium against a server the test starts (127.0.0.1 only).

The teacher starts the dedicated lesson from the main-classroom page (Chromium's fake camera is
the classroom); a researcher of the district opens the patrol wall, sees the lesson live on it,
watches it in full, silently: the video decodes, the researcher is in nobody's roster, and the
server refuses a publish sent from the researcher's page. The evaluation panel saves scores,
notes and a server-side snapshot.
"""

from __future__ import annotations

import re
import time
from typing import Any

STATS_JS = """async () => {
  const lc = window.sankeLesson;
  const out = {};
  if (!lc || !lc.subscriber) return out;
  (await lc.subscriber.getStats()).forEach((s) => {
    if (s.type !== 'inbound-rtp' || s.kind !== 'video') return;
    const m = lc._mids.get(s.mid);
    if (m) out[m.participantId + '/' + m.source] = s.framesDecoded || 0;
  });
  return out;
}"""

PUBLISH_JS = """async () => {
  try {
    await window.sankeLesson.request({type: 'publish', source: 'camera', track_id: 'patrol-cam'});
    return 'accepted';
  } catch (e) { return e.code || String(e); }
}"""


def test_a_researcher_patrols_silently_sees_the_lesson_and_cannot_publish(web_server: Any, open_page: Any,
                                                                           js_poll: Any, screenshot: Any) -> None:
    w, lid = web_server.world, web_server.lesson_id
    r = web_server.http.post("/api/v1/patrol/rubrics", headers=web_server.headers(w.city_admin), json={
        "region_id": w.city.id, "name": "课堂教学评价表",
        "items": [{"name": "教学目标", "max_score": 10}, {"name": "师生互动", "max_score": 20, "weight": 2}]})
    assert r.status_code == 201, r.text

    teacher = open_page(w.teacher, "/lesson/main.html")
    teacher.click(f"[data-action=start][data-lesson='{lid}']")
    js_poll(teacher, "window.sankeLesson && window.sankeLesson.state === 'joined'", timeout=15)
    js_poll(teacher, "window.sankeLesson.local.has('camera')", timeout=10)

    patrol = open_page(w.researcher_a, "/patrol/")
    # the wall: the live lesson's thumbnail plays (lowest layer, observer)
    tile = f".wall-tile[data-lesson='{lid}']"
    patrol.wait_for_selector(tile, timeout=10000)
    js_poll(patrol, f"document.querySelector(\"{tile} video\").videoWidth > 0", timeout=15)
    for size in ("4", "16", "9"):
        patrol.click(f"[data-size='{size}']")
        assert patrol.eval_on_selector("#wall", "w => w.dataset.size") == size
        assert patrol.locator(".wall-tile").count() == int(size)  # the lesson and empty slots
    screenshot(patrol, "patrol-wall")

    # one click: watch in full, silently
    patrol.click(f"{tile} [data-action=watch]")
    js_poll(patrol, "window.sankeLesson && window.sankeLesson.state === 'joined'", timeout=15)
    js_poll(patrol, "document.getElementById('watch-camera').videoWidth > 0", timeout=15)
    main = str(teacher.evaluate("window.sankeLesson.participantId"))
    key = f"{main}/camera"
    js_poll(patrol, f"({STATS_JS})().then((s) => (s['{key}'] || 0) > 0)", timeout=15)
    before = patrol.evaluate(STATS_JS)[key]  # and keeps decoding: 10 more frames, waited for (busy machines)
    js_poll(patrol, f"({STATS_JS})().then((s) => (s['{key}'] || 0) >= {before + 10})", timeout=15)

    # the full view's live S-T panel reads the lesson's record (the fake microphone's beeps are not speech)
    js_poll(patrol, "/教学模式|没有测得发言/.test(document.getElementById('watch-insight').textContent)", timeout=15)

    # the researcher is in no roster: not the teacher's, not the server's
    observer = str(patrol.evaluate("window.sankeLesson.participantId"))
    assert patrol.evaluate("window.sankeLesson.role") == "observer"
    roster = teacher.evaluate("[...window.sankeLesson.participants.values()].map(p => [p.participant_id, p.role])")
    assert observer not in {pid for pid, _ in roster} and "observer" not in {role for _, role in roster}, roster
    assert teacher.locator(f"[data-participant='{observer}']").count() == 0
    assert observer not in str(teacher.evaluate("window.sankeLesson.joined"))

    # a publish sent on the researcher's lesson socket is refused by the server
    assert patrol.evaluate(PUBLISH_JS) == "not_allowed"
    assert patrol.evaluate("window.sankeLesson.publisher") is None

    # the visit is open; the evaluation panel saves scores, a note and a snapshot of the main camera
    visits = web_server.http.get("/api/v1/patrol/visits", headers=web_server.headers(w.researcher_a)).json()
    assert visits["count"] == 1 and visits["data"][0]["ended_at"] is None
    js_poll(patrol, "document.querySelectorAll('#rubric-items input').length === 2")
    inputs = patrol.locator("#rubric-items input")
    inputs.nth(0).fill("8")
    inputs.nth(1).fill("15")
    assert patrol.text_content("#total-score") == str(round((8 / 10 + 2 * 15 / 20) / 3 * 100, 1))
    patrol.fill("#eval-comment", "师生互动充分")
    patrol.click("#btn-save")
    js_poll(patrol, "document.getElementById('eval-saved').textContent.startsWith('已保存')")
    patrol.fill("#note-input", "第一次小组讨论")
    patrol.press("#note-input", "Enter")
    js_poll(patrol, "document.querySelector('#note-list li .note-time') !== null")
    patrol.click("#btn-snapshot")
    js_poll(patrol, "document.querySelector('#snapshots img') && document.querySelector('#snapshots img').naturalWidth > 0",
            timeout=15)
    ev = web_server.http.get(f"/api/v1/patrol/lessons/{lid}/evaluation",
                             headers=web_server.headers(w.researcher_a)).json()
    assert ev["total_score"] == 76.7 and ev["notes"][0]["text"] == "第一次小组讨论" and len(ev["snapshots"]) == 1
    screenshot(patrol, "patrol-watch")

    # back to the wall: the visit ends
    patrol.click("#btn-back")
    patrol.wait_for_selector(tile, timeout=10000)
    deadline = time.monotonic() + 5
    while True:
        v = web_server.http.get("/api/v1/patrol/visits", headers=web_server.headers(w.researcher_a)).json()["data"][0]
        if v["ended_at"] is not None:
            break
        assert time.monotonic() < deadline, v
        time.sleep(0.1)
    assert v["end_reason"] == "left"


def test_the_patrol_page_is_for_researchers(web_server: Any, open_page: Any, js_poll: Any) -> None:
    page = open_page(web_server.world.teacher, "/patrol/")
    js_poll(page, "!location.pathname.startsWith('/patrol')")


def test_the_wall_rotates_through_every_live_lesson_keeps_pinned_ones_and_filters(
        web_server: Any, open_page: Any, js_poll: Any, screenshot: Any) -> None:
    from scheduler.models import Classroom, InstanceStatus, LessonInstance, Role
    from tests.utils.factory import add_user

    from .conftest import LESSON_DAY, NOW

    w = web_server.world
    with web_server.session_factory() as s:  # four more classrooms of the urban school, each with its teacher
        rooms = [Classroom(school_id=w.urban.id, name=f"实验小学 40{i} 教室", capacity=40) for i in range(4)]
        s.add_all(rooms)
        s.flush()
        people = [add_user(s, f"t_extra{i}", Role.teacher, school=s.merge(w.urban), name=f"教师{i}") for i in range(4)]
        s.commit()
        pairs = [(r.id, p.id) for r, p in zip(rooms, people, strict=True)]
    for i, (room, teacher) in enumerate(pairs):
        web_server.book(kind="master", title=f"名师课{i}", subject="语文" if i % 2 else "数学", grade="四年级",
                        main_classroom_id=room, main_teacher_id=teacher, receivers=[])
    day = LESSON_DAY.isoformat()
    ids = [int(x["id"]) for x in web_server.lessons(w.urban_admin, date_from=day, date_to=day)]
    assert len(ids) == 5
    with web_server.session_factory() as s:
        for lid in ids:
            inst = s.get(LessonInstance, lid)
            inst.room_opened_at, inst.status, inst.started_at = NOW, InstanceStatus.live, NOW
        s.commit()

    patrol = open_page(w.researcher_a, "/patrol/")
    patrol.click(".seg [data-size='4']")
    shown = "[...document.querySelectorAll('.wall-tile[data-lesson]')].map(t => Number(t.dataset.lesson))"
    js_poll(patrol, f"{shown}.length === 4")
    first = patrol.evaluate(shown)
    pinned = first[1]
    patrol.click(f".wall-tile[data-lesson='{pinned}'] [data-action=pin]")
    patrol.evaluate("window.sankePatrol.rotateNow()")
    second = patrol.evaluate(shown)
    assert second[0] == pinned and len(second) == 4  # the pinned lesson stays, first on the wall
    patrol.evaluate("window.sankePatrol.rotateNow()")
    third = patrol.evaluate(shown)
    assert set(first) | set(second) | set(third) == set(ids)  # every live lesson comes round
    assert "轮巡中" in patrol.text_content("#wall-status")
    screenshot(patrol, "patrol-wall-rotating")

    patrol.select_option("#f-subject", "语文")
    js_poll(patrol, f"{shown}.length === 2 || ({shown}.length === 3 && {shown}.includes({pinned}))")
    lessons = {x["id"]: x for x in web_server.lessons(w.urban_admin, date_from=day, date_to=day)}
    unpinned = [i for i in patrol.evaluate(shown) if i != pinned]
    assert unpinned and all(lessons[i]["subject"] == "语文" for i in unpinned)
    patrol.click("#btn-rotate")
    assert "轮巡已暂停" in patrol.text_content("#wall-status")


EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2190-\u21FF\u2300-\u23FF\u25A0-\u25FF\u2600-\u27BF\u2B00-\u2BFF\uFE0F]")
"""Emoji and the symbol blocks drawn as pictures (arrows, media controls, shapes, dingbats): a Debian PC
without an emoji font shows many as empty boxes; SanKe draws them with its SVG icons."""

TEXT_JS = """() => [document.body.textContent,
  ...[...document.querySelectorAll('[title], [aria-label], [placeholder]')].map((e) =>
    [e.getAttribute('title'), e.getAttribute('aria-label'), e.getAttribute('placeholder')].join(' '))].join(' ')"""

FRAME_WIDTH_JS = """async (key) => {
  const lc = window.sankeLesson;
  let width = 0;
  if (!lc || !lc.subscriber) return 0;
  (await lc.subscriber.getStats()).forEach((s) => {
    if (s.type !== 'inbound-rtp' || s.kind !== 'video') return;
    const m = lc._mids.get(s.mid);
    if (m && m.participantId + '/' + m.source === key) width = s.frameWidth || 0;
  });
  return width;
}"""


SENT_WIDTHS_JS = """async () => {
  const out = {};
  const pc = window.sankeLesson && window.sankeLesson.publisher;
  if (!pc) return out;
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'outbound-rtp' && s.kind === 'video' && s.rid) out[s.rid] = s.frameWidth || 0;
  });
  return out;
}"""
"""The width of each simulcast layer the teacher's page sends now (rid "q" low, "f" high)."""


def assert_no_emoji(page: Any) -> None:
    """Every text of the page (hidden parts too, titles and labels) is free of emoji; its icons are SVG."""
    found = EMOJI.findall(page.evaluate(TEXT_JS))
    assert not found, f"{page.url}: emoji in the page's text: {found}"
    assert page.evaluate("document.querySelectorAll('svg.icon use').length") > 0


def visible(page: Any, element_id: str) -> bool:
    return bool(page.evaluate(f"!document.getElementById('{element_id}').hidden"))


def test_the_full_view_shows_the_high_layer_and_only_panels_with_something_in_them(
        web_server: Any, open_page: Any, js_poll: Any, screenshot: Any) -> None:
    w, lid = web_server.world, web_server.lesson_id
    teacher = open_page(w.teacher, "/lesson/main.html")
    teacher.click(f"[data-action=start][data-lesson='{lid}']")
    js_poll(teacher, "window.sankeLesson && window.sankeLesson.state === 'joined'", timeout=15)
    js_poll(teacher, "window.sankeLesson.local.has('camera')", timeout=10)
    main = str(teacher.evaluate("window.sankeLesson.participantId"))
    kiosk = open_page(w.terminal_recv, "/lesson/receiving.html")
    js_poll(kiosk, "window.sankeLesson && window.sankeLesson.state === 'joined'", timeout=15)
    js_poll(kiosk, "window.sankeLesson.local.has('camera')", timeout=10)
    # the camera goes out in layers from a quarter of the picture to the whole of it (all of them now
    # that a classroom receives it: layers nobody receives are paused at the teacher's page)
    js_poll(teacher, f"({SENT_WIDTHS_JS})().then((w) => w.f > 0 && w.q > 0 && w.f >= 2 * w.q)", timeout=30)
    recv = str(kiosk.evaluate("window.sankeLesson.participantId"))
    recv_name = str(kiosk.evaluate("window.sankeLesson.me.display_name"))

    patrol = open_page(w.researcher_a, "/patrol/")
    tile = f".wall-tile[data-lesson='{lid}']"
    js_poll(patrol, f"document.querySelector(\"{tile} video\") && document.querySelector(\"{tile} video\").videoWidth > 0",
            timeout=20)
    patrol.click(f"{tile} [data-action=pin]")
    assert "已固定" in patrol.text_content(f"{tile} [data-action=pin]")
    assert_no_emoji(patrol)
    # a wall tile gets the low layer, whatever the link carries
    time.sleep(1)
    low = int(patrol.eval_on_selector(f"{tile} video", "v => v.videoWidth"))
    sent = teacher.evaluate(SENT_WIDTHS_JS)
    assert low < sent["f"], (low, sent)

    patrol.click(f"{tile} [data-action=watch]")
    js_poll(patrol, "window.sankeLesson && window.sankeLesson.state === 'joined'", timeout=15)
    key = f"{main}/camera"
    # the full view decodes the highest layer the teacher's page sends, as wide as it is sent (a busy PC
    # sends layers smaller, and Chromium's CPU adaptation may switch its top layer off: the highest one sent
    # stays at least twice as wide as the low one)
    deadline = time.monotonic() + 30
    while True:
        sent = teacher.evaluate(SENT_WIDTHS_JS)
        got = int(patrol.evaluate(f"({FRAME_WIDTH_JS})('{key}')"))
        top = max(sent.values(), default=0)
        if top and got >= top * 0.9 and got >= 2 * sent.get("q", 0):
            break
        assert time.monotonic() < deadline, f"the full view decodes {got} px wide; the teacher sends {sent}"
        time.sleep(0.2)
    js_poll(patrol, f"document.getElementById('watch-camera').videoWidth >= {2 * sent.get('q', 0)}", timeout=10)
    # nothing is shared, nobody is on stage: no empty black panels, though both are subscribed
    js_poll(patrol, "window.sankeLesson.remote.has('stage/camera') && "
                    f"window.sankeLesson.remote.has('{main}/screen')", timeout=10)
    assert not visible(patrol, "wview-screen") and not visible(patrol, "wview-stage")
    assert_no_emoji(patrol)

    # 同屏: the screen panel comes with the sharing and goes with it
    # (sharing starts a capture and a new producer that every subscriber negotiates: on a loaded 2-core
    # machine that took over 15 s once)
    teacher.click("#btn-screen")
    js_poll(patrol, "!document.getElementById('wview-screen').hidden", timeout=30)
    js_poll(patrol, "document.getElementById('watch-screen').videoWidth > 0", timeout=15)
    teacher.click("#btn-screen")
    js_poll(patrol, "document.getElementById('wview-screen').hidden", timeout=15)

    # 上台: the stage panel shows the classroom on stage, and goes when it steps down
    teacher.click(f"[data-participant='{recv}'] [data-action=stage]")
    js_poll(patrol, "!document.getElementById('wview-stage').hidden", timeout=15)
    js_poll(patrol, "document.getElementById('watch-stage').videoWidth > 0", timeout=15)
    assert recv_name in patrol.text_content("#wview-stage figcaption")
    assert not visible(patrol, "wview-screen")
    screenshot(patrol, "patrol-watch-stage")
    teacher.evaluate("window.sankeLesson.setOnStage(null)")
    js_poll(patrol, "document.getElementById('wview-stage').hidden", timeout=15)
    assert_no_emoji(patrol)


def test_heartbeats_stop_when_the_lesson_ends_and_the_view_says_so(
        web_server: Any, open_page: Any, js_poll: Any, monkeypatch: Any, screenshot: Any) -> None:
    monkeypatch.setattr("scheduler.patrol.HEARTBEAT_INTERVAL_S", 1)  # the page beats every second
    w, lid = web_server.world, web_server.lesson_id
    teacher = open_page(w.teacher, "/lesson/main.html")
    teacher.click(f"[data-action=start][data-lesson='{lid}']")
    js_poll(teacher, "window.sankeLesson && window.sankeLesson.state === 'joined'", timeout=15)

    # a heartbeat that crossed the end on the wire may answer 409 (the browser logs it)
    patrol = open_page(w.researcher_a, "/patrol/", allow_console=(r"status of 409",))
    sent: list[tuple[float, str]] = []
    patrol.on("request", lambda r: sent.append((time.monotonic(), r.url))
              if r.method == "POST" and "/patrol/" in r.url and ("/heartbeat" in r.url or r.url.endswith("/visits"))
              else None)
    patrol.click(f".wall-tile[data-lesson='{lid}'] [data-action=watch]")
    js_poll(patrol, "window.sankeLesson && window.sankeLesson.state === 'joined'", timeout=15)
    deadline = time.monotonic() + 15
    while sum("/heartbeat" in url for _, url in sent) < 2:  # the visit is kept alive while the lesson runs
        assert time.monotonic() < deadline, sent
        patrol.wait_for_timeout(100)  # (the sync API delivers the page's events while it waits)

    # 下课
    r = web_server.http.post(f"/api/v1/lessons/{lid}/end", headers=web_server.headers(w.teacher))
    assert r.status_code == 200, r.text
    js_poll(patrol, "document.getElementById('watch-banner').dataset.state === 'closed' && "
                    "document.getElementById('watch-view').classList.contains('ended')", timeout=15)
    patrol.evaluate("1")  # every request event the page fired so far has been delivered
    ended_at = time.monotonic()
    assert "本节课已结束" in patrol.text_content("#watch-banner")
    assert visible(patrol, "watch-banner")
    assert patrol.evaluate("document.getElementById('btn-snapshot').disabled")
    assert visible(patrol, "watch-off") and "本节课已结束" in patrol.text_content("#watch-off")
    timer = patrol.text_content("#visit-timer")
    patrol.wait_for_timeout(3500)  # three and a half heartbeat intervals, the page's events delivered
    late = [(t - ended_at, url) for t, url in sent if t > ended_at]
    assert not late, f"requests after the end: {late}"
    assert patrol.text_content("#visit-timer") == timer  # the visit's clock stopped too
    # the server closed the visit with the room
    v = web_server.http.get("/api/v1/patrol/visits", headers=web_server.headers(w.researcher_a)).json()["data"][0]
    assert v["ended_at"] is not None and v["end_reason"] == "room_closed", v
    screenshot(patrol, "patrol-watch-ended")
