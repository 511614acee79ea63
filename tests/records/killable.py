"""A SanKe server the test starts, kills and starts again, on 127.0.0.1: the process
(:class:`Server`, running ``tests.records.server_process``), the database it starts on
(:func:`prepare`: one open lesson and the tokens to join it) and queries of that database
(:func:`rows`).  It holds no test; the tests decide when and how the server dies."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from media.ice import IcePolicy
from scheduler.access import scope_of
from scheduler.bookings import ReceiverSpec, SeriesSpec, create_series
from scheduler.models import LessonInstance, LessonKind
from server.core.db import make_engine, make_session_factory
from server.core.migrate import upgrade
from server.core.security import JoinClaims, create_join_token
from tests.conftest import TEST_SECRET
from tests.records.server_process import settings as server_settings
from tests.utils.factory import World, token_for
from tests.utils.live import free_port

POLICY = IcePolicy.from_strings(None, "127.0.0.1", "127.0.0.0/8", None)
"""The test's aiortc clients: 127.0.0.1 only."""
ROOT = Path(__file__).resolve().parents[2]


def prepare(data_dir: Path, *, recorded: bool = False) -> dict[str, Any]:
    """A database in ``data_dir`` with one open dedicated lesson (recorded or not).  Answers ``lesson``
    (its id), ``main`` and ``recv`` (join tokens of the main and the receiving classroom), ``main_token``
    (makes a fresh one for the main classroom: a join token admits once), ``admin`` (an access token of
    the urban admin) and ``recv_room`` (the receiving classroom's id)."""
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
            series.recording = recorded
            inst = session.scalars(select(LessonInstance).where(LessonInstance.series_id == series.id)
                                   .order_by(LessonInstance.starts_at)).first()
            inst.room_opened_at = datetime.now()
            session.commit()
            lid, teacher, main_room, recv_user, recv_room = (inst.id, w.teacher.id, w.main_room.id,
                                                             w.terminal_recv.id, w.recv_room.id)

            def main_token() -> str:
                return create_join_token(JoinClaims(teacher, lid, "main", main_room, int(time.time()) + 3600),
                                         TEST_SECRET)

            return {
                "lesson": lid,
                "main": main_token(),
                "main_token": main_token,
                "recv": create_join_token(JoinClaims(recv_user, lid, "receiving", recv_room, int(time.time()) + 3600),
                                          TEST_SECRET),
                "admin": token_for(w.urban_admin, TEST_SECRET),
                "recv_room": recv_room,
            }
    finally:
        engine.dispose()


def rows(data_dir: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """``sql`` on the server's SQLite database (it may be running, killed or stopped)."""
    with sqlite3.connect(data_dir / "sanke.db") as db:
        return db.execute(sql, args).fetchall()


class Server:
    """``python -m tests.records.server_process`` on a free port of 127.0.0.1, on ``data_dir``; settings
    come from ``env`` (``SANKE_EVENT_FLUSH_INTERVAL_SECONDS`` is ``flush_interval_s``)."""

    def __init__(self, data_dir: Path, flush_interval_s: float) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "SANKE_EVENT_FLUSH_INTERVAL_SECONDS": str(flush_interval_s)}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it (again) and wait until it answers ``/healthz``."""
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
        """Send ``sig`` and answer the exit code (killed after 30 s if it is still running)."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=30)
        finally:
            self.kill()

    def kill(self) -> None:
        """Make sure it is not running (SIGKILL if it is)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
