"""``scripts/run.sh`` as the README says, and a live lesson on it in two browser windows.

The server is started exactly as ``run.sh`` starts it (its script, its environment: SQLite, the
in-process bus, media workers one per core, ``SANKE_HOST`` unset so 127.0.0.1), on a free port and
a data folder with the demo already loaded (``tests/utils/sanke_proc.py``; its clock stands eight
minutes before the demo teacher's first lesson of the demo's Monday, so that lesson's room is open). The teacher signs in
on one page, a receiving classroom's terminal on another, as a person would, and each must decode
the other's video: on one machine the media must go over loopback with nothing set.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import create_engine, select

from scheduler.models import InstanceStatus, LessonInstance, User
from server.demo import PASSWORD
from tests.utils.live import free_port
from tests.utils.sanke_proc import DEMO_AT, REPO, child_env, clock_hook, copy_data, demo_data, served
from tests.web.test_lesson_pages import assert_video_flows, wait_joined

BEFORE = timedelta(minutes=8)
"""The server's clock at start: this long before the demo teacher's first lesson (rooms open ten before)."""

SELECTED_PAIR_JS = """async () => {
  const pc = window.sankeLesson && window.sankeLesson.subscriber;
  if (!pc) return null;
  const stats = await pc.getStats();
  let pair = null;
  stats.forEach((s) => { if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId); });
  if (!pair) stats.forEach((s) => { if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s; });
  if (!pair) return null;
  const local = stats.get(pair.localCandidateId), remote = stats.get(pair.remoteCandidateId);
  return {local: local && (local.address || local.ip), remote: remote && (remote.address || remote.ip)};
}"""


def _sign_in(browser: Any, base: str, now: datetime, username: str) -> Any:
    """A fresh browser window at ``/``, signed in through the login form."""
    ctx = browser.new_context(base_url=base, viewport={"width": 1600, "height": 900}, locale="zh-CN",
                              timezone_id="Asia/Shanghai")
    ctx.clock.install(time=now.replace(tzinfo=ZoneInfo("Asia/Shanghai")))
    page = ctx.new_page()
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.goto("/")
    page.wait_for_url(re.compile(r"/login\.html"))
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_url(re.compile(r"/lesson/"))
    return page


def _teachers_first_lesson(data: Path) -> tuple[int, datetime]:
    """The demo teacher's first lesson still to come on the day the demo was loaded."""
    engine = create_engine(f"sqlite:///{data / 'sanke.db'}")
    try:
        with engine.connect() as conn:
            row = conn.execute(
                select(LessonInstance.id, LessonInstance.starts_at)
                .join(User, User.id == LessonInstance.teacher_id)
                .where(User.username == "teacher", LessonInstance.day == DEMO_AT.date(),
                       LessonInstance.starts_at > DEMO_AT, LessonInstance.status == InstanceStatus.scheduled)
                .order_by(LessonInstance.starts_at)).first()
    finally:
        engine.dispose()
    assert row is not None, "the demo teacher has no lesson left on the demo's day"
    return int(row[0]), row[1]


def test_run_sh_serves_a_live_lesson_whose_video_decodes_over_loopback(browser, js_poll, tmp_path_factory,
                                                                       tmp_path):
    data, _ = demo_data(tmp_path_factory.getbasetemp())
    lesson_id, starts_at = _teachers_first_lesson(data)
    clock_at = starts_at - BEFORE  # the server's clock at start
    port = free_port()
    env = child_env(clock_hook(tmp_path / "hook"), clock_at, SANKE_DATA_DIR=str(copy_data(data, tmp_path / "data")),
                    SANKE_PORT=str(port), SANKE_NO_INSTALL="1")
    started = time.monotonic()
    with served(["bash", str(REPO / "scripts" / "run.sh")], env, port, tmp_path / "run.log") as srv:
        log = srv.text()
        assert f"http://127.0.0.1:{port}/" in log
        assert "演示账号" in log and "terminal_recv" in log and PASSWORD in log  # on a start after the first too

        http = httpx.Client(base_url=srv.base, timeout=20)
        token = http.post("/api/v1/auth/login", json={"username": "teacher", "password": PASSWORD}).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        deadline = time.monotonic() + 60
        while not http.get(f"/api/v1/lessons/{lesson_id}", headers=headers).json()["room_open"]:
            assert time.monotonic() < deadline, "the lesson's room did not open"
            time.sleep(0.5)

        now = clock_at + timedelta(seconds=time.monotonic() - started)
        teacher = _sign_in(browser, srv.base, now, "teacher")
        receiving = _sign_in(browser, srv.base, now, "terminal_recv")
        try:
            assert teacher.url.endswith("/lesson/main.html")
            teacher.click(f"[data-action=start][data-lesson='{lesson_id}']")  # 开始上课
            main = wait_joined(teacher, js_poll, timeout=30)
            assert receiving.url.endswith("/lesson/receiving.html")
            recv = wait_joined(receiving, js_poll, timeout=30)

            assert_video_flows(receiving, [f"{main}/camera"], js_poll, timeout=30)
            js_poll(receiving, "document.getElementById('teacher-video').videoWidth > 0", timeout=15)
            assert_video_flows(teacher, [f"{recv}/camera"], js_poll, timeout=30)
            pair = js_poll(receiving, SELECTED_PAIR_JS, timeout=10)
            assert pair == {"local": "127.0.0.1", "remote": "127.0.0.1"}, pair  # the server gathered on loopback
            assert not teacher.errors and not receiving.errors, (teacher.errors, receiving.errors)
        finally:
            for page in (teacher, receiving):
                page.context.close()
            http.close()
    assert "Application shutdown complete" in srv.text()
