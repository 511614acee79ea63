"""Placement: which node owns a lesson's room, chosen by load when the room is first asked for,
and held by a lease in Redis that the owner renews.

With Redis (``SANKE_REDIS_URL``):

- ``sanke:room:<lesson>`` holds the owner's node id with an expiry of ``SANKE_ROOM_LEASE_SECONDS``;
  ``sanke:node-rooms:<node>`` (a hash lesson → weight, same expiry) lists the rooms placed on a node.
  The owner renews both every third of a lease, all its rooms in one script call; when its room
  ends it deletes them.  A node that dies stops renewing: its leases lapse and the next join places
  the room again (a lease whose owner's registry entry is already gone counts as lapsed at once).
  Every renewal writes ``sanke:node-live:<node>`` with the lease's expiry; only a node with it is
  chosen, so a dead node whose registry entry outlives its leases gets nothing.
- A node that cannot renew stops its rooms (``on_lost``, set by the app) once its last renewal that
  got through is ``LOST_AFTER`` of a lease old, before their leases can lapse, and a room whose lease
  another node holds at once: never two live copies of a room.  It gives those leases up when Redis
  answers again.
- :meth:`Placement.place` answers the room's owner: the live owner if it has one, else a new one
  chosen, and its lease taken, in one Lua script — so two nodes placing the same lesson at the same
  moment agree, and sixty rooms placed in the same second are spread (each placement counts the
  weight of the rooms placed just before it, before any load report shows them).  An owner whose
  lease is overdue for renewal is still the owner (only Redis's expiry ends a lease), but the answer
  says when the lease lapses (``Placed.lapses_in_ms``): the clients of a killed node ask again right
  then, and not before.
- The choice (:func:`headroom`, in the script): among the nodes accepting rooms (registered, not
  draining, healthy, below ``SANKE_NODE_MAX_ROOMS``), the one with the most free consumers —
  capacity (workers × ``SANKE_NODE_WORKER_CONSUMERS``) minus the larger of what its workers carry
  (consumers, or CPU as its share of the capacity) and the weights of the rooms placed on it
  (``scheduler.room_weight``).  No node accepting: :class:`NoNodeError`.
- Only an open room is placed (the join-token route and the endpoint check), so every lease ends
  with the room's ``room_closed``.
- A new placement is counted (``sanke_room_placements_total{result}``) and recorded in the
  database (``scheduler.placement_models``) by the node that made it.

Without Redis this node owns every room and nothing is written anywhere.

Must not: open, move or close rooms (the signaling endpoint asks where a room lives and redirects);
trust another machine's clock (Redis's key expiry is the only judge of a lease).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from server.core.nodes import NodeInfo, NodeRegistry
from server.core.tasks import cancel_and_wait

log = logging.getLogger(__name__)

ROOM_PREFIX = "sanke:room:"
NODE_ROOMS_PREFIX = "sanke:node-rooms:"
LIVE_PREFIX = "sanke:node-live:"
"""``sanke:node-live:<node>``: written by every lease renewal with the lease's expiry.  A node whose
renewals stopped (killed, frozen, cut off) loses it exactly when its rooms' leases lapse, while its
registry entry may live on for a heartbeat or two: only a node with it takes new rooms."""
SEEN_PREFIX = "sanke:node-seen:"
"""``sanke:node-seen:<node>``: Redis's time (ms) of the node's last lease renewal, kept a day: where a
room that moves from a dead node dates the start of its outage."""
CPU_LIMIT = 0.85
"""A worker busier than this (share of one core) counts as full, whatever its consumers."""
CPU_IDLE = 0.05
"""What an idle worker spends (timers, its channel): not counted as load."""
REDIS_TIMEOUT_S = 1.5
LOST_AFTER = 0.75
"""A node whose last lease renewal that got through is this share of a lease old stops its rooms."""
OVERDUE_LEFT = 0.5
"""A lease with less than this share of its length left is overdue for renewal: renewed every third of a
lease, it never falls below two thirds while its owner renews (half a renewal interval of slack)."""

# KEYS[1] the room's lease.  ARGV: lesson, weight, lease ms, node-rooms prefix, live prefix, then per
# registered node five values: id, capacity, used (measured), max rooms (-1: none), accepting (1/0).
# A node is a candidate only if it accepts rooms and its renewals go on (its live key exists).
# Returns {owner, 1 if placed now else 0}, or {false, -1} when no node accepts rooms.
_PLACE = """
local owner = redis.call('GET', KEYS[1])
if owner then
  for i = 6, #ARGV, 5 do
    if ARGV[i] == owner then return {owner, 0} end
  end
