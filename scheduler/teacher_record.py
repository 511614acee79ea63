"""教师专业发展档案: one teacher's record over a term (or dates), from what the platform stored.

* **Lessons** the teacher gave (the instance's teacher: a substitute gets the lesson), per kind
  (专递课堂, 名师课堂, 名校网络课堂) and in total, with the outcome rules and rates of
  ``scheduler.record_reports`` (held, on time, ...): :func:`record_reports.load_lessons` with the
  teacher's own scope, so the record reads the same whoever opens it.
* **S-T profile** (``scheduler.st_analysis``): over the held and partly held lessons whose speech was
  measured, the mean Rt and Ch, the number of lessons of each type (练习型, 讲授型, 对话型, 混合型; the
  type stored with the teaching record) and one point (Rt, Ch) per lesson.
* **Evaluations** (评课) of those lessons, with the teacher's replies, and the mean of the scored totals.
* **Quick quizzes**: how many questions were put to the class (opened) in those lessons.
* **网络教研** (``scheduler.research``): the activities set up in the range that the teacher led, taught a
  lesson in (授课, e.g. one side of a 同课异构) or attended (took part as a participant).
* **Recordings** in the resource pool (``recordings.library``, as the reader may see it): how many, and
  the newest few.

Who may read it (:func:`require_reader`): the teacher themself; admins of the teacher's school and of the
regions above it; researchers of a region holding that school.  A handful of queries whatever the number of
lessons (ids go in chunks of 500).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler import recordings, research
from scheduler import record_reports as rr
from scheduler.access import Scope, require_school, scope_of
from scheduler.errors import Forbidden, NotFound
from scheduler.exports import KIND_ZH
from scheduler.models import LessonKind, Role, School, Term, User
from scheduler.patrol_models import Evaluation, EvaluationMode
from scheduler.quizzes_models import QuizQuestion
from scheduler.research_models import MemberPart
from scheduler.st_analysis import LESSON_TYPES
from scheduler.terms import current_term

LATEST_RECORDINGS = 5
"""How many of the newest recordings the record lists."""
_CHUNK = 500


def _chunks(ids: Iterable[int]) -> Iterable[list[int]]:
    ordered = sorted(set(ids))
    for i in range(0, len(ordered), _CHUNK):
        yield ordered[i: i + _CHUNK]


@dataclass
class StPoint:
    """One measured lesson on the Rt–Ch plane."""

    instance_id: int
    day: date
    title: str
    kind: LessonKind
    rt: float
    ch: float
    lesson_type: str | None
    """``practice``, ``lecture``, ``dialogue`` or ``mixed`` (``st_analysis.LESSON_TYPES``)."""


@dataclass
class Reply:
    author: str
    text: str
    created_at: datetime


@dataclass
class EvaluationLine:
    id: int
    instance_id: int
    day: date
    title: str
    evaluator: str
    mode: EvaluationMode
    total_score: float | None
    """Weighted total on 100; None until every item is scored."""
    comment: str
    updated_at: datetime
    replies: list[Reply] = field(default_factory=list)


@dataclass
class RecordingLine:
    recording_id: int
    instance_id: int
    day: date
    title: str
    kind: LessonKind
    subject: str


@dataclass
class ResearchLine:
    led: int
    taught: int
    attended: int
    """As a participant who took part (opened it, commented or scored)."""
    activities: list[research.TeacherActivity]


@dataclass
class DevelopmentRecord:
    teacher_id: int
    teacher_name: str
    school_name: str
    date_from: date
    date_to: date
    term: Term | None
    """The term the range is (None: dates given)."""
    total: rr.Tally
    by_kind: dict[str, rr.Tally]
    lessons: list[rr.LessonRow]
    st_points: list[StPoint]
    st_types: dict[str, int]
    """Measured lessons per S-T type, every type present (0 included)."""
    evaluations: list[EvaluationLine]
    average_score: float | None
    quizzes: int
    recordings: int
    latest_recordings: list[RecordingLine]
    research: ResearchLine


def require_reader(session: Session, scope: Scope, teacher_id: int) -> User:
    """The teacher whose record ``scope`` may read (see the module docstring), or Forbidden / NotFound."""
    if scope.role not in (Role.admin, Role.researcher, Role.teacher):
        raise Forbidden("当前角色无权查看教师发展档案")
    teacher = session.get(User, teacher_id)
    if teacher is None or teacher.role is not Role.teacher:
        raise NotFound(f"教师 #{teacher_id} 不存在")
    if scope.user_id == teacher.id:
        return teacher
    if scope.role in (Role.admin, Role.researcher) and teacher.school_id is not None:
        try:
            require_school(session, scope, teacher.school_id)
        except Forbidden:
            pass
        else:
            return teacher
    elif scope.everywhere:
        return teacher
    raise Forbidden("无权查看该教师的发展档案")


def default_range(session: Session, today: date, term_id: int | None) -> tuple[date, date, Term | None]:
    """The range of a record: the term ``term_id``, else the current term (``terms.current_term``), else the
    last ``record_reports.DEFAULT_DAYS`` days."""
    if term_id is not None:
        term = session.get(Term, term_id)
        if term is None:
            raise NotFound(f"学期 #{term_id} 不存在")
    else:
        term = current_term(session, today)
    if term is None:
        start, end = rr.last_days(rr.DEFAULT_DAYS, today)
        return start, end, None
    return term.start_date, term.end_date, term


def development_record(session: Session, scope: Scope, teacher_id: int, date_from: date, date_to: date, *,
                       now: datetime, term: Term | None = None) -> DevelopmentRecord:
    """The record of ``teacher_id`` over ``date_from``..``date_to`` (both inclusive) for the reader ``scope``."""
    teacher = require_reader(session, scope, teacher_id)
    f = rr.ReportFilter(date_from, date_to, teacher_id=teacher.id)
    lessons = rr.load_lessons(session, scope_of(session, teacher), f, now=now)
    by_kind = {k.value: rr.tally(r for r in lessons if r.kind is k) for k in LessonKind}
    took = (rr.Outcome.held, rr.Outcome.partly_held)
    points = [StPoint(r.id, r.day, r.title, r.kind, r.st_rt, r.st_ch, r.st_type) for r in lessons
              if r.outcome in took and r.st_rt is not None and r.st_ch is not None]
    types = {t: 0 for t in LESSON_TYPES}
    for p in points:
        if p.lesson_type in types:
            types[p.lesson_type] += 1
    by_id = {r.id: r for r in lessons}
    evaluations: list[EvaluationLine] = []
    rows: list[Evaluation] = []
    quizzes = 0
    for ids in _chunks(by_id):
        rows.extend(session.scalars(select(Evaluation).where(Evaluation.instance_id.in_(ids))))
        quizzes += len(session.scalars(select(QuizQuestion.id).where(QuizQuestion.instance_id.in_(ids),
                                                                     QuizQuestion.opened_at.is_not(None))).all())
    names: dict[int, str] = {}
    people = {e.evaluator_id for e in rows} | {a.author_id for e in rows for a in e.replies}
    for ids in _chunks(people):
        names.update(session.execute(select(User.id, User.display_name).where(User.id.in_(ids))).all())
    for e in rows:
        r = by_id[e.instance_id]
        evaluations.append(EvaluationLine(
            e.id, r.id, r.day, r.title, names.get(e.evaluator_id, f"#{e.evaluator_id}"), e.mode, e.total_score,
            e.comment, e.updated_at,
            [Reply(names.get(a.author_id, f"#{a.author_id}"), a.text, a.created_at) for a in e.replies]))
    evaluations.sort(key=lambda e: (by_id[e.instance_id].starts_at, e.id))
    scores = [e.total_score for e in evaluations if e.total_score is not None]
    latest: list[RecordingLine] = []
    count = 0
    if scope.role in recordings.READABLE_ROLES:
        items, count = recordings.library(
            session, scope, recordings.LibraryFilter(teacher_id=teacher.id, date_from=date_from, date_to=date_to),
            limit=LATEST_RECORDINGS)
        latest = [RecordingLine(i.recording.id, i.instance.id, i.instance.day, i.series.title, i.series.kind,
                                i.series.subject) for i in items]
    school = session.get(School, teacher.school_id) if teacher.school_id is not None else None
    acts = research.teacher_activities(session, teacher.id, date_from, date_to)
    studied = ResearchLine(sum(a.part is MemberPart.organizer for a in acts),
                           sum(a.part is MemberPart.teacher for a in acts),
                           sum(a.part is MemberPart.participant and a.took_part for a in acts), acts)
    return DevelopmentRecord(
        teacher_id=teacher.id, teacher_name=teacher.display_name, school_name=school.name if school else "",
        date_from=date_from, date_to=date_to, term=term, total=rr.tally(lessons), by_kind=by_kind,
        lessons=lessons, st_points=points, st_types=types, evaluations=evaluations,
        average_score=round(sum(scores) / len(scores), 1) if scores else None, quizzes=quizzes,
        recordings=count, latest_recordings=latest, research=studied)


# ---------------------------------------------------------------- the file


def _yes_no(v: bool | None) -> str:
    return "" if v is None else ("是" if v else "否")


def record_table(rec: DevelopmentRecord) -> rr.Table:
    """One row per lesson of the record: its outcome, punctuality, S-T values and evaluations."""
    evals: dict[int, list[EvaluationLine]] = {}
    for e in rec.evaluations:
        evals.setdefault(e.instance_id, []).append(e)
    rows: list[list[Any]] = []
    for r in rec.lessons:
        mine = evals.get(r.id, [])
        scored = [e.total_score for e in mine if e.total_score is not None]
        rows.append([
            r.id, r.day.isoformat(), f"{r.starts_at:%H:%M}", r.title, KIND_ZH[r.kind], r.subject,
            rr.OUTCOME_ZH[r.outcome], _yes_no(r.on_time), "" if r.late_s is None else round(r.late_s / 60, 1),
            r.st_rt, r.st_ch, LESSON_TYPES.get(r.st_type or "", ""), len(mine),
            round(sum(scored) / len(scored), 1) if scored else None,
            "；".join(e.comment for e in mine if e.comment), r.recording_id])
    return rr.Table(f"{rec.teacher_name} 教师发展档案 {rec.date_from}—{rec.date_to}",
                    ("课次ID", "日期", "开始", "课程", "类型", "学科", "开课情况", "准时", "迟到分钟", "Rt", "Ch",
                     "S-T课型", "评课数", "平均评分", "评课意见", "录播ID"), rows)

