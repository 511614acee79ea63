"""Tables of 网络教研 (teaching-research activities): the activity, its lessons, its members, its discussion.

Kept beside ``scheduler.models`` (same declarative ``Base``); the rules live in ``scheduler.research``.
Scores are not stored here: a member scores a linked lesson with the patrol record's evaluation
(``scheduler.patrol_models.Evaluation``, one per evaluator and lesson), so a score given in an activity is
the same 评课 the teacher's record and reports count.  Migration:
``server/migrations/versions/0015_research.py``.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from scheduler.models import Base, _enum


class ActivityKind(str, enum.Enum):
    same_topic = "same_topic"
    """同课异构: the same topic taught by two or more teachers, compared."""
    observation = "observation"
    """观课研讨: one or more lessons watched and discussed."""


class ActivityStatus(str, enum.Enum):
    open = "open"
    closed = "closed"
    """Ended by its organizer with an outcome; read-only since."""


class MemberPart(str, enum.Enum):
    organizer = "organizer"
    teacher = "teacher"
    """Teaches one of the linked lessons (授课)."""
    participant = "participant"


class ResearchActivity(Base):
    """教研活动: set up by a researcher or a (master) teacher, in the region of the organizer's school."""

    __tablename__ = "research_activity"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[ActivityKind] = mapped_column(_enum(ActivityKind))
    title: Mapped[str] = mapped_column(String(100))
    topic: Mapped[str] = mapped_column(String(100))
    """课题: what every linked lesson teaches."""
    subject: Mapped[str] = mapped_column(String(50), default="")
    grade: Mapped[str] = mapped_column(String(50), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    region_id: Mapped[int | None] = mapped_column(ForeignKey("region.id"), index=True)
    """The organizer's region (a researcher) or their school's region (a teacher): who may oversee it."""
    organizer_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    status: Mapped[ActivityStatus] = mapped_column(_enum(ActivityStatus), default=ActivityStatus.open)
    outcome: Mapped[str] = mapped_column(Text, default="")
    """研讨结论, written when the activity is closed."""
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """Scores and participation as they were when the activity closed (``research.summary``)."""
    created_at: Mapped[datetime] = mapped_column(DateTime)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime)

    lessons: Mapped[list[ResearchLesson]] = relationship(
        cascade="all, delete-orphan", order_by="ResearchLesson.position", lazy="selectin")
    members: Mapped[list[ResearchMember]] = relationship(
        cascade="all, delete-orphan", order_by="ResearchMember.id", lazy="selectin")


class ResearchLesson(Base):
    """A lesson linked to an activity, in the order the panes show them."""

    __tablename__ = "research_lesson"
    id: Mapped[int] = mapped_column(primary_key=True)
    activity_id: Mapped[int] = mapped_column(ForeignKey("research_activity.id", ondelete="CASCADE"))
    instance_id: Mapped[int] = mapped_column(ForeignKey("lesson_instance.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)

    __table_args__ = (UniqueConstraint("activity_id", "instance_id", name="research_lesson_once"),)


class ResearchMember(Base):
    """Someone in the activity; ``first_seen_at`` is set the first time they open it (they took part)."""

    __tablename__ = "research_member"
    id: Mapped[int] = mapped_column(primary_key=True)
    activity_id: Mapped[int] = mapped_column(ForeignKey("research_activity.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    part: Mapped[MemberPart] = mapped_column(_enum(MemberPart))
    added_at: Mapped[datetime] = mapped_column(DateTime)
    first_seen_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime)

    __table_args__ = (UniqueConstraint("activity_id", "user_id", name="research_member_once"),)


class ResearchComment(Base):
    """A discussion entry, on one linked lesson at ``offset_s`` of its replay clock, or on the whole activity."""

    __tablename__ = "research_comment"
    id: Mapped[int] = mapped_column(primary_key=True)
    activity_id: Mapped[int] = mapped_column(ForeignKey("research_activity.id", ondelete="CASCADE"))
    author_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("lesson_instance.id"))
    offset_s: Mapped[float | None] = mapped_column(Float)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (Index("research_comment_activity", "activity_id", "id"),)
