"""Reports over the stored teaching records (在线教学记录) and the patrol record (巡课记录).

Every report reads the lessons of one listing — :func:`scheduler.queries.instance_query`
for the caller's scope, a date range, optionally a region, a school and a
lesson kind (a teacher: only the lessons they teach, assist or attend) — and
the rows stored for them: ``teaching_record`` and ``attendance_record`` (written
when a lesson's room closes, ``scheduler.records``), ``patrol_visit`` and
``evaluation``.  The rates are computed in Python over those rows, so SQLite and
PostgreSQL give the same numbers.

Each lesson has one **outcome**:

* ``cancelled`` — the lesson was cancelled (停课);
* ``held`` / ``partly_held`` / ``missed`` — its stored record says so;
* ``missed`` also when the lesson ended (``ends_at`` before now) and there is no
  stored record: a room that closes always stores one, so a lesson without one
  did not take place as far as the records know (counted in ``unrecorded`` too);
* ``pending`` — not over yet and no record (scheduled or in progress): left out
  of every rate.

The formulas (a rate whose denominator is 0 is ``None``, shown as “—”):

* 开课率 ``held_rate`` = (held + partly_held) / (held + partly_held + missed).
  A partly held lesson (the main classroom published for less than
  ``records.HELD_SHARE`` of the scheduled time) **did take place**, so it counts
  as held here; ``full_held_rate`` = held / due is given beside it.
* 准时率 ``on_time_rate`` = lessons started within the grace / (held + partly_held).
* 到课率 ``attendance_rate`` = attended expected receivers / expected receivers,
  over held and partly held lessons (a missed lesson had nobody to attend; that
  shows in the held rate).  Expected receivers are the series' receiving
  classrooms and enrolled home students (or attending teachers); attended means
  present for at least one second.
* 巡课覆盖率 ``patrol_rate`` = held or partly held lessons with at least one
  patrol visit / (held + partly_held).
* Classroom insight (课堂分析, ``scheduler.st_analysis``), over the held and partly
  held lessons whose speech was measured (``st_lessons``): the mean ``avg_rt`` and
  ``avg_ch``, and ``silent_share``, the share of those lessons with receiving
  classrooms where none of them spoke.

Units: a lesson counts once for its kind, subject and teacher (the instance's
teacher: a substitute gets the lesson), and once for every school — and every
district — that gives **or** receives it (like ``reports.term_summary``; the
school of an enrolled home student receives it too), among the units the
caller may see.  A school's (district's) attendance counts only
its own receivers: its receiving classrooms and its home students.
"""

from __future__ import annotations

import enum
import io
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.access import Scope, school_clause
from scheduler.errors import Forbidden, Invalid, NotFound
from scheduler.exports import KIND_ZH, cell, csv_bytes
from scheduler.models import (
    Classroom,
    InstanceStatus,
    LessonInstance,
    LessonKind,
    LessonSeries,
    Region,
    Role,
    School,
    SeriesParticipant,
    SeriesReceiver,
    Term,
    User,
)
from scheduler.patrol_models import Evaluation, PatrolVisit
from scheduler.queries import InstanceFilter, instance_query
from scheduler.records_models import (
    AttendanceRecord,
    EventKind,
    RecordStatus,
    SessionEvent,
    TeachingRecord,
)

_CHUNK = 500
MAX_DAYS = 400
"""The longest date range one report covers (a school year and a bit)."""
DEFAULT_DAYS = 30
"""A report without dates covers the last 30 days (:func:`last_days`)."""


def last_days(days: int, today: date) -> tuple[date, date]:
    """"The last ``days`` days" as ``(date_from, date_to)``, both inclusive: ``today`` and the
    ``days - 1`` days before it (the last 7 days of Sunday 2026-09-13 are Monday 09-07 .. 09-13).

    The one definition of a recent window: the reports' default range and their 7/30-day quick
    ranges (the dashboard asks the API with ``days``), and the demo's month of records, use it."""
    if days < 1:
        raise Invalid("天数至少为 1", field="days")
    return today - timedelta(days=days - 1), today


class Outcome(str, enum.Enum):
    held = "held"
    partly_held = "partly_held"
    missed = "missed"
    cancelled = "cancelled"
    pending = "pending"


OUTCOME_ZH = {Outcome.held: "已开课", Outcome.partly_held: "部分开课", Outcome.missed: "未开课",
              Outcome.cancelled: "已停课", Outcome.pending: "未到期"}
ROLE_ZH = {"main": "主讲教室", "receiving": "接收教室", "student": "在家学生/听课教师", "observer": "巡课"}


def outcome_of(status: InstanceStatus, record: RecordStatus | None, ends_at: datetime, now: datetime) -> Outcome:
    """A lesson's outcome for the reports (see the module docstring)."""
    if status is InstanceStatus.cancelled or record is RecordStatus.cancelled:
        return Outcome.cancelled
    if record is not None:
        return Outcome(record.value)
    if ends_at > now:
        return Outcome.pending
    return Outcome.missed


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


