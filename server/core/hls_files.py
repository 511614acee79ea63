"""Where a lesson's LL-HLS files are, which of them may be served, and how (type, caching).

The media worker writes a lesson's stream into the ``hls/`` folder of the lesson's recording
(``<data_dir>/recordings/<lesson>/<recording>/hls/``: ``main.m3u8``, ``screen.m3u8``, ``camera/index.m3u8``,
``camera/init.mp4``, ``camera/s<MSN>.m4s``, ``camera/s<MSN>.<part>.m4s``, the same for ``screen/``, ``audio/``
…).  A lesson recorded across a restart has several recordings; the stream is the newest one's.  So that a
plain file server (nginx) finds it without the database, ``<data_dir>/hls/<lesson>`` is a symbolic link to
that folder, set when the recording begins (``point_lesson``, called by ``server.jobs.recording``), and
removed once the retention deleted that recording (``forget_gone``, with the hourly cleanup).

``resolve`` turns a request's path below the prefix into a file: only names of the stream's kinds
(``.m3u8``, ``.mp4``, ``.m4s``) made of plain characters, at most three folders deep, never ``..``, and the
file, links followed, must lie inside that lesson's recordings folder.  Plain functions; no FastAPI.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from scheduler.recordings import RECORDINGS_DIR

LINKS_DIR = "hls"
"""Folder of the lessons' stream links inside ``SANKE_DATA_DIR``."""
HLS_DIR = "hls"
"""The stream's folder inside a recording's folder."""
MEDIA_PLAYLIST = "index.m3u8"
"""A rendition's media playlist, in the rendition's folder beside its parts."""
_SEGMENT = r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}"
_PATH = re.compile(rf"(?:{_SEGMENT}/){{0,3}}{_SEGMENT}\.(?:m3u8|mp4|m4s)")

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
CONTENT_TYPES = {".m3u8": PLAYLIST_TYPE, ".mp4": "video/mp4", ".m4s": "video/iso.segment"}
CACHE_PLAYLIST = "no-cache"
"""A playlist changes with every part: always revalidated."""
CACHE_INIT = "no-cache"
"""An initialisation segment is rewritten when the picture changes (a discontinuity) under the same name."""
CACHE_MEDIA = "public, max-age=6"
"""A part or segment does not change once listed, and every live viewer fetches it within a second or two:
kept three target durations, long enough for a cache in front to serve it to a whole audience, short
enough that a name the stream uses again (a recording begun anew after a restart numbers its segments
from 0 again) never meets an old copy."""


class BadPath(ValueError):
    """The path is not one of a stream's files (traversal, another kind of file, odd characters)."""


def lesson_link(data_dir: Path, lesson_id: int) -> Path:
    return data_dir / LINKS_DIR / str(lesson_id)


def point_lesson(data_dir: Path, lesson_id: int, recording_dir: Path) -> None:
    """Make ``<data_dir>/hls/<lesson>`` lead to ``<recording_dir>/hls`` (a relative link, replaced atomically;
    the folder itself is the media worker's to create)."""
    link = lesson_link(data_dir, lesson_id)
    link.parent.mkdir(parents=True, exist_ok=True)
    target = os.path.relpath(Path(recording_dir).resolve() / HLS_DIR, link.parent.resolve())
    tmp = link.with_name(f".{lesson_id}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def forget_gone(data_dir: Path, *, settled_s: float = 86400.0, now: float | None = None) -> list[int]:
    """Remove the links whose recording folder is gone (the retention deleted it) and that are older than
    ``settled_s`` (a link set a moment ago may lead to a folder the media worker has yet to make); answers
    the lessons whose links went."""
    folder = data_dir / LINKS_DIR
    if not folder.is_dir():
        return []
    now = time.time() if now is None else now
    gone = []
    for link in folder.iterdir():
        if not link.name.isdigit() or not link.is_symlink():
            continue
        if Path(os.path.realpath(link)).parent.exists() or now - link.lstat().st_mtime < settled_s:
            continue
        link.unlink(missing_ok=True)
        gone.append(int(link.name))
    return gone


def recording_folder(data_dir: Path, lesson_id: int, recording_id: int) -> Path:
    """The ``hls/`` folder of one recording of the lesson: the stream it keeps."""
    return data_dir / RECORDINGS_DIR / str(lesson_id) / str(recording_id) / HLS_DIR


def resolve(data_dir: Path, lesson_id: int, rel: str, recording_id: int | None = None) -> Path:
    """The file ``rel`` (below the prefix) of the lesson's stream (``recording_id``: of the stream that recording
    keeps), which may not exist (yet); BadPath when ``rel`` may never be served."""
    if not _PATH.fullmatch(rel) or any(part in (".", "..") for part in rel.split("/")):
        raise BadPath(rel)
    if recording_id is None:
        folder = lesson_link(data_dir, lesson_id)
        if not os.path.lexists(folder):
            return folder / rel  # no stream began yet: a file that does not exist
        allowed = Path(os.path.realpath(data_dir / RECORDINGS_DIR / str(lesson_id)))
    else:
        folder = recording_folder(data_dir, lesson_id, recording_id)
        allowed = Path(os.path.realpath(folder))
    real = Path(os.path.realpath(folder / rel))
    if not real.is_relative_to(allowed):
        raise BadPath(rel)  # a link (the lesson's or one inside its folder) that leads elsewhere
    return real


def content_type(rel: str) -> str:
    return CONTENT_TYPES[rel[rel.rindex("."):]]


def headers(rel: str) -> dict[str, str]:
    """The headers of a served file: its caching, and any page may read it (the signed path is the credential,
    no cookie is involved; the page may come from SanKe and the stream from an nginx or CDN origin)."""
    if rel.endswith(".m3u8"):
        cache = CACHE_PLAYLIST
    else:
        cache = CACHE_INIT if rel.endswith(".mp4") else CACHE_MEDIA
    return {"Cache-Control": cache, "Access-Control-Allow-Origin": "*"}
