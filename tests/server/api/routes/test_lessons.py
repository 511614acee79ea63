"""/lessons: listings with filters, one-lesson changes, join tokens, start; roles and regions."""

from __future__ import annotations

import time

import jwt
import pytest

from server.core.security import decode_join_token
from tests.conftest import TEST_SECRET


def book(client, w, auth, **kw):
    b = {"kind": "dedicated", "title": "三年级数学", "subject": "数学", "grade": "三年级", "term_id": w.term.id,
         "main_classroom_id": w.main_room.id, "main_teacher_id": w.teacher.id, "weekday": 1, "period_from": 1,
         "receivers": [{"classroom_id": w.recv_room.id, "assistant_id": w.assistant.id}]}
    b.update(kw)
    r = client.post("/api/v1/series", json=b, headers=auth(w.urban_admin))
    assert r.status_code == 201, r.text
    return r.json()["id"]


def lessons(client, user, auth, **params):
    r = client.get("/api/v1/lessons", params=params, headers=auth(user))
    assert r.status_code == 200, r.text
    return r.json()


def test_filters_and_pagination(client, world, auth):
    sid = book(client, world, auth)
    book(client, world, auth, kind="master", title="名师语文", subject="语文", main_teacher_id=world.teacher2.id,
         main_classroom_id=world.main_room2.id, receivers=[{"classroom_id": world.recv_room2.id}], weekday=3)
    admin = world.urban_admin
    assert lessons(client, admin, auth)["count"] == 39
    page = lessons(client, admin, auth, limit=10, offset=10)
    assert len(page["data"]) == 10 and page["count"] == 39
    assert lessons(client, admin, auth, kind="master")["count"] == 20
    day = lessons(client, admin, auth, date_from="2026-09-07", date_to="2026-09-07")
    assert [d["title"] for d in day["data"]] == ["三年级数学"]
    assert lessons(client, admin, auth, teacher_id=world.teacher2.id)["count"] == 20
    assert lessons(client, admin, auth, classroom_id=world.recv_room.id)["count"] == 19
    assert lessons(client, world.city_admin, auth, school_id=world.rural.id)["count"] == 39
    assert lessons(client, admin, auth, region_id=world.district_a.id, series_id=sid)["count"] == 19


def test_scope_researchers_teachers_terminals_students(client, world, auth):
    book(client, world, auth)
    assert lessons(client, world.researcher_a, auth)["count"] == 19
    assert lessons(client, world.researcher_city, auth)["count"] == 19
    assert lessons(client, world.researcher_b, auth)["count"] == 0
    assert lessons(client, world.terminal_recv, auth)["count"] == 19
    assert lessons(client, world.student, auth)["count"] == 0
    assert lessons(client, world.teacher_b, auth)["count"] == 0
    r = client.get("/api/v1/lessons", params={"region_id": world.district_a.id}, headers=auth(world.researcher_b))
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    r = client.get("/api/v1/lessons", params={"school_id": world.urban.id}, headers=auth(world.admin_b))
    assert r.status_code == 403
    first = lessons(client, world.urban_admin, auth, limit=1)["data"][0]["id"]
    assert client.get(f"/api/v1/lessons/{first}", headers=auth(world.researcher_b)).status_code == 403
    assert client.get(f"/api/v1/lessons/{first}").status_code == 401