@dataclass
class Tally:
    """Counts of one unit (a day, a school, a kind, ...) and the rates made from them."""

    scheduled: int = 0
    """Every lesson of the range (any outcome, cancelled and not yet due included)."""
    cancelled: int = 0
    pending: int = 0
    held: int = 0
    partly_held: int = 0
    missed: int = 0
    unrecorded: int = 0
    """Missed because the lesson ended without a stored record (part of ``missed``)."""
    on_time: int = 0
    expected: int = 0
    attended: int = 0
    patrolled: int = 0
    evaluated: int = 0
    st_lessons: int = 0
    """Lessons that took place with their speech measured (the S-T analysis)."""
    rt_sum: float = 0.0
    ch_sum: float = 0.0
    silent: int = 0
    """Of ``st_lessons`` with receiving classrooms: those where no receiving classroom spoke."""
    with_receivers: int = 0

    @property
    def due(self) -> int:
        """Lessons that should have happened: ended, not cancelled."""
        return self.held + self.partly_held + self.missed

    @property
    def took_place(self) -> int:
        return self.held + self.partly_held

    @property
    def held_rate(self) -> float | None:
        return _rate(self.took_place, self.due)

    @property
    def full_held_rate(self) -> float | None:
        return _rate(self.held, self.due)

    @property
    def on_time_rate(self) -> float | None:
        return _rate(self.on_time, self.took_place)

    @property
    def attendance_rate(self) -> float | None:
        return _rate(self.attended, self.expected)

    @property
    def patrol_rate(self) -> float | None:
        return _rate(self.patrolled, self.took_place)

    @property
    def avg_rt(self) -> float | None:
        return round(self.rt_sum / self.st_lessons, 3) if self.st_lessons else None

    @property
    def avg_ch(self) -> float | None:
        return round(self.ch_sum / self.st_lessons, 3) if self.st_lessons else None

    @property
    def silent_share(self) -> float | None:
        return _rate(self.silent, self.with_receivers)

    def as_dict(self) -> dict[str, Any]:
        return {
            "scheduled": self.scheduled, "cancelled": self.cancelled, "pending": self.pending, "due": self.due,
            "held": self.held, "partly_held": self.partly_held, "missed": self.missed, "unrecorded": self.unrecorded,
            "on_time": self.on_time, "expected": self.expected, "attended": self.attended,
            "patrolled": self.patrolled, "evaluated": self.evaluated, "held_rate": self.held_rate,
            "full_held_rate": self.full_held_rate, "on_time_rate": self.on_time_rate,
            "attendance_rate": self.attendance_rate, "patrol_rate": self.patrol_rate,
            "st_lessons": self.st_lessons, "avg_rt": self.avg_rt, "avg_ch": self.avg_ch,
            "silent_share": self.silent_share,
        }


# ---------------------------------------------------------------- loading


@dataclass(frozen=True)
class ReportFilter:
    date_from: date
    date_to: date
    region_id: int | None = None
    school_id: int | None = None
    kind: LessonKind | None = None
    teacher_id: int | None = None
    """Only the lessons this teacher gives (the instance's teacher: a substitute gets the lesson)."""

    def __post_init__(self) -> None:
        if self.date_to < self.date_from:
            raise Invalid("结束日期不能早于开始日期", field="date_to")
        if (self.date_to - self.date_from).days > MAX_DAYS:
            raise Invalid(f"统计范围最长 {MAX_DAYS} 天", field="date_from")


@dataclass
class LessonRow:
    """One lesson of a report with its stored record (if any)."""

    id: int
    day: date
    starts_at: datetime
    ends_at: datetime
    status: InstanceStatus
    kind: LessonKind
    subject: str
    title: str
    teacher_id: int
    main_classroom_id: int
    series_id: int
    record_status: RecordStatus | None
    on_time: bool | None
    late_s: int | None
    actual_start: datetime | None
    actual_end: datetime | None
    duration_s: int
    expected: int
    attended: int
    recording_id: int | None
    st_rt: float | None = None
    st_ch: float | None = None
    st_type: str | None = None
    receivers_spoke: int | None = None
    receivers: int = 0
    """Expected receiving classrooms (for ``receivers_spoke``)."""
    outcome: Outcome = Outcome.pending
    visits: int = 0
    evaluations: int = 0
    scores: list[float] = field(default_factory=list)


@dataclass
class _Data:
    lessons: list[LessonRow]
    schools_of: dict[int, set[int]]
    """lesson id -> schools giving or receiving it"""
    school_names: dict[int, str]
    school_region: dict[int, int]
    region_names: dict[int, str]
    visible_schools: set[int]
    """Schools the caller may see that fall inside the filter's region / school."""


def _chunks(ids: Iterable[int]) -> Iterable[list[int]]:
    ordered = sorted(set(ids))
    for i in range(0, len(ordered), _CHUNK):
        yield ordered[i: i + _CHUNK]


def _instance_filter(scope: Scope, f: ReportFilter) -> InstanceFilter:
    return InstanceFilter(date_from=f.date_from, date_to=f.date_to, region_id=f.region_id, school_id=f.school_id,
                          kind=f.kind, involving_user_id=scope.user_id if scope.role is Role.teacher else None,
                          teacher_id=f.teacher_id)


