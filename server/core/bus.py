"""The event bus between the scheduler's lifecycle task and the signaling layer.

In-process by default (one node). A Redis implementation with the same
interface is selected when ``SANKE_REDIS_URL`` is set (later issue: rooms on
several nodes); until then a configured Redis URL is refused loudly rather
than silently ignored.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)

Handler = Callable[[str, dict[str, Any]], Awaitable[None] | None]


class Bus(Protocol):
    async def publish(self, topic: str, event: dict[str, Any]) -> None: ...
    def subscribe(self, topic: str, handler: Handler) -> Callable[[], None]: ...


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
        for handler in list(self._subs.get(topic, ())):
            try:
                result = handler(topic, event)
                if asyncio.iscoroutine(result):
                    await result
            except Exception:  # a listener cannot break the emitter
                log.exception("bus handler failed for %s", topic)

    def subscribe(self, topic: str, handler: Handler) -> Callable[[], None]:
        self._subs[topic].append(handler)
        return lambda: self._subs[topic].remove(handler)


def make_bus(redis_url: str | None) -> Bus:
    if redis_url:
        raise RuntimeError("SANKE_REDIS_URL is set, but the Redis bus arrives with multi-node rooms; unset it for now")
    return InProcessBus()
