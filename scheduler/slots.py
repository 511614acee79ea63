"""智能排课: the free common slots of a pairing (or a demand order) over a term's weeks, ranked.

A *proposal* is one weekday and one run of the main school's periods, every week
of the range.  It is a candidate only if it lies inside both schools' bells
(``SeriesContext.place`` refuses it otherwise, as booking would).  Its lessons
are the ones booking would plan (``bookings.plan_series``: holidays dropped,
make-up days added, nothing before today), and what is in their way is what
booking would refuse (``conflicts.find_conflicts``, one query for every
candidate's every lesson, then ``conflicts.described`` once).  So a proposal
without clashes books without a 409, unless someone books one of its slots
in between (then the 409 is the database's word, as for any booking).

A proposal with clashes in some weeks books around them: its ``booking`` skips those weeks
(``SeriesSpec.skip_weeks``), so the series has no lesson there and the rest pass the check.

Ranking: fewest weeks with a clash first (none: the same period every week),
then the demand order's preferred slots, then fewest lessons lost to holidays,
then earliest in the week.  Each exception names its week, its date and what
is in the way, as the caller may read it (a lesson the caller may not see is
only "已被占用").
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, time, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler import clock
from scheduler.access import Scope
from scheduler.bookings import (
    PlannedInstance,
    ReceiverSpec,
    SeriesContext,
    SeriesSpec,
    _as_seen_by,
    _check_teacher,
    booking_status,
    plan_series,
)
from scheduler.conflicts import described, describe_item, find_conflicts
from scheduler.errors import BellsMismatch, ConflictItem, Forbidden, Invalid, NotFound
from scheduler.models import (
    Classroom,
    DayKind,
    DemandOrder,
    LessonKind,
    Pairing,
    SeriesStatus,
    TermDay,
    User,
)
from scheduler.periods import containing_period, periods_in
from scheduler.terms import TermCalendar, meeting_days, week_of

_WEEKDAY_ZH = {1: "一", 2: "二", 3: "三", 4: "四", 5: "五", 6: "六", 7: "日"}
SCHOOL_DAYS = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class SlotRequest:
    """Who must be free, in which term and weeks, for how many consecutive periods."""

    term_id: int
    subject: str
    main_classroom_id: int
    teacher_id: int
    receiver_ids: tuple[int, ...]
    week_from: int = 1
    week_to: int | None = None
    """None: the term's last week."""
    length: int = 1
    """Consecutive periods of the main school's bells (连堂 when 2)."""
    weekdays: tuple[int, ...] = SCHOOL_DAYS


@dataclass(frozen=True)
class SlotException:
    """One week of a proposal in which its lesson cannot be given as planned."""

    week: int
    day: date
    kind: str
    """``clash`` (something is in the way: ``items``) or ``holiday`` (no lesson that day)."""
    message: str
    items: tuple[ConflictItem, ...] = ()


@dataclass(frozen=True)
class ReceivingPeriod:
    classroom_id: int
    classroom_name: str
    school_name: str
    period_from: int
    period_to: int
    """The receiving school's own periods that hold the lesson's periods."""
    start: time
    end: time


@dataclass
class Proposal:
    weekday: int
    period_from: int
    period_to: int
    start: time
    end: time
    week_from: int
    week_to: int
    receiving: list[ReceivingPeriod]
    lessons: int
    """Lessons the series would have (holidays dropped, make-up days added, none before today)."""
    exceptions: list[SlotException] = field(default_factory=list)
    preferred: bool = False
    """A demand order's preferred slot (weekday and the receiving school's period)."""
    lesson_weeks: list[int] = field(default_factory=list)
    """The teaching week of each of its lessons."""

    @property
    def clash_weeks(self) -> int:
        return len({e.week for e in self.exceptions if e.kind == "clash"})

    @property
    def holiday_weeks(self) -> int:
        return len({e.week for e in self.exceptions if e.kind == "holiday"})

    @property
    def bookable(self) -> bool:
        """Booking it as one weekly series would pass the conflict check now."""
        return self.clash_weeks == 0

    @property
    def skip_weeks(self) -> list[int]:
        """The weeks with a clash: a series booked around them (``SeriesSpec.skip_weeks``) passes the check."""
        return sorted({e.week for e in self.exceptions if e.kind == "clash"})

    @property
    def lessons_skipping(self) -> int:
        """Lessons a series booked around the clashes would have."""
        skip = set(self.skip_weeks)
        return sum(1 for w in self.lesson_weeks if w not in skip)

    def rank_key(self) -> tuple[int, int, int, int, int]:
        return (self.clash_weeks, 0 if self.preferred else 1, self.holiday_weeks, self.weekday, self.period_from)

    def label(self) -> str:
        periods = f"第{self.period_from}节" if self.period_from == self.period_to \
            else f"第{self.period_from}–{self.period_to}节"
        return f"每周{_WEEKDAY_ZH[self.weekday]} {periods} {self.start:%H:%M}–{self.end:%H:%M}"


