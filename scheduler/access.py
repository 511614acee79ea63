"""Who may see what: the region / school / classroom scope of a user.

Researchers see only their region (and its sub-regions); a bureau admin the
same; a school admin, teacher or student their school; a terminal its
classroom; a system admin (no school, no region) everything.  Pure rules over
rows already loaded, plus SQL clauses for listings.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, exists, false, or_, select, true
from sqlalchemy.orm import Session

from scheduler.errors import Forbidden, NotFound
from scheduler.models import (
    Classroom,
    LessonInstance,
    LessonSeries,
    Region,
    Role,
    School,
    SeriesParticipant,
    SeriesReceiver,
    User,
)


@dataclass(frozen=True)
class Scope:
    user_id: int
    role: Role
    region_path: str | None
    """Region subtree the user covers ("/1/4/"), or None."""
    school_id: int | None
    classroom_id: int | None
    everywhere: bool = False

    @property
    def is_admin(self) -> bool:
        return self.role is Role.admin


def scope_of(session: Session, user: User) -> Scope:
    path: str | None = None
    if user.region_id is not None and user.role in (Role.admin, Role.researcher):
        region = session.get(Region, user.region_id)
        path = region.path if region else None
    everywhere = user.role is Role.admin and user.region_id is None and user.school_id is None
    return Scope(user.id, user.role, path, user.school_id, user.classroom_id, everywhere)


def school_visible(scope: Scope, school: School, region_path: str) -> bool:
    if scope.everywhere:
        return True
    if scope.region_path is not None and region_path.startswith(scope.region_path):
        return True
    if scope.school_id is not None and scope.school_id == school.id:
        return True
    return False


def school_clause(scope: Scope) -> ColumnElement[bool]:
    """WHERE clause over ``School`` (joined with ``Region``) for a listing."""
    if scope.everywhere:
        return true()
    parts: list[ColumnElement[bool]] = []
    if scope.region_path is not None:
        parts.append(Region.path.startswith(scope.region_path))
    if scope.school_id is not None:
        parts.append(School.id == scope.school_id)
    if scope.classroom_id is not None:
        parts.append(School.id == select(Classroom.school_id).where(Classroom.id == scope.classroom_id).scalar_subquery())
    return or_(*parts) if parts else false()


def require_school(session: Session, scope: Scope, school_id: int) -> School:
    school = session.get(School, school_id)
    if school is None:
        raise NotFound(f"学校 #{school_id} 不存在")
    region = session.get(Region, school.region_id)
    if not school_visible(scope, school, region.path if region else ""):
        raise Forbidden("无权访问该学校的数据")
    return school


def require_region(session: Session, scope: Scope, region_id: int) -> Region:
    region = session.get(Region, region_id)
    if region is None:
        raise NotFound(f"区域 #{region_id} 不存在")
    if scope.everywhere:
        return region
    if scope.region_path is not None and region.path.startswith(scope.region_path):
        return region
    if scope.school_id is not None:
        # a school's own people may narrow a listing to a region that contains their school
        own = session.scalar(select(Region.path).join(School, School.region_id == Region.id)
                             .where(School.id == scope.school_id))
        if own is not None and own.startswith(region.path):
            return region
    raise Forbidden("无权访问该区域的数据")


def require_school_admin(session: Session, scope: Scope, school_id: int) -> School:
    """An admin who manages this school: its own school admin, its region's admin, or a system admin."""
    if not scope.is_admin:
        raise Forbidden("只有管理员可以执行此操作")
    return require_school(session, scope, school_id)


def _school_of_classroom_visible(scope: Scope, classroom_col) -> ColumnElement[bool]:  # type: ignore[no-untyped-def]
    return exists(
        select(1).select_from(Classroom).join(School, School.id == Classroom.school_id)
        .join(Region, Region.id == School.region_id)
        .where(Classroom.id == classroom_col, school_clause(scope))
    )


def instance_clause(scope: Scope) -> ColumnElement[bool]:
    """WHERE clause over ``LessonInstance`` joined with ``LessonSeries``: the lessons a user may see."""
    if scope.everywhere:
        return true()
    receiving_visible = exists(
        select(1).select_from(SeriesReceiver).join(Classroom, Classroom.id == SeriesReceiver.classroom_id)
        .join(School, School.id == Classroom.school_id).join(Region, Region.id == School.region_id)
        .where(SeriesReceiver.series_id == LessonInstance.series_id, school_clause(scope))
    )
    if scope.role in (Role.admin, Role.researcher):
        return or_(_school_of_classroom_visible(scope, LessonInstance.main_classroom_id), receiving_visible)
    if scope.role is Role.terminal:
        return or_(
            LessonInstance.main_classroom_id == scope.classroom_id,
            exists(select(1).where(SeriesReceiver.series_id == LessonInstance.series_id,
                                   SeriesReceiver.classroom_id == scope.classroom_id)),
        )
    involved = or_(
        LessonInstance.teacher_id == scope.user_id,
        LessonSeries.main_teacher_id == scope.user_id,
        exists(select(1).where(SeriesReceiver.series_id == LessonInstance.series_id,
                               SeriesReceiver.assistant_id == scope.user_id)),
        exists(select(1).where(SeriesParticipant.series_id == LessonInstance.series_id,
                               SeriesParticipant.user_id == scope.user_id)),
    )
    if scope.role is Role.teacher:
        return or_(involved, _school_of_classroom_visible(scope, LessonInstance.main_classroom_id), receiving_visible)
    return involved  # students: only lessons they are enrolled in


def require_instance(session: Session, scope: Scope, instance_id: int) -> LessonInstance:
    inst = session.get(LessonInstance, instance_id)
    if inst is None:
        raise NotFound(f"课次 #{instance_id} 不存在")
    visible = session.scalar(
        select(LessonInstance.id).join(LessonSeries, LessonSeries.id == LessonInstance.series_id)
        .where(LessonInstance.id == instance_id, instance_clause(scope))
    )
    if visible is None:
        raise Forbidden("无权访问该课次")
    return inst


def region_path_for(session: Session, region_id: int) -> str:
    region = session.get(Region, region_id)
    if region is None:
        raise NotFound(f"区域 #{region_id} 不存在")
    return region.path
