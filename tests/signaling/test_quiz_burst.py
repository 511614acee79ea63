"""A burst of quiz answers through a real server on 127.0.0.1: every home student of a 名校网络课堂 answers at
once; every answer is acked and counted, and the teacher gets fewer ``quiz_results`` than answers (one read
of the results covers the answers stored while the previous one was read), the last one right."""

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
from tests.conftest import TEST_SECRET
from tests.media.sfu_harness import (  # noqa: F401 - a live lesson on 127.0.0.1
    Lesson,
    db_url,
    loopback_clients,
    media_workers,
)
from tests.server.api.routes.test_lessons import book, lessons
from tests.utils.factory import add_user
from tests.utils.live import live_server
from tests.utils.wait import until

STUDENTS = 200


@pytest.fixture
def settings(tmp_path: Any, db_url: str) -> Settings:
    """The lesson harness's, with room for every student's socket from one address (127.0.0.1)."""
    return Settings(data_dir=tmp_path / "data", database_url=db_url, secret_key=TEST_SECRET,
                    ice_host_addresses="127.0.0.1", ice_allowed_networks="127.0.0.0/8", media_workers=0,
                    signaling_connects_per_address_per_minute=10 * STUDENTS)


@pytest.fixture
def crowd(loopback_clients: None, app: Any, world: Any, auth: Any,
          session_factory: Any) -> Iterator[tuple[Lesson, list[Any]]]:
    with session_factory() as s:
        students = [add_user(s, f"quiz_student_{i}", Role.student, school=s.merge(world.rural), name=f"学生{i}")
                    for i in range(STUDENTS)]
        s.commit()
        for u in students:
            s.refresh(u)
            s.expunge(u)
    with live_server(app) as base, httpx.Client(base_url=base, timeout=30) as http:
        book(http, world, auth, kind="famous_school", participant_ids=[u.id for u in students])
        lid = lessons(http, world.urban_admin, auth, limit=1)["data"][0]["id"]
        with session_factory() as s:
            s.get(LessonInstance, lid).room_opened_at = datetime(2026, 8, 24, 8, 55)
            s.commit()
        yield Lesson(base, http, world, auth, lid), students


def test_every_student_answers_at_once_and_the_teacher_gets_the_sum(crowd: tuple[Lesson, list[Any]]) -> None:
    lesson, students = crowd
    figures: dict[str, float] = {}

    async def scenario() -> None:
        main = await lesson.join(lesson.world.teacher)
        gate = asyncio.Semaphore(20)

        async def join(u: Any) -> Any:
            async with gate:
                return await lesson.join(u)

        clients = await asyncio.gather(*(join(u) for u in students))
        await main.request({"type": "quiz_start", "question": {"kind": "multiple", "text": "哪些是偶数？",
                                                                "options": ["1", "2", "3", "4"], "correct": [1, 3]}})

        def asked(c: Any) -> Any:
            return next((m for m in c.messages if m["type"] == "quiz"), None)

        await until("every student has the question", lambda: all(asked(c) for c in clients), timeout=30)
        qid = asked(clients[0])["question"]["question_id"]
        before = sum(1 for m in main.messages if m["type"] == "quiz_results")
        t0 = time.perf_counter()
        await asyncio.gather(*(c.request({"type": "quiz_answer", "question_id": qid,
                                          "choices": [1, 3] if i % 2 else [1]}, timeout=60)
                               for i, c in enumerate(clients)))
        figures["acked_s"] = time.perf_counter() - t0

        def summed() -> Any:
            got = [m for m in main.messages if m["type"] == "quiz_results"]
            return got if got and got[-1]["answered"] == STUDENTS else None

        got = await until("the teacher's results count every answer", summed, timeout=30)
        figures["results_s"] = time.perf_counter() - t0
        last = got[-1]
        assert last["counts"] == [0, STUDENTS, 0, STUDENTS // 2]
        assert last["correct_share"] == 0.5 and len(last["answers"]) == STUDENTS
        figures["results_messages"] = len(got) - before
        assert figures["results_messages"] < STUDENTS, figures  # not one read (and message) per answer

    lesson.play(scenario)
    print(f"\n{STUDENTS} answers at once: all acked in {figures['acked_s']:.2f} s, the teacher's results "
          f"complete in {figures['results_s']:.2f} s, {figures['results_messages']:.0f} quiz_results messages")
