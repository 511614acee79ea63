"""Online-teaching records (在线教学记录) of lessons: the record, attendance, link quality, the event log.

Staff only (admins by scope, teachers for lessons they can see, researchers in
their region): ``StaffScope`` plus the lesson's own visibility rule.  The
record is computed from the event log on every read, after the log's pending
events are written, so a lesson in progress shows its minutes so far; the
stored copy (``teaching_record``, made when the room closes) feeds reports.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from sqlalchemy import select

from scheduler import clock, records, st_analysis
from scheduler.access import require_instance
from scheduler.models import Classroom, School, User
from scheduler.records_models import EventKind, RecordStatus, SessionEvent
from server.api.deps import SessionDep, StaffScope
from server.api.times import Timestamp

router = APIRouter(prefix="/records", tags=["records"])

STATUS_ZH = {
    RecordStatus.held: "已开课",
    RecordStatus.partly_held: "部分开课",
    RecordStatus.missed: "未开课",
    RecordStatus.cancelled: "已停课",
}


class LinkSampleOut(BaseModel):
    at: Timestamp
    loss: float | None
    rtt_ms: float | None
    jitter_ms: float | None
    bitrate_kbps: float | None


class AttendanceOut(BaseModel):
    role: str
    classroom_id: int | None
    classroom_name: str | None
    user_id: int | None
    user_name: str | None
    school_id: int | None
    """The classroom's school, or a home student's."""
    school_name: str | None
    expected: bool
    first_join: Timestamp | None
    last_leave: Timestamp | None
    present_s: int
    disconnects: int
    stage_count: int
    stage_s: int
    loss_p50: float | None
    loss_p95: float | None
    rtt_p50_ms: float | None
    rtt_p95_ms: float | None
    poor_link_s: int
    link_samples: int
    uncertain_s: int = 0
    """Seconds after ``present_s`` it may still have been there: sessions cut by a server crash end at their
    last event (``scheduler.presence``)."""
    timeline: list[LinkSampleOut] | None = None


class MediaGapOut(BaseModel):
    at: Timestamp
    """When the media stopped."""
    seconds: float
    reason: str
    """``worker_restarted``: the lesson's media worker died and was replaced."""
    restored: bool
    """Every connection that carried media was back (false: some were not within 30 s)."""


class SpeakerOut(BaseModel):
    role: str
    """``receiving`` (a receiving classroom) or ``student`` (a home student)."""
    classroom_id: int | None
    user_id: int | None
    spoken_s: float
    turns: int
    stage_count: int
    hands: int
    """Times it raised its hand."""


class InsightOut(BaseModel):
    """Classroom insight (课堂分析): the S-T analysis of the lesson from the speech activity of each
    classroom's microphone (RFC 6464 levels; no audio is kept), and how much each classroom spoke."""

    interval_s: int
    codes: str
    """One sample per ``interval_s`` from the actual start: ``T`` the main classroom (teacher) speaking,
    ``S`` otherwise (a classroom or a student speaking, or the class working)."""
    rt: float | None
    """N_T / N."""
    ch: float | None
    """(runs − 1) / N."""
    lesson_type: str | None
    """``practice`` (Rt ≤ 0.3), ``lecture`` (Rt ≥ 0.7), ``dialogue`` (Ch ≥ 0.4), ``mixed``."""
    lesson_type_zh: str | None
    teacher_s: float
    student_samples: int
    """S samples at which a receiving classroom or a student was speaking."""
    measured: bool
    """False when no speech was measured (no audio levels were sent, or nobody spoke)."""
    speakers: list[SpeakerOut]


class RecordOut(BaseModel):
    instance_id: int
    status: RecordStatus
    status_label: str
    scheduled_start: Timestamp
    scheduled_end: Timestamp
    actual_start: Timestamp | None
    actual_end: Timestamp | None
    duration_s: int
    late_s: int | None
    on_time: bool | None
    expected_receivers: int
    attended_receivers: int
    uncertain_s: int = 0
    """Seconds after ``duration_s`` the main classroom may still have taught (cut by a server crash)."""
    attendance: list[AttendanceOut]
    media_gap_s: int = 0
    """Seconds the lesson's media was down for everyone (媒体中断), summed over ``media_gaps``."""
    media_gaps: list[MediaGapOut] = []
    insight: InsightOut | None = None


class EventOut(BaseModel):
    id: int
    at: Timestamp
    kind: EventKind
    participant_id: str
    user_id: int | None
    classroom_id: int | None
    role: str
    data: dict[str, Any] | None


class EventsOut(BaseModel):
    data: list[EventOut]
    next_after_id: int | None


async def _flush(request: Request, session: Any) -> None:
    """Write the event log's pending events first, so the answer includes what just happened.

    The request's session ends its transaction before: on SQLite every transaction holds the
    write lock (``BEGIN IMMEDIATE``), and the log's writer needs it."""
    eventlog = getattr(request.app.state, "eventlog", None)
    if eventlog is not None:
        session.commit()
        await eventlog.flush()


