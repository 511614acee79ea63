"""WebRTC seats of a famous-school lesson whose live stream was refused (its main classroom sends VP8).

Its home students should have watched the stream; without one they take WebRTC seats, up to what the
node's media workers carry (``SANKE_NODE_WORKER_CONSUMERS`` per worker, here one in-process worker of
four consumers).  Past that, a home student gets ``error`` ``seats_full`` (zh-CN, once) and no media, while
its hand raising and chat work; a receiving classroom is still placed (the classrooms' interactive seats
come first); when someone leaves, the waiting student is connected without asking again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from scheduler.models import LessonInstance, Role
from server.core.config import Settings
from signaling.client import LessonClient
from tests.conftest import TEST_SECRET
from tests.media.sfu_harness import POLICY, Lesson, db_url, loopback_clients, media_workers  # noqa: F401
from tests.media.sfu_helpers import RED, ColorTrack, ToneTrack, close_to, frames
from tests.server.api.routes.test_lessons import book, lessons
from tests.utils.factory import add_user
from tests.utils.live import live_server
from tests.utils.wait import until

LIMIT = 4
"""Consumers the one media worker takes: the teacher's camera and microphone to two subscribers."""


@pytest.fixture
def settings(tmp_path: Any, db_url: str) -> Settings:  # noqa: F811
    return Settings(data_dir=tmp_path / "data", database_url=db_url, secret_key=TEST_SECRET,
                    ice_host_addresses="127.0.0.1", ice_allowed_networks="127.0.0.0/8", media_workers=0,
                    node_worker_consumers=LIMIT)


@pytest.fixture
def lesson(loopback_clients: None, app: Any, world: Any, auth: Any,  # noqa: F811
           session_factory: Any) -> Iterator[tuple[Lesson, Any]]:
    with session_factory() as s:
        second = add_user(s, "student2", Role.student, school=world.rural, name="小红")
        s.commit()
        s.refresh(second)
    with live_server(app) as base, httpx.Client(base_url=base, timeout=20) as http:
        book(http, world, auth, kind="famous_school", participant_ids=[world.student.id, second.id])
        lid = lessons(http, world.urban_admin, auth, limit=1)["data"][0]["id"]
        with session_factory() as s:
            s.get(LessonInstance, lid).room_opened_at = datetime(2026, 8, 24, 8, 55)
            s.commit()
        yield Lesson(base, http, world, auth, lid), second


async def sees_red(client: LessonClient, pid: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, f"{client.participant_id} never decoded the teacher's camera"
        try:
            seen = await frames(await client.track(pid, "camera", timeout=1), 3, timeout=1)
        except TimeoutError:
            continue
        if all(close_to(x, RED) for x in seen):
            return


def test_a_refused_stream_gives_home_students_webrtc_seats_up_to_the_nodes_limit(lesson: tuple[Lesson, Any]) -> None:
    lsn, second = lesson
    w = lsn.world

    async def scenario() -> None:
        teacher = await lsn.join(w.teacher)
        rural = await lsn.join(w.terminal_recv)
        first = await lsn.join(w.student)
        late = await lsn.join(second)
        await teacher.publish({"camera": ColorTrack(RED), "microphone": ToneTrack()}, video_codec="video/VP8")
        m = teacher.participant_id
        # the teacher's page learns the stream is refused (the room state)
        await until("the stream refused", lambda: any(
            "camera" in m["room"].get("stream_refused", {}) for m in teacher.messages if m.get("type") == "room_updated"), 15)
        both = [{"participant_id": m, "source": "camera"}, {"participant_id": m, "source": "microphone"}]
        await first.subscribe(both)
        await sees_red(first, m)
        await rural.subscribe(both)
        await sees_red(rural, m)  # the worker is full now (4 consumers)

        refused = asyncio.ensure_future(late.next_message("error", 10))
        await asyncio.sleep(0)
        await late.subscribe(both)  # acknowledged: the subscriptions are kept...
        error = await refused  # ...but there is no seat
        assert error["code"] == "seats_full" and "席位已满" in error["message"], error
        assert late.subscriber is None or not late.tracks
        chat = asyncio.ensure_future(teacher.next_message("chat", 10))
        await late.request({"type": "chat", "text": "老师，我在看"})  # chat and hands still work
        assert (await chat)["text"] == "老师，我在看"
        await late.request({"type": "raise_hand", "raised": True})
        # a receiving classroom (its assistant teacher's page) is placed all the same: classrooms come first
        assistant = await lsn.join(w.assistant)
        assert assistant.joined["participant"]["role"] == "receiving"
        await assistant.subscribe(both)
        await sees_red(assistant, m)
        assert not late.tracks

        await first.close()  # the worker still carries 4 consumers (two classrooms): no seat yet
        await asyncio.sleep(1)
        assert not late.tracks
        await assistant.close()  # a seat is free: the waiting student is connected without asking again
        await sees_red(late, m, timeout=15)

    lsn.play(scenario)
