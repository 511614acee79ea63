"""A lesson as one MP4: camera, shared screen and audio of a recording, composed and encoded offline.

The recorder (``media.recorder``) keeps each track as it was sent, in its own
file.  For a download people want one file, so this job decodes the files with
PyAV, lays the pictures out on one canvas — the shared screen full size with
the teacher's camera in the corner (picture-in-picture), or the camera alone
while no screen is shared — and encodes H.264 + AAC into an MP4.  Audio gaps
(the microphone muted or re-published) become silence, so sound stays in sync.

It runs in ``ComposeJobs``: a small thread pool (``SANKE_COMPOSE_WORKERS``,
one or two), never in a media worker; each job reports its progress (0…1),
which the API answers to the page that polls it.
"""

from __future__ import annotations

import fractions
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av

log = logging.getLogger(__name__)

RATE = 48000


@dataclass(frozen=True)
class Segment:
    path: Path
    start_s: float
    duration_s: float


@dataclass(frozen=True)
class Layout:
    width: int = 1280
    height: int = 720
    fps: int = 15
    pip_share: float = 0.25
    """Width of the camera's corner picture, as a share of the canvas."""
    margin: int = 16


def segments(directory: Path, files: list[dict[str, Any]], source: str) -> list[Segment]:
    return sorted((Segment(directory / f["name"], float(f["start_s"]), float(f["duration_s"]))
                   for f in files if f.get("source") == source and (directory / f["name"]).is_file()),
                  key=lambda s: s.start_s)


