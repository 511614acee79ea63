"""Conflict detection: which of a booking's slots clash with what is already booked.

A *slot* is one resource (a teacher or a classroom) held for one time range by
one planned instance.  ``clashes_within`` checks a booking against itself (the
main classroom also listed as a receiver, say); ``find_conflicts`` checks it
against the database in one query.  The database's own no-overlap rule
(exclusion constraint / trigger) stays the last word under concurrency.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from scheduler.errors import ConflictItem
from scheduler.models import Classroom, LessonInstance, LessonSeries, Occupancy, ResourceType, User

_RESOURCE_ZH = {ResourceType.teacher: "教师", ResourceType.classroom: "教室"}


@dataclass(frozen=True)
class Slot:
    resource_type: ResourceType
    resource_id: int
    starts_at: datetime
    ends_at: datetime


def overlaps(a: Slot, b: Slot) -> bool:
    return (
        a.resource_type == b.resource_type
        and a.resource_id == b.resource_id
        and a.starts_at < b.ends_at
        and b.starts_at < a.ends_at
    )


def clashes_within(slots: Sequence[Slot]) -> list[tuple[Slot, Slot]]:
    """Pairs of slots of one booking that hold the same resource at overlapping times."""
    by_resource: dict[tuple[ResourceType, int], list[Slot]] = defaultdict(list)
    for s in slots:
        by_resource[(s.resource_type, s.resource_id)].append(s)
    found: list[tuple[Slot, Slot]] = []
    for group in by_resource.values():
        group.sort(key=lambda s: s.starts_at)
        for a, b in zip(group, group[1:]):
            if b.starts_at < a.ends_at:
                found.append((a, b))
    return found


def _resource_names(session: Session, keys: Iterable[tuple[ResourceType, int]]) -> dict[tuple[ResourceType, int], str]:
    keys = set(keys)
    teacher_ids = [i for t, i in keys if t is ResourceType.teacher]
    room_ids = [i for t, i in keys if t is ResourceType.classroom]
    names: dict[tuple[ResourceType, int], str] = {}
    if teacher_ids:
        for uid, name in session.execute(select(User.id, User.display_name).where(User.id.in_(teacher_ids))):
            names[(ResourceType.teacher, uid)] = name
    if room_ids:
        for cid, name in session.execute(select(Classroom.id, Classroom.name).where(Classroom.id.in_(room_ids))):
            names[(ResourceType.classroom, cid)] = name
    return names


def describe(resource_type: ResourceType, name: str, start: datetime, end: datetime, title: str | None) -> str:
    when = f"{start:%Y-%m-%d} {start:%H:%M}–{end:%H:%M}"
    what = f"已有课程《{title}》" if title else "已被占用"
    return f"{_RESOURCE_ZH[resource_type]}“{name}”在 {when} {what}"


def find_conflicts(
    session: Session, slots: Sequence[Slot], *, ignore_instance_ids: Iterable[int] = ()
) -> list[ConflictItem]:
    """Every booked occupancy that overlaps one of ``slots`` (one query), as conflict items."""
    if not slots:
        return []
    windows: dict[tuple[ResourceType, int], list[Slot]] = defaultdict(list)
    for s in slots:
        windows[(s.resource_type, s.resource_id)].append(s)
    clause = or_(
        *(
            and_(
                Occupancy.resource_type == rtype,
                Occupancy.resource_id == rid,
                or_(*(and_(Occupancy.starts_at < w.ends_at, Occupancy.ends_at > w.starts_at) for w in ws)),
            )
            for (rtype, rid), ws in windows.items()
        )
    )
    stmt = (
        select(Occupancy.resource_type, Occupancy.resource_id, Occupancy.instance_id,
               Occupancy.starts_at, Occupancy.ends_at, LessonSeries.title)
        .join(LessonInstance, LessonInstance.id == Occupancy.instance_id)
        .join(LessonSeries, LessonSeries.id == LessonInstance.series_id)
        .where(clause)
        .order_by(Occupancy.starts_at)
    )
    ignore = set(ignore_instance_ids)
    if ignore:
        stmt = stmt.where(Occupancy.instance_id.not_in(ignore))
    rows = session.execute(stmt).all()
    if not rows:
        return []
    names = _resource_names(session, ((r.resource_type, r.resource_id) for r in rows))
    items: list[ConflictItem] = []
    for r in rows:
        name = names.get((r.resource_type, r.resource_id), f"#{r.resource_id}")
        items.append(
            ConflictItem(
                resource=r.resource_type.value,
                resource_id=r.resource_id,
                resource_name=name,
                day=r.starts_at.date(),
                start=r.starts_at,
                end=r.ends_at,
                instance_id=r.instance_id,
                lesson_title=r.title,
                message=describe(r.resource_type, name, r.starts_at, r.ends_at, r.title),
            )
        )
    return items


def internal_conflict_items(session: Session, pairs: Sequence[tuple[Slot, Slot]]) -> list[ConflictItem]:
    names = _resource_names(session, ((a.resource_type, a.resource_id) for a, _ in pairs))
    items = []
    for a, b in pairs:
        name = names.get((a.resource_type, a.resource_id), f"#{a.resource_id}")
        items.append(
            ConflictItem(
                resource=a.resource_type.value, resource_id=a.resource_id, resource_name=name,
                day=b.starts_at.date(), start=b.starts_at, end=b.ends_at,
                message=f"{_RESOURCE_ZH[a.resource_type]}“{name}”在本次排课中被重复安排（{b.starts_at:%Y-%m-%d %H:%M}）",
            )
        )
    return items