def load_lessons(session: Session, scope: Scope, f: ReportFilter, *, now: datetime) -> list[LessonRow]:
    """The lessons of the report with their stored records, patrol visits and evaluations, by start."""
    if scope.role not in (Role.admin, Role.researcher, Role.teacher):
        raise Forbidden("当前角色无权查看统计报表")
    stmt = (
        instance_query(session, scope, _instance_filter(scope, f))
        .with_only_columns(
            LessonInstance.id, LessonInstance.day, LessonInstance.starts_at, LessonInstance.ends_at,
            LessonInstance.status, LessonSeries.kind, LessonSeries.subject, LessonSeries.title,
            LessonInstance.teacher_id, LessonInstance.main_classroom_id, LessonInstance.series_id,
            TeachingRecord.status, TeachingRecord.on_time, TeachingRecord.late_s, TeachingRecord.actual_start,
            TeachingRecord.actual_end, TeachingRecord.duration_s, TeachingRecord.expected_receivers,
            TeachingRecord.attended_receivers, TeachingRecord.recording_id, TeachingRecord.st_rt,
            TeachingRecord.st_ch, TeachingRecord.receivers_spoke, TeachingRecord.st_type,
        )
        .outerjoin(TeachingRecord, TeachingRecord.instance_id == LessonInstance.id)
        .order_by(LessonInstance.starts_at, LessonInstance.id)
    )
    rows = []
    for r in session.execute(stmt):
        row = LessonRow(id=r[0], day=r[1], starts_at=r[2], ends_at=r[3], status=r[4], kind=r[5], subject=r[6],
                        title=r[7], teacher_id=r[8], main_classroom_id=r[9], series_id=r[10], record_status=r[11],
                        on_time=r[12], late_s=r[13], actual_start=r[14], actual_end=r[15], duration_s=r[16] or 0,
                        expected=r[17] or 0, attended=r[18] or 0, recording_id=r[19], st_rt=r[20], st_ch=r[21],
                        receivers_spoke=r[22], st_type=r[23])
        row.outcome = outcome_of(row.status, row.record_status, row.ends_at, now)
        rows.append(row)
    by_id = {r.id: r for r in rows}
    measured = {r.series_id for r in rows if r.st_rt is not None}
    receivers: dict[int, int] = defaultdict(int)
    for ids in _chunks(measured):
        for sid, in session.execute(select(SeriesReceiver.series_id).where(SeriesReceiver.series_id.in_(ids))):
            receivers[sid] += 1
    for r in rows:
        r.receivers = receivers.get(r.series_id, 0)
    for ids in _chunks(by_id):
        for iid, in session.execute(select(PatrolVisit.instance_id).where(PatrolVisit.instance_id.in_(ids))):
            by_id[iid].visits += 1
        for iid, score in session.execute(
                select(Evaluation.instance_id, Evaluation.total_score).where(Evaluation.instance_id.in_(ids))):
            by_id[iid].evaluations += 1
            if score is not None:
                by_id[iid].scores.append(float(score))
    return rows


def _load(session: Session, scope: Scope, f: ReportFilter, *, now: datetime) -> _Data:
    lessons = load_lessons(session, scope, f, now=now)
    series_ids = {r.series_id for r in lessons}
    main_rooms = {r.main_classroom_id for r in lessons}
    receivers: dict[int, set[int]] = defaultdict(set)  # series -> classrooms
    for ids in _chunks(series_ids):
        for sid, cid in session.execute(select(SeriesReceiver.series_id, SeriesReceiver.classroom_id)
                                        .where(SeriesReceiver.series_id.in_(ids))):
            receivers[sid].add(cid)
    home_schools: dict[int, set[int]] = defaultdict(set)  # series -> schools of enrolled students / attendees
    for ids in _chunks(series_ids):
        for sid, school in session.execute(
                select(SeriesParticipant.series_id, User.school_id).join(User, User.id == SeriesParticipant.user_id)
                .where(SeriesParticipant.series_id.in_(ids), User.school_id.is_not(None))):
            home_schools[sid].add(school)
    rooms = main_rooms | {c for cs in receivers.values() for c in cs}
    room_school: dict[int, int] = {}
    for ids in _chunks(rooms):
        room_school.update(session.execute(select(Classroom.id, Classroom.school_id).where(Classroom.id.in_(ids))).all())
    schools_of = {r.id: {room_school[c] for c in {r.main_classroom_id} | receivers[r.series_id] if c in room_school}
                  | home_schools[r.series_id] for r in lessons}
    all_schools = {s for ss in schools_of.values() for s in ss}
    school_names: dict[int, str] = {}
    school_region: dict[int, int] = {}
    visible: set[int] = set()
    unit_where = school_clause(scope)
    if f.region_id is not None:
        region = session.get(Region, f.region_id)
        if region is None:
            raise NotFound(f"区域 #{f.region_id} 不存在")
        unit_where = unit_where & Region.path.startswith(region.path)
    if f.school_id is not None:
        unit_where = unit_where & (School.id == f.school_id)
    for ids in _chunks(all_schools):
        for sid, name, rid in session.execute(select(School.id, School.name, School.region_id).where(School.id.in_(ids))):
            school_names[sid] = name
            school_region[sid] = rid
        visible.update(session.scalars(select(School.id).join(Region, Region.id == School.region_id)
                                       .where(School.id.in_(ids), unit_where)))
    region_names = dict(session.execute(select(Region.id, Region.name)
                                        .where(Region.id.in_(set(school_region.values())))).all())
    return _Data(lessons, schools_of, school_names, school_region, region_names, visible)


