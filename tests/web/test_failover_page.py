"""The lesson pages outlive their node: ``kill -9`` of the owner, and real Chromium is back by itself.

Three ``sanke serve`` nodes (``tests.utils.cluster``) on one PostgreSQL database and one redis-server,
all on 127.0.0.1 and started and stopped here, and one dedicated lesson with two receiving classrooms, watched by the region's researcher from the
patrol wall (巡课, ``web/patrol/``).
The pages come from a node that is not the room's owner (as from a load balancer in front of the
nodes, which stops sending anyone to a dead node); their sockets and media go to the owner, as the
join-token answers say.  The teacher starts the lesson from ``web/lesson/main.html`` with Chromium's
fake camera; the two classrooms' kiosks (``web/lesson/receiving.html``) join by themselves.  The
teacher puts classroom A on stage and mutes classroom B's microphone, B raises its hand, A and the
teacher chat.  Then the owner is killed with SIGKILL, and nobody touches anything: every page decodes
video again (frames on its new connections, and more of them) within ``BACK_BOUND_S`` — the
seconds are printed, the issue's goal being 5 s — on another node; A is still on stage, B still
muted with its hand up (the teacher's hand list and B's own button say so), and each chat line is
shown once on every page, in order (a page reloaded before the kill shows them again, once).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import redis
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
from tests.utils.wait import wait_until
from tests.web.conftest import SESSION_KEY
from tests.web.test_lesson_pages import assert_video_flows, pid, wait_joined

NAMES = ("node-a", "node-b", "node-c")
LEASE_S = 3.0
GOAL_S = 5.0
"""Issue 13: every page decodes again within this long of the kill (printed, not asserted)."""
BACK_BOUND_S = 15.0
"""What is asserted: the goal stretched for a loaded 2-core CI machine (three Chromium pages with fake
cameras, three nodes, PostgreSQL and Redis share it)."""
LINES = ("老师，第三题我们班有疑问。", "好的，马上讲。")


@dataclass
class Lesson:
    id: int
    clock_at: datetime
    teacher: Any
    kiosk_a: Any
    kiosk_b: Any
    observer: Any
    """The region's researcher, who watches the lesson from the patrol wall (巡课)."""


def prepare(db_url: str) -> Lesson:
    """The test world and one dedicated lesson with two receiving classrooms, its room open 4 minutes
    before the start, where the nodes' clock stands."""
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with make_session_factory(engine)() as s:
            w = World.build(s)
            kiosk_b = add_user(s, "term_recv2", Role.terminal, classroom=w.recv_room2, name="石桥二年级终端")
            create_series(s, SeriesSpec(
                kind=LessonKind.dedicated, title="三年级数学", subject="数学", grade="三年级", term_id=w.term.id,
                main_classroom_id=w.main_room.id, main_teacher_id=w.teacher.id, weekday=1, period_from=1,
                period_to=1, receivers=(ReceiverSpec(w.recv_room.id), ReceiverSpec(w.recv_room2.id)),
            ), actor=w.urban_admin, scope=scope_of(s, w.urban_admin))
            inst = s.scalars(select(LessonInstance).order_by(LessonInstance.starts_at)).first()
            assert inst is not None
            inst.room_opened_at = inst.starts_at - timedelta(minutes=5)
            s.commit()
            for row in (w.teacher, w.terminal_recv, kiosk_b, w.researcher_a):
                s.refresh(row)
                s.expunge(row)
            return Lesson(inst.id, inst.starts_at - timedelta(minutes=4), w.teacher, w.terminal_recv, kiosk_b,
                          w.researcher_a)
    finally:
        engine.dispose()


@dataclass
class Site:
    nodes: dict[str, Served]
    redis: redis.Redis
    lesson: Lesson

    def ws_of(self, node: str) -> str:
        return self.nodes[node].base.replace("http://", "ws://")


@pytest.fixture
def site(pg_server: Any, tmp_path: Path) -> Iterator[Site]:
    db_url = pg_server.create_database(f"sanke_failover_page_{os.getpid()}")
    lesson = prepare(db_url)
    rs = RedisServer().start()
    try:
        with ExitStack() as stack:
            links: dict[str, TcpCut] = {}
            nodes = start_nodes(stack, NAMES, redis_url=rs.url, db_url=db_url, redis_port=rs.port, tmp_path=tmp_path,
                                clock_at=lesson.clock_at, heartbeat_s=1.0, lease_s=LEASE_S, links=links,
                                SANKE_ICE_HOST_ADDRESSES="127.0.0.1", SANKE_ICE_ALLOWED_NETWORKS="127.0.0.0/8",
                                SANKE_EVENT_FLUSH_INTERVAL_SECONDS="0.2")
            r = redis.Redis.from_url(rs.url)
            stack.callback(r.close)
            yield Site(nodes, r, lesson)
    finally:
        rs.stop()


