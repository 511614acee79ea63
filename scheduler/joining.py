"""Who may join a lesson, and in which lesson role.

Only people booked into the instance get a role: the teacher (or substitute)
and the main classroom's terminal as ``main``; receiving classrooms' terminals
and assistant teachers as ``receiving``; enrolled home students and attending
teachers as ``student``; researchers of the lesson's region, and the evaluators invited to the
lesson (``scheduler.patrol``), as ``observer``.

Who may watch a famous-school lesson's stream (LL-HLS, ``watcher_role``): the same people, in the
same roles, plus the admins who may see the lesson (``admin``); before, during and right after the
lesson (a cancelled or missed one has no stream).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.access import Scope, region_path_for, require_instance
from scheduler.errors import Forbidden, InvalidState
from scheduler.models import (
    Classroom,
    InstanceStatus,
    LessonInstance,
    LessonKind,
    Role,
    School,
    User,
)
from scheduler.patrol_models import EvaluatorInvitation


@dataclass(frozen=True)
class LessonSeat:
    lesson_role: str
    classroom_id: int | None


def seat_for(session: Session, user: User, inst: LessonInstance) -> LessonSeat:
    if inst.status in (InstanceStatus.cancelled, InstanceStatus.held, InstanceStatus.missed):
        raise InvalidState("该课次已结束或已停课")
    return _booked_seat(session, user, inst)


def watcher_role(session: Session, user: User, scope: Scope, inst: LessonInstance) -> str:
    """The lesson role in which ``user`` may watch the lesson's stream, or ``admin``; Forbidden/InvalidState."""
    if inst.series.kind is not LessonKind.famous_school:
        raise InvalidState("只有名校网络课堂提供直播流")
    if inst.status is InstanceStatus.cancelled:
        raise InvalidState("该课次已停课，没有直播")
    if inst.status is InstanceStatus.missed:
        raise InvalidState("该课次未开课，没有直播")
    if user.role is Role.admin:
        require_instance(session, scope, inst.id)
        return "admin"
    return _booked_seat(session, user, inst).lesson_role


def _booked_seat(session: Session, user: User, inst: LessonInstance) -> LessonSeat:
    series = inst.series
    receivers = {r.classroom_id: r for r in series.receivers}
    if user.role is Role.terminal:
        if user.classroom_id == inst.main_classroom_id:
            return LessonSeat("main", inst.main_classroom_id)
        if user.classroom_id in receivers:
            return LessonSeat("receiving", user.classroom_id)
    elif user.role is Role.teacher:
        if user.id == inst.teacher_id:
            return LessonSeat("main", inst.main_classroom_id)
        for r in series.receivers:
            if r.assistant_id == user.id:
                return LessonSeat("receiving", r.classroom_id)
        if any(p.user_id == user.id for p in series.participants):
            return LessonSeat("student", None)
    elif user.role is Role.student:
        if any(p.user_id == user.id for p in series.participants):
            return LessonSeat("student", None)
    elif user.role is Role.researcher and user.region_id is not None:
        prefix = region_path_for(session, user.region_id)
        rooms = [inst.main_classroom_id, *receivers]
        paths = session.scalars(
            select(School.region_id).join(Classroom, Classroom.school_id == School.id).where(Classroom.id.in_(rooms))
        ).all()
        if any(region_path_for(session, rid).startswith(prefix) for rid in set(paths)):
            return LessonSeat("observer", None)
    if user.role in (Role.researcher, Role.teacher) and session.scalar(select(EvaluatorInvitation.id).where(
            EvaluatorInvitation.instance_id == inst.id, EvaluatorInvitation.invitee_id == user.id)) is not None:
        return LessonSeat("observer", None)  # invited to evaluate it (评课): watches silently
    raise Forbidden("您没有被安排参加该课次")
