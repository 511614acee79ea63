"""/reports: held, on-time and attendance rates, lesson counts by unit, patrol coverage, attendance exports.

Staff only (admins by scope, researchers in their region, teachers over the
lessons they teach, assist or attend); a region or school outside the caller's
scope answers 403.  Every report is JSON by default and a file with
``?format=csv`` or ``?format=xlsx``.  The rules and formulas are in
``scheduler.record_reports``.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel

from scheduler import clock
from scheduler import record_reports as rr
from scheduler.access import require_instance, require_region, require_school
from scheduler.models import InstanceStatus, LessonKind
from scheduler.records_models import RecordStatus
from server.api.common import PageDep
from server.api.deps import SessionDep, StaffScope
from server.api.times import Timestamp

router = APIRouter(prefix="/reports", tags=["reports"])

Format = Literal["json", "csv", "xlsx"]


def _filter(
    session: SessionDep,
    scope: StaffScope,
    date_from: Annotated[date | None, Query(description="起始日期（含），默认为结束日期在内的最近 30 天")] = None,
    date_to: Annotated[date | None, Query(description="结束日期（含），默认今天")] = None,
    days: Annotated[int | None, Query(ge=1, le=rr.MAX_DAYS + 1,
                                      description="最近 N 天：结束日期（默认今天）及其前 N-1 天（代替起始日期）")] = None,
    region_id: int | None = None,
    school_id: int | None = None,
    kind: LessonKind | None = None,
    term_id: Annotated[int | None, Query(description="整个学期（代替起止日期）")] = None,
) -> rr.ReportFilter:
    if region_id is not None:
        require_region(session, scope, region_id)
    if school_id is not None:
        require_school(session, scope, school_id)
    if term_id is not None:
        date_from, date_to = rr.term_range(session, term_id)
    date_to = date_to or clock.now().date()
    if date_from is None or (days is not None and term_id is None):
        date_from, _ = rr.last_days(days or rr.DEFAULT_DAYS, date_to)
    return rr.ReportFilter(date_from, date_to, region_id, school_id, kind)


FilterDep = Annotated[rr.ReportFilter, Depends(_filter)]


def _file(table: rr.Table, fmt: str, name: str, f: rr.ReportFilter | None = None) -> Response:
    media_type, render = rr.FORMATS[fmt]
    span = f"-{f.date_from}_{f.date_to}" if f is not None else ""
    return Response(render(table), media_type=media_type, headers={
        "Content-Disposition": f'attachment; filename="sanke-{name}{span}.{fmt}"', "Cache-Control": "private"})


_FILES: dict[int | str, dict[str, Any]] = {200: {"content": {"text/csv": {}, rr.FORMATS["xlsx"][0]: {}}}}


class FilterOut(BaseModel):
    date_from: date
    date_to: date
    region_id: int | None
    school_id: int | None
    kind: LessonKind | None


class TallyOut(BaseModel):
    scheduled: int
    cancelled: int
    pending: int
    due: int
    held: int
    partly_held: int
    missed: int
    unrecorded: int
    on_time: int
    expected: int
    attended: int
    patrolled: int
    evaluated: int
    held_rate: float | None
    full_held_rate: float | None
    on_time_rate: float | None
    attendance_rate: float | None
    patrol_rate: float | None


def _tally(t: rr.Tally) -> TallyOut:
    return TallyOut(**t.as_dict())


def _filter_out(f: rr.ReportFilter) -> FilterOut:
    return FilterOut(date_from=f.date_from, date_to=f.date_to, region_id=f.region_id, school_id=f.school_id, kind=f.kind)


class BucketOut(BaseModel):
    start: date
    tally: TallyOut


class SummaryOut(BaseModel):
    filter: FilterOut
    bucket: Literal["day", "week"]
    total: TallyOut
    series: list[BucketOut]
    by_kind: dict[str, TallyOut]
    average_score: float | None
    visits: int


@router.get("/summary", response_model=SummaryOut, responses=_FILES)
def summary(session: SessionDep, scope: StaffScope, f: FilterDep,
            bucket: Literal["day", "week"] | None = None, format: Format = "json") -> Any:
    """开课率、准时率、到课率 over the range, per day (or week) and per lesson kind."""
    s = rr.summary(session, scope, f, now=clock.now(), bucket=bucket)
    if format != "json":
        return _file(rr.summary_table(s), format, "summary", f)
    return SummaryOut(filter=_filter_out(f), bucket=s.bucket, total=_tally(s.total),  # type: ignore[arg-type]
                      series=[BucketOut(start=b.start, tally=_tally(b.tally)) for b in s.series],
                      by_kind={k: _tally(t) for k, t in s.by_kind.items()}, average_score=s.average_score,
                      visits=s.visits)


class UnitOut(BaseModel):
    key: str
    name: str
    tally: TallyOut
    average_score: float | None


class BreakdownOut(BaseModel):
    filter: FilterOut
    by: str
    data: list[UnitOut]


@router.get("/breakdown", response_model=BreakdownOut, responses=_FILES)
def breakdown(session: SessionDep, scope: StaffScope, f: FilterDep,
              by: Literal["kind", "school", "teacher", "subject", "region"] = "school",
              format: Format = "json") -> Any:
    """Lesson counts and rates by kind, school, teacher, subject or district."""
    rows = rr.breakdown(session, scope, f, by, now=clock.now())
    if format != "json":
        return _file(rr.breakdown_table(f, by, rows), format, f"by-{by}", f)
    return BreakdownOut(filter=_filter_out(f), by=by, data=[
        UnitOut(key=u.key, name=u.name, tally=_tally(u.tally), average_score=u.average_score) for u in rows])


class VisitorOut(BaseModel):
    user_id: int
    name: str
    role: str
    visits: int
    lessons: int
    minutes: float
    evaluations: int
    average_score: float | None


class PatrolOut(BaseModel):
    filter: FilterOut
    held: int
    patrolled: int
    evaluated: int
    visits: int
    minutes: float
    patrol_rate: float | None
    evaluation_rate: float | None
    average_score: float | None
    visitors: list[VisitorOut]


@router.get("/patrol", response_model=PatrolOut, responses=_FILES)
def patrol(session: SessionDep, scope: StaffScope, f: FilterDep, format: Format = "json") -> Any:
    """巡课覆盖率: share of held lessons patrolled and evaluated; visits and average scores per visitor."""
    p = rr.patrol_coverage(session, scope, f, now=clock.now())
    if format != "json":
        return _file(rr.patrol_table(f, p), format, "patrol", f)
    return PatrolOut(filter=_filter_out(f), held=p.held, patrolled=p.patrolled, evaluated=p.evaluated,
                     visits=p.visits, minutes=p.minutes, patrol_rate=p.patrol_rate,
                     evaluation_rate=p.evaluation_rate, average_score=p.average_score,
                     visitors=[VisitorOut(**v.__dict__) for v in p.visitors])


class LessonOutcomeOut(BaseModel):
    id: int
    day: date
    starts_at: Timestamp
    ends_at: Timestamp
    title: str
    kind: LessonKind
    subject: str
    status: InstanceStatus
    outcome: rr.Outcome
    outcome_label: str
    record_status: RecordStatus | None
    actual_start: Timestamp | None
    actual_end: Timestamp | None
    duration_s: int
    late_s: int | None
    on_time: bool | None
    expected: int
    attended: int
    visits: int
    evaluations: int
    recording_id: int | None


def _lesson_out(r: rr.LessonRow) -> LessonOutcomeOut:
    return LessonOutcomeOut(
        id=r.id, day=r.day, starts_at=r.starts_at, ends_at=r.ends_at, title=r.title, kind=r.kind, subject=r.subject,
        status=r.status, outcome=r.outcome, outcome_label=rr.OUTCOME_ZH[r.outcome], record_status=r.record_status,
        actual_start=r.actual_start, actual_end=r.actual_end, duration_s=r.duration_s, late_s=r.late_s,
        on_time=r.on_time, expected=r.expected, attended=r.attended, visits=r.visits, evaluations=r.evaluations,
        recording_id=r.recording_id)


class LessonOutcomePage(BaseModel):
    data: list[LessonOutcomeOut]
    count: int


@router.get("/lessons", response_model=LessonOutcomePage, responses=_FILES)
def lessons(session: SessionDep, scope: StaffScope, f: FilterDep, page: PageDep,
            outcome: rr.Outcome | None = None, format: Format = "json") -> Any:
    """The report's lessons with their outcome and stored record, latest first (files: every lesson)."""
    rows = rr.load_lessons(session, scope, f, now=clock.now())
    if outcome is not None:
        rows = [r for r in rows if r.outcome is outcome]
    rows.reverse()
    if format != "json":
        return _file(rr.lessons_table(f, rows), format, "lessons", f)
    return LessonOutcomePage(data=[_lesson_out(r) for r in rows[page.offset: page.offset + page.limit]],
                             count=len(rows))


