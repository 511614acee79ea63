"""The quick quiz (随堂测) of a lesson: questions, answers, results and their export.

A question is single-choice, multiple-choice or true/false, prepared before the lesson
(``prepare``) or typed live (``open_question`` with a new question).  One question of a lesson is open
at a time: pushed by the main classroom, closed by it (``close``) or by the lesson's room closing
(``is_open``).  While it is open every receiving classroom (its terminal or assistant, for the class)
and every home student answers once; answering again replaces the answer (it is counted in
``changes``).  Results count each option, list who answered what and when, and give the share of right
answers (none for a poll: a question without right options).

Every function takes the caller's ``Session`` and leaves committing to it.  Bad input raises
``Invalid`` with a zh-CN message, a state that forbids the step ``InvalidState``; ``validate`` is the one
place of the bounds (the REST bodies and the socket messages carry the fields unchecked).

Must not: know about HTTP or sockets (``server.api.routes.quizzes`` and ``signaling.quiz`` do).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.errors import Invalid, InvalidState, NotFound
from scheduler.exports import csv_bytes
from scheduler.models import InstanceStatus, LessonInstance
from scheduler.quizzes_models import QuizAnswer, QuizKind, QuizQuestion

MAX_TEXT_CHARS = 500
MAX_OPTION_CHARS = 100
MIN_OPTIONS = 2
MAX_OPTIONS = 8
TRUE_FALSE_OPTIONS = ("正确", "错误")
ANSWERING_ROLES = ("receiving", "student")

KIND_ZH = {QuizKind.single: "单选题", QuizKind.multiple: "多选题", QuizKind.true_false: "判断题"}
ROLE_ZH = {"receiving": "接收课堂", "student": "学生"}


def letter(i: int) -> str:
    """The label of option ``i`` as shown (A, B, C...)."""
    return chr(ord("A") + i)


@dataclass(frozen=True)
class NewQuestion:
    """A question as given (REST body or ``quiz_start``), checked by ``validate``."""

    kind: QuizKind
    text: str
    options: list[str] = field(default_factory=list)
    """Ignored for true/false (its options are 正确 and 错误)."""
    correct: list[int] = field(default_factory=list)


def validate(q: NewQuestion) -> NewQuestion:
    """The question with blanks stripped, or ``Invalid`` saying what is wrong (zh-CN)."""
    try:
        kind = QuizKind(q.kind)
    except ValueError:
        raise Invalid("题型只能是单选题、多选题或判断题", field="kind") from None
    text = (q.text or "").strip()
    if not text:
        raise Invalid("请填写题目", field="text")
    if len(text) > MAX_TEXT_CHARS:
        raise Invalid(f"题目不能超过 {MAX_TEXT_CHARS} 个字", field="text")
    if kind is QuizKind.true_false:
        options = list(TRUE_FALSE_OPTIONS)
    else:
        options = [str(o).strip() for o in q.options]
        if len(options) < MIN_OPTIONS or len(options) > MAX_OPTIONS:
            raise Invalid(f"选项应为 {MIN_OPTIONS} 到 {MAX_OPTIONS} 个", field="options")
        for i, o in enumerate(options):
            if not o:
                raise Invalid(f"选项 {letter(i)} 不能为空", field="options")
            if len(o) > MAX_OPTION_CHARS:
                raise Invalid(f"选项 {letter(i)} 不能超过 {MAX_OPTION_CHARS} 个字", field="options")
        if len(set(options)) != len(options):
            raise Invalid("选项不能重复", field="options")
    correct = sorted(set(q.correct))
    if any(not 0 <= c < len(options) for c in correct):
        raise Invalid("正确答案必须是已有的选项", field="correct")
    if kind in (QuizKind.single, QuizKind.true_false) and len(correct) > 1:
        raise Invalid(f"{KIND_ZH[kind]}只能有一个正确答案", field="correct")
    return NewQuestion(kind=kind, text=text, options=options, correct=correct)


def check_choices(question: QuizQuestion, choices: Sequence[int]) -> list[int]:
    """The answer's choices, sorted, or ``Invalid``."""
    picked = sorted(set(choices))
    if not picked:
        raise Invalid("请选择答案", field="choices")
    if len(picked) != len(choices):
        raise Invalid("同一选项不能选两次", field="choices")
    if any(not 0 <= c < len(question.options) for c in picked):
        raise Invalid("所选答案不是本题的选项", field="choices")
    if question.kind is not QuizKind.multiple and len(picked) > 1:
        raise Invalid(f"{KIND_ZH[question.kind]}只能选一个答案", field="choices")
    return picked


def _lesson(session: Session, instance_id: int) -> LessonInstance:
    inst = session.get(LessonInstance, instance_id)
    if inst is None:
        raise NotFound(f"课次 #{instance_id} 不存在")
    return inst


