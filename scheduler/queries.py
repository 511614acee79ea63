"""Listings of lesson instances: the one query behind timetables, feeds, exports
and the district day view, scoped to what the caller may see."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import Select, exists, func, or_, select, union
from sqlalchemy.orm import Session, aliased

from scheduler.access import Scope, instance_clause, region_path_for
from scheduler.models import (
    Classroom,
    InstanceStatus,
    LessonInstance,
    LessonKind,
    LessonSeries,
    Region,
    School,
    SeriesParticipant,
    SeriesReceiver,
)


@dataclass(frozen=True)
class InstanceFilter:
    date_from: date | None = None
    date_to: date | None = None
    region_id: int | None = None
    """Lessons given or received by a school in this region's subtree."""
    school_id: int | None = None
    """Lessons given or received by this school."""
    classroom_id: int | None = None
    """Lessons in this classroom, as main or receiving classroom."""
    teacher_id: int | None = None
    """Lessons this teacher teaches (as main teacher or substitute)."""
    involving_user_id: int | None = None
    """Lessons this person teaches, assists (助教) or attends: a personal timetable."""
    kind: LessonKind | None = None
    status: InstanceStatus | None = None
    series_id: int | None = None
    term_id: int | None = None


def _touching(rooms, f: InstanceFilter) -> Select:  # type: ignore[no-untyped-def,type-arg]
    """Ids of lessons given in, or received by, the classrooms ``rooms`` (a subquery of ids).

    Driven from the classrooms' side: one probe of (main_classroom_id, day) or
    (series_id, day) per classroom or received series, instead of reading the
    whole province's lessons of the day and filtering them.
    """
    given = aliased(LessonInstance)
    taken = aliased(LessonInstance)
    days = []
    for alias in (given, taken):
        conds = []
        if f.date_from is not None:
            conds.append(alias.day >= f.date_from)
        if f.date_to is not None:
            conds.append(alias.day <= f.date_to)
        days.append(conds)
    return union(
        select(given.id).where(given.main_classroom_id.in_(rooms), *days[0]),
        select(taken.id).join(SeriesReceiver, SeriesReceiver.series_id == taken.series_id)
        .where(SeriesReceiver.classroom_id.in_(rooms), *days[1]),
    )


def instance_query(session: Session, scope: Scope, f: InstanceFilter) -> Select:  # type: ignore[type-arg]
    stmt = (
        select(LessonInstance)
        .join(LessonSeries, LessonSeries.id == LessonInstance.series_id)
        .where(instance_clause(scope))
    )
    if f.date_from is not None:
        stmt = stmt.where(LessonInstance.day >= f.date_from)
    if f.date_to is not None:
        stmt = stmt.where(LessonInstance.day <= f.date_to)
    if f.region_id is not None:
        path = region_path_for(session, f.region_id)
        rooms = (select(Classroom.id).join(School, School.id == Classroom.school_id)
                 .join(Region, Region.id == School.region_id).where(Region.path.startswith(path)))
        stmt = stmt.where(LessonInstance.id.in_(_touching(rooms, f)))
    if f.school_id is not None:
        rooms = select(Classroom.id).where(Classroom.school_id == f.school_id)
        stmt = stmt.where(LessonInstance.id.in_(_touching(rooms, f)))
    if f.classroom_id is not None:
        rooms = select(Classroom.id).where(Classroom.id == f.classroom_id)
        stmt = stmt.where(LessonInstance.id.in_(_touching(rooms, f)))
    if f.teacher_id is not None:
        stmt = stmt.where(LessonInstance.teacher_id == f.teacher_id)
    if f.involving_user_id is not None:
        uid = f.involving_user_id
        stmt = stmt.where(or_(
            LessonInstance.teacher_id == uid,
            exists(select(1).where(SeriesReceiver.series_id == LessonInstance.series_id,
                                   SeriesReceiver.assistant_id == uid)),
            exists(select(1).where(SeriesParticipant.series_id == LessonInstance.series_id,
                                   SeriesParticipant.user_id == uid)),
        ))
    if f.kind is not None:
        stmt = stmt.where(LessonSeries.kind == f.kind)
    if f.status is not None:
        stmt = stmt.where(LessonInstance.status == f.status)
    if f.series_id is not None:
        stmt = stmt.where(LessonInstance.series_id == f.series_id)
    if f.term_id is not None:
        stmt = stmt.where(LessonSeries.term_id == f.term_id)
    return stmt


def list_instances(
    session: Session, scope: Scope, f: InstanceFilter, *, offset: int = 0, limit: int = 100
) -> tuple[Sequence[LessonInstance], int]:
    """One page of instances in start order, and the total count."""
    stmt = instance_query(session, scope, f)
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    rows = session.scalars(stmt.order_by(LessonInstance.starts_at, LessonInstance.id).offset(offset).limit(limit)).all()
    return rows, int(total)
