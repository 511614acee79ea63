"""Recordings (录播) and the resource pool (资源池): list, details, playback, one-MP4 download, retention.

Readers: admins by scope, researchers their region, teachers the lessons they
may see, students the famous-school lessons they are enrolled in; terminals
none (``scheduler.recordings``).  A ``<video>`` element cannot send a bearer
header, so files are served to a short-lived signed URL instead
(``?token=``, ``MEDIA_TOKEN_SECONDS``) that the details answer hands out to a
reader; the file answer supports HTTP ranges, so the player can seek.  A recording that keeps its lesson's
stream (a 名校网络课堂's, ended) also gets a signed prefix of that stream (``server.api.routes.hls``,
``StreamOut``), which the replay page plays instead of the files.  With several nodes each keeps
the files of the recordings it wrote: a file this node does not have is answered with a redirect to the
node that wrote it, while that node is in the registry (the signed URL is good on every node).
"""

from __future__ import annotations

import time
import uuid
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import anyio
import jwt
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from pydantic import BaseModel

from scheduler import clock, recordings
from scheduler.access import Scope
from scheduler.errors import Forbidden, NotFound
from scheduler.models import LessonKind
from scheduler.recordings_models import Recording, RecordingStatus
from server.api.deps import AdminScope, ScopeDep, SessionDep, SettingsDep
from server.api.errors import ApiError
from server.api.routes.hls import recording_link
from server.api.times import Timestamp
from server.core import hls_files
from server.core.config import Settings

router = APIRouter(prefix="/recordings", tags=["recordings"])

MEDIA_TOKEN_SECONDS = 6 * 3600
"""Lifetime of a file URL: long enough to watch a lesson with pauses; the page asks again on reload."""
STATUS_ZH = {
    RecordingStatus.recording: "录制中",
    RecordingStatus.ready: "可回放",
    RecordingStatus.partial: "可回放（服务器中断后恢复）",
    RecordingStatus.failed: "录制失败",
    RecordingStatus.expired: "已过期删除",
}
SOURCE_ZH = {"camera": "教师画面", "screen": "屏幕共享", "microphone": "声音"}
JOB_ZH = {"queued": "排队中", "running": "合成中", "done": "已完成", "failed": "合成失败"}


class FileOut(BaseModel):
    name: str
    recording_id: int
    """The recording (the lesson's segment, ``segments``) the file belongs to."""
    source: str
    source_label: str
    kind: str
    codec: str
    start_s: float
    duration_s: float
    size: int
    width: int = 0
    height: int = 0
    url: str
    mime: str


class StreamOut(BaseModel):
    """The stream a recording keeps (a 名校网络课堂's LL-HLS stream, ended: every segment, ``EXT-X-ENDLIST``),
    behind a signed prefix good for that recording alone; the URIs inside the playlists are relative."""

    main_url: str
    """``<prefix>main.m3u8``: the camera with the sound (after ``SANKE_HLS_BASE_URL`` when the streams are served
    from another origin)."""
    screen_url: str | None
    """``<prefix>screen.m3u8``: the shared screen, when it was shared."""
    expires_at: int
    """Unix seconds: the prefix is refused (403 ``link_expired``) from then on; the page asks again on reload."""
    program_date_time: float
    """The stream's clock (``EXT-X-PROGRAM-DATE-TIME``, Unix seconds) at the start of the recording's files:
    the lesson's time ``t`` within this recording is the stream's instant ``program_date_time + t - offset_s``."""


class SegmentOut(BaseModel):
    """One recording of the lesson on the lesson's time axis (a lesson recorded across a server restart has
    several)."""

    id: int
    status: RecordingStatus
    status_label: str
    offset_s: float
    duration_s: float
    error: str | None
    stream: StreamOut | None = None
    """The recording's stream, when it keeps one that ended (else the replay plays its ``files``)."""


class GapOut(BaseModel):
    """A stretch of the lesson's time axis where nothing was recorded (the server was down)."""

    start_s: float
    end_s: float


