"""Room snapshots in a real redis-server: written within a moment of each change, read back by the next
node with how long the room has been gone (from its last node's last lease renewal, on Redis's clock),
deleted when the room closes; a room that moved away writes nothing more."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis.asyncio as aioredis

from server.core.placement import SEEN_PREFIX
from signaling.messages import Chat, LessonRole, RaiseHand
from signaling.room import Participant, RoomRegistry
from signaling.roomstore import KEY_PREFIX, RoomStateKeeper


def member(pid: str, user_id: int, role: str) -> Participant:
    return Participant(participant_id=pid, user_id=user_id, display_name=f"u{user_id}", role=LessonRole(role),
                       classroom_id=None, listen_only=False, deliver=lambda m: None)


async def until(check: Any, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := await check()):
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.01)
    return value


def test_snapshots_are_kept_read_back_with_the_outage_and_deleted_at_the_close(redis_server) -> None:
    async def body() -> dict[str, Any]:
        r = aioredis.from_url(redis_server.url)
        await r.flushdb()
        try:
            async with RoomStateKeeper(aioredis.from_url(redis_server.url), node_id="node-a") as keeper:
                rooms = RoomRegistry()
                rooms.on_change = keeper.changed
                room = rooms.get_or_open(11)
                main, student = member("m", 1, "main"), member("s", 2, "student")
                room.join(main)
                room.join(student)
                room.handle(student, RaiseHand(raised=True))
                room.handle(main, Chat(text="请回答"))
                async def chat_kept() -> bool:
                    raw = await r.get(KEY_PREFIX + "11")
                    return raw is not None and "请回答".encode() in raw

                await until(chat_kept)
                # node-a's last renewal was 1.5 s ago on Redis's clock
                now_s, now_us = await r.time()
                await r.set(SEEN_PREFIX + "node-a", str(now_s * 1000 + now_us // 1000 - 1500))
                other = RoomStateKeeper(aioredis.from_url(redis_server.url), node_id="node-b")
                snap = await other.load(11)
                none = await other.load(12)
                moved = rooms.move_out([11])
                writes = keeper.writes
                room.handle(main, Chat(text="还在吗"))  # a room that moved away writes nothing
                await asyncio.sleep(0.1)
                after_move = keeper.writes
                keeper.on_event("lesson", {"type": "room_closed", "instance_id": 11})
                async def deleted() -> bool:
                    return await r.exists(KEY_PREFIX + "11") == 0

                gone = await until(deleted)
                await other.redis.aclose()
                return {"snap": snap, "none": none, "moved": moved, "writes": writes, "after_move": after_move,
                        "gone": gone}
        finally:
            await r.aclose()

    out = asyncio.run(body())
    snap = out["snap"]
    assert snap.node == "node-a" and snap.hands == [2] and set(snap.users) == {1, 2}
    assert [c["text"] for c in snap.chat] == ["请回答"]
    assert 1.4 <= snap.down_s <= 3.0, snap.down_s
    assert snap.reason == "node_failover"
    assert out["none"] is None
    assert out["moved"] == [11] and out["writes"] == out["after_move"]
    assert out["gone"]


def test_a_drain_marks_the_snapshot_it_writes(redis_server) -> None:
    async def body() -> Any:
        client = aioredis.from_url(redis_server.url)
        await client.flushdb()
        keeper = RoomStateKeeper(client, node_id="node-c")
        room = RoomRegistry().get_or_open(21)
        room.join(member("m", 1, "main"))
        await keeper.flush(reason="node_drain", rooms=[room])
        snap = await RoomStateKeeper(client, node_id="node-a").load(21)
        await client.aclose()
        return snap

    snap = asyncio.run(body())
    assert snap.reason == "node_drain" and snap.node == "node-c" and set(snap.users) == {1}
