"""Finalizing the files of a recording cut by a crash (``kill -9`` of the server or its media worker).

A file the recorder (``media.recorder``) was writing when its process died
has no duration and no cues (WebM) or no closing index (MP4: its fragments are readable, its ``mfra`` is missing).
``salvage_folder`` reads every recorded file of a folder with PyAV, copies the
packets that can be read into a new file of the same format (no decoding, no
re-encoding), replaces the original with it, and answers each file's summary
in the shape of ``RoomRecorder.summary``'s files (``start_s`` from the
folder's ``index.jsonl``, the wall-clock time of each file's first frame; or,
for a file not in the index, its last write minus its duration).  A file
nothing can be read from is reported with an ``error`` and left as it is.

``written_so_far`` answers the same summaries of a folder still being written,
without reading the files: each file's start from the index, its duration up
to its last write (``os.stat``), no frame counts or sizes of picture.  It is
what a node checkpoints of its recordings for the node that may take one of
its lessons over (``scheduler.recordings.checkpoint``).

``with_earlier`` adds to the summary of a recording that went on in its folder
after its media worker died the files the dead worker left there.

Runs once per recovered recording at start-up, or at the end of a recording whose
worker died, on a worker thread; nothing here is on a packet path.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import av

from media.hls import HlsEgress
from media.recorder import INDEX_NAME

log = logging.getLogger(__name__)

FILE_NAME = re.compile(r"^(camera|screen|microphone)-(\d+)\.(webm|mp4)$")
"""The names ``media.recorder`` gives its files."""
FORMATS = {"webm": "webm", "mp4": "mp4"}


def _index(folder: Path) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    try:
        lines = (folder / INDEX_NAME).read_text(encoding="utf-8").splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            entry = json.loads(line)
            out[str(entry["name"])] = entry
        except (ValueError, KeyError, TypeError):
            continue  # the line being written when the process died
    return out


def remux(path: Path) -> dict[str, Any]:
    """Copy what can be read of ``path`` into a finalized file that replaces it; its summary (no ``start_s``)."""
    ext = path.suffix[1:]
    tmp = path.with_name(f".{path.name}.salvage")
    frames = 0
    first: float | None = None
    last = 0.0
    with av.open(str(path)) as src:
        if not src.streams:
            raise ValueError("no stream")
        stream = src.streams[0]
        kind = stream.type
        codec = stream.codec_context.name
        width = getattr(stream.codec_context, "width", 0) or 0
        height = getattr(stream.codec_context, "height", 0) or 0
        options = {"movflags": "+faststart"} if ext == "mp4" else {}
        with av.open(str(tmp), "w", format=FORMATS[ext], options=options) as out:
            ost = out.add_stream_from_template(stream)
            try:
                for packet in src.demux(stream):
                    if packet.dts is None or packet.pts is None or packet.size == 0:
                        continue  # the demuxer's end-of-stream marker
                    t = float(packet.pts * packet.time_base)
                    first = t if first is None else min(first, t)
                    last = max(last, t)
                    packet.stream = ost
                    out.mux(packet)
                    frames += 1
            except (av.error.InvalidDataError, av.error.EOFError, OSError) as exc:
                log.info("salvage %s: read up to a damaged end (%s)", path, exc)
    if not frames:
        tmp.unlink(missing_ok=True)
        raise ValueError("no frame can be read")
    os.replace(tmp, path)
    frame_s = 1 / 30 if kind == "video" else 0.02
    return {"kind": kind, "codec": codec, "name": path.name, "duration_s": round(last - (first or 0.0) + frame_s, 3),
            "size": path.stat().st_size, "frames": frames, "width": width, "height": height, "error": None}


def _finalize(path: Path, source: str, index: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], float]:
    """A file cut by a crash, finalized: its summary and the wall-clock time of its first frame."""
    mtime = path.stat().st_mtime
    try:
        info = remux(path)
    except Exception as exc:  # noqa: BLE001 - a file that cannot be read is reported, never fatal
        log.warning("salvage %s: %s", path, exc)
        info = {"kind": "audio" if source == "microphone" else "video", "codec": "", "name": path.name,
                "duration_s": 0.0, "size": 0, "frames": 0, "width": 0, "height": 0,
                "error": f"无法读取：{type(exc).__name__}"}
    info["source"] = source
    wall = index.get(path.name, {}).get("wall")
    return info, float(wall) if isinstance(wall, int | float) else mtime - info["duration_s"]


def salvage_folder(folder: Path) -> list[dict[str, Any]]:
    """Finalize every recorded file of ``folder``, and end its live stream (``hls/``: every rendition's
    ``vod.m3u8`` gets ``EXT-X-ENDLIST``, the multivariant playlists list them, as at 下课); the files'
    summaries on one time axis (``start_s``)."""
    index = _index(folder)
    found: list[tuple[dict[str, Any], float]] = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        m = FILE_NAME.match(path.name)
        if m is not None and path.is_file():
            found.append(_finalize(path, m.group(1), index))
    stream = folder / "hls"
    if stream.is_dir():
        try:
            HlsEgress(stream).finish()
        except Exception as exc:  # noqa: BLE001 - the files are the recording; a stream left open is not fatal
            log.warning("salvage %s: the stream could not be ended: %s", stream, exc)
    origin = min((w for _, w in found), default=0.0)
    files = [info | {"start_s": round(w - origin, 3), "wall": w} for info, w in found]
    files.sort(key=lambda f: (f["start_s"], f["name"]))
    return files


def written_so_far(folder: Path) -> list[dict[str, Any]]:
    """The files of a recording being written, from its index and their last write (nothing is opened but
    the index); on the folder's time axis (``start_s``), as ``salvage_folder`` answers them."""
    index = _index(folder)
    found: list[tuple[dict[str, Any], float]] = []
    for name, entry in index.items():
        m = FILE_NAME.match(name)
        wall = entry.get("wall")
        if m is None or not isinstance(wall, int | float):
            continue
        try:
            st = (folder / name).stat()
        except OSError:
            continue
        source = m.group(1)
        kind = str(entry.get("kind") or ("audio" if source == "microphone" else "video"))
        found.append(({"kind": kind, "codec": str(entry.get("codec") or ""), "name": name, "source": source,
                       "duration_s": round(max(0.0, st.st_mtime - float(wall)), 3), "size": st.st_size, "frames": 0,
                       "width": 0, "height": 0, "error": None}, float(wall)))
    origin = min((w for _, w in found), default=0.0)
    files = [info | {"start_s": round(w - origin, 3), "wall": w} for info, w in found]
    files.sort(key=lambda f: (f["start_s"], f["name"]))
    return files