class RecordingSummaryOut(BaseModel):
    id: int
    instance_id: int
    title: str
    kind: LessonKind
    subject: str
    grade: str
    day: date
    starts_at: Timestamp
    teacher_id: int
    teacher_name: str
    school_id: int
    school_name: str
    status: RecordingStatus
    status_label: str
    duration_s: float
    size_bytes: int
    codecs: str


class RecordingListOut(BaseModel):
    data: list[RecordingSummaryOut]
    count: int


class FacetOut(BaseModel):
    id: int
    name: str


class FacetsOut(BaseModel):
    subjects: list[str]
    grades: list[str]
    teachers: list[FacetOut]
    schools: list[FacetOut]


class ComposeOut(BaseModel):
    status: str
    """none (never asked), queued, running, done, failed"""
    status_label: str
    progress: float
    error: str | None = None
    url: str | None = None


class AnnotationOut(BaseModel):
    """A change of the teacher's annotation over the shared screen (同屏批注), at ``t`` on the lesson's axis."""

    t: float
    action: str
    """``stroke``, ``undo`` (``stroke`` names the one taken away) or ``clear``."""
    stroke: dict[str, Any] | None = None


class RecordingOut(BaseModel):
    id: int
    instance_id: int
    title: str
    kind: LessonKind
    subject: str
    grade: str
    starts_at: Timestamp
    teacher_name: str
    school_name: str
    status: RecordingStatus
    status_label: str
    started_at: Timestamp
    ended_at: Timestamp | None
    duration_s: float
    size_bytes: int
    codecs: str
    error: str | None
    files: list[FileOut]
    """Every file of the lesson's playable recordings, ``start_s`` on the lesson's time axis (``segments``)."""
    segments: list[SegmentOut] = []
    gaps: list[GapOut] = []
    annotations: list[AnnotationOut] = []
    """The strokes drawn over the shared screen and when, for the player to draw over the screen."""
    compose: ComposeOut
    expires_on: date | None
    """The day the files are deleted (``SANKE_RECORDING_RETENTION_DAYS``), or None when they are kept."""


class SeriesRecordingIn(BaseModel):
    recording: bool


class SeriesRecordingOut(BaseModel):
    series_id: int
    kind: LessonKind
    recording: bool


class CleanupOut(BaseModel):
    expired: list[int]


# ---------------------------------------------------------------------------- signed file URLs


def media_token(settings: Settings, recording_id: int, name: str) -> str:
    now = int(time.time())
    claims = {"sub": str(recording_id), "typ": "media", "file": name, "iat": now, "exp": now + MEDIA_TOKEN_SECONDS,
              "jti": uuid.uuid4().hex}
    return jwt.encode(claims, settings.effective_secret_key(), "HS256")


def _check_media_token(settings: Settings, token: str | None, recording_id: int, name: str) -> None:
    if not token:
        raise ApiError(401, "not_authenticated", "缺少录播访问凭证")
    try:
        claims = jwt.decode(token, settings.effective_secret_key(), algorithms=["HS256"],
                            options={"require": ["exp", "sub", "typ"]})
    except jwt.ExpiredSignatureError:
        raise ApiError(401, "token_expired", "录播链接已过期，请刷新页面") from None
    except jwt.PyJWTError:
        raise ApiError(401, "token_invalid", "录播访问凭证无效") from None
    if claims.get("typ") != "media" or claims.get("sub") != str(recording_id) or claims.get("file") != name:
        raise ApiError(403, "forbidden", "该凭证不能访问此文件")


def _file_url(settings: Settings, row: Recording, name: str) -> str:
    return f"/api/v1/recordings/{row.id}/files/{name}?token={media_token(settings, row.id, name)}"


MIME = {"webm": {"video": "video/webm", "audio": "audio/webm"}, "mp4": {"video": "video/mp4", "audio": "audio/mp4"}}


