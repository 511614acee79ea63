"""The online-teaching record (在线教学记录) of a lesson, computed from its session event log.

Rules (what a district bureau asks of a lesson):

* **Actual start** is the main classroom's first ``publish``; **actual end** the
  moment it stopped publishing for the last time (its last ``unpublish``,
  ``leave`` or ``disconnect``, or the room's close).  **Duration** counts the
  seconds the main classroom was publishing.
* **On time** if it started no later than ``late_grace`` after the scheduled
  start; ``late_s`` says by how much it was late.
* **Status**: ``cancelled`` for a cancelled lesson; ``missed`` if the main
  classroom never published; ``held`` if it published for at least
  ``HELD_SHARE`` of the scheduled time; ``partly_held`` otherwise.
* **Attendance**, per receiving classroom (by classroom) and per home student
  (by user), from ``join``/``resume`` to ``disconnect``/``leave``: first join,
  seconds present (overlapping sessions of one classroom count once),
  disconnects, times and seconds on stage (stage time counts only while the
  classroom is present: a drop while on stage, until it resumes, is not on
  stage, so stage seconds never exceed seconds present).  Observers (patrol) are not
  attendance; their visits are the patrol record's.
* **Link quality** per classroom from the ``link_quality`` samples (written
  every 5 s per participant): median and p95 of loss and RTT, and the seconds
  of poor link (a sample with loss above ``POOR_LOSS`` or RTT above
  ``POOR_RTT_MS`` counts for the time until the next sample, at most
  ``SAMPLE_SPAN_S``).

* **Uncertain time.** A session cut by a server crash has no end of its own;
  on the next start it is ended at its last event (``scheduler.presence``:
  the event log marks open sessions periodically), and its ``leave`` carries
  ``uncertain_s``, how much longer it may have lasted unseen.  Attendance and
  the main classroom's duration report the sum of those seconds
  (``uncertain_s``, included in neither ``present_s`` nor ``duration_s``).
* **Media gaps**: the times the lesson's media stopped for everyone (its media
  worker died) until it was back (``media_gap`` events): when, how long, and
  whether every connection came back.

* **Classroom insight** (``scheduler.st_analysis``): who spoke when, from the
  ``speech`` events (the SFU's per-track speech activity from RFC 6464 audio
  levels; no audio is decoded or kept): the S-T analysis of the lesson (Rt, Ch,
  the lesson type, the T/S samples) and per receiving classroom and home student
  the seconds spoken, turns, times on stage and hands raised.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from scheduler import st_analysis, webhooks
from scheduler.errors import NotFound
from scheduler.models import InstanceStatus, LessonInstance, SeriesParticipant, SeriesReceiver
from scheduler.records_models import AttendanceRecord, EventKind, RecordStatus, SessionEvent, TeachingRecord

HELD_SHARE = 0.8
"""Publishing this share of the scheduled time makes a lesson ``held`` (else ``partly_held``)."""
DEFAULT_LATE_GRACE = timedelta(minutes=5)
POOR_LOSS = 0.05
POOR_RTT_MS = 400.0
SAMPLE_SPAN_S = 10.0
"""A link sample stands for at most this long (samples come every 5 s; a gap means no data)."""

_OPEN = {EventKind.join, EventKind.resume}
_CLOSE = {EventKind.leave, EventKind.disconnect}


@dataclass
class LinkSample:
    at: datetime
    loss: float | None
    rtt_ms: float | None
    jitter_ms: float | None
    bitrate_kbps: float | None


@dataclass
class Attendance:
    """One receiving classroom's (or home student's, or the main classroom's) part of a lesson."""

    role: str
    classroom_id: int | None
    user_id: int | None
    first_join: datetime | None = None
    last_leave: datetime | None = None
    present_s: int = 0
    disconnects: int = 0
    stage_count: int = 0
    stage_s: int = 0
    loss_p50: float | None = None
    loss_p95: float | None = None
    rtt_p50_ms: float | None = None
    rtt_p95_ms: float | None = None
    poor_link_s: int = 0
    link_samples: int = 0
    uncertain_s: int = 0
    """How much longer than ``present_s`` it may have been present (sessions cut by a crash)."""
    timeline: list[LinkSample] = field(default_factory=list)
    expected: bool = False
    """Booked into the lesson (a receiving classroom of the series or an enrolled student)."""


@dataclass
class MediaGap:
    """The lesson's media was down for everyone from ``at`` for ``seconds``."""

    at: datetime
    seconds: float
    reason: str
    restored: bool


