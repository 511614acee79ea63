"""SanKe as a target of ``bench.fanout``: the real server with one media worker process.

``start()`` builds a small database (the test world, one famous-school lesson
whose room is open, one student account per subscriber), then runs
``python -m bench.fanout_sanke --serve`` in its own process: the FastAPI app with
signaling on 127.0.0.1 and ``SANKE_MEDIA_WORKERS=1`` (the SFU worker, a child of
that process, gathers on 127.0.0.2 like every peer of the benchmark; ``bench.bigroom``
sets more workers and a consumer limit per worker through ``SANKE_FANOUT_WORKERS`` and
``SANKE_FANOUT_WORKER_CONSUMERS``).  The
publisher and each subscriber then speak the lesson protocol over the
WebSocket with join tokens, exactly as classroom terminals do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

SECRET = "bench-fanout-secret-key-0123456789abcdef"
MAX_SUBSCRIBERS = 128
WORKERS_ENV = "SANKE_FANOUT_WORKERS"
"""Media workers of the server under test (default 1)."""
LIMIT_ENV = "SANKE_FANOUT_WORKER_CONSUMERS"
"""Consumers per worker before a lesson's subscribers go to another worker (``bench.bigroom``)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _settings(data_dir: Path) -> Any:
    from server.core.config import Settings

    # every subscriber connects from 127.0.0.1, as fast as it can: no per-address bound on new sockets;
    # ``bench.bigroom`` asks for more workers (WORKERS_ENV) and a consumer limit per worker (LIMIT_ENV)
    limit = os.environ.get(LIMIT_ENV)
    return Settings(data_dir=data_dir, database_url=f"sqlite:///{data_dir}/sanke.db", secret_key=SECRET,
                    ice_host_addresses="127.0.0.2", ice_allowed_networks="127.0.0.0/8",
                    media_workers=int(os.environ.get(WORKERS_ENV) or 1), media_pipe_host="127.0.0.2",
                    **({"node_worker_consumers": int(limit)} if limit else {}),
                    signaling_unjoined_per_address=MAX_SUBSCRIBERS + 1,
                    signaling_connects_per_address_per_minute=100 * MAX_SUBSCRIBERS)


def prepare(data_dir: Path, subscribers: int) -> dict[str, Any]:
    """The database of the run and the join tokens (main classroom + one student per subscriber)."""
    from sqlalchemy import select

    from scheduler.access import scope_of
    from scheduler.bookings import ReceiverSpec, SeriesSpec, create_series
    from scheduler.models import LessonInstance, LessonKind, Role
    from server.core.migrate import migrated_database
    from server.core.security import JoinClaims, create_join_token
    from tests.utils.factory import World, add_user

    settings = _settings(data_dir)
    with migrated_database(settings) as factory, factory() as s:
        w = World.build(s)
        series = create_series(s, SeriesSpec(
            # a master lesson with recording off: Janus records nothing either (a famous-school
            # lesson is always recorded, which adds the recorder's work to the worker)
            kind=LessonKind.master, recording=False, title="名师课堂（压测）", subject="数学", grade="三年级",
            term_id=w.term.id, main_classroom_id=w.main_room.id, main_teacher_id=w.teacher.id,
            weekday=1, period_from=1, period_to=1, receivers=(ReceiverSpec(w.recv_room.id),),
        ), actor=w.urban_admin, scope=scope_of(s, w.urban_admin))
        inst = s.scalars(select(LessonInstance).where(LessonInstance.series_id == series.id)
                         .order_by(LessonInstance.starts_at)).first()
        inst.room_opened_at = datetime.now()
        students = [add_user(s, f"bench{i}", Role.student, school=w.rural, name=f"学生{i}")
                    for i in range(subscribers)]
        s.commit()
        expires = int(time.time()) + 6 * 3600
        main = create_join_token(JoinClaims(w.teacher.id, inst.id, "main", w.main_room.id, expires), SECRET)
        return {"lesson": inst.id, "main": main, "students": [u.id for u in students], "expires": expires}


def student_tokens(info: dict[str, Any]) -> list[str]:
    """A fresh join token per student of the run: a token is good for one join, and each N joins anew."""
    from server.core.security import JoinClaims, create_join_token

    return [create_join_token(JoinClaims(uid, info["lesson"], "student", None, info["expires"]), SECRET)
            for uid in info["students"]]


