"""Admin and timetable pages in a real browser (fixtures: ``tests/web/conftest.py``).

The server holds the ``World`` and one dedicated lesson on Monday ``LESSON_DAY`` 08:00-08:40 (period 1) in
``world.main_room`` taught by ``world.teacher``; the browsers' clock stands at 07:55 that day.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.web.conftest import LESSON_DAY

WEEK = LESSON_DAY.isoformat()


def grid_for_classroom(open_page: Any, site: Any, classroom: Any, **kw: Any) -> Any:
    page = open_page(site.world.urban_admin, f"/admin/timetable.html?classroom={classroom.id}&week={WEEK}", **kw)
    page.wait_for_selector("#week-grid")
    return page


def free_cell(page: Any, day: str, period: int) -> Any:
    return page.locator(f".wg-cell[data-day='{day}'][data-period='{period}'] .wg-free")


def fill_booking(page: Any, *, teacher: Any, subject: str = "科学", grade: str = "四年级", kind: str = "dedicated",
                 receivers: tuple[int, ...] = ()) -> None:
    page.wait_for_selector("#booking-form")
    page.select_option("#f-kind", kind)
    page.fill("#f-subject", subject)
    page.fill("#f-grade", grade)
    page.select_option("#f-main_teacher_id", str(teacher.id))
    for rid in receivers:
        page.check(f"#receivers input[value='{rid}']")


def test_the_week_grid_shows_the_worlds_lessons(open_page: Any, web_server: Any, screenshot: Any) -> None:
    w = web_server.world
    web_server.book(title="四年级英语", subject="英语", grade="四年级", weekday=3, period_from=3, period_to=4)
    for viewport in ((1920, 1080), (1366, 768)):
        page = grid_for_classroom(open_page, web_server, w.main_room, viewport=viewport)
        cell = page.wait_for_selector(f".wg-cell[data-day='{WEEK}'][data-period='1'] .wg-lesson")
        assert cell.get_attribute("data-lesson") == str(web_server.lesson_id)
        assert "三年级数学" in cell.inner_text() and "08:00–08:40" in cell.inner_text()
        wed = page.wait_for_selector(".wg-cell[data-day='2026-09-09'][data-period='3'] .wg-lesson")
        assert "四年级英语" in wed.inner_text()
        assert "第 2 周" in page.inner_text("#timetable")
        # the same week per teacher
        screenshot(page, f"week-grid-classroom-{viewport[0]}")
    page = open_page(w.urban_admin, f"/admin/timetable.html?teacher={w.teacher.id}&week={WEEK}")
    page.wait_for_selector(f".wg-lesson[data-lesson='{web_server.lesson_id}']")
    assert page.locator(".wg-lesson").count() == 2
    screenshot(page, "week-grid-teacher")


def test_booking_a_clashing_slot_shows_the_conflict_in_words_and_books_nothing(open_page: Any, web_server: Any,
                                                                             screenshot: Any) -> None:
    w = web_server.world
    page = grid_for_classroom(open_page, web_server, w.main_room2)
    free_cell(page, WEEK, 1).click()
    fill_booking(page, teacher=w.teacher, receivers=(w.recv_room.id,))  # teacher and receiving room both taken
    page.get_by_role("button", name="确认排课").click()
    box = page.wait_for_selector("#conflict-box")
    # one line per weekly pattern, naming the period, the classroom's role and school and the lesson's teacher
    sentences = [li.inner_text() for li in box.query_selector_all("ul.conflicts > li")]
    assert len(sentences) == 2, sentences
    assert any(s.startswith("每周一 第1节 08:00–08:40，第2–5、7–21周，共19次：教师“王老师”已有课程《三年级数学》")
               for s in sentences), sentences
    assert any(s.startswith("每周一 第1节 08:00–08:40，第2–5、7–21周，共19次：接收教室“石桥村小 一年级教室”（东区石桥村小）"
                            "已有课程《三年级数学》（王老师）") for s in sentences), sentences
    screenshot(page, "booking-conflict")
    assert web_server.lessons(w.urban_admin, classroom_id=w.main_room2.id) == []
    assert page.locator("dialog[open]").count() == 1  # the dialog stays for the clerk to change the slot


def test_booking_a_free_slot_books_the_series(open_page: Any, web_server: Any, screenshot: Any) -> None:
    w = web_server.world
    page = grid_for_classroom(open_page, web_server, w.main_room2)
    free_cell(page, WEEK, 2).click()
    fill_booking(page, teacher=w.teacher2, receivers=(w.recv_room2.id,))
    page.get_by_role("button", name="检查冲突").click()
    assert "没有冲突" in page.wait_for_selector("#check-ok").inner_text()
    page.get_by_role("button", name="确认排课").click()
    page.wait_for_selector(".toast-ok")
    assert page.locator("dialog[open]").count() == 0
    booked = web_server.lessons(w.urban_admin, classroom_id=w.main_room2.id)
    assert booked and {x["teacher_id"] for x in booked} == {w.teacher2.id}
    assert {x["title"] for x in booked} == {"四年级科学"}
    assert all(x["period_from"] == 2 and x["day"] >= WEEK for x in booked)
    assert [r["classroom_id"] for r in booked[0]["receivers"]] == [w.recv_room2.id]
    new = next(x for x in booked if x["day"] == WEEK)
    page.wait_for_selector(f".wg-lesson[data-lesson='{new['id']}']")  # the grid shows it
    screenshot(page, "booked")


def test_cancel_from_the_grid_cancels_the_instance(open_page: Any, web_server: Any, screenshot: Any) -> None:
    w = web_server.world
    page = grid_for_classroom(open_page, web_server, w.main_room)
    page.click(f".wg-lesson[data-lesson='{web_server.lesson_id}']")
    page.get_by_role("button", name="停课").click()
    page.fill("#f-reason", "学校运动会")
    page.get_by_role("button", name="确认停课").click()
    page.wait_for_selector(f".wg-lesson.s-cancelled[data-lesson='{web_server.lesson_id}']")
    lesson = web_server.http.get(f"/api/v1/lessons/{web_server.lesson_id}", headers=web_server.headers(w.urban_admin)).json()
    assert lesson["status"] == "cancelled" and lesson["cancel_reason"] == "学校运动会"
    screenshot(page, "cancelled")


def test_reschedule_from_the_grid_moves_the_instance(open_page: Any, web_server: Any, screenshot: Any) -> None:
    w = web_server.world
    web_server.book(title="四年级英语", subject="英语", grade="四年级", weekday=2, period_from=3)
    tue = web_server.lessons(w.urban_admin, date_from="2026-09-08", date_to="2026-09-08")
    assert len(tue) == 1
    old = tue[0]
    page = grid_for_classroom(open_page, web_server, w.main_room)
    page.click(f".wg-lesson[data-lesson='{old['id']}']")
    page.get_by_role("button", name="调课").click()
    page.fill("#f-day", "2026-09-10")
    page.fill("#f-period_from", "4")
    page.fill("#f-period_to", "4")
    page.fill("#f-reason", "教师外出教研")
    page.get_by_role("button", name="确认调课").click()
    moved = page.wait_for_selector(".wg-cell[data-day='2026-09-10'][data-period='4'] .wg-lesson")
    new_id = int(moved.get_attribute("data-lesson"))
    h = web_server.headers(w.urban_admin)
    new = web_server.http.get(f"/api/v1/lessons/{new_id}", headers=h).json()
    assert new["rescheduled_from_id"] == old["id"] and new["day"] == "2026-09-10" and new["period_from"] == 4
    assert web_server.http.get(f"/api/v1/lessons/{old['id']}", headers=h).json()["status"] == "cancelled"
    screenshot(page, "rescheduled")


def test_a_reschedule_into_a_taken_slot_shows_the_servers_message(open_page: Any, web_server: Any) -> None:
    w = web_server.world
    web_server.book(title="四年级英语", subject="英语", grade="四年级", weekday=2, period_from=3)
    old = web_server.lessons(w.urban_admin, date_from="2026-09-08", date_to="2026-09-08")[0]
    # the browser itself logs the refused request; the page shows it as it should
    page = grid_for_classroom(open_page, web_server, w.main_room, allow_console=(r"409 \(Conflict\)",))
    page.click(f".wg-lesson[data-lesson='{old['id']}']")
    page.get_by_role("button", name="调课").click()
    page.fill("#f-day", "2026-09-14")  # next Monday, period 1: the dedicated series is there
    page.fill("#f-period_from", "1")
    page.fill("#f-period_to", "1")
    page.fill("#f-reason", "调到周一")
    page.get_by_role("button", name="确认调课").click()
    alert = page.wait_for_selector("dialog[open] .alert-error")
    assert "冲突" in alert.inner_text() and "三年级数学" in alert.inner_text()
    h = web_server.headers(w.urban_admin)
    assert web_server.http.get(f"/api/v1/lessons/{old['id']}", headers=h).json()["status"] == "scheduled"


def test_substitute_from_the_grid(open_page: Any, web_server: Any) -> None:
    w = web_server.world
    page = grid_for_classroom(open_page, web_server, w.main_room)
    page.click(f".wg-lesson[data-lesson='{web_server.lesson_id}']")
    page.get_by_role("button", name="代课").click()
    page.select_option("#f-teacher_id", str(w.teacher2.id))
    page.fill("#f-reason", "王老师病假")
    page.get_by_role("button", name="确认代课").click()
    page.wait_for_selector(".toast-ok")
    lesson = web_server.http.get(f"/api/v1/lessons/{web_server.lesson_id}", headers=web_server.headers(w.urban_admin)).json()
    assert lesson["teacher_id"] == w.teacher2.id and lesson["substitute"] is True


def test_import_dry_run_shows_errors_per_row(open_page: Any, web_server: Any, screenshot: Any, tmp_path: Path) -> None:
    w = web_server.world
    csv = tmp_path / "课表.csv"
    csv.write_text(
        "课程名称,类型,学科,年级,学期,主讲教室,主讲教师,星期,节次,接收教室\n"
        f"四年级科学,专递课堂,科学,四年级,{w.term.name},{w.main_room2.name},{w.teacher2.username},3,5,{w.recv_room2.name}\n"
        f"五年级数学,专递课堂,数学,五年级,{w.term.name},{w.main_room.name},{w.teacher.username},周八,2,\n"
        f"五年级语文,专递课堂,语文,五年级,没有这个学期,{w.main_room.name},{w.teacher.username},2,2,\n",
        encoding="utf-8")
    page = open_page(w.urban_admin, "/admin/import.html", viewport=(1366, 768))
    page.set_input_files("#file", str(csv))
    page.click("#dry-run")
    page.wait_for_selector("#report-errors")
    rows = [[c.inner_text() for c in tr.query_selector_all("td")] for tr in page.query_selector_all("#report tbody tr")]
    assert ["第 3 行", "星期"] in [r[:2] for r in rows], rows
    assert ["第 4 行", "学期"] in [r[:2] for r in rows], rows
    assert all(r[2] for r in rows)  # every error has its reason
    assert "周八" in next(r[2] for r in rows if r[0] == "第 3 行")
    assert page.is_disabled("#commit")
    screenshot(page, "import-dry-run-errors")
    assert web_server.lessons(w.urban_admin, classroom_id=w.main_room2.id) == []

    good = tmp_path / "good.csv"
    good.write_text(csv.read_text(encoding="utf-8").splitlines()[0] + "\n"
                    + csv.read_text(encoding="utf-8").splitlines()[1] + "\n", encoding="utf-8")
    page.set_input_files("#file", str(good))
    page.click("#dry-run")
    page.wait_for_selector("#report-ok")
    assert web_server.lessons(w.urban_admin, classroom_id=w.main_room2.id) == []  # a dry run writes nothing
    page.click("#commit")
    page.wait_for_selector("#report-ok:has-text('导入成功')")
    assert web_server.lessons(w.urban_admin, classroom_id=w.main_room2.id)


def test_the_sample_offered_on_the_import_page_passes_its_dry_run(open_page: Any, web_server: Any,
                                                                   tmp_path: Path) -> None:
    w = web_server.world
    page = open_page(w.urban_admin, "/admin/import.html")
    page.wait_for_selector("#columns table")
    with page.expect_download() as download:
        page.click("#sample")
    sample = tmp_path / "课表示例.csv"
    download.value.save_as(sample)
    page.set_input_files("#file", str(sample))
    page.click("#dry-run")
    assert "全部可以导入" in page.wait_for_selector("#report-ok").inner_text()


# ---------------------------------------------------------------- series: approval queue and cancelling


def request_series(site: Any, teacher: Any, room: Any, **kw: Any) -> int:
    """A teacher's own request (pending until an admin of the main school approves it)."""
    w = site.world
    body = {"kind": "dedicated", "title": "四年级科学", "subject": "科学", "grade": "四年级", "term_id": w.term.id,
            "main_classroom_id": room.id, "main_teacher_id": teacher.id, "weekday": 3, "period_from": 2,
            "receivers": [{"classroom_id": w.recv_room2.id}]}
    body.update(kw)
    r = site.http.post("/api/v1/series", json=body, headers=site.headers(teacher))
    assert r.status_code == 201 and r.json()["status"] == "pending", r.text
    return int(r.json()["id"])


