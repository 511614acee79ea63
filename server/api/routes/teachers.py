"""/teachers/{id}/development-record: 教师专业发展档案, JSON or a file (``?format=csv`` / ``xlsx``).

Read by the teacher themself, the admins of their school and of the regions above it, and the
researchers of a region holding that school; anyone else gets 403.  The rules are in
``scheduler.teacher_record``.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from scheduler import clock
from scheduler import record_reports as rr
from scheduler import teacher_record as tr
from scheduler.errors import Invalid
from scheduler.exports import KIND_ZH
from scheduler.models import LessonKind
from scheduler.patrol_models import EvaluationMode
from scheduler.research_models import ActivityKind, ActivityStatus, MemberPart
from scheduler.st_analysis import LESSON_TYPES
from server.api.deps import ScopeDep, SessionDep
from server.api.routes.reports import TallyOut
from server.api.times import Timestamp

router = APIRouter(prefix="/teachers", tags=["teachers"])


class KindRowOut(BaseModel):
    """One line of the lessons-by-kind table: ``dedicated``, ``master``, ``famous_school`` or ``total``."""

    kind: str
    name: str
    tally: TallyOut


class StPointOut(BaseModel):
    """One measured lesson on the Rt–Ch plane (the S-T chart)."""

    instance_id: int
    day: date
    title: str
    kind: LessonKind
    rt: float
    ch: float
    lesson_type: str | None
    """``practice`` / ``lecture`` / ``dialogue`` / ``mixed``."""
    lesson_type_label: str | None
    """练习型 / 讲授型 / 对话型 / 混合型."""


class StProfileOut(BaseModel):
    """The S-T profile over the held lessons whose speech was measured."""

    lessons: int
    avg_rt: float | None
    avg_ch: float | None
    types: dict[str, int]
    """Lessons per type (every type, 0 included)."""
    points: list[StPointOut]


class ReplyOut(BaseModel):
    author: str
    text: str
    created_at: Timestamp


class EvaluationOut(BaseModel):
    """One evaluation (评课) of one of the teacher's lessons, with the teacher's replies."""

    id: int
    instance_id: int
    day: date
    title: str
    evaluator: str
    mode: EvaluationMode
    total_score: float | None
    """Weighted total on 100; null until every item is scored."""
    comment: str
    updated_at: Timestamp
    replies: list[ReplyOut]


class RecordingOut(BaseModel):
    """A recording in the resource pool; its replay is ``/replay/?id={recording_id}``."""

    recording_id: int
    instance_id: int
    day: date
    title: str
    kind: LessonKind
    subject: str


class ResearchActivityOut(BaseModel):
    """A 教研活动 the teacher was in; its page is ``/research/?id={id}``."""

    id: int
    title: str
    kind: ActivityKind
    part: MemberPart
    """``organizer`` (led it), ``teacher`` (taught one of its lessons) or ``participant``."""
    status: ActivityStatus
    created_at: Timestamp
    took_part: bool


class ResearchOut(BaseModel):
    led: int
    taught: int
    attended: int
    """Activities attended as a participant (opened, commented or scored)."""
    activities: list[ResearchActivityOut]


class DevelopmentRecordOut(BaseModel):
    """A teacher's development record over a term (``term_id``) or dates."""

    teacher_id: int
    teacher_name: str
    school_name: str
    date_from: date
    date_to: date
    term_id: int | None
    """The term the range is; null when dates were given (or there is no term)."""
    term_name: str | None
    by_kind: list[KindRowOut]
    """Per lesson kind, then the total: held, on time, ... (the reports' rules)."""
    st: StProfileOut
    evaluations: list[EvaluationOut]
    average_score: float | None
    """Mean total score of the scored evaluations."""
    quizzes: int
    """Quick-quiz questions asked in the teacher's lessons."""
    recordings: int
    """Recordings of the teacher's lessons in the resource pool that the reader may watch."""
    latest_recordings: list[RecordingOut]
    """The newest few of them, newest first."""
    research: ResearchOut
    """网络教研 activities set up in the range that the teacher led, taught in or attended."""


def _out(rec: tr.DevelopmentRecord) -> DevelopmentRecordOut:
    rows = [*((k, KIND_ZH[LessonKind(k)], t) for k, t in rec.by_kind.items()), ("total", "合计", rec.total)]
    return DevelopmentRecordOut(
        teacher_id=rec.teacher_id, teacher_name=rec.teacher_name, school_name=rec.school_name,
        date_from=rec.date_from, date_to=rec.date_to, term_id=rec.term.id if rec.term else None,
        term_name=rec.term.name if rec.term else None,
        by_kind=[KindRowOut(kind=k, name=n, tally=TallyOut(**t.as_dict())) for k, n, t in rows],
        st=StProfileOut(lessons=rec.total.st_lessons, avg_rt=rec.total.avg_rt, avg_ch=rec.total.avg_ch,
                        types=rec.st_types, points=[
                            StPointOut(instance_id=p.instance_id, day=p.day, title=p.title, kind=p.kind, rt=p.rt,
                                       ch=p.ch, lesson_type=p.lesson_type,
                                       lesson_type_label=LESSON_TYPES.get(p.lesson_type or ""))
                            for p in rec.st_points]),
        evaluations=[EvaluationOut(id=e.id, instance_id=e.instance_id, day=e.day, title=e.title, evaluator=e.evaluator,
                                   mode=e.mode, total_score=e.total_score, comment=e.comment, updated_at=e.updated_at,
                                   replies=[ReplyOut(author=r.author, text=r.text, created_at=r.created_at)
                                            for r in e.replies]) for e in rec.evaluations],
        average_score=rec.average_score, quizzes=rec.quizzes, recordings=rec.recordings,
        latest_recordings=[RecordingOut(**r.__dict__) for r in rec.latest_recordings],
        research=ResearchOut(led=rec.research.led, taught=rec.research.taught, attended=rec.research.attended,
                             activities=[ResearchActivityOut(**a.__dict__) for a in rec.research.activities]))


_FILES: dict[int | str, dict[str, Any]] = {200: {"content": {"text/csv": {}, rr.FORMATS["xlsx"][0]: {}}}}


@router.get("/{user_id}/development-record", response_model=DevelopmentRecordOut, responses=_FILES)
def development_record(
    session: SessionDep,
    scope: ScopeDep,
    user_id: int,
    term_id: Annotated[int | None, Query(description="学期，默认当前学期")] = None,
    date_from: Annotated[date | None, Query(description="起始日期（含），与结束日期一起代替学期")] = None,
    date_to: Annotated[date | None, Query(description="结束日期（含）")] = None,
    format: Literal["json", "csv", "xlsx"] = "json",
) -> Any:
    """教师专业发展档案: lessons by kind, S-T profile, evaluations, quizzes and recordings over a term or dates."""
    term = None
    if date_from is not None or date_to is not None:
        if date_from is None or date_to is None:
            raise Invalid("请同时给出起始日期和结束日期", field="date_from" if date_from is None else "date_to")
    else:
        date_from, date_to, term = tr.default_range(session, clock.now().date(), term_id)
    rec = tr.development_record(session, scope, user_id, date_from, date_to, now=clock.now(), term=term)
    if format != "json":
        media_type, render = rr.FORMATS[format]
        return Response(render(tr.record_table(rec)), media_type=media_type, headers={
            "Content-Disposition": f'attachment; filename="sanke-teacher-{user_id}-{date_from}_{date_to}.{format}"',
            "Cache-Control": "private"})
    return _out(rec)
