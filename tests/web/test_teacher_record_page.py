"""The teacher's development record page (web/records/teacher.html) in a real browser.

The server's clock stands at 2026-09-07 07:55 (``tests/web/conftest.py``); ``build_teacher_world`` stores the
records of 2026-09-07..14.  王老师 then gives L1..L7 and the two Monday lessons the site booked (not begun):
L1, L2 held, L3 partly held, L4 missed; L5, L7 and the booked two not over yet; L6 cancelled → due 4, took
place 3 (75.0%), on time L1 and L3 of those 3 (66.7%).  S-T points: L1 and L2.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.scheduler.test_record_reports import ReportsWorld
from tests.scheduler.test_teacher_record import build_teacher_world
from tests.web.test_records_pages import RANGE, _canvas_drawn


@pytest.fixture
def tw(web_server: Any) -> ReportsWorld:
    with web_server.session_factory() as s:
        rw = build_teacher_world(s, web_server.world)
        s.commit()
    return rw


def test_the_teachers_own_record(open_page: Any, web_server: Any, tw: ReportsWorld, screenshot: Any) -> None:
    w = web_server.world
    page = open_page(w.teacher, f"/records/teacher.html?{RANGE}")
    page.wait_for_selector("body[data-loaded='1']", timeout=20_000)
    assert page.inner_text("#title") == "王老师 · 教师发展档案"
    fact = lambda key: page.inner_text(f"#facts dd[data-fact='{key}']")  # noqa: E731
    assert (fact("due"), fact("took_place"), fact("held_rate"), fact("on_time_rate")) == ("4 节", "3 节", "75.0%", "66.7%")
    assert fact("st") == "0.60 / 0.35" and fact("evaluations") == "2 份，平均 85.0 分"
    assert (fact("quizzes"), fact("recordings")) == ("1 题", "1 节")
    rows = page.query_selector_all("#kind-table tbody tr")
    assert [r.get_attribute("data-kind") for r in rows] == ["dedicated", "master", "famous_school", "total"]
    assert [c.inner_text() for c in rows[0].query_selector_all("td")][:7] == ["专递课堂", "9", "4", "2", "1", "1", "1"]
    assert [c.inner_text() for c in rows[1].query_selector_all("td")][1] == "0"
    assert page.get_attribute("#st-chart", "data-points") == "2" and _canvas_drawn(page, "#st-chart")
    assert page.inner_text("#st-types dd[data-fact='type-lecture']") == "1 节"
    evals = page.query_selector_all("#evaluations .eval")
    assert len(evals) == 2 and "谢谢指导" in evals[0].inner_text() and "总分 90.0" in evals[1].inner_text()
    link = page.get_attribute("#recordings a.btn", "href")
    assert link is not None and link.startswith("/replay/?id=")
    with page.expect_download() as info:
        page.click("#btn-csv")
    download = info.value
    assert download.suggested_filename == f"sanke-teacher-{w.teacher.id}-2026-09-07_2026-09-14.csv"
    with open(download.path(), encoding="utf-8-sig") as fh:
        lines = fh.read().splitlines()
    assert lines[0].startswith("课次ID,日期,开始,课程") and len(lines) == 1 + 9
    assert sum("'=cmd" in line for line in lines) == 1 and ",=cmd" not in "".join(lines)
    assert page.query_selector("a.nav-link[href='/records/teacher.html']") is not None  # 我的发展档案 in the menu
    page.locator("#st-chart").scroll_into_view_if_needed()
    screenshot(page, "records-teacher")


def test_the_reports_lead_to_a_teachers_record(open_page: Any, web_server: Any, tw: ReportsWorld) -> None:
    w = web_server.world
    page = open_page(w.urban_admin, f"/records/?{RANGE}&by=teacher")
    page.wait_for_selector("body[data-loaded='1']", timeout=20_000)
    page.click(f"#unit-table a[data-teacher='{w.teacher.id}']")
    page.wait_for_selector("body[data-loaded='1']", timeout=20_000)
    assert "王老师" in page.inner_text("#title") and page.get_attribute("#st-chart", "data-points") == "2"
    # the current term when no range is asked
    page = open_page(w.teacher, "/")
    page.wait_for_selector("a[href='/records/teacher.html']", timeout=20_000)
    page.click("main a[href='/records/teacher.html']")
    page.wait_for_selector("body[data-loaded='1']", timeout=20_000)
    assert "2026-2027 学年第一学期" in page.inner_text("#subtitle")
    # another teacher's record is refused
    page = open_page(w.teacher2, f"/records/teacher.html?id={w.teacher.id}", allow_console=("403",))
    page.wait_for_function("document.getElementById('title').textContent.includes('无权')", timeout=20_000)
