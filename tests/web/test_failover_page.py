"""The lesson pages outlive their node: ``kill -9`` of the owner, and real Chromium is back by itself.

Three ``sanke serve`` nodes on one PostgreSQL database and one redis-server, all on 127.0.0.1 and started
and stopped here (``tests.web.cluster``), and one dedicated lesson with two receiving classrooms, watched by
the region's researcher from the patrol wall (巡课, ``web/patrol/``).
The pages come from a node that is not the room's owner (as from a load balancer in front of the
nodes, which stops sending anyone to a dead node); their sockets and media go to the owner, as the
join-token answers say.  The teacher starts the lesson from ``web/lesson/main.html`` with Chromium's
fake camera; the two classrooms' kiosks (``web/lesson/receiving.html``) join by themselves.  The
teacher puts classroom A on stage and mutes classroom B's microphone, B raises its hand, A and the
teacher chat.  Then the owner is killed with SIGKILL, and nobody touches anything: every page decodes
video again (frames on its new connections, and more of them) within ``BACK_BOUND_S`` — the
seconds are printed, with each page's steps (``tests.web.comeback``), the issue's goal being 5 s — on
another node; A is still on stage, B still muted with its hand up (the teacher's hand list and B's own
button say so), and each chat line is shown once on every page, in order (a page reloaded before the
kill shows them again, once).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import TEST_SECRET
from tests.utils.factory import token_for
from tests.utils.wait import wait_until
from tests.web.cluster import Pages, Site, nodes
from tests.web.comeback import timelines, wait_all_back, watch
from tests.web.test_lesson_pages import assert_video_flows, pid, wait_joined

NAMES = ("node-a", "node-b", "node-c")
GOAL_S = 5.0
"""Issue 13: every page decodes again within this long of the kill (printed, not asserted)."""
BACK_BOUND_S = 15.0
"""What is asserted: the goal stretched for a loaded 2-core CI machine (four Chromium pages with fake
cameras, three nodes, PostgreSQL and Redis share it)."""
LINES = ("老师，第三题我们班有疑问。", "好的，马上讲。")


@pytest.fixture
def site(pg_server: Any, tmp_path: Path) -> Iterator[Site]:
    with nodes(pg_server, tmp_path, NAMES, database=f"sanke_failover_page_{os.getpid()}", classrooms=2,
               SANKE_EVENT_FLUSH_INTERVAL_SECONDS="0.2") as running:
        yield running


CHAT_JS = """() => [...document.querySelectorAll('.chat-list li:not(.chat-system) div')].map((d) => d.textContent)"""


def pid_of(page: Any, user_id: int) -> str | None:
    return page.evaluate("""(uid) => { const p = [...window.sankeLesson.participants.values()]
        .find((x) => x.user_id === uid); return p ? p.participant_id : null; }""", user_id)


def test_kill_9_of_the_owner_the_pages_come_back_by_themselves_as_they_were(
        site: Site, browser: Any, js_poll: Any, screenshot: Any) -> None:
    lesson = site.lesson
    kiosk_a, kiosk_b = lesson.kiosks
    headers = {"Authorization": f"Bearer {token_for(lesson.teacher, TEST_SECRET)}"}
    r = httpx.post(f"{site.base_of('node-a')}/api/v1/lessons/{lesson.id}/join-token", timeout=30, headers=headers)
    assert r.status_code == 200, r.text
    owner = r.json()["node_id"]
    front = next(n for n in NAMES if n != owner)  # where the pages come from, and their API requests go
    owner_ws = site.ws_of(owner)
    store = redis.Redis.from_url(site.redis_url)
    opened = Pages(browser, lesson.clock_at)

    def open_page(user: Any, path: str, sockets: list[str]) -> Any:
        page = opened.open(site.base_of(front), user, sockets)
        page.goto(path)
        return page

    try:
        sockets: dict[str, list[str]] = {"teacher": [], "a": [], "b": [], "observer": []}
        teacher = open_page(lesson.teacher, "/lesson/main.html", sockets["teacher"])
        teacher.click(f"[data-action=start][data-lesson='{lesson.id}']")
        main = wait_joined(teacher, js_poll, timeout=30)
        js_poll(teacher, "window.sankeLesson.local.has('camera')", timeout=20)
        a = open_page(kiosk_a, "/lesson/receiving.html", sockets["a"])
        b = open_page(kiosk_b, "/lesson/receiving.html", sockets["b"])
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
        ids = {"teacher": lesson.teacher.id, "a": kiosk_a.id, "b": kiosk_b.id}
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
            raw = store.get(key)
            if raw is None:
                return False
            snap = json.loads(raw)
            muted = (snap.get("users") or {}).get(str(ids["b"]), {}).get("muted_by_teacher") or []
            return (len(snap.get("chat") or []) == 2 and snap.get("on_stage") == ids["a"]
                    and snap.get("hands") == [ids["b"]] and "microphone" in muted)

        wait_until("the room's snapshot", snapshot_complete, 10, interval=0.05)

        # each page watches itself from now on (by user: the sessions will be new)
        watching = {name: (page, watched[name]) for name, page in pages.items()}
        offsets = watch(watching)
        process = site.nodes[owner].process
        killed = time.time()
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)

        lease: dict[str, float] = {}  # when the room's lease left the dead owner, and went to the next node

        def note_lease() -> None:
            holder = store.get(f"sanke:room:{lesson.id}")
            if holder != owner.encode():
                lease.setdefault("lapsed", round(time.time() - killed, 2))
                if holder is not None:
                    lease.setdefault(f"placed on {holder.decode()}", round(time.time() - killed, 2))

        back = wait_all_back(watching, offsets, killed, BACK_BOUND_S + 30, also=note_lease)
        print(f"\nfailover of the pages: kill -9 of {owner}; the room's lease {lease}")
        for name, steps in timelines(watching, offsets, killed).items():
            print(f"  {name}: {steps}")
        print(f"decoding again after {back} s (goal {GOAL_S} s, bound {BACK_BOUND_S} s, "
              f"load {os.getloadavg()[0]:.1f})")
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
        assert not opened.errors, opened.errors
    finally:
        opened.close()
        store.close()