@dataclass
class Record:
    instance_id: int
    status: RecordStatus
    scheduled_start: datetime
    scheduled_end: datetime
    actual_start: datetime | None
    actual_end: datetime | None
    duration_s: int
    late_s: int | None
    on_time: bool | None
    attendance: list[Attendance]
    uncertain_s: int = 0
    """How much longer than ``duration_s`` the main classroom may have published (cut by a crash)."""
    media_gaps: list[MediaGap] = field(default_factory=list)
    insight: st_analysis.Insight | None = None
    """The S-T analysis and the speakers (``scheduler.st_analysis``)."""

    @property
    def media_gap_s(self) -> int:
        return round(sum(g.seconds for g in self.media_gaps))

    @property
    def expected_receivers(self) -> int:
        return sum(1 for a in self.attendance if a.expected)

    @property
    def attended_receivers(self) -> int:
        return sum(1 for a in self.attendance if a.expected and a.present_s > 0)


def _union_seconds(intervals: list[tuple[datetime, datetime]]) -> int:
    total = 0.0
    end: datetime | None = None
    for a, b in sorted(intervals):
        if end is not None and a < end:
            if b > end:
                total += (b - end).total_seconds()
                end = b
            continue
        total += (b - a).total_seconds()
        end = b
    return round(total)


