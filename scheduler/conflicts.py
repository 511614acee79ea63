"""Conflict detection: which of a booking's slots clash with what is already booked.

A *slot* is one resource (a teacher or a classroom) held for one time range by
one planned instance.  ``clashes_within`` checks a booking against itself (the
main classroom also listed as a receiver, say); ``find_conflicts`` checks it
against the database in one query; ``described`` then tells a refusal in the
clerk's terms (the existing lesson's teacher, periods and week, each classroom's
school and role), and ``scheduler.errors.group_conflicts`` folds a weekly clash
into one sentence.  The database's own no-overlap rule (exclusion constraint /
trigger) stays the last word under concurrency.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from sqlalchemy import DateTime, Row, select, text
from sqlalchemy.orm import Session

from scheduler.errors import ConflictItem, SchedulerError
from scheduler.models import Classroom, LessonInstance, LessonSeries, ResourceType, School, User
from scheduler.terms import TermCalendar, load_calendar, week_of


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


# A slot never spans midnight (``SeriesContext.place`` builds every window
# inside one day; PostgreSQL also checks it, migration 0003), so an occupancy
# row overlapping a window starts less than a day before the window: that
# bound turns each window's lookup into a short range of the
# (resource_type, resource_id, starts_at) index.
MAX_SLOT = timedelta(days=1)

# The windows travel as one parameter (arrays on PostgreSQL, one JSON text on
# SQLite), so the statement text never changes: psycopg prepares it once, and
# there is no per-window SQL expression to build.
_PG_CONFLICTS = text("""
SELECT DISTINCT o.resource_type, o.resource_id, o.instance_id, o.starts_at, o.ends_at, s.title,
       COALESCE(u.display_name, c.name) AS resource_name
FROM unnest(CAST(:types AS varchar[]), CAST(:ids AS integer[]),
            CAST(:starts AS timestamp[]), CAST(:ends AS timestamp[])) AS w(t, r, s, e)
JOIN occupancy o ON o.resource_type = w.t AND o.resource_id = w.r
                AND o.starts_at < w.e AND o.ends_at > w.s AND o.starts_at > w.s - interval '1 day'
JOIN lesson_instance i ON i.id = o.instance_id
JOIN lesson_series s ON s.id = i.series_id
LEFT JOIN user_account u ON o.resource_type = 'teacher' AND u.id = o.resource_id
LEFT JOIN classroom c ON o.resource_type = 'classroom' AND c.id = o.resource_id
WHERE o.instance_id <> ALL(CAST(:ignore AS integer[]))
ORDER BY o.starts_at, o.resource_type, o.resource_id
""").columns(starts_at=DateTime(), ends_at=DateTime())

_SQLITE_CONFLICTS = text("""
SELECT DISTINCT o.resource_type, o.resource_id, o.instance_id, o.starts_at, o.ends_at, s.title,
       COALESCE(u.display_name, c.name) AS resource_name
FROM json_each(:windows) AS w
JOIN occupancy o ON o.resource_type = json_extract(w.value, '$[0]')
                AND o.resource_id = json_extract(w.value, '$[1]')
                AND o.starts_at < json_extract(w.value, '$[3]')
                AND o.ends_at > json_extract(w.value, '$[2]')
                AND o.starts_at > json_extract(w.value, '$[4]')
