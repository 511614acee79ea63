"""The Python lesson client follows a room that leaves its node by itself (``LessonClient(rejoin=...)``),
as the pages do: its socket is closed with 4010 (``RoomRegistry.move_out``, what a node does when its
lease is lost or it drains; a node that dies drops the socket the same way), it fetches a new join
token, joins afresh (its session did not move), publishes its tracks again and asks again for what it
was subscribed to — by user, since everyone's session is new — and decodes the pictures again."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import httpx

from signaling.client import LessonClient
from tests.media.sfu_harness import (  # noqa: F401 - fixtures: a live lesson on 127.0.0.1
    POLICY,
    Lesson,
    db_url,
    lesson,
    loopback_clients,
    media_workers,
    settings,
)
from tests.media.sfu_helpers import GREEN, RED, ColorTrack, close_to, frames

BACK_S = 5.0


def test_a_room_moved_away_is_followed_and_every_picture_decodes_again(lesson: Lesson, app: Any) -> None:
    w = lesson.world
    rooms = app.state.rooms
    server_loop: list[asyncio.AbstractEventLoop] = []
    rooms.on_change = lambda room: server_loop.append(asyncio.get_running_loop())  # (no Redis: only to find it)

    async def answer(user: Any) -> dict[str, Any]:
        def fetch() -> dict[str, Any]:
            r = lesson.http.post(f"/api/v1/lessons/{lesson.lid}/join-token", headers=lesson.auth(user))
            if r.status_code != 200:
                raise httpx.HTTPError(r.text)
            return r.json()
        return await asyncio.to_thread(fetch)

    async def client(user: Any) -> LessonClient:
        c = LessonClient(lesson.base, lesson.lid, (await answer(user))["token"], policy=POLICY,
                         rejoin=lambda: answer(user))
        lesson.clients.append(c)
        await c.connect()
        return c

    async def sees(c: LessonClient, user_id: int, color: tuple[int, int, int], deadline: float) -> float:
        while True:
            assert time.monotonic() < deadline, (c.participant_id, c.roster)
            pid = next((p for p, info in c.roster.items() if info["user_id"] == user_id), None)
            try:
                if pid is not None and all(close_to(x, color) for x in await frames(
                        await c.track(pid, "camera", timeout=1), 3, timeout=1)):
                    return time.monotonic()
            except Exception:  # noqa: BLE001 - a track of a connection gone meanwhile
                pass
            await asyncio.sleep(0.02)

    async def scenario() -> None:
        main, recv = await client(w.teacher), await client(w.terminal_recv)
        await main.publish({"camera": ColorTrack(RED)})
        await recv.publish({"camera": ColorTrack(GREEN)})
        await recv.subscribe([{"participant_id": main.participant_id, "source": "camera"}])
        await main.subscribe([{"participant_id": recv.participant_id, "source": "camera"}])
        await main.request({"type": "chat", "text": "换个服务器"})
        deadline = time.monotonic() + 20
        await asyncio.gather(sees(recv, w.teacher.id, RED, deadline), sees(main, w.terminal_recv.id, GREEN, deadline))
        old = (main.participant_id, recv.participant_id)

        moved = time.monotonic()
        server_loop[-1].call_soon_threadsafe(rooms.move_out, [lesson.lid])
        while not (main.rejoins and recv.rejoins):
            assert time.monotonic() < moved + BACK_S, "no rejoin"
            await asyncio.sleep(0.02)
        back = await asyncio.gather(sees(recv, w.teacher.id, RED, moved + BACK_S),
                                    sees(main, w.terminal_recv.id, GREEN, moved + BACK_S))
        print(f"rejoined and decoding again {max(back) - moved:.2f} s after the room moved")
        for c, was in zip((main, recv), old):
            [rejoin] = c.rejoins
            assert rejoin["reply"] == "joined" and c.participant_id != was  # afresh: the session did not move
            assert rejoin["attempts"] == 1
        assert recv.ws.close_code is None  # on its new socket

    lesson.play(scenario)


def test_a_node_that_cannot_be_reached_is_asked_for_again_when_its_lease_lapses(lesson: Lesson, app: Any) -> None:
    """After its node died, the answer still names that node until its lease lapses, and says when
    (``lease_lapses_in_ms``): the client asks again right then, not at its next back-off step, which may be
    much sooner (a wasted request) or later (a wasted second)."""
    w = lesson.world
    rooms = app.state.rooms
    server_loop: list[asyncio.AbstractEventLoop] = []
    rooms.on_change = lambda room: server_loop.append(asyncio.get_running_loop())  # (no Redis: only to find it)
    dead = socket.socket()  # a port nobody listens on: the dead node
    dead.bind(("127.0.0.1", 0))
    dead_url = f"ws://127.0.0.1:{dead.getsockname()[1]}/api/v1/lessons/{lesson.lid}/ws"
    asked: list[float] = []

    async def answer() -> dict[str, Any]:
        def fetch() -> dict[str, Any]:
            r = lesson.http.post(f"/api/v1/lessons/{lesson.lid}/join-token", headers=lesson.auth(w.terminal_recv))
            assert r.status_code == 200, r.text
            return r.json()
        reply = await asyncio.to_thread(fetch)
        asked.append(time.monotonic())
        if len(asked) == 2:  # the first after the drop: the dead node, its lease lapsing in 0.6 s
            reply.update(ws_url=dead_url, lease_lapses_in_ms=600)
        else:  # (one node: its answers name no socket; a cluster's name the owner's)
            reply["ws_url"] = f"{lesson.base.replace('http://', 'ws://')}/api/v1/lessons/{lesson.lid}/ws"
        return reply

    async def scenario() -> None:
        c = LessonClient(lesson.base, lesson.lid, (await answer())["token"], policy=POLICY, rejoin=answer)
        lesson.clients.append(c)
        await c.connect()
        moved = time.monotonic()
        server_loop[-1].call_soon_threadsafe(rooms.move_out, [lesson.lid])
        while not c.rejoins:
            assert time.monotonic() < moved + BACK_S, "no rejoin"
            await asyncio.sleep(0.02)
        [rejoin] = c.rejoins
        assert rejoin["reply"] == "joined" and rejoin["attempts"] == 2
        waited = asked[2] - asked[1]
        assert 0.6 <= waited < 0.6 + 0.4, waited  # not REJOIN_DELAYS_S[0] (0.05 s)

    try:
        lesson.play(scenario)
    finally:
        dead.close()
