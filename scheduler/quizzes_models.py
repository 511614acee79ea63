"""Tables of the quick quiz (随堂测): the questions of a lesson and every answer to them.

A question is prepared before the lesson (REST) or typed live on the teacher's page, pushed to the room
(``opened_at``) and closed by the teacher (``closed_at``) or by the end of the lesson (its room closing).
An answer is one per classroom (a receiving classroom's terminal or assistant answers for the class) or
per home student; changing it while the question is open replaces it.  Business rules:
``scheduler.quizzes``.  Migration: ``server/migrations/versions/0013_quizzes.py``.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from scheduler.models import Base, _enum


class QuizKind(str, enum.Enum):
    single = "single"
    """单选题: exactly one option is right."""
    multiple = "multiple"
    """多选题: one or more options are right; an answer is right when it picks exactly those."""
    true_false = "true_false"
    """判断题: the two options 正确 and 错误."""


class QuizQuestion(Base):
    """One question of a lesson, with its options and the right ones."""

    __tablename__ = "quiz_question"
    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("lesson_instance.id"), index=True)
    kind: Mapped[QuizKind] = mapped_column(_enum(QuizKind))
    text: Mapped[str] = mapped_column(String(500))
    options: Mapped[list[str]] = mapped_column(JSON)
    """The options' texts, in the order shown (A, B, C...)."""
    correct: Mapped[list[int]] = mapped_column(JSON)
    """Indexes into ``options`` of the right ones; empty: a poll (投票), no answer is right or wrong."""
    created_by: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    opened_at: Mapped[datetime | None] = mapped_column(DateTime)
    """Pushed to the room (None: prepared, not asked yet)."""
    closed_at: Mapped[datetime | None] = mapped_column(DateTime)
    """Closed by the teacher (None while open; a question left open when the lesson's room closed is closed
    then, ``scheduler.quizzes.is_open``)."""


class QuizAnswer(Base):
    """The answer of one classroom or one home student to one question (the last one given)."""

    __tablename__ = "quiz_answer"
    id: Mapped[int] = mapped_column(primary_key=True)
    question_id: Mapped[int] = mapped_column(ForeignKey("quiz_question.id", ondelete="CASCADE"), index=True)
    answerer: Mapped[str] = mapped_column(String(40))
    """Who answers: ``c<classroom id>`` for a receiving classroom, ``u<user id>`` for a home student."""
    role: Mapped[str] = mapped_column(String(20))
    """The lesson role: receiving or student."""
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    """The account that gave the answer (a classroom's terminal or its assistant teacher)."""
    classroom_id: Mapped[int | None] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(100))
    """The classroom's or the student's name when the answer was given."""
    choices: Mapped[list[int]] = mapped_column(JSON)
    answered_at: Mapped[datetime] = mapped_column(DateTime)
    changes: Mapped[int] = mapped_column(Integer, default=0)
    """How many times the answer was changed after the first."""

    __table_args__ = (UniqueConstraint("question_id", "answerer", name="uq_quiz_answer_answerer"),)
