"""scheduler.record_reports: the report formulas against hand-computed numbers (SQLite and PostgreSQL).

``build_reports_world`` writes a small week of lessons with stored teaching records,
attendance rows, a few session events, patrol visits and evaluations; the
numbers each test expects are worked out by hand in the comments of that
function.  The API tests (``tests/server/api/routes/test_reports_api.py``) reuse it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import pytest

from scheduler import record_reports as rr
from scheduler.access import scope_of
from scheduler.errors import Forbidden, Invalid
from scheduler.models import (
    InstanceStatus,
    LessonInstance,
    LessonKind,
    LessonSeries,
    SeriesParticipant,
    SeriesReceiver,
    SeriesStatus,
)
from scheduler.patrol_models import Evaluation, EvaluationMode, PatrolVisit, VisitEnd
from scheduler.records_models import (
    AttendanceRecord,
    RecordStatus,
    SessionEvent,
    TeachingRecord,
)

NOW = datetime(2026, 9, 12, 9, 0)
WEEK = rr.ReportFilter(date(2026, 9, 7), date(2026, 9, 14))


@dataclass
class ReportsWorld:
    lessons: dict[str, int]
    series: dict[str, int]


def _series(session: Any, w: Any, key: str, kind: LessonKind, subject: str, room: Any, teacher: Any,
            receivers: list[Any], participants: list[Any]) -> LessonSeries:
    s = LessonSeries(kind=kind, title=f"{subject}（{key}）", subject=subject, grade="三年级", term_id=w.term.id,
                     main_classroom_id=room.id, main_teacher_id=teacher.id, weekday=1, period_from=1, period_to=1,
                     status=SeriesStatus.approved, created_by_id=w.sysadmin.id, created_at=datetime(2026, 8, 20))
    session.add(s)
    session.flush()
    session.add_all(SeriesReceiver(series_id=s.id, classroom_id=r.id) for r in receivers)
    session.add_all(SeriesParticipant(series_id=s.id, user_id=u.id) for u in participants)
    session.flush()
    return s


def build_reports_world(session: Any, w: Any) -> ReportsWorld:
    """Lessons of 2026-09-07..14 (now: 2026-09-12 09:00); the report of that week for a system admin:

    =====  ==========  =========  ========================================  ==============  =====================
    lesson series      outcome    on time / attendance (expected/attended)  patrol visits   evaluations
    =====  ==========  =========  ========================================  ==============  =====================
    L1     S1 数学      held       on time; recv_room ✓, recv_room_b ✓ 2/2   A 600 s         A 80
    L2     S1          held       late;    recv_room ✓, recv_room_b ✗ 2/1   B 300, A 120 s  B 90
    L3     S1          partly     on time; recv_room ✗, recv_room_b ✓ 2/1
    L4     S1          missed     (record)
    L5     S1          missed     no record, ended
    L6     S1          cancelled
    L7     S1          pending    (2026-09-14)
    M1     S2 语文      held       on time; recv_room2 ✗, student ✓ 2/1
    M2     S2          missed     no record (status held)
    F1     S3 英语      held       on time; student ✓ 1/1                                    city (replay, unscored)
    =====  ==========  =========  ========================================  ==============  =====================

    S1: dedicated, main_room (东区实验小学) → recv_room (东区石桥村小), recv_room_b (西区山口村小), 王老师;
    S2: master, main_room2 → recv_room2 (石桥村小) + the student (石桥村小), 李老师;
    S3: famous_school, main_room → the student, 赵老师.
    """
    s1 = _series(session, w, "S1", LessonKind.dedicated, "数学", w.main_room, w.teacher, [w.recv_room, w.recv_room_b], [])
    s2 = _series(session, w, "S2", LessonKind.master, "语文", w.main_room2, w.teacher2, [w.recv_room2], [w.student])
    s3 = _series(session, w, "S3", LessonKind.famous_school, "英语", w.main_room, w.teacher_b, [], [w.student])
    ids: dict[str, int] = {}

    def lesson(key: str, s: LessonSeries, day: int, hour: int, status: InstanceStatus, teacher: Any) -> LessonInstance:
        start = datetime.combine(date(2026, 9, day), time(hour, 0))
        inst = LessonInstance(series_id=s.id, day=start.date(), starts_at=start, ends_at=start + timedelta(minutes=40),
                              period_from=1, period_to=1, status=status, main_classroom_id=s.main_classroom_id,
                              teacher_id=teacher.id)
        session.add(inst)
        session.flush()
        ids[key] = inst.id
        return inst

    def record(inst: LessonInstance, status: RecordStatus, on_time: bool | None, att: dict[Any, int],
               students: dict[Any, int] | None = None) -> None:
        started = inst.starts_at + timedelta(minutes=1 if on_time else 8) if status is not RecordStatus.missed else None
        expected = len(att) + len(students or {})
        attended = sum(1 for v in att.values() if v) + sum(1 for v in (students or {}).values() if v)
        session.add(TeachingRecord(instance_id=inst.id, status=status, actual_start=started,
                                   actual_end=inst.ends_at if started else None,
                                   duration_s=2340 if status is RecordStatus.held else (600 if started else 0),
                                   late_s=None if started is None else (started - inst.starts_at).seconds,
                                   on_time=on_time, expected_receivers=expected, attended_receivers=attended,
                                   computed_at=inst.ends_at + timedelta(minutes=10)))
        session.flush()
        if started:
            session.add(AttendanceRecord(instance_id=inst.id, role="main", classroom_id=inst.main_classroom_id,
                                         first_join=inst.starts_at, last_leave=inst.ends_at, present_s=2400))
        for room, secs in att.items():
            session.add(AttendanceRecord(instance_id=inst.id, role="receiving", classroom_id=room.id,
                                         first_join=inst.starts_at + timedelta(seconds=30) if secs else None,
                                         last_leave=inst.ends_at if secs else None, present_s=secs))
        for user, secs in (students or {}).items():
            session.add(AttendanceRecord(instance_id=inst.id, role="student", user_id=user.id,
                                         first_join=inst.starts_at if secs else None,
                                         last_leave=inst.ends_at if secs else None, present_s=secs))
        session.flush()

    held, missed = InstanceStatus.held, InstanceStatus.missed
    l1 = lesson("L1", s1, 7, 8, held, w.teacher)
    record(l1, RecordStatus.held, True, {w.recv_room: 2370, w.recv_room_b: 2000})
    l2 = lesson("L2", s1, 8, 8, held, w.teacher)
    record(l2, RecordStatus.held, False, {w.recv_room: 2300, w.recv_room_b: 0})
    l3 = lesson("L3", s1, 9, 8, held, w.teacher)
    record(l3, RecordStatus.partly_held, True, {w.recv_room: 0, w.recv_room_b: 500})
    l4 = lesson("L4", s1, 10, 8, missed, w.teacher)
    record(l4, RecordStatus.missed, None, {w.recv_room: 0, w.recv_room_b: 0})
    lesson("L5", s1, 11, 8, held, w.teacher)
    lesson("L6", s1, 11, 14, InstanceStatus.cancelled, w.teacher)
    lesson("L7", s1, 14, 8, InstanceStatus.scheduled, w.teacher)
    m1 = lesson("M1", s2, 8, 10, held, w.teacher2)
    record(m1, RecordStatus.held, True, {w.recv_room2: 0}, {w.student: 2100})
    lesson("M2", s2, 10, 10, held, w.teacher2)
    f1 = lesson("F1", s3, 9, 10, held, w.teacher_b)
    record(f1, RecordStatus.held, True, {}, {w.student: 1800})

    # L1's receiving classroom dropped once: two stays in the attendance export
    for sec, kind in ((30, "join"), (600, "disconnect"), (620, "resume"), (2400, "leave")):
        session.add(SessionEvent(instance_id=l1.id, at=l1.starts_at + timedelta(seconds=sec), kind=kind,
                                 participant_id="r1", user_id=w.terminal_recv.id, classroom_id=w.recv_room.id,
                                 role="receiving", data=None))

    def visit(inst: LessonInstance, who: Any, secs: int) -> None:
        at = inst.starts_at + timedelta(minutes=5)
        session.add(PatrolVisit(researcher_id=who.id, instance_id=inst.id, started_at=at,
                                last_seen_at=at + timedelta(seconds=secs), ended_at=at + timedelta(seconds=secs),
                                end_reason=VisitEnd.left, duration_seconds=secs))

    def evaluation(inst: LessonInstance, who: Any, score: float | None, mode: EvaluationMode) -> None:
        session.add(Evaluation(instance_id=inst.id, evaluator_id=who.id, mode=mode, scores={}, total_score=score,
                               comment="", created_at=inst.ends_at, updated_at=inst.ends_at))

    visit(l1, w.researcher_a, 600)
    visit(l2, w.researcher_b, 300)
    visit(l2, w.researcher_a, 120)
    evaluation(l1, w.researcher_a, 80.0, EvaluationMode.live)
    evaluation(l2, w.researcher_b, 90.0, EvaluationMode.live)
    evaluation(f1, w.researcher_city, None, EvaluationMode.replay)
    session.flush()
    return ReportsWorld(ids, {"S1": s1.id, "S2": s2.id, "S3": s3.id})


@pytest.fixture
def rw(session: Any, world: Any) -> ReportsWorld:
    return build_reports_world(session, world)


def _scope(session: Any, user: Any):  # type: ignore[no-untyped-def]
    return scope_of(session, session.merge(user))


def test_outcome_rules() -> None:
    end = datetime(2026, 9, 7, 8, 40)
    assert rr.outcome_of(InstanceStatus.cancelled, None, end, NOW) is rr.Outcome.cancelled
    assert rr.outcome_of(InstanceStatus.held, RecordStatus.partly_held, end, NOW) is rr.Outcome.partly_held
    assert rr.outcome_of(InstanceStatus.held, None, end, NOW) is rr.Outcome.missed  # ended, no record
    assert rr.outcome_of(InstanceStatus.live, None, NOW + timedelta(minutes=5), NOW) is rr.Outcome.pending
    t = rr.Tally(held=3, partly_held=1, missed=4, on_time=2, expected=10, attended=7, patrolled=1)
    assert (t.due, t.held_rate, t.full_held_rate, t.on_time_rate) == (8, 0.5, 0.375, 0.5)
    assert (t.attendance_rate, t.patrol_rate) == (0.7, 0.25)
    assert rr.Tally().held_rate is None and rr.Tally().attendance_rate is None


def test_a_reversed_or_too_long_range_is_refused() -> None:
    with pytest.raises(Invalid):
        rr.ReportFilter(date(2026, 9, 8), date(2026, 9, 7))
    with pytest.raises(Invalid):
        rr.ReportFilter(date(2025, 1, 1), date(2026, 9, 7))


def test_summary_totals_and_rates(session: Any, world: Any, rw: ReportsWorld) -> None:
    s = rr.summary(session, _scope(session, world.sysadmin), WEEK, now=NOW)
    t = s.total
    assert (t.scheduled, t.cancelled, t.pending) == (10, 1, 1)
    assert (t.held, t.partly_held, t.missed, t.unrecorded, t.due) == (4, 1, 3, 2, 8)
    assert t.held_rate == 5 / 8 and t.full_held_rate == 4 / 8
    assert t.on_time == 4 and t.on_time_rate == 4 / 5
    assert (t.expected, t.attended) == (9, 6) and t.attendance_rate == 6 / 9
    assert (t.patrolled, t.evaluated) == (2, 3) and t.patrol_rate == 2 / 5
    assert s.average_score == 85.0 and s.visits == 3
    assert s.bucket == "day" and [b.start for b in s.series][:2] == [date(2026, 9, 7), date(2026, 9, 8)]
    by_day = {b.start: b.tally for b in s.series}
    assert (by_day[date(2026, 9, 8)].held, by_day[date(2026, 9, 8)].on_time) == (2, 1)  # L2 late, M1 on time
    assert by_day[date(2026, 9, 10)].missed == 2 and by_day[date(2026, 9, 10)].held_rate == 0
    assert by_day[date(2026, 9, 12)].scheduled == 0 and by_day[date(2026, 9, 12)].held_rate is None
    d, m, f = (s.by_kind[k] for k in ("dedicated", "master", "famous_school"))
    assert (d.scheduled, d.took_place, d.due, d.on_time, d.expected, d.attended) == (7, 3, 5, 2, 6, 4)
    assert (m.scheduled, m.held, m.missed, m.expected, m.attended) == (2, 1, 1, 2, 1)
    assert (f.held, f.on_time_rate, f.attendance_rate) == (1, 1.0, 1.0)
    weekly = rr.summary(session, _scope(session, world.sysadmin), WEEK, now=NOW, bucket="week")
    assert [b.start for b in weekly.series] == [date(2026, 9, 7), date(2026, 9, 14)]
    assert weekly.series[0].tally.due == 8 and weekly.series[1].tally.pending == 1


def test_breakdown_by_school_and_district_counts_givers_and_receivers(session: Any, world: Any,
                                                                      rw: ReportsWorld) -> None:
    scope = _scope(session, world.sysadmin)
    schools = {u.name: u.tally for u in rr.breakdown(session, scope, WEEK, "school", now=NOW)}
    assert set(schools) == {"东区实验小学", "东区石桥村小", "西区山口村小"}
    urban, rural, rural_b = schools["东区实验小学"], schools["东区石桥村小"], schools["西区山口村小"]
    assert urban.scheduled == 10 and urban.held_rate == 5 / 8
    assert (urban.expected, urban.attendance_rate) == (0, None)  # a giving school has no receivers of its own
    assert rural.scheduled == 10 and (rural.expected, rural.attended) == (6, 4)
    assert (rural_b.scheduled, rural_b.due, rural_b.took_place) == (7, 5, 3)
    assert (rural_b.expected, rural_b.attended) == (3, 2)
    assert rural.expected + rural_b.expected == 9  # every expected receiver counted once, at its own school
    districts = {u.name: u.tally for u in rr.breakdown(session, scope, WEEK, "region", now=NOW)}
    assert (districts["东区"].scheduled, districts["东区"].expected, districts["东区"].attended) == (10, 6, 4)
    assert (districts["西区"].scheduled, districts["西区"].expected, districts["西区"].attended) == (7, 3, 2)


def test_breakdown_by_kind_teacher_and_subject(session: Any, world: Any, rw: ReportsWorld) -> None:
    scope = _scope(session, world.sysadmin)
    kinds = rr.breakdown(session, scope, WEEK, "kind", now=NOW)
    assert [(u.key, u.name, u.tally.scheduled) for u in kinds] == [
        ("dedicated", "专递课堂", 7), ("master", "名师课堂", 2), ("famous_school", "名校网络课堂", 1)]
    assert kinds[0].average_score == 85.0 and kinds[2].average_score is None
    teachers = {u.name: u.tally.scheduled for u in rr.breakdown(session, scope, WEEK, "teacher", now=NOW)}
    assert teachers == {"王老师": 7, "李老师": 2, "赵老师": 1}
    subjects = {u.name: (u.tally.scheduled, u.tally.held_rate) for u in rr.breakdown(session, scope, WEEK, "subject", now=NOW)}
    assert subjects == {"数学": (7, 3 / 5), "语文": (2, 1 / 2), "英语": (1, 1.0)}
    with pytest.raises(Invalid):
        rr.breakdown(session, scope, WEEK, "weather", now=NOW)


def test_reports_are_scoped_to_the_caller(session: Any, world: Any, rw: ReportsWorld) -> None:
    west = rr.summary(session, _scope(session, world.researcher_b), WEEK, now=NOW).total  # sees S1 only
    assert (west.scheduled, west.held, west.partly_held, west.missed, west.expected, west.attended) == (7, 2, 1, 2, 6, 4)
    schools = rr.breakdown(session, _scope(session, world.researcher_b), WEEK, "school", now=NOW)
    assert [u.name for u in schools] == ["西区山口村小"]
    mine = rr.summary(session, _scope(session, world.teacher2), WEEK, now=NOW).total  # a teacher: own lessons
    assert (mine.scheduled, mine.held, mine.missed) == (2, 1, 1)
    region_b = rr.ReportFilter(WEEK.date_from, WEEK.date_to, region_id=world.district_b.id)
    assert rr.summary(session, _scope(session, world.sysadmin), region_b, now=NOW).total.scheduled == 7
    only_master = rr.ReportFilter(WEEK.date_from, WEEK.date_to, kind=LessonKind.master)
    assert rr.summary(session, _scope(session, world.city_admin), only_master, now=NOW).total.scheduled == 2
    with pytest.raises(Forbidden):
        rr.summary(session, _scope(session, world.student), WEEK, now=NOW)


def test_patrol_coverage_and_visitors(session: Any, world: Any, rw: ReportsWorld) -> None:
    p = rr.patrol_coverage(session, _scope(session, world.sysadmin), WEEK, now=NOW)
    assert (p.held, p.patrolled, p.evaluated, p.visits, p.minutes) == (5, 2, 3, 3, 17.0)
    assert p.patrol_rate == 2 / 5 and p.evaluation_rate == 3 / 5 and p.average_score == 85.0
    rows = {v.name: (v.visits, v.lessons, v.minutes, v.evaluations, v.average_score) for v in p.visitors}
    assert rows == {"东区教研员": (2, 2, 12.0, 1, 80.0), "西区教研员": (1, 1, 5.0, 1, 90.0),
                    "市教研员": (0, 0, 0.0, 1, None)}
    own = rr.patrol_coverage(session, _scope(session, world.researcher_a), WEEK, now=NOW)
    assert [v.name for v in own.visitors] == ["东区教研员"] and own.patrolled == 2
    assert rr.patrol_coverage(session, _scope(session, world.teacher), WEEK, now=NOW).visitors == []


def test_attendance_lines_with_every_stay(session: Any, world: Any, rw: ReportsWorld) -> None:
    lesson, lines = rr.lesson_attendance(session, _scope(session, world.sysadmin), rw.lessons["L1"], now=NOW)
    assert lesson.outcome is rr.Outcome.held
    assert [(a.role, a.classroom, a.expected) for a in lines] == [
        ("main", "实验小学 301 主讲教室", False), ("receiving", "石桥村小 一年级教室", True),
        ("receiving", "山口村小 教室", True)]
    start = datetime(2026, 9, 7, 8, 0)
    assert lines[1].sessions == [(start + timedelta(seconds=30), start + timedelta(seconds=600)),
                                 (start + timedelta(seconds=620), start + timedelta(seconds=2400))]
    table = rr.attendance_table("到课明细", lines)
    assert table.rows[1][table.headers.index("进出记录")] == "08:00:30–08:10:00；08:10:20–08:40:00"
    assert table.rows[1][table.headers.index("在线分钟")] == 39.5
    _, student_lines = rr.lesson_attendance(session, _scope(session, world.sysadmin), rw.lessons["M1"], now=NOW)
    assert [(a.role, a.person, a.school, a.present_s) for a in student_lines if a.role == "student"] == [
        ("student", "小明", "东区石桥村小", 2100)]


def test_classroom_insight_averages_by_teacher_and_the_lessons_where_no_classroom_spoke(
        session: Any, world: Any, rw: ReportsWorld) -> None:
    """L1 (a lecture: Rt 0.8, Ch 0.2; one of its two classrooms spoke), L2 (a dialogue: Rt 0.5, Ch 0.5; no
    classroom spoke), L3 (held partly, speech not measured: left out), M1 (Rt 0.4, Ch 0.3, its classroom
    spoke) and F1 (Rt 0.9, Ch 0.1, no receiving classroom: not in the silent share)."""
    measured = {"L1": (0.8, 0.2, 1), "L2": (0.5, 0.5, 0), "M1": (0.4, 0.3, 1), "F1": (0.9, 0.1, 0)}
    for key, (rt, ch, spoke) in measured.items():
        row = session.get(TeachingRecord, rw.lessons[key])
        row.st_rt, row.st_ch, row.receivers_spoke = rt, ch, spoke
    session.flush()
    scope = _scope(session, world.sysadmin)
    teachers = {u.name: u.tally for u in rr.breakdown(session, scope, WEEK, "teacher", now=NOW)}
    wang = teachers["王老师"]
    assert (wang.st_lessons, wang.avg_rt, wang.avg_ch, wang.silent_share) == (2, 0.65, 0.35, 0.5)
    assert (teachers["赵老师"].st_lessons, teachers["赵老师"].silent_share) == (1, None)
    total = rr.summary(session, scope, WEEK, now=NOW).total
    assert (total.st_lessons, total.avg_rt, total.silent_share) == (4, 0.65, 1 / 3)
    table = rr.breakdown_table(WEEK, "teacher", rr.breakdown(session, scope, WEEK, "teacher", now=NOW))
    assert table.headers[-4:] == rr.INSIGHT_HEADERS
    assert next(r for r in table.rows if r[0] == "王老师")[-4:] == [2, 0.65, 0.35, 50.0]
