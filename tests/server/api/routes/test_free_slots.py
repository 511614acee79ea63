"""/pairings/{id}/free-slots and /demand-orders/{id}/free-slots: proposals, booking one, roles."""

from __future__ import annotations

from tests.server.api.routes.helpers import API, assert_error


def _params(w, **kw):
    p = {"subject": "数学", "term_id": w.term.id, "teacher_id": w.teacher.id, "main_classroom_id": w.main_room.id,
         "receiver_ids": [w.recv_room.id], "weeks": "6-9"}
    p.update(kw)
    return p


def _series(w, **kw):
    b = {"kind": "dedicated", "title": "三年级数学", "subject": "数学", "grade": "三年级", "term_id": w.term.id,
         "main_classroom_id": w.main_room.id, "main_teacher_id": w.teacher.id, "weekday": 4, "period_from": 1,
         "receivers": [{"classroom_id": w.recv_room.id}]}
    b.update(kw)
    return b


def test_free_slots_of_a_pairing_rank_and_name_exceptions_then_one_books(client, world, auth):
    admin = auth(world.urban_admin)
    # 王老师 already teaches Thursday period 1 in week 7 (another classroom, another lesson)
    r = client.post(f"{API}/series", json=_series(world, kind="master", title="三年级奥数",
                                                  main_classroom_id=world.main_room2.id, receivers=[],
                                                  week_from=7, week_to=7), headers=admin)
    assert r.status_code == 201, r.text
    r = client.get(f"{API}/pairings/{world.pairing.id}/free-slots", params=_params(world), headers=admin)
    assert r.status_code == 200, r.text
    found = r.json()
    assert (found["week_from"], found["week_to"], found["candidates"]) == (6, 9, 35)
    best = found["data"][0]
    assert (best["weekday"], best["period_from"], best["label"]) == (4, 2, "每周四 第2节 08:50–09:30")
    assert best["bookable"] and best["exceptions"] == [] and best["lessons"] == 4
    assert best["receiving"] == [{"classroom_id": world.recv_room.id, "classroom_name": "石桥村小 一年级教室",
                                  "school_name": "东区石桥村小", "period_from": 2, "period_to": 2,
                                  "start": "08:45", "end": "09:35"}]
    thu1 = found["data"][-1]
    assert (thu1["weekday"], thu1["period_from"], thu1["clash_weeks"], thu1["bookable"]) == (4, 1, 1, False)
    (e,) = thu1["exceptions"]
    assert (e["week"], e["day"], e["kind"]) == (7, "2026-10-15", "clash")
    assert e["message"] == "第7周 10-15（周四）：教师“王老师”已有课程《三年级奥数》"
    assert e["conflicts"][0]["lesson_title"] == "三年级奥数"
    mon = next(p for p in found["data"] if p["weekday"] == 1)
    assert [(x["week"], x["kind"]) for x in mon["exceptions"]] == [(6, "holiday")]

    # one click: the proposal's booking body plus a title and grade, through POST /series
    body = {**best["booking"], "title": "三年级数学", "grade": "三年级"}
    r = client.post(f"{API}/series", json=body, headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["instance_count"] == 4 and r.json()["status"] == "approved"
    assert_error(client.post(f"{API}/series", json=body, headers=admin), 409, "conflict")
    again = client.get(f"{API}/pairings/{world.pairing.id}/free-slots", params=_params(world), headers=admin).json()
    taken = next(p for p in again["data"] if (p["weekday"], p["period_from"]) == (4, 2))
    assert taken["clash_weeks"] == 4 and not taken["bookable"]
    assert taken["skip_weeks"] == [6, 7, 8, 9] and taken["lessons_skipping"] == 0


def test_a_slot_taken_in_some_weeks_books_around_them(client, world, auth):
    """Thursday period 1 is free except in week 7: one click books weeks 6, 8 and 9 (week 7 has no lesson),
    and the series remembers it when a teacher's request is approved later."""
    admin = auth(world.urban_admin)
    r = client.post(f"{API}/series", json=_series(world, kind="master", title="三年级奥数",
                                                  main_classroom_id=world.main_room2.id, receivers=[],
                                                  week_from=7, week_to=7), headers=admin)
    assert r.status_code == 201, r.text
    found = client.get(f"{API}/pairings/{world.pairing.id}/free-slots", params=_params(world), headers=admin).json()
    thu1 = next(p for p in found["data"] if (p["weekday"], p["period_from"]) == (4, 1))
    assert (thu1["skip_weeks"], thu1["lessons"], thu1["lessons_skipping"]) == ([7], 4, 3)
    assert thu1["booking"]["skip_weeks"] == [7]
    # the teacher asks for it (a request), the school's admin approves: the week is still skipped
    r = client.post(f"{API}/series", json={**thu1["booking"], "title": "三年级数学", "grade": "三年级"},
                    headers=auth(world.teacher))
    assert r.status_code == 201 and r.json()["status"] == "pending", r.text
    sid = r.json()["id"]
    assert r.json()["skip_weeks"] == [7]
    r = client.post(f"{API}/series/{sid}/approve", json={}, headers=admin)
    assert r.status_code == 200, r.text
    days = [x["day"] for x in client.get(f"{API}/lessons", params={"series_id": sid}, headers=admin).json()["data"]]
    assert days == ["2026-10-08", "2026-10-22", "2026-10-29"]  # weeks 6, 8, 9 (week 7 is 10-15)
    # weeks outside the range are refused; a week list that leaves no lesson too
    bad = {**thu1["booking"], "title": "x", "grade": "三年级", "skip_weeks": [12]}
    assert_error(client.post(f"{API}/series", json=bad, headers=admin), 422, "invalid")
    none_left = {**thu1["booking"], "title": "x", "grade": "三年级", "period_from": 3, "period_to": 3,
                 "skip_weeks": [6, 7, 8, 9]}
    assert_error(client.post(f"{API}/series", json=none_left, headers=admin), 422, "invalid")


def test_free_slots_roles_are_the_booking_roles(client, world, auth):
    url = f"{API}/pairings/{world.pairing.id}/free-slots"
    assert_error(client.get(url, params=_params(world), headers=auth(world.researcher_a)), 403, "forbidden")
    assert_error(client.get(url, params=_params(world), headers=auth(world.admin_b)), 403, "forbidden")
    assert_error(client.get(url, params=_params(world), headers=auth(world.teacher2)), 403, "forbidden")
    assert client.get(url, params=_params(world), headers=auth(world.student)).status_code == 403
    assert client.get(url, params=_params(world)).status_code == 401
    assert client.get(url, params=_params(world), headers=auth(world.teacher)).status_code == 200
    assert client.get(url, params=_params(world), headers=auth(world.city_admin)).status_code == 200
    assert_error(client.get(url, params=_params(world, weeks="九"), headers=auth(world.urban_admin)), 422,
                 "invalid")
    assert_error(client.get(f"{API}/pairings/999999/free-slots", params=_params(world),
                            headers=auth(world.urban_admin)), 404, "not_found")


def test_free_slots_for_a_demand_order_put_its_preferred_slots_first(client, world, auth):
    r = client.post(f"{API}/demand-orders", json={
        "term_id": world.term.id, "subject": "美术", "grade": "二年级", "receiving_classroom_id": world.recv_room2.id,
        "preferred_slots": [{"weekday": 3, "period": 5}]}, headers=auth(world.rural_admin))
    assert r.status_code == 201, r.text
    order = r.json()["id"]
    url = f"{API}/demand-orders/{order}/free-slots"
    params = {"teacher_id": world.teacher2.id, "main_classroom_id": world.main_room2.id, "weeks": "10-12"}
    r = client.get(url, params=params, headers=auth(world.urban_admin))
    assert r.status_code == 200, r.text
    first = r.json()["data"][0]
    assert (first["weekday"], first["period_from"], first["preferred"]) == (3, 5, True)
    assert first["receiving"][0]["classroom_id"] == world.recv_room2.id
    # answering it is an offer with the proposal's slot
    r = client.post(f"{API}/demand-orders/{order}/offers", json=first["offer"], headers=auth(world.urban_admin))
    assert r.status_code == 201, r.text
    assert (r.json()["weekday"], r.json()["period_from"]) == (3, 5)
    assert_error(client.get(url, params=params, headers=auth(world.researcher_a)), 403, "forbidden")
    assert_error(client.get(url, params={**params, "teacher_id": world.teacher.id}, headers=auth(world.teacher2)),
                 403, "forbidden")


def test_free_slots_need_a_teacher_that_exists(client, world, auth):
    r = client.get(f"{API}/pairings/{world.pairing.id}/free-slots", params=_params(world, teacher_id=999999),
                   headers=auth(world.urban_admin))
    assert_error(r, 404, "not_found")
    r = client.get(f"{API}/pairings/{world.pairing.id}/free-slots",
                   params=_params(world, teacher_id=world.urban_admin.id), headers=auth(world.urban_admin))
    assert_error(r, 422, "invalid")
