"""``signaling.endpoint.Connection.receive``: the next frame within a deadline, with one timer per socket
that is set again only when it is due, not one per frame (a timer per frame lived seconds, reached the
garbage collector's old generation and, at thousands of sockets, lengthened its pauses of the loop).
Silence past the deadline is ``TimeoutError``; a frame moves the deadline; a cancellation from outside
(the connection ends, the server stops) is still a cancellation."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from starlette.websockets import WebSocketState

from signaling.endpoint import Connection
from tests.utils.loops import LOOPS, run_on



class _Socket:
    """A WebSocket whose frames the test puts in ``inbox``, as uvicorn's receive queue would."""

    def __init__(self) -> None:
        self.application_state = WebSocketState.CONNECTED
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def receive(self) -> dict[str, Any]:
        return await self.inbox.get()

    def put(self, text: str) -> None:
        self.inbox.put_nowait({"type": "websocket.receive", "text": text})




class _CountedTimers:
    """Counts the loop's ``call_at`` (every timer goes through it: ``receive``'s, ``asyncio.timeout``'s and
    ``wait_for``'s; the test sets none of its own while it counts)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.n = 0
        self._call_at = loop.call_at

    def __call__(self, when: float, callback: Any, *args: Any, **kwargs: Any) -> Any:
        self.n += 1
        return self._call_at(when, callback, *args, **kwargs)


@LOOPS
def test_frames_within_the_deadline_set_no_timer_each(loop: str) -> None:
    async def scenario() -> None:
        ws = _Socket()
        conn = Connection(ws)  # type: ignore[arg-type]
        running = asyncio.get_running_loop()
        timers = _CountedTimers(running)
        running.call_at = timers  # type: ignore[method-assign]

        async def feed() -> None:
            for n in range(200):
                for _ in range(3):  # the reader is waiting for it (no timer: sleep(0) is a bare yield)
                    await asyncio.sleep(0)
                ws.put(f"f{n}")

        feeder = asyncio.ensure_future(feed())
        got = [await conn.receive(30.0) for _ in range(200)]
        await feeder
        assert got == [f"f{n}" for n in range(200)]
        assert timers.n == 1, timers.n  # the first deadline's; the frames only moved it
        conn.stop_timer()

    run_on(loop, scenario)


@LOOPS
def test_silence_past_the_deadline_is_a_timeout_even_after_frames_moved_it(loop: str) -> None:
    async def scenario() -> None:
        ws = _Socket()
        conn = Connection(ws)  # type: ignore[arg-type]
        for n in range(3):  # each frame moves the deadline: 0.3 s after it
            ws.put(f"f{n}")
            assert await conn.receive(0.3) == f"f{n}"
            await asyncio.sleep(0.1)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await conn.receive(0.3)
        waited = time.monotonic() - started
        assert 0.25 <= waited < 2.0, waited
        # the socket goes on: a frame after a timeout is received, within a new deadline
        ws.put("again")
        assert await conn.receive(0.3) == "again"
        # a shorter deadline than the timer's (the join's, then a ping's) is kept too
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await conn.receive(0.05)
        assert time.monotonic() - started < 0.25
        conn.stop_timer()

    run_on(loop, scenario)


@LOOPS
def test_a_cancellation_from_outside_stays_a_cancellation(loop: str) -> None:
    async def scenario() -> None:
        ws = _Socket()
        conn = Connection(ws)  # type: ignore[arg-type]
        reader = asyncio.ensure_future(conn.receive(30.0))
        await asyncio.sleep(0.05)
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        conn.stop_timer()
        # the deadline rang while the task was not waiting (its work between two frames): nothing happens,
        # and the next wait has its own deadline
        ws2 = _Socket()
        conn2 = Connection(ws2)  # type: ignore[arg-type]
        ws2.put("a")
        assert await conn2.receive(0.05) == "a"
        await asyncio.sleep(0.15)  # past the deadline, not waiting
        ws2.put("b")
        assert await conn2.receive(0.3) == "b"
        conn2.stop_timer()

    run_on(loop, scenario)
