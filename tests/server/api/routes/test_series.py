"""/series: booking through the API, 409 with a machine-readable conflict list, approval, roles."""

from __future__ import annotations


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
    assert first["starts_at"] == "2026-09-01T09:50:00" and first["teacher_name"] == "王老师"
    assert first["receivers"][0]["classroom_name"] == "石桥村小 一年级教室"


def test_double_booking_answers_409_with_conflict_list_and_zh_message(client, world, auth):
    assert client.post("/api/v1/series", json=body(world), headers=auth(world.urban_admin)).status_code == 201
    r = client.post("/api/v1/series", json=body(world, title="三年级科学", main_classroom_id=world.main_room2.id,
                                                receivers=[{"classroom_id": world.recv_room2.id}]),
                    headers=auth(world.urban_admin))
    assert r.status_code == 409
    err = r.json()
    assert err["code"] == "conflict"
    assert err["message"].startswith("排课冲突，共 20 处：教师“王老师”在 2026-09-01 09:50–10:30 已有课程《三年级数学》")
    c = err["conflicts"][0]
    assert c == {"resource": "teacher", "resource_id": world.teacher.id, "resource_name": "王老师",
                 "day": "2026-09-01", "start": "09:50", "end": "10:30", "instance_id": c["instance_id"],
                 "lesson_title": "三年级数学", "message": c["message"]}
    assert isinstance(c["instance_id"], int)


def test_check_endpoint_lists_conflicts_without_booking(client, world, auth):
    client.post("/api/v1/series", json=body(world), headers=auth(world.urban_admin))
    r = client.post("/api/v1/series/check", json=body(world, main_classroom_id=world.main_room2.id),
                    headers=auth(world.teacher))
    assert r.status_code == 200
    out = r.json()
    assert out["ok"] is False and out["instances"] == 20
    assert {c["resource"] for c in out["conflicts"]} == {"teacher", "classroom"}
    assert "发现" in out["message"]


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
