"""``signaling.endpoint.Connection``: a frame is written at once when nothing waits before it (no task
wakes per message), and in order behind the frames that had to wait while the socket's buffer was full;
a client that does not read is closed; a socket that fails ends its connection."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from starlette.websockets import WebSocketState

from signaling.endpoint import MAX_OUTBOX, Connection
from signaling.messages import Pong
from signaling.room import CLOSE_TIMEOUT
from tests.utils.loops import LOOPS, run_on


class _Socket:
    """A WebSocket whose buffer can fill: ``send_text`` waits while ``writable`` is clear, as uvicorn's does
    under flow control."""

    def __init__(self) -> None:
        self.application_state = WebSocketState.CONNECTED
        self.writable = asyncio.Event()
        self.writable.set()
        self.frames: list[str] = []
        self.fail: Exception | None = None
        self.closed_with: int | None = None

    async def send_text(self, data: str) -> None:
        await self.writable.wait()
        if self.fail is not None:
            raise self.fail
        self.frames.append(data)

    async def close(self, code: int) -> None:
        self.closed_with = code
        self.application_state = WebSocketState.DISCONNECTED

    def seqs(self) -> list[int]:
        return [json.loads(f)["seq"] for f in self.frames]






def _pong(n: int) -> Pong:
    return Pong(ts=n, server_time=n)


async def _until(check: Any, deadline_s: float = 5.0) -> None:
    end = time.monotonic() + deadline_s
    while not check():
        assert time.monotonic() < end, "not within the deadline"
        await asyncio.sleep(0.005)


@LOOPS
def test_a_frame_is_written_at_once_and_the_ones_that_waited_go_first_in_order(loop: str) -> None:
    async def scenario() -> None:
        ws = _Socket()
        conn = Connection(ws)  # type: ignore[arg-type]
        writer = asyncio.create_task(conn.writer())
        conn.deliver_stamped(_pong(1), 1)
        assert ws.seqs() == [1]  # no await in between: written by the delivery itself
        ws.writable.clear()  # the client's buffer is full
        for seq in (2, 3, 4):
            conn.deliver_stamped(_pong(seq), seq)
        await asyncio.sleep(0.05)
        assert ws.seqs() == [1]
        ws.writable.set()
        await _until(lambda: ws.seqs() == [1, 2, 3, 4])
        conn.deliver_stamped(_pong(5), 5)  # nothing waits any more: at once again
        assert ws.seqs() == [1, 2, 3, 4, 5]
        conn.close(1000)
        await asyncio.wait_for(writer, 5)
        assert ws.closed_with == 1000 and conn.closed.is_set()

    run_on(loop, scenario)


@LOOPS
def test_a_client_that_does_not_read_is_closed_after_what_was_queued(loop: str) -> None:
    async def scenario() -> None:
        ws = _Socket()
        conn = Connection(ws)  # type: ignore[arg-type]
        writer = asyncio.create_task(conn.writer())
        ws.writable.clear()
        for seq in range(1, MAX_OUTBOX + 10):
            conn.deliver_stamped(_pong(seq), seq)
        assert conn.closing
        ws.writable.set()
        await asyncio.wait_for(writer, 10)
        assert ws.closed_with == CLOSE_TIMEOUT
        assert ws.seqs() == list(range(1, len(ws.frames) + 1)) and len(ws.frames) >= MAX_OUTBOX

    run_on(loop, scenario)


@LOOPS
def test_a_socket_that_fails_ends_the_connection_and_takes_nothing_more(loop: str) -> None:
    async def scenario() -> None:
        ws = _Socket()
        conn = Connection(ws)  # type: ignore[arg-type]
        writer = asyncio.create_task(conn.writer())
        ws.fail = RuntimeError("Cannot call send once a close message has been sent.")
        conn.deliver_stamped(_pong(1), 1)  # never raises into the room that delivers
        assert conn.closing
        conn.deliver_stamped(_pong(2), 2)
        with pytest.raises(RuntimeError):
            await asyncio.wait_for(writer, 5)
        assert ws.frames == [] and conn.closed.is_set()

    run_on(loop, scenario)


@LOOPS
def test_a_write_that_waits_is_cancelled_cleanly_with_its_writer(loop: str) -> None:
    async def scenario() -> None:
        ws = _Socket()
        conn = Connection(ws)  # type: ignore[arg-type]
        writer = asyncio.create_task(conn.writer())
        ws.writable.clear()
        conn.deliver_stamped(_pong(1), 1)
        await asyncio.sleep(0.02)
        writer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writer
        assert ws.frames == [] and conn.closed.is_set()

    run_on(loop, scenario)