# ---------------------------------------------------------------------------- routes


def _scope_reader(scope: Scope) -> Scope:
    try:
        recordings.require_reader(scope)
    except Forbidden as exc:
        raise ApiError(403, "forbidden", str(exc)) from None
    return scope


@router.get("", response_model=RecordingListOut)
def list_recordings(
    session: SessionDep, scope: ScopeDep,
    subject: str | None = None, grade: str | None = None, teacher_id: int | None = None,
    school_id: int | None = None, kind: LessonKind | None = None,
    date_from: date | None = None, date_to: date | None = None, q: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50, offset: Annotated[int, Query(ge=0)] = 0,
) -> RecordingListOut:
    """The resource pool: recorded lessons the caller may see (one row per lesson, by its newest recording;
    ``duration_s`` of the whole lesson), filtered by subject, grade, teacher, school."""
    _scope_reader(scope)
    items, count = recordings.library(session, scope, recordings.LibraryFilter(
        subject=subject, grade=grade, teacher_id=teacher_id, school_id=school_id, kind=kind,
        date_from=date_from, date_to=date_to, q=q), limit=limit, offset=offset)
    lessons = {i.instance.id: recordings.lesson_timeline(session, i.instance.id) for i in items}
    return RecordingListOut(count=count, data=[RecordingSummaryOut(
        id=i.recording.id, instance_id=i.instance.id, title=i.series.title, kind=i.series.kind,
        subject=i.series.subject, grade=i.series.grade, day=i.instance.day, starts_at=i.instance.starts_at,
        teacher_id=i.instance.teacher_id, teacher_name=i.teacher_name, school_id=i.school_id,
        school_name=i.school_name, status=i.recording.status, status_label=STATUS_ZH[i.recording.status],
        duration_s=lessons[i.instance.id].duration_s,
        size_bytes=sum(seg.recording.size_bytes for seg in lessons[i.instance.id].segments), codecs=i.recording.codecs,
    ) for i in items])


@router.get("/facets", response_model=FacetsOut)
def library_facets(session: SessionDep, scope: ScopeDep) -> FacetsOut:
    """The filter choices of the caller's resource pool."""
    _scope_reader(scope)
    f = recordings.facets(session, scope)
    return FacetsOut(subjects=f["subjects"], grades=f["grades"], teachers=[FacetOut(**t) for t in f["teachers"]],
                     schools=[FacetOut(**s) for s in f["schools"]])


@router.put("/series/{series_id}", response_model=SeriesRecordingOut)
def set_series_recording(series_id: int, body: SeriesRecordingIn, session: SessionDep,
                         scope: AdminScope) -> SeriesRecordingOut:
    """Switch recording on or off for a series' lessons (admins of its main school; famous-school: always on)."""
    series = recordings.set_series_recording(session, scope, series_id, body.recording)
    return SeriesRecordingOut(series_id=series.id, kind=series.kind, recording=series.recording)


@router.post("/cleanup", response_model=CleanupOut)
def cleanup(session: SessionDep, scope: AdminScope, settings: SettingsDep) -> CleanupOut:
    """Apply the retention now (it also runs every hour): system admins only."""
    if not scope.everywhere:
        raise ApiError(403, "forbidden", "只有系统管理员可以清理录播")
    return CleanupOut(expired=recordings.expire(session, now=clock.now(), data_dir=settings.data_dir,
                                                retention_days=settings.recording_retention_days))


