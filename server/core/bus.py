"""The event bus between the scheduler's lifecycle task and the signaling layer.

In-process by default (one node).  With ``SANKE_REDIS_URL`` set, events go
through Redis pub/sub (channel ``sanke:<topic>``), so every node's
subscribers see every node's events.  Both buses are async context managers;
the app's lifespan enters the bus before anything publishes on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from server.core.tasks import cancel_and_wait

log = logging.getLogger(__name__)

Handler = Callable[[str, dict[str, Any]], Awaitable[None] | None]


class Bus(Protocol):
    async def publish(self, topic: str, event: dict[str, Any]) -> None: ...
    def subscribe(self, topic: str, handler: Handler) -> Callable[[], None]: ...
    async def __aenter__(self) -> "Bus": ...
    async def __aexit__(self, *exc: object) -> None: ...


async def _deliver(handlers: list[Handler], topic: str, event: dict[str, Any]) -> None:
    """Call each handler in order; a failing one is logged and never stops the others."""
    for handler in list(handlers):
        try:
            result = handler(topic, event)
            if asyncio.iscoroutine(result):
                await result
        except Exception:  # a listener cannot break the emitter
            log.exception("bus handler failed for %s", topic)


class InProcessBus:
    """Delivers each event to the subscribers of its topic, in order. A failing
    handler is logged and never stops delivery to the others."""

    def __init__(self) -> None:
        self._subs: dict[str, list[Handler]] = defaultdict(list)
        self.published: list[tuple[str, dict[str, Any]]] = []
        """Recent events, newest last (bounded), for diagnostics and tests."""

    async def publish(self, topic: str, event: dict[str, Any]) -> None:
        self.published.append((topic, event))
        del self.published[:-1000]
        await _deliver(self._subs.get(topic, []), topic, event)

    def subscribe(self, topic: str, handler: Handler) -> Callable[[], None]:
        self._subs[topic].append(handler)
        return lambda: self._subs[topic].remove(handler)

    async def __aenter__(self) -> "InProcessBus":
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class RedisBus:
    """Events through Redis pub/sub, for several nodes sharing rooms.

    One pattern subscription (``sanke:*``) per node feeds a listener task that
    hands each event to this node's subscribers of its topic.  An event
    published here comes back through Redis too, so every node, this one
    included, sees the same events in Redis's order.  A subscription that Redis drops is made
    again when Redis is back (``connected`` says whether it is up).
    """

    PREFIX = "sanke:"
    RETRY_S = 1.0

    def __init__(self, url: str) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(url)
        self._subs: dict[str, list[Handler]] = defaultdict(list)
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._connected = False
        self._lost_at: float | None = None

    async def publish(self, topic: str, event: dict[str, Any]) -> None:
        await self._redis.publish(self.PREFIX + topic, json.dumps(event, ensure_ascii=False))

    def subscribe(self, topic: str, handler: Handler) -> Callable[[], None]:
        self._subs[topic].append(handler)
        return lambda: self._subs[topic].remove(handler)

    @property
    def redis(self) -> Any:
        """The bus's ``redis.asyncio`` client (its connection pool), for others that keep state in Redis."""
        return self._redis

    @property
    def connected(self) -> bool:
        """The subscription is up: events of other nodes reach this one."""
        return self._connected

    async def _listen(self) -> None:
        """Subscribe and deliver; when Redis goes away, subscribe again once it is back (events
        published meanwhile are lost: pub/sub keeps nothing)."""
        from redis.exceptions import RedisError

        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.psubscribe(self.PREFIX + "*")
                if self._lost_at is not None:
                    log.warning("bus: subscribed to Redis again after %.1f s", time.monotonic() - self._lost_at)
                    self._lost_at = None
                self._connected = True
                self._ready.set()
                async for message in pubsub.listen():
                    if message.get("type") != "pmessage":
                        continue
                    topic = message["channel"].decode()[len(self.PREFIX):]
                    try:
                        event = json.loads(message["data"])
                    except (ValueError, TypeError):
                        log.warning("bus: dropped a malformed event on %s", topic)
                        continue
                    await _deliver(self._subs.get(topic, []), topic, event)
            except (RedisError, OSError) as exc:
                if self._lost_at is None:
                    self._lost_at = time.monotonic()
                    log.error("bus: lost Redis (%s); subscribing again every %.0f s", exc.__class__.__name__,
                              self.RETRY_S)
            finally:
                self._connected = False
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(self.RETRY_S)

    async def __aenter__(self) -> "RedisBus":
        await self._redis.ping()  # fail at start, not at the first event, when Redis is unreachable
        self._task = asyncio.create_task(self._listen(), name="sanke-redis-bus")
        await asyncio.wait_for(self._ready.wait(), timeout=10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        await self._redis.aclose()


def make_bus(redis_url: str | None) -> Bus:
    return RedisBus(redis_url) if redis_url else InProcessBus()
