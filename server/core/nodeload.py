"""NodeLoad: this node's load now — its media workers (CPU, packets/s, consumers) and its rooms.

:meth:`NodeLoad.sample` asks every live media worker of the pool for ``worker.load``
(:mod:`media.load`) at once, counts the rooms and participants of this process's room registry,
and turns the workers' counters into

- totals per worker slot that only grow for the life of this node, also across a worker process
  that died and was replaced (a new process's counters are added from zero), for ``/metrics``;
- rates per worker over the last second or more (CPU: process CPU time / wall time, 1.0 = one
  core busy; forwarded packets per second), for the heartbeat (:mod:`server.core.nodes`) and the
  admin page.

A worker in the server process (``SANKE_MEDIA_WORKERS=0``) reports the whole process's CPU time.
A sample younger than ``max_age`` is reused, so a scrape right after a heartbeat costs nothing.

Must not: talk to Redis or decide anything (placement, draining); it only measures.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from media.channel import ChannelError
from media.load import COUNTERS

log = logging.getLogger(__name__)

LOAD_METHOD = "worker.load"
LOAD_TIMEOUT_S = 2.0
"""A worker that does not answer within this long is left out of the sample."""
RATE_WINDOW_S = 1.0
"""Rates are computed over at least this long (a sample right after another keeps the rates it had)."""


@dataclass
class WorkerLoad:
    """One media worker slot: what it carries now, its rates and its totals."""

    index: int
    pid: int
    routers: int = 0
    transports: int = 0
    producers: int = 0
    consumers: int = 0
    loss_up: float = 0.0
    """Worst loss fraction of a publisher's stream in the last receiver-report interval."""
    loss_down: float = 0.0
    """Worst loss fraction a subscriber reported in its last receiver report."""
    cpu: float = 0.0
    """CPU time / wall time over the last rate window (1.0: one core busy)."""
    packets_per_s: float = 0.0
    """RTP packets forwarded to subscribers per second over the last rate window."""
    cpu_seconds: float = 0.0
    """CPU time used by this slot's worker processes since this node started."""
    totals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    """``media.load.COUNTERS`` since this node started (every process of the slot)."""

    def brief(self) -> dict[str, Any]:
        """What the registry carries of this worker."""
        return {"index": self.index, "pid": self.pid, "cpu": round(self.cpu, 3),
                "packets_per_s": round(self.packets_per_s, 1), "routers": self.routers,
                "transports": self.transports, "producers": self.producers, "consumers": self.consumers}


@dataclass
class LoadSample:
    at: float
    """``time.monotonic()`` when it was taken."""
    rooms: int
    participants: int
    participants_by_role: dict[str, int]
    workers: list[WorkerLoad]


@dataclass
class _Slot:
    """What the node keeps per worker slot between samples."""

    pid: int = 0
    raw: dict[str, float] = field(default_factory=dict)
    """The worker's own counters at the previous sample (``cpu_s`` and ``media.load.COUNTERS``)."""
    load: WorkerLoad | None = None
    rate_at: float = 0.0
    rate_cpu: float = 0.0
    rate_packets: int = 0


class NodeLoad:
    def __init__(self, pool: Any, rooms: Callable[[], Any]) -> None:
        """``pool``: the :class:`media.pool.WorkerPool`; ``rooms()``: the room registry
        (``signaling.room.RoomRegistry``), or None before the app attached it."""
        self.pool = pool
        self._rooms = rooms
        self._slots: dict[int, _Slot] = {}
        self._last: LoadSample | None = None
        self._lock = asyncio.Lock()

    @property
    def last(self) -> LoadSample | None:
        return self._last

    async def sample(self, max_age: float = 0.0, timeout: float = LOAD_TIMEOUT_S) -> LoadSample:
        """This node's load now, or the last sample when it is younger than ``max_age`` seconds.
        A worker that does not answer within ``timeout`` seconds is left out."""
        async with self._lock:  # two samples at once would count the same growth twice
            last = self._last
            if last is not None and time.monotonic() - last.at < max_age:
                return last
            self._last = await self._take(timeout)
            return self._last

    async def _take(self, timeout: float) -> LoadSample:
        handles = [h for h in (self.pool.workers if self.pool.started else [])
                   if h.alive and not h.channel.closed]
        answers = await asyncio.gather(*(h.request(LOAD_METHOD, {}, timeout=timeout) for h in handles),
                                       return_exceptions=True)
        now = time.monotonic()
        workers: list[WorkerLoad] = []
        for handle, answer in zip(handles, answers):
            if isinstance(answer, BaseException):
                if not isinstance(answer, (ChannelError, TimeoutError, asyncio.TimeoutError)):
                    log.warning("load: worker %d answered %r", handle.index, answer)
                continue
            workers.append(self._account(handle.index, answer, now))
        rooms_registry = self._rooms()
        rooms = list(rooms_registry.rooms.values()) if rooms_registry is not None else []
        roles: Counter[str] = Counter()
        for room in rooms:
            for p in list(room.participants.values()):
                roles[p.role.value] += 1
        return LoadSample(at=now, rooms=len(rooms), participants=sum(roles.values()),
                          participants_by_role=dict(roles), workers=sorted(workers, key=lambda w: w.index))

    def _account(self, index: int, answer: dict[str, Any], now: float) -> WorkerLoad:
        slot = self._slots.setdefault(index, _Slot())
        pid = int(answer.get("pid") or 0)
        raw = {key: float(answer.get(key) or 0) for key in ("cpu_s", *COUNTERS)}
        same = pid == slot.pid
        previous = slot.load
        load = WorkerLoad(index=index, pid=pid)
        for key in ("routers", "transports", "producers", "consumers"):
            setattr(load, key, int(answer.get(key) or 0))
        load.loss_up = float(answer.get("loss_up") or 0.0)
        load.loss_down = float(answer.get("loss_down") or 0.0)
        # totals: what grew since the previous sample of the same process; all of a new process's
        grown = {key: max(0.0, value - (slot.raw.get(key, 0.0) if same else 0.0)) for key, value in raw.items()}
        load.cpu_seconds = (previous.cpu_seconds if previous is not None else 0.0) + grown["cpu_s"]
        for key in COUNTERS:
            load.totals[key] = (previous.totals[key] if previous is not None else 0) + int(grown[key])
        slot.pid, slot.raw = pid, raw
        # rates over at least RATE_WINDOW_S
        if previous is None or not slot.rate_at:
            slot.rate_at, slot.rate_cpu, slot.rate_packets = now, load.cpu_seconds, load.totals["forwarded_packets"]
        elif now - slot.rate_at >= RATE_WINDOW_S:
            span = now - slot.rate_at
            load.cpu = (load.cpu_seconds - slot.rate_cpu) / span
            load.packets_per_s = (load.totals["forwarded_packets"] - slot.rate_packets) / span
            slot.rate_at, slot.rate_cpu, slot.rate_packets = now, load.cpu_seconds, load.totals["forwarded_packets"]
        else:
            load.cpu, load.packets_per_s = previous.cpu, previous.packets_per_s
        slot.load = load
        return load
