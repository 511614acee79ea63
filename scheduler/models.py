"""SanKe's domain model: SQLAlchemy 2.0 typed tables.

The scheduler owns these tables because booking rules are their core; the
server maps them to pydantic schemas at the edge, signaling and media read
lesson instances through the scheduler's functions.

Times of day are stored as local wall-clock times in the configured timezone
(``Settings.timezone``): a timetable is a local thing and every school of a
province rings its bells in China Standard Time.
"""

from __future__ import annotations

import enum
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Time,
    UniqueConstraint,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


def _enum(cls: type[enum.Enum]) -> SAEnum:
    # Stored as plain strings (no native PG enum): new values need no ALTER TYPE.
    return SAEnum(cls, native_enum=False, length=20, values_callable=lambda e: [m.value for m in e])


class RegionLevel(str, enum.Enum):
    province = "province"
    city = "city"
    district = "district"


class SchoolKind(str, enum.Enum):
    urban = "urban"
    rural = "rural"


class Role(str, enum.Enum):
    admin = "admin"
    teacher = "teacher"
    terminal = "terminal"
    student = "student"
    researcher = "researcher"


class LessonKind(str, enum.Enum):
    dedicated = "dedicated"
    master = "master"
    famous_school = "famous_school"


class SeriesStatus(str, enum.Enum):
    pending = "pending"
    approved = "approved"
    rejected = "rejected"
    cancelled = "cancelled"


class InstanceStatus(str, enum.Enum):
    scheduled = "scheduled"
    live = "live"
    held = "held"
    missed = "missed"
    cancelled = "cancelled"


class WeekPattern(str, enum.Enum):
    every = "every"
    odd = "odd"
    even = "even"


class ReceiverMode(str, enum.Enum):
    interactive = "interactive"
    listen_only = "listen_only"


class DayKind(str, enum.Enum):
    holiday = "holiday"
    makeup = "makeup"


class ResourceType(str, enum.Enum):
    teacher = "teacher"
    classroom = "classroom"


class DemandStatus(str, enum.Enum):
    open = "open"
    matched = "matched"
    closed = "closed"


class OfferStatus(str, enum.Enum):
    offered = "offered"
    accepted = "accepted"
    declined = "declined"


class Region(Base):
    """Province > city > district. ``path`` ("/1/4/9/") makes subtree checks one LIKE."""

    __tablename__ = "region"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    level: Mapped[RegionLevel] = mapped_column(_enum(RegionLevel))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("region.id"))
    path: Mapped[str] = mapped_column(String(200), index=True, default="")


class EducationGroup(Base):
    """教育集团: schools led by a strong school."""

    __tablename__ = "education_group"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    region_id: Mapped[int] = mapped_column(ForeignKey("region.id"))


class School(Base):
    __tablename__ = "school"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[SchoolKind] = mapped_column(_enum(SchoolKind))
    region_id: Mapped[int] = mapped_column(ForeignKey("region.id"), index=True)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("education_group.id"))

    region: Mapped[Region] = relationship()


class Classroom(Base):
    """A classroom terminal: the classroom PC with camera, microphone and screen."""

    __tablename__ = "classroom"
    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    capacity: Mapped[int] = mapped_column(Integer, default=45)

    school: Mapped[School] = relationship()


class User(Base):
    """A person or a classroom device login.

    Scope by role: a teacher or student belongs to ``school_id``; a terminal to
    ``classroom_id``; a researcher to ``region_id``; an admin to ``school_id``
    (school admin), ``region_id`` (bureau admin) or neither (system admin).
    """

    __tablename__ = "user_account"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(_enum(Role), index=True)
    school_id: Mapped[int | None] = mapped_column(ForeignKey("school.id"), index=True)
    region_id: Mapped[int | None] = mapped_column(ForeignKey("region.id"))
    classroom_id: Mapped[int | None] = mapped_column(ForeignKey("classroom.id"))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    feed_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Bumped to revoke every calendar-feed token issued to this user."""
    token_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Bumped (password reset, deactivation) to revoke every access and join token issued to this user."""


class Term(Base):
    """学期: a dated range. Week 1 is the Monday-based week holding ``start_date``."""

    __tablename__ = "term"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    region_id: Mapped[int | None] = mapped_column(ForeignKey("region.id"))
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date] = mapped_column(Date)

    days: Mapped[list[TermDay]] = relationship(cascade="all, delete-orphan", order_by="TermDay.day")

    __table_args__ = (CheckConstraint("end_date >= start_date", name="term_range"),)


