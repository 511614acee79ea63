"""A participant leaving tears its media down quietly: no ERROR in the server's log, and everyone
else keeps receiving. aiortc clients against a server the test starts, on 127.0.0.1 only.

A leaving client closes its peer connections and sends ``leave``; the server's side of each
connection closes itself as soon as DTLS says so, which can be well before the ``leave`` is
read. Whatever the room does to that participant's connections meanwhile (the others leave,
the stage moves, its own last subscription change, an offer still out) must not touch the
closed connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from signaling.client import LessonClient
from tests.media.sfu_harness import (  # noqa: F401 - the fixtures of the SFU tests
    Lesson,
    db_url,
    lesson,
    loopback_clients,
    media_workers,
    settings,
)
from tests.media.sfu_helpers import BLUE, GREEN, RED, ColorTrack, ToneTrack, close_to, frames
from tests.utils.wait import until


def play(lesson: Lesson, scenario: Callable[[], Awaitable[None]]) -> None:
    """``Lesson.play`` in a thread of its own: it runs after the browser tests too (whose Playwright
    keeps an event loop running in this thread)."""

    async def main() -> None:
        try:
            await asyncio.wait_for(scenario(), 90)
        finally:
            await lesson.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, main()).result()


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}\n{r.exc_text or ''}" for r in caplog.records if r.levelno >= logging.ERROR]


class TransportStates:
    """The worker's ``transport_state`` notifications, as the server's media plane hears them."""

    def __init__(self, app: Any) -> None:
        self.events: list[dict[str, Any]] = []
        app.state.media.add_listener(lambda index, event, data: self.events.append(data)
                                     if event == "transport_state" else None)

    async def closed(self, client: LessonClient, direction: str, timeout: float = 10.0) -> None:
        """Until the server saw ``client``'s ``direction`` connection close (it read no ``leave`` yet)."""
        deadline = time.monotonic() + timeout
        while not any(e["participant_id"] == client.participant_id and e["state"] == "closed"
                      and f"-{direction}-" in e["transport_id"] for e in list(self.events)):
            assert time.monotonic() < deadline, f"the server never saw {direction} of {client.participant_id} close"
            await asyncio.sleep(0.05)


async def close_connections(client: LessonClient) -> None:
    """What a leaving page does first: its peer connections go (the socket is still open)."""
    for pc in (client.publisher, client.subscriber):
        if pc is not None:
            await pc.close()


async def keeps_receiving(client: LessonClient, pid: str, colour: tuple[int, int, int]) -> None:
    seen = await frames(await client.track(pid, "camera"), 15, timeout=15)
    assert all(close_to(x, colour) for x in seen[-5:]), seen


def test_leaving_while_the_room_changes_logs_no_error_and_the_others_keep_receiving(
        lesson: Lesson, app: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    states = TransportStates(app)
    w = lesson.world

    async def scenario() -> None:
        main = await lesson.join(w.teacher)
        recv_a = await lesson.join(w.terminal_recv)
        recv_b = await lesson.join(w.assistant)
        observer = await lesson.join(w.researcher_a)
        await main.publish({"camera": ColorTrack(RED), "microphone": ToneTrack()})
        await recv_a.publish({"camera": ColorTrack(GREEN)})
        await recv_b.publish({"camera": ColorTrack(BLUE)})
        m, a, b = main.participant_id, recv_a.participant_id, recv_b.participant_id
        for c in (recv_a, recv_b):
            await c.subscribe([{"participant_id": m, "source": "camera"}, {"participant_id": m, "source": "microphone"},
                               {"participant_id": "stage", "source": "camera"}])
        await observer.subscribe([{"participant_id": m, "source": "camera"}, {"participant_id": a, "source": "camera"},
                                  {"participant_id": b, "source": "camera"}])
        await main.subscribe([{"participant_id": a, "source": "camera"}, {"participant_id": b, "source": "camera"}])
        await frames(await observer.track(a, "camera"), 3)
        await frames(await main.track(b, "camera"), 3)
        await main.request({"type": "set_on_stage", "participant_id": a})
        await frames(await recv_b.track("stage", "camera"), 3)

        # the researcher closes the page: its connections are gone before its `leave` is read...
        await close_connections(observer)
        await states.closed(observer, "recv")
        # ...and meanwhile the classroom on stage leaves: the stage empties, everyone's consumers of it go
        await recv_a.close()
        lesson.clients.remove(recv_a)
        await observer.close()
        lesson.clients.remove(observer)

        # the others go on: the teacher is seen at B, B at the teacher's
        await keeps_receiving(recv_b, m, RED)
        await keeps_receiving(main, b, BLUE)

    play(lesson, scenario)
    assert not errors(caplog), errors(caplog)


def test_leaving_in_the_middle_of_a_renegotiation_logs_no_error(
        lesson: Lesson, app: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    states = TransportStates(app)
    w = lesson.world

    async def scenario() -> None:
        main = await lesson.join(w.teacher)
        leaving = await lesson.join(w.terminal_recv)
        staying = await lesson.join(w.assistant)
        await main.publish({"camera": ColorTrack(RED), "microphone": ToneTrack()})
        await leaving.publish({"camera": ColorTrack(GREEN)})
        await staying.publish({"camera": ColorTrack(BLUE)})
        m = main.participant_id
        for c in (leaving, staying):
            await c.subscribe([{"participant_id": m, "source": "camera"}, {"participant_id": m, "source": "microphone"}])
        await frames(await leaving.track(m, "camera"), 3)
        await main.subscribe([{"participant_id": leaving.participant_id, "source": "camera"},
                              {"participant_id": staying.participant_id, "source": "camera"}])
        await frames(await main.track(leaving.participant_id, "camera"), 3)

        # the leaving page stops answering: an offer stays out
        unanswered: list[dict[str, Any]] = []

        async def no_answer(msg: dict[str, Any]) -> None:
            unanswered.append(msg)

        leaving._on_offer = no_answer  # type: ignore[method-assign]
        await leaving.subscribe([{"participant_id": m, "source": "camera"}])
        await until("an offer from the server", lambda: unanswered, 10)
        # its connections close; its last subscription change (sent while tearing down) arrives after
        await close_connections(leaving)
        await states.closed(leaving, "recv")
        await leaving.subscribe([{"participant_id": m, "source": "camera"}, {"participant_id": m, "source": "microphone"},
                                 {"participant_id": "stage", "source": "camera"},
                                 {"participant_id": "stage", "source": "microphone"}])
        await main.request({"type": "set_on_stage", "participant_id": leaving.participant_id})
        await leaving.close()
        lesson.clients.remove(leaving)

        await keeps_receiving(staying, m, RED)
        await keeps_receiving(main, staying.participant_id, BLUE)

    play(lesson, scenario)
    assert not errors(caplog), errors(caplog)