def _add(t: Tally, r: LessonRow, *, attendance: tuple[int, int] | None = None) -> None:
    """Count lesson ``r`` into ``t``; ``attendance`` (expected, attended) replaces the lesson's own."""
    t.scheduled += 1
    o = r.outcome
    if o is Outcome.cancelled:
        t.cancelled += 1
        return
    if o is Outcome.pending:
        t.pending += 1
        return
    if o is Outcome.missed:
        t.missed += 1
        if r.record_status is None:
            t.unrecorded += 1
        return
    if o is Outcome.held:
        t.held += 1
    else:
        t.partly_held += 1
    if r.on_time:
        t.on_time += 1
    expected, attended = attendance if attendance is not None else (r.expected, r.attended)
    t.expected += expected
    t.attended += attended
    if r.visits:
        t.patrolled += 1
    if r.evaluations:
        t.evaluated += 1
    if r.st_rt is not None and r.st_ch is not None:
        t.st_lessons += 1
        t.rt_sum += r.st_rt
        t.ch_sum += r.st_ch
        if r.receivers:
            t.with_receivers += 1
            t.silent += not r.receivers_spoke


def tally(lessons: Iterable[LessonRow]) -> Tally:
    """The counts and rates of these lessons (the outcome rules above)."""
    t = Tally()
    for r in lessons:
        _add(t, r)
    return t


# ---------------------------------------------------------------- summary


@dataclass
class Bucket:
    start: date
    tally: Tally


@dataclass
class Summary:
    filter: ReportFilter
    bucket: str
    """``day`` or ``week`` (Monday-based) for ``series``."""
    total: Tally
    series: list[Bucket]
    by_kind: dict[str, Tally]
    average_score: float | None
    """Mean total score of the scored evaluations of the report's lessons."""
    visits: int


def summary(session: Session, scope: Scope, f: ReportFilter, *, now: datetime, bucket: str | None = None) -> Summary:
    """Totals of the range, the rates over time (per day or per week) and per lesson kind."""
    lessons = load_lessons(session, scope, f, now=now)
    if bucket is None:
        bucket = "day" if (f.date_to - f.date_from).days <= 45 else "week"
    if bucket not in ("day", "week"):
        raise Invalid("分组只能是 day 或 week", field="bucket")
    total = Tally()
    by_kind = {k.value: Tally() for k in LessonKind}
    buckets: dict[date, Tally] = {}
    day = f.date_from if bucket == "day" else f.date_from - timedelta(days=f.date_from.weekday())
    step = timedelta(days=1 if bucket == "day" else 7)
    while day <= f.date_to:
        buckets[day] = Tally()
        day += step
    scores: list[float] = []
    visits = 0
    for r in lessons:
        _add(total, r)
        _add(by_kind[r.kind.value], r)
        key = r.day if bucket == "day" else r.day - timedelta(days=r.day.weekday())
        _add(buckets[key], r)
        if r.outcome in (Outcome.held, Outcome.partly_held):
            scores.extend(r.scores)
            visits += r.visits
    avg = round(sum(scores) / len(scores), 1) if scores else None
    return Summary(f, bucket, total, [Bucket(d, t) for d, t in buckets.items()], by_kind, avg, visits)


# ---------------------------------------------------------------- breakdown by unit

DIMENSIONS = ("kind", "school", "teacher", "subject", "region")


@dataclass
class UnitRow:
    dimension: str
    key: str
    name: str
    tally: Tally
    average_score: float | None = None


