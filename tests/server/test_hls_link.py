"""POST /api/v1/lessons/{id}/hls-link: who may watch a famous-school lesson's stream, and the link's life.

Database tests (SQLite and PostgreSQL).  The clock is the tests' pinned one, moved where the link's life is
at stake.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import m3u8

from scheduler.models import LessonInstance, Role
from server.api.routes.hls import unix_now
from server.core import hls_files, hls_sign
from server.core.placement import Placed
from server.jobs.recording import RecordingService
from tests.conftest import TODAY
from tests.server.api.routes.test_lessons import book, lessons
from tests.utils.factory import add_user
from tests.utils.hls_live import live_lesson


def link(client: Any, auth: Any, user: Any, lesson: int) -> Any:
    return client.post(f"/api/v1/lessons/{lesson}/hls-link", headers=auth(user))


def test_who_may_watch_a_famous_school_lesson(client: Any, world: Any, auth: Any, session_factory: Any) -> None:
    with session_factory() as s:
        other_student = add_user(s, "student2", Role.student, school=world.rural, name="小红")
        s.commit()
    sid = book(client, world, auth, kind="famous_school", title="名校语文", subject="语文", grade="五年级",
               participant_ids=[world.student.id])
    book(client, world, auth, kind="famous_school", title="名校数学", subject="数学", grade="五年级", weekday=2,
         main_teacher_id=world.teacher2.id, main_classroom_id=world.main_room2.id,
         receivers=[{"classroom_id": world.recv_room2.id}], participant_ids=[other_student.id])
    lesson = lessons(client, world.urban_admin, auth, series_id=sid, limit=1)["data"][0]["id"]

    for user, role in ((world.student, "student"), (world.teacher, "main"), (world.terminal_main, "main"),
                       (world.terminal_recv, "receiving"), (world.assistant, "receiving"),
                       (world.researcher_a, "observer"), (world.researcher_city, "observer"),
                       (world.urban_admin, "admin"), (world.city_admin, "admin"), (world.sysadmin, "admin")):
        r = link(client, auth, user, lesson)
        assert r.status_code == 200, (user.username, r.text)
        body = r.json()
        assert body["lesson_role"] == role and body["instance_id"] == lesson, user.username
        assert body["prefix"].startswith(f"/hls/{lesson}/") and body["main_url"] == body["prefix"] + "main.m3u8"

    for user in (other_student, world.researcher_b, world.teacher_b, world.admin_b):
        r = link(client, auth, user, lesson)
        assert r.status_code == 403, (user.username, r.text)
        assert r.json()["code"] == "forbidden" and r.json()["message"], user.username
    assert client.post(f"/api/v1/lessons/{lesson}/hls-link").status_code == 401
    r = link(client, auth, world.student, 999999)
    assert r.status_code == 404 and "不存在" in r.json()["message"]

    book(client, world, auth, weekday=3)  # a dedicated lesson: no stream
    dedicated = lessons(client, world.urban_admin, auth, kind="dedicated", limit=1)["data"][0]["id"]
    r = link(client, auth, world.teacher, dedicated)
    assert r.status_code == 409 and r.json()["message"] == "只有名校网络课堂提供直播流"
    r = client.post(f"/api/v1/lessons/{lesson}/cancel", json={"reason": "运动会"}, headers=auth(world.urban_admin))
    assert r.status_code == 200
    r = link(client, auth, world.student, lesson)
    assert r.status_code == 409 and "停课" in r.json()["message"]


def test_the_link_opens_the_stream_and_a_fresh_one_is_given_before_it_expires(
        client: Any, world: Any, auth: Any, settings: Any, monkeypatch: Any) -> None:
    book(client, world, auth, kind="famous_school", title="名校语文", subject="语文", grade="五年级",
         participant_ids=[world.student.id])
    lesson = lessons(client, world.urban_admin, auth, kind="famous_school", limit=1)["data"][0]["id"]
    first = link(client, auth, world.student, lesson).json()
    assert first["started"] is False
    assert client.get(first["main_url"]).status_code == 404  # signed, but nothing written yet

    camera = live_lesson(settings.data_dir, lesson, 3, TODAY)["camera"]
    camera.add_part()
    first = link(client, auth, world.student, lesson).json()
    assert first["started"] is True
    now = unix_now()
    assert now + settings.hls_link_seconds <= first["expires_at"] < now + settings.hls_link_seconds + hls_sign.ROUND_S
    assert first["renew_at"] == first["expires_at"] - settings.hls_link_seconds // 2
    r = client.get(first["main_url"])
    assert r.status_code == 200 and m3u8.loads(r.text).playlists[0].uri == "camera/index.m3u8"

    # at renew_at the page asks again: a fresh prefix, while the first still plays until it expires
    renew = TODAY + timedelta(seconds=first["renew_at"] - now)
    monkeypatch.setattr("scheduler.clock.now", lambda: renew)
    second = link(client, auth, world.student, lesson).json()
    assert second["prefix"] != first["prefix"] and second["expires_at"] > first["expires_at"]
    for body in (first, second):
        assert client.get(body["prefix"] + "camera/index.m3u8").status_code == 200
    monkeypatch.setattr("scheduler.clock.now", lambda: renew + timedelta(seconds=first["expires_at"] - first["renew_at"] + 1))
    r = client.get(first["prefix"] + "camera/index.m3u8")
    assert r.status_code == 403 and r.json()["code"] == "link_expired"
    assert client.get(second["prefix"] + "camera/index.m3u8").status_code == 200


def test_the_links_lead_to_the_streams_origin_when_one_is_set(client: Any, world: Any, auth: Any,
                                                                settings: Any) -> None:
    sid = book(client, world, auth, kind="famous_school", title="名校语文", subject="语文", grade="五年级",
               participant_ids=[world.student.id])
    lesson = lessons(client, world.urban_admin, auth, series_id=sid, limit=1)["data"][0]["id"]
    settings.hls_base_url = "https://live.example.edu.cn/"
    body = link(client, auth, world.student, lesson).json()
    assert body["main_url"] == "https://live.example.edu.cn" + body["prefix"] + "main.m3u8"
    assert body["screen_url"] == "https://live.example.edu.cn" + body["prefix"] + "screen.m3u8"


def test_each_recording_of_the_lesson_takes_over_its_stream_link(client: Any, world: Any, auth: Any,
                                                               session_factory: Any, settings: Any) -> None:
    """A lesson recorded across a restart: the link leads to the newest recording's stream (nginx follows it)."""
    sid = book(client, world, auth, kind="famous_school", title="名校语文", subject="语文", grade="五年级",
               participant_ids=[world.student.id])
    lesson = lessons(client, world.urban_admin, auth, series_id=sid, limit=1)["data"][0]["id"]
    service = RecordingService(session_factory, settings)
    first = asyncio.run(service.begin(lesson))
    link = hls_files.lesson_link(settings.data_dir, lesson)
    assert link.is_symlink() and link.resolve() == Path(first["directory"]) / "hls"
    assert not os.path.isabs(os.readlink(link))  # relative: the data folder can move
    second = asyncio.run(service.begin(lesson))  # the server restarted mid-lesson
    assert second["id"] != first["id"] and link.resolve() == Path(second["directory"]) / "hls"
    (Path(second["directory"]) / "hls").mkdir(parents=True)  # the media worker writes it
    (Path(second["directory"]) / "hls" / "main.m3u8").write_text("#EXTM3U\n")
    body = client.post(f"/api/v1/lessons/{lesson}/hls-link", headers=auth(world.student)).json()
    assert body["started"] is True
    assert client.get(body["main_url"]).text == "#EXTM3U\n"

    # the retention deletes the recordings: the cleanup forgets the link, once it is a day old
    shutil.rmtree(settings.data_dir / "recordings" / str(lesson))
    assert service.cleanup() == [] and link.is_symlink()  # set a moment ago
    os.utime(link, (time.time() - 90000, time.time() - 90000), follow_symlinks=False)
    service.cleanup()
    assert not link.is_symlink()

    book(client, world, auth, weekday=3, recording=True)  # a dedicated lesson, recorded: no stream, no link
    dedicated = lessons(client, world.urban_admin, auth, kind="dedicated", limit=1)["data"][0]["id"]
    assert asyncio.run(service.begin(dedicated))["hls"] is False
    assert not hls_files.lesson_link(settings.data_dir, dedicated).is_symlink()


def test_with_several_nodes_the_links_lead_to_the_node_that_owns_the_room(
        app: Any, client: Any, world: Any, auth: Any, session_factory: Any) -> None:
    sid = book(client, world, auth, kind="famous_school", title="名校语文", subject="语文", grade="五年级",
               participant_ids=[world.student.id])
    lesson = lessons(client, world.urban_admin, auth, series_id=sid, limit=1)["data"][0]["id"]
    asked: list[int] = []

    class Cluster:  # the placement of a cluster whose node B owns the lesson's room
        clustered = True

        async def place(self, instance_id: int, weight: int) -> Placed:
            asked.append(instance_id)
            return Placed("node-b", "http://10.0.0.2:8000/", new=False, here=False)

    app.state.placement = Cluster()
    body = link(client, auth, world.student, lesson).json()
    assert asked == [] and body["main_url"] == body["prefix"] + "main.m3u8"  # the room is not open: no owner
    with session_factory() as s:
        s.get(LessonInstance, lesson).room_opened_at = TODAY
        s.commit()
    body = link(client, auth, world.student, lesson).json()
    assert asked == [lesson] and body["main_url"] == "http://10.0.0.2:8000" + body["prefix"] + "main.m3u8"