WATCH_JS = """(keys) => {
  // from now on, note the first moment every video in `keys` ("<user id>/camera", or "stage/camera")
  // decodes frames on a subscriber connection made after this call (after the failover: a new session,
  // new participant ids, so the keys name users)
  const lc = window.sankeLesson;
  const before = lc.subscriber;
  window.__backAt = null;
  const tick = async () => {
    const pc = lc.subscriber;
    if (pc && pc !== before) {
      const stats = await pc.getStats();
      const frames = {};
      stats.forEach((s) => {
        if (s.type !== 'inbound-rtp' || s.kind !== 'video') return;
        const m = lc._mids.get(s.mid);
        if (!m) return;
        const p = lc.participants.get(m.participantId);
        const who = m.participantId === 'stage' ? 'stage' : (p ? String(p.user_id) : m.participantId);
        frames[who + '/' + m.source] = s.framesDecoded || 0;
      });
      if (keys.every((k) => (frames[k] || 0) > 0)) { window.__backAt = Date.now(); return; }
    }
    setTimeout(tick, 20);
  };
  tick();
  return Date.now();
}"""

CHAT_JS = """() => [...document.querySelectorAll('.chat-list li:not(.chat-system) div')].map((d) => d.textContent)"""


def pid_of(page: Any, user_id: int) -> str | None:
    return page.evaluate("""(uid) => { const p = [...window.sankeLesson.participants.values()]
        .find((x) => x.user_id === uid); return p ? p.participant_id : null; }""", user_id)


