"""Lesson series: book (admin) or request (teacher), check for conflicts, approve, reject, cancel."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import exists, func, or_, select

from scheduler import bookings
from scheduler.access import school_clause
from scheduler.conflicts import clashes_within, find_conflicts, internal_conflict_items
from scheduler.errors import Forbidden, NotFound
from scheduler.models import (
    Classroom,
    LessonInstance,
    LessonKind,
    LessonSeries,
    ReceiverMode,
    Region,
    Role,
    School,
    SeriesReceiver,
    SeriesStatus,
    WeekPattern,
)
from server.api.deps import CurrentUser, ScopeDep, SessionDep, StaffScope
from server.api.errors import ApiError

router = APIRouter(prefix="/series", tags=["series"])


class ReceiverIn(BaseModel):
    classroom_id: int
    mode: ReceiverMode = ReceiverMode.interactive
    assistant_id: int | None = None
    receiving_period: int | None = Field(default=None, ge=1, le=20)


class SeriesIn(BaseModel):
    kind: LessonKind
    title: str = Field(min_length=1, max_length=200)
    subject: str = Field(min_length=1, max_length=50)
    grade: str = Field(min_length=1, max_length=50)
    term_id: int
    main_classroom_id: int
    main_teacher_id: int
    weekday: int = Field(ge=1, le=7)
    period_from: int = Field(ge=1, le=20)
    period_to: int | None = Field(default=None, ge=1, le=20)
    week_from: int = Field(default=1, ge=1, le=60)
    week_to: int = Field(default=99, ge=1, le=99)
    week_pattern: WeekPattern = WeekPattern.every
    receivers: list[ReceiverIn] = Field(default_factory=list, max_length=200)
    participant_ids: list[int] = Field(default_factory=list, max_length=2000)
    recording: bool | None = None
    pairing_override_reason: str | None = Field(default=None, max_length=500)

    def to_spec(self) -> bookings.SeriesSpec:
        return bookings.SeriesSpec(
            kind=self.kind, title=self.title, subject=self.subject, grade=self.grade, term_id=self.term_id,
            main_classroom_id=self.main_classroom_id, main_teacher_id=self.main_teacher_id, weekday=self.weekday,
            period_from=self.period_from, period_to=self.period_to or self.period_from, week_from=self.week_from,
            week_to=self.week_to, week_pattern=self.week_pattern,
            receivers=tuple(bookings.ReceiverSpec(r.classroom_id, r.mode, r.assistant_id, r.receiving_period)
                            for r in self.receivers),
            participant_ids=tuple(self.participant_ids), recording=self.recording,
            pairing_override_reason=self.pairing_override_reason,
        )


class ReceiverOut(BaseModel):
    classroom_id: int
    mode: ReceiverMode
    assistant_id: int | None
    receiving_period: int | None

    model_config = {"from_attributes": True}


class SeriesOut(BaseModel):
    id: int
    kind: LessonKind
    title: str
    subject: str
    grade: str
    term_id: int
    main_classroom_id: int
    main_teacher_id: int
    weekday: int
    period_from: int
    period_to: int
    week_from: int
    week_to: int
    week_pattern: WeekPattern
    status: SeriesStatus
    recording: bool
    pairing_override_reason: str | None
    created_by_id: int
    approved_by_id: int | None
    created_at: datetime
    receivers: list[ReceiverOut]
    participant_ids: list[int]
    instance_count: int = 0


class SeriesPage(BaseModel):
    data: list[SeriesOut]
    count: int


class ReasonIn(BaseModel):
    reason: str = Field(default="", max_length=500)


class ConflictCheckOut(BaseModel):
    ok: bool
    instances: int
    conflicts: list[dict]  # type: ignore[type-arg]
    message: str


def _out(session, series: LessonSeries) -> SeriesOut:  # type: ignore[no-untyped-def]
    count = session.scalar(select(func.count()).select_from(LessonInstance)
                           .where(LessonInstance.series_id == series.id)) or 0
    return SeriesOut(
        **{k: getattr(series, k) for k in SeriesOut.model_fields if k not in ("receivers", "participant_ids",
                                                                             "instance_count")},
        receivers=[ReceiverOut.model_validate(r) for r in series.receivers],
        participant_ids=[p.user_id for p in series.participants],
        instance_count=count,
    )


def _visible(scope) -> object:  # type: ignore[no-untyped-def]
    main_visible = exists(
        select(1).select_from(Classroom).join(School, School.id == Classroom.school_id)
        .join(Region, Region.id == School.region_id)
        .where(Classroom.id == LessonSeries.main_classroom_id, school_clause(scope))
    )
    recv_visible = exists(
        select(1).select_from(SeriesReceiver).join(Classroom, Classroom.id == SeriesReceiver.classroom_id)
        .join(School, School.id == Classroom.school_id).join(Region, Region.id == School.region_id)
        .where(SeriesReceiver.series_id == LessonSeries.id, school_clause(scope))
    )
    if scope.role is Role.teacher:
        return or_(LessonSeries.main_teacher_id == scope.user_id, main_visible)
    return or_(main_visible, recv_visible)


def _get_visible(session, scope, series_id: int) -> LessonSeries:  # type: ignore[no-untyped-def]
    series = session.get(LessonSeries, series_id)
    if series is None:
        raise NotFound(f"课程 #{series_id} 不存在")
    if not session.scalar(select(LessonSeries.id).where(LessonSeries.id == series_id, _visible(scope))):
        raise Forbidden("无权访问该课程")
    return series


@router.get("", response_model=SeriesPage)
def list_series(
    session: SessionDep,
    scope: StaffScope,
    term_id: int | None = None,
    kind: LessonKind | None = None,
    status: SeriesStatus | None = None,
    teacher_id: int | None = None,
    classroom_id: int | None = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> SeriesPage:
    stmt = select(LessonSeries).where(_visible(scope))
    if term_id is not None:
        stmt = stmt.where(LessonSeries.term_id == term_id)
    if kind is not None:
        stmt = stmt.where(LessonSeries.kind == kind)
    if status is not None:
        stmt = stmt.where(LessonSeries.status == status)
    if teacher_id is not None:
        stmt = stmt.where(LessonSeries.main_teacher_id == teacher_id)
    if classroom_id is not None:
        stmt = stmt.where(or_(LessonSeries.main_classroom_id == classroom_id,
                              exists(select(1).where(SeriesReceiver.series_id == LessonSeries.id,
                                                     SeriesReceiver.classroom_id == classroom_id))))
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.scalars(stmt.order_by(LessonSeries.weekday, LessonSeries.period_from, LessonSeries.id)
                           .offset(offset).limit(limit)).all()
    return SeriesPage(data=[_out(session, s) for s in rows], count=total)


@router.post("/check", response_model=ConflictCheckOut)
def check_series(body: SeriesIn, session: SessionDep, scope: StaffScope) -> ConflictCheckOut:
    """Dry run for the booking dialog: the instances it would create and every conflict, in words."""
    spec = body.to_spec()
    planned = bookings.plan_series(session, spec)
    slots = [s for p in planned for s in p.slots]
    items = internal_conflict_items(session, clashes_within(slots)) + find_conflicts(session, slots)
    message = "没有冲突，可以排课" if not items else f"发现 {len(items)} 处冲突：" + "；".join(i.message for i in items[:5])
    return ConflictCheckOut(ok=not items, instances=len(planned), conflicts=[i.as_dict() for i in items],
                            message=message)


@router.post("", response_model=SeriesOut, status_code=201)
def create_series(body: SeriesIn, session: SessionDep, user: CurrentUser, scope: ScopeDep) -> SeriesOut:
    if scope.role not in (Role.admin, Role.teacher):
        raise ApiError(403, "forbidden", "当前角色不能排课")
    series = bookings.create_series(session, body.to_spec(), actor=user, scope=scope)
    return _out(session, series)


@router.get("/{series_id}", response_model=SeriesOut)
def get_series(series_id: int, session: SessionDep, scope: StaffScope) -> SeriesOut:
    return _out(session, _get_visible(session, scope, series_id))


@router.post("/{series_id}/approve", response_model=SeriesOut)
def approve(series_id: int, body: ReasonIn, session: SessionDep, user: CurrentUser, scope: ScopeDep) -> SeriesOut:
    series = bookings.approve_series(session, series_id, actor=user, scope=scope, reason=body.reason)
    return _out(session, series)


@router.post("/{series_id}/reject", response_model=SeriesOut)
def reject(series_id: int, body: ReasonIn, session: SessionDep, user: CurrentUser, scope: ScopeDep) -> SeriesOut:
    series = bookings.reject_series(session, series_id, actor=user, scope=scope, reason=body.reason)
    return _out(session, series)


@router.post("/{series_id}/cancel", response_model=SeriesOut)
def cancel(series_id: int, body: ReasonIn, session: SessionDep, user: CurrentUser, scope: ScopeDep) -> SeriesOut:
    series = bookings.cancel_series(session, series_id, actor=user, scope=scope, reason=body.reason)
    return _out(session, series)