def _receiver_attendance(session: Session, data: _Data) -> dict[int, list[tuple[int, bool]]]:
    """lesson id -> [(school of an expected receiver, attended)] for held and partly held lessons."""
    took = [r for r in data.lessons if r.outcome in (Outcome.held, Outcome.partly_held)]
    series_ids = {r.series_id for r in took}
    rooms: dict[int, set[int]] = defaultdict(set)
    users: dict[int, set[int]] = defaultdict(set)
    for ids in _chunks(series_ids):
        for sid, cid in session.execute(select(SeriesReceiver.series_id, SeriesReceiver.classroom_id)
                                        .where(SeriesReceiver.series_id.in_(ids))):
            rooms[sid].add(cid)
        for sid, uid in session.execute(select(SeriesParticipant.series_id, SeriesParticipant.user_id)
                                        .where(SeriesParticipant.series_id.in_(ids))):
            users[sid].add(uid)
    room_school: dict[int, int] = {}
    user_school: dict[int, int | None] = {}
    for ids in _chunks({c for cs in rooms.values() for c in cs}):
        room_school.update(session.execute(select(Classroom.id, Classroom.school_id).where(Classroom.id.in_(ids))).all())
    for ids in _chunks({u for us in users.values() for u in us}):
        user_school.update(session.execute(select(User.id, User.school_id).where(User.id.in_(ids))).all())
    present: set[tuple[int, str, int]] = set()
    for ids in _chunks(r.id for r in took):
        for iid, role, cid, uid in session.execute(
                select(AttendanceRecord.instance_id, AttendanceRecord.role, AttendanceRecord.classroom_id,
                       AttendanceRecord.user_id)
                .where(AttendanceRecord.instance_id.in_(ids), AttendanceRecord.present_s > 0)):
            if role == "student" and uid is not None:
                present.add((iid, "student", uid))
            elif role == "receiving" and cid is not None:
                present.add((iid, "receiving", cid))
    out: dict[int, list[tuple[int, bool]]] = {}
    for r in took:
        items = [(room_school[c], (r.id, "receiving", c) in present) for c in rooms[r.series_id] if c in room_school]
        items += [(s, (r.id, "student", u) in present) for u in users[r.series_id]
                  if (s := user_school.get(u)) is not None]
        out[r.id] = items
    return out


def breakdown(session: Session, scope: Scope, f: ReportFilter, by: str, *, now: datetime) -> list[UnitRow]:
    """One row per kind / school / teacher / subject / region (district) with its counts and rates."""
    if by not in DIMENSIONS:
        raise Invalid(f"统计维度只能是 {'、'.join(DIMENSIONS)}", field="by")
    data = _load(session, scope, f, now=now)
    tallies: dict[str, Tally] = defaultdict(Tally)
    scores: dict[str, list[float]] = defaultdict(list)
    names: dict[str, str] = {}
    took = (Outcome.held, Outcome.partly_held)

    def count(key: object, name: str, r: LessonRow, attendance: tuple[int, int] | None = None) -> None:
        k = str(key)
        names[k] = name
        _add(tallies[k], r, attendance=attendance)
        if r.outcome in took:
            scores[k].extend(r.scores)

    if by in ("kind", "subject", "teacher"):
        teacher_names: dict[int, str] = {}
        if by == "teacher":
            for ids in _chunks(r.teacher_id for r in data.lessons):
                teacher_names.update(session.execute(select(User.id, User.display_name).where(User.id.in_(ids))).all())
        for r in data.lessons:
            if by == "kind":
                count(r.kind.value, KIND_ZH[r.kind], r)
            elif by == "subject":
                count(r.subject, r.subject, r)
            else:
                count(r.teacher_id, teacher_names.get(r.teacher_id, f"#{r.teacher_id}"), r)
    else:
        receivers = _receiver_attendance(session, data)
        for r in data.lessons:
            units: dict[int, tuple[int, int]] = {}
            for school in data.schools_of[r.id]:
                if school not in data.visible_schools:
                    continue
                unit = school if by == "school" else data.school_region[school]
                units.setdefault(unit, (0, 0))
            for school, attended in receivers.get(r.id, []):
                if school not in data.visible_schools:
                    continue
                unit = school if by == "school" else data.school_region[school]
                if unit in units:
                    e, a = units[unit]
                    units[unit] = (e + 1, a + int(attended))
            for unit, att in units.items():
                name = data.school_names[unit] if by == "school" else data.region_names.get(unit, f"#{unit}")
                count(unit, name, r, att)
    rows = [UnitRow(by, k, names[k], t, round(sum(scores[k]) / len(scores[k]), 1) if scores[k] else None)
            for k, t in tallies.items()]
    if by == "kind":
        order = {k.value: i for i, k in enumerate(LessonKind)}
        rows.sort(key=lambda u: order[u.key])
    else:
        rows.sort(key=lambda u: (-u.tally.scheduled, u.name))
    return rows


# ---------------------------------------------------------------- patrol coverage


@dataclass
class VisitorRow:
    user_id: int
    name: str
    role: str
    visits: int
    lessons: int
    minutes: float
    evaluations: int
    average_score: float | None


@dataclass
class PatrolReport:
    held: int
    """Lessons held or partly held in the range."""
    patrolled: int
    evaluated: int
    visits: int
    minutes: float
    average_score: float | None
    visitors: list[VisitorRow]

    @property
    def patrol_rate(self) -> float | None:
        return _rate(self.patrolled, self.held)

    @property
    def evaluation_rate(self) -> float | None:
        return _rate(self.evaluated, self.held)


