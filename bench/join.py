"""Join to first remote frame, in real Chromium against a SanKe server on 127.0.0.1.

Two figures, each the median of ``--joins`` (default 10) joins of one dedicated lesson:

* teacher: from the click on "开始上课" in ``web/lesson/main.html`` to the first decoded frame of
  a receiving classroom's camera (a receiving classroom is already in and publishing);
* receiving: from the navigation start of ``web/lesson/receiving.html`` (the kiosk finds the lesson
  and joins by itself) to the first decoded frame of the teacher's camera.

Each join uses a new browser context (a fresh page, no stored session). The server, the data and
the browser flags are those of the browser tests (``tests/web/conftest.py``): loopback ICE only,
one media worker in the server process, Chromium's fake camera and microphone.

    .venv/bin/python -m bench.join [--joins 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

os.environ.setdefault("SANKE_MEDIA_WORKERS", "0")

FIRST_FRAME_JS = """async (key) => {
  // ms since navigation start when the first video frame of a remote camera was decoded
  while (true) {
    const lc = window.sankeLesson;
    if (lc && lc.subscriber) {
      const stats = await lc.subscriber.getStats();
      let ok = false;
      stats.forEach((s) => {
        if (s.type !== 'inbound-rtp' || s.kind !== 'video' || !(s.framesDecoded > 0)) return;
        const m = lc._mids.get(s.mid);
        if (m && m.source === 'camera' && (!key || m.participantId === key)) ok = true;
      });
      if (ok) return performance.now();
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}"""

CLICK_START_JS = """async (lessonId) => {
  const find = () => document.querySelector(`[data-action=start][data-lesson='${lessonId}']`);
  while (!find() || find().disabled) await new Promise((r) => setTimeout(r, 20));
  const btn = find();
  const t0 = performance.now();
  btn.click();
  return t0;
}"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--joins", type=int, default=10, help="joins per figure (bounded)")
    args = parser.parse_args()
    joins = max(1, min(args.joins, 50))

    import httpx
    from playwright.sync_api import sync_playwright

    import scheduler.clock
    from scheduler.models import LessonInstance, Role
    from server.core.config import Settings
    from server.core.migrate import upgrade
    from server.main import create_app
    from tests.conftest import TEST_SECRET
    from tests.utils.factory import World, add_user, token_for
    from tests.utils.live import live_server
    from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS, LESSON_DAY, NOW, SESSION_KEY

    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is not installed (apt-get install chromium)", file=sys.stderr)
        return 2
    scheduler.clock.now = lambda: NOW  # the lesson's day, five minutes before the start
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/join.db"
        upgrade(url)
        settings = Settings(data_dir=Path(tmp) / "data", database_url=url, secret_key=TEST_SECRET,
                            ice_host_addresses="127.0.0.1", ice_allowed_networks="127.0.0.0/8", media_workers=0)
        app = create_app(settings, migrate=False, run_lifecycle=False)
        with app.state.session_factory() as s:
            w = World.build(s)
            recv2 = add_user(s, "term_recv2", Role.terminal, classroom=w.recv_room2, name="石桥二年级终端")
            s.commit()
            users = {"teacher": w.teacher, "recv": w.terminal_recv, "recv2": recv2, "admin": w.urban_admin}
            me = {k: {"id": u.id, "username": u.username, "display_name": u.display_name, "role": u.role.value,
                      "school_id": u.school_id, "region_id": u.region_id, "classroom_id": u.classroom_id,
                      "is_active": True} for k, u in users.items()}
            tokens = {k: token_for(u, TEST_SECRET) for k, u in users.items()}
            body = {"kind": "dedicated", "title": "三年级数学", "subject": "数学", "grade": "三年级", "term_id": w.term.id,
                    "main_classroom_id": w.main_room.id, "main_teacher_id": w.teacher.id,
                    "weekday": LESSON_DAY.isoweekday(), "period_from": 1,
                    "receivers": [{"classroom_id": w.recv_room.id}, {"classroom_id": w.recv_room2.id}]}
        with live_server(app) as base, httpx.Client(base_url=base, timeout=20) as http, sync_playwright() as pw:
            r = http.post("/api/v1/series", json=body, headers={"Authorization": f"Bearer {tokens['admin']}"})
            assert r.status_code == 201, r.text
            lessons = http.get("/api/v1/lessons", params={"date_from": LESSON_DAY.isoformat(), "date_to": LESSON_DAY.isoformat()},
                               headers={"Authorization": f"Bearer {tokens['admin']}"}).json()["data"]
            lid = lessons[0]["id"]
            with app.state.session_factory() as s:
                s.get(LessonInstance, lid).room_opened_at = NOW
                s.commit()
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)

            def context(who: str) -> Any:
                ctx = browser.new_context(base_url=base, viewport={"width": 1366, "height": 768}, locale="zh-CN",
                                          timezone_id="Asia/Shanghai")
                ctx.clock.install(time=NOW.replace(tzinfo=ZoneInfo("Asia/Shanghai")))
                import json
                stored = json.dumps({"token": tokens[who], "user": me[who]})
                ctx.add_init_script(f"localStorage.setItem({json.dumps(SESSION_KEY)}, {json.dumps(stored)});")
                return ctx

            try:
                # the teacher joins and stays; receiving classrooms join one after the other
                teacher_ctx = context("teacher")
                teacher = teacher_ctx.new_page()
                teacher.goto("/lesson/main.html")
                teacher.evaluate(CLICK_START_JS, lid)
                teacher.evaluate("async () => { while (!(window.sankeLesson && window.sankeLesson.local.has('camera'))) await new Promise(r => setTimeout(r, 20)); }")
                receiving = []
                for _ in range(joins):
                    ctx = context("recv")
                    page = ctx.new_page()
                    page.goto("/lesson/receiving.html", wait_until="commit")
                    receiving.append(page.evaluate(FIRST_FRAME_JS, None))
                    page.evaluate("window.sankeLesson.leave()")
                    ctx.close()
                teacher.evaluate("window.sankeLesson.leave()")
                teacher_ctx.close()

                # a receiving classroom is in and publishing; the teacher starts the lesson again and again
                recv_ctx = context("recv2")
                recv_page = recv_ctx.new_page()
                recv_page.goto("/lesson/receiving.html")
                recv_page.evaluate("async () => { while (!(window.sankeLesson && window.sankeLesson.local.has('camera'))) await new Promise(r => setTimeout(r, 20)); }")
                teacher_times = []
                for _ in range(joins):
                    ctx = context("teacher")
                    page = ctx.new_page()
                    page.goto("/lesson/main.html")
                    t0 = page.evaluate(CLICK_START_JS, lid)
                    teacher_times.append(page.evaluate(FIRST_FRAME_JS, None) - t0)
                    page.evaluate("window.sankeLesson.leave()")
                    ctx.close()
                    time.sleep(0.3)
                recv_ctx.close()
            finally:
                browser.close()
    fmt = lambda xs: " ".join(f"{x:.0f}" for x in xs)  # noqa: E731
    print(f"receiving: page load -> first teacher frame, ms: median {statistics.median(receiving):.0f} "
          f"(min {min(receiving):.0f}, max {max(receiving):.0f}; {fmt(receiving)})")
    print(f"teacher:   click start -> first classroom frame, ms: median {statistics.median(teacher_times):.0f} "
          f"(min {min(teacher_times):.0f}, max {max(teacher_times):.0f}; {fmt(teacher_times)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
