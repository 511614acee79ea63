"""Rules of lesson recordings (录播) and the resource pool (资源池).

- **Which lessons are recorded.** Every famous-school lesson (名校网络课堂), and a
  dedicated or master lesson whose series has ``recording`` switched on
  (``should_record``).
- **A recording's life.** ``begin`` when the main classroom first publishes (the
  media worker then writes files under ``<data_dir>/<directory>``), ``finish``
  with the worker's summary when the room closes, or ``fail``.  ``link_record``
  puts the recording's id on the lesson's teaching record (whichever of the
  two is written last does it).
- **After a crash.** A row the killed server left ``recording`` (``orphans``:
  those of its node) is ``recover``-ed on its next start with the files that
  could be finalized (``media.salvage``): ``partial``, playable, linked to the
  lesson like a ready one.
- **After a failover.** With several nodes the writing node ``checkpoint``-s
  what its files hold every few seconds; the node that takes a lesson over
  from a dead owner ends the dead owner's row with that (``take_over``:
  ``partial``, the error saying so), so the lesson's replay lists it before
  the new owner's recording.  Its files are still the dead node's, unfinalized:
  its ``orphans`` include such a row, and its ``recover`` replaces the
  checkpoint with the finalized files when it starts again.
- **One lesson, one replay.** A lesson recorded across restarts has several
  recordings; ``lesson_timeline`` puts their files on one time axis (each
  recording at its start after the first's, never overlapping the one before)
  with the gaps between them, and the library lists each lesson once (its
  newest playable recording stands for it).
- **Who sees what.** Admins by scope, researchers their region, teachers the
  lessons they may see, students only the famous-school lessons they are
  enrolled in (``scheduler.access.instance_clause``); terminals none.  A researcher
  or teacher invited to evaluate a lesson (评课, a 教研活动) sees its recordings too.
- **Composing a download.** Only those who may manage a recording (``may_manage``:
  admins in scope, the lesson's teacher) start one (``require_composer``); every
  reader downloads it once it exists.
- **Retention.** ``expire`` deletes the files of recordings older than the
  retention and marks them ``expired``; the row stays for the records.

Plain functions with ``session=``; no FastAPI, no PyAV.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select
from sqlalchemy.orm import Session

from scheduler import audit, records, webhooks
from scheduler.access import Scope, instance_clause, require_school_admin
from scheduler.errors import Forbidden, Invalid, NotFound
from scheduler.models import (
    Classroom,
    LessonInstance,
    LessonKind,
    LessonSeries,
    Role,
    School,
    User,
)
from scheduler.patrol_models import EvaluatorInvitation
from scheduler.recordings_models import Recording, RecordingStatus
from scheduler.records_models import TeachingRecord

RECORDINGS_DIR = "recordings"
"""Folder of all recordings inside ``SANKE_DATA_DIR``."""
READABLE_ROLES = (Role.admin, Role.researcher, Role.teacher, Role.student)
PLAYABLE = (RecordingStatus.ready, RecordingStatus.partial)
GAP_MIN_S = 1.0
"""Between two recordings of a lesson, a pause shorter than this is not shown as a gap."""
RECOVERED_ZH = "服务器意外中断，录像已恢复到中断前（最后约 1 秒可能缺失）"
TAKEN_OVER_ZH = "服务器意外中断，课堂已切换到其他服务器继续录制；本段录像截至中断前几秒，原服务器恢复后补全"
"""The error of a row ``take_over`` ended: also how its node's ``orphans`` know it is still to be finalized."""


def should_record(session: Session, instance_id: int) -> bool:
    inst = session.get(LessonInstance, instance_id)
    if inst is None:
        return False
    series = inst.series
    return bool(series.recording) or series.kind is LessonKind.famous_school


def streams_hls(session: Session, instance_id: int) -> bool:
    """Whether the lesson's recording is also its LL-HLS stream (名校网络课堂: to any audience)."""
    inst = session.get(LessonInstance, instance_id)
    return inst is not None and inst.series.kind is LessonKind.famous_school


