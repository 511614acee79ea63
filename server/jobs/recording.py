"""The server's side of lesson recordings: rows, the teaching-record link, retention and composing.

``RecordingService`` is what ``signaling.media.LessonMedia`` calls (through
``MediaService.recordings``) when a lesson's main classroom publishes
(``begin``: should this lesson be recorded? then a row and a folder) and when
its room closes (``finish``: the media worker's summary).  Database work runs
on a thread, never on the event loop.  It also

- follows the bus topic ``lesson`` (subscribed after the record keeper): on
  ``room_closed`` it links the teaching record, which exists by then, to the
  recording;
- runs the retention cleanup (``scheduler.recordings.expire``) at start and
  every ``CLEANUP_INTERVAL_S``;
- with several nodes (Redis), checkpoints every ``CHECKPOINT_S`` what the
  files of the recordings this node writes hold (``media.salvage.written_so_far``
  → ``scheduler.recordings.checkpoint``), and ends a dead node's recording of a
  lesson this node took over (``take_over``, called by the lesson's media);
- owns the compose jobs (``server.jobs.compose.ComposeJobs``).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, Self

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from media.salvage import written_so_far
from scheduler import clock, recordings
from scheduler.recordings_models import Recording, RecordingStatus
from server.core import hls_files
from server.core.config import Settings
from server.core.db import session_scope
from server.core.tasks import cancel_and_wait
from server.jobs.compose import ComposeJobs, Job, Layout, Segment, compose, segments

log = logging.getLogger(__name__)

CLEANUP_INTERVAL_S = 3600.0
CHECKPOINT_S = 2.0
"""How often a node of several notes what its recordings' files hold (what a taking-over node keeps of them)."""
COMPOSED_NAME = "lesson.mp4"


