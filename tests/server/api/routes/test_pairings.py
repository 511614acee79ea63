"""/pairings: 城乡结对 between an urban and a rural school, managed by an admin of either side."""

from __future__ import annotations

from tests.server.api.routes.helpers import API, assert_error


def body(w, **kw):  # type: ignore[no-untyped-def]
    return {"urban_school_id": w.urban.id, "rural_school_id": w.rural_b.id, "subjects": ["语文", " 数学 ", "语文"],
            **kw}


def test_listing_pairings_needs_a_token_and_staff(client, world, auth):
    assert_error(client.get(f"{API}/pairings"), 401, "not_authenticated")
    assert_error(client.get(f"{API}/pairings", headers=auth(world.student)), 403, "forbidden")
    assert_error(client.get(f"{API}/pairings", headers=auth(world.terminal_main)), 403, "forbidden")


def test_researchers_see_the_pairings_of_their_region(client, world, auth):
    a = client.get(f"{API}/pairings", headers=auth(world.researcher_a)).json()
    assert [p["id"] for p in a["data"]] == [world.pairing.id]
    assert a["data"][0]["subjects"] == [] and a["data"][0]["active"] is True
    assert client.get(f"{API}/pairings", headers=auth(world.researcher_b)).json()["count"] == 1
    assert client.get(f"{API}/pairings", headers=auth(world.sysadmin)).json()["count"] == 2
    assert_error(client.get(f"{API}/pairings/{world.pairing.id}", headers=auth(world.researcher_b)), 403, "forbidden")


def test_list_filters(client, world, auth):
    h = auth(world.sysadmin)
    by_school = client.get(f"{API}/pairings", params={"school_id": world.rural.id}, headers=h).json()
    assert [p["id"] for p in by_school["data"]] == [world.pairing.id]
    by_region = client.get(f"{API}/pairings", params={"region_id": world.district_b.id}, headers=h).json()
    assert by_region["count"] == 1 and by_region["data"][0]["urban_school_id"] == world.urban_b.id
    assert client.get(f"{API}/pairings", params={"term_id": world.term.id}, headers=h).json()["count"] == 0


def test_urban_admin_pairs_with_a_rural_school_of_another_district(client, world, auth):
    r = client.post(f"{API}/pairings", json=body(world, term_id=world.term.id,
                                                 rural_classroom_id=world.recv_room_b.id),
                    headers=auth(world.urban_admin))
    assert r.status_code == 201, r.text
    p = r.json()
    assert p["subjects"] == ["语文", "数学"]
    assert (p["term_id"], p["rural_classroom_id"], p["urban_classroom_id"]) == (world.term.id, world.recv_room_b.id,
                                                                              None)
    assert client.get(f"{API}/pairings", params={"term_id": world.term.id}, headers=auth(world.researcher_b)).json()[
        "count"] == 1


def test_admin_of_neither_school_cannot_pair_them(client, world, auth):
    r = client.post(f"{API}/pairings", json=body(world, rural_school_id=world.rural.id), headers=auth(world.admin_b))
    assert_error(r, 403, "forbidden")


def test_non_admins_cannot_create_pairings(client, world, auth):
    for user in (world.student, world.terminal_main, world.teacher, world.researcher_a):
        assert_error(client.post(f"{API}/pairings", json=body(world), headers=auth(user)), 403, "forbidden")
    assert_error(client.post(f"{API}/pairings", json=body(world)), 401, "not_authenticated")


def test_sides_must_have_the_right_kind(client, world, auth):
    h = auth(world.sysadmin)
    r = client.post(f"{API}/pairings", json=body(world, urban_school_id=world.rural.id), headers=h)
    assert assert_error(r, 422, "invalid")["message"] == "“东区石桥村小”不是城镇学校，不能作为结对的城镇一方"
    r = client.post(f"{API}/pairings", json=body(world, rural_school_id=world.urban_b.id), headers=h)
    assert "不是乡村学校" in assert_error(r, 422, "invalid")["message"]


def test_classrooms_must_belong_to_their_schools(client, world, auth):
    r = client.post(f"{API}/pairings", json=body(world, urban_classroom_id=world.recv_room.id),
                    headers=auth(world.sysadmin))
    assert "不属于" in assert_error(r, 422, "invalid")["message"]


def test_missing_term_or_school_is_404(client, world, auth):
    h = auth(world.sysadmin)
    assert_error(client.post(f"{API}/pairings", json=body(world, term_id=99999), headers=h), 404, "not_found")
    assert_error(client.post(f"{API}/pairings", json=body(world, rural_school_id=99999), headers=h), 404, "not_found")


def test_the_same_active_pairing_twice_is_409(client, world, auth):
    r = client.post(f"{API}/pairings", json={"urban_school_id": world.urban.id, "rural_school_id": world.rural.id},
                    headers=auth(world.urban_admin))
    assert_error(r, 409, "duplicate")


def test_rural_admin_deactivates_and_updates_a_pairing(client, world, auth):
    url = f"{API}/pairings/{world.pairing.id}"
    r = client.patch(url, json={"subjects": ["英语"], "rural_classroom_id": world.recv_room2.id},
                     headers=auth(world.rural_admin))
    assert (r.json()["subjects"], r.json()["rural_classroom_id"]) == (["英语"], world.recv_room2.id)
    r = client.post(f"{url}/deactivate", headers=auth(world.rural_admin))
    assert (r.status_code, r.json()["active"]) == (200, False)
    assert client.get(f"{API}/pairings", params={"active": True}, headers=auth(world.researcher_a)).json()["count"] == 0
    cleared = client.patch(url, json={"rural_classroom_id": None}, headers=auth(world.rural_admin)).json()
    assert cleared["rural_classroom_id"] is None and cleared["subjects"] == ["英语"]


def test_admin_of_another_school_cannot_change_a_pairing(client, world, auth):
    url = f"{API}/pairings/{world.pairing.id}"
    assert_error(client.post(f"{url}/deactivate", headers=auth(world.admin_b)), 403, "forbidden")
    assert_error(client.patch(url, json={"subjects": []}, headers=auth(world.admin_b)), 403, "forbidden")
    assert_error(client.post(f"{url}/deactivate", headers=auth(world.teacher)), 403, "forbidden")


def test_pairing_region_filter_outside_the_scope_is_403(client, world, auth):
    r = client.get(f"{API}/pairings", params={"region_id": world.district_a.id}, headers=auth(world.researcher_b))
    assert r.status_code == 403
    r = client.get(f"{API}/pairings", params={"region_id": world.district_b.id}, headers=auth(world.researcher_b))
    assert r.status_code == 200 and r.json()["count"] == 1
