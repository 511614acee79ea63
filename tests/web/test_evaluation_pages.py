"""评课 pages in Chromium: the teacher's reply on the lesson record, 评课 on the replay page, and invitations.

Fixtures: ``tests/web/conftest.py``; the stored records world of ``test_records_pages`` (lesson L1, held,
evaluated by 东区教研员) and the recorded lesson of ``test_replay_page``.
"""

from __future__ import annotations

from typing import Any

from tests.scheduler.test_record_reports import ReportsWorld
from tests.web.test_records_pages import reports  # noqa: F401  (the fixture)


def test_the_teacher_replies_to_an_evaluation_and_others_read_the_reply(
        open_page: Any, web_server: Any, reports: ReportsWorld, js_poll: Any, screenshot: Any) -> None:  # noqa: F811
    w, lid = web_server.world, reports.lessons["L1"]
    page = open_page(w.teacher, f"/records/lesson.html?id={lid}")
    page.wait_for_selector("body[data-loaded='1']", timeout=20_000)
    box = page.locator("#evaluations .eval .reply-box")
    assert box.count() == 1
    box.locator("textarea").fill("谢谢指导，下节课会多留讨论时间")
    box.locator("button").click()
    js_poll(page, "document.querySelector('#evaluations .reply') && "
                  "document.querySelector('#evaluations .reply').textContent.includes('多留讨论时间')")
    ev = web_server.http.get("/api/v1/patrol/evaluations", params={"instance_id": lid},
                             headers=web_server.headers(w.teacher)).json()["data"][0]
    assert [r["text"] for r in ev["replies"]] == ["谢谢指导，下节课会多留讨论时间"]
    assert ev["replies"][0]["author_id"] == w.teacher.id
    screenshot(page, "teacher-reply")

    other = open_page(w.researcher_a, f"/records/lesson.html?id={lid}")  # the evaluator reads it, no reply box
    other.wait_for_selector("body[data-loaded='1']", timeout=20_000)
    assert "多留讨论时间" in other.inner_text("#evaluations")
    assert other.locator("#evaluations .reply-box").count() == 0


def test_a_researcher_evaluates_a_recorded_lesson_on_the_replay_page(
        web_server: Any, settings: Any, open_page: Any, js_poll: Any, screenshot: Any) -> None:
    from scheduler.models import InstanceStatus, LessonInstance
    from tests.web.test_replay_page import add_recording

    w, lid = web_server.world, web_server.lesson_id
    r = web_server.http.post("/api/v1/patrol/rubrics", headers=web_server.headers(w.city_admin), json={
        "region_id": w.city.id, "name": "课堂教学评价表",
        "items": [{"name": "教学目标", "max_score": 10}, {"name": "师生互动", "max_score": 20, "weight": 2}]})
    assert r.status_code == 201, r.text
    rid = add_recording(web_server, settings)
    with web_server.session_factory() as s:  # the lesson took place: it may be evaluated on its recording
        s.get(LessonInstance, lid).status = InstanceStatus.held
        s.commit()

    page = open_page(w.researcher_a, f"/replay/?id={rid}")
    js_poll(page, "document.getElementById('total').textContent === '00:06'")
    page.wait_for_selector("#btn-evaluate:not([hidden])", timeout=10000)
    page.click("#btn-evaluate")
    js_poll(page, "document.querySelectorAll('#rubric-items input').length === 2")
    inputs = page.locator("#rubric-items input")
    inputs.nth(0).fill("9")
    inputs.nth(1).fill("16")
    assert page.text_content("#total-score") == str(round((9 / 10 + 2 * 16 / 20) / 3 * 100, 1))
    page.fill("#eval-comment", "板书清晰，提问有层次")

    page.eval_on_selector("#seek", "(s) => { s.value = '4.5'; s.dispatchEvent(new Event('change')); }")
    js_poll(page, "Math.abs(document.getElementById('v-camera').currentTime - 4.5) < 0.4")
    at = float(page.evaluate("window.sankeReplay.clock()"))
    page.fill("#note-input", "学生上台演示")
    page.press("#note-input", "Enter")
    js_poll(page, "document.querySelector('#note-list li[data-offset] .note-time') !== null")
    assert page.inner_text("#note-list .note-time") == "00:04"
    page.click("#btn-save")
    js_poll(page, "document.getElementById('eval-saved').textContent.startsWith('已保存')")

    ev = web_server.http.get(f"/api/v1/patrol/lessons/{lid}/evaluation",
                             headers=web_server.headers(w.researcher_a)).json()
    assert ev["mode"] == "replay" and ev["total_score"] == 83.3 and ev["comment"] == "板书清晰，提问有层次"
    assert [n["text"] for n in ev["notes"]] == ["学生上台演示"]
    assert abs(ev["notes"][0]["lesson_offset_seconds"] - at) < 1, (ev["notes"][0], at)
    screenshot(page, "replay-evaluation")

    page.eval_on_selector("#seek", "(s) => { s.value = '0.5'; s.dispatchEvent(new Event('change')); }")
    page.click("#note-list .note-time")  # a note's time seeks the player back there
    js_poll(page, "Math.abs(window.sankeReplay.clock() - 4) < 0.2")


