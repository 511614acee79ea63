"""A page whose socket reaches the wrong node is redirected, joins the one room and decodes the teacher.

Two ``sanke serve`` nodes on one PostgreSQL database and one redis-server, all on 127.0.0.1 and started
and stopped here (``tests.web.cluster``), with one dedicated lesson whose room is open.  The teacher
starts the lesson from ``web/lesson/main.html`` served by the room's owner.  The receiving classroom's
kiosk page is served by the other node, and every join-token answer it gets names that other node's
socket (Playwright rewrites ``ws_url`` in the answer, as a stale answer would after the room moved):
the only thing that can bring the page to the owner is the server's ``redirect`` and close 4010, which
``web/assets/lesson-client.js`` follows once.  The page must end up joined on the owner, in the same
room as the teacher (each lists the other), decoding the teacher's camera (``getStats``, as
``tests/web/test_lesson_pages.py`` checks), and the node it reached first must have opened no room.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TEST_SECRET
from tests.utils.factory import token_for
from tests.utils.wait import wait_until
from tests.web.cluster import Pages, Site, nodes
from tests.web.test_lesson_pages import assert_video_flows, pid, wait_joined

NAMES = ("node-a", "node-b")


@pytest.fixture
def site(pg_server: Any, tmp_path: Path) -> Iterator[Site]:
    with nodes(pg_server, tmp_path, NAMES, database=f"sanke_redirect_{os.getpid()}", classrooms=1) as running:
        yield running


def rooms_open(base: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    return sum(s.value for f in text_string_to_metric_families(text) if f.name == "sanke_rooms" for s in f.samples)


def test_a_page_sent_to_the_wrong_node_is_redirected_joins_and_sees_the_teacher(
        site: Site, browser: Any, js_poll: Any, screenshot: Any) -> None:
    lesson = site.lesson
    [kiosk_user] = lesson.kiosks
    # who owns the room: placed by the first join-token request, answered the same by either node
    r = httpx.post(f"{site.base_of('node-b')}/api/v1/lessons/{lesson.id}/join-token", timeout=30,
                   headers={"Authorization": f"Bearer {token_for(lesson.teacher, TEST_SECRET)}"})
    assert r.status_code == 200, r.text
    owner = r.json()["node_id"]
    wrong = next(n for n in NAMES if n != owner)
    assert site.owner_of(r.json()["ws_url"]) == owner
    wrong_ws = site.ws_of(wrong)
    pages = Pages(browser, lesson.clock_at)

    try:
        teacher_sockets: list[str] = []
        teacher = pages.open(site.base_of(owner), lesson.teacher, teacher_sockets)
        teacher.goto("/lesson/main.html")
        teacher.click(f"[data-action=start][data-lesson='{lesson.id}']")
        main = wait_joined(teacher, js_poll, timeout=30)
        js_poll(teacher, "window.sankeLesson.local.has('camera')", timeout=20)

        kiosk_sockets: list[str] = []
        kiosk = pages.open(site.base_of(wrong), kiosk_user, kiosk_sockets)
        rewritten: list[str] = []

        def stale_answer(route: Any) -> None:  # every answer names the wrong node's socket
            response = route.fetch()
            body = response.json()
            if body.get("ws_url"):
                rewritten.append(body["ws_url"])
                body["ws_url"] = wrong_ws
            route.fulfill(response=response, json=body)

        kiosk.route("**/api/v1/lessons/*/join-token", stale_answer)
        kiosk.goto("/lesson/receiving.html")
        classroom = wait_joined(kiosk, js_poll, timeout=30)

        # first the wrong node (what the answer said), then the owner (what the redirect said), and no more
        assert rewritten and all(site.owner_of(u) == owner for u in rewritten), rewritten
        owner_ws = site.ws_of(owner)
        assert kiosk_sockets == [wrong_ws, owner_ws], kiosk_sockets
        assert teacher_sockets == [owner_ws], teacher_sockets
        # one room: each lists the other
        js_poll(kiosk, f"window.sankeLesson.participants.has({json.dumps(main)})", timeout=10)
        js_poll(teacher, f"window.sankeLesson.participants.has({json.dumps(classroom)})", timeout=10)
        assert pid(kiosk) == classroom
        # and the classroom sees the teacher: frames decoded, and more of them
        assert_video_flows(kiosk, [f"{main}/camera"], js_poll, timeout=30)
        js_poll(kiosk, "document.getElementById('teacher-video').videoWidth > 0", timeout=10)
        screenshot(kiosk, "receiving-after-redirect")
        # the node reached first opened no copy of the room; the owner has it
        wait_until("the owner's room in its metrics", lambda: rooms_open(site.base_of(owner)) == 1.0, 10,
                   interval=0.1)
        assert rooms_open(site.base_of(wrong)) == 0.0
        assert not pages.errors, pages.errors
    finally:
        pages.close()