class StayOut(BaseModel):
    joined: Timestamp
    left: Timestamp | None


class AttendanceLineOut(BaseModel):
    instance_id: int
    day: date
    title: str
    role: str
    school: str
    classroom: str
    person: str
    expected: bool
    first_join: Timestamp | None
    last_leave: Timestamp | None
    present_s: int
    disconnects: int
    stage_count: int
    stage_s: int
    sessions: list[StayOut]
    classroom_id: int | None = None
    user_id: int | None = None
    """The row's classroom or home student (names repeat across schools: match rows by these)."""
    uncertain_s: int = 0
    """Seconds after ``present_s`` it may still have been there (sessions cut by a server crash)."""


def _line_out(a: rr.AttendanceLine) -> AttendanceLineOut:
    return AttendanceLineOut(
        instance_id=a.instance_id, day=a.day, title=a.title, role=a.role, school=a.school, classroom=a.classroom,
        person=a.person, expected=a.expected, first_join=a.first_join, last_leave=a.last_leave, present_s=a.present_s,
        disconnects=a.disconnects, stage_count=a.stage_count, stage_s=a.stage_s,
        sessions=[StayOut(joined=b, left=e) for b, e in a.sessions], classroom_id=a.classroom_id, user_id=a.user_id,
        uncertain_s=a.uncertain_s)


