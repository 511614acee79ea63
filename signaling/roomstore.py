"""Room snapshots in Redis: what of a live room must outlive its node, so that the node that takes the
room after a failover (or a drain) opens it as it was.

With Redis, :class:`RoomStateKeeper` is every room's ``on_change`` (``signaling.room.Room``): after each
change of what a snapshot holds (who is on stage, mutes, raised hands, mute all, live, the recent chat;
``signaling.room.RoomSnapshot``) the room is marked, and a writer task sets
``sanke:room-state:<lesson>`` to its snapshot (JSON) within the same turn of the event loop, rooms
changed meanwhile in one pipeline.  ``room_closed`` deletes the key.  :meth:`load` reads it back for a
room about to open on this node, with how long the room has been gone: from its previous node's last
lease renewal (``server.core.placement.SEEN_PREFIX``, Redis's clock) to Redis's now.

Without Redis nothing is kept (one node: a room never moves).

Must not: decide where a room lives (``server.core.placement``) or touch a room (it reads snapshots the
room hands it); block the event loop (writes are one task's; a write that fails is retried with the
room's latest snapshot, and only logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from server.core.placement import SEEN_PREFIX
from server.core.tasks import cancel_and_wait
from signaling.room import Room, RoomSnapshot

log = logging.getLogger(__name__)

KEY_PREFIX = "sanke:room-state:"
TTL_S = 24 * 3600
"""A snapshot outlives its room's last change by this long at most (``room_closed`` deletes it first)."""
REDIS_TIMEOUT_S = 1.5
RETRY_S = 0.5


class RoomStateKeeper:
    """Writes room snapshots to Redis and reads them back.  An async context manager (the writer task)."""

    def __init__(self, redis: Any | None, *, node_id: str) -> None:
        self.redis = redis
        self.node_id = node_id
        self._dirty: dict[int, Room] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.writes = 0
        self.failures = 0

    @property
    def clustered(self) -> bool:
        return self.redis is not None

    def changed(self, room: Room) -> None:
        """``Room.on_change``: write this room's snapshot soon."""
        if self.redis is None:
            return
        self._dirty[room.instance_id] = room
        self._wake.set()

    async def load(self, instance_id: int) -> RoomSnapshot | None:
        """The snapshot another node left of this lesson's room (None: none, or Redis failed), with
        ``down_s`` set."""
        if self.redis is None:
            return None
        try:
            raw = await asyncio.wait_for(self.redis.get(KEY_PREFIX + str(instance_id)), REDIS_TIMEOUT_S)
            if raw is None:
                return None
            snap = RoomSnapshot.parse(raw)
            if snap.node is not None:
                async with self.redis.pipeline(transaction=False) as pipe:
                    pipe.get(SEEN_PREFIX + snap.node)
                    pipe.time()
                    seen, now = await asyncio.wait_for(pipe.execute(), REDIS_TIMEOUT_S)
                if seen is not None:
                    now_ms = int(now[0]) * 1000 + int(now[1]) // 1000
                    snap.down_s = max(0.0, (now_ms - int(seen)) / 1000)
        except ValueError as exc:
            log.warning("room state: lesson %s: ignored a bad snapshot: %s", instance_id, exc)
            return None
        except Exception as exc:  # noqa: BLE001 - redis-py raises its own and OS errors
            log.warning("room state: lesson %s: reading its snapshot failed (%s); it opens afresh", instance_id,
                        exc.__class__.__name__)
            return None
        return snap

    def on_event(self, topic: str, event: dict[str, Any]) -> None:
        """Bus handler (topic ``lesson``): ``room_closed`` deletes the lesson's snapshot."""
        if self.redis is None or not isinstance(event, dict) or event.get("type") != "room_closed":
            return
        try:
            instance_id = int(event["instance_id"])
        except (KeyError, TypeError, ValueError):
            return
        self._dirty.pop(instance_id, None)
        asyncio.get_running_loop().create_task(self._delete(instance_id))

    async def _delete(self, instance_id: int) -> None:
        with contextlib.suppress(Exception):  # otherwise it expires
            await asyncio.wait_for(self.redis.delete(KEY_PREFIX + str(instance_id)), REDIS_TIMEOUT_S)

    async def flush(self, *, reason: str | None = None, rooms: list[Room] | None = None) -> None:
        """Write every room marked since the last write (one pipeline), and ``rooms``; the ones that failed
        stay marked.  ``reason``: why these rooms are about to move (``node_drain``), for their next node."""
        assert self.redis is not None
        marked, self._dirty = self._dirty, {}
        marked.update({r.instance_id: r for r in rooms or []})
        live = {i: r for i, r in marked.items() if not r.closed}  # closed or moved away: not ours to write
        if not live:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for instance_id, room in live.items():
                    snap = room.snapshot()
                    snap.node = self.node_id
                    if reason is not None:
                        snap.reason = reason
                    pipe.set(KEY_PREFIX + str(instance_id), snap.to_json(), ex=TTL_S)
                await asyncio.wait_for(pipe.execute(), REDIS_TIMEOUT_S)
        except Exception:
            for instance_id, room in live.items():
                self._dirty.setdefault(instance_id, room)
            raise
        self.writes += len(live)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except Exception as exc:  # noqa: BLE001 - Redis down: the registry and placement say so too
                self.failures += 1
                log.warning("room state: writing %d snapshot(s) failed (%s)", len(self._dirty), exc.__class__.__name__)
                await asyncio.sleep(RETRY_S)
                self._wake.set()

    async def __aenter__(self) -> "RoomStateKeeper":
        if self.redis is not None:
            self._task = asyncio.create_task(self._run(), name="sanke-room-state")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await cancel_and_wait(self._task)
        self._task = None