class RecordingService:
    def __init__(self, session_factory: sessionmaker[Session], settings: Settings) -> None:
        self._factory = session_factory
        self.settings = settings
        self.data_dir = settings.data_dir
        self.jobs = ComposeJobs(settings.compose_workers)
        self.layout = Layout()
        self._cleanup_task: asyncio.Task[None] | None = None
        self._checkpoint_task: asyncio.Task[None] | None = None
        self.node_id = settings.effective_node_id
        self.clustered = bool(settings.redis_url)

    # ------------------------------------------------------------------ called by the lesson's media

    async def begin(self, instance_id: int) -> dict[str, Any] | None:
        """``{id, directory, hls}`` (``directory`` absolute) of a new recording, or None when the lesson is not
        recorded; ``hls``: the lesson is streamed by LL-HLS too (a 名校网络课堂)."""
        def run() -> dict[str, Any] | None:
            with session_scope(self._factory) as session:
                row = recordings.begin(session, instance_id, now=clock.now(), node=self.settings.effective_node_id)
                if row is None:
                    return None
                return {"id": row.id, "directory": str((self.data_dir / row.directory).resolve()),
                        "hls": recordings.streams_hls(session, instance_id)}

        began = await asyncio.to_thread(run)
        if began is not None and began["hls"]:  # where a file server finds the lesson's stream (server.core.hls_files)
            hls_files.point_lesson(self.data_dir, instance_id, Path(began["directory"]))
        return began

    async def finish(self, recording_id: int, summary: dict[str, Any] | None, error: str | None = None) -> None:
        def run() -> None:
            with session_scope(self._factory) as session:
                if summary is None:
                    recordings.fail(session, recording_id, error or "录播中断", now=clock.now())
                else:
                    recordings.finish(session, recording_id, summary, now=clock.now())

        try:
            await asyncio.to_thread(run)
        except Exception:
            log.exception("recording %s: storing its end failed", recording_id)

    async def take_over(self, instance_id: int, dead_node: str) -> None:
        """This node opened the lesson's room after ``dead_node`` (its owner) died: end the recording that node
        left open, with what its files held at its last checkpoint."""
        if dead_node == self.node_id:
            return

        def run() -> list[tuple[int, str, float]]:
            with session_scope(self._factory) as session:
                rows = recordings.take_over(session, instance_id, dead_node, now=clock.now())
                return [(r.id, r.status.value, float(r.duration_s)) for r in rows]

        try:
            for recording_id, status, duration in await asyncio.to_thread(run):
                log.warning("recording %s of lesson %s ended for %s, which died: %s, %.1f s", recording_id,
                            instance_id, dead_node, status, duration)
        except Exception:
            log.exception("lesson %s: ending the recording of %s failed", instance_id, dead_node)

    def checkpoint(self) -> int:
        """Note what the files of every recording this node writes hold; answers how many rows changed."""
        with session_scope(self._factory) as session:
            rows = [(r.id, r.directory) for r in session.scalars(select(Recording).where(
                Recording.node == self.node_id, Recording.status == RecordingStatus.recording))]
        changed = 0
        for recording_id, directory in rows:
            files = written_so_far(self.data_dir / directory) if directory else []
            with session_scope(self._factory) as session:
                changed += recordings.checkpoint(session, recording_id, files)
        return changed

    async def _run_checkpoints(self) -> None:
        while True:
            await asyncio.sleep(CHECKPOINT_S)
            try:
                await asyncio.to_thread(self.checkpoint)
            except Exception:  # the next pass tries again
                log.exception("recording checkpoint failed")

    async def on_lesson_event(self, topic: str, event: dict[str, Any]) -> None:
        """``room_closed``: the teaching record has just been stored; point it at the recording."""
        if event.get("type") != "room_closed":
            return
        try:
            instance_id = int(event["instance_id"])
        except (KeyError, TypeError, ValueError):
            return

        def run() -> None:
            with session_scope(self._factory) as session:
                recordings.link_record(session, instance_id)

        try:
            await asyncio.to_thread(run)
        except Exception:
            log.exception("recording of lesson %s: linking the teaching record failed", instance_id)

    # ------------------------------------------------------------------ retention

    def cleanup(self) -> list[int]:
        with session_scope(self._factory) as session:
            expired = recordings.expire(session, now=clock.now(),
                                        retention_days=self.settings.recording_retention_days, data_dir=self.data_dir)
        hls_files.forget_gone(self.data_dir)  # the links of streams whose recordings were deleted
        return expired

    async def _cleanup_once(self) -> None:
        try:
            expired = await asyncio.to_thread(self.cleanup)
            if expired:
                log.info("recordings expired: %s", expired)
        except Exception:
            log.exception("recording cleanup failed")

    async def _run_cleanup(self) -> None:
        while True:
            await asyncio.sleep(CLEANUP_INTERVAL_S)
            await self._cleanup_once()

    async def __aenter__(self) -> Self:
        # the start-up pass finishes before the server answers, so what it expires is never seen
        # listed first and gone a moment later; later passes run every CLEANUP_INTERVAL_S
        await self._cleanup_once()
        self._cleanup_task = asyncio.get_running_loop().create_task(self._run_cleanup())
        if self.clustered:  # alone, the node finalizes its own recordings when it starts again
            self._checkpoint_task = asyncio.get_running_loop().create_task(self._run_checkpoints())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await cancel_and_wait(self._cleanup_task)
        await cancel_and_wait(self._checkpoint_task)
        self.jobs.close()

    # ------------------------------------------------------------------ one MP4

    def compose(self, row: Recording) -> Job:
        """Queue the one-MP4 composition of a playable recording (one job per recording at a time): of its whole
        lesson (every recording of a lesson recorded across restarts, on the lesson's time axis, the gaps black
        and silent).  The job reads the lesson's recordings itself, on its thread (the caller's transaction,
        which holds SQLite's lock, has ended by then)."""
        recording_id, instance_id = row.id, row.instance_id
        directory = self.data_dir / row.directory
        alone = [(directory, 0.0, list(row.files or []))], float(row.duration_s)
        layout = self.layout

        def lesson() -> tuple[list[tuple[Path, float, list[dict[str, Any]]]], float]:
            with session_scope(self._factory) as session:
                timeline = recordings.lesson_timeline(session, instance_id)
                parts = [(self.data_dir / seg.recording.directory, seg.offset_s, list(seg.recording.files or []))
                         for seg in timeline.segments]
            return (parts, timeline.duration_s) if parts else alone

        def work(progress: Any) -> dict[str, Any]:
            parts, duration = lesson()

            def track(source: str) -> list[Segment]:
                out = [Segment(s.path, s.start_s + offset, s.duration_s)
                       for folder, offset, files in parts for s in segments(folder, files, source)]
                return sorted(out, key=lambda s: s.start_s)

            return compose(camera=track("camera"), screen=track("screen"), microphone=track("microphone"),
                           duration_s=duration, output=directory / COMPOSED_NAME, layout=layout, progress=progress)

        def done(result: dict[str, Any]) -> None:
            with session_scope(self._factory) as session:
                stored = session.get(Recording, recording_id)
                if stored is not None:
                    stored.composed_name = COMPOSED_NAME

        return self.jobs.submit(recording_id, work, done)


def recordings_root(data_dir: Path) -> Path:
    return data_dir / recordings.RECORDINGS_DIR
