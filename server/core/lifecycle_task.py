"""Runs the scheduler's lifecycle ``tick`` periodically and publishes its events on the bus."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from types import TracebackType

from sqlalchemy.orm import Session, sessionmaker

from scheduler import clock, lifecycle
from server.core.bus import Bus
from server.core.config import Settings
from server.core.db import session_scope
from server.core.tasks import cancel_and_wait

log = logging.getLogger(__name__)


class LifecycleTask:
    """An async context manager: starts the loop on enter, cancels and awaits it on exit."""

    def __init__(self, session_factory: sessionmaker[Session], bus: Bus, settings: Settings) -> None:
        self._factory = session_factory
        self._bus = bus
        self._interval = settings.lifecycle_interval_seconds
        self._lead = timedelta(minutes=settings.room_open_lead_minutes)
        self._grace = timedelta(minutes=settings.room_close_grace_minutes)
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> list[lifecycle.LessonEvent]:
        def work() -> list[lifecycle.LessonEvent]:
            with session_scope(self._factory) as session:
                return lifecycle.tick(session, clock.now(), lead=self._lead, grace=self._grace)

        events = await asyncio.to_thread(work)
        for ev in events:
            await self._bus.publish(lifecycle.TOPIC, ev.as_dict())
        return events

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # keep the schedule running; the next pass retries
                log.exception("lifecycle pass failed")
            await asyncio.sleep(self._interval)

    async def __aenter__(self) -> "LifecycleTask":
        self._task = asyncio.create_task(self._loop(), name="sanke-lifecycle")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await cancel_and_wait(self._task)
        self._task = None