class TermDay(Base):
    """A holiday, or a make-up day that runs another weekday's timetable (调休)."""

    __tablename__ = "term_day"
    id: Mapped[int] = mapped_column(primary_key=True)
    term_id: Mapped[int] = mapped_column(ForeignKey("term.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(Date)
    kind: Mapped[DayKind] = mapped_column(_enum(DayKind))
    follows_weekday: Mapped[int | None] = mapped_column(Integer)
    """For a make-up day: ISO weekday (1=Mon) whose timetable runs that day."""
    name: Mapped[str] = mapped_column(String(100), default="")

    __table_args__ = (UniqueConstraint("term_id", "day", name="term_day_once"),)


class PeriodScheme(Base):
    """A school's bell schedule (作息时间), optionally for one term only."""

    __tablename__ = "period_scheme"
    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id"), index=True)
    term_id: Mapped[int | None] = mapped_column(ForeignKey("term.id"))
    name: Mapped[str] = mapped_column(String(100), default="")

    periods: Mapped[list[Period]] = relationship(
        cascade="all, delete-orphan", order_by="Period.number", lazy="selectin"
    )


class Period(Base):
    """节次: a numbered daily slot."""

    __tablename__ = "period"
    id: Mapped[int] = mapped_column(primary_key=True)
    scheme_id: Mapped[int] = mapped_column(ForeignKey("period_scheme.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    start_time: Mapped[time] = mapped_column(Time)
    end_time: Mapped[time] = mapped_column(Time)

    __table_args__ = (
        UniqueConstraint("scheme_id", "number", name="period_number_once"),
        CheckConstraint("end_time > start_time", name="period_range"),
    )


class Pairing(Base):
    """城乡结对: a standing link between an urban and a rural school (or classroom)."""

    __tablename__ = "pairing"
    id: Mapped[int] = mapped_column(primary_key=True)
    urban_school_id: Mapped[int] = mapped_column(ForeignKey("school.id"), index=True)
    rural_school_id: Mapped[int] = mapped_column(ForeignKey("school.id"), index=True)
    urban_classroom_id: Mapped[int | None] = mapped_column(ForeignKey("classroom.id"))
    rural_classroom_id: Mapped[int | None] = mapped_column(ForeignKey("classroom.id"))
    subjects: Mapped[list[str]] = mapped_column(JSON, default=list)
    """Subjects the pairing covers; empty means any subject."""
    term_id: Mapped[int | None] = mapped_column(ForeignKey("term.id"))
    """The term it holds for; empty means a standing pairing."""
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class LessonSeries(Base):
    """A weekly lesson on the timetable, expanded into instances when approved."""

    __tablename__ = "lesson_series"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[LessonKind] = mapped_column(_enum(LessonKind), index=True)
    title: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(String(50))
    grade: Mapped[str] = mapped_column(String(50))
    term_id: Mapped[int] = mapped_column(ForeignKey("term.id"), index=True)
    main_classroom_id: Mapped[int] = mapped_column(ForeignKey("classroom.id"), index=True)
    main_teacher_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    weekday: Mapped[int] = mapped_column(Integer)
    """ISO weekday, 1 = Monday."""
    period_from: Mapped[int] = mapped_column(Integer)
    period_to: Mapped[int] = mapped_column(Integer)
    """Periods of the main school's bell schedule (inclusive: 3..4 is a double lesson)."""
    week_from: Mapped[int] = mapped_column(Integer, default=1)
    week_to: Mapped[int] = mapped_column(Integer, default=99)
    week_pattern: Mapped[WeekPattern] = mapped_column(_enum(WeekPattern), default=WeekPattern.every)
    skip_weeks: Mapped[list[int]] = mapped_column(JSON, default=list, server_default="[]")
    """Teaching weeks of the range without a lesson: the weeks in which the slot finder (智能排课) found
    the slot taken, booked around."""
    status: Mapped[SeriesStatus] = mapped_column(_enum(SeriesStatus), default=SeriesStatus.pending, index=True)
    recording: Mapped[bool] = mapped_column(Boolean, default=False)
    stream_from: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """名校网络课堂 only: when home students who are not on stage watch the lesson's HLS stream instead
    of WebRTC. None: never; 0: always; N: while more than N home students are in the lesson."""
    pairing_override_reason: Mapped[str | None] = mapped_column(Text)
    """Set when an admin booked a dedicated series without a pairing, and why."""
    created_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    approved_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime)

    receivers: Mapped[list[SeriesReceiver]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="SeriesReceiver.id"
    )
    participants: Mapped[list[SeriesParticipant]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="SeriesParticipant.id"
    )
    main_classroom: Mapped[Classroom] = relationship(foreign_keys=[main_classroom_id])

    __table_args__ = (
        CheckConstraint("weekday BETWEEN 1 AND 7", name="series_weekday"),
        CheckConstraint("period_to >= period_from", name="series_periods"),
        CheckConstraint("week_to >= week_from", name="series_weeks"),
    )


class SeriesReceiver(Base):
    """A receiving classroom of a series, with its on-site assistant teacher (助教)."""

    __tablename__ = "series_receiver"
    id: Mapped[int] = mapped_column(primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("lesson_series.id", ondelete="CASCADE"), index=True)
    classroom_id: Mapped[int] = mapped_column(ForeignKey("classroom.id"), index=True)
    mode: Mapped[ReceiverMode] = mapped_column(_enum(ReceiverMode), default=ReceiverMode.interactive)
    assistant_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    receiving_period: Mapped[int | None] = mapped_column(Integer)
    """Explicit period of the receiving school when its bells do not contain the main slot."""

    __table_args__ = (UniqueConstraint("series_id", "classroom_id", name="series_receiver_once"),)


class SeriesParticipant(Base):
    """A teacher attending a master lesson, or a home student enrolled in a famous-school lesson."""

    __tablename__ = "series_participant"
    id: Mapped[int] = mapped_column(primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("lesson_series.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)

    __table_args__ = (UniqueConstraint("series_id", "user_id", name="series_participant_once"),)


class LessonInstance(Base):
    """One lesson on one date. Room times are set by the lifecycle task."""

    __tablename__ = "lesson_instance"
    id: Mapped[int] = mapped_column(primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("lesson_series.id"), index=True)
    day: Mapped[date] = mapped_column(Date)
    starts_at: Mapped[datetime] = mapped_column(DateTime)
    ends_at: Mapped[datetime] = mapped_column(DateTime)
    period_from: Mapped[int] = mapped_column(Integer)
    period_to: Mapped[int] = mapped_column(Integer)
    status: Mapped[InstanceStatus] = mapped_column(_enum(InstanceStatus), default=InstanceStatus.scheduled)
    main_classroom_id: Mapped[int] = mapped_column(ForeignKey("classroom.id"))
    teacher_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    """Who teaches this instance: the series' main teacher or the substitute."""
    substitute: Mapped[bool] = mapped_column(Boolean, default=False)
    rescheduled_from_id: Mapped[int | None] = mapped_column(ForeignKey("lesson_instance.id"))
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    room_opened_at: Mapped[datetime | None] = mapped_column(DateTime)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    """First time the main classroom went live."""
    room_closed_at: Mapped[datetime | None] = mapped_column(DateTime)

    series: Mapped[LessonSeries] = relationship(lazy="joined")

    __table_args__ = (
        Index("lesson_instance_day", "day", "main_classroom_id"),
        Index("lesson_instance_room_day", "main_classroom_id", "day"),
        Index("lesson_instance_series_day", "series_id", "day"),
        Index("lesson_instance_status_start", "status", "starts_at"),
        CheckConstraint("ends_at > starts_at", name="instance_range"),
    )


class Occupancy(Base):
    """One resource held by one lesson instance for a time range.

    The database refuses overlapping rows for the same resource: an exclusion
    constraint on PostgreSQL, a trigger on SQLite (see the initial migration).
    That is what makes two concurrent bookings of one slot impossible, whatever
    the application checked before.
    """

    __tablename__ = "occupancy"
    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("lesson_instance.id", ondelete="CASCADE"), index=True)
    resource_type: Mapped[ResourceType] = mapped_column(_enum(ResourceType))
    resource_id: Mapped[int] = mapped_column(Integer)
    starts_at: Mapped[datetime] = mapped_column(DateTime)
    ends_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (Index("occupancy_resource_time", "resource_type", "resource_id", "starts_at"),)


class DemandOrder(Base):
    """需求订单: a rural school's need for lessons."""

    __tablename__ = "demand_order"
    id: Mapped[int] = mapped_column(primary_key=True)
    rural_school_id: Mapped[int] = mapped_column(ForeignKey("school.id"), index=True)
    receiving_classroom_id: Mapped[int | None] = mapped_column(ForeignKey("classroom.id"))
    term_id: Mapped[int] = mapped_column(ForeignKey("term.id"))
    subject: Mapped[str] = mapped_column(String(50))
    grade: Mapped[str] = mapped_column(String(50))
    preferred_slots: Mapped[list[dict[str, int]]] = mapped_column(JSON, default=list)
    """[{"weekday": 2, "period": 3}, ...] in the rural school's bells."""
    note: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[DemandStatus] = mapped_column(_enum(DemandStatus), default=DemandStatus.open)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime)


class DemandOffer(Base):
    """An urban school's offer to meet a demand order with a teacher, classroom and slot."""

    __tablename__ = "demand_offer"
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("demand_order.id", ondelete="CASCADE"), index=True)
    urban_school_id: Mapped[int] = mapped_column(ForeignKey("school.id"))
    teacher_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    main_classroom_id: Mapped[int] = mapped_column(ForeignKey("classroom.id"))
    weekday: Mapped[int] = mapped_column(Integer)
    period_from: Mapped[int] = mapped_column(Integer)
    period_to: Mapped[int] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[OfferStatus] = mapped_column(_enum(OfferStatus), default=OfferStatus.offered)
    series_id: Mapped[int | None] = mapped_column(ForeignKey("lesson_series.id"))
    created_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime)


class AuditEntry(Base):
    """Who changed what, when and why. Append-only."""

    __tablename__ = "audit_entry"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    entity: Mapped[str] = mapped_column(String(40))
    entity_id: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (Index("audit_entity", "entity", "entity_id"),)