def set_series_recording(session: Session, scope: Scope, series_id: int, on: bool) -> LessonSeries:
    """Switch the recording of a series' lessons (an admin of its main school); famous-school lessons are
    always recorded.  Applies from the next lesson whose main classroom publishes."""
    series = session.get(LessonSeries, series_id)
    if series is None:
        raise NotFound(f"系列课 #{series_id} 不存在")
    school_id = session.scalar(select(Classroom.school_id).where(Classroom.id == series.main_classroom_id))
    require_school_admin(session, scope, int(school_id or 0))
    if series.kind is LessonKind.famous_school and not on:
        raise Invalid("名校网络课堂始终录制，不能关闭")
    if series.recording != on:
        series.recording = on
        audit.record(session, actor_id=scope.user_id, entity="series", entity_id=series.id,
                     action="recording_on" if on else "recording_off")
    return series


def begin(session: Session, instance_id: int, *, now: datetime, node: str | None = None) -> Recording | None:
    """A new recording of a lesson that is to be recorded (None otherwise), written by ``node``; the caller
    commits."""
    if not should_record(session, instance_id):
        return None
    row = Recording(instance_id=instance_id, status=RecordingStatus.recording, directory="", started_at=now,
                    duration_s=0.0, size_bytes=0, codecs="", files=[], node=node)
    session.add(row)
    session.flush()
    row.directory = f"{RECORDINGS_DIR}/{instance_id}/{row.id}"
    return row


def finish(session: Session, recording_id: int, summary: dict[str, Any], *, now: datetime) -> Recording | None:
    """Store the media worker's summary (``media.recorder.RoomRecorder.summary``) of a recording that ended."""
    row = session.get(Recording, recording_id)
    if row is None:
        return None
    errors = _store_files(row, summary.get("files") or [])
    row.duration_s = float(summary.get("duration_s") or 0.0)
    row.ended_at = now
    if row.files:
        row.status = RecordingStatus.ready
        row.error = "; ".join(errors)[:1000] or None
    else:
        row.status = RecordingStatus.failed
        row.error = "没有录到任何画面或声音"
    session.flush()
    link_record(session, row.instance_id)
    if row.status in PLAYABLE:
        webhooks.recording_ready(session, row, now)
    return row


def _store_files(row: Recording, files: list[dict[str, Any]]) -> list[str]:
    """Keep the files that hold something, with their size and codecs; answers the errors of those kept."""
    kept = [f for f in files if f.get("size")]
    row.files = kept
    row.size_bytes = sum(int(f["size"]) for f in kept)
    row.codecs = ",".join(sorted({str(f["codec"]) for f in kept}))
    return [f"{f['name']}: {f['error']}" for f in kept if f.get("error")]


def fail(session: Session, recording_id: int, error: str, *, now: datetime) -> None:
    row = session.get(Recording, recording_id)
    if row is not None and row.status is RecordingStatus.recording:
        row.status = RecordingStatus.failed
        row.error = error[:1000]
        row.ended_at = now


def orphans(session: Session, node: str) -> list[Recording]:
    """The recordings ``node`` left ``recording``, and those another node ended for it after a failover
    (``take_over``) whose files it has not finalized: call it at the node's start, when none is written."""
    return list(session.scalars(select(Recording).where(
        Recording.node == node,
        (Recording.status == RecordingStatus.recording) | (Recording.error == TAKEN_OVER_ZH)).order_by(Recording.id)))


def checkpoint(session: Session, recording_id: int, files: list[dict[str, Any]]) -> bool:
    """What the files of a recording being written hold so far (``media.salvage.written_so_far``), kept on
    its row while it is ``recording`` (for ``take_over``); answers whether the row changed."""
    row = session.get(Recording, recording_id)
    if row is None or row.status is not RecordingStatus.recording:
        return False
    kept = [{k: v for k, v in f.items() if k != "wall"} for f in files if f.get("size")]
    duration = round(max((float(f["start_s"]) + float(f["duration_s"]) for f in kept), default=0.0), 3)
    if kept == (row.files or []) and duration == row.duration_s:
        return False
    _store_files(row, kept)
    row.duration_s = duration
    return True


