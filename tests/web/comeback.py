"""Pages that get their media back by themselves, timed by the pages: the one way the browser tests time it.

``watch(pages)`` has each page note, from then on, the first moment every video it names decodes frames on a
subscriber connection made after the call (a test polling four pages one after the other would add its
own delay), and the steps on its way there (``TIMELINE``); ``wait_all_back`` polls the pages until each has
noted it and answers the seconds from an instant of the test's clock (``time.time()``).  Keys are
``"<who>/<source>"``, who being a participant id, a user id (after a failover the sessions are new, the users
the same) or ``stage``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

WATCH_JS = """(keys) => {
  const lc = window.sankeLesson;
  const before = lc.subscriber;
  window.__backAt = null;
  // the page's own timeline: each step's first moment (socket closed, joined again, its publisher answered,
  // the first offer of its new subscriber connection, each video's first frame)
  const tl = window.__timeline = { retries: 0, offers: 0 };
  const mark = (k) => { if (!(k in tl)) tl[k] = Date.now(); };
  lc.on('state', (s) => {
    if (s.state === 'reconnecting') mark('closed');
    if (s.retryInMs !== undefined) tl.retries += 1;  // an attempt to join again failed
  });
  lc.on('message', (m) => {
    if (m.type === 'joined') mark('joined');
    else if (m.type === 'answer') mark('published');
    else if (m.type === 'offer') { mark('offered'); tl.offers += 1; }
  });
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
        frames[m.participantId + '/' + m.source] = s.framesDecoded || 0;
        if (p) frames[p.user_id + '/' + m.source] = s.framesDecoded || 0;
      });
      for (const k of keys) if ((frames[k] || 0) > 0) mark('frame ' + k);
      if (keys.every((k) => (frames[k] || 0) > 0)) { window.__backAt = Date.now(); return; }
    }
    setTimeout(tick, 20);
  };
  tick();
  return Date.now();
}"""


def watch(pages: dict[str, tuple[Any, list[str]]]) -> dict[str, float]:
    """Start each page's watch of its ``keys``; answers per page its clock minus ours (ms: the pages'
    clocks stand at the lesson's time, not ours)."""
    offsets = {}
    for name, (page, keys) in pages.items():
        t0 = time.time()
        page_now = page.evaluate(WATCH_JS, keys)
        offsets[name] = page_now - (t0 + time.time()) / 2 * 1000
    return offsets


def wait_all_back(pages: dict[str, tuple[Any, list[str]]], offsets: dict[str, float], since: float,
                  timeout: float, *, also: Callable[[], None] | None = None) -> dict[str, float]:
    """Seconds from ``since`` (``time.time()``) until each page decoded every video it watches on a new
    connection; fails after ``timeout`` naming the pages not back.  ``also``: called at every poll."""
    deadline = time.monotonic() + timeout
    back: dict[str, float] = {}
    while len(back) < len(pages):
        if also is not None:
            also()
        for name, (page, _) in pages.items():
            at = page.evaluate("window.__backAt") if name not in back else None
            if at:
                back[name] = round((at - offsets[name]) / 1000 - since, 2)
        if time.monotonic() > deadline:
            raise AssertionError(f"no frames again within {timeout} s on {sorted(set(pages) - set(back))} "
                                 f"(back: {back})")
        time.sleep(0.02)
    return back


def timelines(pages: dict[str, tuple[Any, list[str]]], offsets: dict[str, float], since: float) -> dict[str, str]:
    """Per page, its steps in seconds from ``since``, in order, as printed next to the figures."""
    out = {}
    for name, (page, _) in pages.items():
        tl = page.evaluate("window.__timeline")
        steps = sorted(((k, round((v - offsets[name]) / 1000 - since, 2)) for k, v in tl.items()
                        if k not in ("retries", "offers")), key=lambda kv: kv[1])
        out[name] = ", ".join(f"{k} {v}" for k, v in steps) + f" (failed joins {tl['retries']}, offers {tl['offers']})"
    return out
