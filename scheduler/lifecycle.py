"""The lesson lifecycle: rooms open before a lesson, the lesson goes live when
the main classroom starts it, and the room closes after the end plus a grace.

``tick`` is one pass over the clock; the server runs it periodically and
publishes the events it returns on the bus for the signaling layer.  Each
change also writes its webhook event (``scheduler.webhooks``) in the same
transaction.  Status
moves only along ``_ALLOWED``; everything else is refused.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler import webhooks
from scheduler.errors import InvalidState, NotFound
from scheduler.models import InstanceStatus, LessonInstance

TOPIC = "lesson"
"""Bus topic of every lifecycle event."""

_ALLOWED: dict[InstanceStatus, frozenset[InstanceStatus]] = {
    InstanceStatus.scheduled: frozenset({InstanceStatus.live, InstanceStatus.missed, InstanceStatus.cancelled}),
    InstanceStatus.live: frozenset({InstanceStatus.held}),
    InstanceStatus.held: frozenset(),
    InstanceStatus.missed: frozenset(),
    InstanceStatus.cancelled: frozenset(),
}


def transition(inst: LessonInstance, to: InstanceStatus) -> None:
    """The one place an instance's status changes during its lifecycle."""
    if to not in _ALLOWED[inst.status]:
        raise InvalidState(f"课次 #{inst.id} 不能从 {inst.status.value} 变为 {to.value}")
    inst.status = to


@dataclass(frozen=True)
class LessonEvent:
    type: str
    """``room_opened``, ``lesson_live``, ``room_closed``."""
    instance_id: int
    at: datetime
    status: str

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["at"] = self.at.isoformat()
        return d


def tick(session: Session, now: datetime, *, lead: timedelta, grace: timedelta, limit: int = 5000) -> list[LessonEvent]:
    """Open rooms whose lesson starts within ``lead``; close rooms ``grace`` after the end.

    Closing marks a lesson that went live as held and one that never did as
    missed.  Rows are claimed with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so
    when several nodes tick at once each lesson is opened and closed by one.  A lesson whose whole window passed while the server was down is
    closed (and marked missed) without ever opening.
    """
    events: list[LessonEvent] = []
    to_close = session.scalars(
        select(LessonInstance)
        .where(LessonInstance.status.in_([InstanceStatus.scheduled, InstanceStatus.live]),
               LessonInstance.room_closed_at.is_(None), LessonInstance.ends_at <= now - grace)
        .order_by(LessonInstance.ends_at).limit(limit)
        .with_for_update(skip_locked=True, of=LessonInstance)
    ).all()
    subscribers = webhooks.active_subscriptions(session)  # read once for the whole pass (08:00 opens hundreds)
    for inst in to_close:
        transition(inst, InstanceStatus.held if inst.status is InstanceStatus.live else InstanceStatus.missed)
        inst.room_closed_at = now
        events.append(LessonEvent("room_closed", inst.id, now, inst.status.value))
        webhooks.lesson_event(session, inst, "room_closed", now, active=subscribers)
    to_open = session.scalars(
        select(LessonInstance)
        .where(LessonInstance.status == InstanceStatus.scheduled, LessonInstance.room_opened_at.is_(None),
               LessonInstance.starts_at <= now + lead, LessonInstance.ends_at > now - grace)
        .order_by(LessonInstance.starts_at).limit(limit)
        .with_for_update(skip_locked=True, of=LessonInstance)
    ).all()
    for inst in to_open:
        inst.room_opened_at = now
        events.append(LessonEvent("room_opened", inst.id, now, inst.status.value))
        webhooks.lesson_event(session, inst, "room_opened", now, active=subscribers)
    return events


def room_is_open(inst: LessonInstance) -> bool:
    return inst.room_opened_at is not None and inst.room_closed_at is None


def mark_started(session: Session, instance_id: int, now: datetime) -> LessonEvent | None:
    """The main classroom went live. Returns the event, or None if it already was."""
    inst = session.get(LessonInstance, instance_id)
    if inst is None:
        raise NotFound(f"课次 #{instance_id} 不存在")
    if inst.status is InstanceStatus.live:
        return None
    if not room_is_open(inst):
        raise InvalidState("课堂尚未开放或已关闭，不能开始上课")
    transition(inst, InstanceStatus.live)
    inst.started_at = now
    webhooks.lesson_event(session, inst, "lesson_live", now)
    return LessonEvent("lesson_live", inst.id, now, inst.status.value)


def mark_ended(session: Session, instance_id: int, now: datetime) -> LessonEvent | None:
    """The main classroom ended the lesson (下课): its room closes now, for everyone.

    A lesson that went live is held; one ended before it went live is closed as missed.
    Returns the ``room_closed`` event, or None if the room was already closed."""
    inst = session.get(LessonInstance, instance_id)
    if inst is None:
        raise NotFound(f"课次 #{instance_id} 不存在")
    if inst.room_closed_at is not None:
        return None
    if inst.room_opened_at is None:
        raise InvalidState("课堂尚未开放，不能下课")
    transition(inst, InstanceStatus.held if inst.status is InstanceStatus.live else InstanceStatus.missed)
    inst.room_closed_at = now
    webhooks.lesson_event(session, inst, "room_closed", now)
    return LessonEvent("room_closed", inst.id, now, inst.status.value)