def take_over(session: Session, instance_id: int, dead_node: str, *, now: datetime) -> list[Recording]:
    """The lesson moved here because ``dead_node`` died: end the recordings it left ``recording`` with their
    last ``checkpoint`` (``partial``; ``failed`` when none held anything yet), the error saying so
    (``TAKEN_OVER_ZH``); linked to the lesson's record.  A row its node ended meanwhile is left alone."""
    rows = list(session.scalars(select(Recording).where(
        Recording.instance_id == instance_id, Recording.node == dead_node,
        Recording.status == RecordingStatus.recording).order_by(Recording.id)))
    for row in rows:
        row.ended_at = min(now, row.started_at + timedelta(seconds=round(float(row.duration_s))))
        row.status = RecordingStatus.partial if row.files else RecordingStatus.failed
        row.error = TAKEN_OVER_ZH
    if rows:
        session.flush()
        link_record(session, instance_id)
    return rows


def recover(session: Session, recording_id: int, files: list[dict[str, Any]], *, now: datetime) -> Recording | None:
    """Store what could be finalized of a recording cut by a crash (``media.salvage.salvage_folder``):
    ``partial`` with the readable files, ``failed`` when none was; linked to the lesson's record.  Also
    for a row another node ended after a failover (``take_over``): the finalized files replace its
    checkpoint."""
    row = session.get(Recording, recording_id)
    if row is None or (row.status is not RecordingStatus.recording and row.error != TAKEN_OVER_ZH):
        return row
    _store_files(row, [{k: v for k, v in f.items() if k != "wall"} for f in files])
    errors = [f"{f['name']}: {f['error']}" for f in files if f.get("error")]  # the unreadable ones too
    row.duration_s = round(max((float(f["start_s"]) + float(f["duration_s"]) for f in row.files or []),
                               default=0.0), 3)
    row.ended_at = min(now, row.started_at + timedelta(seconds=round(row.duration_s)))
    if row.files:
        row.status = RecordingStatus.partial
        row.error = "; ".join([RECOVERED_ZH, *errors])[:1000]
    else:
        row.status = RecordingStatus.failed
        row.error = "服务器意外中断，没有可恢复的录像"
    session.flush()
    link_record(session, row.instance_id)
    if row.status in PLAYABLE:
        webhooks.recording_ready(session, row, now)
    return row


def link_record(session: Session, instance_id: int) -> None:
    """Point the lesson's teaching record (if it exists yet) at its newest playable recording."""
    record = session.get(TeachingRecord, instance_id)
    if record is None:
        return
    newest = session.scalar(select(Recording.id).where(
        Recording.instance_id == instance_id, Recording.status.in_(PLAYABLE)).order_by(Recording.id.desc()))
    if newest is not None and record.recording_id != newest:
        record.recording_id = newest


@dataclass(frozen=True)
class Segment:
    recording: Recording
    offset_s: float
    """Where the recording starts on the lesson's time axis."""


@dataclass(frozen=True)
class LessonTimeline:
    segments: list[Segment]
    duration_s: float
    gaps: list[tuple[float, float]]
    """(start, end) on the lesson's axis where nothing was recorded between two recordings."""


def lesson_timeline(session: Session, instance_id: int) -> LessonTimeline:
    """The lesson's playable recordings on one time axis, in the order they were made."""
    rows = list(session.scalars(select(Recording).where(
        Recording.instance_id == instance_id, Recording.status.in_(PLAYABLE))
        .order_by(Recording.started_at, Recording.id)))
    segments: list[Segment] = []
    gaps: list[tuple[float, float]] = []
    end = 0.0
    for row in rows:
        offset = max(end, (row.started_at - rows[0].started_at).total_seconds())
        if segments and offset - end >= GAP_MIN_S:
            gaps.append((round(end, 3), round(offset, 3)))
        segments.append(Segment(row, round(offset, 3)))
        end = offset + float(row.duration_s)
    return LessonTimeline(segments, round(end, 3), gaps)


