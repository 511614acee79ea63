"""The quick quiz (随堂测) of a lesson over REST: questions prepared before the lesson, and the results.

Preparing (``/lessons/{id}/quiz-questions``) is for whoever holds the lesson's main seat (its teacher or
substitute, the main classroom's terminal; ``scheduler.joining.seat_for``), before the lesson ends.  The
results and their CSV (``/records/lessons/{id}/quizzes``) belong to the lesson's teaching record and follow
its access rule: staff who may see the lesson (``StaffScope`` + ``require_instance``).  Pushing, answering
and closing a question happen over the lesson socket (``signaling.quiz``).
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from scheduler import clock, quizzes
from scheduler.access import require_instance
from scheduler.errors import Forbidden, NotFound
from scheduler.joining import seat_for
from scheduler.models import LessonInstance
from scheduler.quizzes_models import QuizKind, QuizQuestion
from server.api.deps import CurrentUser, SessionDep, StaffScope
from server.api.times import Timestamp

router = APIRouter(tags=["quizzes"])


class QuestionIn(BaseModel):
    kind: QuizKind
    text: str = Field(max_length=2000)
    options: list[str] = Field(default_factory=list, max_length=26)
    """Ignored for ``true_false`` (正确, 错误)."""
    correct: list[int] = Field(default_factory=list, max_length=26)
    """Indexes of the right options; empty: a poll."""


class QuestionOut(BaseModel):
    id: int
    kind: QuizKind
    text: str
    options: list[str]
    correct: list[int]
    opened_at: Timestamp | None
    closed_at: Timestamp | None


class QuestionList(BaseModel):
    data: list[QuestionOut]
    count: int


class AnswerOut(BaseModel):
    name: str
    """The receiving classroom's or the home student's name."""
    role: str
    classroom_id: int | None
    user_id: int
    choices: list[int]
    right: bool | None
    answered_at: Timestamp
    changes: int


class ResultOut(BaseModel):
    question: QuestionOut
    open: bool
    counts: list[int]
    answered: int
    right: int | None
    correct_share: float | None
    answers: list[AnswerOut]


class ResultList(BaseModel):
    data: list[ResultOut]
    count: int


def _question_out(q: QuizQuestion, closed_at: object = None) -> QuestionOut:
    return QuestionOut(id=q.id, kind=q.kind, text=q.text, options=list(q.options), correct=list(q.correct),
                       opened_at=q.opened_at, closed_at=closed_at if closed_at is not None else q.closed_at)


def _main_seat(session: SessionDep, user: CurrentUser, instance_id: int) -> LessonInstance:
    inst = session.get(LessonInstance, instance_id)
    if inst is None:
        raise NotFound(f"课次 #{instance_id} 不存在")
    if seat_for(session, user, inst).lesson_role != "main":
        raise Forbidden("只有主讲教师或主讲教室可以准备随堂测")
    return inst


@router.post("/lessons/{instance_id}/quiz-questions", response_model=QuestionOut, status_code=201)
def prepare_question(instance_id: int, body: QuestionIn, session: SessionDep, user: CurrentUser) -> QuestionOut:
    """Prepare a question for the lesson, to push from the teacher's page during it."""
    _main_seat(session, user, instance_id)
    q = quizzes.prepare(session, instance_id, quizzes.NewQuestion(kind=body.kind, text=body.text,
                                                                  options=body.options, correct=body.correct),
                        by_user_id=user.id, now=clock.now())
    session.commit()
    return _question_out(q)


@router.get("/lessons/{instance_id}/quiz-questions", response_model=QuestionList)
def list_questions(instance_id: int, session: SessionDep, user: CurrentUser) -> QuestionList:
    """The lesson's questions, prepared and asked, for its main seat (with the right options)."""
    _main_seat(session, user, instance_id)
    rows = [_question_out(q) for q in quizzes.questions(session, instance_id)]
    return QuestionList(data=rows, count=len(rows))


@router.delete("/lessons/{instance_id}/quiz-questions/{question_id}", status_code=204)
def remove_question(instance_id: int, question_id: int, session: SessionDep, user: CurrentUser) -> Response:
    """Drop a prepared question that was never pushed."""
    _main_seat(session, user, instance_id)
    quizzes.remove_prepared(session, instance_id, question_id)
    session.commit()
    return Response(status_code=204)


def _result_out(r: quizzes.Results) -> ResultOut:
    return ResultOut(
        question=_question_out(r.question, r.closed_at), open=r.open, counts=r.counts, answered=r.answered,
        right=r.right, correct_share=r.correct_share,
        answers=[AnswerOut(name=a.name, role=a.role, classroom_id=a.classroom_id, user_id=a.user_id,
                           choices=a.choices, right=a.right, answered_at=a.answered_at, changes=a.changes)
                 for a in r.answers])


@router.get("/records/lessons/{instance_id}/quizzes", response_model=ResultList)
def lesson_quizzes(instance_id: int, session: SessionDep, scope: StaffScope) -> ResultList:
    """The results of every question asked in the lesson (part of its teaching record)."""
    require_instance(session, scope, instance_id)
    rows = [_result_out(r) for r in quizzes.lesson_results(session, instance_id)]
    return ResultList(data=rows, count=len(rows))


@router.get("/records/lessons/{instance_id}/quizzes.csv", response_class=Response,
            responses={200: {"content": {"text/csv": {}}}})
def lesson_quizzes_csv(instance_id: int, session: SessionDep, scope: StaffScope) -> Response:
    """Every answer of the lesson's quiz as CSV (UTF-8 with BOM; formula-like text neutralised)."""
    require_instance(session, scope, instance_id)
    return Response(quizzes.results_csv(session, instance_id), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="sanke-quiz-{instance_id}.csv"',
                             "Cache-Control": "private"})
