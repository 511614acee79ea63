"""A live lesson for end-to-end media tests: SanKe under uvicorn on 127.0.0.1, a booked and opened
famous-school lesson, and aiortc lesson clients that gather on 127.0.0.1 only.

Fixtures (a test module imports the ones it uses, ``# noqa: F401``; they override ``tests/conftest.py``'s
``settings`` and ``db_url`` only where imported): ``db_url`` (SQLite), ``media_workers`` (0: the worker
runs in the server process; override it to get worker processes), ``settings``, ``loopback_clients``,
``lesson`` (a :class:`Lesson`).  It holds no test and no picture/sound helpers (``sfu_helpers``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from media import ice
from media.ice import IcePolicy
from scheduler.models import LessonInstance
from server.core.config import Settings
from signaling.client import LessonClient
from tests.conftest import TEST_SECRET
from tests.server.api.routes.test_lessons import book, lessons
from tests.utils.live import live_server

POLICY = IcePolicy.from_strings(None, "127.0.0.1", "127.0.0.0/8", None)


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    """SQLite only: the database is not what these tests are about."""
    return sqlite_url


@pytest.fixture
def media_workers() -> int:
    """0: the worker runs in the server process; a test may ask for worker processes."""
    return 0


@pytest.fixture
def settings(tmp_path: Any, db_url: str, media_workers: int) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=db_url, secret_key=TEST_SECRET,
                    ice_host_addresses="127.0.0.1", ice_allowed_networks="127.0.0.0/8", media_workers=media_workers)


class Lesson:
    def __init__(self, base: str, http: httpx.Client, world: Any, auth: Any, lid: int) -> None:
        self.base, self.http, self.world, self.auth, self.lid = base, http, world, auth, lid
        self.clients: list[LessonClient] = []

    def token(self, user: Any) -> str:
        r = self.http.post(f"/api/v1/lessons/{self.lid}/join-token", headers=self.auth(user))
        assert r.status_code == 200, r.text
        return r.json()["token"]

    async def join(self, user: Any) -> LessonClient:
        client = LessonClient(self.base, self.lid, await asyncio.to_thread(self.token, user), policy=POLICY)
        await client.connect()
        self.clients.append(client)
        return client

    async def close(self) -> None:
        for c in self.clients:
            await c.close()

    def play(self, scenario: Any) -> None:
        """Run a test's scenario (90 s at most) and close every client it joined, whatever happens."""

        async def main() -> None:
            try:
                await asyncio.wait_for(scenario(), 90)
            finally:
                await self.close()

        asyncio.run(main())


def router_dump(app: Any, lesson_id: int) -> dict[str, Any]:
    """The SFU's counters for the lesson (``router.dump``), asked on the server's event loop
    (call it from a thread of its own when the caller runs an event loop)."""
    pool = app.state.media
    handle = pool.workers[0]
    loop = handle.task.get_loop()
    future = asyncio.run_coroutine_threadsafe(
        pool.request(f"lesson-{lesson_id}", "router.dump", {"router_id": f"lesson-{lesson_id}"}), loop)
    return dict(future.result(10))


def link_samples(app: Any) -> list[dict[str, Any]]:
    """The media worker's link samples (one per transport, every 2 s) from now on, appended as they come."""
    samples: list[dict[str, Any]] = []

    def on_stats(index: int, event: str, data: dict[str, Any]) -> None:
        if event == "stats":
            samples.extend(data.get("transports") or [])

    app.state.media.add_listener(on_stats)
    return samples


@pytest.fixture
def loopback_clients() -> Iterator[None]:
    """The test's own aiortc clients gather on 127.0.0.1 only (a worker process has its own policy)."""
    ice.apply(POLICY)
    yield
    ice.reset()


@pytest.fixture
def lesson(loopback_clients: None, app: Any, world: Any, auth: Any, session_factory: Any) -> Iterator[Lesson]:
    with live_server(app) as base, httpx.Client(base_url=base, timeout=20) as http:
        # a famous-school lesson: receiving classrooms, and a student at home
        book(http, world, auth, kind="famous_school", participant_ids=[world.student.id])
        lid = lessons(http, world.urban_admin, auth, limit=1)["data"][0]["id"]
        with session_factory() as s:
            s.get(LessonInstance, lid).room_opened_at = datetime(2026, 8, 24, 8, 55)
            s.commit()
        yield Lesson(base, http, world, auth, lid)

