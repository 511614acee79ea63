"""Lesson series: book (admin) or request (teacher), check for conflicts, approve, reject, cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import exists, false, func, or_, select

from scheduler import bookings
from scheduler.access import require_school_admin, school_clause
from scheduler.errors import Forbidden, NotFound, SchedulerError
from scheduler.models import (
    AuditEntry,
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
    User,
    WeekPattern,
)
from server.api.deps import CurrentUser, ScopeDep, SessionDep, StaffScope
from server.api.errors import status_for
from server.api.times import Timestamp

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
    skip_weeks: list[Annotated[int, Field(ge=1, le=99)]] = Field(default_factory=list, max_length=60)
    """Teaching weeks without a lesson (the slot finder books around the weeks its slot is taken)."""
    receivers: list[ReceiverIn] = Field(default_factory=list, max_length=200)
    participant_ids: list[int] = Field(default_factory=list, max_length=2000)
    recording: bool | None = None
    pairing_override_reason: str | None = Field(default=None, max_length=500)
    stream_from: int | None = Field(default=None, ge=0, le=bookings.STREAM_FROM_MAX)
    """名校网络课堂: home students not on stage watch the HLS stream while more than this many are in the
    lesson (0: always; null: never)."""

    def to_spec(self) -> bookings.SeriesSpec:
        return bookings.SeriesSpec(
            kind=self.kind, title=self.title, subject=self.subject, grade=self.grade, term_id=self.term_id,
            main_classroom_id=self.main_classroom_id, main_teacher_id=self.main_teacher_id, weekday=self.weekday,
            period_from=self.period_from, period_to=self.period_to or self.period_from, week_from=self.week_from,
            week_to=self.week_to, week_pattern=self.week_pattern, skip_weeks=tuple(self.skip_weeks),
            receivers=tuple(bookings.ReceiverSpec(r.classroom_id, r.mode, r.assistant_id, r.receiving_period)
                            for r in self.receivers),
            participant_ids=tuple(self.participant_ids), recording=self.recording,
            pairing_override_reason=self.pairing_override_reason, stream_from=self.stream_from,
        )


class ReceiverOut(BaseModel):
    classroom_id: int
    mode: ReceiverMode
    assistant_id: int | None
    receiving_period: int | None
    classroom_name: str = ""
    school_name: str = ""


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
    skip_weeks: list[int] = Field(default_factory=list)
    """Teaching weeks without a lesson."""
    status: SeriesStatus
    recording: bool
    stream_from: int | None = None
    pairing_override_reason: str | None
    created_by_id: int
    approved_by_id: int | None
    created_at: Timestamp
    receivers: list[ReceiverOut]
    participant_ids: list[int]
    instance_count: int = 0
    main_teacher_name: str = ""
    main_classroom_name: str = ""
    main_school_name: str = ""
    created_by_name: str = ""
    can_manage: bool = False
    """The caller may approve, reject or cancel it (an admin of its main school or above)."""
    decision_reason: str | None = None
    """Why it was rejected or cancelled (the reason given with that decision)."""
    decided_at: Timestamp | None = None
    decided_by_name: str | None = None


class SeriesPage(BaseModel):
    data: list[SeriesOut]
    count: int


class ReasonIn(BaseModel):
    reason: str = Field(default="", max_length=500)


class StreamFromIn(BaseModel):
    stream_from: int | None = Field(ge=0, le=bookings.STREAM_FROM_MAX)


class ConflictCheckOut(BaseModel):
    ok: bool
    instances: int
    conflicts: list[dict]  # type: ignore[type-arg]
    """Per date, as in a 409's ``conflicts``."""
    conflict_groups: list[dict] = []  # type: ignore[type-arg]
    """Grouped by weekly pattern, as in a 409's ``conflict_groups``."""
    message: str
    code: str | None = None
    """Why booking would refuse: the error ``code`` (``conflict``, ``invalid``, ``forbidden``, ``not_found``)."""
    status: int | None = None
    """The HTTP status booking would answer with."""
    field: str | None = None


def _out(session, series: LessonSeries, scope=None) -> SeriesOut:  # type: ignore[no-untyped-def]
    count = session.scalar(select(func.count()).select_from(LessonInstance)
                           .where(LessonInstance.series_id == series.id)) or 0
    main = session.get(Classroom, series.main_classroom_id)
    teacher = session.get(User, series.main_teacher_id)
    creator = session.get(User, series.created_by_id)
    decision = None
    if series.status in (SeriesStatus.rejected, SeriesStatus.cancelled):
        action = "reject" if series.status is SeriesStatus.rejected else "cancel"
        decision = session.scalars(select(AuditEntry).where(
            AuditEntry.entity == "series", AuditEntry.entity_id == series.id, AuditEntry.action == action)
            .order_by(AuditEntry.id.desc()).limit(1)).first()
    decider = session.get(User, decision.actor_id) if decision is not None and decision.actor_id else None
    receivers = []
    for r in series.receivers:
        room = session.get(Classroom, r.classroom_id)
        receivers.append(ReceiverOut(
            classroom_id=r.classroom_id, mode=r.mode, assistant_id=r.assistant_id,
            receiving_period=r.receiving_period, classroom_name=room.name if room else "",
            school_name=_school_name(session, room.school_id) if room else ""))
    return SeriesOut(
        **{k: getattr(series, k) for k in SeriesOut.model_fields if k in LessonSeries.__table__.columns},
        receivers=receivers,
        participant_ids=[p.user_id for p in series.participants],
        instance_count=count,
        main_teacher_name=teacher.display_name if teacher else "",
        main_classroom_name=main.name if main else "",
        main_school_name=_school_name(session, main.school_id) if main else "",
        created_by_name=creator.display_name if creator else "",
        can_manage=scope is not None and main is not None and _manages(session, scope, main.school_id),
        decision_reason=decision.reason if decision is not None else None,
        decided_at=decision.at if decision is not None else None,
        decided_by_name=decider.display_name if decider is not None else None,
    )