def patrol_coverage(session: Session, scope: Scope, f: ReportFilter, *, now: datetime) -> PatrolReport:
    """Share of the held lessons patrolled and evaluated; visits, minutes and scores per visitor.

    Visits and evaluations of every lesson of the range count (of held, partly
    held and missed lessons alike) in the per-visitor rows; the shares are over
    held and partly held lessons.  Admins see every visitor's row, a researcher
    only their own, a teacher none (their lessons' totals only).
    """
    lessons = load_lessons(session, scope, f, now=now)
    took = [r for r in lessons if r.outcome in (Outcome.held, Outcome.partly_held)]
    ids = [r.id for r in lessons]
    per: dict[int, dict[str, Any]] = defaultdict(lambda: {"visits": 0, "lessons": set(), "seconds": 0,
                                                          "evaluations": 0, "scores": []})
    total_s = 0
    visits = 0
    for chunk in _chunks(ids):
        for uid, iid, secs in session.execute(
                select(PatrolVisit.researcher_id, PatrolVisit.instance_id, PatrolVisit.duration_seconds)
                .where(PatrolVisit.instance_id.in_(chunk))):
            p = per[uid]
            p["visits"] += 1
            p["lessons"].add(iid)
            p["seconds"] += secs or 0
            total_s += secs or 0
            visits += 1
        for uid, score in session.execute(select(Evaluation.evaluator_id, Evaluation.total_score)
                                          .where(Evaluation.instance_id.in_(chunk))):
            per[uid]["evaluations"] += 1
            if score is not None:
                per[uid]["scores"].append(float(score))
    shown = set(per)
    if scope.role is Role.researcher:
        shown = {scope.user_id} & shown
    elif scope.role is not Role.admin:
        shown = set()
    users = {}
    for chunk in _chunks(shown):
        users.update({u.id: u for u in session.scalars(select(User).where(User.id.in_(chunk)))})
    rows = []
    for uid in shown:
        p = per[uid]
        user = users.get(uid)
        rows.append(VisitorRow(uid, user.display_name if user else f"#{uid}", user.role.value if user else "",
                               p["visits"], len(p["lessons"]), round(p["seconds"] / 60, 1), p["evaluations"],
                               round(sum(p["scores"]) / len(p["scores"]), 1) if p["scores"] else None))
    rows.sort(key=lambda v: (-v.visits, v.name))
    scores = [s for r in took for s in r.scores]
    return PatrolReport(held=len(took), patrolled=sum(1 for r in took if r.visits),
                        evaluated=sum(1 for r in took if r.evaluations), visits=visits,
                        minutes=round(total_s / 60, 1),
                        average_score=round(sum(scores) / len(scores), 1) if scores else None, visitors=rows)


# ---------------------------------------------------------------- attendance (per lesson, per term)


@dataclass
class AttendanceLine:
    instance_id: int
    day: date
    starts_at: datetime
    ends_at: datetime
    title: str
    kind: LessonKind
    outcome: Outcome
    role: str
    school: str
    classroom: str
    person: str
    expected: bool
    first_join: datetime | None
    last_leave: datetime | None
    present_s: int
    disconnects: int
    stage_count: int
    stage_s: int
    sessions: list[tuple[datetime, datetime | None]]
    """Each stay, from a join (or resume) to a leave (or disconnect); None: still there at the room's close."""
    classroom_id: int | None = None
    user_id: int | None = None
    """The row's classroom (main, receiving) or home student: names repeat across schools, ids do not."""
    uncertain_s: int = 0
    """How much longer than ``present_s`` sessions cut by a server crash may have lasted."""


def _sessions(session: Session, ids: Sequence[int]) -> dict[tuple[int, str, int], list[tuple[datetime, datetime | None]]]:
    """(lesson, role, classroom or user) -> stays, from the event log (joins and leaves only)."""
    out: dict[tuple[int, str, int], list[tuple[datetime, datetime | None]]] = defaultdict(list)
    kinds = (EventKind.join, EventKind.resume, EventKind.leave, EventKind.disconnect)
    for chunk in _chunks(ids):
        open_: dict[tuple[int, str], tuple[tuple[int, str, int], datetime]] = {}
        for iid, at, kind, pid, role, cid, uid in session.execute(
                select(SessionEvent.instance_id, SessionEvent.at, SessionEvent.kind, SessionEvent.participant_id,
                       SessionEvent.role, SessionEvent.classroom_id, SessionEvent.user_id)
                .where(SessionEvent.instance_id.in_(chunk), SessionEvent.kind.in_(kinds))
                .order_by(SessionEvent.instance_id, SessionEvent.at, SessionEvent.id)):
            if role == "observer":
                continue
            unit = uid if role == "student" else cid
            if unit is None:
                continue
            key = (iid, role, unit)
            if kind in (EventKind.join, EventKind.resume):
                open_.setdefault((iid, pid), (key, at))
            elif (iid, pid) in open_:
                k, since = open_.pop((iid, pid))
                out[k].append((since, at))
        for k, since in open_.values():
            out[k].append((since, None))
    for stays in out.values():
        stays.sort(key=lambda s: s[0])
    return out