def annotations_on_axis(session: Session, instance_id: int, timeline: LessonTimeline) -> list[tuple[float, dict[str, Any]]]:
    """The lesson's annotations of the shared screen (``annotation`` events of its log, ``signaling.annotation``)
    as ``(t, change)`` on the lesson's replay axis: ``t`` from the recording that was running when the change
    was made (its start and offset; a change made before the first recording began, or in a gap, is placed
    at that recording's start or the gap's end)."""
    if not timeline.segments:
        return []
    out: list[tuple[float, dict[str, Any]]] = []
    for at, change in records.annotation_log(session, instance_id):
        seg = next((x for x in reversed(timeline.segments) if x.recording.started_at <= at), timeline.segments[0])
        t = seg.offset_s + max(0.0, (at - seg.recording.started_at).total_seconds())
        out.append((round(min(t, timeline.duration_s), 3), change))
    return out


# ---------------------------------------------------------------------------- who may see what


def _visible(scope: Scope) -> ColumnElement[bool]:
    clause = instance_clause(scope)
    if scope.role is Role.student:
        return and_(clause, LessonSeries.kind == LessonKind.famous_school)
    if scope.role in (Role.researcher, Role.teacher):
        # invited to evaluate it (评课, a 教研活动): its replay, wherever the lesson was given
        return or_(clause, exists(select(1).where(EvaluatorInvitation.instance_id == LessonInstance.id,
                                                  EvaluatorInvitation.invitee_id == scope.user_id)))
    return clause


def require_reader(scope: Scope) -> None:
    if scope.role not in READABLE_ROLES:
        raise Forbidden("当前角色无权查看录播")


def require_recording(session: Session, scope: Scope, recording_id: int) -> Recording:
    require_reader(scope)
    row = session.get(Recording, recording_id)
    if row is None:
        raise NotFound(f"录播 #{recording_id} 不存在")
    visible = session.scalar(
        select(LessonInstance.id).join(LessonSeries, LessonSeries.id == LessonInstance.series_id)
        .where(LessonInstance.id == row.instance_id, _visible(scope)))
    if visible is None:
        raise Forbidden("无权查看该录播")
    return row


def may_manage(session: Session, scope: Scope, row: Recording) -> bool:
    """Admins in scope and the lesson's teacher (compose a download; see it before it is ready)."""
    if scope.is_admin:
        return True
    inst = session.get(LessonInstance, row.instance_id)
    return inst is not None and scope.role is Role.teacher and scope.user_id in (inst.teacher_id,
                                                                               inst.series.main_teacher_id)


def require_composer(session: Session, scope: Scope, row: Recording) -> None:
    """Starting a one-MP4 composition (H.264 encoding on the server's cores) is for those who may manage
    the recording (``may_manage``); any reader gets the composed file once it exists."""
    if not may_manage(session, scope, row):
        raise Forbidden("只有管理员和授课教师可以合成下载；合成完成后即可下载")


@dataclass(frozen=True)
class LibraryFilter:
    subject: str | None = None
    grade: str | None = None
    teacher_id: int | None = None
    school_id: int | None = None
    kind: LessonKind | None = None
    date_from: date | None = None
    date_to: date | None = None
    q: str | None = None
    """Part of the lesson title."""


@dataclass(frozen=True)
class LibraryItem:
    recording: Recording
    instance: LessonInstance
    series: LessonSeries
    teacher_name: str
    school_id: int
    school_name: str


def _library_query_all() -> Select[Any]:
    return (
        select(Recording, LessonInstance, LessonSeries, User.display_name, School.id, School.name)
        .join(LessonInstance, LessonInstance.id == Recording.instance_id)
        .join(LessonSeries, LessonSeries.id == LessonInstance.series_id)
        .join(User, User.id == LessonInstance.teacher_id)
        .join(Classroom, Classroom.id == LessonInstance.main_classroom_id)
        .join(School, School.id == Classroom.school_id)
    )


