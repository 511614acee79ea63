"""A peer that stops answering, in real Chromium (127.0.0.1 only): noticed by the server and the page
alike, and the page gets its media back by itself.

A teacher and two receiving classrooms hold a lesson; the media worker runs in the server process,
so the test can break one server-side connection the way the network or a bad datagram would:

- the server side of classroom A's subscriber connection loses its DTLS transport (what an
  unguarded bad datagram did, or an ICE failure or lost consent does): the server notices,
  tells the page (``media_restart``) and offers again; A decodes the teacher again within seconds,
  and classroom B's connection is never touched;
- the server side of A's subscriber connection goes silent without noticing anything (it neither
  receives nor sends: a dead path): the page sees its connection ``disconnected``, rebuilds it by
  itself (``media_restart`` from the client) and decodes again.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import pytest

from tests.web.test_lesson_pages import assert_video_flows, start_lesson

BACK_S = 12.0
"""The server-side end of a connection → frames again on the page (it used to stay silent until
Chromium's own consent timeout, 30 s, and then the page left and rejoined the lesson)."""
SILENT_BACK_S = 20.0
"""A silent path → frames again: Chromium calls the connection ``disconnected`` after about 6 s, the
page waits 3 s more (``DISCONNECTED_GRACE_MS``) and negotiates again."""

FRAMES_ON_NEW_SUBSCRIBER_JS = """async ([key, before]) => {
  const lc = window.sankeLesson;
  const pc = lc.subscriber;
  if (!pc || pc === window[before]) return false;
  const stats = await pc.getStats();
  let frames = 0;
  stats.forEach((s) => {
    const m = s.type === 'inbound-rtp' && lc._mids.get(s.mid);
    if (m && m.participantId + '/' + m.source === key) frames = s.framesDecoded || 0;
  });
  return frames > 0;
}"""


@pytest.fixture
def lesson(web_server: Any, open_page: Any, js_poll: Any) -> dict[str, Any]:
    started = start_lesson(web_server, open_page, js_poll, camera=True)
    a, b = started["a"], started["b"]
    key = f"{started['main']}/camera"
    for page in (a, b):
        assert_video_flows(page, [key], js_poll, timeout=20)
    for page in (a, b):
        page.evaluate("() => { const lc = window.sankeLesson; window.__sub0 = lc.subscriber; window.__restarts = [];"
                      " window.__states = []; lc.on('mediarestart', (e) => window.__restarts.push(e));"
                      " lc.on('state', (e) => window.__states.push(e.state)); }")
    return {**started, "key": key}


def _subscriber_transport(participant_id: str) -> Any:
    """The server's side of a participant's subscriber connection (the worker runs in this process)."""
    from media.transport import WebRtcTransport

    def wanted(o: Any) -> bool:
        try:
            return (isinstance(o, WebRtcTransport) and not o.closed
                    and o.participant_id == participant_id and o.direction == "recv")
        except ReferenceError:  # a weak proxy whose object is gone (the heap holds such too)
            return False

    found = [o for o in gc.get_objects() if wanted(o)]
    assert len(found) == 1, found
    assert found[0]._dtls is not None and found[0].state == "connected"
    return found[0]


def _in_worker(transport: Any, fn: Any) -> None:
    """Run ``fn()`` on the worker's event loop (the server's thread) and wait for it."""
    async def run() -> None:
        fn()

    asyncio.run_coroutine_threadsafe(run(), transport._rtcp_task.get_loop()).result(timeout=10)


def _wait_back(page: Any, key: str, timeout: float) -> float:
    start = time.monotonic()
    while not page.evaluate(FRAMES_ON_NEW_SUBSCRIBER_JS, [key, "__sub0"]):
        assert time.monotonic() - start < timeout, (
            f"{page.url}: no frames on a new connection within {timeout} s; restarts: "
            f"{page.evaluate('window.__restarts')}\n" + "\n".join(getattr(page, "console_log", [])[-10:]))
        time.sleep(0.1)
    return time.monotonic() - start


def test_the_server_notices_a_closed_dtls_transport_and_the_page_gets_its_media_back(
        lesson: dict[str, Any], js_poll: Any) -> None:
    from aiortc.rtcdtlstransport import State

    a, b, key = lesson["a"], lesson["b"], lesson["key"]
    transport = _subscriber_transport(lesson["pa"])
    _in_worker(transport, lambda: transport._dtls._set_state(State.CLOSED))  # as its receive loop does on a fault

    took = _wait_back(a, key, BACK_S)
    print(f"frames again {took:.1f} s after the server-side DTLS closed")
    assert a.evaluate("window.__restarts") == [
        {"targets": ["subscriber"], "reason": "connection_lost", "by": "server"}]
    assert a.evaluate("window.__states") == []  # it never left the lesson (no reconnect, no rejoin)
    assert_video_flows(a, [key], js_poll)
    # classroom B was not touched
    assert b.evaluate("window.sankeLesson.subscriber === window.__sub0 && window.__restarts.length === 0")
    assert_video_flows(b, [key], js_poll)


def test_a_page_whose_connection_goes_silent_rebuilds_it_by_itself(lesson: dict[str, Any], js_poll: Any) -> None:
    a, b, key = lesson["a"], lesson["b"], lesson["key"]
    transport = _subscriber_transport(lesson["pa"])

    def go_silent() -> None:  # a dead path: nothing in, nothing out, and the server none the wiser
        protocol = transport._dtls.transport._connection._nominated[1].protocol
        protocol.datagram_received = lambda data, addr: None
        protocol.send_stun = lambda message, addr: None
        protocol.send_data = lambda data, addr: None
        transport.writer.close()

    _in_worker(transport, go_silent)
    took = _wait_back(a, key, SILENT_BACK_S)
    print(f"frames again {took:.1f} s after the path went silent")
    restarts = a.evaluate("window.__restarts")
    assert restarts and restarts[0] == {"targets": ["subscriber"], "reason": "connection_lost", "by": "client"}, restarts
    assert a.evaluate("window.__states") == []
    assert_video_flows(a, [key], js_poll)
    assert b.evaluate("window.sankeLesson.subscriber === window.__sub0 && window.__restarts.length === 0")
