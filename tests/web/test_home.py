"""Login and the role-aware home page in a real browser (fixtures: ``tests/web/conftest.py``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.utils.factory import PASSWORD
from tests.web.conftest import LESSON_DAY

STUB = "<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'><link rel='icon' href='data:,'>" \
       "<title>stub</title></head><body><h1>另一位同事的页面</h1></body></html>"
"""The lesson and patrol pages belong to other parts of the issue: these tests only check that a login lands there."""


def stub_other_clients(page: Any) -> None:
    for pattern in ("**/lesson/**", "**/patrol/**"):
        page.route(pattern, lambda route: route.fulfill(status=200, content_type="text/html", body=STUB))


def sign_in(page: Any, username: str, password: str = PASSWORD) -> None:
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login-submit")


def path_of(page: Any) -> str:
    return urlsplit(page.url).path


def test_login_lands_each_role_on_its_own_page(open_page: Any, web_server: Any, screenshot: Any) -> None:
    w = web_server.world
    expected = [
        (w.urban_admin, "/admin/"),
        (w.teacher, "/lesson/main.html"),
        (w.terminal_recv, "/lesson/receiving.html"),
        (w.researcher_a, "/patrol/"),
        (w.student, "/"),
    ]
    for user, landing in expected:
        page = open_page(None, "/login.html")
        stub_other_clients(page)
        sign_in(page, user.username)
        page.wait_for_url(lambda url, landing=landing: urlsplit(url).path == landing, timeout=10_000)
        assert path_of(page) == landing, (user.username, page.url)
        stored = page.evaluate("JSON.parse(localStorage.getItem('sanke.session'))")
        assert stored["user"]["username"] == user.username and stored["token"]
        if landing in ("/admin/", "/"):
            page.wait_for_selector(".app-header .who")
            assert user.display_name in page.inner_text(".app-header .who")
            screenshot(page, f"landing-{user.username}")


def test_a_wrong_password_shows_the_servers_message_and_stays(open_page: Any, web_server: Any,
                                                             screenshot: Any) -> None:
    page = open_page(None, "/login.html", viewport=(1366, 768),
                     allow_console=(r"401 \(Unauthorized\)",))
    sign_in(page, web_server.world.teacher.username, "wrong-password")
    page.wait_for_function("document.getElementById('login-error').textContent.length > 0")
    assert page.inner_text("#login-error") == "用户名或密码错误"
    assert path_of(page) == "/login.html"
    assert page.evaluate("localStorage.getItem('sanke.session')") is None
    screenshot(page, "login-error-1366")


def test_signed_out_visitor_is_sent_to_login_and_back_to_the_page_asked_for(open_page: Any, web_server: Any) -> None:
    page = open_page(None, "/admin/timetable.html")
    page.wait_for_url("**/login.html?next=*")
    assert "next=%2Fadmin%2Ftimetable.html" in page.url
    sign_in(page, web_server.world.urban_admin.username)
    page.wait_for_url(lambda url: urlsplit(url).path == "/admin/timetable.html")
    page.wait_for_selector("#week-grid")


@pytest.mark.parametrize("viewport", [(1920, 1080), (1366, 768)])
def test_teacher_home_shows_entry_points_and_todays_lessons(open_page: Any, web_server: Any, screenshot: Any,
                                                            viewport: tuple[int, int]) -> None:
    page = open_page(web_server.world.teacher, "/", viewport=viewport)
    row = page.wait_for_selector(f"#lessons tr[data-lesson='{web_server.lesson_id}']")
    text = row.inner_text()
    assert "三年级数学" in text and "08:00–08:40" in text and "石桥村小 一年级教室" in text
    link = row.query_selector("a.btn")
    assert link.get_attribute("href") == f"/lesson/main.html?lesson={web_server.lesson_id}"
    tiles = [t.get_attribute("href") for t in page.query_selector_all("#entries a.tile")]
    assert tiles == ["/lesson/main.html", "/timetable.html", "/records/teacher.html", "/records/"]
    assert "2026年9月7日" in page.inner_text("#lessons-note")
    screenshot(page, f"home-teacher-{viewport[0]}")


def test_student_home_lists_their_lessons_with_links_to_the_student_page(open_page: Any, web_server: Any,
                                                                          screenshot: Any) -> None:
    w = web_server.world
    web_server.book(kind="famous_school", title="名校网络课堂 数学", main_classroom_id=w.main_room2.id,
                    main_teacher_id=w.teacher2.id, weekday=LESSON_DAY.isoweekday() + 1, period_from=2,
                    receivers=[], participant_ids=[w.student.id])
    mine = web_server.lessons(w.student)
    assert mine
    page = open_page(w.student, "/")
    page.wait_for_selector("#lessons tr[data-lesson]")
    first = mine[0]
    row = page.query_selector(f"#lessons tr[data-lesson='{first['id']}']")
    assert row is not None
    assert row.query_selector("a.btn").get_attribute("href") == f"/lesson/student.html?lesson={first['id']}"
    assert page.inner_text("#lessons-title") == "我的课程（近两周）"
    screenshot(page, "home-student")


def test_a_non_admin_opening_an_admin_page_is_sent_home_with_a_clear_message(open_page: Any,
                                                                             web_server: Any) -> None:
    for path in ("/admin/", "/admin/timetable.html", "/admin/import.html", "/admin/demand.html"):
        page = open_page(web_server.world.teacher, path)
        page.wait_for_url(lambda url: urlsplit(url).path == "/")
        toast = page.wait_for_selector(".toast")
        assert "无权访问" in toast.inner_text() and "教师" in toast.inner_text()


def test_logout_forgets_the_session(open_page: Any, web_server: Any) -> None:
    page = open_page(None, "/login.html")  # signed in by the form: the fixture's stored session would come back
    sign_in(page, web_server.world.urban_admin.username)
    page.wait_for_url(lambda url: urlsplit(url).path == "/admin/")
    page.click(".app-header button:has-text('退出')")
    page.wait_for_url("**/login.html")
    assert page.evaluate("localStorage.getItem('sanke.session')") is None
