"""Tables of the online-teaching record (在线教学记录): the session event log and what is computed from it.

``SessionEvent`` is append-only: the signaling rooms and the media plane write
every join, leave, publish, stage change, mute, hand, chat message and link
sample through ``server.core.eventlog.EventLog`` (batched, off the media hot
path).  ``TeachingRecord`` and ``AttendanceRecord`` are derived from it by
``scheduler.records`` when a lesson's room closes, and can be recomputed at
any time from the log.  Migration: ``server/migrations/versions/0006_teaching_records.py``.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from scheduler.models import Base, _enum


class EventKind(str, enum.Enum):
    join = "join"
    leave = "leave"
    disconnect = "disconnect"
    """The socket dropped without ``leave``; a ``resume`` or a ``leave`` (timeout) follows."""
    resume = "resume"
    presence = "presence"
    """A mark that the session is still there, written when it had no other event for
    ``SANKE_PRESENCE_MARK_INTERVAL_SECONDS``: a session cut by a crash ends at its last event."""
    publish = "publish"
    unpublish = "unpublish"
    stage_on = "stage_on"
    stage_off = "stage_off"
    mute = "mute"
    unmute = "unmute"
    hand_raise = "hand_raise"
    hand_lower = "hand_lower"
    chat = "chat"
    link_quality = "link_quality"
    media_gap = "media_gap"
    """The lesson's media stopped for everyone (its media worker died) and came back: ``data`` has ``gap_s``,
    ``reason`` and ``restored`` (false: not every connection was back within the wait)."""
    annotation = "annotation"
    """The main classroom annotated its shared screen (``signaling.annotation``): ``data`` ``{"action": "stroke"
    | "undo" | "clear", "stroke": {...}}``; a replay draws the strokes at their times."""
    speech = "speech"
    """A turn of the participant's microphone speaking (RFC 6464 levels, ``media.speech``; no audio is kept):
    ``data`` ``{"s": seconds, "ago": seconds}``: it lasted ``s`` and ended ``ago`` before ``at``."""


class RecordStatus(str, enum.Enum):
    held = "held"
    partly_held = "partly_held"
    """The main classroom went live, but for less than ``records.HELD_SHARE`` of the scheduled time."""
    missed = "missed"
    cancelled = "cancelled"


class SessionEvent(Base):
    """One thing that happened in a lesson's room (append-only)."""

    __tablename__ = "session_event"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("lesson_instance.id"))
    at: Mapped[datetime] = mapped_column(DateTime)
    """Local wall-clock time (like every time of the timetable), to the millisecond."""
    kind: Mapped[EventKind] = mapped_column(_enum(EventKind))
    participant_id: Mapped[str] = mapped_column(String(64))
    """The room session (``session_id`` of the protocol): one per join, kept across resumes."""
    user_id: Mapped[int | None] = mapped_column(Integer)
    classroom_id: Mapped[int | None] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(20))
    """The lesson role: main, receiving, student or observer."""
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    __table_args__ = (Index("session_event_instance_at", "instance_id", "at", "id"),)


class TeachingRecord(Base):
    """Per lesson instance: was it held, on time, how long (computed from the event log)."""

    __tablename__ = "teaching_record"
    instance_id: Mapped[int] = mapped_column(ForeignKey("lesson_instance.id"), primary_key=True)
    status: Mapped[RecordStatus] = mapped_column(_enum(RecordStatus))
    actual_start: Mapped[datetime | None] = mapped_column(DateTime)
    """First publish of the main classroom."""
    actual_end: Mapped[datetime | None] = mapped_column(DateTime)
    duration_s: Mapped[int] = mapped_column(Integer, default=0)
    """Seconds the main classroom was publishing."""
    late_s: Mapped[int | None] = mapped_column(Integer)
    """Seconds after the scheduled start the lesson actually started (0 if early)."""
    on_time: Mapped[bool | None] = mapped_column(Boolean)
    expected_receivers: Mapped[int] = mapped_column(Integer, default=0)
    attended_receivers: Mapped[int] = mapped_column(Integer, default=0)
    recording_id: Mapped[int | None] = mapped_column(Integer)
    uncertain_s: Mapped[int] = mapped_column(Integer, default=0)
    """Of ``duration_s``: seconds at the end of main-classroom sessions cut by a server crash (they end at their
    last event; they may have gone on for up to this much longer)."""
    st_rt: Mapped[float | None] = mapped_column(Float)
    """S-T analysis (``scheduler.st_analysis``): the teacher's share of the samples; None: no speech measured."""
    st_ch: Mapped[float | None] = mapped_column(Float)
    st_type: Mapped[str | None] = mapped_column(String(20))
    """``practice``, ``lecture``, ``dialogue`` or ``mixed``."""
    receivers_spoke: Mapped[int | None] = mapped_column(Integer)
    """How many of the expected receiving classrooms spoke at all (None: no speech measured)."""
    computed_at: Mapped[datetime] = mapped_column(DateTime)


class AttendanceRecord(Base):
    """Per lesson instance and receiving classroom (or home student / the main classroom)."""

    __tablename__ = "attendance_record"
    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("teaching_record.instance_id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    classroom_id: Mapped[int | None] = mapped_column(Integer)
    user_id: Mapped[int | None] = mapped_column(Integer)
    """The home student (``role`` student); for classrooms, the last terminal account seen."""
    first_join: Mapped[datetime | None] = mapped_column(DateTime)
    last_leave: Mapped[datetime | None] = mapped_column(DateTime)
    present_s: Mapped[int] = mapped_column(Integer, default=0)
    disconnects: Mapped[int] = mapped_column(Integer, default=0)
    stage_count: Mapped[int] = mapped_column(Integer, default=0)
    stage_s: Mapped[int] = mapped_column(Integer, default=0)
    loss_p50: Mapped[float | None] = mapped_column(Float)
    loss_p95: Mapped[float | None] = mapped_column(Float)
    rtt_p50_ms: Mapped[float | None] = mapped_column(Float)
    rtt_p95_ms: Mapped[float | None] = mapped_column(Float)
    poor_link_s: Mapped[int] = mapped_column(Integer, default=0)
    link_samples: Mapped[int] = mapped_column(Integer, default=0)
    uncertain_s: Mapped[int] = mapped_column(Integer, default=0)
    """Of ``present_s``: how much longer sessions cut by a server crash may have lasted after their last event."""
    spoken_s: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    """Seconds its microphone spoke (``scheduler.st_analysis``)."""
    speech_turns: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