def _stream_out(request: Request, settings: Settings, row: Recording) -> StreamOut | None:
    """The stream ``row`` keeps, when it ended (its ``main.m3u8`` lists the renditions' ``vod.m3u8``) and its
    clock can be put on the files' axis (the first picture of a video source is the first of its first file and
    of its rendition)."""
    folder = hls_files.recording_folder(settings.data_dir, row.instance_id, row.id)
    try:
        main = (folder / "main.m3u8").read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None
    if "/vod.m3u8" not in main:
        return None  # never ended (the worker died and nothing resumed it): the files play
    files = sorted(row.files or [], key=lambda f: float(f["start_s"]))
    origin = None
    for source in ("camera", "screen"):
        first = next((f for f in files if f["source"] == source and f["kind"] == "video"), None)
        pdt = first_program_date_time(folder / source / "vod.m3u8")
        if first is not None and pdt is not None:
            origin = pdt - float(first["start_s"])
            break
    if origin is None:
        return None
    link = recording_link(request, row.instance_id, row.id, MEDIA_TOKEN_SECONDS)
    base = (settings.hls_base_url or "").rstrip("/") + link.prefix  # an origin serving the streams, as the lesson's
    return StreamOut(main_url=base + "main.m3u8",
                     screen_url=base + "screen.m3u8" if (folder / "screen.m3u8").is_file() else None,
                     expires_at=link.expires, program_date_time=round(origin, 3))


def first_program_date_time(path: Path) -> float | None:
    """The ``EXT-X-PROGRAM-DATE-TIME`` of a media playlist's first segment (read from its beginning)."""
    try:
        with path.open(encoding="utf-8") as f:
            head = f.read(2048)
    except (FileNotFoundError, NotADirectoryError):
        return None
    for line in head.splitlines():
        if line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            return datetime.fromisoformat(line.split(":", 1)[1].replace("Z", "+00:00")).timestamp()
    return None


def _compose_out(request: Request, settings: Settings, row: Recording) -> ComposeOut:
    job = request.app.state.recordings.jobs.get(row.id)
    if job is not None and job.status != "done":
        return ComposeOut(status=job.status, status_label=JOB_ZH[job.status], progress=job.progress, error=job.error)
    if row.composed_name and row.status in recordings.PLAYABLE:
        return ComposeOut(status="done", status_label=JOB_ZH["done"], progress=1.0,
                          url=_file_url(settings, row, row.composed_name))
    return ComposeOut(status="none", status_label="未合成", progress=0.0)


@router.get("/{recording_id}", response_model=RecordingOut)
def get_recording(recording_id: int, request: Request, session: SessionDep, scope: ScopeDep,
                  settings: SettingsDep) -> RecordingOut:
    """A recording with its files (signed URLs, for the replay page) and its one-MP4 download."""
    row = recordings.require_recording(session, scope, recording_id)
    item = recordings.describe(session, row)
    files = []
    timeline = recordings.lesson_timeline(session, row.instance_id)
    playable = row.status in recordings.PLAYABLE
    for seg in timeline.segments if playable else []:
        for f in seg.recording.files or []:
            ext = str(f["name"]).rsplit(".", 1)[-1]
            files.append(FileOut(
                name=f["name"], recording_id=seg.recording.id, source=f["source"], source_label=SOURCE_ZH.get(f["source"], f["source"]),
                kind=f["kind"], codec=f["codec"], start_s=round(seg.offset_s + float(f["start_s"]), 3),
                duration_s=f["duration_s"], size=f["size"], width=f.get("width") or 0, height=f.get("height") or 0,
                url=_file_url(settings, seg.recording, f["name"]),
                mime=MIME.get(ext, {}).get(f["kind"], "application/octet-stream")))
    days = settings.recording_retention_days
    ended = row.ended_at or row.started_at
    return RecordingOut(
        id=row.id, instance_id=row.instance_id, title=item.series.title, kind=item.series.kind,
        subject=item.series.subject, grade=item.series.grade, starts_at=item.instance.starts_at,
        teacher_name=item.teacher_name, school_name=item.school_name, status=row.status,
        status_label=STATUS_ZH[row.status], started_at=row.started_at, ended_at=row.ended_at,
        duration_s=timeline.duration_s if playable else row.duration_s, size_bytes=row.size_bytes, codecs=row.codecs,
        error=row.error, files=files,
        segments=[SegmentOut(id=seg.recording.id, status=seg.recording.status,
                             status_label=STATUS_ZH[seg.recording.status], offset_s=seg.offset_s,
                             duration_s=seg.recording.duration_s, error=seg.recording.error,
                             stream=_stream_out(request, settings, seg.recording))
                  for seg in timeline.segments] if playable else [],
        gaps=[GapOut(start_s=a, end_s=b) for a, b in timeline.gaps] if playable else [],
        annotations=[AnnotationOut(t=t, action=str(d.get("action") or ""), stroke=d.get("stroke"))
                     for t, d in recordings.annotations_on_axis(session, row.instance_id, timeline)] if playable else [],
        compose=_compose_out(request, settings, row),
        expires_on=(recordings.expiry_day(ended, days) if days and row.status is not RecordingStatus.expired else None),
    )


