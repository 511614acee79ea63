"""Recovery of what a crashed server left open: its recordings and its participants' sessions.

``Recovery`` is entered in the app's lifespan after the event log and before
the lifecycle task, so it runs before any room opens or closes:

1. **Recordings.** Every recording this node (``SANKE_NODE_ID``) left
   ``recording``, or that another node ended for it when it took a lesson
   over (``scheduler.recordings.take_over``), is finalized from its files
   (``media.salvage``, on a worker thread) and stored ``partial``
   (``scheduler.recordings.recover``).
2. **Sessions.** Every session this node left open ends at its last event, and
   so does another node's that has been silent for ``stale_s``
   (``scheduler.presence``), every ``presence_interval_s`` after the start too
   (a node that died and does not come back).
3. **Records.** A lesson whose teaching record was already stored is
   recomputed (``scheduler.records.refresh``) so it no longer counts the cut
   sessions as present, and states the uncertain time.

It never touches a row or file of a live lesson of this process.  Database
work runs on worker threads; a failed pass is logged and retried by the next.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path
from typing import Self

from sqlalchemy.orm import Session, sessionmaker

from media.salvage import salvage_folder
from scheduler import clock, presence, recordings, records
from scheduler.records_models import TeachingRecord
from server.core.db import session_scope
from server.core.eventlog import EventLog
from server.core.tasks import cancel_and_wait

log = logging.getLogger(__name__)

STALE_MARKS = 3
"""Another node's session is orphaned after this many mark intervals without an event."""


class Recovery:
    def __init__(self, session_factory: sessionmaker[Session], eventlog: EventLog, *, node: str, data_dir: Path,
                 late_grace: timedelta) -> None:
        self._factory = session_factory
        self._eventlog = eventlog
        self.node = node
        self.data_dir = data_dir
        self.late_grace = late_grace
        self.uncertain_s = eventlog.presence_interval_s + eventlog.flush_interval_s
        """How long a session may go on unseen after its last event."""
        self.stale_s = STALE_MARKS * eventlog.presence_interval_s + 2 * eventlog.flush_interval_s
        self._task: asyncio.Task[None] | None = None
        self.recovered_recordings: list[int] = []
        self.closed_sessions: list[presence.OpenSession] = []

    # ------------------------------------------------------------------ recordings

    def recover_recordings(self) -> list[int]:
        with session_scope(self._factory) as session:
            rows = [(r.id, r.directory) for r in recordings.orphans(session, self.node)]
        done = []
        for recording_id, directory in rows:
            files = salvage_folder(self.data_dir / directory) if directory else []
            with session_scope(self._factory) as session:
                row = recordings.recover(session, recording_id, files, now=clock.now())
                if row is not None:
                    log.warning("recording %s of lesson %s recovered after a crash: %s, %.1f s in %d files",
                                recording_id, row.instance_id, row.status.value, row.duration_s, len(row.files or []))
            done.append(recording_id)
        return done

    # ------------------------------------------------------------------ sessions and records

    def close_sessions(self, *, starting: bool) -> list[presence.OpenSession]:
        live = self._eventlog.open_sessions
        with session_scope(self._factory) as session:
            closed = presence.close_orphans(session, node=self.node, starting=starting, live=live, now=clock.now(),
                                            uncertain_s=self.uncertain_s, stale_s=self.stale_s)
        if closed:
            log.warning("%d sessions cut by a crash ended at their last event (lessons %s)", len(closed),
                        sorted({s.instance_id for s in closed}))
        self.refresh_records({s.instance_id for s in closed})
        return closed

    def refresh_records(self, instance_ids: set[int]) -> None:
        for instance_id in sorted(instance_ids):
            with session_scope(self._factory) as session:
                if session.get(TeachingRecord, instance_id) is not None:
                    records.refresh(session, instance_id, now=clock.now(), late_grace=self.late_grace)
                    recordings.link_record(session, instance_id)

    async def run_once(self, *, starting: bool) -> None:
        if starting:
            self.recovered_recordings = await asyncio.to_thread(self.recover_recordings)
        self.closed_sessions += await asyncio.to_thread(self.close_sessions, starting=starting)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._eventlog.presence_interval_s)
            try:
                await self._eventlog.flush()
                await self.run_once(starting=False)
            except Exception:  # the next pass retries
                log.exception("recovery pass failed")

    async def __aenter__(self) -> Self:
        try:
            await self.run_once(starting=True)
        except Exception:  # a recovery that fails must not keep the server down; the log says why
            log.exception("recovery at start failed")
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="sanke-recovery")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await cancel_and_wait(self._task)
        self._task = None
