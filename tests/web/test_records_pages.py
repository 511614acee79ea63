"""The reports dashboard and the lesson teaching-record page in a real browser (fixtures: ``tests/web/conftest.py``).

The server's clock stands at 2026-09-07 07:55; the stored records of ``build_reports_world``
(2026-09-07..14) give the pages something to draw.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from scheduler.models import LessonInstance
from scheduler.records_models import SessionEvent
from tests.scheduler.test_record_reports import ReportsWorld, build_reports_world

RANGE = "date_from=2026-09-07&date_to=2026-09-14"


@pytest.fixture
def reports(web_server: Any) -> ReportsWorld:
    w = web_server.world
    with web_server.session_factory() as s:
        rw = build_reports_world(s, w)
        # L1's log as the records API recomputes it: the main classroom published the whole lesson, and
        # the receiving classroom's link was sampled every 10 s
        l1 = s.get(LessonInstance, rw.lessons["L1"])
        start = l1.starts_at
        for sec, kind, source in ((-60, "join", None), (60, "publish", "camera"), (2380, "unpublish", "camera"),
                                  (2390, "leave", None)):
            s.add(SessionEvent(instance_id=l1.id, at=start + timedelta(seconds=sec), kind=kind, participant_id="m1",
                               user_id=w.terminal_main.id, classroom_id=w.main_room.id, role="main",
                               data={"source": source} if source else None))
        # who spoke (classroom insight): the teacher 60–900 s and 1200–2380 s, the classroom 900–1200 s
        for pid, user, room, role, a, b in (("m1", w.terminal_main, w.main_room, "main", 60, 900),
                                            ("r1", w.terminal_recv, w.recv_room, "receiving", 900, 1200),
                                            ("m1", w.terminal_main, w.main_room, "main", 1200, 2380)):
            s.add(SessionEvent(instance_id=l1.id, at=start + timedelta(seconds=b + 1), kind="speech", participant_id=pid,
                               user_id=user.id, classroom_id=room.id, role=role, data={"s": b - a, "ago": 1.0}))
        for k in range(3, 240):
            bad = 100 <= k < 110
            s.add(SessionEvent(instance_id=l1.id, at=start + timedelta(seconds=10 * k), kind="link_quality",
                               participant_id="r1", user_id=w.terminal_recv.id, classroom_id=w.recv_room.id,
                               role="receiving", data={"loss": 0.12 if bad else 0.004, "rtt_ms": 480 if bad else 60 + k % 7,
                                                       "jitter_ms": 4, "bitrate_kbps": 900}))
        s.commit()
    return rw


def _canvas_drawn(page: Any, selector: str) -> bool:
    """The chart's canvas exists and has pixels that are not all one colour."""
    return bool(page.evaluate("""(sel) => {
        const c = document.querySelector(sel + ' canvas');
        if (!c || !c.width || !c.height) return false;
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const seen = new Set();
        for (let i = 0; i < d.length; i += 4 * 37) { seen.add(d[i] + ',' + d[i+1] + ',' + d[i+2] + ',' + d[i+3]); if (seen.size > 3) return true; }
        return false;
    }""", selector))


@pytest.mark.parametrize("viewport", [(1920, 1080), (1366, 768)])
def test_the_dashboard_draws_its_charts_and_tables(open_page: Any, web_server: Any, reports: ReportsWorld,
                                                   screenshot: Any, viewport: tuple[int, int]) -> None:
    page = open_page(web_server.world.city_admin, f"/records/?{RANGE}", viewport=viewport)
    page.wait_for_selector("body[data-loaded='1']", timeout=20_000)
    for chart in ("#trend-chart", "#unit-chart", "#kind-chart"):
        assert _canvas_drawn(page, chart), chart
    kpis = page.inner_text("#kpis")
    assert "开课率" in kpis and "到课率" in kpis
    # stored records count whenever they were made: 5 of the 6 recorded lessons took place; the rest is not over yet
    assert "83.3%" in kpis and "应开课 6 节" in kpis
    rows = page.query_selector_all("#unit-table tbody tr")
    assert {r.query_selector("td").inner_text() for r in rows} == {"东区", "西区"}
    links = [a.get_attribute("href") for a in page.query_selector_all("#lesson-table a.btn")]
    assert f"/records/lesson.html?id={reports.lessons['L1']}" in links
    page.click("#dims [data-dim='school']")
    page.wait_for_function("document.querySelector('#unit-col').textContent === '学校'")
    assert page.query_selector_all("#unit-table tbody tr")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= viewport[0], f"the page scrolls sideways at {viewport}"
    screenshot(page, f"records-dashboard-{viewport[0]}")


def test_the_dashboard_downloads_a_report(open_page: Any, web_server: Any, reports: ReportsWorld) -> None:
    page = open_page(web_server.world.sysadmin, f"/records/?{RANGE}")
    page.wait_for_selector("body[data-loaded='1']", timeout=20_000)
    with page.expect_download() as info:
        page.click(".exports[data-report='summary'] [data-format='csv']")
    download = info.value
    assert download.suggested_filename == "sanke-summary-2026-09-07_2026-09-14.csv"
    with open(download.path(), encoding="utf-8-sig") as fh:
        text = fh.read()
    assert text.splitlines()[0].startswith("日期,应开课,已开课") and "合计" in text


