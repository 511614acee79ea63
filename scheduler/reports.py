"""Term reports: how a term's lessons went, per district or per school.

``term_summary`` is one aggregate query.  The lessons it counts are exactly the
ones the listing query (:func:`scheduler.queries.instance_query`) returns for
the same scope, term and region, so a report can never disagree with the
timetable a researcher sees.  Each lesson counts once for every unit (district,
or school when the region is a district) inside the region that gives or
receives it: a 专递课堂 from a city school to two village schools of another
district counts for both districts.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, case, func, select, union
from sqlalchemy.orm import Session

from scheduler.access import Scope, school_clause
from scheduler.errors import NotFound
from scheduler.models import (
    Classroom,
    InstanceStatus,
    LessonInstance,
    LessonKind,
    LessonSeries,
    Region,
    RegionLevel,
    School,
    SeriesReceiver,
)
from scheduler.queries import InstanceFilter, instance_query


@dataclass(frozen=True)
class TermSummaryRow:
    """One district's (or school's) lessons in a term."""

    unit: str
    """``district`` or ``school``."""
    unit_id: int
    name: str
    total: int
    scheduled: int
    live: int
    held: int
    missed: int
    cancelled: int
    dedicated: int
    """专递课堂 lessons (any status)."""
    master: int
    """名师课堂 lessons (any status)."""
    famous_school: int
    """名校网络课堂 lessons (any status)."""

    @property
    def held_rate(self) -> float | None:
        """Held lessons among those that were due and not cancelled: held / (held + missed)."""
        due = self.held + self.missed
        return self.held / due if due else None


_STATUSES = (InstanceStatus.scheduled, InstanceStatus.live, InstanceStatus.held, InstanceStatus.missed,
             InstanceStatus.cancelled)
_KINDS = (LessonKind.dedicated, LessonKind.master, LessonKind.famous_school)


def term_summary(session: Session, scope: Scope, *, term_id: int, region_id: int | None = None) -> list[TermSummaryRow]:
    """Lesson counts by status and by kind for every district in ``region_id`` (every
    school, when it is a district), ordered by name. Units outside ``scope`` are left out."""
    per_school = False
    unit_where: ColumnElement[bool] = school_clause(scope)
    if region_id is not None:
        region = session.get(Region, region_id)
        if region is None:
            raise NotFound(f"区域 #{region_id} 不存在")
        per_school = region.level is RegionLevel.district
        unit_where = unit_where & Region.path.startswith(region.path)

    lessons = (
        instance_query(session, scope, InstanceFilter(term_id=term_id, region_id=region_id))
        .with_only_columns(LessonInstance.id, LessonInstance.series_id, LessonInstance.status, LessonSeries.kind)
        .subquery("lessons")
    )
    unit_of = School.id if per_school else School.region_id
    giving = (
        select(LessonSeries.id.label("series_id"), unit_of.label("unit_id"))
        .join(Classroom, Classroom.id == LessonSeries.main_classroom_id)
        .join(School, School.id == Classroom.school_id)
        .join(Region, Region.id == School.region_id)
        .where(LessonSeries.term_id == term_id, unit_where)
    )
    receiving = (
        select(SeriesReceiver.series_id.label("series_id"), unit_of.label("unit_id"))
        .join(LessonSeries, LessonSeries.id == SeriesReceiver.series_id)
        .join(Classroom, Classroom.id == SeriesReceiver.classroom_id)
        .join(School, School.id == Classroom.school_id)
        .join(Region, Region.id == School.region_id)
        .where(LessonSeries.term_id == term_id, unit_where)
    )
    units = union(giving, receiving).subquery("units")  # UNION: a series counts once per unit

    named = School if per_school else Region
    stmt = (
        select(
            units.c.unit_id,
            named.name,
            func.count(),
            *(func.sum(case((lessons.c.status == s, 1), else_=0)) for s in _STATUSES),
            *(func.sum(case((lessons.c.kind == k, 1), else_=0)) for k in _KINDS),
        )
        .select_from(lessons)
        .join(units, units.c.series_id == lessons.c.series_id)
        .join(named, named.id == units.c.unit_id)
        .group_by(units.c.unit_id, named.name)
        .order_by(named.name, units.c.unit_id)
    )
    unit = "school" if per_school else "district"
    return [
        TermSummaryRow(unit, row[0], row[1], *(int(v or 0) for v in row[2:]))
        for row in session.execute(stmt)
    ]