def with_earlier(folder: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """The summary of a recording (``RoomRecorder.stop``) that went on in ``folder`` after its media worker
    died: the files the dead worker was writing (in the folder's index, not in the summary) are finalized
    as after a crash and join the summary's files on one time axis, from the wall-clock times of their first
    frames; ``duration_s`` and ``size`` count them.  The summary as it is when there are none."""
    index = _index(folder)
    known = {str(f["name"]) for f in summary.get("files") or []}
    earlier = [(folder / name, m.group(1)) for name in index
               if name not in known and (m := FILE_NAME.match(name)) is not None and (folder / name).is_file()]
    if not earlier:
        return summary
    current = list(summary.get("files") or [])
    first = min(current, key=lambda f: float(f["start_s"]), default=None)
    wall = index.get(str(first["name"]), {}).get("wall") if first is not None else None
    now_origin = float(wall) if isinstance(wall, int | float) else float(summary.get("started_at") or 0.0)
    found = [({k: v for k, v in f.items() if k != "start_s"}, now_origin + float(f["start_s"])) for f in current]
    found += [_finalize(path, source, index) for path, source in earlier]
    origin = min(w for _, w in found)
    files = [info | {"start_s": round(w - origin, 3)} for info, w in found]
    files.sort(key=lambda f: (f["start_s"], f["name"]))
    log.info("recording %s: %d file(s) of its dead worker joined %d", folder, len(earlier), len(known))
    return summary | {"files": files, "duration_s": round(max(f["start_s"] + f["duration_s"] for f in files), 3),
                      "size": sum(int(f["size"]) for f in files)}
