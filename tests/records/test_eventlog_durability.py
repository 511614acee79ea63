"""Nothing acknowledged is lost: the session event log survives SIGKILL (what was written stays)
and a graceful shutdown (SIGTERM) writes everything still pending.  The server is a separate
process the test starts, kills and starts again, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from media.ice import IcePolicy
from scheduler.access import scope_of
from scheduler.bookings import ReceiverSpec, SeriesSpec, create_series
from scheduler.models import LessonInstance, LessonKind
from server.core.db import make_engine, make_session_factory
from server.core.migrate import upgrade
from server.core.security import JoinClaims, create_join_token
from signaling.client import LessonClient
from tests.conftest import TEST_SECRET
from tests.records.server_process import settings as server_settings
from tests.utils.factory import World
from tests.utils.live import free_port

POLICY = IcePolicy.from_strings(None, "127.0.0.1", "127.0.0.0/8", None)
ROOT = Path(__file__).resolve().parents[2]


def prepare(data_dir: Path) -> dict[str, Any]:
    """A database with one open lesson, and join tokens for its main and receiving classrooms."""
    s = server_settings(data_dir)
    s.ensure_data_dir()
    upgrade(s.effective_database_url)
    engine = make_engine(s.effective_database_url)
    try:
        with make_session_factory(engine)() as session:
            w = World.build(session)
            series = create_series(session, SeriesSpec(
                kind=LessonKind.dedicated, title="三年级数学", subject="数学", grade="三年级", term_id=w.term.id,
                main_classroom_id=w.main_room.id, main_teacher_id=w.teacher.id, weekday=1, period_from=1,
                period_to=1, receivers=(ReceiverSpec(w.recv_room.id),),
            ), actor=w.urban_admin, scope=scope_of(session, w.urban_admin))
            inst = session.scalars(select(LessonInstance).where(LessonInstance.series_id == series.id)
                                   .order_by(LessonInstance.starts_at)).first()
            inst.room_opened_at = datetime.now()
            session.commit()
            expires = int(time.time()) + 3600
            return {
                "lesson": inst.id,
                "main": create_join_token(JoinClaims(w.teacher.id, inst.id, "main", w.main_room.id, expires),
                                          TEST_SECRET),
                "recv": create_join_token(JoinClaims(w.terminal_recv.id, inst.id, "receiving", w.recv_room.id,
                                                     expires), TEST_SECRET),
            }
    finally:
        engine.dispose()


class Server:
    def __init__(self, data_dir: Path, flush_interval_s: float) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "SANKE_EVENT_FLUSH_INTERVAL_SECONDS": str(flush_interval_s)}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.records.server_process", str(self.data_dir),
                                      str(self.port)], cwd=ROOT, env=self.env)
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(self.base + "/healthz", timeout=2).read()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.2)

    def stop(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def server_dir(tmp_path: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    info = prepare(tmp_path)
    yield tmp_path, info


def events(data_dir: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(data_dir / "sanke.db") as db:
        return db.execute("SELECT id, kind, participant_id, role, data FROM session_event ORDER BY id").fetchall()


async def lesson_traffic(base: str, info: dict[str, Any], chats: int) -> tuple[str, str]:
    """Main and receiving join, the receiving classroom raises its hand, both chat; every message is
    answered (acknowledged) by the server before the next.  Returns their session ids."""
    main = LessonClient(base, info["lesson"], info["main"], policy=POLICY)
    recv = LessonClient(base, info["lesson"], info["recv"], policy=POLICY)
    await main.connect()
    await recv.connect()
    await recv.request({"type": "raise_hand", "raised": True})
    for i in range(chats):
        sender = main if i % 2 == 0 else recv
        echo = asyncio.ensure_future(sender.next_message("chat"))
        await sender.send({"type": "chat", "text": f"第{i}条"})
        await echo
    # the clients stay connected: the server goes down under them
    return main.participant_id, recv.participant_id


def test_events_written_before_a_sigkill_are_all_there_after_restart(server_dir) -> None:
    data_dir, info = server_dir
    server = Server(data_dir, flush_interval_s=0.2)
    server.start()
    try:
        asyncio.run(lesson_traffic(server.base, info, chats=30))
        deadline = time.monotonic() + 20  # the writer gets them on disk within its interval
        while len([e for e in events(data_dir) if e[1] == "chat"]) < 30 and time.monotonic() < deadline:
            time.sleep(0.1)
        before = events(data_dir)
        assert len([e for e in before if e[1] == "chat"]) == 30
        assert server.stop(signal.SIGKILL) == -signal.SIGKILL
        assert events(data_dir) == before  # nothing written is lost or torn by the kill
        server.start()  # and the server starts again on the same database
        assert events(data_dir)[: len(before)] == before
        body = urllib.request.urlopen(server.base + "/healthz", timeout=5).read()
        assert b'"ok"' in body
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.stop(signal.SIGTERM)


def test_a_graceful_shutdown_writes_every_pending_event(server_dir) -> None:
    data_dir, info = server_dir
    server = Server(data_dir, flush_interval_s=3600)  # the timer never fires: only the shutdown writes
    server.start()
    try:
        main_id, recv_id = asyncio.run(lesson_traffic(server.base, info, chats=12))
        time.sleep(0.5)
        assert events(data_dir) == []  # all still pending in the server
        # uvicorn shuts down gracefully, then re-raises the signal: -SIGTERM is a clean exit here
        assert server.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.kill()
    rows = events(data_dir)
    chats = [r for r in rows if r[1] == "chat"]
    assert [r[2] for r in chats] == [main_id if i % 2 == 0 else recv_id for i in range(12)]
    assert [r for r in rows if r[1] == "join"] and ("hand_raise" in {r[1] for r in rows})
    assert {r[2] for r in rows if r[1] in ("disconnect", "leave")} == {main_id, recv_id}  # the shutdown's own events
