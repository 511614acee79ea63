"""Booking lesson series and changing single lessons (调课, 顺延, 停课, 代课).

Every operation follows one shape: plan the slots, check them against
themselves and the database, then write instances and occupancy rows inside a
savepoint.  The database's no-overlap rule turns a lost race into a
``Conflict`` as well, so two concurrent bookings of one slot never both commit.
A series is booked whole or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from scheduler import audit, clock
from scheduler.access import Scope, instance_clause, require_school_admin
from scheduler.conflicts import (
    Slot,
    clashes_within,
    describe_item,
    described,
    find_conflicts,
    internal_conflict_items,
)
from scheduler.errors import BellsMismatch, Conflict, ConflictItem, Forbidden, Invalid, InvalidState, NotFound
from scheduler.models import (
    Classroom,
    InstanceStatus,
    LessonInstance,
    LessonKind,
    LessonSeries,
    Occupancy,
    Pairing,
    Period,
    PeriodScheme,
    ReceiverMode,
    ResourceType,
    Role,
    School,
    SeriesParticipant,
    SeriesReceiver,
    SeriesStatus,
    User,
    WeekPattern,
)
from scheduler.periods import containing_period, periods_in, scheme_for, span
from scheduler.terms import TermCalendar, load_calendar, meeting_days, timetable_weekday, week_matches, week_of


@dataclass(frozen=True)
class ReceiverSpec:
    classroom_id: int
    mode: ReceiverMode = ReceiverMode.interactive
    assistant_id: int | None = None
    receiving_period: int | None = None


@dataclass(frozen=True)
class SeriesSpec:
    """What a clerk or teacher asks for when booking a weekly lesson."""

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
    week_from: int = 1
    week_to: int = 99
    week_pattern: WeekPattern = WeekPattern.every
    skip_weeks: tuple[int, ...] = ()
    """Teaching weeks without a lesson (the slot finder's weeks in which the slot is taken)."""
    receivers: tuple[ReceiverSpec, ...] = ()
    participant_ids: tuple[int, ...] = ()
    recording: bool | None = None
    """None: on for famous-school lessons, off for the others."""
    pairing_override_reason: str | None = None
    stream_from: int | None = None
    """Famous-school lessons only: see ``LessonSeries.stream_from``."""


@dataclass
class PlannedInstance:
    day: date
    starts_at: datetime
    ends_at: datetime
    period_from: int
    period_to: int
    teacher_id: int
    slots: list[Slot] = field(default_factory=list)


@dataclass
class _Receiver:
    classroom: Classroom
    school: School
    scheme: PeriodScheme
    receiving_period: int | None
    assistant_id: int | None


class SeriesContext:
    """Everything needed to place a series' lesson on a date, loaded once."""

    def __init__(self, session: Session, *, term_id: int, main_classroom_id: int,
                 receivers: Sequence[ReceiverSpec]) -> None:
        self.term, self.calendar = load_calendar(session, term_id)
        main = session.get(Classroom, main_classroom_id)
        if main is None:
            raise NotFound(f"主讲教室 #{main_classroom_id} 不存在", field="main_classroom")
        self.main_classroom = main
        self.main_school = session.get(School, main.school_id)  # type: ignore[assignment]
        self.main_scheme = scheme_for(session, main.school_id, term_id)
        self.receivers: list[_Receiver] = []
        seen: set[int] = set()
        for r in receivers:
            room = session.get(Classroom, r.classroom_id)
            if room is None:
                raise NotFound(f"接收教室 #{r.classroom_id} 不存在", field="receivers")
            school = session.get(School, room.school_id)
            assert school is not None
            if r.classroom_id in seen:
                raise Invalid(f"接收教室“{room.name}”（{school.name}）重复", field="receivers")
            seen.add(r.classroom_id)
            if room.id == main.id:
                raise Invalid("主讲教室不能同时作为接收教室", field="receivers")
            self.receivers.append(_Receiver(room, school, scheme_for(session, room.school_id, term_id),
                                            r.receiving_period, r.assistant_id))

    def place(self, day: date, period_from: int, period_to: int, teacher_id: int) -> PlannedInstance:
        """Times and held resources of one lesson on ``day`` in the main school's periods."""
        start_t, end_t = span(self.main_scheme, period_from, period_to)
        starts_at, ends_at = datetime.combine(day, start_t), datetime.combine(day, end_t)
        slots = [
            Slot(ResourceType.teacher, teacher_id, starts_at, ends_at),
            Slot(ResourceType.classroom, self.main_classroom.id, starts_at, ends_at),
        ]
        main_periods = periods_in(self.main_scheme, period_from, period_to)
        unfit = [r for r in self.receivers if r.receiving_period is None and self._uncovered(r, main_periods)]
        if unfit:
            raise self._bells_mismatch(unfit, main_periods, day, starts_at, ends_at, period_from, period_to)
        for r in self.receivers:
            r_start, r_end = self._receiving_window(r, period_from, period_to, start_t, end_t)
            window = (datetime.combine(day, min(r_start, start_t)), datetime.combine(day, max(r_end, end_t)))
            slots.append(Slot(ResourceType.classroom, r.classroom.id, *window))
            if r.assistant_id is not None:
                slots.append(Slot(ResourceType.teacher, r.assistant_id, *window))
        return PlannedInstance(day, starts_at, ends_at, period_from, period_to, teacher_id, slots)

    @staticmethod
    def _uncovered(r: _Receiver, main_periods: list[Period]) -> list[Period]:
        """The main school's periods that no period of the receiving school's bells contains."""
        return [p for p in main_periods if containing_period(r.scheme, p.start_time, p.end_time) is None]

    def _bells_mismatch(self, unfit: list[_Receiver], main_periods: list[Period], day: date, starts_at: datetime,
                        ends_at: datetime, period_from: int, period_to: int) -> BellsMismatch:
        items = []
        for r in unfit:
            missing = "、".join(f"{p.start_time:%H:%M}–{p.end_time:%H:%M}" for p in self._uncovered(r, main_periods))
            message = (f"接收学校“{r.school.name}”的作息时间中没有包含 {missing} 的节次，"
                       f"两校铃声不一致，请为接收教室“{r.classroom.name}”（{r.school.name}）指定接收节次")
            items.append(ConflictItem(
                resource="classroom", resource_id=r.classroom.id, resource_name=r.classroom.name, day=day,
                start=starts_at, end=ends_at, message=message, kind="bells", school_name=r.school.name,
                role="receiving", period_from=period_from, period_to=period_to,
                week=week_of(self.calendar, day)))
        return BellsMismatch("；".join(i.message for i in items), items)

    def _receiving_window(self, r: _Receiver, period_from: int, period_to: int,
                          start_t: time, end_t: time) -> tuple[time, time]:
        if r.receiving_period is not None:
            count = period_to - period_from
            return span(r.scheme, r.receiving_period, r.receiving_period + count)
        return start_t, end_t


# ---------------------------------------------------------------- checks


def _check_slots(session: Session, planned: Sequence[PlannedInstance], ignore: Sequence[int] = (),
                 scope: Scope | None = None) -> None:
    """A ``Conflict`` if ``planned`` holds a resource twice or one already booked; with ``scope``, its clashes
    as that caller may read them (``_as_seen_by``)."""
    slots = [s for p in planned for s in p.slots]
    internal = clashes_within(slots)
    if internal:
        raise Conflict(internal_conflict_items(session, internal))
    items = find_conflicts(session, slots, ignore_instance_ids=ignore)
    if items:
        items = described(session, items)
        raise Conflict(list(_as_seen_by(session, scope, items, planned)) if scope is not None else items)


def _check_teacher(session: Session, user_id: int, what: str = "主讲教师", field: str = "main_teacher") -> User:
    user = session.get(User, user_id)
    if user is None or not user.is_active:
        raise NotFound(f"{what} #{user_id} 不存在", field=field)
    if user.role is not Role.teacher:
        raise Invalid(f"“{user.display_name}”不是教师账号，不能作为{what}", field=field)
    return user


def _pairing_gaps(session: Session, spec: SeriesSpec, ctx: SeriesContext) -> list[str]:
    """Receiving schools with no active pairing to the main school for this term and subject."""
    gaps = []
    for r in ctx.receivers:
        rows = session.scalars(
            select(Pairing).where(
                Pairing.active.is_(True),
                Pairing.urban_school_id.in_([ctx.main_school.id, r.school.id]),
                Pairing.rural_school_id.in_([ctx.main_school.id, r.school.id]),
            )
        ).all()
        ok = any(
            {p.urban_school_id, p.rural_school_id} == {ctx.main_school.id, r.school.id}
            and (p.term_id is None or p.term_id == spec.term_id)
            and (not p.subjects or spec.subject in p.subjects)
            and (p.urban_classroom_id in (None, ctx.main_classroom.id, r.classroom.id))
            and (p.rural_classroom_id in (None, ctx.main_classroom.id, r.classroom.id))
            for p in rows
        )
        if not ok:
            gaps.append(r.school.name)
    return gaps


def _validate(session: Session, spec: SeriesSpec, ctx: SeriesContext, actor: User) -> None:
    if not spec.title.strip():
        raise Invalid("课程名称不能为空", field="title")
    _check_teacher(session, spec.main_teacher_id)
    for r in spec.receivers:
        if r.assistant_id is not None:
            _check_teacher(session, r.assistant_id, "助教", "receivers")
    if spec.kind is LessonKind.dedicated and not spec.receivers:
        raise Invalid("专递课堂至少需要一个接收教室", field="receivers")
    if spec.kind is LessonKind.famous_school and not (spec.receivers or spec.participant_ids):
        raise Invalid("名校网络课堂需要接收教室或在家学习的学生", field="receivers")
    for uid in spec.participant_ids:
        u = session.get(User, uid)
        if u is None:
            raise NotFound(f"参与人 #{uid} 不存在", field="participants")
        expected = Role.student if spec.kind is LessonKind.famous_school else Role.teacher
        if spec.kind is LessonKind.dedicated or u.role is not expected:
            raise Invalid(f"“{u.display_name}”不能作为该类课程的参与人", field="participants")
    if spec.kind is LessonKind.dedicated:
        gaps = _pairing_gaps(session, spec, ctx)
        if gaps:
            missing = (f"主讲学校“{ctx.main_school.name}”与接收学校{'、'.join(f'“{g}”' for g in gaps)}"
                       f"之间没有“{spec.subject}”学科的结对关系")
            if actor.role is not Role.admin:
                raise Invalid(f"{missing}，专递课堂需要结对", field="receivers")
            if not (spec.pairing_override_reason or "").strip():
                raise Invalid(f"{missing}；管理员如需越过结对限制，请填写原因", field="receivers")
    if spec.week_to < spec.week_from:
        raise Invalid("结束周不能早于开始周", field="weeks")
    if any(not spec.week_from <= w <= spec.week_to for w in spec.skip_weeks):
        raise Invalid("跳过的周次应在上课周次范围内", field="skip_weeks")
    _check_stream_from(spec.kind, spec.stream_from)


STREAM_FROM_MAX = 100_000


def _check_stream_from(kind: LessonKind, stream_from: int | None) -> None:
    if stream_from is None:
        return
    if kind is not LessonKind.famous_school:
        raise Invalid("只有名校网络课堂可以让在家学生观看直播流", field="stream_from")
    if not 0 <= stream_from <= STREAM_FROM_MAX:
        raise Invalid(f"直播流人数门槛应在 0 到 {STREAM_FROM_MAX} 之间", field="stream_from")


def plan_series(session: Session, spec: SeriesSpec, ctx: SeriesContext | None = None, *,
                not_before: date | None = None, days: list[date] | None = None) -> list[PlannedInstance]:
    """The lessons a series would have: its meeting days from ``not_before`` (default: today) on.

    A series booked in the middle of a term starts today; it never creates
    lessons in the past, which the lifecycle would only mark as missed.
    ``days``: the spec's ``meeting_days`` when the caller has them already (the slot finder plans
    every period of one weekday).
    """
    ctx = ctx or SeriesContext(session, term_id=spec.term_id, main_classroom_id=spec.main_classroom_id,
                               receivers=spec.receivers)
    first = not_before if not_before is not None else clock.now().date()
    if days is None:
        days = meeting_days(ctx.calendar, spec.weekday, spec.week_from, spec.week_to, spec.week_pattern,
                            skip=spec.skip_weeks)
    if not days:
        raise Invalid("该上课时间在学期内没有任何上课日（可能均为节假日或超出学期周次）", field="weeks")
    days = [d for d in days if d >= first]
    if not days:
        raise Invalid(f"该上课时间在 {first:%Y-%m-%d} 之后的本学期剩余时间内没有上课日", field="weeks")
    return [ctx.place(d, spec.period_from, spec.period_to, spec.main_teacher_id) for d in days]


# ---------------------------------------------------------------- writing


def _write_instances(session: Session, series: LessonSeries, planned: Sequence[PlannedInstance],
                     rescheduled_from_id: int | None = None, substitute: bool = False) -> list[LessonInstance]:
    """Insert instances and occupancy inside a savepoint; a lost race becomes a ``Conflict``."""
    instances: list[LessonInstance] = []
    try:
        with session.begin_nested():
            for p in planned:
                inst = LessonInstance(
                    series_id=series.id, day=p.day, starts_at=p.starts_at, ends_at=p.ends_at,
                    period_from=p.period_from, period_to=p.period_to, status=InstanceStatus.scheduled,
                    main_classroom_id=series.main_classroom_id, teacher_id=p.teacher_id,
                    substitute=substitute, rescheduled_from_id=rescheduled_from_id,
                )
                session.add(inst)
                instances.append(inst)
            session.flush()
            # One executemany for all occupancy rows: nothing needs their ids back.
            session.execute(insert(Occupancy), [
                {"instance_id": inst.id, "resource_type": s.resource_type, "resource_id": s.resource_id,
                 "starts_at": s.starts_at, "ends_at": s.ends_at}
                for inst, p in zip(instances, planned) for s in p.slots
            ])
    except IntegrityError as exc:
        if "overlap" not in str(exc.orig).lower() and "occupancy_no_overlap" not in str(exc.orig):
            raise
        # Someone booked a clashing slot between our check and our insert.
        items = described(session, find_conflicts(session, [s for p in planned for s in p.slots]))
        raise Conflict(items or [_race_item(planned[0])]) from exc
    return instances


def _race_item(p: PlannedInstance) -> ConflictItem:
    return ConflictItem(resource="classroom", resource_id=None, resource_name="", day=p.day,
                        start=p.starts_at, end=p.ends_at, kind="race",
                        message=f"{p.starts_at:%Y-%m-%d %H:%M} 的时段刚刚被其他排课占用，请刷新后重试")


def _release(session: Session, instance_id: int) -> None:
    session.execute(delete(Occupancy).where(Occupancy.instance_id == instance_id))


def _cancel(session: Session, inst: LessonInstance, reason: str) -> None:
    """停课 one lesson: cancelled, with its reason, and its slots free again."""
    _release(session, inst.id)
    inst.status = InstanceStatus.cancelled
    inst.cancel_reason = reason


def _require_main_school_admin(session: Session, scope: Scope, main_classroom_id: int) -> None:
    main = session.get(Classroom, main_classroom_id)
    assert main is not None
    require_school_admin(session, scope, main.school_id)


def _series_row(spec: SeriesSpec, actor: User, status: SeriesStatus) -> LessonSeries:
    recording = spec.recording if spec.recording is not None else spec.kind is LessonKind.famous_school
    series = LessonSeries(
        kind=spec.kind, title=spec.title.strip(), subject=spec.subject, grade=spec.grade, term_id=spec.term_id,
        main_classroom_id=spec.main_classroom_id, main_teacher_id=spec.main_teacher_id, weekday=spec.weekday,
        period_from=spec.period_from, period_to=spec.period_to, week_from=spec.week_from, week_to=spec.week_to,
        week_pattern=spec.week_pattern, skip_weeks=sorted(set(spec.skip_weeks)), status=status, recording=recording,
        stream_from=spec.stream_from,
        pairing_override_reason=(spec.pairing_override_reason or None) if actor.role is Role.admin else None,
        created_by_id=actor.id, approved_by_id=actor.id if status is SeriesStatus.approved else None,
        created_at=clock.now(),
    )
    series.receivers = [
        SeriesReceiver(classroom_id=r.classroom_id, mode=r.mode, assistant_id=r.assistant_id,
                       receiving_period=r.receiving_period)
        for r in spec.receivers
    ]
    series.participants = [SeriesParticipant(user_id=u) for u in dict.fromkeys(spec.participant_ids)]
    return series


def _spec_of(series: LessonSeries) -> SeriesSpec:
    return SeriesSpec(
        kind=series.kind, title=series.title, subject=series.subject, grade=series.grade, term_id=series.term_id,
        main_classroom_id=series.main_classroom_id, main_teacher_id=series.main_teacher_id, weekday=series.weekday,
        period_from=series.period_from, period_to=series.period_to, week_from=series.week_from,
        week_to=series.week_to, week_pattern=series.week_pattern, skip_weeks=tuple(series.skip_weeks or ()),
        receivers=tuple(ReceiverSpec(r.classroom_id, r.mode, r.assistant_id, r.receiving_period)
                        for r in series.receivers),
        participant_ids=tuple(p.user_id for p in series.participants),
        recording=series.recording, pairing_override_reason=series.pairing_override_reason,
        stream_from=series.stream_from,
    )


def _context_for(session: Session, series: LessonSeries) -> SeriesContext:
    return SeriesContext(session, term_id=series.term_id, main_classroom_id=series.main_classroom_id,
                         receivers=_spec_of(series).receivers)


# ---------------------------------------------------------------- series


@dataclass
class PreparedSeries:
    """A series that passed every booking rule: what booking it would write."""

    spec: SeriesSpec
    status: SeriesStatus
    planned: list[PlannedInstance]


def prepare_series(session: Session, spec: SeriesSpec, *, actor: User, scope: Scope,
                   not_before: date | None = None) -> PreparedSeries:
    """Every rule of booking a series, writing nothing: who may book it, the input, pairing, bells, holidays
    and conflicts.  ``create_series`` books what this returns, and the booking dialog's check calls this
    alone, so a check and a booking always give the same verdict.

    An admin of the main school books at once; a teacher's request for themselves waits, as ``pending``,
    for an admin of the main school to approve it.
    """
    ctx = SeriesContext(session, term_id=spec.term_id, main_classroom_id=spec.main_classroom_id,
                        receivers=spec.receivers)
    status = booking_status(session, ctx.main_school.id, spec.main_teacher_id, actor=actor, scope=scope)
    return PreparedSeries(spec, status, _checked_plan(session, spec, ctx, actor, not_before, scope=scope))


def booking_status(session: Session, main_school_id: int, teacher_id: int, *, actor: User,
                   scope: Scope) -> SeriesStatus:
    """Who may book a series in a main school's classroom for a teacher: an admin of that school (or above)
    books it (``approved``); a teacher of that school requests it for themselves (``pending``); anyone else
    gets ``Forbidden``."""
    if actor.role is Role.admin:
        require_school_admin(session, scope, main_school_id)
        return SeriesStatus.approved
    if actor.role is Role.teacher:
        if actor.school_id != main_school_id:
            raise Forbidden("只能为本校教室申请排课", field="main_classroom")
        if teacher_id != actor.id:
            raise Forbidden("教师只能为自己申请排课，请联系管理员为其他教师排课", field="main_teacher")
        return SeriesStatus.pending
    raise Forbidden("当前角色不能排课")


def create_series(session: Session, spec: SeriesSpec, *, actor: User, scope: Scope,
                  not_before: date | None = None) -> LessonSeries:
    """Book a weekly series (all instances or none), or file a teacher's request: see ``prepare_series``."""
    prepared = prepare_series(session, spec, actor=actor, scope=scope, not_before=not_before)
    approved = prepared.status is SeriesStatus.approved
    return _write_series(session, prepared, actor=actor, action="book" if approved else "request",
                         reason=spec.pairing_override_reason or "")


def book_agreed_series(session: Session, spec: SeriesSpec, *, actor: User, reason: str,
                       action: str = "book", not_before: date | None = None) -> LessonSeries:
    """Book a series both sides already agreed to (an accepted demand-order offer).

    The caller has checked who may do this; every booking rule (pairing,
    bells, holidays, conflicts) still applies.
    """
    ctx = SeriesContext(session, term_id=spec.term_id, main_classroom_id=spec.main_classroom_id,
                        receivers=spec.receivers)
    prepared = PreparedSeries(spec, SeriesStatus.approved, _checked_plan(session, spec, ctx, actor, not_before))
    return _write_series(session, prepared, actor=actor, action=action, reason=reason)


def _checked_plan(session: Session, spec: SeriesSpec, ctx: SeriesContext, actor: User,
                  not_before: date | None, *, scope: Scope | None = None) -> list[PlannedInstance]:
    """``scope``: the caller's, when a refusal must show only what they may read (``_as_seen_by``)."""
    _validate(session, spec, ctx, actor)
    planned = plan_series(session, spec, ctx, not_before=not_before)
    try:
        _check_slots(session, planned, scope=scope)
    except Conflict as exc:
        if all(i.week is not None for i in exc.items):
            raise
        # clashes within the booking itself: their teaching weeks, for the weekly summary
        raise Conflict([i if i.week is not None else replace(i, week=week_of(ctx.calendar, i.day))
                        for i in exc.items], field=exc.field or "periods") from None
    return planned


def _as_seen_by(session: Session, scope: Scope, items: Sequence[ConflictItem],
                planned: Sequence[PlannedInstance]) -> Sequence[ConflictItem]:
    """A refusal's clashes as the caller may read them.

    A clash with a lesson the caller may not see (``access.instance_clause``: another school's
    timetable, a receiving classroom's or an assistant's other lessons) says only that the resource
    is taken during the requested time — no title, lesson, series, teacher or periods, and the
    requested slot's times rather than the other lesson's.  ``items`` itself when every clash is visible.
    """
    ids = {i.instance_id for i in items if i.kind == "clash" and i.instance_id is not None}
    if not ids:
        return items
    visible = set(session.scalars(
        select(LessonInstance.id).join(LessonSeries, LessonSeries.id == LessonInstance.series_id)
        .where(LessonInstance.id.in_(ids), instance_clause(scope))))
    if visible >= ids:
        return items
    out = []
    for i in items:
        if i.kind != "clash" or i.instance_id is None or i.instance_id in visible:
            out.append(i)
            continue
        mine = next((s for p in planned for s in p.slots if s.resource_type.value == i.resource
                     and s.resource_id == i.resource_id and s.starts_at < i.end and i.start < s.ends_at), None)
        start, end = (mine.starts_at, mine.ends_at) if mine is not None else (i.start, i.end)
        hidden = replace(i, instance_id=None, lesson_title=None, teacher_name=None, series_id=None, role=None,
                         period_from=None, period_to=None, start=start, end=end, day=start.date())
        out.append(replace(hidden, message=describe_item(hidden)))
    return out


def _write_series(session: Session, prepared: PreparedSeries, *, actor: User, action: str,
                  reason: str) -> LessonSeries:
    spec, status, planned = prepared.spec, prepared.status, prepared.planned
    series = _series_row(spec, actor, status)
    session.add(series)
    session.flush()
    if status is SeriesStatus.approved:
        _write_instances(session, series, planned)
    audit.record(session, actor_id=actor.id, entity="series", entity_id=series.id, action=action, reason=reason,
                 details={"instances": len(planned) if status is SeriesStatus.approved else 0,
                          "kind": spec.kind.value, "pairing_override": bool(series.pairing_override_reason)})
    return series


def _managed_series(session: Session, series_id: int, scope: Scope) -> LessonSeries:
    """The series, if the caller is an admin of its main school (or above it)."""
    series = session.get(LessonSeries, series_id)
    if series is None:
        raise NotFound(f"课程 #{series_id} 不存在")
    _require_main_school_admin(session, scope, series.main_classroom_id)
    return series


def approve_series(session: Session, series_id: int, *, actor: User, scope: Scope, reason: str = "",
                   not_before: date | None = None) -> LessonSeries:
    series = _managed_series(session, series_id, scope)
    if series.status is not SeriesStatus.pending:
        raise InvalidState("只能审批待审批的排课申请")
    planned = plan_series(session, _spec_of(series), not_before=not_before)
    _check_slots(session, planned, scope=scope)
    _write_instances(session, series, planned)
    series.status = SeriesStatus.approved
    series.approved_by_id = actor.id
    audit.record(session, actor_id=actor.id, entity="series", entity_id=series.id, action="approve",
                 reason=reason, details={"instances": len(planned)})
    return series


def set_stream_from(session: Session, series_id: int, stream_from: int | None, *, actor: User,
                    scope: Scope) -> LessonSeries:
    """The teacher's switch-over of a 名校网络课堂: from how many home students on, those not on stage
    watch the HLS stream (None: never, 0: always).  The series' main teacher or an admin of its main
    school (or above) decides; it applies from the next join on, including lessons already live."""
    series = session.get(LessonSeries, series_id)
    if series is None:
        raise NotFound(f"课程 #{series_id} 不存在")
    if actor.id != series.main_teacher_id:
        _require_main_school_admin(session, scope, series.main_classroom_id)
    _check_stream_from(series.kind, stream_from)
    if series.stream_from != stream_from:
        audit.record(session, actor_id=actor.id, entity="series", entity_id=series.id, action="stream_from",
                     details={"from": series.stream_from, "to": stream_from})
        series.stream_from = stream_from
    return series


def reject_series(session: Session, series_id: int, *, actor: User, scope: Scope, reason: str) -> LessonSeries:
    series = _managed_series(session, series_id, scope)
    if series.status is not SeriesStatus.pending:
        raise InvalidState("只能驳回待审批的排课申请")
    if not reason.strip():
        raise Invalid("驳回时请填写原因")
    series.status = SeriesStatus.rejected
    audit.record(session, actor_id=actor.id, entity="series", entity_id=series.id, action="reject", reason=reason)
    return series


def cancel_series(session: Session, series_id: int, *, actor: User, scope: Scope, reason: str) -> LessonSeries:
    """Cancel every future scheduled lesson of a series (停课 for the rest of the term)."""
    series = _managed_series(session, series_id, scope)
    if series.status not in (SeriesStatus.pending, SeriesStatus.approved):
        raise InvalidState("该课程已驳回或已停课，不能再停课")
    if not reason.strip():
        raise Invalid("停课时请填写原因")
    now = clock.now()
    future = session.scalars(select(LessonInstance).where(
        LessonInstance.series_id == series.id, LessonInstance.status == InstanceStatus.scheduled,
        LessonInstance.starts_at > now)).all()
    for inst in future:
        _cancel(session, inst, reason)
    series.status = SeriesStatus.cancelled
    audit.record(session, actor_id=actor.id, entity="series", entity_id=series.id, action="cancel",
                 reason=reason, details={"instances_cancelled": len(future)})
    return series


# ---------------------------------------------------------------- one lesson


def _changeable(session: Session, instance_id: int, scope: Scope) -> LessonInstance:
    inst = session.get(LessonInstance, instance_id)
    if inst is None:
        raise NotFound(f"课次 #{instance_id} 不存在")
    _require_main_school_admin(session, scope, inst.main_classroom_id)
    if inst.status is not InstanceStatus.scheduled:
        raise InvalidState(f"该课次状态为“{_STATUS_ZH[inst.status]}”，只能调整尚未开始的课次")
    return inst


_STATUS_ZH = {
    InstanceStatus.scheduled: "待上课", InstanceStatus.live: "上课中", InstanceStatus.held: "已上课",
    InstanceStatus.missed: "未开课", InstanceStatus.cancelled: "已停课",
}


def _holiday_item(cal: TermCalendar, day: date, start: datetime, end: datetime) -> ConflictItem:
    why = "不在学期内" if not cal.contains(day) else "是节假日"
    return ConflictItem(resource="holiday", resource_id=None, resource_name="", day=day, start=start, end=end,
                        kind="holiday",
                        message=f"{day:%Y-%m-%d} {why}，不能安排课程")


def reschedule_instance(
    session: Session, instance_id: int, *, day: date, period_from: int | None = None,
    period_to: int | None = None, actor: User, scope: Scope, reason: str,
) -> LessonInstance:
    """调课: move one lesson to another date and period. The old instance is
    cancelled and linked from the new one."""
    inst = _changeable(session, instance_id, scope)
    if not reason.strip():
        raise Invalid("调课时请填写原因")
    series = inst.series
    ctx = _context_for(session, series)
    pf = period_from if period_from is not None else inst.period_from
    pt = period_to if period_to is not None else pf + (inst.period_to - inst.period_from)
    planned = ctx.place(day, pf, pt, inst.teacher_id)
    if planned.starts_at <= clock.now():
        raise Invalid(f"不能调课到已经过去的时间（{planned.starts_at:%Y-%m-%d %H:%M}）", field="day")
    if timetable_weekday(ctx.calendar, day) is None:
        raise Conflict([_holiday_item(ctx.calendar, day, planned.starts_at, planned.ends_at)])
    _check_slots(session, [planned], ignore=[inst.id], scope=scope)
    return _move(session, inst, planned, actor, "reschedule", reason)


def _move(session: Session, inst: LessonInstance, planned: PlannedInstance, actor: User,
          action: str, reason: str) -> LessonInstance:
    _cancel(session, inst, f"调课至 {planned.starts_at:%Y-%m-%d %H:%M}：{reason}")
    session.flush()
    (new,) = _write_instances(session, inst.series, [planned], rescheduled_from_id=inst.id,
                              substitute=inst.substitute)
    audit.record(session, actor_id=actor.id, entity="instance", entity_id=inst.id, action=action, reason=reason,
                 details={"from": inst.starts_at.isoformat(), "to": planned.starts_at.isoformat(), "new_id": new.id})
    return new


def postpone_instance(session: Session, instance_id: int, *, actor: User, scope: Scope, reason: str) -> LessonInstance:
    """顺延: move one lesson to the series' next regular slot that is free, up to the end of term."""
    inst = _changeable(session, instance_id, scope)
    if not reason.strip():
        raise Invalid("顺延时请填写原因")
    series = inst.series
    ctx = _context_for(session, series)
    for day in meeting_days(ctx.calendar, series.weekday, 1, 99, series.week_pattern, after=inst.day):
        planned = ctx.place(day, inst.period_from, inst.period_to, inst.teacher_id)
        try:
            _check_slots(session, [planned], ignore=[inst.id])
        except Conflict:
            continue
        return _move(session, inst, planned, actor, "postpone", reason)
    raise Conflict([ConflictItem(resource="term", resource_id=series.term_id, resource_name="", day=inst.day,
                                 start=inst.starts_at, end=inst.ends_at, kind="term",
                                 message="本学期剩余时间内没有可顺延的空闲时段")])


def cancel_instance(session: Session, instance_id: int, *, actor: User, scope: Scope, reason: str) -> LessonInstance:
    """停课: cancel one lesson and free its slots."""
    inst = _changeable(session, instance_id, scope)
    if not reason.strip():
        raise Invalid("停课时请填写原因")
    _cancel(session, inst, reason)
    audit.record(session, actor_id=actor.id, entity="instance", entity_id=inst.id, action="cancel", reason=reason)
    return inst


def substitute_instance(
    session: Session, instance_id: int, *, teacher_id: int, actor: User, scope: Scope, reason: str
) -> LessonInstance:
    """代课: another teacher takes one lesson; checked for that teacher's other lessons."""
    inst = _changeable(session, instance_id, scope)
    if not reason.strip():
        raise Invalid("代课时请填写原因")
    teacher = _check_teacher(session, teacher_id, "代课教师")
    if teacher_id == inst.teacher_id:
        raise Invalid("代课教师与当前授课教师相同")
    slot = Slot(ResourceType.teacher, teacher_id, inst.starts_at, inst.ends_at)
    _check_slots(session, [PlannedInstance(inst.day, inst.starts_at, inst.ends_at, inst.period_from, inst.period_to,
                                           teacher_id, [slot])], ignore=[inst.id], scope=scope)
    previous = inst.teacher_id
    try:
        with session.begin_nested():
            row = session.scalar(select(Occupancy).where(
                Occupancy.instance_id == inst.id, Occupancy.resource_type == ResourceType.teacher,
                Occupancy.resource_id == previous))
            if row is not None:
                row.resource_id = teacher_id
            else:
                session.add(Occupancy(instance_id=inst.id, resource_type=ResourceType.teacher,
                                      resource_id=teacher_id, starts_at=inst.starts_at, ends_at=inst.ends_at))
            session.flush()
    except IntegrityError as exc:
        items = described(session, find_conflicts(session, [slot], ignore_instance_ids=[inst.id]))
        raise Conflict(items or [_race_item(PlannedInstance(inst.day, inst.starts_at, inst.ends_at,
                                                            inst.period_from, inst.period_to, teacher_id))]) from exc
    inst.teacher_id = teacher_id
    inst.substitute = teacher_id != inst.series.main_teacher_id
    audit.record(session, actor_id=actor.id, entity="instance", entity_id=inst.id, action="substitute",
                 reason=reason, details={"from_teacher": previous, "to_teacher": teacher_id,
                                         "teacher_name": teacher.display_name})
    return inst


# ---------------------------------------------------------------- calendar changes


@dataclass
class DayChange:
    """What a new holiday or make-up day did to the booked lessons of that date."""

    cancelled: list[int] = field(default_factory=list)
    added: list[int] = field(default_factory=list)
    not_added: list[ConflictItem] = field(default_factory=list)
    """Lessons the make-up day should have carried but could not (a resource was taken)."""


def _cancel_day(session: Session, term_id: int, day: date, *, keep_weekday: int | None, actor_id: int | None,
                reason: str) -> list[int]:
    rows = session.scalars(
        select(LessonInstance).join(LessonSeries, LessonSeries.id == LessonInstance.series_id)
        .where(LessonSeries.term_id == term_id, LessonInstance.day == day,
               LessonInstance.status == InstanceStatus.scheduled)
    ).all()
    cancelled = []
    for inst in rows:
        if keep_weekday is not None and (inst.series.weekday == keep_weekday or inst.rescheduled_from_id):
            continue  # a make-up day keeps its own timetable's lessons and lessons moved onto it
        _cancel(session, inst, reason)
        audit.record(session, actor_id=actor_id, entity="instance", entity_id=inst.id, action="cancel", reason=reason)
        cancelled.append(inst.id)
    return cancelled


def apply_term_day(session: Session, term_id: int, day: date, *, actor_id: int | None, name: str = "") -> DayChange:
    """Bring booked lessons in line with a holiday or make-up day just added to the term.

    A holiday cancels that date's scheduled lessons (停课) and frees their
    slots.  A make-up day runs another weekday's timetable: lessons of the
    date's own weekday are cancelled, and every approved series meeting on the
    followed weekday (in that teaching week's pattern) gets a lesson that day,
    with the usual checks; one that would clash is reported, not forced.
    """
    _term, cal = load_calendar(session, term_id)
    follows = timetable_weekday(cal, day)
    change = DayChange()
    label = name or ("节假日" if follows is None else "调休")
    change.cancelled = _cancel_day(session, term_id, day, keep_weekday=follows, actor_id=actor_id,
                                   reason=f"{label}停课" if follows is None else f"{label}：按星期{follows}课表上课")
    if follows is None:
        return change
    week = week_of(cal, day)
    already = set(session.scalars(select(LessonInstance.series_id).where(
        LessonInstance.day == day, LessonInstance.status != InstanceStatus.cancelled)).all())
    candidates = session.scalars(select(LessonSeries).where(
        LessonSeries.term_id == term_id, LessonSeries.status == SeriesStatus.approved, LessonSeries.weekday == follows,
        LessonSeries.week_from <= week, LessonSeries.week_to >= week)).all()
    for series in candidates:
        if series.id in already or not week_matches(series.week_pattern, week) or week in (series.skip_weeks or ()):
            continue
        planned = _context_for(session, series).place(day, series.period_from, series.period_to,
                                                      series.main_teacher_id)
        try:
            _check_slots(session, [planned])
            (inst,) = _write_instances(session, series, [planned])
        except Conflict as exc:
            change.not_added.extend(exc.items)
            continue
        audit.record(session, actor_id=actor_id, entity="instance", entity_id=inst.id, action="makeup",
                     reason=f"{label}：按星期{follows}课表上课")
        change.added.append(inst.id)
    return change
