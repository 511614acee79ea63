"""The node registry: which ``sanke serve`` processes make up the cluster, and their load.

Every ``sanke serve`` is a node: an id (``SANKE_NODE_ID``, default ``<host name>:<port>``), the URL
clients reach it by (``SANKE_PUBLIC_URL`` or its listen address), its media addresses, its capacity
and whether it is draining.  :class:`NodeRegistry` owns this node's entry:

- with Redis (``SANKE_REDIS_URL``) it writes the entry, with this node's load (:mod:`server.core.nodeload`),
  to the key ``sanke:node:<id>`` every ``SANKE_NODE_HEARTBEAT_SECONDS`` with an expiry of three
  heartbeats: a node whose heartbeat lapses (killed, frozen, cut off) is gone when its key expires —
  Redis's expiry is the only judge, there is no consensus of our own.  :meth:`NodeRegistry.nodes`
  reads every live entry, with its heartbeat's age from the key's remaining time to live (no clock
  of another machine is trusted);
- without Redis the registry holds just this node, in this process, and nothing is sampled until
  someone asks (``/metrics``, the admin page).

A node that cannot write its heartbeat (Redis down, or the bus's subscription lost) is *unhealthy*:
``/healthz`` says so and it does not count as able to take new rooms (``accepting_rooms`` = not draining
and healthy).  The next heartbeat that gets through registers it again.  :meth:`NodeRegistry.drain`
(SIGTERM) marks it draining and writes that at once.

Must not: place rooms, move lessons or stop anything (later layers read the registry to do that);
hold state that another node needs beyond its own entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from server.core.config import Settings
from server.core.nodeload import LOAD_TIMEOUT_S, LoadSample, NodeLoad
from server.core.tasks import cancel_and_wait

log = logging.getLogger(__name__)

KEY_PREFIX = "sanke:node:"
REDIS_TIMEOUT_S = 1.5
"""A Redis call of the registry that takes longer counts as failed (a host that stopped answering)."""


@dataclass
class NodeInfo:
    """One node's registry entry (JSON in Redis)."""

    node_id: str
    url: str
    media_addresses: list[str]
    started_at: float
    """Wall-clock time (Unix seconds) the node started."""
    draining: bool = False
    accepting_rooms: bool = True
    capacity: dict[str, Any] = field(default_factory=dict)
    """``workers``, ``consumers_per_worker``, ``max_rooms`` (None: no limit of its own)."""
    rooms: int = 0
    participants: int = 0
    workers: list[dict[str, Any]] = field(default_factory=list)
    """Per media worker: ``index, pid, cpu, packets_per_s, routers, transports, producers, consumers``."""
    lends: dict[str, Any] | None = None
    """A node that lends its media workers (``SANKE_MEDIA_REMOTE_LISTEN``): ``address`` (``host:port`` the
    other nodes connect to) and ``free_consumers`` (its capacity minus what its workers carry); else None."""
    heartbeat_age_s: float = 0.0
    """Seconds since its last heartbeat as the reader sees it (not stored)."""

    def to_json(self) -> str:
        data = asdict(self)
        data.pop("heartbeat_age_s")
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def parse(cls, raw: bytes | str) -> "NodeInfo":
        """An entry read back from Redis; ``ValueError`` for anything that is not one."""
        try:
            data = json.loads(raw)
        except (TypeError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"node entry is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError("node entry is not an object")
        try:
            info = cls(node_id=str(data["node_id"]), url=str(data["url"]),
                       media_addresses=[str(a) for a in data.get("media_addresses") or []],
                       started_at=float(data["started_at"]), draining=bool(data.get("draining")),
                       accepting_rooms=bool(data.get("accepting_rooms")),
                       capacity=dict(data.get("capacity") or {}), rooms=int(data.get("rooms") or 0),
                       participants=int(data.get("participants") or 0),
                       workers=[dict(w) for w in data.get("workers") or []],
                       lends=_lends(data.get("lends")))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"node entry is incomplete: {exc!r}") from None
        return info


def _lends(data: Any) -> dict[str, Any] | None:
    if data is None:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("address"), str):
        raise ValueError("lends: not an address")
    return {"address": data["address"], "free_consumers": max(0, int(data.get("free_consumers") or 0))}