def series_status(site: Any, series_id: int) -> str:
    return str(site.http.get(f"/api/v1/series/{series_id}", headers=site.headers(site.world.sysadmin)).json()["status"])


def test_an_admin_approves_one_request_and_rejects_another_with_a_reason(open_page: Any, web_server: Any,
                                                                          screenshot: Any) -> None:
    site, w = web_server, web_server.world
    science = request_series(site, w.teacher2, w.main_room2)
    music = request_series(site, w.teacher2, w.main_room2, title="四年级音乐", subject="音乐", weekday=4)
    page = open_page(w.urban_admin, "/admin/series.html")
    page.wait_for_selector(f"tr[data-series='{music}']")
    row = page.locator(f"tr[data-series='{science}']")
    text = row.inner_text()
    assert "四年级科学" in text and "每周三 第2节" in text and "李老师" in text and "石桥村小 二年级教室" in text
    assert page.inner_text("#pending-count").strip() == "2"
    screenshot(page, "series-pending")

    row.get_by_role("button", name="批准").click()
    page.get_by_role("button", name="批准并排课").click()
    page.wait_for_selector(f"tr[data-series='{science}']", state="detached")
    assert series_status(site, science) == "approved"
    booked = site.lessons(w.urban_admin, classroom_id=w.main_room2.id)
    assert booked and {x["title"] for x in booked} == {"四年级科学"}

    page.locator(f"tr[data-series='{music}']").get_by_role("button", name="驳回").click()
    page.get_by_role("button", name="驳回", exact=True).last.click()  # empty reason: the form refuses
    assert page.locator("dialog[open]").count() == 1 and series_status(site, music) == "pending"
    page.fill("#f-reason", "周四第2节音乐教室已安排教研活动")
    page.locator("dialog[open]").get_by_role("button", name="驳回").click()
    page.wait_for_selector(f"tr[data-series='{music}']", state="detached")
    assert series_status(site, music) == "rejected"
    trail = site.http.get("/api/v1/audit", params={"entity": "series", "entity_id": music},
                          headers=site.headers(w.urban_admin)).json()
    assert trail[-1]["action"] == "reject" and trail[-1]["reason"] == "周四第2节音乐教室已安排教研活动"
    assert "没有待审批的排课申请" in page.inner_text("#series-list")
    page.click("#tabs .tab[data-tab='rejected']")
    assert "周四第2节音乐教室已安排教研活动" in page.locator(f"tr[data-series='{music}']").inner_text()
    # the teacher finds the answer under their own week
    mine = open_page(w.teacher2, "/timetable.html")
    row = mine.locator(f"#my-requests tr[data-series='{music}']")
    row.wait_for()
    assert "已驳回" in row.inner_text() and "周四第2节音乐教室已安排教研活动" in row.inner_text()
    assert "实验小学教务" in row.inner_text()
    assert mine.locator(f"#my-requests tr[data-series='{science}']").count() == 0  # approved: in the week grid
    screenshot(mine, "teacher-requests")