JOIN lesson_instance i ON i.id = o.instance_id
JOIN lesson_series s ON s.id = i.series_id
LEFT JOIN user_account u ON o.resource_type = 'teacher' AND u.id = o.resource_id
LEFT JOIN classroom c ON o.resource_type = 'classroom' AND c.id = o.resource_id
WHERE o.instance_id NOT IN (SELECT value FROM json_each(:ignore))
ORDER BY o.starts_at, o.resource_type, o.resource_id
""").columns(starts_at=DateTime(), ends_at=DateTime())

_SQLITE_TS = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's storage format: compares correctly as text


def _booked_overlaps(session: Session, slots: Sequence[Slot], ignore: list[int]) -> list[Row]:  # type: ignore[type-arg]
    if session.get_bind().dialect.name == "postgresql":
        return list(session.execute(_PG_CONFLICTS, {
            "types": [s.resource_type.value for s in slots], "ids": [s.resource_id for s in slots],
            "starts": [s.starts_at for s in slots], "ends": [s.ends_at for s in slots], "ignore": ignore,
        }))
    windows = json.dumps([
        [s.resource_type.value, s.resource_id, s.starts_at.strftime(_SQLITE_TS), s.ends_at.strftime(_SQLITE_TS),
         (s.starts_at - MAX_SLOT).strftime(_SQLITE_TS)]
        for s in slots
    ])
    return list(session.execute(_SQLITE_CONFLICTS, {"windows": windows, "ignore": json.dumps(ignore)}))


def _week(session: Session, calendars: dict[int, TermCalendar | None], term_id: int, day: date) -> int | None:
    if term_id not in calendars:
        try:
            calendars[term_id] = load_calendar(session, term_id)[1]
        except SchedulerError:
            calendars[term_id] = None
    cal = calendars[term_id]
    return week_of(cal, day) if cal is not None else None


def find_conflicts(
    session: Session, slots: Sequence[Slot], *, ignore_instance_ids: Iterable[int] = ()
) -> list[ConflictItem]:
    """Every booked occupancy that overlaps one of ``slots`` (one query, names included), as conflict items.

    Detection only: ``described`` adds what a refusal tells the clerk (the existing lesson's teacher,
    periods and week, each classroom's school and role)."""
    if not slots:
        return []
    rows = _booked_overlaps(session, slots, sorted(set(ignore_instance_ids)))
    items = []
    for r in rows:
        item = ConflictItem(resource=ResourceType(r.resource_type).value, resource_id=r.resource_id,
                            resource_name=r.resource_name or f"#{r.resource_id}", day=r.starts_at.date(),
                            start=r.starts_at, end=r.ends_at, instance_id=r.instance_id, lesson_title=r.title)
        items.append(replace(item, message=describe_item(item)))
    return items


def described(session: Session, items: Sequence[ConflictItem]) -> list[ConflictItem]:
    """``items`` of ``find_conflicts`` with the existing lesson's teacher, series, periods and teaching week,
    and each classroom's school and role in that lesson (two queries, plus each term's calendar)."""
    clashes = [i for i in items if i.kind == "clash" and i.instance_id is not None]
    if not clashes:
        return list(items)
    ids = {i.instance_id for i in clashes}
    lessons = {row.id: row for row in session.execute(
        select(LessonInstance.id, LessonInstance.series_id, LessonInstance.teacher_id,
               LessonInstance.main_classroom_id, LessonInstance.period_from, LessonInstance.period_to,
               LessonSeries.term_id, User.display_name.label("teacher_name"))
        .join(LessonSeries, LessonSeries.id == LessonInstance.series_id)
        .join(User, User.id == LessonInstance.teacher_id)
        .where(LessonInstance.id.in_(ids)))}
    room_ids = {i.resource_id for i in clashes if i.resource == ResourceType.classroom.value}
    schools = dict(session.execute(select(Classroom.id, School.name).join(School, School.id == Classroom.school_id)
                                   .where(Classroom.id.in_(room_ids))).all()) if room_ids else {}
    calendars: dict[int, TermCalendar | None] = {}
    out = []
    for i in items:
        lesson = lessons.get(i.instance_id) if i.kind == "clash" and i.instance_id is not None else None
        if lesson is None:
            out.append(i)
            continue
        if i.resource == ResourceType.classroom.value:
            role = "main" if lesson.main_classroom_id == i.resource_id else "receiving"
        else:
            role = "main" if lesson.teacher_id == i.resource_id else "assistant"
        item = replace(i, school_name=schools.get(i.resource_id) if i.resource == "classroom" else None, role=role,
                       teacher_name=lesson.teacher_name, series_id=lesson.series_id,
                       period_from=lesson.period_from, period_to=lesson.period_to,
                       week=_week(session, calendars, lesson.term_id, i.day))
        out.append(replace(item, message=describe_item(item)))
    return out


def describe_item(item: ConflictItem) -> str:
    """One clash on one date in words: ``接收教室“R1-1”（石桥村小）在 2026-09-07 08:00–08:40 已有课程《英语》（李老师）``."""
    return f"{item.who()}在 {item.start:%Y-%m-%d} {item.start:%H:%M}–{item.end:%H:%M} {item.what()}"


def internal_conflict_items(session: Session, pairs: Sequence[tuple[Slot, Slot]]) -> list[ConflictItem]:
    names = _resource_names(session, ((a.resource_type, a.resource_id) for a, _ in pairs))
    room_ids = {a.resource_id for a, _ in pairs if a.resource_type is ResourceType.classroom}
    schools = dict(session.execute(select(Classroom.id, School.name).join(School, School.id == Classroom.school_id)
                                   .where(Classroom.id.in_(room_ids))).all()) if room_ids else {}
    items = []
    for a, b in pairs:
        name = names.get((a.resource_type, a.resource_id), f"#{a.resource_id}")
        item = ConflictItem(
            resource=a.resource_type.value, resource_id=a.resource_id, resource_name=name,
            day=b.starts_at.date(), start=b.starts_at, end=b.ends_at, kind="internal",
            school_name=schools.get(a.resource_id) if a.resource_type is ResourceType.classroom else None,
        )
        items.append(replace(item, message=f"{item.who()}在本次排课中被重复安排（{b.starts_at:%Y-%m-%d %H:%M}）"))
    return items