end
local best, best_head = nil, nil
for i = 6, #ARGV, 5 do
  if ARGV[i + 4] == '1' and redis.call('EXISTS', ARGV[5] .. ARGV[i]) == 1 then
    local placed = redis.call('HVALS', ARGV[4] .. ARGV[i])
    local max_rooms = tonumber(ARGV[i + 3])
    if max_rooms < 0 or #placed < max_rooms then
      local committed = 0
      for _, w in ipairs(placed) do committed = committed + tonumber(w) end
      local used = math.max(tonumber(ARGV[i + 2]), committed)
      local head = tonumber(ARGV[i + 1]) - used
      if best == nil or head > best_head then best, best_head = ARGV[i], head end
    end
  end
end
if best == nil then return {false, -1} end
redis.call('SET', KEYS[1], best, 'PX', ARGV[3])
redis.call('HSET', ARGV[4] .. best, ARGV[1], ARGV[2])
redis.call('PEXPIRE', ARGV[4] .. best, ARGV[3])
return {best, 1}
"""

# KEYS[1] this node's rooms hash, KEYS[2] its live key, KEYS[3] its last-seen key.  ARGV: node id, lease ms, room prefix.
# Renews every lease still this node's, takes back one that lapsed with nobody else holding it,
# forgets one another node holds; renews the live key and writes the last-seen key (Redis's own clock,
# in ms).  Returns the lessons forgotten.
_RENEW = """
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
local t = redis.call('TIME')
redis.call('SET', KEYS[3], tostring(t[1] * 1000 + math.floor(t[2] / 1000)), 'EX', 86400)
local lost = {}
for _, lesson in ipairs(redis.call('HKEYS', KEYS[1])) do
  local key = ARGV[3] .. lesson
  local owner = redis.call('GET', key)
  if owner == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
  elseif not owner then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
  else
    redis.call('HDEL', KEYS[1], lesson)
    table.insert(lost, lesson)
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return lost
"""

# KEYS[1] the room's lease, KEYS[2] this node's rooms hash.  ARGV: node id, lesson.
_RELEASE = """
redis.call('HDEL', KEYS[2], ARGV[2])
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


class NoNodeError(Exception):
    """No live node accepts new rooms (all draining, full or unhealthy)."""


@dataclass(frozen=True)
class Placed:
    node_id: str
    url: str
    """The owner's base URL (``SANKE_PUBLIC_URL`` of that node)."""
    new: bool
    """Placed by this call (not an owner found)."""
    here: bool
    """The owner is this node."""
    lapses_in_ms: int | None = None
    """Another node's lease whose renewal is overdue (:meth:`Placement.overdue`; its node killed, frozen
    or cut off): it lapses in this many ms unless renewed, and the next join after that places the room
    anew.  A client that cannot reach the owner asks again then (not sooner: the answer would be the
    same node)."""

    def ws_url(self, instance_id: int) -> str:
        """The owner's signaling WebSocket of the lesson."""
        base = self.url.rstrip("/")
        if base.startswith("https://"):
            base = "wss://" + base[len("https://"):]
        elif base.startswith("http://"):
            base = "ws://" + base[len("http://"):]
        return f"{base}/api/v1/lessons/{instance_id}/ws"


def headroom(info: NodeInfo) -> tuple[int, int]:
    """``(capacity, used)`` of a node in consumers, from its registry entry: capacity is workers ×
    consumers per worker; used is the larger of the consumers its workers carry and its workers'
    CPU above ``CPU_IDLE`` as a share of the capacity (a worker at ``CPU_LIMIT`` of a core counts as
    full)."""
    workers = max(1, int(info.capacity.get("workers") or 1))
    per_worker = max(1, int(info.capacity.get("consumers_per_worker") or 1))
    capacity = workers * per_worker
    consumers = sum(int(w.get("consumers") or 0) for w in info.workers)
    cpu = sum(max(0.0, float(w.get("cpu") or 0.0) - CPU_IDLE) for w in info.workers)
    by_cpu = int(capacity * min(1.0, cpu / (workers * (CPU_LIMIT - CPU_IDLE))))
    return capacity, max(consumers, by_cpu)


Weight = int | Callable[[], Awaitable[int]]


