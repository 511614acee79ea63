"""Timetable files: import from CSV/XLSX, iCalendar feeds, CSV export."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import date
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from scheduler import exports
from scheduler.access import Scope, require_school, scope_of
from scheduler.models import Classroom, Role, User
from scheduler.timetable_import import check_filename, import_timetable, sample_csv
from server.api.common import InstanceFilterDep
from server.api.deps import AdminScope, CurrentUser, ScopeDep, SessionDep, SettingsDep, get_current_user
from server.api.errors import ApiError
from server.core.config import Settings
from server.core.security import TokenError, create_feed_token, decode_feed_token

_MULTIPART_SLACK = 16 * 1024
"""Room for the multipart envelope (boundaries, part headers) on top of the file itself."""
_READ_CHUNK = 64 * 1024


def _too_large(settings: Settings) -> ApiError:
    mib = settings.max_upload_bytes / (1024 * 1024)
    return ApiError(413, "upload_too_large", f"上传文件过大，最大允许 {mib:.1f} MB")


class _UploadLimitRoute(APIRoute):
    """Refuses an upload whose declared length is already too big, before the body is read."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def limited(request: Request) -> Response:
            settings: Settings = request.app.state.settings
            length = request.headers.get("content-length", "")
            if request.method == "POST" and length.isdigit() \
                    and int(length) > settings.max_upload_bytes + _MULTIPART_SLACK:
                err = _too_large(settings)
                return JSONResponse({"code": err.code, "message": err.message}, err.status)
            return await handler(request)

        return limited


router = APIRouter(prefix="/timetable", tags=["timetable"], route_class=_UploadLimitRoute)


# ---------------------------------------------------------------- import


class RowErrorOut(BaseModel):
    row: int
    column: str
    reason: str


class ImportReportOut(BaseModel):
    rows_total: int
    rows_ok: int
    errors: list[RowErrorOut]
    created_series_ids: list[int]
    dry_run: bool
    committed: bool
    ok: bool


async def _read_limited(file: UploadFile, limit: int, settings: Settings) -> bytes:
    """The upload's bytes, read in chunks; stops as soon as it passes ``limit``."""
    parts: list[bytes] = []
    size = 0
    while chunk := await file.read(_READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise _too_large(settings)
        parts.append(chunk)
    return b"".join(parts)


@router.post("/import", response_model=ImportReportOut,
             responses={413: {"description": "文件过大"}, 422: {"description": "文件类型不支持或导入失败"}})
async def import_file(file: UploadFile, session: SessionDep, settings: SettingsDep, scope: AdminScope,
                      user: CurrentUser, dry_run: bool = True) -> Any:
    """Check (``dry_run=true``, the default) or book (``dry_run=false``) a CSV/XLSX timetable.

    Booking is all or nothing: when any row has an error nothing is written and
    the answer is 422 ``import_failed`` with the report.
    """
    check_filename(file.filename)
    data = await _read_limited(file, settings.max_upload_bytes, settings)
    # Booking every row is blocking database work: keep it off the event loop.
    report = await run_in_threadpool(import_timetable, session, data, file.filename or "", actor=user, scope=scope,
                                     commit=not dry_run)
    body = report.as_dict()
    if not dry_run and not report.ok:
        raise ApiError(422, "import_failed", f"导入失败：共 {len(report.errors)} 处错误，未写入任何数据", report=body)
    if report.committed:
        await run_in_threadpool(session.commit)  # durable before we say so
    return body


@router.get("/import/sample.csv", response_class=Response, responses={200: {"content": {"text/csv": {}}}})
def import_sample(session: SessionDep, scope: AdminScope, user: CurrentUser) -> Response:
    """A sample timetable file for the caller: the header and one row built from their own schools,
    pairings, teachers and a free slot, so it passes ``POST /timetable/import`` as it is."""
    body = sample_csv(session, actor=user, scope=scope)
    return Response(body, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": "attachment; filename=\"timetable-sample.csv\"; "
                                                    "filename*=UTF-8''%E8%AF%BE%E8%A1%A8%E7%A4%BA%E4%BE%8B.csv"})


# ---------------------------------------------------------------- iCalendar feeds

_bearer = HTTPBearer(auto_error=False)


def feed_user(
    session: SessionDep,
    settings: SettingsDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    token: Annotated[str | None, Query(description="订阅凭证（或访问令牌）：供无法发送请求头的日历应用订阅使用")] = None,
) -> User:
    """The caller, from the Authorization header or, for calendar apps, ``?token=``: a feed
    token (``POST /timetable/feed-token``) or an access token."""
    if creds is None and token:
        try:
            user_id, version = decode_feed_token(token, settings.effective_secret_key())
        except TokenError:
            creds = HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)
        else:
            user = session.get(User, user_id)
            if user is None or not user.is_active or user.feed_version != version:
                raise ApiError(401, "token_revoked", "订阅链接已失效，请重新生成")
            return user
    return get_current_user(session, settings, creds)


