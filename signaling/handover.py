"""Drain: what a node does between SIGTERM and its shutdown, so that a rolling upgrade loses no lesson.

:func:`drain` (the app's SIGTERM hook, ``server.serving``): the node is marked draining in the
registry at once (it takes no new rooms; ``server.core.nodes``).  Alone (no Redis) it then stops as
before.  With other nodes it waits for its lessons to end (their rooms close at the end of the
lesson) for at most ``SANKE_DRAIN_TIMEOUT_S``; the rooms still open then move to other nodes,
announced: each participant is sent ``room_moving`` (the zh-CN text the pages show), the room's
snapshot is written (``signaling.roomstore``, marked as a drain), its lease given up so that another
node takes it at the next join, and its sockets closed with 4010 (``RoomRegistry.move_out``): the
clients fetch a new join token, whose answer names the next owner, and join there as after a
failover.  Then the node stops.

Must not: pick the next owner (placement does, at the clients' next join) or keep a room here after
its lease is given up.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from signaling.messages import RoomMoving
from signaling.room import RoomRegistry

log = logging.getLogger(__name__)

MOVING_ZH = "服务器维护中，课堂正在切换到其他服务器，请稍候…"
POLL_S = 0.25
SETTLE_S = 0.3
"""After the sockets were asked to close: time for their last frames to go out before the node stops."""


async def drain(nodes: Any, placement: Any, rooms: RoomRegistry, keeper: Any | None, *, timeout_s: float) -> list[int]:
    """SIGTERM: see the module's docstring.  Answers the lessons moved to other nodes."""
    await nodes.drain()
    if not getattr(placement, "clustered", False):
        return []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    if rooms.rooms:
        log.warning("drain: waiting up to %.0f s for the lessons %s to end", timeout_s, sorted(rooms.rooms))
    while rooms.rooms and loop.time() < deadline:
        await asyncio.sleep(min(POLL_S, max(0.0, deadline - loop.time())))
    lessons = sorted(rooms.rooms)
    if not lessons:
        return []
    log.warning("drain: moving the lessons %s to other nodes", lessons)
    for instance_id in lessons:
        room = rooms.get(instance_id)
        if room is None:
            continue
        for p in list(room.participants.values()):
            p.send_to_socket(RoomMoving(message=MOVING_ZH))
    if keeper is not None:
        try:
            await keeper.flush(reason="node_drain", rooms=[r for i in lessons if (r := rooms.get(i)) is not None])
        except Exception as exc:  # noqa: BLE001 - the rooms move anyway (from the last snapshot written)
            log.warning("drain: writing the rooms' snapshots failed (%s)", exc.__class__.__name__)
    for instance_id in lessons:  # first: a client that rejoins at once is placed on another node
        await placement.release(instance_id)
    moved = rooms.move_out(lessons)
    await asyncio.sleep(SETTLE_S)
    return moved