def _even(x: float) -> int:
    return max(2, int(x) // 2 * 2)


def _black(width: int, height: int) -> av.VideoFrame:
    frame = av.VideoFrame(width, height, "yuv420p")
    for plane, value in zip(frame.planes, (16, 128, 128), strict=True):
        plane.update(bytes([value]) * (plane.line_size * plane.height))
    return frame


def _blit(dst: av.VideoFrame, src: av.VideoFrame, x: int, y: int) -> None:
    """Copy ``src`` into ``dst`` at (x, y); both yuv420p, x and y even."""
    for i, div in ((0, 1), (1, 2), (2, 2)):
        dplane, splane = dst.planes[i], src.planes[i]
        dbuf = bytearray(bytes(dplane))
        sbuf = bytes(splane)
        w = min(splane.width, dplane.width - x // div)
        dl, sl = dplane.line_size, splane.line_size
        for row in range(min(splane.height, dplane.height - y // div)):
            d = (y // div + row) * dl + x // div
            dbuf[d:d + w] = sbuf[row * sl: row * sl + w]
        dplane.update(bytes(dbuf))


class _Pictures:
    """The picture a video track shows at time t (on the recording's axis), file after file."""

    def __init__(self, segs: list[Segment]) -> None:
        self._frames = self._decode(segs)
        self._next = next(self._frames, None)
        self._current: tuple[float, float, av.VideoFrame] | None = None

    @staticmethod
    def _decode(segs: list[Segment]) -> Iterator[tuple[float, float, av.VideoFrame]]:
        for seg in segs:
            try:
                with av.open(str(seg.path)) as container:
                    for frame in container.decode(video=0):
                        yield seg.start_s + float(frame.time or 0.0), seg.start_s + seg.duration_s, frame
            except av.FFmpegError:
                log.warning("compose: %s does not decode to the end", seg.path)

    def at(self, t: float) -> av.VideoFrame | None:
        while self._next is not None and self._next[0] <= t:
            self._current = self._next
            self._next = next(self._frames, None)
        if self._current is None or t > self._current[1]:
            return None
        return self._current[2]


class _Sound:
    """The microphone as one continuous stereo 48 kHz stream from 0 s: gaps filled with silence."""

    def __init__(self, segs: list[Segment]) -> None:
        self._chunks = self._decode(segs)
        self.position = 0
        """Samples handed out so far."""

    @staticmethod
    def _decode(segs: list[Segment]) -> Iterator[tuple[int, av.AudioFrame]]:
        for seg in segs:
            resampler = av.AudioResampler(format="fltp", layout="stereo", rate=RATE)
            try:
                with av.open(str(seg.path)) as container:
                    for frame in container.decode(audio=0):
                        start = round((seg.start_s + float(frame.time or 0.0)) * RATE)
                        for out in resampler.resample(frame):
                            yield start, out
                            start += out.samples
            except av.FFmpegError:
                log.warning("compose: %s does not decode to the end", seg.path)

    def until(self, t: float) -> Iterator[av.AudioFrame]:
        """Frames that fill the stream up to ``t`` seconds (silence where nothing was recorded)."""
        end = round(t * RATE)
        for start, frame in self._chunks:
            if start + frame.samples <= self.position:
                continue  # overlaps what was already handed out
            if start > self.position:
                yield from self._silence(start)
            frame.pts = self.position
            frame.time_base = fractions.Fraction(1, RATE)
            self.position += frame.samples
            yield frame
            if self.position >= end:
                return
        yield from self._silence(end)

    def _silence(self, until: int) -> Iterator[av.AudioFrame]:
        while self.position < until:
            n = min(1024, until - self.position)
            frame = av.AudioFrame(format="fltp", layout="stereo", samples=n)
            for plane in frame.planes:
                plane.update(bytes(plane.buffer_size))
            frame.sample_rate = RATE
            frame.pts = self.position
            frame.time_base = fractions.Fraction(1, RATE)
            self.position += n
            yield frame


def compose(*, camera: list[Segment], screen: list[Segment], microphone: list[Segment], duration_s: float,
            output: Path, layout: Layout = Layout(), progress: Callable[[float], None] | None = None) -> dict[str, Any]:
    """Write ``output`` (MP4, H.264 + AAC); answers ``{duration_s, frames, size}``."""
    W, H, fps = _even(layout.width), _even(layout.height), layout.fps
    tmp = output.with_suffix(".part")
    container = av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"})
    try:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        video.codec_context.options = {"preset": "veryfast", "crf": "23"}
        audio = container.add_stream("aac", rate=RATE) if microphone else None
        if audio is not None:
            audio.codec_context.layout = "stereo"
            audio.codec_context.bit_rate = 96_000
        cams, screens = _Pictures(camera), _Pictures(screen)
        sound = _Sound(microphone) if microphone else None
        total = max(1, int(duration_s * fps + 0.5))
        frames = 0
        for i in range(total):
            t = i / fps
            canvas = _canvas(cams.at(t), screens.at(t), W, H, layout)
            canvas.pts = i
            canvas.time_base = fractions.Fraction(1, fps)
            container.mux(video.encode(canvas))
            frames += 1
            if sound is not None and audio is not None:
                for chunk in sound.until((i + 1) / fps):
                    container.mux(audio.encode(chunk))
            if progress is not None and i % fps == 0:
                progress(i / total)
        container.mux(video.encode(None))
        if audio is not None:
            container.mux(audio.encode(None))
    except BaseException:
        container.close()
        tmp.unlink(missing_ok=True)
        raise
    container.close()
    tmp.replace(output)
    if progress is not None:
        progress(1.0)
    return {"duration_s": total / fps, "frames": frames, "size": output.stat().st_size}


def _canvas(cam: av.VideoFrame | None, screen: av.VideoFrame | None, W: int, H: int, layout: Layout) -> av.VideoFrame:
    if screen is None:
        if cam is None:
            return _black(W, H)
        return _fit(cam, W, H)
    canvas = _fit(screen, W, H)
    if cam is not None:
        w = _even(W * layout.pip_share)
        h = _even(w * cam.height / max(1, cam.width))
        small = cam.reformat(width=w, height=h, format="yuv420p")
        _blit(canvas, small, _even(W - w - layout.margin), _even(H - h - layout.margin))
    return canvas


def _fit(picture: av.VideoFrame, W: int, H: int) -> av.VideoFrame:
    """``picture`` scaled into W×H keeping its aspect, centred on black."""
    scale = min(W / max(1, picture.width), H / max(1, picture.height))
    w, h = _even(picture.width * scale), _even(picture.height * scale)
    scaled = picture.reformat(width=w, height=h, format="yuv420p")
    canvas = _black(W, H)  # a fresh frame: the decoded picture may be shown again at the next tick
    _blit(canvas, scaled, _even((W - w) / 2) if w < W else 0, _even((H - h) / 2) if h < H else 0)
    return canvas


# ---------------------------------------------------------------------------- the job pool


@dataclass
class Job:
    recording_id: int
    status: str = "queued"
    """queued, running, done, failed"""
    progress: float = 0.0
    error: str | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None
    result: dict[str, Any] | None = None


class ComposeJobs:
    """At most ``workers`` compositions at a time, on threads of their own; one job per recording."""

    def __init__(self, workers: int = 1) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max(1, min(workers, 2)), thread_name_prefix="compose")
        self._jobs: dict[int, Job] = {}
        self._lock = threading.Lock()

    def get(self, recording_id: int) -> Job | None:
        return self._jobs.get(recording_id)

    def submit(self, recording_id: int, work: Callable[[Callable[[float], None]], dict[str, Any]],
               on_done: Callable[[dict[str, Any]], None]) -> Job:
        """Queue ``work(progress)`` unless a job of this recording is queued or running; answers the job."""
        with self._lock:
            job = self._jobs.get(recording_id)
            if job is not None and job.status in ("queued", "running"):
                return job
            job = self._jobs[recording_id] = Job(recording_id)

        def run() -> None:
            job.status = "running"

            def progress(value: float) -> None:
                job.progress = round(min(0.99, max(job.progress, value)), 3)

            try:
                job.result = work(progress)
                on_done(job.result)
                job.progress = 1.0
                job.status = "done"
            except Exception as exc:  # reported to the page; the next request may try again
                log.exception("compose: recording %s failed", recording_id)
                job.status = "failed"
                job.error = f"{type(exc).__name__}: {exc}"[:300]
            finally:
                job.finished = time.time()

        self._pool.submit(run)
        return job

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