FeedUser = Annotated[User, Depends(feed_user)]


class FeedTokenOut(BaseModel):
    token: str
    expires_in: int
    feed_path: str | None
    """The caller's own feed (teacher or classroom terminal) with the token in its query: a calendar app
    subscribes to it as it is, with no login (``None`` for roles without a feed of their own)."""
    feed_url: str | None
    """``feed_path`` on this server, as a full URL to paste into a calendar app."""


@router.post("/feed-token", response_model=FeedTokenOut)
def issue_feed_token(request: Request, session: SessionDep, settings: SettingsDep, user: CurrentUser) -> FeedTokenOut:
    """A long-lived token that lets a calendar app read the caller's feeds, and nothing else, with the
    caller's subscribable feed link (revoke every link with ``DELETE /timetable/feed-token``)."""
    ttl = settings.feed_token_days * 86400
    token = create_feed_token(user.id, user.feed_version, settings.effective_secret_key(), ttl)
    path = None
    if user.role is Role.teacher:
        path = f"/api/v1/timetable/teachers/{user.id}.ics"
    elif user.role is Role.terminal and user.classroom_id is not None:
        path = f"/api/v1/timetable/classrooms/{user.classroom_id}.ics"
    if path is None:
        return FeedTokenOut(token=token, expires_in=ttl, feed_path=None, feed_url=None)
    path = f"{path}?{urlencode({'token': token})}"
    return FeedTokenOut(token=token, expires_in=ttl, feed_path=path,
                        feed_url=str(request.base_url).rstrip("/") + path)


@router.delete("/feed-token", status_code=204)
def revoke_feed_tokens(session: SessionDep, user: CurrentUser) -> Response:
    """Revoke every feed token issued to the caller (a leaked calendar link stops working)."""
    user.feed_version += 1
    return Response(status_code=204)


def _ics(body: bytes, filename: str) -> Response:
    return Response(body, media_type="text/calendar; charset=utf-8",
                    headers={"Content-Disposition": f'inline; filename="{filename}"', "Cache-Control": "private"})


def _staff_sees_school(session: Session, scope: Scope, school_id: int | None) -> bool:
    if scope.role not in (Role.admin, Role.researcher):
        return False
    if school_id is None:
        return scope.everywhere
    require_school(session, scope, school_id)  # Forbidden (403) outside the caller's scope
    return True


@router.get("/teachers/{user_id}.ics", response_class=Response,
            responses={200: {"content": {"text/calendar": {}}}})
def teacher_feed(user_id: int, session: SessionDep, settings: SettingsDep, caller: FeedUser,
                 date_from: date | None = None, date_to: date | None = None) -> Response:
    """A teacher's lessons as an iCalendar feed: the teacher, or an admin/researcher over their school."""
    scope = scope_of(session, caller)
    teacher = session.get(User, user_id)
    if teacher is None or teacher.role is not Role.teacher:
        raise ApiError(404, "not_found", f"教师 #{user_id} 不存在")
    if caller.id != teacher.id and not _staff_sees_school(session, scope, teacher.school_id):
        raise ApiError(403, "forbidden", "无权查看该教师的课表")
    body = exports.teacher_ical(session, scope, teacher, tz_name=settings.timezone,
                                date_from=date_from, date_to=date_to)
    return _ics(body, f"teacher-{teacher.id}.ics")


@router.get("/classrooms/{classroom_id}.ics", response_class=Response,
            responses={200: {"content": {"text/calendar": {}}}})
def classroom_feed(classroom_id: int, session: SessionDep, settings: SettingsDep, caller: FeedUser,
                   date_from: date | None = None, date_to: date | None = None) -> Response:
    """A classroom's lessons as an iCalendar feed: its terminal, or an admin/researcher over its school."""
    scope = scope_of(session, caller)
    room = session.get(Classroom, classroom_id)
    if room is None:
        raise ApiError(404, "not_found", f"教室 #{classroom_id} 不存在")
    own_terminal = caller.role is Role.terminal and caller.classroom_id == room.id
    if not own_terminal and not _staff_sees_school(session, scope, room.school_id):
        raise ApiError(403, "forbidden", "无权查看该教室的课表")
    body = exports.classroom_ical(session, scope, room, tz_name=settings.timezone,
                                  date_from=date_from, date_to=date_to)
    return _ics(body, f"classroom-{room.id}.ics")


# ---------------------------------------------------------------- CSV export


@router.get("/export.csv", response_class=Response, responses={200: {"content": {"text/csv": {}}}})
def export_csv(session: SessionDep, scope: ScopeDep, f: InstanceFilterDep) -> Response:
    """The lessons of an instance listing, as CSV for Excel (UTF-8 with BOM)."""
    body = exports.instances_csv(session, scope, f)
    return Response(body, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": "attachment; filename=\"timetable.csv\"; "
                                                    "filename*=UTF-8''%E8%AF%BE%E8%A1%A8.csv"})