def test_a_researcher_invites_a_teacher_who_sees_the_invitation_and_evaluates_on_replay(
        web_server: Any, settings: Any, open_page: Any, js_poll: Any, screenshot: Any) -> None:
    from scheduler.models import InstanceStatus, LessonInstance
    from tests.web.test_replay_page import add_recording

    w, lid = web_server.world, web_server.lesson_id
    rid = add_recording(web_server, settings)
    with web_server.session_factory() as s:
        s.get(LessonInstance, lid).status = InstanceStatus.held
        s.commit()

    page = open_page(w.researcher_a, f"/records/lesson.html?id={lid}")
    page.wait_for_selector("body[data-loaded='1']", timeout=20_000)
    page.wait_for_selector("#invitations-card:not([hidden])")
    options = page.eval_on_selector_all("#invitee option", "os => os.map(o => o.value)")
    assert str(w.teacher2.id) in options and str(w.researcher_b.id) in options and str(w.teacher.id) not in options
    page.select_option("#invitee", str(w.researcher_b.id))
    page.click("#btn-invite")
    page.wait_for_selector("#invitations li[data-invitation]")
    page.click("#invitations li[data-invitation] button")  # withdraw it again
    page.click("dialog[open] .btn-danger")
    js_poll(page, "document.querySelectorAll('#invitations li[data-invitation]').length === 0")
    assert web_server.http.get(f"/api/v1/patrol/lessons/{lid}/invitations",
                               headers=web_server.headers(w.researcher_a)).json() == []
    page.select_option("#invitee", str(w.teacher2.id))
    page.fill("#invite-note", "请李老师一起看录像评课")
    page.click("#btn-invite")
    js_poll(page, "document.querySelector('#invitations li[data-invitation]') && "
                  "document.querySelector('#invitations').textContent.includes('李老师')")
    screenshot(page, "invitations")

    home = open_page(w.teacher2, "/")  # the invitee: 邀请我评课 on the home page
    home.wait_for_selector("#invited-card:not([hidden])")
    row = home.locator(f"#invited tr[data-lesson='{lid}']")
    assert "请李老师一起看录像评课" in row.inner_text() and "东区教研员" in row.inner_text()
    screenshot(home, "home-invited")
    row.locator("a").click()
    home.wait_for_url(f"**/replay/?id={rid}&evaluate=1")
    js_poll(home, "!document.getElementById('eval-panel').hidden")
    js_poll(home, "document.getElementById('eval-saved').textContent === '尚未评价'")
    home.fill("#eval-comment", "课堂节奏好")
    home.click("#btn-save")
    js_poll(home, "document.getElementById('eval-saved').textContent.startsWith('已保存')")
    ev = web_server.http.get(f"/api/v1/patrol/lessons/{lid}/evaluation", headers=web_server.headers(w.teacher2)).json()
    assert ev["mode"] == "replay" and ev["evaluator_id"] == w.teacher2.id
