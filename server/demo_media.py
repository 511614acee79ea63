"""The demo's recorded lessons (录播): short synthetic clips, written where real recordings are.

A real recording is what the media worker muxed from a lesson's RTP (``media.recorder``): one WebM
per track (``camera-1.webm`` VP8, ``microphone-1.webm`` Opus, ``screen-1.webm`` when the teacher
shared a screen) under ``<data_dir>/recordings/<lesson>/<recording>``, and a ``recording`` row with
the files on one time axis.  The demo has no lessons that really took place, so ``add_recordings``
paints the teacher's camera (a classroom wall, a blackboard the teacher fills with lines of chalk
while walking along it, a desk) and a voice-like tone, encodes them with PyAV, and stores the
files and rows exactly as the recorder and ``scheduler.recordings.finish`` would.  Which lessons:
the two latest held lessons the demo student is enrolled in (名校网络课堂, always recorded) and the
latest held lesson of the demo teacher's series, whose recording is switched on.

Clips are ``CLIP_SECONDS`` long at 640×360, 15 fps, so the three take a second or two to make.
"""

from __future__ import annotations

import fractions
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import av
from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler import recordings
from scheduler.models import LessonInstance, LessonKind, LessonSeries, SeriesParticipant, User
from scheduler.recordings_models import RecordingStatus
from scheduler.records_models import RecordStatus, TeachingRecord

WIDTH, HEIGHT, FPS = 640, 360, 15
CLIP_SECONDS = (30, 24, 20)
"""Lengths of the demo's recordings, newest lesson first (short: the demo must load fast)."""
KEYFRAME_EVERY = 2 * FPS
"""A keyframe every 2 s, so the player seeks anywhere quickly."""
AUDIO_RATE = 48_000
AUDIO_FRAME = 960
"""20 ms Opus frames, as the browsers send them."""


@dataclass(frozen=True)
class Palette:
    """A classroom's colours in Y, U, V."""

    wall: tuple[int, int, int]
    shirt: tuple[int, int, int]


PALETTES = (Palette((205, 118, 138), (70, 170, 110)), Palette((190, 130, 120), (95, 100, 175)),
            Palette((215, 125, 128), (60, 150, 150)))
BOARD = (55, 122, 108)
CHALK = (225, 128, 128)
SKIN = (170, 110, 150)
HAIR = (30, 128, 128)
DESK = (95, 105, 160)


class _Plane:
    """One plane of a picture as rows of bytes (a plane's ``line_size`` may pad a row)."""

    def __init__(self, width: int, height: int, line: int, value: int) -> None:
        self.width, self.height, self.line = width, height, line
        self.data = bytearray(bytes([value]) * (line * height))

    def rect(self, x0: float, y0: float, x1: float, y1: float, value: int) -> None:
        a, b = max(0, int(x0)), min(self.width, int(x1))
        if a >= b:
            return
        run = bytes([value]) * (b - a)
        for y in range(max(0, int(y0)), min(self.height, int(y1))):
            self.data[y * self.line + a: y * self.line + b] = run

    def disc(self, cx: float, cy: float, r: float, value: int) -> None:
        for y in range(max(0, int(cy - r)), min(self.height, int(cy + r) + 1)):
            half = math.sqrt(max(0.0, r * r - (y - cy) ** 2))
            self.rect(cx - half, y, cx + half, y + 1, value)


def _picture(planes: list[_Plane], palette: Palette, t: float, seconds: float) -> None:
    """The teacher's camera at ``t``: the teacher walks along the blackboard, which fills with chalk."""
    for i, p in enumerate(planes):
        s = 1 if i == 0 else 2  # chroma planes are half size
        p.rect(60 / s, 30 / s, 580 / s, 200 / s, BOARD[i])
        lines = int(6 * min(1.0, t / max(1.0, seconds * 0.8))) + 1
        for k in range(lines):  # chalk lines, the last one growing
            length = 400 if k < lines - 1 else 400 * ((t * 0.5) % 1.0 + 0.1)
            p.rect(90 / s, (50 + 22 * k) / s, (90 + min(400, length)) / s, (56 + 22 * k) / s, CHALK[i])
        x = 320 + 200 * math.sin(t * 2 * math.pi / 12)  # the teacher walks, 12 s there and back
        p.rect((x - 45) / s, 215 / s, (x + 45) / s, 360 / s, palette.shirt[i])
        p.disc(x / s, 180 / s, 30 / s, SKIN[i])
        p.rect((x - 30) / s, 148 / s, (x + 30) / s, 165 / s, HAIR[i])
        p.rect(0, 300 / s, 640 / s, 360 / s, DESK[i])


def camera_clip(path: Path, seconds: int, k: int = 0) -> dict[str, Any]:
    """The teacher's camera for ``seconds`` (VP8 in WebM), in the ``k``-th classroom's colours."""
    palette = PALETTES[k % len(PALETTES)]
    frames = seconds * FPS
    with av.open(str(path), "w", format="webm") as out:
        stream = out.add_stream("libvpx", rate=FPS, options={"deadline": "realtime", "cpu-used": "16"})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.bit_rate = 500_000
        stream.gop_size = KEYFRAME_EVERY
        stream.codec_context.thread_count = 1  # libvpx's own threads only fight each other on a busy machine
        template = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        lines = [p.line_size for p in template.planes]
        for n in range(frames):
            planes = [_Plane(WIDTH >> (i > 0), HEIGHT >> (i > 0), lines[i], palette.wall[i]) for i in range(3)]
            _picture(planes, palette, n / FPS, seconds)
            frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
            for plane, painted in zip(frame.planes, planes, strict=True):
                plane.update(bytes(painted.data))
            frame.pts = n
            frame.time_base = fractions.Fraction(1, FPS)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return {"source": "camera", "kind": "video", "codec": "vp8", "name": path.name, "start_s": 0.0,
            "duration_s": float(seconds), "size": path.stat().st_size, "frames": frames,
            "width": WIDTH, "height": HEIGHT, "error": None}