@router.get("/{recording_id}/files/{name}", response_class=FileResponse,
            responses={200: {"content": {"video/webm": {}, "video/mp4": {}}}, 206: {"description": "a range"},
                       307: {"description": "the file is on the node that wrote it"}})
def recording_file(recording_id: int, name: str, session: SessionDep, settings: SettingsDep,
                   request: Request, token: str | None = None) -> Response:
    """A file of a recording, to the signed URL of the details answer; HTTP ranges for seeking.  A file
    another node wrote: a redirect (307) to that node, while it is registered."""
    _check_media_token(settings, token, recording_id, name)
    row = session.get(Recording, recording_id)
    if row is None:
        raise ApiError(404, "not_found", "录播不存在")
    try:
        path = recordings.file_path(settings.data_dir, row, name)
    except NotFound:
        writer = _writer_url(request, settings, row)
        if writer is None:
            raise
        return RedirectResponse(f"{writer}/api/v1/recordings/{row.id}/files/{name}?token={token}", 307)
    ext = name.rsplit(".", 1)[-1]
    kind = next((f["kind"] for f in row.files or [] if f["name"] == name), "video")
    download = name == row.composed_name
    return FileResponse(path, media_type=MIME.get(ext, {}).get(kind, "application/octet-stream"),
                        filename=f"lesson-{row.instance_id}.mp4" if download else None,
                        content_disposition_type="attachment" if download else "inline")


def _writer_url(request: Request, settings: Settings, row: Recording) -> str | None:
    """The URL of the other node that wrote ``row``'s files, if it is registered now."""
    registry = getattr(request.app.state, "nodes", None)
    if not row.node or row.node == settings.effective_node_id or registry is None or not registry.clustered:
        return None
    try:
        nodes = anyio.from_thread.run(registry.nodes)
    except ConnectionError:
        return None
    return next((n.url.rstrip("/") for n in nodes if n.node_id == row.node), None)


@router.post("/{recording_id}/compose", response_model=ComposeOut, status_code=202)
def compose_recording(recording_id: int, request: Request, session: SessionDep, scope: ScopeDep,
                      settings: SettingsDep) -> ComposeOut:
    """Start composing the lesson as one MP4 (camera and screen picture-in-picture, with audio); poll the GET.
    Admins in scope and the lesson's teacher start it (others: 403); once composed, any reader gets the URL."""
    row = recordings.require_recording(session, scope, recording_id)
    if row.status not in recordings.PLAYABLE:
        raise ApiError(409, "not_ready", "录播尚未就绪，无法合成下载")
    service = request.app.state.recordings
    if not row.composed_name:
        recordings.require_composer(session, scope, row)
        service.compose(row)
    return _compose_out(request, settings, row)


@router.get("/{recording_id}/compose", response_model=ComposeOut)
def compose_status(recording_id: int, request: Request, session: SessionDep, scope: ScopeDep,
                   settings: SettingsDep) -> ComposeOut:
    """Where the one-MP4 composition stands (status, progress 0…1, and the download URL once done)."""
    row = recordings.require_recording(session, scope, recording_id)
    return _compose_out(request, settings, row)