def _ended(inst: LessonInstance) -> bool:
    return inst.room_closed_at is not None or inst.status in (InstanceStatus.held, InstanceStatus.missed,
                                                              InstanceStatus.cancelled)


def is_open(question: QuizQuestion, inst: LessonInstance) -> bool:
    """Pushed, not closed by the teacher, and the lesson's room still open."""
    return question.opened_at is not None and question.closed_at is None and inst.room_closed_at is None


def closed_at(question: QuizQuestion, inst: LessonInstance) -> datetime | None:
    """When the question closed: by the teacher, or with the lesson's room."""
    if question.opened_at is None:
        return None
    return question.closed_at or inst.room_closed_at


def _add(session: Session, inst: LessonInstance, q: NewQuestion, *, by_user_id: int | None,
         now: datetime) -> QuizQuestion:
    q = validate(q)
    question = QuizQuestion(instance_id=inst.id, kind=q.kind, text=q.text, options=q.options, correct=q.correct,
                            created_by=by_user_id, created_at=now)
    session.add(question)
    session.flush()
    return question


def prepare(session: Session, instance_id: int, q: NewQuestion, *, by_user_id: int | None,
            now: datetime) -> QuizQuestion:
    """Attach a question to a lesson that has not ended, to push later."""
    inst = _lesson(session, instance_id)
    if _ended(inst):
        raise InvalidState("该课次已结束或已停课，不能再准备随堂测")
    return _add(session, inst, q, by_user_id=by_user_id, now=now)


def questions(session: Session, instance_id: int) -> list[QuizQuestion]:
    """Every question of the lesson, prepared and asked, in the order they were made."""
    return list(session.scalars(select(QuizQuestion).where(QuizQuestion.instance_id == instance_id)
                                .order_by(QuizQuestion.id)))


def remove_prepared(session: Session, instance_id: int, question_id: int) -> None:
    """Drop a prepared question that was never pushed."""
    question = _question(session, instance_id, question_id)
    if question.opened_at is not None:
        raise InvalidState("该题已推送过，作答记录须保留，不能删除")
    session.delete(question)
    session.flush()


def _question(session: Session, instance_id: int, question_id: int) -> QuizQuestion:
    question = session.get(QuizQuestion, question_id)
    if question is None or question.instance_id != instance_id:
        raise NotFound(f"本课次没有第 {question_id} 号随堂测题目")
    return question


def current(session: Session, instance_id: int) -> QuizQuestion | None:
    """The lesson's open question, if any."""
    inst = _lesson(session, instance_id)
    if inst.room_closed_at is not None:
        return None
    return session.scalar(select(QuizQuestion).where(
        QuizQuestion.instance_id == instance_id, QuizQuestion.opened_at.is_not(None),
        QuizQuestion.closed_at.is_(None)).order_by(QuizQuestion.id.desc()).limit(1))


def open_question(session: Session, instance_id: int, *, question_id: int | None = None,
                  new: NewQuestion | None = None, by_user_id: int | None, now: datetime) -> QuizQuestion:
    """Push a prepared question (``question_id``) or a new one typed live (``new``) to the lesson's room."""
    inst = _lesson(session, instance_id)
    if _ended(inst):
        raise InvalidState("本节课已结束，不能再推送随堂测")
    if current(session, instance_id) is not None:
        raise InvalidState("请先结束正在进行的随堂测，再推送下一题")
    if (question_id is None) == (new is None):
        raise Invalid("请选择一道已准备的题目，或填写一道新题", field="question")
    if new is not None:
        question = _add(session, inst, new, by_user_id=by_user_id, now=now)
    else:
        assert question_id is not None
        question = _question(session, instance_id, question_id)
        if question.opened_at is not None:
            raise InvalidState("该题已推送过")
    question.opened_at = now
    session.flush()
    return question


def close(session: Session, instance_id: int, question_id: int, *, now: datetime) -> QuizQuestion:
    """End the open question: no more answers; the right ones are shown to everyone."""
    question = _question(session, instance_id, question_id)
    if not is_open(question, _lesson(session, instance_id)):
        raise InvalidState("该题不在作答中")
    question.closed_at = now
    session.flush()
    return question


def answerer_of(role: str, user_id: int, classroom_id: int | None) -> str:
    """Who an answer belongs to: the classroom for a receiving classroom, the student otherwise."""
    if role == "receiving" and classroom_id is not None:
        return f"c{classroom_id}"
    return f"u{user_id}"


