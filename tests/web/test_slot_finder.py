"""查找空闲时段 on the series page in a real browser (fixtures: ``tests/web/conftest.py``).

The server holds the ``World`` and one dedicated series on Monday period 1 all term (``world.teacher`` in
``world.main_room`` to ``world.recv_room`` and ``world.recv_room2``); its clock reads Monday 2026-09-07.
Weeks 7–10 (10-12 .. 11-13) hold no holiday.
"""

from __future__ import annotations

from typing import Any


def find_science_slots(open_page: Any, w: Any) -> Any:
    """The urban admin's series page: 查找空闲时段 for 三年级科学 by 王老师 in room 301 to 石桥村小 一年级, weeks 7–10."""
    page = open_page(w.urban_admin, "/admin/series.html#approved")
    page.click("#find-slots")
    page.wait_for_selector("#slot-form")
    assert page.inner_text(f"#f-pairing option[value='{w.pairing.id}']") == "东区实验小学 → 东区石桥村小"
    page.select_option("#f-pairing", str(w.pairing.id))
    page.wait_for_selector(f"#f-teacher_id option[value='{w.teacher.id}']", state="attached")
    page.select_option("#f-teacher_id", str(w.teacher.id))
    page.select_option("#f-main_classroom_id", str(w.main_room.id))
    page.check(f"#slot-receivers .recv[value='{w.recv_room.id}']")
    page.fill("#f-subject", "科学")
    page.fill("#f-grade", "三年级")
    page.fill("#f-title", "三年级科学")
    page.fill("#f-weeks", "7-10")
    page.get_by_role("button", name="查找", exact=True).click()
    return page


def test_the_admin_finds_the_free_common_slots_and_books_one_with_a_click(open_page: Any, web_server: Any,
                                                                         screenshot: Any) -> None:
    w = web_server.world
    page = find_science_slots(open_page, w)

    first = page.wait_for_selector("#slot-proposals > li.slot")
    assert (first.get_attribute("data-weekday"), first.get_attribute("data-period")) == ("1", "2")
    assert "每周一 第2节 08:50–09:30" in first.inner_text() and "共 4 节，每周都空闲" in first.inner_text()
    assert "东区石桥村小 · 石桥村小 一年级教室 第2节 08:45–09:35" in first.inner_text()
    # Monday period 1 is last: taken every week, each week named with what is in the way
    last = page.locator("#slot-proposals > li.slot").last
    assert (last.get_attribute("data-weekday"), last.get_attribute("data-period")) == ("1", "1")
    assert last.get_attribute("data-bookable") == "false" and last.locator("[data-action='book']").is_disabled()
    assert "每周都有冲突，不能排课" in last.inner_text()
    weeks = last.locator("ul.conflicts > li")
    assert weeks.count() == 4
    assert weeks.first.inner_text().startswith("第7周 10-12（周一）：教师“王老师”已有课程《三年级数学》")
    assert "接收教室“石桥村小 一年级教室”（东区石桥村小）已有课程《三年级数学》" in weeks.first.inner_text()
    screenshot(page, "slot-finder")

    first.query_selector("[data-action='book']").click()
    # booked: the list is drawn again and Monday period 2 is now in the way every week
    page.wait_for_selector("#slot-proposals > li.slot[data-weekday='1'][data-period='2'][data-bookable='false']")
    assert page.locator("#slot-proposals > li.slot").first.get_attribute("data-period") == "3"
    booked = [lesson for lesson in web_server.lessons(w.urban_admin, classroom_id=w.main_room.id,
                                                      date_from="2026-10-12", date_to="2026-11-13", limit=50)
              if lesson["title"] == "三年级科学"]
    assert [b["starts_at"][:16] for b in booked] == ["2026-10-12T08:50", "2026-10-19T08:50", "2026-10-26T08:50",
                                                     "2026-11-02T08:50"]
    page.wait_for_selector("#series-list [data-series]")
    assert "三年级科学" in page.inner_text("#series-list")