def test_cancelling_a_whole_series_takes_its_lessons_off_the_timetable(open_page: Any, web_server: Any,
                                                                      screenshot: Any) -> None:
    site, w = web_server, web_server.world
    sid = site.book(title="三年级英语", subject="英语", main_classroom_id=w.main_room2.id,
                    main_teacher_id=w.teacher2.id, period_from=3, receivers=[{"classroom_id": w.recv_room2.id}])
    grid = grid_for_classroom(open_page, site, w.main_room2)
    grid.wait_for_selector(".wg-lesson.s-scheduled:has-text('三年级英语')")

    page = open_page(w.urban_admin, "/admin/series.html#approved")
    row = page.locator(f"tr[data-series='{sid}']")
    row.wait_for()
    row.get_by_role("button", name="整体停课").click()
    assert "不能撤销" in page.inner_text("#cancel-warning")
    page.fill("#f-reason", "英语教师调离，本学期停开")
    screenshot(page, "series-cancel-confirm")
    page.get_by_role("button", name="确认停课").click()
    page.wait_for_selector(f"tr[data-series='{sid}']", state="detached")
    assert series_status(site, sid) == "cancelled"
    lessons = [x for x in site.lessons(w.urban_admin, classroom_id=w.main_room2.id) if x["series_id"] == sid]
    assert lessons and {x["status"] for x in lessons} == {"cancelled"}

    grid.reload()
    grid.wait_for_selector("#week-grid")
    assert grid.locator(".wg-lesson.s-scheduled:has-text('三年级英语')").count() == 0
    assert grid.locator(".wg-lesson.s-cancelled:has-text('三年级英语')").count() == 1
    assert "共 0 节课" in grid.inner_text("#timetable")


