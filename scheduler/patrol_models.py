"""Tables of the patrol record (巡课记录): rubrics, visits, evaluations and what hangs on them.

Kept beside ``scheduler.models`` (same declarative ``Base``) so the patrol
record can grow without touching the timetable's tables; the rules live in
``scheduler.patrol``.  Migration: ``server/migrations/versions/0005_patrol_records.py``.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from scheduler.models import Base, _enum


class VisitEnd(str, enum.Enum):
    left = "left"
    """The researcher left the lesson (closed the page, watched another one)."""
    timeout = "timeout"
    """No heartbeat for ``patrol.VISIT_TIMEOUT``: closed at the last heartbeat."""
    room_closed = "room_closed"
    """The lesson's room closed while the visit was open."""


class EvaluationMode(str, enum.Enum):
    live = "live"
    """Made while patrolling the live lesson (needs a visit)."""
    replay = "replay"
    """评课 on the recording of a held lesson (no visit needed)."""


class RubricTemplate(Base):
    """评课量表: scoring items an admin defines for a region (and the regions below it)."""

    __tablename__ = "rubric_template"
    id: Mapped[int] = mapped_column(primary_key=True)
    region_id: Mapped[int] = mapped_column(ForeignKey("region.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime)

    items: Mapped[list[RubricItem]] = relationship(
        cascade="all, delete-orphan", order_by="RubricItem.position", lazy="selectin"
    )


class RubricItem(Base):
    """One scored item: a score in 0..``max_score``, weighted by ``weight`` in the total."""

    __tablename__ = "rubric_item"
    id: Mapped[int] = mapped_column(primary_key=True)
    template_id: Mapped[int] = mapped_column(ForeignKey("rubric_template.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    max_score: Mapped[float] = mapped_column(Float)
    weight: Mapped[float] = mapped_column(Float, default=1.0)

    __table_args__ = (
        CheckConstraint("max_score > 0", name="rubric_item_max"),
        CheckConstraint("weight > 0", name="rubric_item_weight"),
    )


class PatrolVisit(Base):
    """One researcher watching one live lesson, from the moment they start until they leave."""

    __tablename__ = "patrol_visit"
    id: Mapped[int] = mapped_column(primary_key=True)
    researcher_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    instance_id: Mapped[int] = mapped_column(ForeignKey("lesson_instance.id"), index=True)
    started_at: Mapped[datetime] = mapped_column(DateTime)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime)
    """The last heartbeat of the watching page; an open visit silent too long is closed here."""
    ended_at: Mapped[datetime | None] = mapped_column(DateTime)
    end_reason: Mapped[VisitEnd | None] = mapped_column(_enum(VisitEnd))
    duration_seconds: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        Index("patrol_visit_researcher_start", "researcher_id", "started_at"),
        Index("patrol_visit_open", "ended_at", "last_seen_at"),
    )


class Evaluation(Base):
    """One evaluator's evaluation of one lesson (one per evaluator and lesson)."""

    __tablename__ = "evaluation"
    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("lesson_instance.id"), index=True)
    evaluator_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    mode: Mapped[EvaluationMode] = mapped_column(_enum(EvaluationMode))
    template_id: Mapped[int | None] = mapped_column(ForeignKey("rubric_template.id"))
    scores: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    """Rubric item id (as a string) → score given."""
    total_score: Mapped[float | None] = mapped_column(Float)
    """Weighted total on 100 (see ``patrol.total_score``); None until every item is scored."""
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)

    notes: Mapped[list[EvaluationNote]] = relationship(
        cascade="all, delete-orphan", order_by="EvaluationNote.at", lazy="selectin"
    )
    snapshots: Mapped[list[EvaluationSnapshot]] = relationship(
        cascade="all, delete-orphan", order_by="EvaluationSnapshot.taken_at", lazy="selectin"
    )
    replies: Mapped[list[EvaluationReply]] = relationship(
        cascade="all, delete-orphan", order_by="EvaluationReply.created_at", lazy="selectin"
    )

    __table_args__ = (UniqueConstraint("instance_id", "evaluator_id", name="evaluation_once"),)


class EvaluationNote(Base):
    """A timestamped note: when it was written and where in the lesson (seconds from its start)."""

    __tablename__ = "evaluation_note"
    id: Mapped[int] = mapped_column(primary_key=True)
    evaluation_id: Mapped[int] = mapped_column(ForeignKey("evaluation.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime)
    lesson_offset_seconds: Mapped[int | None] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)


class EvaluationSnapshot(Base):
    """A JPEG of the lesson's main camera, stored under ``<data_dir>/patrol/snapshots/``."""

    __tablename__ = "evaluation_snapshot"
    id: Mapped[int] = mapped_column(primary_key=True)
    evaluation_id: Mapped[int] = mapped_column(ForeignKey("evaluation.id", ondelete="CASCADE"), index=True)
    taken_at: Mapped[datetime] = mapped_column(DateTime)
    lesson_offset_seconds: Mapped[int | None] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(200))
    """Relative to the data dir."""
    size_bytes: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(Text, default="")


class EvaluationReply(Base):
    """The lesson's teacher answering an evaluation (patrol supports teachers)."""

    __tablename__ = "evaluation_reply"
    id: Mapped[int] = mapped_column(primary_key=True)
    evaluation_id: Mapped[int] = mapped_column(ForeignKey("evaluation.id", ondelete="CASCADE"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class EvaluatorInvitation(Base):
    """An admin or researcher inviting another evaluator (a researcher or a teacher) to a lesson."""

    __tablename__ = "evaluator_invitation"
    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("lesson_instance.id"), index=True)
    invitee_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    invited_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (UniqueConstraint("instance_id", "invitee_id", name="evaluator_invitation_once"),)
