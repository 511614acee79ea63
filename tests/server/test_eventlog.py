"""server.core.eventlog.EventLog: batches, writes on stop, keeps what it could not write, link throttling."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from scheduler.models import LessonInstance
from scheduler.records_models import EventKind, SessionEvent
from server.core.eventlog import EventLog
from tests.server.api.routes.test_lessons import book


@dataclass
class Who:
    participant_id: str
    user_id: int
    classroom_id: int | None
    role: str


def _lesson(session_factory: Any, client: Any, world: Any, auth: Any) -> int:
    sid = book(client, world, auth)
    with session_factory() as s:
        return s.scalars(select(LessonInstance.id).where(LessonInstance.series_id == sid)).first()


def _rows(session_factory: Any) -> list[SessionEvent]:
    with session_factory() as s:
        return list(s.scalars(select(SessionEvent).order_by(SessionEvent.id)))


def test_events_are_written_in_batches_in_order_and_everything_on_stop(session_factory, client, world, auth) -> None:
    lid = _lesson(session_factory, client, world, auth)
    log = EventLog(session_factory, flush_interval_s=60, max_batch=1000)
    who = Who("p1", world.teacher.id, world.main_room.id, "main")

    async def scenario() -> None:
        await log.start()
        for i in range(2500):
            log.chat(lid, who, f"消息{i}")
        for _ in range(100):  # a full batch wakes the writer long before its 60 s timer
            await asyncio.sleep(0.1)
            if len(_rows(session_factory)) >= 1000:
                break
        assert len(_rows(session_factory)) >= 1000
        log.chat(lid, who, "最后一条")
        await log.stop()  # a graceful shutdown writes the rest

    asyncio.run(scenario())
    rows = _rows(session_factory)
    assert [r.data["text"] for r in rows] == [f"消息{i}" for i in range(2500)] + ["最后一条"]
    assert {r.kind for r in rows} == {EventKind.chat} and rows[0].role == "main" and rows[0].user_id == world.teacher.id
    assert log.written == 2501 and log.pending == 0


def test_a_batch_that_cannot_be_written_is_kept_and_written_later(session_factory, client, world, auth, monkeypatch) -> None:
    lid = _lesson(session_factory, client, world, auth)
    log = EventLog(session_factory, flush_interval_s=60)
    who = Who("p1", world.terminal_recv.id, world.recv_room.id, "receiving")
    original = log._write
    failures = {"left": 1}

    def flaky(rows: list[dict[str, Any]]) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise ConnectionError("database restarting")
        original(rows)

    monkeypatch.setattr(log, "_write", flaky)

    async def scenario() -> None:
        log.record(lid, "join", who)
        assert await log.flush() == 0 and log.pending == 1  # kept
        log.record(lid, "leave", who, {"reason": "client_left"})
        assert await log.flush() == 2

    asyncio.run(scenario())
    assert [r.kind for r in _rows(session_factory)] == [EventKind.join, EventKind.leave]


def test_link_samples_are_kept_one_per_participant_per_interval_for_local_rooms(session_factory, client, world,
                                                                               auth) -> None:
    lid = _lesson(session_factory, client, world, auth)
    log = EventLog(session_factory, flush_interval_s=60, link_interval_s=5.0, is_local=lambda i: i == lid)
    sample = {"type": "link_quality", "instance_id": lid, "participant_id": "r1", "user_id": world.terminal_recv.id,
              "classroom_id": world.recv_room.id, "role": "receiving", "loss": 0.02, "rtt_ms": 31.0,
              "jitter_ms": 2.0, "bitrate_kbps": 800, "up_kbps": 10, "down_kbps": 800}

    async def scenario() -> None:
        for _ in range(3):  # every 2 s from the media plane: only the first of these is kept
            log.on_media_event("media", sample)
        log.on_media_event("media", {**sample, "participant_id": "r2"})
        log.on_media_event("media", {**sample, "instance_id": lid + 999})  # a room of another node
        log.on_media_event("media", {"type": "worker_died"})
        await log.stop()

    asyncio.run(scenario())
    rows = _rows(session_factory)
    assert [(r.participant_id, r.kind) for r in rows] == [("r1", EventKind.link_quality), ("r2", EventKind.link_quality)]
    assert rows[0].data == {"loss": 0.02, "rtt_ms": 31.0, "jitter_ms": 2.0, "bitrate_kbps": 800, "up_kbps": 10,
                            "down_kbps": 800}


def test_open_sessions_silent_for_an_interval_get_a_presence_mark(session_factory, client, world, auth) -> None:
    lid = _lesson(session_factory, client, world, auth)
    log = EventLog(session_factory, flush_interval_s=60, presence_interval_s=30.0, node="node-a")
    main = Who("p_main", world.teacher.id, world.main_room.id, "main")
    recv = Who("p_recv", world.terminal_recv.id, world.recv_room.id, "receiving")
    gone = Who("p_gone", world.student.id, None, "student")

    async def scenario() -> None:
        for who in (main, recv, gone):
            log.record(lid, EventKind.join, who)
        log.record(lid, EventKind.leave, gone, {"reason": "client_left"})
        assert log.open_sessions == {(lid, "p_main"), (lid, "p_recv")}
        now = time.monotonic()
        assert log.mark_presence(now + 10) == 0  # nobody silent for 30 s yet
        log.chat(lid, recv, "在")  # the receiving classroom speaks up 20 s later
        for entry in log._open.values():  # noqa: SLF001 - place the events in time without waiting
            entry[0] = now + (20 if entry[1]["role"] == "receiving" else 0)
        assert log.mark_presence(now + 31) == 1  # only the silent main classroom is marked
        assert log.mark_presence(now + 45) == 0  # each at most once per interval
        assert log.mark_presence(now + 62) == 2
        await log.flush()

    asyncio.run(scenario())
    rows = _rows(session_factory)
    marks = [(r.participant_id, r.role, r.classroom_id) for r in rows if r.kind is EventKind.presence]
    assert marks == [("p_main", "main", world.main_room.id), ("p_main", "main", world.main_room.id),
                     ("p_recv", "receiving", world.recv_room.id)]
    assert {r.data["node"] for r in rows if r.kind is EventKind.join} == {"node-a"}  # who hosts each session
