"""Lesson pages against several ``sanke serve`` nodes: the one way the browser tests set that up.

``prepare(db_url, classrooms)`` migrates a fresh PostgreSQL database and books one dedicated lesson with
one or two receiving classrooms, its room open, the nodes' clock four minutes before its start.
``nodes(...)`` starts the nodes (``tests.utils.cluster``) on one redis-server, all on 127.0.0.1, and stops
them and the server again.  ``Pages`` opens each user's page in a browser context of its own, signed in,
its clock at the lesson's, noting every socket it opens and every uncaught error, and closes them all.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import select

from scheduler.access import scope_of
from scheduler.bookings import ReceiverSpec, SeriesSpec, create_series
from scheduler.models import LessonInstance, LessonKind, Role
from server.core.db import make_engine, make_session_factory
from server.core.migrate import upgrade
from tests.conftest import TEST_SECRET
from tests.utils.cluster import start_nodes
from tests.utils.factory import World, add_user, token_for
from tests.utils.redisserver import RedisServer
from tests.utils.sanke_proc import Served
from tests.utils.tcpcut import TcpCut
from tests.web.conftest import SESSION_KEY

LEASE_S = 3.0
"""The room lease of the nodes (``SANKE_ROOM_LEASE_SECONDS``'s default), renewed every third of it."""


@dataclass
class Lesson:
    id: int
    clock_at: datetime
    """Where the nodes' (and the pages') clock starts: four minutes before the lesson, its room open."""
    teacher: Any
    kiosks: tuple[Any, ...]
    """The receiving classrooms' terminals, in the order booked."""
    observer: Any
    """The region's researcher, who may watch the lesson from the patrol wall (巡课)."""


def prepare(db_url: str, classrooms: int) -> Lesson:
    """The test world and one dedicated lesson with ``classrooms`` (1 or 2) receiving classrooms, its room
    open since 5 minutes before the start (detached rows)."""
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with make_session_factory(engine)() as s:
            w = World.build(s)
            rooms = (w.recv_room, w.recv_room2)[:classrooms]
            kiosks = [w.terminal_recv]
            if classrooms > 1:
                kiosks.append(add_user(s, "term_recv2", Role.terminal, classroom=w.recv_room2, name="石桥二年级终端"))
            create_series(s, SeriesSpec(
                kind=LessonKind.dedicated, title="三年级数学", subject="数学", grade="三年级", term_id=w.term.id,
                main_classroom_id=w.main_room.id, main_teacher_id=w.teacher.id, weekday=1, period_from=1,
                period_to=1, receivers=tuple(ReceiverSpec(r.id) for r in rooms),
            ), actor=w.urban_admin, scope=scope_of(s, w.urban_admin))
            inst = s.scalars(select(LessonInstance).order_by(LessonInstance.starts_at)).first()
            assert inst is not None
            inst.room_opened_at = inst.starts_at - timedelta(minutes=5)
            s.commit()
            for row in (w.teacher, *kiosks, w.researcher_a):
                s.refresh(row)
                s.expunge(row)
            return Lesson(inst.id, inst.starts_at - timedelta(minutes=4), w.teacher, tuple(kiosks), w.researcher_a)
    finally:
        engine.dispose()


@dataclass
class Site:
    nodes: dict[str, Served]
    redis_url: str
    lesson: Lesson

    def base_of(self, node: str) -> str:
        return self.nodes[node].base

    def ws_of(self, node: str) -> str:
        """The lesson's signaling socket on ``node``."""
        return f"{self.base_of(node).replace('http://', 'ws://')}/api/v1/lessons/{self.lesson.id}/ws"

    def owner_of(self, ws_url: str) -> str:
        """The node whose socket ``ws_url`` is."""
        return next(name for name in self.nodes if ws_url == self.ws_of(name))


@contextmanager
def nodes(pg_server: Any, tmp_path: Path, names: tuple[str, ...], *, database: str, classrooms: int,
          **settings: str) -> Iterator[Site]:
    """``names`` nodes (heartbeat 1 s, lease ``LEASE_S``, one media worker each, ICE on 127.0.0.1) on one
    PostgreSQL database (``database``, with the lesson of ``prepare``) and one redis-server."""
    db_url = pg_server.create_database(database)
    lesson = prepare(db_url, classrooms)
    rs = RedisServer().start()
    try:
        with ExitStack() as stack:
            links: dict[str, TcpCut] = {}
            running = start_nodes(stack, names, redis_url=rs.url, db_url=db_url, redis_port=rs.port,
                                  tmp_path=tmp_path, clock_at=lesson.clock_at, heartbeat_s=1.0, lease_s=LEASE_S,
                                  links=links, SANKE_ICE_HOST_ADDRESSES="127.0.0.1",
                                  SANKE_ICE_ALLOWED_NETWORKS="127.0.0.0/8", **settings)
            yield Site(running, rs.url, lesson)
    finally:
        rs.stop()


@dataclass
class Pages:
    """Pages in contexts of their own (``close`` closes them); ``errors``: their uncaught exceptions."""

    browser: Any
    clock_at: datetime
    contexts: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def open(self, base: str, user: Any, sockets: list[str]) -> Any:
        """A page of ``base`` signed in as ``user``, not navigated yet (a test may route requests first);
        the URL of every socket it opens is appended to ``sockets``."""
        ctx = self.browser.new_context(base_url=base, viewport={"width": 1280, "height": 800}, locale="zh-CN",
                                       timezone_id="Asia/Shanghai")
        self.contexts.append(ctx)
        ctx.clock.install(time=self.clock_at.replace(tzinfo=ZoneInfo("Asia/Shanghai")))
        me = httpx.get(f"{base}/api/v1/auth/me", timeout=10,
                       headers={"Authorization": f"Bearer {token_for(user, TEST_SECRET)}"})
        assert me.status_code == 200, me.text
        stored = json.dumps({"token": token_for(user, TEST_SECRET), "user": me.json()})
        ctx.add_init_script(f"localStorage.setItem({json.dumps(SESSION_KEY)}, {json.dumps(stored)});")
        page = ctx.new_page()
        page.console_log = []
        page.on("console", lambda m: page.console_log.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: uncaught: {exc}"))
        page.on("websocket", lambda ws: sockets.append(ws.url))
        page.set_default_navigation_timeout(60_000)  # a loaded CI machine takes its time to load a page
        return page

    def close(self) -> None:
        for ctx in self.contexts:
            try:
                ctx.close()
            except Exception:  # noqa: BLE001 - the browser may be gone already
                pass
