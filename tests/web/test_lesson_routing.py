"""Who lands on which lesson page: the main classroom's terminal on the main classroom, an assistant (助教)
on the receiving classroom they assist, a teacher with both kinds of lessons today on both
(fixtures: ``tests/web/conftest.py``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from tests.web.test_home import sign_in, stub_other_clients
from tests.web.test_lesson_pages import assert_no_emoji

DAY = "2026-09-07"


def path_of(page: Any) -> str:
    u = urlsplit(page.url)
    return u.path + (f"?{u.query}" if u.query else "")


def book_assisted(site: Any, assistant: Any, **more: Any) -> dict[str, Any]:
    """A dedicated lesson at period 2 today whose first receiving classroom has ``assistant`` as 助教."""
    w = site.world
    body = {"title": "三年级英语", "subject": "英语", "period_from": 2,
            "receivers": [{"classroom_id": w.recv_room.id, "assistant_id": assistant.id}]}
    body.update(more)
    site.book(**body)
    return next(l for l in site.lessons(w.urban_admin, date_from=DAY, date_to=DAY) if l["title"] == body["title"])


def test_login_lands_the_main_terminal_and_the_assistant_on_their_classroom(open_page: Any, web_server: Any) -> None:
    w = web_server.world
    book_assisted(web_server, w.assistant)
    for user, landing in [(w.terminal_main, "/lesson/main.html"), (w.assistant, "/lesson/receiving.html"),
                          (w.terminal_recv, "/lesson/receiving.html"), (w.teacher, "/lesson/main.html")]:
        page = open_page(None, "/login.html")
        stub_other_clients(page)
        sign_in(page, user.username)
        page.wait_for_url(lambda url, landing=landing: urlsplit(url).path == landing, timeout=10_000)
        assert urlsplit(page.url).path == landing, user.username


def test_the_main_classroom_terminal_gets_the_main_classroom_page(open_page: Any, web_server: Any,
                                                                  js_poll: Any, screenshot: Any) -> None:
    w = web_server.world
    lid = web_server.lesson_id
    # the server seats it as the main classroom
    r = web_server.http.post(f"/api/v1/lessons/{lid}/join-token", headers=web_server.headers(w.terminal_main))
    assert r.status_code == 200 and r.json()["lesson_role"] == "main", r.text

    home = open_page(w.terminal_main, "/")
    row = home.wait_for_selector(f"#lessons tr[data-lesson='{lid}'] a.btn")
    assert row.get_attribute("href") == f"/lesson/main.html?lesson={lid}"
    home.wait_for_selector("#entries a.tile[href='/lesson/main.html']")
    assert home.query_selector("#entries a.tile[href='/lesson/receiving.html']") is None  # it receives nothing today
    assert_no_emoji(home)

    # the receiving kiosk, opened by hand or by a link to the lesson, hands it over to the main classroom page
    for start in ("/lesson/receiving.html", f"/lesson/receiving.html?lesson={lid}"):
        page = open_page(w.terminal_main, start)
        page.wait_for_url(lambda url: urlsplit(url).path == "/lesson/main.html", timeout=10_000)
    page.click(f"[data-action=start][data-lesson='{lid}']")
    js_poll(page, "window.sankeLesson && window.sankeLesson.state === 'joined'", timeout=15)
    assert page.evaluate("window.sankeLesson.role") == "main"
    assert page.query_selector("#btn-hand") is None
    assert page.is_visible("#btn-end") and page.is_visible("#btn-mute-all")
    assert_no_emoji(page)
    screenshot(page, "terminal-main")


def test_an_assistant_lands_on_the_classroom_they_assist(open_page: Any, web_server: Any, js_poll: Any,
                                                         screenshot: Any) -> None:
    w = web_server.world
    assisted = book_assisted(web_server, w.assistant)
    web_server.open_room(assisted["id"])

    home = open_page(w.assistant, "/")
    link = home.wait_for_selector(f"#lessons tr[data-lesson='{assisted['id']}'] a.btn")
    assert link.get_attribute("href") == f"/lesson/receiving.html?lesson={assisted['id']}"
    assert "助教" in link.inner_text()
    home.wait_for_selector("#entries a.tile[href='/lesson/receiving.html']")

    # the receiving classroom page finds the lesson they assist (not the first lesson of their school)
    page = open_page(w.assistant, "/lesson/receiving.html")
    js_poll(page, "window.sankeLesson && window.sankeLesson.state === 'joined'", timeout=15)
    assert page.inner_text("#lesson-title") == "三年级英语"
    assert page.evaluate("window.sankeLesson.role") == "receiving"
    assert page.is_visible("#btn-hand")
    assert_no_emoji(page)
    screenshot(page, "assistant-receiving")

    # the main classroom page (the top bar's 主讲课堂) does not leave them at "no lessons"
    main = open_page(w.assistant, "/lesson/main.html")
    a = main.wait_for_selector(f"#assist-list [data-lesson='{assisted['id']}'] a.btn")
    assert a.get_attribute("href") == f"/lesson/receiving.html?lesson={assisted['id']}"
    assert "接收的课程见下方" in main.inner_text("#picker-note")


def test_a_teacher_who_teaches_and_assists_today_sees_both(open_page: Any, web_server: Any, screenshot: Any) -> None:
    w = web_server.world
    assisted = book_assisted(web_server, w.teacher2)
    web_server.book(kind="famous_school", title="名校语文", subject="语文", main_classroom_id=w.main_room2.id,
                    main_teacher_id=w.teacher2.id, period_from=3, receivers=[], participant_ids=[w.student.id])
    own = next(l for l in web_server.lessons(w.urban_admin, date_from=DAY, date_to=DAY) if l["title"] == "名校语文")

    home = open_page(w.teacher2, "/")
    home.wait_for_selector("#entries a.tile[href='/lesson/receiving.html']")
    tiles = [t.get_attribute("href") for t in home.query_selector_all("#entries a.tile")]
    assert tiles[:3] == ["/lesson/main.html", "/lesson/receiving.html", "/timetable.html"], tiles
    assert home.get_attribute(f"#lessons tr[data-lesson='{own['id']}'] a.btn", "href") == \
        f"/lesson/main.html?lesson={own['id']}"
    assert home.get_attribute(f"#lessons tr[data-lesson='{assisted['id']}'] a.btn", "href") == \
        f"/lesson/receiving.html?lesson={assisted['id']}"

    main = open_page(w.teacher2, "/lesson/main.html")
    main.wait_for_selector(f"#lesson-list [data-action=start][data-lesson='{own['id']}']")
    main.wait_for_selector(f"#assist-list [data-lesson='{assisted['id']}'] a.btn")
    assert main.query_selector(f"#lesson-list [data-lesson='{assisted['id']}']") is None
    assert_no_emoji(main)
    screenshot(main, "teacher-both")

    # a link to the assisted lesson on the main classroom page goes to the receiving classroom
    other = open_page(w.teacher2, f"/lesson/main.html?lesson={assisted['id']}")
    other.wait_for_url(lambda url: urlsplit(url).path == "/lesson/receiving.html", timeout=10_000)