def answer(session: Session, instance_id: int, question_id: int, choices: Sequence[int], *, role: str,
           user_id: int, classroom_id: int | None, name: str, now: datetime) -> QuizAnswer:
    """Record (or replace) the answer of a receiving classroom or a home student to the open question."""
    if role not in ANSWERING_ROLES:
        raise InvalidState("只有接收课堂和学生可以作答")
    question = _question(session, instance_id, question_id)
    if not is_open(question, _lesson(session, instance_id)):
        raise InvalidState("该题已结束作答")
    picked = check_choices(question, choices)
    who = answerer_of(role, user_id, classroom_id)
    row = session.scalar(select(QuizAnswer).where(QuizAnswer.question_id == question.id,
                                                  QuizAnswer.answerer == who))
    if row is None:
        row = QuizAnswer(question_id=question.id, answerer=who, role=role, user_id=user_id,
                         classroom_id=classroom_id if role == "receiving" else None, name=name[:100],
                         choices=picked, answered_at=now, changes=0)
        session.add(row)
    elif row.choices != picked:
        row.choices, row.answered_at, row.changes = picked, now, row.changes + 1
        row.user_id, row.name = user_id, name[:100]
    session.flush()
    return row


def choices_of(session: Session, question_id: int, answerer: str) -> list[int] | None:
    """The choices ``answerer`` gave to the question (None: no answer yet)."""
    return session.scalar(select(QuizAnswer.choices).where(QuizAnswer.question_id == question_id,
                                                           QuizAnswer.answerer == answerer))


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class AnswerLine:
    answerer: str
    role: str
    user_id: int
    classroom_id: int | None
    name: str
    choices: list[int]
    right: bool | None
    """None for a poll."""
    answered_at: datetime
    changes: int


@dataclass(frozen=True)
class Results:
    question: QuizQuestion
    open: bool
    closed_at: datetime | None
    counts: list[int]
    """Per option, how many answers picked it."""
    answers: list[AnswerLine]
    """In the order they were last given."""

    @property
    def answered(self) -> int:
        return len(self.answers)

    @property
    def right(self) -> int | None:
        if not self.question.correct:
            return None
        return sum(1 for a in self.answers if a.right)

    @property
    def correct_share(self) -> float | None:
        """Right answers over answers (None: a poll, or nobody answered)."""
        right = self.right
        if right is None or not self.answers:
            return None
        return round(right / len(self.answers), 4)


def results(session: Session, question: QuizQuestion, inst: LessonInstance | None = None) -> Results:
    inst = inst or _lesson(session, question.instance_id)
    rows = session.scalars(select(QuizAnswer).where(QuizAnswer.question_id == question.id)
                           .order_by(QuizAnswer.answered_at, QuizAnswer.id))
    counts = [0] * len(question.options)
    lines = []
    correct = sorted(question.correct)
    for row in rows:
        for c in row.choices:
            if 0 <= c < len(counts):
                counts[c] += 1
        lines.append(AnswerLine(answerer=row.answerer, role=row.role, user_id=row.user_id,
                                classroom_id=row.classroom_id, name=row.name, choices=list(row.choices),
                                right=(sorted(row.choices) == correct) if correct else None,
                                answered_at=row.answered_at, changes=row.changes))
    return Results(question=question, open=is_open(question, inst), closed_at=closed_at(question, inst),
                   counts=counts, answers=lines)


def lesson_results(session: Session, instance_id: int) -> list[Results]:
    """The results of every question asked in the lesson, in the order asked."""
    inst = _lesson(session, instance_id)
    asked = session.scalars(select(QuizQuestion).where(QuizQuestion.instance_id == instance_id,
                                                       QuizQuestion.opened_at.is_not(None))
                            .order_by(QuizQuestion.opened_at, QuizQuestion.id))
    return [results(session, q, inst) for q in asked]


def _labels(choices: Sequence[int]) -> str:
    return "".join(letter(c) for c in sorted(choices))


CSV_HEADERS = ("题号", "题型", "题目", "选项", "正确答案", "推送时间", "结束时间", "作答方", "角色", "课堂ID",
               "作答账号ID", "作答", "是否正确", "作答时间", "修改次数")


def results_csv(session: Session, instance_id: int) -> bytes:
    """Every answer of the lesson's quiz, one row each (a question nobody answered: one row without an
    answer), through the one export rule (``scheduler.exports.csv_bytes``)."""
    rows: list[tuple[object, ...]] = []
    for n, r in enumerate(lesson_results(session, instance_id), start=1):
        q = r.question
        head = (n, KIND_ZH[q.kind], q.text, "；".join(f"{letter(i)}. {o}" for i, o in enumerate(q.options)),
                _labels(q.correct) or "（投票，无正确答案）", f"{q.opened_at:%Y-%m-%d %H:%M:%S}",
                f"{r.closed_at:%Y-%m-%d %H:%M:%S}" if r.closed_at else "")
        if not r.answers:
            rows.append(head + (None,) * 8)
        for a in r.answers:
            rows.append(head + (a.name, ROLE_ZH.get(a.role, a.role), a.classroom_id, a.user_id, _labels(a.choices),
                                "" if a.right is None else ("是" if a.right else "否"),
                                f"{a.answered_at:%Y-%m-%d %H:%M:%S}", a.changes))
    return csv_bytes(CSV_HEADERS, rows)
