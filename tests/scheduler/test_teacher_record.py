"""scheduler.teacher_record: 王老师's development record over the reports' week, worked out by hand.

``build_teacher_world`` adds to ``build_reports_world`` (its table lists the lessons) S-T values on two
held lessons, a reply to an evaluation, two quiz questions (one asked) and a recording.  The API and page
tests reuse it.  王老师 gives L1..L7 (all 专递课堂):

L1 held on time, L2 held late, L3 partly held on time, L4 missed (record), L5 missed (no record),
L6 cancelled, L7 pending → due 5 (3 took place), held rate 3/5, on time 2/3.
S-T: L1 Rt 0.8 Ch 0.2 (讲授型), L2 Rt 0.4 Ch 0.5 (对话型) → mean Rt 0.6, Ch 0.35.
Evaluations: L1 东区教研员 80 (replied), L2 西区教研员 90 → mean 85.0.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from scheduler import teacher_record as tr
from scheduler.access import scope_of
from scheduler.errors import Forbidden, NotFound
from scheduler.patrol_models import Evaluation, EvaluationReply
from scheduler.quizzes_models import QuizKind, QuizQuestion
from scheduler.recordings_models import Recording, RecordingStatus
from scheduler.records_models import TeachingRecord
from tests.scheduler.test_record_reports import NOW, WEEK, ReportsWorld, build_reports_world


def build_teacher_world(session: Any, w: Any) -> ReportsWorld:
    rw = build_reports_world(session, w)
    l1, l2 = rw.lessons["L1"], rw.lessons["L2"]
    for iid, rt, ch, kind in ((l1, 0.8, 0.2, "lecture"), (l2, 0.4, 0.5, "dialogue")):
        rec = session.scalars(select(TeachingRecord).where(TeachingRecord.instance_id == iid)).one()
        rec.st_rt, rec.st_ch, rec.st_type = rt, ch, kind
    ev = session.scalars(select(Evaluation).where(Evaluation.instance_id == l1)).one()
    ev.comment = "=cmd|' /C calc'!A0 板书清楚"
    session.add(EvaluationReply(evaluation_id=ev.id, author_id=w.teacher.id, text="谢谢指导，下节课多留提问时间",
                                created_at=datetime(2026, 9, 7, 12, 0)))
    at = datetime(2026, 9, 7, 8, 20)
    session.add(QuizQuestion(instance_id=l1, kind=QuizKind.single, text="3+4=?", options=["6", "7"], correct=[1],
                             created_by=w.teacher.id, created_at=at, opened_at=at, closed_at=at + timedelta(minutes=1)))
    session.add(QuizQuestion(instance_id=l2, kind=QuizKind.single, text="未提问", options=["是", "否"], correct=[0],
                             created_by=w.teacher.id, created_at=at))
    session.add(Recording(instance_id=l1, status=RecordingStatus.ready, directory="", started_at=at,
                          ended_at=at + timedelta(minutes=40), duration_s=2400.0))
    session.flush()
    return rw


@pytest.fixture
def tw(session: Any, world: Any) -> ReportsWorld:
    return build_teacher_world(session, world)


def _scope(session: Any, user: Any):  # type: ignore[no-untyped-def]
    return scope_of(session, session.merge(user))


def _record(session: Any, reader: Any, teacher: Any) -> tr.DevelopmentRecord:
    return tr.development_record(session, _scope(session, reader), teacher.id, WEEK.date_from, WEEK.date_to, now=NOW)


def test_lessons_by_kind_with_the_report_rules(session: Any, world: Any, tw: ReportsWorld) -> None:
    rec = _record(session, world.teacher, world.teacher)
    t = rec.total
    assert (t.scheduled, t.cancelled, t.pending, t.due) == (7, 1, 1, 5)
    assert (t.held, t.partly_held, t.missed, t.unrecorded, t.on_time) == (2, 1, 2, 1, 2)
    assert t.held_rate == 3 / 5 and t.on_time_rate == 2 / 3
    assert rec.by_kind["dedicated"].due == 5
    assert rec.by_kind["master"].scheduled == 0 and rec.by_kind["famous_school"].scheduled == 0
    assert [r.id for r in rec.lessons] == [tw.lessons[k] for k in ("L1", "L2", "L3", "L4", "L5", "L6", "L7")]
    assert (rec.teacher_name, rec.school_name) == ("王老师", "东区实验小学")
    # 李老师 gives M1 (held) and M2 (missed, no record): none of 王老师's
    other = _record(session, world.teacher2, world.teacher2)
    assert (other.total.held, other.total.missed, other.by_kind["master"].due) == (1, 1, 2)
    assert other.st_points == [] and other.total.avg_rt is None and other.evaluations == []


def test_st_profile_evaluations_quizzes_recordings(session: Any, world: Any, tw: ReportsWorld) -> None:
    rec = _record(session, world.teacher, world.teacher)
    assert [(p.instance_id, p.rt, p.ch, p.lesson_type) for p in rec.st_points] == [
        (tw.lessons["L1"], 0.8, 0.2, "lecture"), (tw.lessons["L2"], 0.4, 0.5, "dialogue")]
    assert (rec.total.st_lessons, rec.total.avg_rt, rec.total.avg_ch) == (2, 0.6, 0.35)
    assert rec.st_types == {"practice": 0, "lecture": 1, "dialogue": 1, "mixed": 0}
    assert [(e.instance_id, e.evaluator, e.total_score) for e in rec.evaluations] == [
        (tw.lessons["L1"], "东区教研员", 80.0), (tw.lessons["L2"], "西区教研员", 90.0)]
    assert [(r.author, r.text) for r in rec.evaluations[0].replies] == [("王老师", "谢谢指导，下节课多留提问时间")]
    assert rec.average_score == 85.0
    assert rec.quizzes == 1  # the prepared question never asked does not count
    assert rec.recordings == 1 and [r.instance_id for r in rec.latest_recordings] == [tw.lessons["L1"]]


def test_who_may_read_a_record(session: Any, world: Any, tw: ReportsWorld) -> None:
    for reader in (world.teacher, world.urban_admin, world.city_admin, world.sysadmin, world.researcher_a,
                   world.researcher_city):
        assert _record(session, reader, world.teacher).total.due == 5, reader.username
    for reader in (world.teacher2, world.rural_admin, world.admin_b, world.researcher_b, world.student,
                   world.terminal_main):
        with pytest.raises(Forbidden):
            _record(session, reader, world.teacher)
    with pytest.raises(NotFound):  # a student has no teacher's record
        _record(session, world.sysadmin, world.student)


def test_the_range_is_the_current_term_by_default(session: Any, world: Any) -> None:
    start, end, term = tr.default_range(session, date(2026, 9, 12), None)
    assert (start, end, term.id if term else None) == (date(2026, 9, 1), date(2027, 1, 22), world.term.id)
    with pytest.raises(NotFound):
        tr.default_range(session, date(2026, 9, 12), 999999)


def test_the_file_has_a_row_per_lesson_and_defuses_formulas(session: Any, world: Any, tw: ReportsWorld) -> None:
    from scheduler.record_reports import to_csv

    table = tr.record_table(_record(session, world.teacher, world.teacher))
    assert len(table.rows) == 7
    first = dict(zip(table.headers, table.rows[0]))
    assert (first["开课情况"], first["准时"], first["Rt"], first["S-T课型"], first["评课数"]) == ("已开课", "是", 0.8,
                                                                                                  "讲授型", 1)
    body = to_csv(table).decode("utf-8-sig")
    assert "'=cmd" in body and ",=cmd" not in body and '"=cmd' not in body


def test_the_queries_do_not_grow_with_the_lessons(session: Any, world: Any, tw: ReportsWorld) -> None:
    from sqlalchemy import event

    from scheduler.models import InstanceStatus, LessonInstance
    from scheduler.patrol_models import EvaluationMode
    from scheduler.records_models import RecordStatus

    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    def queries() -> int:
        session.expire_all()
        statements.clear()
        event.listen(session.get_bind(), "before_cursor_execute", count)
        try:
            _record(session, world.teacher, world.teacher)
        finally:
            event.remove(session.get_bind(), "before_cursor_execute", count)
        return len(statements)

    few = queries()
    # 30 more held lessons of 王老师 in the week, each measured, evaluated, with a quiz question and a recording
    series_id = tw.series["S1"]
    for i in range(30):
        start = datetime(2026, 9, 8, 10, 0) + timedelta(minutes=i)
        inst = LessonInstance(series_id=series_id, day=start.date(), starts_at=start, ends_at=start + timedelta(minutes=40),
                              period_from=2, period_to=2, status=InstanceStatus.held,
                              main_classroom_id=world.main_room.id, teacher_id=world.teacher.id)
        session.add(inst)
        session.flush()
        session.add(TeachingRecord(instance_id=inst.id, status=RecordStatus.held, actual_start=start, on_time=True,
                                   duration_s=2400, expected_receivers=2, attended_receivers=2, st_rt=0.5, st_ch=0.1,
                                   st_type="mixed", computed_at=start + timedelta(hours=1)))
        session.add(Evaluation(instance_id=inst.id, evaluator_id=world.researcher_a.id, mode=EvaluationMode.live,
                               scores={}, total_score=70.0, comment="", created_at=start, updated_at=start))
        session.add(QuizQuestion(instance_id=inst.id, kind=QuizKind.single, text="?", options=["a", "b"], correct=[0],
                                 created_by=world.teacher.id, created_at=start, opened_at=start))
        session.add(Recording(instance_id=inst.id, status=RecordingStatus.ready, directory="", started_at=start))
    session.flush()
    many = queries()
    rec = _record(session, world.teacher, world.teacher)
    assert (rec.total.held, rec.st_types["mixed"], rec.quizzes, rec.recordings) == (32, 30, 31, 31)
    assert many == few, (few, many)
    assert few <= 20, statements  # 18 on SQLite: the reader, the teacher, their scopes and the rows above
