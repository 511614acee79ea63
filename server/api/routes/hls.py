"""A famous-school lesson's live stream (LL-HLS): its signed link, and its files served behind that link.

``POST /api/v1/lessons/{id}/hls-link`` gives who may watch the lesson (``scheduler.joining.watcher_role``)
a path prefix ``/hls/<lesson>/<expires>/<sig>/`` (``server.core.hls_sign``) good for every file of the
lesson's stream until ``expires``; asking again gives one that lives longer (the page swaps it in without
stopping playback).  ``GET /hls/<lesson>/<expires>/<sig>/<file>`` serves the playlists, initialisation
segments, parts and segments the media worker writes (``server.core.hls_files``), with LL-HLS blocking
playlist reloads (``_HLS_msn``/``_HLS_part``) and blocking requests for the hinted part
(``server.core.hls_reload``).  The files need no login (a player cannot send a bearer header): the
signed prefix is the credential, and nginx can check the same one (``docs/operations.md``).

A recording's stream (the ended stream kept in the recording's folder, played by the replay page) is served
the same way behind ``/hls/<lesson>/r<recording>/<expires>/<sig>/``, a prefix the recording's details answer
(``GET /api/v1/recordings/{id}``) hands to those who may open that recording (``recording_link``).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from scheduler import clock
from scheduler.joining import watcher_role
from scheduler.models import LessonInstance
from server.api.common import room_owner
from server.api.deps import CurrentUser, ScopeDep, SessionDep, SettingsDep
from server.api.errors import ApiError
from server.core import hls_files, hls_sign
from server.core.config import Settings
from server.core.hls_reload import Decision, PlaylistState, Watchers, decide

router = APIRouter(prefix="/lessons", tags=["hls"])
files_router = APIRouter(tags=["hls"])

_REFUSED_ZH = {
    hls_sign.Refusal.malformed: ("link_invalid", "直播链接无效，请重新打开课堂页面"),
    hls_sign.Refusal.forged: ("link_invalid", "直播链接无效或已被修改，请重新打开课堂页面"),
    hls_sign.Refusal.expired: ("link_expired", "直播链接已过期，请刷新页面"),
}
_REFUSED_REPLAY_ZH = {
    hls_sign.Refusal.malformed: ("link_invalid", "回放链接无效，请重新打开回放页面"),
    hls_sign.Refusal.forged: ("link_invalid", "回放链接无效或已被修改，请重新打开回放页面"),
    hls_sign.Refusal.expired: ("link_expired", "回放链接已过期，请刷新页面"),
}


def unix_now() -> int:
    """Now in Unix seconds, from the timetable's clock (``scheduler.clock``: tests pin it)."""
    return int(clock.now().replace(tzinfo=clock.zone()).timestamp())


def _secret(request: Request) -> str:
    state = request.app.state
    secret = getattr(state, "hls_link_secret", None)
    if secret is None:
        secret = state.hls_link_secret = hls_sign.link_secret(state.settings.effective_secret_key())
    return secret  # type: ignore[no-any-return]


class StreamLinkOut(BaseModel):
    instance_id: int
    lesson_role: str
    """The caller's role in the lesson (``main``, ``receiving``, ``student``, ``observer``) or ``admin``."""
    prefix: str
    """``/hls/<lesson>/<expires>/<sig>/``: every file of the lesson's stream is served under it."""
    main_url: str
    """The multivariant playlist of the camera with the audio: ``<prefix>main.m3u8``, after
    ``SANKE_HLS_BASE_URL`` when the streams are served from another origin, or after the URL of the node that
    owns the lesson's room when that is another node of several."""
    screen_url: str
    """The shared screen's (``<prefix>screen.m3u8``), when the main classroom shares its screen."""
    expires_at: int
    """Unix seconds: the prefix is refused (403 ``link_expired``) from then on."""
    renew_at: int
    """Unix seconds: from then on, ask again for a fresh prefix and swap it in."""
    started: bool
    """The stream has begun (its multivariant playlist exists; it may have ended since).  With several nodes,
    as the node that answers sees it: the owner's stream is on the owner's disk."""


@router.post("/{instance_id}/hls-link", response_model=StreamLinkOut)
def stream_link(instance_id: int, request: Request, session: SessionDep, user: CurrentUser, scope: ScopeDep,
                settings: SettingsDep) -> StreamLinkOut:
    """A signed link to the lesson's live stream (名校网络课堂), for those who may watch it: the people booked
    into the lesson (its classrooms' terminals, its teachers, its enrolled students), researchers of its
    region and invited evaluators, and the admins who may see it.  Lives ``SANKE_HLS_LINK_SECONDS`` (2 h) or
    a little longer; asking again before it expires gives a fresh one.  With several nodes, once the
    lesson's room is open, the URLs lead to the node that owns it (placed now if it has none yet), which
    writes the stream."""
    inst = session.get(LessonInstance, instance_id)
    if inst is None:
        raise ApiError(404, "not_found", f"课次 #{instance_id} 不存在")
    role = watcher_role(session, user, scope, inst)
    now = unix_now()
    link = hls_sign.sign(inst.id, hls_sign.expiry(now, settings.hls_link_seconds), _secret(request))
    started = (hls_files.lesson_link(settings.data_dir, inst.id) / "main.m3u8").is_file()
    placed = room_owner(request, inst)  # several nodes: the stream is written where the room is
    origin = settings.hls_base_url or (placed.url if placed is not None and not placed.here else "")
    base = origin.rstrip("/") + link.prefix
    return StreamLinkOut(instance_id=inst.id, lesson_role=role, prefix=link.prefix,
                         main_url=base + "main.m3u8", screen_url=base + "screen.m3u8",
                         expires_at=link.expires, renew_at=link.expires - settings.hls_link_seconds // 2,
                         started=started)


