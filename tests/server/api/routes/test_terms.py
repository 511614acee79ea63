"""/terms: everyone reads the calendar; bureau and system admins set terms, holidays and make-up days."""

from __future__ import annotations

from tests.server.api.routes.helpers import API, assert_error, district_admin


def test_terms_need_a_token(client, world):
    assert_error(client.get(f"{API}/terms"), 401, "not_authenticated")
    assert_error(client.get(f"{API}/terms/{world.term.id}"), 401, "not_authenticated")


def test_any_signed_in_user_reads_a_term_with_its_days(client, world, auth):
    listing = client.get(f"{API}/terms", headers=auth(world.terminal_recv)).json()
    assert [t["id"] for t in listing["data"]] == [world.term.id]
    r = client.get(f"{API}/terms/{world.term.id}", headers=auth(world.student))
    term = r.json()
    assert (term["start_date"], term["end_date"]) == ("2026-09-01", "2027-01-22")
    assert len(term["days"]) == 8
    makeup = term["days"][-1]
    assert (makeup["day"], makeup["kind"], makeup["follows_weekday"]) == ("2026-10-10", "makeup", 5)
    assert_error(client.get(f"{API}/terms/99999", headers=auth(world.student)), 404, "not_found")


def new_term(region=None, **kw):  # type: ignore[no-untyped-def]
    return {"name": "2027 春季学期", "start_date": "2027-02-22", "end_date": "2027-07-09",
            "region_id": region.id if region else None, **kw}


def test_city_admin_creates_a_term_that_applies_to_its_districts(client, world, auth, session_factory):
    r = client.post(f"{API}/terms", json=new_term(world.city), headers=auth(world.city_admin))
    assert r.status_code == 201, r.text
    assert r.json()["days"] == []
    admin_b = district_admin(session_factory, world.district_b)
    own = client.post(f"{API}/terms", json=new_term(world.district_b, name="西区学期"), headers=auth(admin_b)).json()
    for_a = client.get(f"{API}/terms", params={"region_id": world.district_a.id}, headers=auth(world.teacher)).json()
    assert own["id"] not in [t["id"] for t in for_a["data"]]
    assert [t["name"] for t in for_a["data"]] == ["2027 春季学期", "2026-2027 学年第一学期"]  # newest first
    for_b = client.get(f"{API}/terms", params={"region_id": world.district_b.id}, headers=auth(world.teacher)).json()
    assert for_b["count"] == 3


def test_school_admins_teachers_and_researchers_cannot_create_terms(client, world, auth):
    for user in (world.urban_admin, world.teacher, world.researcher_city, world.student):
        assert_error(client.post(f"{API}/terms", json=new_term(world.city), headers=auth(user)), 403, "forbidden")
    assert_error(client.post(f"{API}/terms", json=new_term(world.city)), 401, "not_authenticated")


def test_district_admin_cannot_create_terms_for_another_district_or_global_ones(client, world, auth, session_factory):
    admin_a = district_admin(session_factory, world.district_a)
    assert_error(client.post(f"{API}/terms", json=new_term(world.district_b), headers=auth(admin_a)), 403, "forbidden")
    assert_error(client.post(f"{API}/terms", json=new_term(None), headers=auth(admin_a)), 403, "forbidden")
    assert client.post(f"{API}/terms", json=new_term(None), headers=auth(world.sysadmin)).status_code == 201


def test_end_before_start_and_overlong_terms_are_422(client, world, auth):
    h = auth(world.city_admin)
    r = client.post(f"{API}/terms", json=new_term(world.city, end_date="2027-02-01"), headers=h)
    assert assert_error(r, 422, "invalid")["message"] == "学期结束日期不能早于开始日期"
    r = client.post(f"{API}/terms", json=new_term(world.city, end_date="2028-07-01"), headers=h)
    assert assert_error(r, 422, "invalid")["message"] == "学期不能超过一年"
    r = client.post(f"{API}/terms", json=new_term(world.city, start_date="not-a-date"), headers=h)
    assert_error(r, 422, "validation_error")


def days_url(w) -> str:  # type: ignore[no-untyped-def]
    return f"{API}/terms/{w.term.id}/days"


def test_add_a_holiday_and_a_makeup_day_then_remove_one(client, world, auth):
    h = auth(world.city_admin)
    hol = client.post(days_url(world), json={"day": "2027-01-01", "kind": "holiday", "name": "元旦"}, headers=h)
    assert hol.status_code == 201, hol.text
    mk = client.post(days_url(world), json={"day": "2026-12-27", "kind": "makeup", "follows_weekday": 4,
                                            "name": "元旦调休"}, headers=h)
    assert (mk.status_code, mk.json()["follows_weekday"]) == (201, 4)
    days = client.get(f"{API}/terms/{world.term.id}", headers=h).json()["days"]
    assert [d["day"] for d in days][-2:] == ["2026-12-27", "2027-01-01"]
    r = client.delete(f"{days_url(world)}/{hol.json()['id']}", headers=h)
    assert r.status_code == 204
    assert len(client.get(f"{API}/terms/{world.term.id}", headers=h).json()["days"]) == 9
    assert_error(client.delete(f"{days_url(world)}/{hol.json()['id']}", headers=h), 404, "not_found")


def test_makeup_day_without_follows_weekday_is_422(client, world, auth):
    r = client.post(days_url(world), json={"day": "2026-12-27", "kind": "makeup"}, headers=auth(world.city_admin))
    body = assert_error(r, 422, "invalid")
    assert body["message"] == "调休上课日必须指定按星期几的课表上课（follows_weekday）"
    assert body["field"] == "follows_weekday"
    r = client.post(days_url(world), json={"day": "2026-12-27", "kind": "makeup", "follows_weekday": 8},
                    headers=auth(world.city_admin))
    assert assert_error(r, 422, "invalid")["message"] == "follows_weekday 应为 1（周一）到 7（周日）"
    r = client.post(days_url(world), json={"day": "2026-12-27", "kind": "holiday", "follows_weekday": 3},
                    headers=auth(world.city_admin))
    assert_error(r, 422, "invalid")


def test_days_outside_the_term_or_twice_are_refused(client, world, auth):
    h = auth(world.city_admin)
    r = client.post(days_url(world), json={"day": "2027-05-01", "kind": "holiday"}, headers=h)
    assert "不在学期" in assert_error(r, 422, "invalid")["message"]
    r = client.post(days_url(world), json={"day": "2026-10-03", "kind": "holiday"}, headers=h)
    assert_error(r, 409, "duplicate")


def test_only_admins_covering_the_terms_region_edit_its_days(client, world, auth, session_factory):
    admin_a = district_admin(session_factory, world.district_a)
    day = {"day": "2026-11-11", "kind": "holiday"}
    assert_error(client.post(days_url(world), json=day, headers=auth(admin_a)), 403, "forbidden")
    assert_error(client.post(days_url(world), json=day, headers=auth(world.urban_admin)), 403, "forbidden")
    assert_error(client.post(days_url(world), json=day, headers=auth(world.teacher)), 403, "forbidden")
    assert_error(client.post(days_url(world), json=day), 401, "not_authenticated")
    first = client.get(f"{API}/terms/{world.term.id}", headers=auth(admin_a)).json()["days"][0]["id"]
    assert_error(client.delete(f"{days_url(world)}/{first}", headers=auth(admin_a)), 403, "forbidden")
