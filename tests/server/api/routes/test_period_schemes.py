"""/period-schemes: bell schedules, readable by staff in scope, written by the school's admins."""

from __future__ import annotations

from tests.server.api.routes.helpers import API, assert_error

BELLS = [{"number": 1, "start_time": "08:10", "end_time": "08:50"},
         {"number": 2, "start_time": "09:00", "end_time": "09:40"},
         {"number": 3, "start_time": "09:40", "end_time": "10:20"}]


def scheme(w, periods=None, **kw):  # type: ignore[no-untyped-def]
    return {"school_id": w.urban.id, "name": "冬季作息", "term_id": w.term.id, "periods": periods or BELLS, **kw}


def test_schemes_need_a_token_and_staff(client, world, auth):
    assert_error(client.get(f"{API}/period-schemes"), 401, "not_authenticated")
    assert_error(client.get(f"{API}/period-schemes", headers=auth(world.student)), 403, "forbidden")
    assert_error(client.post(f"{API}/period-schemes", json=scheme(world)), 401, "not_authenticated")


def test_staff_read_the_schemes_of_their_scope_with_periods(client, world, auth):
    r = client.get(f"{API}/period-schemes", headers=auth(world.researcher_a)).json()
    assert r["count"] == 2
    assert {s["school_id"] for s in r["data"]} == {world.urban.id, world.rural.id}
    urban = next(s for s in r["data"] if s["school_id"] == world.urban.id)
    assert [p["number"] for p in urban["periods"]] == list(range(1, 8))
    assert urban["periods"][0] == {"number": 1, "start_time": "08:00:00", "end_time": "08:40:00"}
    only = client.get(f"{API}/period-schemes", params={"school_id": world.urban.id}, headers=auth(world.teacher)).json()
    assert [s["id"] for s in only["data"]] == [urban["id"]]
    one = client.get(f"{API}/period-schemes/{urban['id']}", headers=auth(world.teacher)).json()
    assert one["periods"] == urban["periods"]


def test_reading_another_districts_scheme_is_403(client, world, auth):
    urban_id = client.get(f"{API}/period-schemes", params={"school_id": world.urban.id},
                          headers=auth(world.sysadmin)).json()["data"][0]["id"]
    assert_error(client.get(f"{API}/period-schemes/{urban_id}", headers=auth(world.researcher_b)), 403, "forbidden")
    assert_error(client.get(f"{API}/period-schemes", params={"school_id": world.urban.id},
                            headers=auth(world.admin_b)), 403, "forbidden")


def test_school_admin_creates_a_term_scheme(client, world, auth):
    r = client.post(f"{API}/period-schemes", json=scheme(world), headers=auth(world.urban_admin))
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["term_id"], body["name"], len(body["periods"])) == (world.term.id, "冬季作息", 3)
    assert body["periods"][2] == {"number": 3, "start_time": "09:40:00", "end_time": "10:20:00"}


def test_periods_may_be_sent_in_any_order(client, world, auth):
    r = client.post(f"{API}/period-schemes", json=scheme(world, list(reversed(BELLS))), headers=auth(world.urban_admin))
    assert [p["number"] for p in r.json()["periods"]] == [1, 2, 3]


def test_wrong_roles_and_other_schools_cannot_write(client, world, auth):
    for user in (world.teacher, world.researcher_a, world.terminal_main, world.student):
        assert_error(client.post(f"{API}/period-schemes", json=scheme(world), headers=auth(user)), 403, "forbidden")
    assert_error(client.post(f"{API}/period-schemes", json=scheme(world), headers=auth(world.admin_b)),
                 403, "forbidden")
    assert_error(client.post(f"{API}/period-schemes", json=scheme(world), headers=auth(world.rural_admin)),
                 403, "forbidden")


def test_overlapping_periods_are_422_with_a_chinese_message(client, world, auth):
    bad = [{"number": 1, "start_time": "08:00", "end_time": "08:45"},
           {"number": 2, "start_time": "08:40", "end_time": "09:20"}]
    r = client.post(f"{API}/period-schemes", json=scheme(world, bad), headers=auth(world.urban_admin))
    body = assert_error(r, 422, "invalid")
    assert body["message"] == "第 1 节（08:00–08:45）与第 2 节（08:40–09:20）时间重叠"
    assert body["field"] == "periods"


def test_other_period_mistakes_are_422(client, world, auth):
    h = auth(world.urban_admin)
    cases = [
        ([{"number": 1, "start_time": "09:00", "end_time": "08:00"}], "第 1 节的结束时间（08:00）应晚于开始时间（09:00）"),
        ([{"number": 1, "start_time": "08:00", "end_time": "08:40"},
          {"number": 1, "start_time": "09:00", "end_time": "09:40"}], "第 1 节重复"),
        ([{"number": 1, "start_time": "09:00", "end_time": "09:40"},
          {"number": 2, "start_time": "08:00", "end_time": "08:40"}], "节次应按时间先后排列：第 2 节（08:00）早于第 1 节（09:00）"),
        ([{"number": 0, "start_time": "08:00", "end_time": "08:40"}], "节次编号应从 1 开始，收到 0"),
        ([], "作息时间至少需要一节课"),
    ]
    for periods, message in cases:
        r = client.post(f"{API}/period-schemes", json={**scheme(world), "periods": periods}, headers=h)
        assert assert_error(r, 422, "invalid")["message"] == message


def test_a_second_standing_scheme_for_a_school_is_409(client, world, auth):
    r = client.post(f"{API}/period-schemes", json=scheme(world, term_id=None), headers=auth(world.urban_admin))
    assert_error(r, 409, "duplicate")


def test_update_replaces_the_periods(client, world, auth):
    h = auth(world.urban_admin)
    sid = client.post(f"{API}/period-schemes", json=scheme(world), headers=h).json()["id"]
    new = [{"number": 1, "start_time": "08:20", "end_time": "09:00"},
           {"number": 2, "start_time": "09:10", "end_time": "09:50"}]
    r = client.patch(f"{API}/period-schemes/{sid}", json={"periods": new, "name": "夏季作息"}, headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["name"] == "夏季作息" and body["term_id"] == world.term.id
    assert [(p["number"], p["start_time"]) for p in body["periods"]] == [(1, "08:20:00"), (2, "09:10:00")]
    again = client.get(f"{API}/period-schemes/{sid}", headers=h).json()
    assert again["periods"] == body["periods"]


def test_update_by_another_schools_admin_is_403_and_bad_periods_change_nothing(client, world, auth):
    h = auth(world.urban_admin)
    sid = client.post(f"{API}/period-schemes", json=scheme(world), headers=h).json()["id"]
    assert_error(client.patch(f"{API}/period-schemes/{sid}", json={"name": "x"}, headers=auth(world.admin_b)),
                 403, "forbidden")
    overlap = [{"number": 1, "start_time": "08:00", "end_time": "09:00"},
               {"number": 2, "start_time": "08:30", "end_time": "09:30"}]
    assert_error(client.patch(f"{API}/period-schemes/{sid}", json={"periods": overlap}, headers=h), 422, "invalid")
    assert len(client.get(f"{API}/period-schemes/{sid}", headers=h).json()["periods"]) == 3
    r = client.patch(f"{API}/period-schemes/{sid}", json={"term_id": None}, headers=h)
    assert_error(r, 409, "duplicate")