def test_a_school_admin_sees_only_their_own_schools_requests(open_page: Any, web_server: Any) -> None:
    site, w = web_server, web_server.world
    ours = request_series(site, w.teacher2, w.main_room2)
    with site.session_factory() as s:  # a classroom of 西区第一小学, where 赵老师 teaches
        from scheduler.models import Classroom
        room_b = Classroom(school_id=w.urban_b.id, name="西区一小 主讲教室", capacity=40)
        s.add(room_b)
        s.commit()
        s.refresh(room_b)
        s.expunge(room_b)
    theirs = request_series(site, w.teacher_b, room_b, receivers=[{"classroom_id": w.recv_room_b.id}],
                            subject="数学", title="四年级数学")
    page = open_page(w.urban_admin, "/admin/series.html")
    page.wait_for_selector(f"tr[data-series='{ours}']")
    assert page.locator(f"tr[data-series='{theirs}']").count() == 0
    page = open_page(w.admin_b, "/admin/series.html")
    page.wait_for_selector(f"tr[data-series='{theirs}']")
    assert page.locator(f"tr[data-series='{ours}']").count() == 0
    # the receiving school's admin sees the request in its timetable, but it is not theirs to approve
    page = open_page(w.rural_admin, "/admin/series.html")
    page.wait_for_selector("#series-list")
    assert page.locator("tr[data-series]").count() == 0
    page = open_page(w.city_admin, "/admin/series.html")
    page.wait_for_selector(f"tr[data-series='{theirs}']")
    assert page.locator(f"tr[data-series='{ours}'] button:has-text('批准')").count() == 1


