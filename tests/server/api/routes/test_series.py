"""/series: booking through the API, 409 with a machine-readable conflict list, approval, roles."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from scheduler.models import PeriodScheme


def body(w, **kw):
    b = {"kind": "dedicated", "title": "三年级数学", "subject": "数学", "grade": "三年级", "term_id": w.term.id,
         "main_classroom_id": w.main_room.id, "main_teacher_id": w.teacher.id, "weekday": 2, "period_from": 3,
         "receivers": [{"classroom_id": w.recv_room.id, "assistant_id": w.assistant.id}]}
    b.update(kw)
    return b


def test_admin_books_a_series_and_gets_its_instances(client, world, auth):
    r = client.post("/api/v1/series", json=body(world), headers=auth(world.urban_admin))
    assert r.status_code == 201, r.text
    data = r.json()
    assert data["status"] == "approved" and data["instance_count"] == 20
    lessons = client.get("/api/v1/lessons", params={"series_id": data["id"], "limit": 5},
                         headers=auth(world.urban_admin)).json()
    assert lessons["count"] == 20
    first = lessons["data"][0]
    assert first["starts_at"] == "2026-09-01T09:50:00+08:00" and first["teacher_name"] == "王老师"
    assert first["receivers"][0]["classroom_name"] == "石桥村小 一年级教室"


def test_double_booking_answers_409_with_conflict_list_and_zh_message(client, world, auth):
    assert client.post("/api/v1/series", json=body(world), headers=auth(world.urban_admin)).status_code == 201
    r = client.post("/api/v1/series", json=body(world, title="三年级科学", main_classroom_id=world.main_room2.id,
                                                receivers=[{"classroom_id": world.recv_room2.id}]),
                    headers=auth(world.urban_admin))
    assert r.status_code == 409
    err = r.json()
    assert err["code"] == "conflict"
    assert err["message"] == ("排课冲突，共 20 处：每周二 第3节 09:50–10:30，第1–5、7–21周，共20次："
                              "教师“王老师”已有课程《三年级数学》")
    c = err["conflicts"][0]
    assert c == {"resource": "teacher", "resource_id": world.teacher.id, "resource_name": "王老师",
                 "day": "2026-09-01", "start": "09:50", "end": "10:30", "instance_id": c["instance_id"],
                 "lesson_title": "三年级数学", "message": "教师“王老师”在 2026-09-01 09:50–10:30 已有课程《三年级数学》",
                 "kind": "clash", "school_name": None, "role": "main", "teacher_name": "王老师",
                 "series_id": c["series_id"], "period_from": 3, "period_to": 3, "week": 1}
    assert isinstance(c["instance_id"], int)
    assert len(err["conflicts"]) == 20
    (g,) = err["conflict_groups"]
    assert g["count"] == 20 and g["weekday"] == 2 and g["weeks"] == [1, 2, 3, 4, 5, *range(7, 22)]
    assert g["dates"][:2] == ["2026-09-01", "2026-09-08"] and len(g["instance_ids"]) == 20
    assert g["message"] == "每周二 第3节 09:50–10:30，第1–5、7–21周，共20次：教师“王老师”已有课程《三年级数学》"


def test_check_endpoint_lists_conflicts_without_booking(client, world, auth):
    client.post("/api/v1/series", json=body(world), headers=auth(world.urban_admin))
    r = client.post("/api/v1/series/check", json=body(world, main_classroom_id=world.main_room2.id),
                    headers=auth(world.teacher))
    assert r.status_code == 200
    out = r.json()
    assert out["ok"] is False and out["code"] == "conflict" and out["status"] == 409
    assert {c["resource"] for c in out["conflicts"]} == {"teacher", "classroom"}
    assert out["message"] == (
        "排课冲突，共 60 处："
        "每周二 第3节 09:50–10:30，第1–5、7–21周，共20次：接收教室“石桥村小 一年级教室”（东区石桥村小）已有课程《三年级数学》（王老师）；"
        "每周二 第3节 09:50–10:30，第1–5、7–21周，共20次：教师“王老师”已有课程《三年级数学》；"
        "每周二 第3节 09:50–10:30，第1–5、7–21周，共20次：教师“刘助教”（助教）已有课程《三年级数学》（王老师）")
    assert [g["count"] for g in out["conflict_groups"]] == [20, 20, 20]


def test_teacher_request_is_pending_until_school_admin_approves(client, world, auth):
    r = client.post("/api/v1/series", json=body(world), headers=auth(world.teacher))
    assert r.status_code == 201 and r.json()["status"] == "pending" and r.json()["instance_count"] == 0
    sid = r.json()["id"]
    assert client.post(f"/api/v1/series/{sid}/approve", json={}, headers=auth(world.admin_b)).status_code == 403
    assert client.post(f"/api/v1/series/{sid}/approve", json={}, headers=auth(world.teacher)).status_code == 403
    r = client.post(f"/api/v1/series/{sid}/approve", json={"reason": "同意"}, headers=auth(world.urban_admin))
    assert r.status_code == 200 and r.json()["status"] == "approved" and r.json()["instance_count"] == 20
    trail = client.get("/api/v1/audit", params={"entity": "series", "entity_id": sid},
                       headers=auth(world.urban_admin)).json()
    assert [(e["action"], e["actor_name"]) for e in trail] == [("request", "王老师"), ("approve", "实验小学教务")]


def test_teacher_cannot_book_for_another_teacher(client, world, auth):
    r = client.post("/api/v1/series", json=body(world, main_teacher_id=world.teacher2.id), headers=auth(world.teacher))
    assert r.status_code == 403 and r.json()["code"] == "forbidden"


def test_invalid_input_gets_422_with_zh_message(client, world, auth):
    r = client.post("/api/v1/series", json=body(world, weekday=9), headers=auth(world.urban_admin))
    assert r.status_code == 422 and r.json()["code"] == "validation_error" and "weekday" in r.json()["message"]
    r = client.post("/api/v1/series", json=body(world, period_from=12), headers=auth(world.urban_admin))
    assert r.status_code == 422 and "没有第 12 节" in r.json()["message"]


def test_series_router_requires_login_and_right_role_and_region(client, world, auth):
    assert client.get("/api/v1/series").status_code == 401
    assert client.post("/api/v1/series", json=body(world)).status_code == 401
    assert client.post("/api/v1/series", json=body(world), headers=auth(world.student)).status_code == 403
    assert client.post("/api/v1/series", json=body(world), headers=auth(world.terminal_main)).status_code == 403
    assert client.get("/api/v1/series", headers=auth(world.student)).status_code == 403
    # an admin of a school in another district cannot book district A's classroom
    r = client.post("/api/v1/series", json=body(world), headers=auth(world.admin_b))
    assert r.status_code == 403
    sid = client.post("/api/v1/series", json=body(world), headers=auth(world.urban_admin)).json()["id"]
    assert client.get(f"/api/v1/series/{sid}", headers=auth(world.researcher_b)).status_code == 403
    assert client.get(f"/api/v1/series/{sid}", headers=auth(world.researcher_a)).status_code == 200
    assert client.get("/api/v1/series", headers=auth(world.researcher_b)).json()["count"] == 0
    assert client.get("/api/v1/series", headers=auth(world.researcher_city)).json()["count"] == 1


def test_a_receiving_school_whose_bells_do_not_cover_the_slot_is_listed_as_a_conflict(client, world, auth, session):
    scheme = session.scalar(select(PeriodScheme).where(PeriodScheme.school_id == world.rural.id))
    p3 = next(p for p in scheme.periods if p.number == 3)
    p3.start_time = p3.start_time.replace(hour=9, minute=55)  # rural period 3 now starts after the urban 09:50
    session.commit()
    r = client.post("/api/v1/series", json=body(world), headers=auth(world.urban_admin))
    assert r.status_code == 422
    err = r.json()
    (c,) = err["conflicts"]
    assert (c["kind"], c["resource"], c["resource_id"], c["school_name"]) == (
        "bells", "classroom", world.recv_room.id, "东区石桥村小")
    assert c["message"] == err["message"] and "09:50–10:30" in c["message"]
    assert err["conflict_groups"][0]["message"] == c["message"]


# Each way booking can refuse a series: (who asks, what changes in the request, what is set up before).
def _clash(client, w, auth):
    assert client.post("/api/v1/series", json=body(w), headers=auth(w.urban_admin)).status_code == 201
    return {"main_classroom_id": w.main_room2.id, "receivers": [{"classroom_id": w.recv_room2.id}]}


def _bells(client, w, auth, session):
    scheme = session.scalar(select(PeriodScheme).where(PeriodScheme.school_id == w.rural.id))
    next(p for p in scheme.periods if p.number == 3).start_time = scheme.periods[2].start_time.replace(minute=55)
    session.commit()
    return {}


REFUSALS = {
    "clash with a booked lesson": ("urban_admin", _clash),
    "the booking holds its teacher twice": ("urban_admin", lambda c, w, a: {
        "receivers": [{"classroom_id": w.recv_room.id, "assistant_id": w.teacher.id}]}),
    "unpaired schools (teacher)": ("teacher", lambda c, w, a: {"receivers": [{"classroom_id": w.recv_room_b.id}]}),
    "unpaired schools (admin, no reason)": ("sysadmin", lambda c, w, a: {
        "receivers": [{"classroom_id": w.recv_room_b.id}]}),
    "unpaired subject": ("sysadmin", lambda c, w, a: {
        "main_classroom_id": w.extra["room_b"], "main_teacher_id": w.teacher_b.id, "subject": "英语",
        "receivers": [{"classroom_id": w.recv_room_b.id}]}),
    "bells do not cover the slot": ("urban_admin", _bells),
    "dedicated without receivers": ("urban_admin", lambda c, w, a: {"receivers": []}),
    "weeks reversed": ("urban_admin", lambda c, w, a: {"week_from": 5, "week_to": 2}),
    "weeks outside the term": ("urban_admin", lambda c, w, a: {"week_from": 40, "week_to": 45}),
    "no such period": ("urban_admin", lambda c, w, a: {"period_from": 12}),
    "main teacher is not a teacher": ("urban_admin", lambda c, w, a: {"main_teacher_id": w.urban_admin.id}),
    "assistant is not a teacher": ("urban_admin", lambda c, w, a: {
        "receivers": [{"classroom_id": w.recv_room.id, "assistant_id": w.student.id}]}),
    "no such receiving classroom": ("urban_admin", lambda c, w, a: {"receivers": [{"classroom_id": 999999}]}),
    "receiver listed twice": ("urban_admin", lambda c, w, a: {
        "receivers": [{"classroom_id": w.recv_room.id}, {"classroom_id": w.recv_room.id}]}),
    "main classroom as receiver": ("urban_admin", lambda c, w, a: {"receivers": [{"classroom_id": w.main_room.id}]}),
    "participants in a dedicated lesson": ("urban_admin", lambda c, w, a: {"participant_ids": [w.teacher2.id]}),
    "teacher books for another teacher": ("teacher", lambda c, w, a: {"main_teacher_id": w.teacher2.id}),
    "teacher books another school's classroom": ("teacher_b", lambda c, w, a: {"main_teacher_id": w.teacher_b.id}),
    "admin of another district": ("admin_b", lambda c, w, a: {}),
    "researcher": ("researcher_a", lambda c, w, a: {}),
}


@pytest.mark.parametrize("reason", list(REFUSALS))
def test_check_gives_the_verdict_booking_gives_for_every_refusal(client, world, auth, session, reason):
    from scheduler.models import Classroom
    room_b = Classroom(school_id=world.urban_b.id, name="西区一小 主讲教室", capacity=40)
    session.add(room_b)
    session.commit()
    world.extra["room_b"] = room_b.id
    who, setup = REFUSALS[reason]
    actor = getattr(world, who)
    change = setup(client, world, auth, session) if setup is _bells else setup(client, world, auth)
    request = body(world, **change)
    before = client.get("/api/v1/series", headers=auth(world.sysadmin)).json()["count"]

    check = client.post("/api/v1/series/check", json=request, headers=auth(actor))
    booking = client.post("/api/v1/series", json=request, headers=auth(actor))

    assert check.status_code == 200, check.text
    verdict, refusal = check.json(), booking.json()
    assert booking.status_code in (403, 404, 409, 422), booking.text
    assert verdict["ok"] is False
    assert (verdict["status"], verdict["code"], verdict["message"]) == (
        booking.status_code, refusal["code"], refusal["message"])
    assert verdict["conflicts"] == refusal.get("conflicts", [])
    assert verdict["conflict_groups"] == refusal.get("conflict_groups", [])
    assert client.get("/api/v1/series", headers=auth(world.sysadmin)).json()["count"] == before


def test_check_says_ok_exactly_when_booking_succeeds(client, world, auth):
    for actor, status in ((world.teacher, "pending"), (world.urban_admin, "approved")):
        check = client.post("/api/v1/series/check", json=body(world), headers=auth(actor)).json()
        assert check["ok"] is True and check["instances"] == 20 and check["conflicts"] == []
        assert check["message"].startswith("没有冲突，可以排课：共 20 节")
        r = client.post("/api/v1/series", json=body(world), headers=auth(actor))
        assert r.status_code == 201 and r.json()["status"] == status


def test_a_rejected_or_cancelled_series_says_why_who_and_when(client, world, auth):
    sid = client.post("/api/v1/series", json=body(world), headers=auth(world.teacher)).json()["id"]
    assert client.get(f"/api/v1/series/{sid}", headers=auth(world.teacher)).json()["decision_reason"] is None
    r = client.post(f"/api/v1/series/{sid}/reject", json={"reason": "该时段教室已安排教研"},
                    headers=auth(world.urban_admin))
    assert r.status_code == 200
    mine = client.get("/api/v1/series", params={"teacher_id": world.teacher.id, "status": "rejected"},
                      headers=auth(world.teacher)).json()["data"]
    assert [(s["id"], s["decision_reason"], s["decided_by_name"]) for s in mine] == [
        (sid, "该时段教室已安排教研", "实验小学教务")]
    assert mine[0]["decided_at"] and mine[0]["can_manage"] is False
    booked = client.post("/api/v1/series", json=body(world), headers=auth(world.urban_admin)).json()
    assert booked["can_manage"] is True and booked["main_school_name"] == "东区实验小学"
    out = client.post(f"/api/v1/series/{booked['id']}/cancel", json={"reason": "教师调离"},
                      headers=auth(world.urban_admin)).json()
    assert (out["status"], out["decision_reason"]) == ("cancelled", "教师调离")


def test_the_approval_queue_lists_only_series_the_caller_may_decide(client, world, auth):
    sid = client.post("/api/v1/series", json=body(world), headers=auth(world.teacher)).json()["id"]
    queue = {"status": "pending", "manageable": "true"}
    for admin, expected in ((world.urban_admin, [sid]), (world.city_admin, [sid]), (world.sysadmin, [sid]),
                            (world.rural_admin, []), (world.admin_b, [])):
        got = client.get("/api/v1/series", params=queue, headers=auth(admin)).json()["data"]
        assert [s["id"] for s in got] == expected, admin.username
    # the receiving school's admin still sees it among its series, but may not decide it
    (seen,) = client.get("/api/v1/series", params={"status": "pending"}, headers=auth(world.rural_admin)).json()["data"]
    assert seen["can_manage"] is False
    assert client.get("/api/v1/series", params=queue, headers=auth(world.teacher)).json()["data"] == []