@dataclass
class SlotFinding:
    """The ranked proposals and what they were computed for."""

    request: SlotRequest
    week_from: int
    week_to: int
    proposals: list[Proposal]
    candidates: int
    """Weekday/period runs inside both schools' bells that were checked."""


def _holiday_names(session: Session, term_id: int) -> dict[date, str]:
    return dict(session.execute(select(TermDay.day, TermDay.name).where(
        TermDay.term_id == term_id, TermDay.kind == DayKind.holiday)).all())


def _day_label(week: int, day: date) -> str:
    return f"第{week}周 {day:%m-%d}（周{_WEEKDAY_ZH[day.isoweekday()]}）"


def find_slots(session: Session, req: SlotRequest, *, scope: Scope, not_before: date | None = None,
               preferred: Sequence[tuple[int, int]] = (), limit: int | None = None) -> SlotFinding:
    """Every weekday/period run inside both bells over ``req``'s weeks, best first (see the module docstring).

    ``preferred``: (weekday, receiving school's period) pairs of a demand order.  ``scope``: whose eyes
    the exceptions are written for.  No rights are checked here (``for_pairing`` / ``for_order`` do).
    """
    if req.length < 1 or req.length > 4:
        raise Invalid("连续节数应为 1 到 4", field="length")
    ctx = SeriesContext(session, term_id=req.term_id, main_classroom_id=req.main_classroom_id,
                        receivers=[ReceiverSpec(i) for i in req.receiver_ids])
    cal = ctx.calendar
    week_to = min(req.week_to or cal.weeks, cal.weeks)
    if req.week_from < 1 or week_to < req.week_from:
        raise Invalid("周次范围无效", field="weeks")
    first = not_before if not_before is not None else clock.now().date()
    holidays = _holiday_names(session, req.term_id)
    numbers = sorted(p.number for p in ctx.main_scheme.periods)

    plans: list[tuple[Proposal, list[PlannedInstance]]] = []
    for weekday in req.weekdays:
        days = meeting_days(cal, weekday, req.week_from, week_to)
        for pf in numbers:
            pt = pf + req.length - 1
            spec = SeriesSpec(kind=LessonKind.dedicated, title="", subject=req.subject, grade="",
                              term_id=req.term_id, main_classroom_id=req.main_classroom_id,
                              main_teacher_id=req.teacher_id, weekday=weekday, period_from=pf, period_to=pt,
                              week_from=req.week_from, week_to=week_to,
                              receivers=tuple(ReceiverSpec(i) for i in req.receiver_ids))
            try:
                planned = plan_series(session, spec, ctx, not_before=first, days=days)
            except (BellsMismatch, Invalid):
                continue  # outside a receiving school's bells, past the last period, or no day left
            start, end = planned[0].starts_at.time(), planned[0].ends_at.time()
            main_periods = periods_in(ctx.main_scheme, pf, pt)
            receiving = []
            for r in ctx.receivers:
                # place() refused the run unless each main period lies inside one of the receiver's periods
                held = [containing_period(r.scheme, m.start_time, m.end_time) for m in main_periods]
                first_p, last_p = held[0], held[-1]
                assert first_p is not None and last_p is not None
                receiving.append(ReceivingPeriod(r.classroom.id, r.classroom.name, r.school.name, first_p.number,
                                                 last_p.number, first_p.start_time, last_p.end_time))
            proposal = Proposal(weekday, pf, pt, start, end, req.week_from, week_to, receiving, len(planned),
                                preferred=any((weekday, r.period_from) in preferred for r in receiving),
                                lesson_weeks=[week_of(cal, p.day) for p in planned])
            proposal.exceptions.extend(_holiday_exceptions(cal, holidays, weekday, req.week_from, week_to, first))
            plans.append((proposal, planned))

    _add_clashes(session, scope, cal, plans)
    proposals = sorted((p for p, _ in plans), key=Proposal.rank_key)
    for p in proposals:
        p.exceptions.sort(key=lambda e: (e.day, e.kind))
    return SlotFinding(req, req.week_from, week_to, proposals[:limit] if limit else proposals, len(plans))


