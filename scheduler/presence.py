"""Sessions left open by a server that died: finding them and ending them at their last sign of life.

A room writes ``join``/``resume`` when a session opens and ``leave``/``disconnect``
when it ends; a server killed with ``kill -9`` writes neither, and without an
end the teaching record would count the session as present until the room
closed.  The event log writes a ``presence`` mark for every open session that
had no other event for ``mark_interval_s`` (``server.core.eventlog``), so each
session's last event is at most that long (plus a flush) before the crash.

``close_orphans`` ends such a session with a ``leave`` at its last event,
``data = {"reason": "server_lost", "uncertain_s": …}``: the seconds it may
have gone on unseen (the mark interval plus the flush interval, but never
beyond the moment of recovery).  A session is orphaned when, at a node's
start, it was opened by that node (``data.node``: the process before this one
died), or when it was opened by another node and has been silent for
``stale_s`` (that node died and has not come back).  Records
(``scheduler.records``) sum ``uncertain_s`` into the uncertain time they
report.

Plain functions with ``session=``; no FastAPI, nothing of the signaling layer.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from scheduler.models import LessonInstance
from scheduler.records_models import EventKind, SessionEvent

SERVER_LOST = "server_lost"
"""The ``reason`` of a ``leave`` written on recovery for a session cut by a crash."""
LOOKBACK = timedelta(days=2)
"""At a node's start, lessons whose room closed longer ago than this are not searched."""
PASS_LOOKBACK = timedelta(hours=1)
"""The later passes (another node died) search only rooms open now or closed within this."""
_OPENS = (EventKind.join, EventKind.resume)
_CLOSES = (EventKind.leave, EventKind.disconnect)


@dataclass(frozen=True)
class OpenSession:
    instance_id: int
    participant_id: str
    node: str | None
    """The node that opened it (``data.node`` of its last ``join``/``resume``)."""
    last_at: datetime
    """Its last event of any kind."""
    user_id: int | None
    classroom_id: int | None
    role: str


def open_sessions(session: Session, *, now: datetime, lookback: timedelta = LOOKBACK) -> list[OpenSession]:
    """Sessions whose last ``join``/``resume`` is not followed by a ``leave``/``disconnect``, in lessons whose
    room is open or closed within ``lookback``."""
    lessons = select(LessonInstance.id).where(
        LessonInstance.room_opened_at.is_not(None),
        or_(LessonInstance.room_closed_at.is_(None), LessonInstance.room_closed_at >= now - lookback))
    state: dict[tuple[int, str], SessionEvent | None] = {}
    for ev in session.scalars(
            select(SessionEvent).where(SessionEvent.instance_id.in_(lessons),
                                       SessionEvent.kind.in_(_OPENS + _CLOSES))
            .order_by(SessionEvent.instance_id, SessionEvent.at, SessionEvent.id)):
        state[(ev.instance_id, ev.participant_id)] = ev if ev.kind in _OPENS else None
    opened = {key: ev for key, ev in state.items() if ev is not None}
    if not opened:
        return []
    last: dict[tuple[int, str], datetime] = {}
    for iid, pid, at in session.execute(
            select(SessionEvent.instance_id, SessionEvent.participant_id, func.max(SessionEvent.at))
            .where(SessionEvent.instance_id.in_({k[0] for k in opened}))
            .group_by(SessionEvent.instance_id, SessionEvent.participant_id)):
        last[(iid, pid)] = at
    return [OpenSession(instance_id=ev.instance_id, participant_id=ev.participant_id,
                        node=(ev.data or {}).get("node"), last_at=max(ev.at, last.get(key, ev.at)),
                        user_id=ev.user_id, classroom_id=ev.classroom_id, role=ev.role)
            for key, ev in sorted(opened.items())]


def close_orphans(session: Session, *, node: str, starting: bool, live: Collection[tuple[int, str]],
                  now: datetime, uncertain_s: float, stale_s: float) -> list[OpenSession]:
    """End every orphaned session (see the module) at its last event; answers them.  The caller commits.

    ``starting``: this node has just started (every session it opened before is orphaned); later passes
    leave this node's sessions alone (the room writes their ends).  ``live``: (lesson, participant) of the
    sessions open in this process.  ``uncertain_s``: how long a session may go on unseen after its last
    event (the mark interval plus the flush interval)."""
    closed = []
    for s in open_sessions(session, now=now, lookback=LOOKBACK if starting else PASS_LOOKBACK):
        if (s.instance_id, s.participant_id) in live:
            continue
        silent = (now - s.last_at).total_seconds()
        if s.node == node and not starting:
            continue
        if s.node != node and silent < stale_s:
            continue  # another node's session, still alive
        session.add(SessionEvent(
            instance_id=s.instance_id, at=s.last_at, kind=EventKind.leave, participant_id=s.participant_id,
            user_id=s.user_id, classroom_id=s.classroom_id, role=s.role,
            data={"reason": SERVER_LOST, "uncertain_s": round(max(0.0, min(uncertain_s, silent)), 1)}))
        closed.append(s)
    session.flush()
    return closed