def serve(data_dir: Path, port: int) -> None:
    from server.main import create_app
    from server.serving import serve as serve_app

    import logging

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s sanke %(name)s: %(message)s")
    for name in ("signaling", "media"):  # what the server decides about media is worth seeing in a run
        logging.getLogger(name).setLevel(logging.INFO)
    app = create_app(_settings(data_dir), migrate=False, run_lifecycle=False)
    serve_app(app, host="127.0.0.1", port=port, log_level="warning")


async def start_server(data_dir: Path, workers: str = "1",
                       cores: set[int] | None = None) -> tuple[asyncio.subprocess.Process, str]:
    """``serve(data_dir, port)`` in a process of its own with ``workers`` media workers, once its
    ``/healthz`` answers: the process and the server's base URL.  ``cores``: the CPU cores the
    server and its workers may run on (default: the caller's)."""
    port = _free_port()
    env = {**os.environ, "SANKE_MEDIA_WORKERS": workers}
    pin = (lambda: os.sched_setaffinity(0, cores)) if cores else None
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.fanout_sanke", "--serve", str(data_dir), str(port), env=env, preexec_fn=pin)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            await asyncio.to_thread(urllib.request.urlopen, base + "/healthz", None, 2)
            return proc, base
        except OSError:
            if time.monotonic() > deadline or proc.returncode is not None:
                raise RuntimeError("the SanKe server did not start") from None
            await asyncio.sleep(0.2)


async def stop_server(proc: asyncio.subprocess.Process | None) -> None:
    """Stop a server ``start_server`` started: SIGTERM (it drains and stops its workers), SIGKILL after 15 s."""
    if proc is None or proc.returncode is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), 15)
    except TimeoutError:
        proc.kill()
        await proc.wait()


class SankeTarget:
    name = "sanke"
    sfu_cores: set[int] | None = None
    """The CPU cores the server and its workers run on (None: wherever the bench runs)."""

    def __init__(self) -> None:
        self._dir: str | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._info: dict[str, Any] = {}
        self._base = ""
        self._publisher: Any = None
        self._spec: dict[str, Any] = {}
        self._clients: list[Any] = []

    async def start(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="sanke-fanout-")
        self._info = await asyncio.to_thread(prepare, Path(self._dir), MAX_SUBSCRIBERS)
        workers = os.environ.get(WORKERS_ENV) or "1"
        self._proc, self._base = await start_server(Path(self._dir), workers, self.sfu_cores)

    async def publish(self, pc: Any) -> None:
        from bench import fanout_common as common
        from signaling.client import LessonClient

        client = LessonClient(self._base, self._info["lesson"], self._info["main"], policy=common.ice_policy(),
                              publisher=pc)
        await client.connect()
        sources = {}
        for transceiver in pc.getTransceivers():
            sources["microphone" if transceiver.kind == "audio" else "camera"] = transceiver
        await client.negotiate_publisher(sources)
        self._publisher = client

    def spec(self) -> dict[str, Any]:
        return {"base": self._base, "lesson": self._info["lesson"], "tokens": student_tokens(self._info),
                "publisher": self._publisher.participant_id}

    @classmethod
    def attach(cls, spec: dict[str, Any]) -> SankeTarget:
        target = cls()
        target._spec = spec
        return target

    async def subscribe(self, sub: Any) -> None:
        from bench import fanout_common as common
        from signaling.client import LessonClient

        spec = self._spec
        client = LessonClient(spec["base"], spec["lesson"], spec["tokens"][sub.index], policy=common.ice_policy(),
                              subscriber=sub.pc)
        await client.connect()
        self._clients.append(client)
        await client.subscribe([{"participant_id": spec["publisher"], "source": "camera"},
                                {"participant_id": spec["publisher"], "source": "microphone"}])
        while client.offers < 1:  # the server's offer arrives after the ack; answered by the client
            await asyncio.sleep(0.01)

    async def detach(self) -> None:
        for client in self._clients:
            with contextlib.suppress(Exception):
                await client.close()
        self._clients.clear()

    def pids(self) -> list[int]:
        return [self._proc.pid] if self._proc is not None else []

    async def stop(self) -> None:
        if self._publisher is not None:
            with contextlib.suppress(Exception):
                await self._publisher.close()
        await stop_server(self._proc)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the SanKe server for bench.fanout (internal).")
    parser.add_argument("--serve", nargs=2, metavar=("DIR", "PORT"), required=True)
    args = parser.parse_args(argv)
    serve(Path(args.serve[0]), int(args.serve[1]))


if __name__ == "__main__":
    main()