def test_the_lesson_record_page(open_page: Any, web_server: Any, reports: ReportsWorld, screenshot: Any) -> None:
    lid = reports.lessons["L1"]
    page = open_page(web_server.world.sysadmin, f"/records/lesson.html?id={lid}")
    page.wait_for_selector("body[data-loaded='1']", timeout=20_000)
    assert "已开课" in page.inner_text("#status")
    facts = page.inner_text("#facts")
    assert "08:01" in facts and "准时" in facts
    rows = page.query_selector_all("#attendance tbody tr")
    assert [r.get_attribute("data-role") for r in rows] == ["main", "receiving", "receiving"]
    assert "08:00–08:10" in rows[1].inner_text()  # the stays of the stored record
    assert _canvas_drawn(page, "#timelines .chart-sm")
    assert page.is_visible("#evaluations-card") and "80.0" in page.inner_text("#evaluations")
    assert page.query_selector("#recording a") is None  # no recording yet
    screenshot(page, "records-lesson")


def test_the_lesson_record_page_shows_the_st_analysis_and_who_spoke(open_page: Any, web_server: Any,
                                                                      reports: ReportsWorld) -> None:
    lid = reports.lessons["L1"]
    page = open_page(web_server.world.sysadmin, f"/records/lesson.html?id={lid}")
    page.wait_for_selector("body[data-loaded='1']", timeout=20_000)
    assert page.is_visible("#insight-card")
    # 30 s samples from 08:01 to 08:39:40: 77 of them, 10 of the classroom (900–1200 s) → Rt 0.87, a lecture
    codes = page.get_attribute("#insight", "data-codes")
    assert len(codes) == 77 and codes.count("S") == 10 and codes[28:38] == "S" * 10
    assert page.inner_text("#insight .insight-rt") == "0.87" and "讲授型" in page.inner_text("#insight .insight-facts")
    assert _canvas_drawn(page, "#insight .st-curve")
    row = page.locator(f"#insight .speakers tbody tr[data-unit='receiving:{web_server.world.recv_room.id}']")
    assert [c.strip() for c in row.locator("td").all_inner_texts()][1:3] == ["5.0", "1"]
    page.select_option("#st-interval", "3")  # the fine timeline
    page.wait_for_function("document.getElementById('insight').dataset.codes.length === 773")


def test_the_lesson_page_shows_the_recording_and_hides_evaluations_from_other_researchers(
        open_page: Any, web_server: Any, reports: ReportsWorld) -> None:
    from scheduler.records_models import TeachingRecord

    lid = reports.lessons["L2"]
    with web_server.session_factory() as s:
        s.get(TeachingRecord, lid).recording_id = 42
        s.commit()
    page = open_page(web_server.world.researcher_a, f"/records/lesson.html?id={lid}")
    page.wait_for_selector("body[data-loaded='1']", timeout=20_000)
    assert page.get_attribute("#recording a", "href") == "/replay/?id=42"
    assert not page.is_visible("#evaluations-card")  # 西区教研员's evaluation is not 东区教研员's to read


def test_home_links_the_reports_for_staff_only(open_page: Any, web_server: Any) -> None:
    w = web_server.world
    page = open_page(w.researcher_a, "/")
    page.wait_for_selector("#entries a.tile[href='/records/']")
    page = open_page(w.terminal_recv, "/")
    page.wait_for_selector("#lessons")
    assert page.query_selector("#entries a.tile[href='/records/']") is None


def test_the_lesson_record_names_each_classroom_by_its_own_school(open_page: Any, web_server: Any) -> None:
    """Two receiving classrooms of one name at two schools, one absent: each row shows its own school, and the
    absent one is the other school's, not the present one's."""
    from tests.server.api.routes.test_records_api import SAME_NAME, build_same_names

    w = web_server.world
    with web_server.session_factory() as s:
        sn = build_same_names(s, w)
    page = open_page(w.city_admin, f"/records/lesson.html?id={sn.lesson_id}")
    page.wait_for_selector("body[data-loaded='1']", timeout=20_000)
    came = page.locator(f"#attendance tbody tr[data-unit='receiving:{sn.present_room}']")
    absent = page.locator(f"#attendance tbody tr[data-unit='receiving:{sn.absent_room}']")
    cells = lambda row: [c.strip() for c in row.locator("td").all_inner_texts()]  # noqa: E731
    c, a = cells(came), cells(absent)
    assert c[1:3] == ["东区石桥村小", SAME_NAME] and a[1:3] == ["西区山口村小", SAME_NAME]
    assert c[4] == "10:00" and c[7] == "10:00–10:40"  # first join and its stay, from the stored record
    assert a[4] == "未进入" and a[6] == "0.0" and a[7] == "—"
    assert "1 / 2" in page.inner_text("#facts")