def test_a_teacher_subscribes_a_calendar_app_to_their_lessons_and_can_revoke_it(open_page: Any, web_server: Any,
                                                                               screenshot: Any) -> None:
    import httpx
    from icalendar import Calendar

    site, w = web_server, web_server.world
    page = open_page(w.teacher, "/timetable.html")
    page.wait_for_selector(f".wg-lesson[data-lesson='{site.lesson_id}']")
    page.click("#tt-subscribe")
    url = page.wait_for_selector("#feed-url").input_value()
    assert url.startswith(f"{site.base}/api/v1/timetable/teachers/{w.teacher.id}.ics?token=")
    screenshot(page, "subscribe-calendar")
    # a calendar app: a plain GET of the link, no login
    r = httpx.get(url, timeout=20)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/calendar")
    events = [c for c in Calendar.from_ical(r.content).walk("VEVENT")]
    lesson = next(x for x in site.lessons(w.teacher) if x["id"] == site.lesson_id)
    assert len(events) == len(site.lessons(w.teacher, limit=500)) and len(events) >= 19
    assert any(e.decoded("DTSTART") == datetime.fromisoformat(lesson["starts_at"]) for e in events)  # the same instant
    assert {str(e["SUMMARY"]) for e in events} == {"《三年级数学》 专递课堂"}
    page.get_by_role("button", name="停用所有订阅链接").click()
    page.wait_for_selector(".toast-ok")
    assert httpx.get(url, timeout=20).status_code == 401