def recording_link(request: Request, lesson_id: int, recording_id: int, ttl_s: int) -> hls_sign.Link:
    """A prefix good for the stream one recording of the lesson keeps, for ``ttl_s`` or a little longer (for the
    recording's details answer: whoever may open the recording)."""
    return hls_sign.sign(lesson_id, hls_sign.expiry(unix_now(), ttl_s), _secret(request), recording_id)


def watchers(request: Request) -> Watchers:
    return request.app.state.hls_watchers  # type: ignore[no-any-return]


_FILE_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {hls_files.PLAYLIST_TYPE: {}, "video/mp4": {}, "video/iso.segment": {}}},
    400: {"description": "a path that is not one of the stream's files, or bad ``_HLS_msn``/``_HLS_part``"},
    403: {"description": "a missing, altered, expired link, or one of another lesson"},
    404: {"description": "no such file (yet)"},
    503: {"description": "a blocking request the stream did not satisfy within three target durations"},
}


@files_router.get("/hls/{lesson}/r{recording}/{expires}/{sig}/{rel:path}", response_class=Response,
                  responses=_FILE_RESPONSES)
async def recording_stream_file(lesson: str, recording: str, expires: str, sig: str, rel: str,
                                request: Request) -> Response:
    """A file of the stream a recording keeps, behind the prefix its details answer gave (the replay)."""
    refusal = hls_sign.check(lesson, expires, sig, _secret(request), unix_now(), recording)
    if refusal is not None:
        raise ApiError(403, *_REFUSED_REPLAY_ZH[refusal])
    return await _serve(request, int(lesson), rel, int(recording))


@files_router.get("/hls/{lesson}/{expires}/{sig}/{rel:path}", response_class=Response, responses=_FILE_RESPONSES)
async def stream_file(lesson: str, expires: str, sig: str, rel: str, request: Request) -> Response:
    """A file of a lesson's stream behind its signed prefix: playlists (``_HLS_msn``, ``_HLS_part``: a
    blocking playlist reload, RFC 8216bis 6.2.5.2), initialisation segments, parts and segments (the part the
    playlist hints is answered once written)."""
    refusal = hls_sign.check(lesson, expires, sig, _secret(request), unix_now())
    if refusal is not None:
        raise ApiError(403, *_REFUSED_ZH[refusal])
    return await _serve(request, int(lesson), rel)


async def _serve(request: Request, lesson_id: int, rel: str, recording_id: int | None = None) -> Response:
    settings: Settings = request.app.state.settings
    try:
        path = hls_files.resolve(settings.data_dir, lesson_id, rel, recording_id)
    except hls_files.BadPath:
        raise ApiError(400, "bad_path", "直播文件路径无效：只提供本课直播的播放列表和媒体分段") from None
    if rel.endswith(".m3u8"):
        return await _playlist(request, path)
    if rel.endswith(".m4s"):
        await _hinted_part(request, path)
    try:  # small files just written, in the page cache: read at once (a thread per read would cost more)
        body = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise ApiError(404, "not_found", "直播文件不存在（直播尚未开始或已不在直播窗口内）") from None
    return Response(body, media_type=hls_files.content_type(rel), headers=hls_files.headers(rel))


@files_router.get("/hls/{rest:path}", include_in_schema=False)
async def unsigned(rest: str) -> Response:
    """Anything under /hls/ without a prefix's three segments."""
    raise ApiError(403, "link_invalid", "缺少直播链接签名，请从课堂页面打开直播")


def _query_int(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        raise ApiError(400, "bad_request", f"{name} 必须是非负整数")
    return int(raw)


def _playlist_response(state: PlaylistState) -> Response:
    return Response(state.text, media_type=hls_files.PLAYLIST_TYPE, headers=hls_files.headers("index.m3u8"))


async def _playlist(request: Request, path: Path) -> Response:
    msn = _query_int(request, "_HLS_msn")
    part = _query_int(request, "_HLS_part")
    if part is not None and msn is None:
        raise ApiError(400, "bad_request", "_HLS_part 须与 _HLS_msn 一起使用")
    state = watchers(request).current(path)
    if state is None:
        raise ApiError(404, "not_found", "直播播放列表不存在（直播尚未开始）")
    if msn is None:
        return _playlist_response(state)
    decision = decide(state, msn, part)
    if decision is Decision.too_far:
        raise ApiError(400, "bad_request", "请求的分段超出直播进度太多")
    if decision is Decision.wait:
        waited = await watchers(request).get(path).wait(lambda s: decide(s, msn, part) is not Decision.wait,
                                                        state.wait_s)
        if waited is None:
            raise ApiError(503, "stream_stalled", "直播流暂时没有新内容，请稍后重试")
        state = waited
    return _playlist_response(state)


async def _hinted_part(request: Request, path: Path) -> None:
    """Hold a request for the part the rendition's playlist hints until the playlist lists it (a part is
    served only once whole, RFC 8216bis 6.2.6), at most three target durations (then 503)."""
    name, playlist = path.name, path.parent / hls_files.MEDIA_PLAYLIST
    state = watchers(request).current(playlist)
    if state is None or state.ended or state.preload_hint != name:
        return
    waited = await watchers(request).get(playlist).wait(lambda s: s.ended or s.preload_hint != name, state.wait_s)
    if waited is None:
        raise ApiError(503, "stream_stalled", "直播流暂时没有新内容，请稍后重试")
