"""同屏批注 in real Chromium: the teacher shares the screen, picks the pen and draws over it with the mouse; the
receiving classroom's page draws the same stroke over its screen video at the same place of the picture; a
reload of the receiving page gets the strokes back; undo and clear reach it too."""

from __future__ import annotations

from typing import Any

from tests.web.test_lesson_pages import STATS_JS, start_lesson

RED_PIXELS_JS = """() => {
  // how many strongly red pixels the annotation layer over the screen holds, and where their middle is
  const c = document.querySelector('#screen-view canvas.annotation-layer');
  const g = c.getContext('2d');
  const d = g.getImageData(0, 0, c.width, c.height).data;
  let n = 0, sx = 0, sy = 0;
  for (let y = 0; y < c.height; y += 2) for (let x = 0; x < c.width; x += 2) {
    const i = (y * c.width + x) * 4;
    if (d[i + 3] > 200 && d[i] > 180 && d[i + 1] < 80 && d[i + 2] < 80) { n++; sx += x; sy += y; }
  }
  const r = window.sankeBoard.rect;
  const dpr = window.devicePixelRatio || 1;
  return {n, x: n ? (sx / n / dpr - r.x) / r.w : null, y: n ? (sy / n / dpr - r.y) / r.h : null};
}"""


def test_the_teacher_annotates_the_shared_screen_and_every_page_draws_it(web_server: Any, open_page: Any,
                                                                          js_poll: Any) -> None:
    c = start_lesson(web_server, open_page, js_poll, classrooms=1)
    teacher, a, main = c["teacher"], c["a"], c["main"]
    teacher.click("#btn-screen")
    js_poll(a, f"({STATS_JS})().then((s) => (s['{main}/screen'] || {{}}).frames > 0)", timeout=15)
    js_poll(teacher, "document.getElementById('screen-video').videoWidth > 0", timeout=15)

    # the pen, then a drag across the middle of the teacher's screen picture
    teacher.click("#annotate-bar [data-tool=pen]")
    box = teacher.locator("#screen-view canvas.annotation-layer").bounding_box()
    r = teacher.evaluate("(() => { window.sankeBoard.draw(); return window.sankeBoard.rect; })()")
    x0, y0 = box["x"] + r["x"] + 0.3 * r["w"], box["y"] + r["y"] + 0.5 * r["h"]
    teacher.mouse.move(x0, y0)
    teacher.mouse.down()
    for k in range(1, 11):
        teacher.mouse.move(x0 + k * 0.04 * r["w"], y0)
    teacher.mouse.up()
    js_poll(teacher, "window.sankeBoard.strokes.length === 1", timeout=10)

    # the receiving page draws it over its own screen video, at the same place of the picture
    js_poll(a, "window.sankeBoard.strokes.length === 1", timeout=10)
    js_poll(a, f"({RED_PIXELS_JS})().n > 20", timeout=10)
    seen = a.evaluate(RED_PIXELS_JS)
    assert abs(seen["x"] - 0.5) < 0.05 and abs(seen["y"] - 0.5) < 0.05, seen
    stroke = a.evaluate("window.sankeBoard.strokes[0]")
    assert stroke["tool"] == "pen" and stroke["color"] == "#dc2626" and len(stroke["points"]) >= 10

    # an arrow, then a reload of the receiving page: both strokes come back
    teacher.click("#annotate-bar [data-tool=arrow]")
    teacher.mouse.move(x0, y0 + 0.2 * r["h"])
    teacher.mouse.down()
    teacher.mouse.move(x0 + 0.2 * r["w"], y0 + 0.3 * r["h"])
    teacher.mouse.up()
    js_poll(teacher, "window.sankeBoard.strokes.length === 2", timeout=10)
    a.reload()
    js_poll(a, "window.sankeLesson && window.sankeLesson.state === 'joined'", timeout=20)
    js_poll(a, "window.sankeBoard.strokes.map((s) => s.tool).join() === 'pen,arrow'", timeout=10)

    # undo and clear reach it
    teacher.click("#annotate-bar [data-action=undo]")
    js_poll(a, "window.sankeBoard.strokes.map((s) => s.tool).join() === 'pen'", timeout=10)
    teacher.click("#annotate-bar [data-action=clear]")
    js_poll(a, "window.sankeBoard.strokes.length === 0", timeout=10)
    js_poll(a, f"({RED_PIXELS_JS})().n === 0", timeout=10)