def _clip(intervals: list[tuple[datetime, datetime]],
          within: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """The parts of ``intervals`` that lie inside ``within`` (a classroom is on stage only while present)."""
    out = []
    for a, b in intervals:
        for c, d in within:
            lo, hi = max(a, c), min(b, d)
            if lo < hi:
                out.append((lo, hi))
    return out


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # nearest rank
    return ordered[int(min(rank, len(ordered))) - 1]


def _intervals(events: list[SessionEvent], opens: set[EventKind], closes: set[EventKind],
               end: datetime) -> list[tuple[datetime, datetime]]:
    """Per participant session: [open, close) intervals; one still open at the end closes at ``end``."""
    started: dict[str, datetime] = {}
    out: list[tuple[datetime, datetime]] = []
    for ev in events:
        if ev.kind in opens:
            started.setdefault(ev.participant_id, ev.at)
        elif ev.kind in closes and ev.participant_id in started:
            out.append((started.pop(ev.participant_id), ev.at))
    out.extend((t, max(t, end)) for t in started.values())
    return out


def _uncertain(ev: SessionEvent) -> float:
    """Seconds a session ended by ``ev`` may have gone on unseen (a crash's ``leave``; 0 otherwise)."""
    value = (ev.data or {}).get("uncertain_s") if ev.kind is EventKind.leave else None
    return float(value) if isinstance(value, int | float) else 0.0


def _publishing(events: list[SessionEvent], end: datetime,
                uncertain: list[float] | None = None) -> list[tuple[datetime, datetime]]:
    """When the participant(s) published anything: from a first source to the last one gone.  Adds to
    ``uncertain[0]`` the unseen seconds of publishing cut by a crash."""
    live: dict[str, set[str]] = defaultdict(set)
    since: dict[str, datetime] = {}
    out: list[tuple[datetime, datetime]] = []
    for ev in events:
        pid = ev.participant_id
        source = (ev.data or {}).get("source", "")
        if ev.kind is EventKind.publish:
            if not live[pid]:
                since[pid] = ev.at
            live[pid].add(source)
        elif ev.kind is EventKind.unpublish and source in live[pid]:
            live[pid].discard(source)
            if not live[pid]:
                out.append((since.pop(pid), ev.at))
        elif ev.kind in _CLOSE and live[pid]:
            live[pid].clear()
            out.append((since.pop(pid), ev.at))
            if uncertain is not None:
                uncertain[0] += _uncertain(ev)
    out.extend((t, max(t, end)) for t in since.values())
    return out


def _link_summary(att: Attendance, samples: list[LinkSample]) -> None:
    samples.sort(key=lambda s: s.at)
    att.timeline = samples
    att.link_samples = len(samples)
    losses = [s.loss for s in samples if s.loss is not None]
    rtts = [s.rtt_ms for s in samples if s.rtt_ms is not None]
    att.loss_p50, att.loss_p95 = _percentile(losses, 50), _percentile(losses, 95)
    att.rtt_p50_ms, att.rtt_p95_ms = _percentile(rtts, 50), _percentile(rtts, 95)
    poor = 0.0
    for i, s in enumerate(samples):
        bad = (s.loss is not None and s.loss > POOR_LOSS) or (s.rtt_ms is not None and s.rtt_ms > POOR_RTT_MS)
        if not bad:
            continue
        span = SAMPLE_SPAN_S / 2
        if i + 1 < len(samples):
            span = min(SAMPLE_SPAN_S, (samples[i + 1].at - s.at).total_seconds())
        poor += span
    att.poor_link_s = round(poor)


def events_of(session: Session, instance_id: int) -> list[SessionEvent]:
    return list(session.scalars(
        select(SessionEvent).where(SessionEvent.instance_id == instance_id)
        .order_by(SessionEvent.at, SessionEvent.id)))


def annotation_log(session: Session, instance_id: int) -> list[tuple[datetime, dict[str, Any]]]:
    """The lesson's changes of its shared-screen annotation (``annotation`` events), oldest first, with when."""
    return [(e.at, dict(e.data or {})) for e in session.scalars(
        select(SessionEvent).where(SessionEvent.instance_id == instance_id, SessionEvent.kind == EventKind.annotation)
        .order_by(SessionEvent.at, SessionEvent.id))]


def compute(session: Session, instance_id: int, *, now: datetime,
            late_grace: timedelta = DEFAULT_LATE_GRACE, st_interval_s: int = st_analysis.DEFAULT_INTERVAL_S) -> Record:
    """The record of one lesson from its event log (nothing is written); ``st_interval_s``: the S-T
    analysis's sampling interval."""
    inst = session.get(LessonInstance, instance_id)
    if inst is None:
        raise NotFound("课程不存在")
    events = events_of(session, instance_id)
    end = inst.room_closed_at or now  # an open room: sessions still running count until now
    if events and inst.room_closed_at is None:
        end = max(end, events[-1].at)

    main_events = [e for e in events if e.role == "main"]
    main_uncertain = [0.0]
    publishing = _publishing(main_events, end, main_uncertain)
    actual_start = min((a for a, _ in publishing), default=None)
    actual_end = max((b for _, b in publishing), default=None)
    duration_s = _union_seconds(publishing)
    scheduled_s = (inst.ends_at - inst.starts_at).total_seconds()
    late_s: int | None = None
    on_time: bool | None = None
    if actual_start is not None:
        late_s = max(0, round((actual_start - inst.starts_at).total_seconds()))
        on_time = actual_start <= inst.starts_at + late_grace
    if inst.status is InstanceStatus.cancelled:
        status = RecordStatus.cancelled
    elif actual_start is None:
        status = RecordStatus.missed
    elif duration_s >= HELD_SHARE * scheduled_s:
        status = RecordStatus.held
    else:
        status = RecordStatus.partly_held

    # attendance: by classroom for classrooms, by user for home students
    expected_rooms = set(session.scalars(
        select(SeriesReceiver.classroom_id).where(SeriesReceiver.series_id == inst.series_id)))
    expected_users = set(session.scalars(
        select(SeriesParticipant.user_id).where(SeriesParticipant.series_id == inst.series_id)))
    units: dict[tuple[str, int | None], list[SessionEvent]] = defaultdict(list)
    for e in events:
        if e.role == "observer":
            continue
        if e.role == "student":
            units[("student", e.user_id)].append(e)
        elif e.classroom_id is not None:
            units[(e.role, e.classroom_id)].append(e)
    for cid in expected_rooms:
        units.setdefault(("receiving", cid), [])
    for uid in expected_users:
        units.setdefault(("student", uid), [])

    attendance: list[Attendance] = []
    for (role, key), evs in sorted(units.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
        is_student = role == "student"
        att = Attendance(role=role, classroom_id=None if is_student else key,
                         user_id=key if is_student else next((e.user_id for e in reversed(evs) if e.user_id), None))
        att.expected = (key in expected_users) if is_student else (role == "receiving" and key in expected_rooms)
        present = _intervals(evs, _OPEN, _CLOSE, end)
        att.present_s = _union_seconds(present)
        joins = [e.at for e in evs if e.kind is EventKind.join]
        att.first_join = min(joins, default=None)
        leaves = [e.at for e in evs if e.kind in _CLOSE]
        att.last_leave = max(leaves, default=None)
        att.disconnects = sum(1 for e in evs if e.kind is EventKind.disconnect)
        att.uncertain_s = round(sum(_uncertain(e) for e in evs))
        att.stage_count = sum(1 for e in evs if e.kind is EventKind.stage_on)
        stage = _intervals(evs, {EventKind.stage_on}, {EventKind.stage_off, EventKind.leave}, end)
        att.stage_s = _union_seconds(_clip(stage, present))  # a drop while on stage is not time on stage
        samples = [LinkSample(at=e.at, loss=_num(e.data, "loss"), rtt_ms=_num(e.data, "rtt_ms"),
                              jitter_ms=_num(e.data, "jitter_ms"), bitrate_kbps=_num(e.data, "bitrate_kbps"))
                   for e in evs if e.kind is EventKind.link_quality]
        _link_summary(att, samples)
        attendance.append(att)

    gaps = [MediaGap(at=e.at - timedelta(seconds=_num(e.data, "gap_s") or 0.0), seconds=_num(e.data, "gap_s") or 0.0,
                     reason=str((e.data or {}).get("reason") or ""), restored=bool((e.data or {}).get("restored")))
            for e in events if e.kind is EventKind.media_gap]

    return Record(instance_id=instance_id, status=status, scheduled_start=inst.starts_at,
                  scheduled_end=inst.ends_at, actual_start=actual_start, actual_end=actual_end,
                  duration_s=duration_s, late_s=late_s, on_time=on_time, attendance=attendance,
                  uncertain_s=round(main_uncertain[0]), media_gaps=gaps,
                  insight=st_analysis.analyse(events, actual_start, actual_end, interval_s=st_interval_s))


def _num(data: dict[str, Any] | None, key: str) -> float | None:
    value = (data or {}).get(key)
    return float(value) if isinstance(value, int | float) else None


def store(session: Session, record: Record, *, now: datetime) -> TeachingRecord:
    """Write ``record`` (replacing an earlier computation of the same lesson); the caller commits."""
    session.execute(delete(AttendanceRecord).where(AttendanceRecord.instance_id == record.instance_id))
    row = session.get(TeachingRecord, record.instance_id)
    if row is None:
        row = TeachingRecord(instance_id=record.instance_id)
        session.add(row)
    row.status = record.status
    row.actual_start = record.actual_start
    row.actual_end = record.actual_end
    row.duration_s = record.duration_s
    row.late_s = record.late_s
    row.on_time = record.on_time
    row.expected_receivers = record.expected_receivers
    row.attended_receivers = record.attended_receivers
    row.uncertain_s = record.uncertain_s
    insight = record.insight if record.insight is not None and record.insight.measured else None
    spoke = {(s.role, s.classroom_id if s.role == "receiving" else s.user_id): s
             for s in (insight.speakers if insight is not None else [])}
    row.st_rt = insight.rt if insight is not None else None
    row.st_ch = insight.ch if insight is not None else None
    row.st_type = insight.lesson_type if insight is not None else None
    row.receivers_spoke = sum(1 for a in record.attendance if a.role == "receiving" and a.expected
                              and (sp := spoke.get(("receiving", a.classroom_id))) is not None
                              and sp.spoken_s > 0) if insight is not None else None
    row.computed_at = now
    session.flush()

    def said(a: Attendance) -> Any:
        return spoke.get((a.role, a.classroom_id if a.role == "receiving" else a.user_id))

    session.add_all(AttendanceRecord(
        instance_id=record.instance_id, role=a.role, classroom_id=a.classroom_id, user_id=a.user_id,
        first_join=a.first_join, last_leave=a.last_leave, present_s=a.present_s, disconnects=a.disconnects,
        stage_count=a.stage_count, stage_s=a.stage_s, loss_p50=a.loss_p50, loss_p95=a.loss_p95,
        rtt_p50_ms=a.rtt_p50_ms, rtt_p95_ms=a.rtt_p95_ms, poor_link_s=a.poor_link_s, link_samples=a.link_samples,
        uncertain_s=a.uncertain_s, spoken_s=said(a).spoken_s if said(a) is not None else 0.0,
        speech_turns=said(a).turns if said(a) is not None else 0,
    ) for a in record.attendance)
    return row


def refresh(session: Session, instance_id: int, *, now: datetime,
            late_grace: timedelta = DEFAULT_LATE_GRACE) -> Record:
    """Compute and store the record of a lesson (idempotent: a second node doing the same is harmless)."""
    record = compute(session, instance_id, now=now, late_grace=late_grace)
    try:
        with session.begin_nested():
            row = store(session, record, now=now)
            webhooks.record_ready(session, row, now)  # in the same transaction as the record
    except IntegrityError:  # another node stored it at the same moment: theirs is as good
        pass
    return record
