"""Teaching records from a real lesson: scripted aiortc clients join, drop, resume, go on stage and
leave at known times through a server the test starts; the record's seconds match the script."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from signaling.client import LessonClient
from tests.media.sfu_harness import (  # noqa: F401 - fixtures of the SFU tests: a live lesson on 127.0.0.1
    POLICY,
    Lesson,
    db_url,
    lesson,
    loopback_clients,
    media_workers,
    settings,
)
from tests.media.sfu_helpers import RED, ColorTrack
from tests.utils.wait import wait_until

TOLERANCE_S = 1.5


def record(lesson: Lesson, user: Any) -> dict[str, Any]:
    r = lesson.http.get(f"/api/v1/records/lessons/{lesson.lid}", headers=lesson.auth(user), params={"timeline": True})
    assert r.status_code == 200, r.text
    return r.json()


def test_recorded_seconds_match_a_scripted_lesson(lesson: Lesson) -> None:
    w = lesson.world
    marks: dict[str, float] = {}

    async def scenario() -> None:
        t0 = time.monotonic()

        async def at(t: float) -> None:
            await asyncio.sleep(max(0.0, t0 + t - time.monotonic()))

        main = await lesson.join(w.teacher)
        await main.publish({"camera": ColorTrack(RED)})
        marks["published"] = time.monotonic() - t0
        await at(1)
        rural = await lesson.join(w.terminal_recv)
        marks["rural_join"] = time.monotonic() - t0
        await at(2)
        student = await lesson.join(w.student)
        marks["student_join"] = time.monotonic() - t0
        await at(3)
        await main.request({"type": "set_on_stage", "participant_id": student.participant_id})
        await at(4)
        session, last_seq = rural.participant_id, rural.last_seq
        await rural.drop()  # the rural classroom's network drops...
        marks["rural_drop"] = time.monotonic() - t0
        await at(5)
        again = LessonClient(lesson.base, lesson.lid, await asyncio.to_thread(lesson.token, w.terminal_recv),
                             policy=POLICY)
        lesson.clients.append(again)
        assert (await again.connect(resume=(session, last_seq)))["type"] == "resumed"  # ...and comes back
        marks["rural_resume"] = time.monotonic() - t0
        await at(6)
        await main.request({"type": "set_on_stage", "participant_id": None})
        await at(7)
        await student.close()
        marks["student_leave"] = time.monotonic() - t0
        await at(8)
        await again.close()
        marks["rural_leave"] = time.monotonic() - t0
        await at(9)
        await main.close()
        marks["main_leave"] = time.monotonic() - t0

    lesson.play(scenario)
    rec = record(lesson, w.urban_admin)
    m = marks
    assert abs(rec["duration_s"] - (m["main_leave"] - m["published"])) <= TOLERANCE_S, (rec, m)
    assert rec["status"] in ("partly_held", "held") and rec["actual_start"] is not None
    by_role = {a["role"]: a for a in rec["attendance"]}
    rural, student = by_role["receiving"], by_role["student"]
    expected_rural = (m["rural_drop"] - m["rural_join"]) + (m["rural_leave"] - m["rural_resume"])
    assert abs(rural["present_s"] - expected_rural) <= TOLERANCE_S, (rural, m)
    assert rural["disconnects"] == 1 and rural["classroom_id"] == w.recv_room.id and rural["expected"]
    assert rural["classroom_name"] == w.recv_room.name
    assert abs(student["present_s"] - (m["student_leave"] - m["student_join"])) <= TOLERANCE_S, (student, m)
    assert student["stage_count"] == 1 and abs(student["stage_s"] - 3) <= TOLERANCE_S
    assert student["user_id"] == w.student.id and student["expected"]
    assert "observer" not in by_role
    assert rec["expected_receivers"] == 2 and rec["attended_receivers"] == 2

    # the event log behind it, in order, for the teacher of the lesson
    r = lesson.http.get(f"/api/v1/records/lessons/{lesson.lid}/events", headers=lesson.auth(w.teacher))
    assert r.status_code == 200, r.text
    kinds = [(e["role"], e["kind"]) for e in r.json()["data"] if e["kind"] != "link_quality"]
    assert kinds[:2] == [("main", "join"), ("main", "publish")]
    assert ("receiving", "disconnect") in kinds and ("receiving", "resume") in kinds
    assert ("student", "stage_on") in kinds and ("student", "stage_off") in kinds
    assert kinds[-1] == ("main", "leave")


def test_records_are_for_staff_who_can_see_the_lesson(lesson: Lesson) -> None:
    w = lesson.world
    url = f"/api/v1/records/lessons/{lesson.lid}"
    assert lesson.http.get(url).status_code == 401
    for user in (w.student, w.terminal_recv):  # not staff
        assert lesson.http.get(url, headers=lesson.auth(user)).status_code == 403
    assert lesson.http.get(url, headers=lesson.auth(w.researcher_b)).status_code == 403  # another district
    for user in (w.researcher_a, w.teacher, w.urban_admin, w.city_admin):
        assert lesson.http.get(url, headers=lesson.auth(user)).status_code == 200
    with httpx.Client(base_url=lesson.base) as anon:
        assert anon.get(f"{url}/events", headers={"Authorization": "Bearer forged"}).status_code == 401


def test_ending_the_lesson_closes_the_room_for_everyone_and_stores_its_record(lesson: Lesson,
                                                                              session_factory: Any) -> None:
    from scheduler.records_models import RecordStatus, TeachingRecord

    w = lesson.world
    url = f"/api/v1/lessons/{lesson.lid}"

    async def scenario() -> None:
        main = await lesson.join(w.teacher)
        rural = await lesson.join(w.terminal_recv)
        await main.publish({"camera": ColorTrack(RED)})
        r = await asyncio.to_thread(lesson.http.post, f"{url}/start", headers=lesson.auth(w.teacher))
        assert r.status_code == 200 and r.json()["status"] == "live", (r.status_code, r.text)
        left = asyncio.ensure_future(rural.next_message("leave"))
        r = await asyncio.to_thread(lesson.http.post, f"{url}/end", headers=lesson.auth(w.terminal_recv))
        assert r.status_code == 403  # only the main classroom ends a lesson
        await asyncio.sleep(1.0)
        r = await asyncio.to_thread(lesson.http.post, f"{url}/end", headers=lesson.auth(w.teacher))
        assert r.status_code == 200 and r.json()["status"] == "held", r.text
        assert (await left)["reason"] == "room_closed"
        r = await asyncio.to_thread(lesson.http.post, f"{url}/end", headers=lesson.auth(w.teacher))
        assert r.status_code == 409 and "已结束" in r.json()["message"]  # a second 下课: told, nothing changes

    lesson.play(scenario)
    def stored() -> TeachingRecord | None:  # the record is stored off the request, once the room closed
        with session_factory() as s:
            return s.get(TeachingRecord, lesson.lid)

    row = wait_until("the teaching record stored", stored, 10)
    assert row.actual_start is not None
    assert row.status in (RecordStatus.held, RecordStatus.partly_held) and row.duration_s >= 1
    assert row.attended_receivers == 1
