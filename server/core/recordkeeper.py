"""Turns a closed lesson's session events into its teaching record (``scheduler.records``).

Subscribed to bus topic ``lesson``: on ``room_closed`` it first writes the
event log's pending events (the room's last ``leave`` events among them), then
computes and stores the record on a worker thread.  Every node does this for
every closed lesson; storing is idempotent, so with several nodes the last one
wins with the same result, and a node that did not host the room still records
a lesson nobody joined (missed).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from scheduler import clock, records
from server.core.db import session_scope
from server.core.eventlog import EventLog

log = logging.getLogger(__name__)


class RecordKeeper:
    def __init__(self, session_factory: sessionmaker[Session], eventlog: EventLog, *, late_grace: timedelta) -> None:
        self._factory = session_factory
        self._eventlog = eventlog
        self.late_grace = late_grace

    async def on_lesson_event(self, topic: str, event: dict[str, Any]) -> None:
        if event.get("type") != "room_closed":
            return
        try:
            instance_id = int(event["instance_id"])
        except (KeyError, TypeError, ValueError):
            return
        await self._eventlog.flush()
        self._eventlog.forget(instance_id)
        try:
            await asyncio.to_thread(self.refresh, instance_id)
        except Exception:
            log.exception("teaching record of lesson %s failed", instance_id)

    def refresh(self, instance_id: int) -> records.Record:
        with session_scope(self._factory) as session:
            return records.refresh(session, instance_id, now=clock.now(), late_grace=self.late_grace)
