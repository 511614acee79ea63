"""A page whose socket reaches the wrong node is redirected, joins the one room and decodes the teacher.

Two ``sanke serve`` nodes (``tests.utils.cluster``) on one PostgreSQL database and one redis-server, all
on 127.0.0.1 and started and stopped here, with one dedicated lesson whose room is open.  The teacher
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
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from scheduler.access import scope_of
from scheduler.bookings import ReceiverSpec, SeriesSpec, create_series
from scheduler.models import LessonInstance, LessonKind
from server.core.db import make_engine, make_session_factory
from server.core.migrate import upgrade
from tests.conftest import TEST_SECRET
from tests.utils.cluster import start_nodes
from tests.utils.factory import World, token_for
from tests.utils.redisserver import RedisServer
from tests.utils.sanke_proc import Served
from tests.utils.tcpcut import TcpCut
from tests.utils.wait import wait_until
from tests.web.conftest import SESSION_KEY
from tests.web.test_lesson_pages import assert_video_flows, pid, wait_joined

NAMES = ("node-a", "node-b")


@dataclass
class Lesson:
    id: int
    clock_at: datetime
    teacher: Any
    kiosk: Any
    """The teacher and the receiving classroom's terminal (detached rows)."""


def prepare(db_url: str) -> Lesson:
    """The test world and one dedicated lesson (one receiving classroom), its room open 4 minutes
    before the start, where the nodes' clock stands."""
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with make_session_factory(engine)() as s:
            w = World.build(s)
            create_series(s, SeriesSpec(
                kind=LessonKind.dedicated, title="三年级数学", subject="数学", grade="三年级", term_id=w.term.id,
                main_classroom_id=w.main_room.id, main_teacher_id=w.teacher.id, weekday=1, period_from=1,
                period_to=1, receivers=(ReceiverSpec(w.recv_room.id),),
            ), actor=w.urban_admin, scope=scope_of(s, w.urban_admin))
            inst = s.scalars(select(LessonInstance).order_by(LessonInstance.starts_at)).first()
            assert inst is not None
            inst.room_opened_at = inst.starts_at - timedelta(minutes=5)
            s.commit()
            for row in (w.teacher, w.terminal_recv):
                s.refresh(row)
                s.expunge(row)
            return Lesson(inst.id, inst.starts_at - timedelta(minutes=4), w.teacher, w.terminal_recv)
    finally:
        engine.dispose()


@dataclass
class Cluster:
    nodes: dict[str, Served]

    def base_of(self, node: str) -> str:
        return self.nodes[node].base

    def ws_base_of(self, node: str) -> str:
        return self.base_of(node).replace("http://", "ws://")

    def owner_of(self, ws_url: str) -> str:
        """The node whose socket ``ws_url`` is."""
        return next(name for name in self.nodes if ws_url.startswith(self.ws_base_of(name) + "/"))


@dataclass
class Site:
    cluster: Cluster
    lesson: Lesson


@pytest.fixture
def site(pg_server: Any, tmp_path: Path) -> Iterator[Site]:
    db_url = pg_server.create_database(f"sanke_redirect_{os.getpid()}")
    lesson = prepare(db_url)
    rs = RedisServer().start()
    try:
        with ExitStack() as stack:
            links: dict[str, TcpCut] = {}
            running = start_nodes(stack, NAMES, redis_url=rs.url, db_url=db_url, redis_port=rs.port,
                                  tmp_path=tmp_path, clock_at=lesson.clock_at, heartbeat_s=1.0, lease_s=3.0,
                                  links=links)
            yield Site(Cluster(running), lesson)
    finally:
        rs.stop()


def rooms_open(base: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    return sum(s.value for f in text_string_to_metric_families(text) if f.name == "sanke_rooms" for s in f.samples)


def test_a_page_sent_to_the_wrong_node_is_redirected_joins_and_sees_the_teacher(
        site: Site, browser: Any, js_poll: Any, screenshot: Any) -> None:
    cluster, lesson = site.cluster, site.lesson
    # who owns the room: placed by the first join-token request, answered the same by either node
    r = httpx.post(f"{cluster.base_of('node-b')}/api/v1/lessons/{lesson.id}/join-token", timeout=30,
                   headers={"Authorization": f"Bearer {token_for(lesson.teacher, TEST_SECRET)}"})
    assert r.status_code == 200, r.text
    owner = r.json()["node_id"]
    wrong = next(n for n in NAMES if n != owner)
    assert cluster.owner_of(r.json()["ws_url"]) == owner
    wrong_ws = f"{cluster.ws_base_of(wrong)}/api/v1/lessons/{lesson.id}/ws"

    contexts: list[Any] = []
    errors: list[str] = []

    def open_page(user: Any, node: str, path: str, sockets: list[str]) -> Any:
        base = cluster.base_of(node)
        ctx = browser.new_context(base_url=base, viewport={"width": 1280, "height": 800}, locale="zh-CN",
                                  timezone_id="Asia/Shanghai")
        contexts.append(ctx)
        ctx.clock.install(time=lesson.clock_at.replace(tzinfo=ZoneInfo("Asia/Shanghai")))
        me = httpx.get(f"{base}/api/v1/auth/me", timeout=10,
                       headers={"Authorization": f"Bearer {token_for(user, TEST_SECRET)}"})
        assert me.status_code == 200, me.text
        stored = json.dumps({"token": token_for(user, TEST_SECRET), "user": me.json()})
        ctx.add_init_script(f"localStorage.setItem({json.dumps(SESSION_KEY)}, {json.dumps(stored)});")
        page = ctx.new_page()
        page.console_log = []
        page.on("console", lambda m: page.console_log.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda exc: errors.append(f"{path}: uncaught: {exc}"))
        page.on("websocket", lambda ws: sockets.append(ws.url))
        return page

    try:
        teacher_sockets: list[str] = []
        teacher = open_page(lesson.teacher, owner, "/lesson/main.html", teacher_sockets)
        teacher.goto("/lesson/main.html")
        teacher.click(f"[data-action=start][data-lesson='{lesson.id}']")
        main = wait_joined(teacher, js_poll, timeout=30)
        js_poll(teacher, "window.sankeLesson.local.has('camera')", timeout=20)

        kiosk_sockets: list[str] = []
        kiosk = open_page(lesson.kiosk, wrong, "/lesson/receiving.html", kiosk_sockets)
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
        assert rewritten and all(cluster.owner_of(u) == owner for u in rewritten), rewritten
        owner_ws = f"{cluster.ws_base_of(owner)}/api/v1/lessons/{lesson.id}/ws"
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
        wait_until("the owner's room in its metrics", lambda: rooms_open(cluster.base_of(owner)) == 1.0, 10,
                   interval=0.1)
        assert rooms_open(cluster.base_of(wrong)) == 0.0
        assert not errors, errors
    finally:
        for ctx in contexts:
            try:
                ctx.close()
            except Exception:  # noqa: BLE001 - the browser may be gone already
                pass