class Placement:
    """Where rooms live.  An async context manager (with Redis: the lease renewal task)."""

    def __init__(self, registry: NodeRegistry, *, lease_seconds: float, counter: Any | None = None,
                 record: Callable[[str, int, str, int, datetime], None] | None = None) -> None:
        """``registry``: this node's registry (its Redis client is used; None: one node).
        ``counter``: ``sanke_room_placements_total`` (labels ``result``).  ``record(kind, lesson,
        node, weight, now)``: writes a placement (``kind`` ``placed``) or release (``released``) to
        the database; sync, run in a thread, its failure only logged."""
        self.registry = registry
        self.redis = registry.redis
        self.node_id = registry.node_id
        self.lease_ms = int(lease_seconds * 1000)
        self.counter = counter
        self.record = record
        self.own_key = NODE_ROOMS_PREFIX + self.node_id
        self._task: asyncio.Task[None] | None = None
        self._scripts: dict[str, Any] = {}
        self.renewals = 0
        self._releasing: set[asyncio.Task[None]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self._renewed_at = 0.0
        """Loop time the last renewal that got through was sent."""
        self._dropped: set[int] = set()
        """Rooms stopped here whose leases are still to be given up."""
        self.dropped_total = 0
        self.on_lost: Callable[[list[int] | None], list[int]] | None = None
        """Stops this node's rooms of these lessons (None: all of them), closing their sockets so that
        their clients join again on the room's next owner; answers the lessons it stopped.  Set by the app."""

    @property
    def clustered(self) -> bool:
        return self.redis is not None

    def _script(self, name: str, body: str) -> Any:
        if name not in self._scripts:
            assert self.redis is not None
            self._scripts[name] = self.redis.register_script(body)
        return self._scripts[name]

    def _count(self, result: str) -> None:
        if self.counter is not None:
            self.counter.labels(result=result).inc()

    # ------------------------------------------------------------------ placing

    async def place(self, instance_id: int, weight: Weight) -> Placed:
        """The owner of the lesson's room: its live owner, else one chosen now (its lease taken).
        ``weight``: the room's expected consumers, or an async callable computing them (asked only
        when the room is placed anew).  ``NoNodeError``: no node takes rooms; ``ConnectionError``:
        Redis unreachable."""
        settings = self.registry.settings
        if self.redis is None:
            return Placed(self.node_id, settings.effective_public_url, new=False, here=True)
        nodes = {n.node_id: n for n in await self.registry.nodes()}
        key = ROOM_PREFIX + str(instance_id)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.get(key)
                pipe.pttl(key)
                owner, left_ms = await asyncio.wait_for(pipe.execute(), REDIS_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - redis-py raises its own and OS errors
            raise ConnectionError(f"Redis: {exc.__class__.__name__}") from exc
        if owner is not None and _text(owner) in nodes:
            return self._placed(instance_id, nodes[_text(owner)], new=False,
                                lapses_in_ms=self.overdue(left_ms))
        w = weight if isinstance(weight, int) else await weight()
        args: list[Any] = [instance_id, max(1, int(w)), self.lease_ms, NODE_ROOMS_PREFIX, LIVE_PREFIX]
        for info in nodes.values():
            capacity, used = headroom(info)
            max_rooms = info.capacity.get("max_rooms")
            accepting = info.accepting_rooms and not info.draining
            if info.node_id == self.node_id:  # this node's own state is fresher than its last heartbeat
                accepting = accepting and self.registry.accepting_rooms
            args += [info.node_id, capacity, used, -1 if max_rooms is None else int(max_rooms),
                     1 if accepting else 0]
        try:
            found, placed = await asyncio.wait_for(self._script("place", _PLACE)(keys=[key], args=args),
                                                   REDIS_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001
            raise ConnectionError(f"Redis: {exc.__class__.__name__}") from exc
        if found is None:
            self._count("refused")
            raise NoNodeError(f"no node accepts lesson {instance_id}")
        info = nodes[_text(found)]
        if placed != 1:  # another node placed it meanwhile
            return self._placed(instance_id, info, new=False)
        result = self._placed(instance_id, info, new=True)
        self._count("here" if result.here else "elsewhere")
        log.info("placement: lesson %s placed on node %s (weight %d)", instance_id, info.node_id, w)
        await self._record("placed", instance_id, info.node_id, int(w))
        return result

    def overdue(self, left_ms: Any) -> int | None:
        """``left_ms`` (a lease's remaining time to live, Redis's ``PTTL``) when its renewal is overdue:
        less than ``OVERDUE_LEFT`` of a lease is left, where an owner that renews on time never lets it
        fall below two thirds; None otherwise (or no expiry: ``PTTL`` -1/-2)."""
        if not isinstance(left_ms, int) or left_ms < 0 or left_ms >= OVERDUE_LEFT * self.lease_ms:
            return None
        return left_ms

    def _placed(self, instance_id: int, info: NodeInfo, *, new: bool, lapses_in_ms: int | None = None) -> Placed:
        here = info.node_id == self.node_id
        if here:  # this node's again: a lease still to be given up from before is not
            self._dropped.discard(instance_id)
        return Placed(info.node_id, info.url, new=new, here=here, lapses_in_ms=None if here else lapses_in_ms)

    async def _record(self, kind: str, instance_id: int, node_id: str, weight: int) -> None:
        if self.record is None:
            return
        try:
            await asyncio.to_thread(self.record, kind, instance_id, node_id, weight, datetime.now())
        except Exception:  # noqa: BLE001 - the record is for people; the lease is what counts
            log.exception("placement: recording the %s of lesson %s failed", kind, instance_id)

    # ------------------------------------------------------------------ the owner's side

    async def release(self, instance_id: int) -> None:
        """The room ended: give up its lease if this node holds it (never raises)."""
        if self.redis is None:
            return
        try:
            released = await asyncio.wait_for(self._script("release", _RELEASE)(
                keys=[ROOM_PREFIX + str(instance_id), self.own_key], args=[self.node_id, instance_id]),
                REDIS_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - the lease lapses by itself
            log.warning("placement: releasing lesson %s failed (%s); its lease lapses", instance_id,
                        exc.__class__.__name__)
            return
        if released:
            await self._record("released", instance_id, self.node_id, 0)

    def on_event(self, topic: str, event: dict[str, Any]) -> None:
        """Bus handler (topic ``lesson``): ``room_closed`` releases the lease."""
        if self.redis is None or not isinstance(event, dict) or event.get("type") != "room_closed":
            return
        try:
            instance_id = int(event["instance_id"])
        except (KeyError, TypeError, ValueError):
            return
        task = asyncio.get_running_loop().create_task(self.release(instance_id))
        self._releasing.add(task)  # held until done: the loop keeps only a weak reference
        task.add_done_callback(self._releasing.discard)

    async def renew(self) -> list[int]:
        """Give up the leases of rooms this node dropped while Redis was away, then renew every lease
        of this node (one script call); answers the lessons another node now owns."""
        assert self.redis is not None
        for lesson in sorted(self._dropped):
            await asyncio.wait_for(self._script("release", _RELEASE)(
                keys=[ROOM_PREFIX + str(lesson), self.own_key], args=[self.node_id, lesson]), REDIS_TIMEOUT_S)
            self._dropped.discard(lesson)
        sent = asyncio.get_running_loop().time()
        lost = await asyncio.wait_for(self._script("renew", _RENEW)(
            keys=[self.own_key, LIVE_PREFIX + self.node_id, SEEN_PREFIX + self.node_id],
            args=[self.node_id, self.lease_ms, ROOM_PREFIX]),
            REDIS_TIMEOUT_S)
        self.renewals += 1
        self._renewed_at = sent  # Redis counts the new expiry from after this moment
        return [int(_text(x)) for x in lost or []]

    def _lose(self, lessons: list[int] | None) -> None:
        """Stop serving ``lessons`` (None: every room here), whose leases are another node's or may
        have lapsed; what was stopped is released at the next renewal that gets through."""
        if self.on_lost is None:
            return
        try:
            dropped = self.on_lost(lessons)
        except Exception:  # noqa: BLE001 - the rooms' owner must still hear of it next time
            log.exception("placement: stopping rooms whose leases are lost failed")
            return
        self.dropped_total += len(dropped)
        self._dropped.update(dropped)

    async def _run(self) -> None:
        interval = self.lease_ms / 3000
        while True:
            await asyncio.sleep(interval)
            try:
                lost = await self.renew()
            except Exception as exc:  # noqa: BLE001 - Redis down: the registry says so too
                log.warning("placement: renewing the leases failed (%s)", exc.__class__.__name__)
                continue
            if lost:
                log.warning("placement: lessons %s are owned by another node now: their rooms here stop", lost)
                self._lose(lost)

    async def _watch(self) -> None:
        """While renewals fail: once the last one that got through is ``LOST_AFTER`` of a lease old,
        every room here stops (its lease may lapse any moment after, and another node may take it:
        there must never be two live copies of a room).  Runs apart from the renewals, which may hang
        for ``REDIS_TIMEOUT_S``."""
        loop = asyncio.get_running_loop()
        lease_s = self.lease_ms / 1000
        stopped_for: float | None = None
        while True:
            due = self._renewed_at + LOST_AFTER * lease_s
            if self._renewed_at == stopped_for:  # stopped already: until a renewal gets through
                await asyncio.sleep(lease_s / 6)
                continue
            if loop.time() < due:
                await asyncio.sleep(max(0.05, min(lease_s / 6, due - loop.time())))
                continue
            stopped_for = self._renewed_at
            log.error("placement: no lease renewal for %.1f s: node %s stops its rooms (their leases may lapse "
                      "and another node take them)", loop.time() - self._renewed_at, self.node_id)
            self._lose(None)

    async def __aenter__(self) -> "Placement":
        if self.redis is not None:
            self._renewed_at = asyncio.get_running_loop().time()
            with contextlib.suppress(Exception):  # alive (candidate for rooms) before the first interval
                await self.renew()
            self._task = asyncio.create_task(self._run(), name="sanke-room-leases")
            self._watcher = asyncio.create_task(self._watch(), name="sanke-room-lease-watch")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await cancel_and_wait(self._watcher)
        await cancel_and_wait(self._task)
        self._task = self._watcher = None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
