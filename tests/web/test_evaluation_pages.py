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
