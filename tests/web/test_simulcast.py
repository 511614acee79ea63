"""Simulcast and dynacast in real Chromium: the teacher's camera goes out in three layers (q ¼,
h ½, f full) that the SFU receives as three streams of rising bitrate; the layers nobody receives
are paused in the publishing browser (``layers_wanted`` → ``encodings[i].active``) and come back
when someone wants them.  Checked on the publisher's ``getStats`` (what it sends) and on the SFU's
own counters (``router.dump``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

OUT_JS = """async () => {
  const lc = window.sankeLesson;
  const out = {};
  if (!lc || !lc.publisher) return out;
  (await lc.publisher.getStats()).forEach((s) => {
    if (s.type === 'outbound-rtp' && s.kind === 'video' && s.rid)
      out[s.rid] = {bytes: s.bytesSent || 0, width: s.frameWidth || 0, active: s.active !== false,
                    mode: s.scalabilityMode || null};
  });
  return out;
}"""


def sending(page: Any, seconds: float = 2.0) -> dict[str, dict[str, Any]]:
    """Per rid: bytes sent per second over ``seconds``, the frame width and whether it is active."""
    before = dict(page.evaluate(OUT_JS))
    time.sleep(seconds)
    after = dict(page.evaluate(OUT_JS))
    return {rid: {"bps": (a["bytes"] - before.get(rid, {}).get("bytes", 0)) * 8 / seconds,
                  "width": a["width"], "active": a["active"], "mode": a["mode"]} for rid, a in after.items()}


def wait_sending(page: Any, check: Any, timeout: float, what: str) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        s = sending(page)
        if check(s):
            return s
        assert time.monotonic() < deadline, f"{what}: {s}"


def sfu_dump(app: Any, lesson_id: int) -> dict[str, Any]:
    """The lesson router's counters, asked on the server's loop (the in-process media worker's)."""
    pool = app.state.media
    loop = pool.workers[0].task.get_loop()
    rid = f"lesson-{lesson_id}"
    future = asyncio.run_coroutine_threadsafe(pool.request(rid, "router.dump", {"router_id": rid}), loop)
    return dict(future.result(10))


def start_teacher(web_server: Any, open_page: Any, js_poll: Any) -> Any:
    teacher = open_page(web_server.world.teacher, "/lesson/main.html")
    teacher.click(f"[data-action=start][data-lesson='{web_server.lesson_id}']")
    js_poll(teacher, "window.sankeLesson && window.sankeLesson.state === 'joined'", timeout=15)
    js_poll(teacher, "window.sankeLesson.local.has('camera')", timeout=10)
    return teacher


def test_the_camera_goes_out_in_three_layers_of_rising_bitrate(app: Any, web_server: Any, open_page: Any,
                                                                 js_poll: Any) -> None:
    teacher = start_teacher(web_server, open_page, js_poll)
    recv = open_page(web_server.world.terminal_recv, "/lesson/receiving.html")  # wants the best: every layer
    js_poll(recv, "window.sankeLesson && window.sankeLesson.state === 'joined'", timeout=15)
    js_poll(recv, "document.getElementById('teacher-video').videoWidth > 0", timeout=20)
    s = wait_sending(teacher, lambda s: set(s) == {"q", "h", "f"} and all(v["bps"] > 20_000 for v in s.values()),
                     60, "the three layers never all sent")
    assert s["q"]["width"] < s["h"]["width"] < s["f"]["width"] == 1280, s
    # one temporal layer each: a far classroom's receiver waits for a repaired frame instead of dropping it
    assert {v["mode"] for v in s.values()} == {"L1T1"}, s
    # the SFU: one producer stream per rid, lowest first, their bitrates rising with the layer
    main = str(teacher.evaluate("window.sankeLesson.participantId"))
    deadline = time.monotonic() + 30
    while True:
        producer = sfu_dump(app, web_server.lesson_id)["producers"][f"{main}:camera"]
        rates = producer["bitrates"]
        if producer["rids"] == ["q", "h", "f"] and 0 < rates[0] < rates[1] < rates[2]:
            break
        assert time.monotonic() < deadline, producer
        time.sleep(0.5)


def test_layers_nobody_receives_are_paused_in_the_publishing_browser(app: Any, web_server: Any, open_page: Any,
                                                                     js_poll: Any) -> None:
    app.state.media_factory.__self__.recordings = None  # a recorded lesson keeps every layer of the teacher
    teacher = start_teacher(web_server, open_page, js_poll)
    # nobody receives the teacher's camera, then only the patrol wall (the low layer): q alone is sent
    only_low = (lambda s: s.get("q", {}).get("active") and s["q"]["bps"] > 10_000
                and all(not s.get(r, {}).get("active", True) and s.get(r, {}).get("bps", 0) == 0 for r in ("h", "f")))
    wait_sending(teacher, only_low, 30, "the unwatched layers kept sending")
    patrol = open_page(web_server.world.researcher_a, "/patrol/")
    tile = f".wall-tile[data-lesson='{web_server.lesson_id}']"
    patrol.wait_for_selector(tile, timeout=10000)
    js_poll(patrol, f"document.querySelector(\"{tile} video\").videoWidth > 0", timeout=20)
    wait_sending(teacher, only_low, 10, "a wall thumbnail woke the top layers")
    # the full view asks for the high layer: the others come back
    patrol.click(f"{tile} [data-action=watch]")
    js_poll(patrol, "document.getElementById('watch-camera').videoWidth > 0", timeout=20)
    wait_sending(teacher, lambda s: all(s.get(r, {}).get("active") and s[r]["bps"] > 10_000 for r in ("q", "h", "f")),
                 30, "the full view did not bring the layers back")
    js_poll(patrol, "document.getElementById('watch-camera').videoWidth >= 640", timeout=30)