def lender_address(settings: Settings) -> str | None:
    """Where the other nodes reach this node's lent workers: ``SANKE_MEDIA_REMOTE_LISTEN``, its host
    replaced by ``SANKE_MEDIA_PIPE_HOST`` when it listens on every interface; None: it lends nothing."""
    if not settings.media_remote_listen or settings.cluster_secret is None:
        return None
    host, _, port = settings.media_remote_listen.strip().rpartition(":")
    if host.strip("[]") in ("", "0.0.0.0", "::"):
        host = settings.media_pipe_host
    return f"[{host}]:{port}" if ":" in host.strip("[]") and not host.startswith("[") else f"{host}:{port}"


def free_consumers(capacity_per_worker: int, workers: int, sample: LoadSample | None) -> int:
    """Consumers a node's workers still take: per worker its capacity minus what it carries."""
    if sample is None or not sample.workers:
        return capacity_per_worker * workers
    return sum(max(0, capacity_per_worker - w.consumers) for w in sample.workers)


def media_addresses(settings: Settings) -> list[str]:
    """The addresses this node's media are reached at: the announced address, else the host
    candidates' addresses (``*``: every interface)."""
    if settings.ice_announced_address:
        return [settings.ice_announced_address]
    hosts = settings.ice_strings().get("ice_host_addresses") or "*"
    return [a.strip() for a in hosts.split(",") if a.strip()]


