"""/research over HTTP: a 同课异构 activity set up by a researcher, its members invited to evaluate the lessons
they do not teach (the observer seat, the recording), the timestamped discussion, scores per lesson, who took
part, closing with an outcome, the CSV, and the teacher's development record counting it."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from scheduler import clock, recordings
from scheduler.access import scope_of
from scheduler.errors import Forbidden
from scheduler.joining import seat_for
from scheduler.models import InstanceStatus, LessonInstance, User
from scheduler.recordings_models import Recording, RecordingStatus
from tests.server.api.routes.helpers import assert_error
from tests.server.api.routes.test_lessons import book, lessons

R = "/api/v1/research"
P = "/api/v1/patrol"


def two_lessons(client, world, auth) -> tuple[int, int]:
    """The same topic on the same Monday: 王老师 in room 301 (period 1), 李老师 in room 302 (period 2)."""
    a = book(client, world, auth, title="分数的初步认识")
    b = book(client, world, auth, title="分数的初步认识", main_teacher_id=world.teacher2.id,
             main_classroom_id=world.main_room2.id, receivers=[{"classroom_id": world.recv_room2.id}], period_from=2)
    first = [lessons(client, world.urban_admin, auth, series_id=s, limit=1)["data"][0]["id"] for s in (a, b)]
    return first[0], first[1]


def held(session_factory, lid: int, *, recorded: bool = True) -> int | None:
    with session_factory() as s:
        inst = s.get(LessonInstance, lid)
        inst.status = InstanceStatus.held
        inst.room_opened_at = inst.starts_at - timedelta(minutes=5)
        inst.started_at = inst.starts_at
        inst.room_closed_at = inst.ends_at
        rid = None
        if recorded:
            row = Recording(instance_id=lid, status=RecordingStatus.ready, directory=f"rec/{lid}",
                            started_at=inst.starts_at - timedelta(seconds=30), ended_at=inst.ends_at,
                            duration_s=(inst.ends_at - inst.starts_at).total_seconds(), files=[])
            s.add(row)
            s.flush()
            rid = row.id
        s.commit()
    return rid


def rubric(client, world, auth) -> dict:
    r = client.post(f"{P}/rubrics", headers=auth(world.city_admin), json={
        "region_id": world.city.id, "name": "同课异构评价表",
        "items": [{"name": "目标达成", "max_score": 10}, {"name": "学生参与", "max_score": 10}]})
    assert r.status_code == 201, r.text
    return r.json()


def create(client, world, auth, la: int, lb: int, **kw):
    by = kw.pop("by", world.researcher_city)
    body = {"kind": "same_topic", "title": "分数教学同课异构", "topic": "分数的初步认识", "subject": "数学", "grade": "三年级",
            "instance_ids": [la, lb], "member_ids": [world.researcher_a.id, world.teacher_b.id]}
    body.update(kw)
    return client.post(f"{R}/activities", json=body, headers=auth(by))


def test_every_research_route_needs_a_login(client):
    for method, path in [("GET", "/activities"), ("POST", "/activities"), ("GET", "/activities/1"),
                         ("POST", "/activities/1/comments"), ("POST", "/activities/1/close"), ("GET", "/candidates")]:
        assert_error(client.request(method, R + path), 401, "not_authenticated")


def test_setting_up_a_same_topic_activity_checks_its_lessons_and_people(client, world, auth):
    la, lb = two_lessons(client, world, auth)
    same_teacher = lessons(client, world.urban_admin, auth, teacher_id=world.teacher.id, limit=2)["data"]
    assert_error(create(client, world, auth, same_teacher[0]["id"], same_teacher[1]["id"]), 422, "invalid")
    assert_error(client.post(f"{R}/activities", headers=auth(world.researcher_city), json={
        "kind": "same_topic", "title": "x", "topic": "x", "instance_ids": [la]}), 422, "invalid")
    assert_error(create(client, world, auth, la, la), 422, "invalid")
    for outsider in (world.student, world.terminal_main, world.urban_admin):
        assert_error(client.post(f"{R}/activities", headers=auth(outsider), json={
            "kind": "same_topic", "title": "x", "topic": "x", "instance_ids": [la, lb]}), 403, "forbidden")
    # a researcher of another district sees neither lesson
    r = client.post(f"{R}/activities", headers=auth(world.researcher_b), json={
        "kind": "same_topic", "title": "x", "topic": "x", "instance_ids": [la, lb]})
    assert_error(r, 403, "forbidden")
    # a researcher of 东区 cannot bring in 西区's researcher; the city's researcher can
    assert_error(client.post(f"{R}/activities", headers=auth(world.researcher_a), json={
        "kind": "same_topic", "title": "x", "topic": "x", "instance_ids": [la, lb],
        "member_ids": [world.researcher_b.id]}), 403, "forbidden")
    assert_error(create(client, world, auth, la, lb, member_ids=[world.student.id]), 422, "invalid")
    names = {c["name"] for c in client.get(f"{R}/candidates", headers=auth(world.researcher_city)).json()}
    assert {"东区教研员", "西区教研员", "王老师", "赵老师"} <= names and "小明" not in names
    assert {c["name"] for c in client.get(f"{R}/candidates", params={"q": "赵"},
                                          headers=auth(world.researcher_city)).json()} == {"赵老师"}
    # a (master) teacher may lead one within their school, and add their district's researcher
    r = client.post(f"{R}/activities", headers=auth(world.teacher), json={
        "kind": "observation", "title": "观课：分数", "topic": "分数", "instance_ids": [lb],
        "member_ids": [world.researcher_a.id]})
    assert r.status_code == 201, r.text
    assert {(m["name"], m["part"]) for m in r.json()["members"]} == {
        ("王老师", "organizer"), ("李老师", "teacher"), ("东区教研员", "participant")}


def test_a_same_topic_activity_from_watching_to_its_outcome(client, world, auth, session_factory):
    la, lb = two_lessons(client, world, auth)
    rid_a = held(session_factory, la)
    with session_factory() as s:  # 赵老师 of 西区 has neither the recording of A nor a seat in B before being invited
        zhao = s.get(User, world.teacher_b.id)
        try:
            recordings.require_recording(s, scope_of(s, zhao), rid_a)
        except Forbidden:
            pass
        else:
            raise AssertionError("a recording of another district without an invitation")
        try:
            seat_for(s, zhao, s.get(LessonInstance, lb))
        except Forbidden:
            pass
        else:
            raise AssertionError("a seat without an invitation")
    r = create(client, world, auth, la, lb)
    assert r.status_code == 201, r.text
    act = r.json()
    aid = act["id"]
    assert act["status"] == "open" and act["may_manage"] is True
    assert [(p["instance_id"], p["teacher_name"]) for p in act["lessons"]] == [(la, "王老师"), (lb, "李老师")]
    assert {(m["name"], m["part"]) for m in act["members"]} == {
        ("市教研员", "organizer"), ("王老师", "teacher"), ("李老师", "teacher"), ("东区教研员", "participant"),
        ("赵老师", "participant")}
    assert not any(m["took_part"] for m in act["members"])

    # each member may watch and score the lessons they do not teach, and only those
    with session_factory() as s:
        zhao = s.get(User, world.teacher_b.id)
        assert recordings.require_recording(s, scope_of(s, zhao), rid_a).id == rid_a
        assert seat_for(s, zhao, s.get(LessonInstance, lb)).lesson_role == "observer"
        wang = s.get(User, world.teacher.id)
        assert seat_for(s, wang, s.get(LessonInstance, lb)).lesson_role == "observer"
    view = client.get(f"{R}/activities/{aid}", headers=auth(world.teacher)).json()
    assert [p["may_evaluate"] for p in view["lessons"]] == [False, True]
    assert view["lessons"][0]["recording_id"] == rid_a and view["lessons"][1]["recording_id"] is None
    assert view["may_manage"] is False

    # the discussion: on lesson A at a replay time; on live lesson B stamped by the server
    r = client.post(f"{R}/activities/{aid}/comments", headers=auth(world.teacher_b),
                    json={"text": "导入用折纸，直观", "instance_id": la, "offset_s": 75.5})
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["author_name"] == "赵老师" and first["offset_s"] == 75.5
    with session_factory() as s:
        inst = s.get(LessonInstance, lb)
        inst.status = InstanceStatus.live
        inst.room_opened_at = clock.now() - timedelta(minutes=12)
        inst.started_at = clock.now() - timedelta(minutes=10)
        s.commit()
    r = client.post(f"{R}/activities/{aid}/comments", headers=auth(world.researcher_a),
                    json={"text": "=HYPERLINK(\"x\") 小组讨论充分", "instance_id": lb})
    assert r.status_code == 201 and r.json()["offset_s"] == 600.0
    assert_error(client.post(f"{R}/activities/{aid}/comments", headers=auth(world.teacher_b),
                             json={"text": "x", "instance_id": 999999}), 422, "invalid")
    assert_error(client.post(f"{R}/activities/{aid}/comments", headers=auth(world.teacher_b),
                             json={"text": "x", "instance_id": la, "offset_s": 99999}), 422, "invalid")
    assert_error(client.post(f"{R}/activities/{aid}/comments", headers=auth(world.teacher_b),
                             json={"text": "   "}), 422, "invalid")
    for outsider in (world.researcher_b, world.admin_b, world.assistant):
        assert_error(client.get(f"{R}/activities/{aid}", headers=auth(outsider)), 403, "forbidden")
        assert_error(client.post(f"{R}/activities/{aid}/comments", headers=auth(outsider), json={"text": "x"}),
                     403, "forbidden")
    later = client.get(f"{R}/activities/{aid}/comments", params={"after": first["id"]}, headers=auth(world.teacher)).json()
    assert [c["author_name"] for c in later] == ["东区教研员"]

    # scores: the members' evaluations of each lesson (the lesson's own teacher cannot score it)
    t = rubric(client, world, auth)
    a, b = (str(i["id"]) for i in t["items"])
    r = client.put(f"{P}/lessons/{la}/evaluation", headers=auth(world.teacher_b),
                   json={"mode": "replay", "template_id": t["id"], "scores": {a: 9, b: 8}, "comment": "结构清晰"})
    assert r.status_code == 200 and r.json()["total_score"] == 85.0, r.text
    r = client.put(f"{P}/lessons/{la}/evaluation", headers=auth(world.teacher2),
                   json={"mode": "replay", "template_id": t["id"], "scores": {a: 7, b: 8}})
    assert r.status_code == 200 and r.json()["total_score"] == 75.0, r.text
    assert_error(client.put(f"{P}/lessons/{la}/evaluation", headers=auth(world.teacher),
                            json={"mode": "replay", "template_id": t["id"], "scores": {a: 10, b: 10}}), 403, "forbidden")
    assert client.post(f"{R}/activities/{aid}/attend", headers=auth(world.teacher)).status_code == 204
    view = client.get(f"{R}/activities/{aid}", headers=auth(world.researcher_city)).json()
    assert [(p["evaluations"], p["average_score"]) for p in view["lessons"]] == [(2, 80.0), (0, None)]
    took = {m["name"]: (m["took_part"], m["comments"], m["scores"]) for m in view["members"]}
    assert took == {"市教研员": (False, 0, 0), "王老师": (True, 0, 0), "李老师": (True, 0, 1),
                    "东区教研员": (True, 1, 0), "赵老师": (True, 1, 1)}

    # listings: members and the region's overseers
    def listed(user, **params):
        return [x["id"] for x in client.get(f"{R}/activities", params=params, headers=auth(user)).json()["data"]]
    assert listed(world.teacher_b) == [aid] and listed(world.city_admin) == [aid] and listed(world.researcher_a) == [aid]
    assert listed(world.researcher_b) == [] and listed(world.admin_b) == [] and listed(world.teacher_b, status="closed") == []

    # closing: the organizer writes the outcome; the activity keeps what it was and takes nothing more
    assert_error(client.post(f"{R}/activities/{aid}/close", headers=auth(world.teacher), json={"outcome": "x"}),
                 403, "forbidden")
    r = client.post(f"{R}/activities/{aid}/close", headers=auth(world.researcher_city),
                    json={"outcome": "两节课均以操作导入；王老师的课学生参与更充分。"})
    assert r.status_code == 200 and r.json()["status"] == "closed" and r.json()["closed_at"] is not None
    assert_error(client.post(f"{R}/activities/{aid}/close", headers=auth(world.researcher_city),
                             json={"outcome": "x"}), 409, "invalid_state")
    assert_error(client.post(f"{R}/activities/{aid}/comments", headers=auth(world.teacher_b), json={"text": "补充"}),
                 409, "invalid_state")
    assert_error(client.post(f"{R}/activities/{aid}/members", headers=auth(world.researcher_city),
                             json={"user_ids": [world.researcher_b.id]}), 409, "invalid_state")
    assert listed(world.teacher_b, status="closed") == [aid]

    # the file: lessons with scores, members, the discussion (a formula stays text)
    r = client.get(f"{R}/activities/{aid}/export", headers=auth(world.teacher_b))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[1][:3] == ["活动", "分数教学同课异构", "同课异构"] and rows[1][8].startswith("两节课")
    assert ["课例", "分数的初步认识", "王老师"] == rows[2][:3] and rows[2][5:7] == ["2", "80.0"]
    discussion = [x for x in rows if x[0] == "研讨"]
    assert [(x[1], x[3]) for x in discussion] == [("赵老师", "01:15"), ("东区教研员", "10:00")]
    assert discussion[1][5].startswith("'=HYPERLINK")

    # the teachers' development records count it
    for teacher, part in ((world.teacher, "teacher"), (world.teacher_b, "participant")):
        rec = client.get(f"/api/v1/teachers/{teacher.id}/development-record", headers=auth(world.researcher_city),
                         params={"date_from": "2026-08-01", "date_to": "2026-08-31"}).json()["research"]
        assert [(x["id"], x["part"], x["took_part"]) for x in rec["activities"]] == [(aid, part, True)], teacher.username
    zhao = client.get(f"/api/v1/teachers/{world.teacher_b.id}/development-record", headers=auth(world.teacher_b),
                      params={"date_from": "2026-08-01", "date_to": "2026-08-31"}).json()["research"]
    assert (zhao["led"], zhao["taught"], zhao["attended"]) == (0, 0, 1)

