"""Tables of lesson recordings (录播) and the resource pool (资源池).

A ``Recording`` is one lesson's recording: the files the media worker wrote
(one per recorded track segment, see ``media.recorder``), their codecs, the
duration and size, and where it stands.  ``scheduler.recordings`` holds the
rules; migration ``server/migrations/versions/0007_recordings.py``.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from scheduler.models import Base, _enum


class RecordingStatus(str, enum.Enum):
    recording = "recording"
    """The lesson is live and being written."""
    ready = "ready"
    """Written; files can be played and downloaded."""
    partial = "partial"
    """Recovered after the server was killed during the lesson: the files it could read, finalized; the
    last seconds before the crash may be missing."""
    failed = "failed"
    """Nothing usable was written (no keyframe arrived, the worker died, a disk error)."""
    expired = "expired"
    """Older than the retention (``SANKE_RECORDING_RETENTION_DAYS``): the files were deleted."""


class Recording(Base):
    __tablename__ = "recording"
    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("lesson_instance.id"), index=True)
    status: Mapped[RecordingStatus] = mapped_column(_enum(RecordingStatus), default=RecordingStatus.recording)
    directory: Mapped[str] = mapped_column(String(300))
    """The files' folder, relative to ``SANKE_DATA_DIR`` (``recordings/<instance>/<id>``)."""
    started_at: Mapped[datetime] = mapped_column(DateTime)
    """Local wall-clock time the recording started (the main classroom's first publish)."""
    ended_at: Mapped[datetime | None] = mapped_column(DateTime)
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    codecs: Mapped[str] = mapped_column(String(100), default="")
    """Comma-separated codecs of the files, e.g. ``vp8,opus``."""
    files: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    """Per file: ``name, source`` (camera / screen / microphone), ``kind, codec, start_s, duration_s, size,
    frames, width, height`` — ``start_s`` on the recording's time axis."""
    composed_name: Mapped[str | None] = mapped_column(String(100))
    """The one-MP4 download (camera + screen + audio), once composed."""
    error: Mapped[str | None] = mapped_column(Text)
    expired_at: Mapped[datetime | None] = mapped_column(DateTime)
    node: Mapped[str | None] = mapped_column(String(100))
    """The server (``SANKE_NODE_ID``) whose media worker writes it: on its restart, a row it left
    ``recording`` is recovered (``scheduler.recordings.recover``)."""