class NodeRegistry:
    """This node's entry and heartbeat, and the list of live nodes.  An async context manager."""

    def __init__(self, settings: Settings, load: NodeLoad, *, redis: Any | None = None,
                 bus: Any | None = None) -> None:
        """``redis``: a ``redis.asyncio`` client (the bus's), or None for a single node.
        ``bus``: the event bus; with Redis, its subscription being down makes the node unhealthy."""
        self.settings = settings
        self.load = load
        self.redis = redis
        self.bus = bus
        self.node_id = settings.effective_node_id
        self.key = KEY_PREFIX + self.node_id
        self.interval = settings.node_heartbeat_seconds
        self.ttl_ms = int(settings.node_ttl_seconds * 1000)
        self.started_at = time.time()
        self.draining = False
        self.redis_ok = redis is None
        """The last heartbeat reached Redis (always true without Redis)."""
        self.last_error: str | None = None
        self.heartbeats = 0
        self._down_logged = False
        self._task: asyncio.Task[None] | None = None
        self._last_info: NodeInfo | None = None

    # ------------------------------------------------------------------ state

    @property
    def clustered(self) -> bool:
        return self.redis is not None

    @property
    def healthy(self) -> bool:
        """Registered and hearing the cluster: always, alone; with Redis, the last heartbeat got
        through and the bus is subscribed."""
        if self.redis is None:
            return True
        return self.redis_ok and bool(getattr(self.bus, "connected", True))

    @property
    def accepting_rooms(self) -> bool:
        return not self.draining and self.healthy

    def health(self) -> dict[str, Any]:
        """This node's part of ``/healthz``."""
        return {"node_id": self.node_id, "registry": ("redis" if self.clustered else "local"),
                "redis": (None if not self.clustered else "ok" if self.healthy else "unreachable"),
                "draining": self.draining, "accepting_rooms": self.accepting_rooms}

    def info(self, sample: LoadSample | None, *, writing: bool = False) -> NodeInfo:
        """This node's entry; ``writing``: for the heartbeat about to be written (which, if it gets
        through, makes a node that had lost Redis healthy again)."""
        settings = self.settings
        accepting = self.accepting_rooms
        if writing and self.redis is not None:
            accepting = not self.draining and bool(getattr(self.bus, "connected", True))
        workers = [w.brief() for w in sample.workers] if sample is not None else []
        lends = None
        if (address := lender_address(settings)) is not None:
            lends = {"address": address, "free_consumers": free_consumers(
                settings.node_worker_consumers, max(1, settings.effective_media_workers), sample)}
        return NodeInfo(
            node_id=self.node_id, url=settings.effective_public_url, media_addresses=media_addresses(settings),
            started_at=self.started_at, draining=self.draining, accepting_rooms=accepting,
            capacity={"workers": max(1, settings.effective_media_workers),
                      "consumers_per_worker": settings.node_worker_consumers, "max_rooms": settings.node_max_rooms},
            rooms=sample.rooms if sample is not None else 0,
            participants=sample.participants if sample is not None else 0, workers=workers, lends=lends)

    # ------------------------------------------------------------------ reading the cluster

    async def nodes(self) -> list[NodeInfo]:
        """Every live node, this one included, by id.  Without Redis: this node.  With Redis
        unreachable: ``ConnectionError``."""
        if self.redis is None:
            sample = await self.load.sample(max_age=self.interval / 2)
            return [self.info(sample)]
        try:
            return await asyncio.wait_for(self._read_all(), REDIS_TIMEOUT_S * 2)
        except Exception as exc:  # noqa: BLE001 - redis-py raises its own and OS errors
            raise ConnectionError(f"Redis: {exc.__class__.__name__}") from exc

    async def _read_all(self) -> list[NodeInfo]:
        assert self.redis is not None
        keys = sorted([k async for k in self.redis.scan_iter(match=KEY_PREFIX + "*", count=500)])
        if not keys:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.get(key)
                pipe.pttl(key)
            replies = await pipe.execute()
        found: list[NodeInfo] = []
        for key, raw, pttl in zip(keys, replies[0::2], replies[1::2]):
            if raw is None:  # expired between SCAN and GET
                continue
            try:
                info = NodeInfo.parse(raw)
            except ValueError as exc:
                log.warning("nodes: ignored entry %r: %s", key, exc)
                continue
            if isinstance(pttl, int) and pttl >= 0:
                info.heartbeat_age_s = round(max(0.0, (self.ttl_ms - pttl) / 1000), 1)
            found.append(info)
        return sorted(found, key=lambda n: n.node_id)

    # ------------------------------------------------------------------ heartbeat

    async def heartbeat(self) -> None:
        """Sample the load and, with Redis, write this node's entry (never raises)."""
        try:  # a worker too busy to answer within half a heartbeat is left out of this one
            sample = await self.load.sample(timeout=min(LOAD_TIMEOUT_S, self.interval / 2))
        except Exception:  # noqa: BLE001 - an entry without load is better than none
            log.exception("nodes: sampling the load failed")
            sample = self.load.last
        if self.redis is None:
            self._last_info = self.info(sample)
            return
        try:
            info = self.info(sample, writing=True)
            await asyncio.wait_for(self.redis.set(self.key, info.to_json(), px=self.ttl_ms), REDIS_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - redis-py raises its own and OS errors
            self.redis_ok = False
            self.last_error = exc.__class__.__name__
            if not self._down_logged:
                self._down_logged = True
                log.error("nodes: cannot reach Redis (%s): node %s takes no new rooms until it is back",
                          self.last_error, self.node_id)
            return
        self.redis_ok = True
        self._last_info = info
        self.heartbeats += 1
        if self.heartbeats == 1:
            log.info("nodes: node %s registered (%s), heartbeat every %.1f s", self.node_id, info.url, self.interval)
        elif self._down_logged:
            log.warning("nodes: Redis reachable again: node %s registered again", self.node_id)
        self._down_logged = False
        self.last_error = None

    async def _run(self) -> None:
        """A heartbeat every interval, counted from the start of the previous one (a slow one does
        not push the next ones back)."""
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due = max(due + self.interval, loop.time())
            await asyncio.sleep(due - loop.time())
            await self.heartbeat()

    async def drain(self) -> None:
        """SIGTERM: this node is draining (it takes no new rooms); written to the registry at once.
        With other nodes to tell, the entry stays up one heartbeat before the node goes."""
        if self.draining:
            return
        self.draining = True
        log.warning("nodes: node %s is draining", self.node_id)
        await self.heartbeat()
        if self.redis is not None:
            await asyncio.sleep(self.interval)

    async def __aenter__(self) -> "NodeRegistry":
        if self.redis is None:  # alone: nothing to tell anyone; the load is sampled when asked for
            return self
        await self.heartbeat()
        self._task = asyncio.create_task(self._run(), name="sanke-node-heartbeat")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self.redis is not None:
            with contextlib.suppress(Exception):  # gone at once; unreachable Redis: the key expires anyway
                await asyncio.wait_for(self.redis.delete(self.key), REDIS_TIMEOUT_S)