def tone_clip(path: Path, seconds: int, k: int = 0) -> dict[str, Any]:
    """A voice-like tone (Opus in WebM): 200, 250 or 300 Hz (a whole number of periods per 20 ms frame) in
    syllables with pauses."""
    pitch = (200, 250, 300)[k % 3]
    per_frame = AUDIO_FRAME * pitch // AUDIO_RATE
    assert per_frame * AUDIO_RATE == AUDIO_FRAME * pitch, "the tone must fit a frame"
    levels = (0.0, 0.25, 0.45, 0.35)
    period = AUDIO_RATE // pitch
    pcm = {lv: b"".join(int(12_000 * lv * math.sin(2 * math.pi * i / period)).to_bytes(2, "little", signed=True)
                        for i in range(period)) * per_frame for lv in levels}
    frames = seconds * AUDIO_RATE // AUDIO_FRAME
    with av.open(str(path), "w", format="webm") as out:
        stream = out.add_stream("libopus", rate=AUDIO_RATE)
        stream.layout = "mono"
        stream.bit_rate = 32_000
        for n in range(frames):
            level = levels[1 + (n // 12) % 3] if (n // 6) % 7 else 0.0  # syllables, and a pause now and then
            frame = av.AudioFrame(format="s16", layout="mono", samples=AUDIO_FRAME)
            frame.planes[0].update(pcm[level])
            frame.sample_rate = AUDIO_RATE
            frame.pts = n * AUDIO_FRAME
            frame.time_base = fractions.Fraction(1, AUDIO_RATE)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return {"source": "microphone", "kind": "audio", "codec": "opus", "name": path.name, "start_s": 0.0,
            "duration_s": round(frames * AUDIO_FRAME / AUDIO_RATE, 3), "size": path.stat().st_size,
            "frames": frames, "width": 0, "height": 0, "error": None}


def write_clip(directory: Path, seconds: int, k: int = 0) -> list[dict[str, Any]]:
    """A recording's files (teacher camera, microphone) in ``directory``, described as the recorder does."""
    directory.mkdir(parents=True, exist_ok=True)
    return [camera_clip(directory / "camera-1.webm", seconds, k), tone_clip(directory / "microphone-1.webm", seconds, k)]


def _latest_held(session: Session, series_ids: list[int], now: datetime, limit: int) -> list[tuple[LessonInstance,
                                                                                                    TeachingRecord]]:
    if not series_ids:
        return []
    rows = session.execute(
        select(LessonInstance, TeachingRecord).join(TeachingRecord, TeachingRecord.instance_id == LessonInstance.id)
        .where(LessonInstance.series_id.in_(series_ids), LessonInstance.room_closed_at <= now,
               TeachingRecord.status == RecordStatus.held, TeachingRecord.actual_start.is_not(None))
        .order_by(LessonInstance.starts_at.desc(), LessonInstance.id.desc()).limit(limit)).all()
    return [(r[0], r[1]) for r in rows]


def add_recordings(session: Session, data_dir: Path, now: datetime) -> list[int]:
    """Recordings of the demo student's two latest held lessons and the demo teacher's latest (see the module
    docstring); answers their ids.  The caller commits."""
    chosen: list[tuple[LessonInstance, TeachingRecord]] = []
    student = session.scalar(select(User).where(User.username == "student"))
    if student is not None:
        enrolled = list(session.scalars(select(SeriesParticipant.series_id)
                                        .where(SeriesParticipant.user_id == student.id)))
        chosen += _latest_held(session, enrolled, now, 2)
    teacher = session.scalar(select(User).where(User.username == "teacher"))
    if teacher is not None:
        own = list(session.scalars(select(LessonSeries.id).where(LessonSeries.main_teacher_id == teacher.id)))
        for inst, record in _latest_held(session, own, now, 1):
            inst.series.recording = True  # the teacher's series is recorded: its next lessons too
            chosen.append((inst, record))
    if len(chosen) < len(CLIP_SECONDS):  # early in a term: other famous-school lessons fill the library
        others = list(session.scalars(select(LessonSeries.id).where(LessonSeries.kind == LessonKind.famous_school)))
        have = {inst.id for inst, _ in chosen}
        chosen += [c for c in _latest_held(session, others, now, len(CLIP_SECONDS))
                   if c[0].id not in have][: len(CLIP_SECONDS) - len(chosen)]
    ids = []
    for k, (inst, record) in enumerate(sorted(chosen, key=lambda c: c[0].starts_at, reverse=True)):
        seconds = CLIP_SECONDS[k % len(CLIP_SECONDS)]
        started = record.actual_start or inst.starts_at
        row = recordings.begin(session, inst.id, now=started)
        if row is None:  # not a recorded lesson after all
            continue
        summary = {"files": write_clip(data_dir / row.directory, seconds, k), "duration_s": float(seconds)}
        recordings.finish(session, row.id, summary, now=started + timedelta(seconds=seconds))
        assert row.status is RecordingStatus.ready
        ids.append(row.id)
    session.flush()
    return ids