def test_reschedule_cancel_substitute_postpone_through_api(client, world, auth):
    book(client, world, auth)
    ids = [d["id"] for d in lessons(client, world.urban_admin, auth, limit=3)["data"]]
    h = auth(world.urban_admin)
    r = client.post(f"/api/v1/lessons/{ids[0]}/reschedule", json={"day": "2026-09-08", "period_from": 2,
                                                                 "reason": "教研活动"}, headers=h)
    assert r.status_code == 200 and r.json()["starts_at"] == "2026-09-08T08:50:00+08:00"
    assert r.json()["rescheduled_from_id"] == ids[0]
    old = client.get(f"/api/v1/lessons/{ids[0]}", headers=h).json()
    assert old["status"] == "cancelled" and "教研活动" in old["cancel_reason"]
    r = client.post(f"/api/v1/lessons/{ids[1]}/reschedule", json={"day": "2026-10-01", "reason": "x"}, headers=h)
    assert r.status_code == 409 and r.json()["conflicts"][0]["resource"] == "holiday"
    r = client.post(f"/api/v1/lessons/{ids[1]}/substitute", json={"teacher_id": world.teacher2.id, "reason": "病假"},
                    headers=h)
    assert r.status_code == 200 and r.json()["teacher_name"] == "李老师" and r.json()["substitute"] is True
    r = client.post(f"/api/v1/lessons/{ids[2]}/cancel", json={"reason": "运动会"}, headers=h)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    r = client.post(f"/api/v1/lessons/{ids[2]}/cancel", json={"reason": "again"}, headers=h)
    assert r.status_code == 409 and r.json()["code"] == "invalid_state"
    r = client.post(f"/api/v1/lessons/{ids[1]}/postpone", json={"reason": "停电"}, headers=h)
    assert r.status_code == 200
    r = client.post(f"/api/v1/lessons/{ids[1]}/cancel", json={"reason": ""}, headers=h)
    assert r.status_code == 422
    # roles and regions
    nxt = lessons(client, world.urban_admin, auth, limit=1, status="scheduled")["data"][0]["id"]
    for who in (world.teacher, world.researcher_a, world.terminal_main, world.admin_b, world.rural_admin):
        r = client.post(f"/api/v1/lessons/{nxt}/cancel", json={"reason": "x"}, headers=auth(who))
        assert r.status_code == 403, who.username
    trail = client.get("/api/v1/audit", params={"entity": "instance", "entity_id": ids[0]}, headers=h).json()
    assert [(e["action"], e["reason"]) for e in trail] == [("reschedule", "教研活动")]


@pytest.mark.parametrize("who,role,room", [
    ("teacher", "main", "main_room"), ("terminal_main", "main", "main_room"),
    ("terminal_recv", "receiving", "recv_room"), ("assistant", "receiving", "recv_room"),
    ("researcher_a", "observer", None), ("researcher_city", "observer", None),
])
def test_join_token_binds_user_lesson_and_role(client, world, auth, who, role, room):
    book(client, world, auth)
    lid = lessons(client, world.urban_admin, auth, limit=1)["data"][0]["id"]
    user = getattr(world, who)
    r = client.post(f"/api/v1/lessons/{lid}/join-token", headers=auth(user))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["lesson_role"] == role
    claims = decode_join_token(out["token"], TEST_SECRET)
    assert (claims.user_id, claims.instance_id, claims.lesson_role) == (user.id, lid, role)
    assert claims.classroom_id == (getattr(world, room).id if room else None)
    assert 0 < claims.expires_at - time.time() <= 120
    assert out["ws_url"] is None and out["node_id"] is None  # one node: connect to the server asked


def test_join_token_refused_to_people_not_booked(client, world, auth):
    book(client, world, auth)
    lid = lessons(client, world.urban_admin, auth, limit=1)["data"][0]["id"]
    for who in (world.teacher2, world.researcher_b, world.student, world.urban_admin, world.teacher_b):
        r = client.post(f"/api/v1/lessons/{lid}/join-token", headers=auth(who))
        assert r.status_code == 403 and r.json()["message"] == "您没有被安排参加该课次", who.username
    assert client.post(f"/api/v1/lessons/{lid}/join-token").status_code == 401


def test_famous_school_home_student_gets_student_seat(client, world, auth):
    book(client, world, auth, kind="famous_school", title="名校英语", subject="英语", receivers=[],
         participant_ids=[world.student.id])
    lid = lessons(client, world.student, auth, limit=1)["data"][0]["id"]
    out = client.post(f"/api/v1/lessons/{lid}/join-token", headers=auth(world.student)).json()
    assert out["lesson_role"] == "student" and out["room_open"] is False


def test_forged_and_expired_tokens_are_refused(client, world, auth):
    forged = jwt.encode({"sub": str(world.urban_admin.id), "typ": "access", "exp": int(time.time()) + 60},
                        "another-key-another-key-another-key-0123", "HS256")
    r = client.get("/api/v1/lessons", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401 and r.json()["code"] == "token_invalid"
    expired = jwt.encode({"sub": str(world.urban_admin.id), "typ": "access", "exp": int(time.time()) - 5},
                         TEST_SECRET, "HS256")
    r = client.get("/api/v1/lessons", headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401 and r.json()["code"] == "token_expired"
    join_as_access = jwt.encode({"sub": str(world.urban_admin.id), "typ": "join", "exp": int(time.time()) + 60},
                                TEST_SECRET, "HS256")
    assert client.get("/api/v1/lessons", headers={"Authorization": f"Bearer {join_as_access}"}).status_code == 401