def _school_name(session, school_id: int) -> str:  # type: ignore[no-untyped-def]
    school = session.get(School, school_id)
    return school.name if school else ""


def _manages(session, scope, school_id: int) -> bool:  # type: ignore[no-untyped-def]
    try:
        require_school_admin(session, scope, school_id)
    except SchedulerError:
        return False
    return True


def _main_visible(scope) -> object:  # type: ignore[no-untyped-def]
    return exists(
        select(1).select_from(Classroom).join(School, School.id == Classroom.school_id)
        .join(Region, Region.id == School.region_id)
        .where(Classroom.id == LessonSeries.main_classroom_id, school_clause(scope))
    )


def _visible(scope) -> object:  # type: ignore[no-untyped-def]
    main_visible = _main_visible(scope)
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
    manageable: Annotated[bool, Query(description="只列出调用者可审批、驳回或停课的课程（主讲学校在其管理范围内）")] = False,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> SeriesPage:
    stmt = select(LessonSeries).where(_visible(scope))
    if manageable:
        stmt = stmt.where(_main_visible(scope) if scope.is_admin else false())
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
    return SeriesPage(data=[_out(session, s, scope) for s in rows], count=total)


@router.post("/check", response_model=ConflictCheckOut)
def check_series(body: SeriesIn, session: SessionDep, user: CurrentUser, scope: StaffScope) -> ConflictCheckOut:
    """Dry run for the booking dialog: every rule of ``POST /series`` (it runs the same code, writing nothing),
    so ``ok`` is exactly whether booking would succeed; when not, ``code``, ``status``, ``message`` and the
    conflicts are what booking would answer."""
    try:
        prepared = bookings.prepare_series(session, body.to_spec(), actor=user, scope=scope)
    except SchedulerError as exc:
        payload = exc.payload()
        return ConflictCheckOut(ok=False, instances=0, conflicts=payload.get("conflicts", []),
                                conflict_groups=payload.get("conflict_groups", []), message=exc.message,
                                code=exc.code, status=status_for(exc), field=exc.field)
    note = "（教师申请，需管理员审批）" if prepared.status is SeriesStatus.pending else ""
    return ConflictCheckOut(ok=True, instances=len(prepared.planned), conflicts=[],
                            message=f"没有冲突，可以排课：共 {len(prepared.planned)} 节{note}")


@router.post("", response_model=SeriesOut, status_code=201)
def create_series(body: SeriesIn, session: SessionDep, user: CurrentUser, scope: ScopeDep) -> SeriesOut:
    series = bookings.create_series(session, body.to_spec(), actor=user, scope=scope)
    return _out(session, series, scope)


@router.get("/{series_id}", response_model=SeriesOut)
def get_series(series_id: int, session: SessionDep, scope: StaffScope) -> SeriesOut:
    return _out(session, _get_visible(session, scope, series_id), scope)


@router.post("/{series_id}/approve", response_model=SeriesOut)
def approve(series_id: int, body: ReasonIn, session: SessionDep, user: CurrentUser, scope: ScopeDep) -> SeriesOut:
    series = bookings.approve_series(session, series_id, actor=user, scope=scope, reason=body.reason)
    return _out(session, series, scope)


@router.put("/{series_id}/stream-from", response_model=SeriesOut)
def put_stream_from(series_id: int, body: StreamFromIn, session: SessionDep, user: CurrentUser,
                    scope: StaffScope) -> SeriesOut:
    """When home students of a 名校网络课堂 watch its HLS stream: its main teacher or a school admin decides."""
    series = bookings.set_stream_from(session, series_id, body.stream_from, actor=user, scope=scope)
    return _out(session, series, scope)


@router.post("/{series_id}/reject", response_model=SeriesOut)
def reject(series_id: int, body: ReasonIn, session: SessionDep, user: CurrentUser, scope: ScopeDep) -> SeriesOut:
    series = bookings.reject_series(session, series_id, actor=user, scope=scope, reason=body.reason)
    return _out(session, series, scope)


@router.post("/{series_id}/cancel", response_model=SeriesOut)
def cancel(series_id: int, body: ReasonIn, session: SessionDep, user: CurrentUser, scope: ScopeDep) -> SeriesOut:
    series = bookings.cancel_series(session, series_id, actor=user, scope=scope, reason=body.reason)
    return _out(session, series, scope)