def test_kill_9_of_the_owner_the_pages_come_back_by_themselves_as_they_were(
        site: Site, browser: Any, js_poll: Any, screenshot: Any) -> None:
    lesson = site.lesson
    headers = {"Authorization": f"Bearer {token_for(lesson.teacher, TEST_SECRET)}"}
    r = httpx.post(f"{site.nodes['node-a'].base}/api/v1/lessons/{lesson.id}/join-token", timeout=30, headers=headers)
    assert r.status_code == 200, r.text
    owner = r.json()["node_id"]
    front = next(n for n in NAMES if n != owner)  # where the pages come from, and their API requests go
    base = site.nodes[front].base
    owner_ws = f"{site.ws_of(owner)}/api/v1/lessons/{lesson.id}/ws"

    contexts: list[Any] = []
    errors: list[str] = []

    def open_page(user: Any, path: str, sockets: list[str]) -> Any:
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
        page.set_default_navigation_timeout(60_000)
        page.goto(path)
        return page

    try:
        sockets: dict[str, list[str]] = {"teacher": [], "a": [], "b": [], "observer": []}
        teacher = open_page(lesson.teacher, "/lesson/main.html", sockets["teacher"])
        teacher.click(f"[data-action=start][data-lesson='{lesson.id}']")
        main = wait_joined(teacher, js_poll, timeout=30)
        js_poll(teacher, "window.sankeLesson.local.has('camera')", timeout=20)
        a = open_page(lesson.kiosk_a, "/lesson/receiving.html", sockets["a"])
        b = open_page(lesson.kiosk_b, "/lesson/receiving.html", sockets["b"])
        pa, pb = wait_joined(a, js_poll, timeout=30), wait_joined(b, js_poll, timeout=30)
        patrol = open_page(lesson.observer, "/patrol/", sockets["observer"])
        tile = f".wall-tile[data-lesson='{lesson.id}']"
        patrol.wait_for_selector(tile, timeout=30000)
        patrol.click(f"{tile} [data-action=watch]")
        js_poll(patrol, "window.sankeLesson && window.sankeLesson.state === 'joined' "
                        "&& window.sankeLesson.role === 'observer'", timeout=30)
        pages = {"teacher": teacher, "a": a, "b": b, "observer": patrol}
        for name, page in pages.items():
            assert set(sockets[name]) == {owner_ws}, (name, sockets[name])

        # the lesson as it goes: A on stage, B muted by the teacher with its hand up, two chat lines
        for p in (pa, pb):
            js_poll(teacher, f"document.querySelector(\"[data-participant='{p}'] [data-action=stage]\") !== null",
                    timeout=15)
        teacher.click(f".remote-tile[data-participant='{pa}'] [data-action=stage]")
        js_poll(a, "!document.getElementById('stage-flag').hidden", timeout=10)
        teacher.click(f".remote-tile[data-participant='{pb}'] [data-action=mute]")
        js_poll(b, "!document.getElementById('mute-flag').hidden", timeout=10)
        b.click("#btn-hand")
        js_poll(teacher, f"document.querySelector(\"#hand-list [data-participant='{pb}']\") !== null", timeout=10)
        for page, text in ((a, LINES[0]), (teacher, LINES[1])):
            page.fill(".chat-input", text)
            page.press(".chat-input", "Enter")
            js_poll(page, "document.querySelector('.chat-input').value === ''", timeout=10)
        both = json.dumps(json.dumps(list(LINES), ensure_ascii=False, separators=(",", ":")))
        for page in (teacher, a, b):
            js_poll(page, f"JSON.stringify(({CHAT_JS})()) === {both}", timeout=10)
        # a reloaded page resumes its session and shows the room's recent chat again, each line once
        a.reload()
        js_poll(a, "window.sankeLesson && window.sankeLesson.state === 'joined'", timeout=30)
        assert pid(a) == pa
        js_poll(a, f"JSON.stringify(({CHAT_JS})()) === {both}", timeout=10)
        sockets["a"][:] = sockets["a"][-1:]
        ids = {"teacher": lesson.teacher.id, "a": lesson.kiosk_a.id, "b": lesson.kiosk_b.id}
        watched = {  # who decodes whose camera
            "teacher": [f"{ids['a']}/camera", f"{ids['b']}/camera"],
            "a": [f"{ids['teacher']}/camera"],
            "b": [f"{ids['teacher']}/camera", "stage/camera"],
            "observer": [f"{ids['teacher']}/camera"],
        }
        before_keys = {"teacher": [f"{pa}/camera", f"{pb}/camera"], "a": [f"{main}/camera"],
                       "b": [f"{main}/camera", "stage/camera"], "observer": [f"{main}/camera"]}
        for name, page in pages.items():
            assert_video_flows(page, before_keys[name], js_poll, timeout=30)
        # what the owner keeps in Redis has it all (written within a moment of each change)
        key = f"sanke:room-state:{lesson.id}"

        def snapshot_complete() -> bool:
            raw = site.redis.get(key)
            if raw is None:
                return False
            snap = json.loads(raw)
            muted = (snap.get("users") or {}).get(str(ids["b"]), {}).get("muted_by_teacher") or []
            return (len(snap.get("chat") or []) == 2 and snap.get("on_stage") == ids["a"]
                    and snap.get("hands") == [ids["b"]] and "microphone" in muted)

        wait_until("the room's snapshot", snapshot_complete, 10, interval=0.05)

        # each page watches itself from now on; its clock is the lesson's, so note how it stands to ours
        offsets = {}
        for name, page in pages.items():
            t0 = time.time()
            page_now = page.evaluate(WATCH_JS, watched[name])
            offsets[name] = page_now - (t0 + time.time()) / 2 * 1000
        process = site.nodes[owner].process
        killed = time.time()
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)

        back: dict[str, float] = {}
        deadline = time.monotonic() + BACK_BOUND_S + 30
        while len(back) < len(pages):
            for name, page in pages.items():
                at = page.evaluate("window.__backAt") if name not in back else None
                if at:
                    back[name] = round((at - offsets[name]) / 1000 - killed, 2)
            assert time.monotonic() < deadline, f"no frames again on {sorted(set(pages) - set(back))} (back: {back})"
            time.sleep(0.1)
        print(f"failover of the pages: kill -9 of {owner}; decoding again after {back} s "
              f"(goal {GOAL_S} s, bound {BACK_BOUND_S} s, load {os.getloadavg()[0]:.1f})")
        assert max(back.values()) <= BACK_BOUND_S, back

        # on another node, every page
        new_ws = {name: s[-1] for name, s in sockets.items()}
        assert len(set(new_ws.values())) == 1 and owner_ws not in new_ws.values(), sockets
        for page in pages.values():
            js_poll(page, "window.sankeLesson.state === 'joined'", timeout=10)
        npa, npb, nmain = pid_of(teacher, ids["a"]), pid_of(teacher, ids["b"]), pid_of(a, ids["teacher"])
        assert npa and npb and nmain and {npa, npb} != {pa, pb}  # new sessions
        # frames keep coming, on the new connections
        after_keys = {"teacher": [f"{npa}/camera", f"{npb}/camera"], "a": [f"{nmain}/camera"],
                      "b": [f"{nmain}/camera", "stage/camera"], "observer": [f"{nmain}/camera"]}
        for name, page in pages.items():
            assert_video_flows(page, after_keys[name], js_poll, timeout=20)
        js_poll(a, "document.getElementById('teacher-video').videoWidth > 0", timeout=10)
        js_poll(b, "!document.getElementById('stage-view').hidden "
                   "&& document.getElementById('stage-video').videoWidth > 0", timeout=10)
        # as before: A on stage, B muted by the teacher with its hand up, as each page shows it
        assert teacher.evaluate("window.sankeLesson.room.on_stage") == npa
        js_poll(a, "!document.getElementById('stage-flag').hidden", timeout=5)
        js_poll(b, "!document.getElementById('mute-flag').hidden "
                   "&& document.getElementById('mute-text').textContent === '已被老师静音'", timeout=5)
        js_poll(b, "document.getElementById('btn-hand').textContent.includes('放下手')", timeout=5)
        js_poll(teacher, f"document.querySelector(\"#hand-list [data-participant='{npb}']\") !== null", timeout=5)
        assert teacher.inner_text(f".remote-tile[data-participant='{npb}'] [data-action=mute]") == "取消静音"
        # the chat: each line once, in order, on every page that shows it (the patrol wall has no chat)
        for name, page in pages.items():
            if name == "observer":
                continue
            assert page.evaluate(CHAT_JS) == list(LINES), name
        screenshot(teacher, "main-after-failover")
        screenshot(b, "receiving-b-after-failover")
        assert not errors, errors
    finally:
        for ctx in contexts:
            try:
                ctx.close()
            except Exception:  # noqa: BLE001 - the browser may be gone already
                pass