def attendance_lines(session: Session, scope: Scope, lessons: Sequence[LessonRow]) -> list[AttendanceLine]:
    """Every stored attendance row of ``lessons`` (already scoped), with each stay from the event log."""
    by_id = {r.id: r for r in lessons}
    rows: list[AttendanceRecord] = []
    for chunk in _chunks(by_id):
        rows.extend(session.scalars(select(AttendanceRecord).where(AttendanceRecord.instance_id.in_(chunk))))
    rooms: dict[int, tuple[str, str]] = {}
    for chunk in _chunks(a.classroom_id for a in rows if a.classroom_id):
        for cid, room, school in session.execute(
                select(Classroom.id, Classroom.name, School.name).join(School, School.id == Classroom.school_id)
                .where(Classroom.id.in_(chunk))):
            rooms[cid] = (room, school)
    people: dict[int, tuple[str, str]] = {}
    for chunk in _chunks(a.user_id for a in rows if a.user_id):
        for uid, name, school in session.execute(
                select(User.id, User.display_name, School.name).outerjoin(School, School.id == User.school_id)
                .where(User.id.in_(chunk))):
            people[uid] = (name, school or "")
    expected_rooms: dict[int, set[int]] = defaultdict(set)
    expected_users: dict[int, set[int]] = defaultdict(set)
    series_ids = {r.series_id for r in lessons}
    for chunk in _chunks(series_ids):
        for sid, cid in session.execute(select(SeriesReceiver.series_id, SeriesReceiver.classroom_id)
                                        .where(SeriesReceiver.series_id.in_(chunk))):
            expected_rooms[sid].add(cid)
        for sid, uid in session.execute(select(SeriesParticipant.series_id, SeriesParticipant.user_id)
                                        .where(SeriesParticipant.series_id.in_(chunk))):
            expected_users[sid].add(uid)
    stays = _sessions(session, list(by_id))
    role_order = {"main": 0, "receiving": 1, "student": 2}
    rows.sort(key=lambda a: (by_id[a.instance_id].starts_at, a.instance_id, role_order.get(a.role, 3),
                             a.classroom_id or 0, a.user_id or 0))
    out = []
    for a in rows:
        r = by_id[a.instance_id]
        student = a.role == "student"
        room, school = rooms.get(a.classroom_id or 0, ("", ""))
        person = ""
        if student:
            person, school = people.get(a.user_id or 0, (f"#{a.user_id}", ""))
        expected = ((a.user_id in expected_users[r.series_id]) if student
                    else a.role == "receiving" and a.classroom_id in expected_rooms[r.series_id])
        unit = a.user_id if student else a.classroom_id
        out.append(AttendanceLine(
            instance_id=r.id, day=r.day, starts_at=r.starts_at, ends_at=r.ends_at, title=r.title, kind=r.kind,
            outcome=r.outcome, role=a.role, school=school, classroom=room, person=person, expected=expected,
            first_join=a.first_join, last_leave=a.last_leave, present_s=a.present_s, disconnects=a.disconnects,
            stage_count=a.stage_count, stage_s=a.stage_s, sessions=stays.get((r.id, a.role, unit or 0), []),
            classroom_id=a.classroom_id, user_id=a.user_id, uncertain_s=a.uncertain_s))
    return out


def lesson_attendance(session: Session, scope: Scope, instance_id: int, *, now: datetime) -> tuple[LessonRow, list[AttendanceLine]]:
    """One lesson's stored record and attendance (the caller checked it may see the lesson)."""
    inst = session.get(LessonInstance, instance_id)
    if inst is None:
        raise NotFound(f"课次 #{instance_id} 不存在")
    f = ReportFilter(inst.day, inst.day)
    lesson = next((r for r in load_lessons(session, scope, f, now=now) if r.id == instance_id), None)
    if lesson is None:
        raise Forbidden("无权访问该课次")
    return lesson, attendance_lines(session, scope, [lesson])


def term_range(session: Session, term_id: int) -> tuple[date, date]:
    term = session.get(Term, term_id)
    if term is None:
        raise NotFound(f"学期 #{term_id} 不存在")
    return term.start_date, term.end_date


# ---------------------------------------------------------------- tables and files


def pct(value: float | None) -> float | None:
    """A rate as a percentage with one decimal (the files' unit)."""
    return None if value is None else round(value * 100, 1)


TALLY_HEADERS = ("应开课", "已开课", "部分开课", "未开课", "其中无记录", "已停课", "未到期", "开课率(%)",
                 "准时开课", "准时率(%)", "应到", "实到", "到课率(%)", "巡课节数", "巡课覆盖率(%)")


def tally_cells(t: Tally) -> list[Any]:
    return [t.due, t.held, t.partly_held, t.missed, t.unrecorded, t.cancelled, t.pending, pct(t.held_rate),
            t.on_time, pct(t.on_time_rate), t.expected, t.attended, pct(t.attendance_rate), t.patrolled,
            pct(t.patrol_rate)]


@dataclass
class Table:
    """A report as a sheet: a title, the column headers and the rows (files and the API share it)."""

    title: str
    headers: Sequence[str]
    rows: list[list[Any]]


def summary_table(s: Summary) -> Table:
    unit = "日期" if s.bucket == "day" else "周（起始日）"
    rows = [[b.start.isoformat(), *tally_cells(b.tally)] for b in s.series]
    rows += [[f"{KIND_ZH[LessonKind(k)]}", *tally_cells(t)] for k, t in s.by_kind.items()]
    rows.append(["合计", *tally_cells(s.total)])
    return Table(f"开课统计 {s.filter.date_from}—{s.filter.date_to}", (unit, *TALLY_HEADERS), rows)


