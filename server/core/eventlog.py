"""The session event log writer: room and media events → ``session_event`` rows, in batches.

The rooms call :meth:`EventLog.record` synchronously from their message
handlers; it only appends a row to a list.  A background task writes what has
gathered every ``flush_interval_s`` (or as soon as ``max_batch`` rows wait) in
one ``INSERT`` on a worker thread, so neither the signaling handlers nor the
media plane ever wait for the database.  Link-quality samples come from the
media plane on bus topic ``media`` and are kept at most one per participant
every ``link_interval_s``.

Durability: a committed batch survives a crash of the process (SQLite in WAL
mode and PostgreSQL both commit durably against a killed process); a graceful
shutdown (:meth:`stop`, from the app's lifespan) writes everything still
pending.  So at most the last ``flush_interval_s`` of events can be lost, and
only if the process is killed.  A batch that fails to write (database
unreachable) is kept and retried, up to ``max_pending`` rows; beyond that the
oldest are dropped and counted, with an error in the log.

Presence marks: the log knows which sessions are open (a ``join`` or
``resume`` not yet followed by ``leave`` or ``disconnect``) and, every
``presence_interval_s``, appends a ``presence`` event for each open session
that had no other event in that time.  So a session cut by a crash of this
process has an event at most ``presence_interval_s`` (plus a flush) before
the crash, and ``server.core.recovery`` ends it there on the next start.  The
cost is a dictionary entry per open session and, at most, one row per session
per interval (none for a session whose link samples already come every 5 s).
Opening events carry the ``node`` that hosts the session, so a restarted node
knows which open sessions were its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from scheduler import clock
from scheduler.records_models import EventKind, SessionEvent

log = logging.getLogger(__name__)

LINK_FIELDS = ("loss", "rtt_ms", "jitter_ms", "bitrate_kbps", "up_kbps", "down_kbps")
MAX_CHAT_CHARS = 500
_OPENS = (EventKind.join, EventKind.resume)
_CLOSES = (EventKind.leave, EventKind.disconnect)


class Subject(Protocol):
    """What the log needs of a room participant (``signaling.room.Participant``)."""

    participant_id: str
    user_id: int
    classroom_id: int | None

    @property
    def role(self) -> Any: ...


class EventLog:
    """Appends session events and writes them in batches; an async context manager (start/stop)."""

    def __init__(self, session_factory: sessionmaker[Session], *, flush_interval_s: float = 0.5,
                 max_batch: int = 1000, max_pending: int = 200_000, link_interval_s: float = 5.0,
                 presence_interval_s: float = 30.0, node: str = "",
                 is_local: Callable[[int], bool] | None = None) -> None:
        self._factory = session_factory
        self.flush_interval_s = flush_interval_s
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.link_interval_s = link_interval_s
        self.presence_interval_s = presence_interval_s
        self.node = node
        self.is_local = is_local
        """For link samples from the bus: is this lesson's room on this node?  (With Redis every node
        sees every node's samples; only the node that hosts the room writes them.)"""
        self._pending: list[dict[str, Any]] = []
        self._last_link: dict[tuple[int, str], float] = {}
        self._open: dict[tuple[int, str], list[Any]] = {}
        """Open sessions: (lesson, participant) -> [monotonic time of its last event, its identity columns]."""
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.written = 0
        self.dropped = 0

    # ------------------------------------------------------------------ appending (synchronous, cheap)

    def record(self, instance_id: int, kind: EventKind | str, subject: Subject,
               data: dict[str, Any] | None = None, *, at: datetime | None = None) -> None:
        """Log one event of ``subject`` in lesson ``instance_id`` (now, unless ``at``)."""
        role = subject.role
        kind = EventKind(kind)
        if kind in _OPENS and self.node:
            data = {**(data or {}), "node": self.node}
        self._append({
            "instance_id": instance_id,
            "at": at or clock.now_precise(),
            "kind": kind,
            "participant_id": subject.participant_id,
            "user_id": subject.user_id,
            "classroom_id": subject.classroom_id,
            "role": getattr(role, "value", role),
            "data": data,
        })

    def chat(self, instance_id: int, subject: Subject, text: str) -> None:
        self.record(instance_id, EventKind.chat, subject, {"text": text[:MAX_CHAT_CHARS]})

    def on_media_event(self, topic: str, event: dict[str, Any]) -> None:
        """Bus handler for topic ``media``: keeps ``link_quality`` samples (one per participant per interval)."""
        if event.get("type") != "link_quality":
            return
        try:
            instance_id = int(event["instance_id"])
            participant_id = str(event["participant_id"])
        except (KeyError, TypeError, ValueError):
            return
        if self.is_local is not None and not self.is_local(instance_id):
            return
        now = asyncio.get_running_loop().time()
        key = (instance_id, participant_id)
        if now - self._last_link.get(key, -1e9) < self.link_interval_s:
            return
        self._last_link[key] = now
        self._append({
            "instance_id": instance_id,
            "at": clock.now_precise(),
            "kind": EventKind.link_quality,
            "participant_id": participant_id,
            "user_id": event.get("user_id"),
            "classroom_id": event.get("classroom_id"),
            "role": str(event.get("role") or ""),
            "data": {k: event.get(k) for k in LINK_FIELDS if event.get(k) is not None},
        })

    def forget(self, instance_id: int) -> None:
        """The lesson's room closed: drop its link-sample throttling state."""
        for key in [k for k in self._last_link if k[0] == instance_id]:
            del self._last_link[key]
        for key in [k for k in self._open if k[0] == instance_id]:
            del self._open[key]

    @property
    def open_sessions(self) -> set[tuple[int, str]]:
        """(lesson, participant) of the sessions open on this node."""
        return set(self._open)

    def _track(self, row: dict[str, Any]) -> None:
        key = (row["instance_id"], row["participant_id"])
        kind = row["kind"]
        if kind in _OPENS:
            self._open[key] = [time.monotonic(), {k: row[k] for k in ("user_id", "classroom_id", "role")}]
        elif kind in _CLOSES:
            self._open.pop(key, None)
        else:
            entry = self._open.get(key)
            if entry is not None:
                entry[0] = time.monotonic()

    def mark_presence(self, now: float | None = None) -> int:
        """Append a ``presence`` event for every open session silent for ``presence_interval_s``."""
        now = time.monotonic() if now is None else now
        due = now - self.presence_interval_s
        at = clock.now_precise()
        marked = 0
        for (instance_id, participant_id), entry in self._open.items():
            if entry[0] > due:
                continue
            self._append({"instance_id": instance_id, "at": at, "kind": EventKind.presence,
                          "participant_id": participant_id, "data": None, **entry[1]})
            entry[0] = now
            marked += 1
        return marked

    def _append(self, row: dict[str, Any]) -> None:
        self._track(row)
        self._pending.append(row)
        if len(self._pending) > self.max_pending:
            excess = len(self._pending) - self.max_pending
            del self._pending[:excess]
            self.dropped += excess
            log.error("event log: %d events dropped (database not writable?)", excess)
        if len(self._pending) >= self.max_batch:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    # ------------------------------------------------------------------ writing

    async def flush(self) -> int:
        """Write everything pending now; returns how many rows were written."""
        async with self._lock:
            written = 0
            while self._pending:
                batch = self._pending[: self.max_batch]
                del self._pending[: len(batch)]
                try:
                    await asyncio.to_thread(self._write, batch)
                except Exception:
                    self._pending[:0] = batch  # kept, in order, for the next attempt
                    log.exception("event log: writing %d events failed; will retry", len(batch))
                    break
                written += len(batch)
            self.written += written
            return written

    def _write(self, rows: list[dict[str, Any]]) -> None:
        with self._factory() as session:
            session.execute(insert(SessionEvent), rows)
            session.commit()

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await asyncio.wait_for(self._wake.wait(), self.flush_interval_s)
            except TimeoutError:
                pass
            self._wake.clear()
            self.mark_presence()
            await self.flush()

    async def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(self._run(), name="sanke-eventlog")

    async def stop(self) -> None:
        """Stop the background writer and write what is left (graceful shutdown).

        The writer is asked to finish, not cancelled: a batch being written on its thread is
        never abandoned half-way."""
        if self._task is not None:
            self._stopping = True
            self._wake.set()
            await self._task
            self._task = None
        await self.flush()
        if self._pending:
            log.error("event log: %d events could not be written at shutdown", len(self._pending))

    async def __aenter__(self) -> EventLog:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