def _holiday_exceptions(cal: TermCalendar, holidays: dict[date, str], weekday: int, week_from: int,
                        week_to: int, first: date) -> list[SlotException]:
    out = []
    for week in range(week_from, week_to + 1):
        day = cal.first_monday + timedelta(days=(week - 1) * 7 + weekday - 1)
        if day in cal.holidays and cal.contains(day) and day >= first:
            name = holidays.get(day) or "节假日"
            out.append(SlotException(week, day, "holiday", f"{_day_label(week, day)} {name}放假，当天不上课"))
    return out


def _add_clashes(session: Session, scope: Scope, cal: TermCalendar,
                 plans: list[tuple[Proposal, list[PlannedInstance]]]) -> None:
    """What is in the way of every candidate's every lesson: one conflict query for all of them."""
    slots = [s for _, planned in plans for p in planned for s in p.slots]
    if not slots:
        return
    items = described(session, find_conflicts(session, slots))
    by_key: dict[tuple[str, int | None, date], list[ConflictItem]] = defaultdict(list)
    for i in items:
        by_key[(i.resource, i.resource_id, i.day)].append(i)
    found: list[tuple[Proposal, PlannedInstance, ConflictItem]] = []
    for proposal, planned in plans:
        for p in planned:
            seen: set[tuple[str, int | None, int | None]] = set()
            for s in p.slots:
                for i in by_key.get((s.resource_type.value, s.resource_id, p.day), ()):
                    key = (i.resource, i.resource_id, i.instance_id)
                    if s.starts_at < i.end and i.start < s.ends_at and key not in seen:
                        seen.add(key)
                        found.append((proposal, p, i))
    if not found:
        return
    # As the caller may read them: a lesson they may not see is only "已被占用" during our lesson's time.
    seen_as = _as_seen_by(session, scope, [i for _, _, i in found], [])
    clashes: dict[tuple[int, date], list[ConflictItem]] = defaultdict(list)
    for (proposal, p, raw), shown in zip(found, seen_as):
        if shown.instance_id is None and raw.instance_id is not None:
            shown = replace(shown, start=p.starts_at, end=p.ends_at, day=p.day)
            shown = replace(shown, message=describe_item(shown))
        clashes[(id(proposal), p.day)].append(shown)
    by_id = {id(proposal): proposal for proposal, _ in plans}
    for (pid, day), its in clashes.items():
        week = week_of(cal, day)
        what = "；".join(f"{i.who()}{i.what()}" for i in its)
        by_id[pid].exceptions.append(SlotException(week, day, "clash", f"{_day_label(week, day)}：{what}",
                                                   tuple(its)))


# ---------------------------------------------------------------- who asks, for what


def _request_rights(session: Session, req: SlotRequest, *, actor: User, scope: Scope) -> SeriesStatus:
    """The caller may look for slots where they may book (``bookings.booking_status``)."""
    room = session.get(Classroom, req.main_classroom_id)
    if room is None:
        raise NotFound(f"主讲教室 #{req.main_classroom_id} 不存在", field="main_classroom")
    status = booking_status(session, room.school_id, req.teacher_id, actor=actor, scope=scope)
    _check_teacher(session, req.teacher_id)
    return status