def _record_out(session: Any, record: records.Record, timeline: bool) -> RecordOut:
    # classroom names repeat across schools (every village school has its 九年级(1)班 接收教室): each row
    # carries its classroom's (or home student's) id and school, and clients match rows by id
    rooms: dict[int, tuple[str, int | None, str | None]] = {}
    for cid, name, sid, school in session.execute(
            select(Classroom.id, Classroom.name, School.id, School.name).join(School, School.id == Classroom.school_id)
            .where(Classroom.id.in_({a.classroom_id for a in record.attendance if a.classroom_id}))):
        rooms[cid] = (name, sid, school)
    users: dict[int, tuple[str, int | None, str | None]] = {}
    for uid, name, sid, school in session.execute(
            select(User.id, User.display_name, School.id, School.name).outerjoin(School, School.id == User.school_id)
            .where(User.id.in_({a.user_id for a in record.attendance if a.user_id}))):
        users[uid] = (name, sid, school)
    none: tuple[str | None, int | None, str | None] = (None, None, None)
    out = []
    for a in record.attendance:
        room = rooms.get(a.classroom_id or 0, none)
        person = users.get(a.user_id or 0, none)
        place = person if a.role == "student" else room
        out.append(AttendanceOut(
            role=a.role, classroom_id=a.classroom_id, classroom_name=room[0], user_id=a.user_id, user_name=person[0],
            school_id=place[1], school_name=place[2], expected=a.expected, first_join=a.first_join,
            last_leave=a.last_leave, present_s=a.present_s, disconnects=a.disconnects, stage_count=a.stage_count,
            stage_s=a.stage_s, loss_p50=a.loss_p50, loss_p95=a.loss_p95, rtt_p50_ms=a.rtt_p50_ms,
            rtt_p95_ms=a.rtt_p95_ms, poor_link_s=a.poor_link_s, link_samples=a.link_samples,
            uncertain_s=a.uncertain_s, timeline=[LinkSampleOut(at=s.at, loss=s.loss, rtt_ms=s.rtt_ms, jitter_ms=s.jitter_ms,
                                    bitrate_kbps=s.bitrate_kbps) for s in a.timeline] if timeline else None,
        ))
    return RecordOut(
        instance_id=record.instance_id, status=record.status, status_label=STATUS_ZH[record.status],
        scheduled_start=record.scheduled_start, scheduled_end=record.scheduled_end,
        actual_start=record.actual_start, actual_end=record.actual_end, duration_s=record.duration_s,
        late_s=record.late_s, on_time=record.on_time, expected_receivers=record.expected_receivers,
        attended_receivers=record.attended_receivers, uncertain_s=record.uncertain_s, attendance=out,
        media_gap_s=record.media_gap_s,
        media_gaps=[MediaGapOut(at=g.at, seconds=g.seconds, reason=g.reason, restored=g.restored)
                    for g in record.media_gaps],
        insight=InsightOut.model_validate(st_analysis.as_dict(record.insight)) if record.insight is not None else None,
    )


@router.get("/lessons/{instance_id}", response_model=RecordOut)
async def lesson_record(instance_id: int, request: Request, session: SessionDep, scope: StaffScope,
                        timeline: bool = False,
                        st_interval_s: Annotated[int, Query(ge=1, le=600)] = st_analysis.DEFAULT_INTERVAL_S,
                        ) -> RecordOut:
    """The lesson's teaching record as of now (``timeline``: with every link sample per classroom;
    ``st_interval_s``: the S-T analysis's sampling, 30 s as the literature samples, 3 s for a fine timeline)."""
    await _flush(request, session)
    settings = request.app.state.settings

    def work() -> RecordOut:
        require_instance(session, scope, instance_id)
        record = records.compute(session, instance_id, now=clock.now(),
                                 late_grace=timedelta(minutes=settings.record_late_grace_minutes),
                                 st_interval_s=st_interval_s)
        return _record_out(session, record, timeline)

    return await asyncio.to_thread(work)


@router.get("/lessons/{instance_id}/events", response_model=EventsOut)
async def lesson_events(instance_id: int, request: Request, session: SessionDep, scope: StaffScope,
                        after_id: Annotated[int, Query(ge=0)] = 0,
                        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
                        kind: EventKind | None = None) -> EventsOut:
    """The lesson's session event log, oldest first, in pages (``after_id`` of the last row seen)."""
    await _flush(request, session)

    def work() -> EventsOut:
        require_instance(session, scope, instance_id)
        q = select(SessionEvent).where(SessionEvent.instance_id == instance_id, SessionEvent.id > after_id)
        if kind is not None:
            q = q.where(SessionEvent.kind == kind)
        rows = list(session.scalars(q.order_by(SessionEvent.id).limit(limit + 1)))
        more = len(rows) > limit
        rows = rows[:limit]
        return EventsOut(
            data=[EventOut(id=e.id, at=e.at, kind=e.kind, participant_id=e.participant_id, user_id=e.user_id,
                           classroom_id=e.classroom_id, role=e.role, data=e.data) for e in rows],
            next_after_id=rows[-1].id if more and rows else None,
        )

    return await asyncio.to_thread(work)