DIMENSION_ZH = {"kind": "课堂类型", "school": "学校", "teacher": "教师", "subject": "学科", "region": "区县"}


INSIGHT_HEADERS = ("S-T分析节数", "平均Rt", "平均Ch", "接收教室未发言占比(%)")


def breakdown_table(f: ReportFilter, by: str, rows: Sequence[UnitRow]) -> Table:
    return Table(f"按{DIMENSION_ZH[by]}统计 {f.date_from}—{f.date_to}",
                 (DIMENSION_ZH[by], *TALLY_HEADERS, "平均评分", *INSIGHT_HEADERS),
                 [[u.name, *tally_cells(u.tally), u.average_score, u.tally.st_lessons, u.tally.avg_rt, u.tally.avg_ch,
                   pct(u.tally.silent_share)] for u in rows])


def patrol_table(f: ReportFilter, p: PatrolReport) -> Table:
    rows: list[list[Any]] = [[v.name, ROLE_ZH.get(v.role, v.role) if v.role != "researcher" else "教研员", v.visits,
                              v.lessons, v.minutes, v.evaluations, v.average_score] for v in p.visitors]
    rows.append(["合计", "", p.visits, p.patrolled, p.minutes, p.evaluated, p.average_score])
    rows.append(["已开课节数", "", p.held, "", "", "", ""])
    rows.append(["巡课覆盖率(%)", "", pct(p.patrol_rate), "", "", "", ""])
    rows.append(["评课覆盖率(%)", "", pct(p.evaluation_rate), "", "", "", ""])
    return Table(f"巡课统计 {f.date_from}—{f.date_to}",
                 ("巡课人", "身份", "巡课次数", "巡课节数", "巡课分钟", "评课数", "平均评分"), rows)


def lessons_table(f: ReportFilter, lessons: Sequence[LessonRow]) -> Table:
    rows = [[r.id, r.day.isoformat(), f"{r.starts_at:%H:%M}", f"{r.ends_at:%H:%M}", r.title, KIND_ZH[r.kind],
             r.subject, OUTCOME_ZH[r.outcome], f"{r.actual_start:%H:%M:%S}" if r.actual_start else "",
             f"{r.actual_end:%H:%M:%S}" if r.actual_end else "", round(r.duration_s / 60, 1),
             "" if r.on_time is None else ("是" if r.on_time else "否"),
             "" if r.late_s is None else round(r.late_s / 60, 1), r.expected, r.attended, r.visits, r.evaluations]
            for r in lessons]
    return Table(f"课次明细 {f.date_from}—{f.date_to}",
                 ("课次ID", "日期", "开始", "结束", "课程", "类型", "学科", "开课情况", "实际开始", "实际结束",
                  "授课分钟", "准时", "迟到分钟", "应到", "实到", "巡课次数", "评课数"), rows)


def _hm(t: datetime | None) -> str:
    return f"{t:%H:%M:%S}" if t else ""


def attendance_table(title: str, lines: Sequence[AttendanceLine]) -> Table:
    rows = []
    for a in lines:
        stays = "；".join(f"{_hm(b)}–{_hm(e) if e else '课堂结束'}" for b, e in a.sessions)
        rows.append([a.instance_id, a.day.isoformat(), f"{a.starts_at:%H:%M}", f"{a.ends_at:%H:%M}", a.title,
                     KIND_ZH[a.kind], OUTCOME_ZH[a.outcome], ROLE_ZH.get(a.role, a.role), a.school,
                     a.classroom, a.person, "是" if a.expected else "否", _hm(a.first_join),
                     _hm(a.last_leave), round(a.present_s / 60, 1), round(a.uncertain_s / 60, 1), a.disconnects,
                     a.stage_count,
                     round(a.stage_s / 60, 1), stays])
    return Table(title, ("课次ID", "日期", "开始", "结束", "课程", "类型", "开课情况", "参与方", "学校", "教室",
                         "学生/教师", "应到", "首次进入", "最后离开", "在线分钟", "不确定分钟(服务器中断)", "掉线次数",
                         "上台次数", "上台分钟", "进出记录"), rows)


def to_csv(table: Table) -> bytes:
    """UTF-8 with BOM, CRLF, every cell defused (``exports.csv_bytes``)."""
    return csv_bytes(table.headers, table.rows)


def to_xlsx(table: Table) -> bytes:
    """One sheet: headers in bold, frozen, numbers as numbers, every cell defused (``exports.cell``)."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    ws = wb.active
    ws.title = "报表"
    ws.append([cell(h) for h in table.headers])
    for header in ws[1]:
        header.font = Font(bold=True)
    ws.freeze_panes = "A2"
    for row in table.rows:
        ws.append([cell(v) for v in row])
    for i, h in enumerate(table.headers, 1):
        ws.column_dimensions[ws.cell(1, i).column_letter].width = max(10, min(40, len(h) * 2 + 4))
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


FORMATS: dict[str, tuple[str, Callable[[Table], bytes]]] = {
    "csv": ("text/csv; charset=utf-8", to_csv),
    "xlsx": ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", to_xlsx),
}