def test_a_slot_taken_in_one_week_books_around_it_with_a_click(open_page: Any, web_server: Any) -> None:
    """王老师 has a lesson on Tuesday 10-20 (week 8) period 1: that slot books weeks 7, 9 and 10 with a click."""
    w = web_server.world
    r = web_server.http.post("/api/v1/series", headers=web_server.headers(w.urban_admin), json={
        "kind": "master", "title": "教研公开课", "subject": "数学", "grade": "三年级", "term_id": w.term.id,
        "main_classroom_id": w.main_room2.id, "main_teacher_id": w.teacher.id, "weekday": 2, "period_from": 1,
        "week_from": 8, "week_to": 8, "receivers": []})
    assert r.status_code == 201, r.text
    page = find_science_slots(open_page, w)
    tue1 = page.wait_for_selector("#slot-proposals > li.slot[data-weekday='2'][data-period='1']")
    assert "1 周有冲突；跳过第8周排课，共 3 节" in tue1.inner_text()
    assert "第8周 10-20（周二）：教师“王老师”已有课程《教研公开课》" in tue1.inner_text()
    button = tue1.query_selector("[data-action='book']")
    assert button.inner_text() == "跳过冲突周排课" and button.is_enabled()
    button.click()
    page.wait_for_selector("#slot-proposals > li.slot[data-weekday='2'][data-period='1'] >> text=每周都有冲突，不能排课")
    booked = [lesson["starts_at"][:10] for lesson in web_server.lessons(
        w.urban_admin, classroom_id=w.main_room.id, date_from="2026-10-12", date_to="2026-11-13", limit=50)
        if lesson["title"] == "三年级科学"]
    assert booked == ["2026-10-13", "2026-10-27", "2026-11-03"]


def test_an_urban_admin_answers_a_demand_order_with_a_proposed_slot(open_page: Any, web_server: Any) -> None:
    w = web_server.world
    r = web_server.http.post("/api/v1/demand-orders", json={
        "term_id": w.term.id, "subject": "美术", "grade": "二年级", "receiving_classroom_id": w.recv_room2.id,
        "preferred_slots": [{"weekday": 3, "period": 5}]}, headers=web_server.headers(w.rural_admin))
    assert r.status_code == 201, r.text
    order = r.json()["id"]
    page = open_page(w.urban_admin, "/admin/demand.html")
    page.get_by_role("button", name="查看").first.click()
    page.get_by_role("button", name="响应需求").click()
    page.wait_for_selector(f"#f-teacher_id option[value='{w.teacher2.id}']", state="attached")
    page.select_option("#f-teacher_id", str(w.teacher2.id))
    page.select_option("#f-main_classroom_id", str(w.main_room2.id))
    page.click("#order-find-slots")
    first = page.wait_for_selector("#order-slot-proposals > li.slot")
    # the order's preferred slot (Wednesday, the village school's period 5) first among the free ones
    assert (first.get_attribute("data-weekday"), first.get_attribute("data-period")) == ("3", "5")
    assert "每周三 第5节 14:00–14:40（需求方期望时段）" in first.inner_text()
    assert "石桥村小 二年级教室 第5节 13:50–14:40" in first.inner_text()
    # Monday period 1: the receiving classroom has 三年级数学 every week
    mon1 = page.locator("#order-slot-proposals > li.slot[data-weekday='1'][data-period='1']")
    assert mon1.get_attribute("data-bookable") == "false"
    first.query_selector("[data-action='use']").click()
    assert page.input_value("#f-weekday") == "3" and page.input_value("#f-period_from") == "5"
    page.get_by_role("button", name="提交响应").click()
    page.wait_for_selector("dialog[open]", state="detached")
    offers = web_server.http.get(f"/api/v1/demand-orders/{order}", headers=web_server.headers(w.rural_admin))
    (offer,) = offers.json()["offers"]
    assert (offer["teacher_id"], offer["weekday"], offer["period_from"], offer["period_to"]) == (w.teacher2.id, 3, 5, 5)