def for_pairing(session: Session, pairing_id: int, *, subject: str, term_id: int, teacher_id: int,
                main_classroom_id: int | None = None, receiver_ids: Sequence[int] = (), week_from: int = 1,
                week_to: int | None = None, length: int = 1, actor: User, scope: Scope,
                not_before: date | None = None, limit: int | None = None) -> SlotFinding:
    """Free common slots of a pairing: its urban classroom (or ``main_classroom_id`` of the urban school)
    and its rural classroom (or ``receiver_ids`` of the rural school)."""
    pairing = session.get(Pairing, pairing_id)
    if pairing is None:
        raise NotFound(f"结对 #{pairing_id} 不存在")
    if not pairing.active:
        raise Invalid("该结对已停用")
    subject = subject.strip()
    if not subject:
        raise Invalid("请填写学科", field="subject")
    if pairing.subjects and subject not in pairing.subjects:
        raise Invalid(f"该结对不包含“{subject}”学科（{'、'.join(pairing.subjects)}）", field="subject")
    if pairing.term_id is not None and pairing.term_id != term_id:
        raise Invalid("该结对不适用于所选学期", field="term")
    main_id = main_classroom_id if main_classroom_id is not None else pairing.urban_classroom_id
    if main_id is None:
        raise Invalid("请选择主讲教室", field="main_classroom")
    receivers = tuple(receiver_ids) or ((pairing.rural_classroom_id,) if pairing.rural_classroom_id else ())
    if not receivers:
        raise Invalid("请选择接收教室", field="receivers")
    rooms = {c.id: c for c in session.scalars(select(Classroom).where(Classroom.id.in_([main_id, *receivers])))}
    main = rooms.get(main_id)
    if main is None or main.school_id != pairing.urban_school_id or \
            pairing.urban_classroom_id not in (None, main_id):
        raise Invalid("主讲教室不属于该结对的城区学校", field="main_classroom")
    for rid in receivers:
        room = rooms.get(rid)
        if room is None or room.school_id != pairing.rural_school_id or \
                pairing.rural_classroom_id not in (None, rid):
            raise Invalid(f"接收教室 #{rid} 不属于该结对的农村学校", field="receivers")
    req = SlotRequest(term_id=term_id, subject=subject, main_classroom_id=main_id, teacher_id=teacher_id,
                      receiver_ids=receivers, week_from=week_from, week_to=week_to, length=length)
    _request_rights(session, req, actor=actor, scope=scope)
    return find_slots(session, req, scope=scope, not_before=not_before, limit=limit)


def for_order(session: Session, order_id: int, *, teacher_id: int, main_classroom_id: int,
              receiving_classroom_id: int | None = None, week_from: int = 1, week_to: int | None = None,
              length: int = 1, actor: User, scope: Scope, not_before: date | None = None,
              limit: int | None = None) -> SlotFinding:
    """Free common slots for answering a demand order: an urban teacher and main classroom with the order's
    receiving classroom (or ``receiving_classroom_id`` of the rural school); its preferred slots rank first
    among equals."""
    from scheduler import demand  # demand imports bookings; slots is imported by routes only

    order = session.get(DemandOrder, order_id)
    if order is None:
        raise NotFound(f"需求订单 #{order_id} 不存在")
    demand._require_visible(session, scope, order)
    receiving = receiving_classroom_id if receiving_classroom_id is not None else order.receiving_classroom_id
    if receiving is None:
        raise Invalid("该需求订单未指定接收教室，请选择接收教室", field="receivers")
    room = session.get(Classroom, receiving)
    if room is None or room.school_id != order.rural_school_id:
        raise Invalid("接收教室不属于发布需求的学校", field="receivers")
    main = session.get(Classroom, main_classroom_id)
    if main is None:
        raise NotFound(f"主讲教室 #{main_classroom_id} 不存在", field="main_classroom")
    if main.school_id == order.rural_school_id:
        raise Forbidden("主讲教室应属于响应需求的城区学校", field="main_classroom")
    req = SlotRequest(term_id=order.term_id, subject=order.subject, main_classroom_id=main_classroom_id,
                      teacher_id=teacher_id, receiver_ids=(receiving,), week_from=week_from, week_to=week_to,
                      length=length)
    _request_rights(session, req, actor=actor, scope=scope)
    preferred = [(int(s["weekday"]), int(s["period"])) for s in order.preferred_slots or []]
    return find_slots(session, req, scope=scope, not_before=not_before, preferred=preferred, limit=limit)


def week_range(text: str | None) -> tuple[int, int | None]:
    """``"3-12"`` → (3, 12), ``"5"`` → (5, 5), empty → the whole term (1, None)."""
    if not text or not text.strip():
        return 1, None
    parts = text.replace("–", "-").split("-")
    try:
        if len(parts) == 1:
            w = int(parts[0])
            return w, w
        if len(parts) == 2:
            return int(parts[0]), int(parts[1])
    except ValueError:
        pass
    raise Invalid("周次应写作“3-12”或“5”", field="weeks")