class AttendancePage(BaseModel):
    data: list[AttendanceLineOut]
    count: int


@router.get("/attendance", response_model=AttendancePage, responses=_FILES)
def attendance(session: SessionDep, scope: StaffScope, f: FilterDep, page: PageDep, format: Format = "json") -> Any:
    """Attendance of every recorded lesson of the range or term (``term_id``): per classroom and home student,
    first join, last leave, minutes, every stay (join to leave)."""
    lessons = [r for r in rr.load_lessons(session, scope, f, now=clock.now()) if r.record_status is not None]
    if format != "json":
        lines = rr.attendance_lines(session, scope, lessons)
        return _file(rr.attendance_table("到课明细", lines), format, "attendance", f)
    # page by lessons' lines without loading the whole range's stays: lines of the lessons of the page
    lines = rr.attendance_lines(session, scope, lessons)
    return AttendancePage(data=[_line_out(a) for a in lines[page.offset: page.offset + page.limit]], count=len(lines))


class LessonReportOut(BaseModel):
    lesson: LessonOutcomeOut
    attendance: list[AttendanceLineOut]


@router.get("/lessons/{instance_id}", response_model=LessonReportOut, responses=_FILES)
def lesson(instance_id: int, session: SessionDep, scope: StaffScope, format: Format = "json") -> Any:
    """One lesson's stored record (with ``recording_id``) and attendance with every stay; files: its attendance."""
    require_instance(session, scope, instance_id)
    row, lines = rr.lesson_attendance(session, scope, instance_id, now=clock.now())
    if format != "json":
        return _file(rr.attendance_table(f"到课明细 {row.title}", lines), format, f"lesson-{instance_id}-attendance")
    return LessonReportOut(lesson=_lesson_out(row), attendance=[_line_out(a) for a in lines])