ADMIN_PAGES = [
    ("/admin/#schools", "#panel table"),
    ("/admin/#classrooms", "#panel table"),
    ("/admin/#pairings", "#panel table"),
    ("/admin/#terms", "#panel table"),
    ("/admin/#schemes", "#panel .card"),
    ("/admin/timetable.html", "#week-grid"),
    ("/admin/import.html", "#columns table"),
    ("/admin/series.html", "#series-list table"),
    ("/admin/demand.html", "#board table"),
]


@pytest.mark.parametrize("viewport", [(1920, 1080), (1366, 768)])
def test_every_admin_page_renders_without_console_errors(open_page: Any, web_server: Any, screenshot: Any,
                                                         viewport: tuple[int, int]) -> None:
    w = web_server.world
    for path, ready in ADMIN_PAGES:
        page = open_page(w.urban_admin, path, viewport=viewport)
        page.wait_for_selector(ready)
        page.wait_for_load_state("networkidle")
        assert page.locator(".toast-error").count() == 0, page.inner_text("body")
        name = path.strip("/").replace("/", "-").replace("#", "").replace(".html", "") or "admin"
        screenshot(page, f"{name}-{viewport[0]}")
    page = open_page(w.teacher, "/timetable.html", viewport=viewport)
    page.wait_for_selector(f".wg-lesson[data-lesson='{web_server.lesson_id}']")
    assert page.locator(".wg-free").count() == 0  # read-only for teachers
    screenshot(page, f"teacher-timetable-{viewport[0]}")


def test_directory_dialogs_create_and_show_server_errors(open_page: Any, web_server: Any) -> None:
    w = web_server.world
    page = open_page(w.urban_admin, f"/admin/#classrooms?school={w.urban.id}",
                     allow_console=(r"422 \(Unprocessable Entity\)",))  # the refused save, logged by the browser
    page.wait_for_selector("#panel table")
    page.get_by_role("button", name="新建教室").click()
    page.fill("#f-name", "实验小学 303 录播教室")
    page.get_by_role("button", name="保存").click()
    page.wait_for_selector("#panel td:has-text('实验小学 303 录播教室')")
    # a bell that ends before it starts: the server's message shows in the dialog, which stays open
    page.goto(f"/admin/#schemes?school={w.urban.id}")
    page.get_by_role("button", name="编辑").first.click()
    page.fill("dialog[open] .p-end >> nth=0", "07:00")
    page.get_by_role("button", name="保存").click()
    alert = page.wait_for_selector("dialog[open] .alert-error")
    assert alert.inner_text().strip()
    assert page.locator("dialog[open]").count() == 1


def test_an_admin_lets_home_students_of_a_famous_school_series_watch_the_stream(open_page: Any,
                                                                              web_server: Any) -> None:
    site, w = web_server, web_server.world
    sid = site.book(kind="famous_school", title="名校数学直播", receivers=[], participant_ids=[w.student.id],
                    main_classroom_id=w.main_room2.id, main_teacher_id=w.teacher2.id, weekday=5, period_from=4)
    page = open_page(w.urban_admin, "/admin/series.html#approved")
    row = page.locator(f"tr[data-series='{sid}']")
    row.wait_for()
    row.get_by_role("button", name="在家学生观看方式").click()
    page.locator("dialog[open] #f-stream_from").select_option(label="在线学生多于 30 人时观看直播流")
    page.locator("dialog[open]").get_by_role("button", name="保存").click()
    page.wait_for_selector("dialog[open]", state="detached")
    lessons = [x for x in site.lessons(w.student) if x["series_id"] == sid]
    assert lessons and {x["stream_from"] for x in lessons} == {30}
    trail = site.http.get("/api/v1/audit", params={"entity": "series", "entity_id": sid},
                          headers=site.headers(w.urban_admin)).json()
    assert trail[-1]["action"] == "stream_from" and trail[-1]["details"] == {"from": None, "to": 30}
