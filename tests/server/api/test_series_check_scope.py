"""A booking check (and the booking) shows another school's timetable only as far as the caller may read it.

A teacher of 东区实验小学, naming a 西区 classroom as a receiver or a 西区 teacher as an assistant, got the
clashing lessons' titles, times, ids and teachers from ``POST /series/check``, though ``GET`` of that
classroom and that teacher's feed answer 403.  The verdict stays the booking's (a clash is a clash); a
clash with a lesson the caller may not see says only that the resource is taken during the requested time.
"""

from __future__ import annotations

from typing import Any

from scheduler.models import Classroom

SECRET = "西区保密课程"


def _theirs(client: Any, world: Any, auth: Any, session: Any) -> dict[str, Any]:
    """西区第一小学 books a lesson, Tuesdays period 3, with 赵老师 into 山口村小's classroom."""
    room = Classroom(school_id=world.urban_b.id, name="西区一小 主讲教室", capacity=40)
    session.add(room)
    session.commit()
    r = client.post("/api/v1/series", headers=auth(world.admin_b), json={
        "kind": "dedicated", "title": SECRET, "subject": "数学", "grade": "三年级", "term_id": world.term.id,
        "main_classroom_id": room.id, "main_teacher_id": world.teacher_b.id, "weekday": 2, "period_from": 3,
        "receivers": [{"classroom_id": world.recv_room_b.id}]})
    assert r.status_code == 201, r.text
    lessons = client.get("/api/v1/lessons", params={"series_id": r.json()["id"], "limit": 500},
                         headers=auth(world.admin_b)).json()["data"]
    return {"series": r.json()["id"], "lessons": {str(x["id"]) for x in lessons}, "starts": {x["starts_at"] for x in lessons}}


def _request(world: Any, **kw: Any) -> dict[str, Any]:
    b = {"kind": "master", "title": "名师数学", "subject": "数学", "grade": "三年级", "term_id": world.term.id,
         "main_classroom_id": world.main_room.id, "main_teacher_id": world.teacher.id, "weekday": 2,
         "period_from": 3, "receivers": [{"classroom_id": world.recv_room.id}]}
    return {**b, **kw}


def test_a_check_naming_another_schools_room_or_teacher_does_not_read_their_timetable(
        client: Any, world: Any, auth: Any, session: Any) -> None:
    theirs = _theirs(client, world, auth, session)
    me = auth(world.teacher)
    # what the teacher may not read directly
    assert client.get(f"/api/v1/classrooms/{world.recv_room_b.id}", headers=me).status_code == 403
    assert client.get(f"/api/v1/timetable/teachers/{world.teacher_b.id}.ics", headers=me).status_code == 403
    assert client.get(f"/api/v1/series/{theirs['series']}", headers=me).status_code == 403

    probes = {
        "their receiving classroom": _request(world, receivers=[{"classroom_id": world.recv_room_b.id}]),
        "their teacher as an assistant": _request(world, receivers=[
            {"classroom_id": world.recv_room.id, "assistant_id": world.teacher_b.id}]),
    }
    for name, request in probes.items():
        check = client.post("/api/v1/series/check", json=request, headers=me)
        booking = client.post("/api/v1/series", json=request, headers=me)
        assert check.status_code == 200, (name, check.text)
        verdict = check.json()
        # still refused, as the booking is: the slot is taken
        assert (verdict["ok"], verdict["code"], verdict["status"]) == (False, "conflict", 409), (name, verdict)
        assert booking.status_code == 409 and booking.json()["conflicts"] == verdict["conflicts"], name
        assert len(verdict["conflicts"]) == len(theirs["lessons"]) > 0, name
        for text in (check.text, booking.text):
            assert SECRET not in text, name
            assert "赵老师" not in text or name == "their teacher as an assistant"  # the one they named
        for c in verdict["conflicts"]:
            assert c["kind"] == "clash" and "已被占用" in c["message"], (name, c)
            assert (c["instance_id"], c["lesson_title"], c["series_id"], c["teacher_name"]) == (None,) * 4, (name, c)
            assert (c["period_from"], c["period_to"], c["role"]) == (None, None, None), (name, c)
            # the requested slot's times (Tuesday period 3 in 东区实验小学's bells), not their lesson's
            assert (c["start"], c["end"]) == ("09:50", "10:30"), (name, c)
        assert not theirs["lessons"] & {str(c["instance_id"]) for c in verdict["conflicts"]}


def test_a_clash_the_caller_may_see_is_still_named(client: Any, world: Any, auth: Any) -> None:
    r = client.post("/api/v1/series", json=_request(world, title="已排的数学"), headers=auth(world.urban_admin))
    assert r.status_code == 201, r.text
    verdict = client.post("/api/v1/series/check", json=_request(world, main_classroom_id=world.main_room2.id),
                          headers=auth(world.teacher)).json()
    assert verdict["ok"] is False and verdict["conflicts"]
    c = verdict["conflicts"][0]
    assert c["lesson_title"] == "已排的数学" and c["instance_id"] is not None and "《已排的数学》" in c["message"]


def test_a_substitute_from_another_school_does_not_read_their_timetable(
        client: Any, world: Any, auth: Any, session: Any) -> None:
    theirs = _theirs(client, world, auth, session)
    admin = auth(world.urban_admin)
    r = client.post("/api/v1/series", json=_request(world, title="已排的数学"), headers=admin)
    assert r.status_code == 201, r.text
    lesson = client.get("/api/v1/lessons", params={"series_id": r.json()["id"], "limit": 1}, headers=admin).json()
    r = client.post(f"/api/v1/lessons/{lesson['data'][0]['id']}/substitute",
                    json={"teacher_id": world.teacher_b.id, "reason": "病假"}, headers=admin)
    assert r.status_code == 409 and r.json()["code"] == "conflict", r.text
    assert SECRET not in r.text
    (c,) = r.json()["conflicts"]
    assert (c["instance_id"], c["lesson_title"], c["series_id"]) == (None, None, None) and "已被占用" in c["message"]
    assert str(c["instance_id"]) not in theirs["lessons"]