def _library_query(scope: Scope, f: LibraryFilter) -> Select[Any]:
    newest = (select(func.max(Recording.id)).where(Recording.status.in_(PLAYABLE))
              .group_by(Recording.instance_id))
    stmt = _library_query_all().where(_visible(scope), Recording.id.in_(newest))
    if f.subject:
        stmt = stmt.where(LessonSeries.subject == f.subject)
    if f.grade:
        stmt = stmt.where(LessonSeries.grade == f.grade)
    if f.teacher_id is not None:
        stmt = stmt.where(LessonInstance.teacher_id == f.teacher_id)
    if f.school_id is not None:
        stmt = stmt.where(School.id == f.school_id)
    if f.kind is not None:
        stmt = stmt.where(LessonSeries.kind == f.kind)
    if f.date_from is not None:
        stmt = stmt.where(LessonInstance.day >= f.date_from)
    if f.date_to is not None:
        stmt = stmt.where(LessonInstance.day <= f.date_to)
    if f.q:
        stmt = stmt.where(LessonSeries.title.contains(f.q))
    return stmt


def describe(session: Session, row: Recording) -> LibraryItem:
    """The lesson, teacher and school of one recording."""
    r = session.execute(_library_query_all().where(Recording.id == row.id)).one()
    return LibraryItem(r[0], r[1], r[2], r[3], r[4], r[5])


def expiry_day(ended: datetime, retention_days: int) -> date:
    return (ended + timedelta(days=retention_days)).date()


def library(session: Session, scope: Scope, f: LibraryFilter, *, limit: int = 50,
            offset: int = 0) -> tuple[list[LibraryItem], int]:
    """Playable recorded lessons the caller may see (each by its newest recording), newest lesson first, and
    how many there are."""
    require_reader(scope)
    stmt = _library_query(scope, f)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.execute(stmt.order_by(LessonInstance.starts_at.desc(), Recording.id.desc())
                           .limit(limit).offset(offset)).all()
    return [LibraryItem(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows], total


def facets(session: Session, scope: Scope) -> dict[str, list[Any]]:
    """The filter choices of the caller's library: subjects, grades, teachers and schools that have recordings."""
    require_reader(scope)
    stmt = _library_query(scope, LibraryFilter()).with_only_columns(
        LessonSeries.subject, LessonSeries.grade, LessonInstance.teacher_id, User.display_name, School.id, School.name,
    ).distinct()
    rows = session.execute(stmt).all()
    return {
        "subjects": sorted({r[0] for r in rows}),
        "grades": sorted({r[1] for r in rows}),
        "teachers": sorted(({"id": i, "name": n} for i, n in {(r[2], r[3]) for r in rows}), key=lambda t: t["name"]),
        "schools": sorted(({"id": i, "name": n} for i, n in {(r[4], r[5]) for r in rows}), key=lambda t: t["name"]),
    }


# ---------------------------------------------------------------------------- retention


def expire(session: Session, *, now: datetime, retention_days: int, data_dir: Path) -> list[int]:
    """Delete the files of recordings that ended more than ``retention_days`` ago and mark them expired.

    ``retention_days`` 0 keeps everything.  Answers the ids expired; the caller commits.
    """
    if retention_days <= 0:
        return []
    cutoff = now - timedelta(days=retention_days)
    rows = session.scalars(select(Recording).where(
        Recording.status.in_([*PLAYABLE, RecordingStatus.failed]),
        func.coalesce(Recording.ended_at, Recording.started_at) < cutoff)).all()
    done: list[int] = []
    root = data_dir.resolve()
    for row in rows:
        folder = (data_dir / row.directory).resolve()
        if row.directory and folder.is_relative_to(root / RECORDINGS_DIR):
            shutil.rmtree(folder, ignore_errors=True)
        row.status = RecordingStatus.expired
        row.expired_at = now
        row.composed_name = None
        done.append(row.id)
    return done


def file_path(data_dir: Path, row: Recording, name: str) -> Path:
    """A file of a recording (one of its ``files`` or its composed download); NotFound otherwise."""
    names = {str(f["name"]) for f in row.files or []}
    if row.composed_name:
        names.add(row.composed_name)
    if name not in names or row.status is RecordingStatus.expired:
        raise NotFound("录播文件不存在或已过期")
    path = data_dir / row.directory / name
    if not path.is_file():
        raise NotFound("录播文件不存在或已过期")
    return path
