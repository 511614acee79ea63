"""/schools and /schools/groups: scoped listings, paging, and who may create or edit."""

from __future__ import annotations

from tests.server.api.routes.helpers import API, assert_error, district_admin


def names(r) -> set[str]:  # type: ignore[no-untyped-def]
    assert r.status_code == 200, r.text
    return {s["name"] for s in r.json()["data"]}


def test_listing_schools_needs_a_token(client, world):
    assert_error(client.get(f"{API}/schools"), 401, "not_authenticated")


def test_researcher_sees_only_the_schools_of_their_region(client, world, auth):
    r = client.get(f"{API}/schools", headers=auth(world.researcher_a))
    assert names(r) == {"东区实验小学", "东区石桥村小"}
    assert r.json()["count"] == 2
    assert names(client.get(f"{API}/schools", headers=auth(world.researcher_b))) == {"西区第一小学", "西区山口村小"}
    assert r.json()["data"][0].keys() == {"id", "name", "kind", "region_id", "group_id"}


def test_school_users_see_only_their_own_school(client, world, auth):
    for user, school in ((world.teacher, world.urban), (world.student, world.rural),
                         (world.terminal_recv, world.rural), (world.admin_b, world.urban_b)):
        r = client.get(f"{API}/schools", headers=auth(user))
        assert [s["id"] for s in r.json()["data"]] == [school.id], user.username


def test_paging_keeps_the_total_count(client, world, auth):
    first = client.get(f"{API}/schools", params={"limit": 3}, headers=auth(world.researcher_city)).json()
    rest = client.get(f"{API}/schools", params={"limit": 3, "offset": 3}, headers=auth(world.researcher_city)).json()
    assert (len(first["data"]), first["count"]) == (3, 4)
    assert (len(rest["data"]), rest["count"]) == (1, 4)
    ids = [s["id"] for s in first["data"] + rest["data"]]
    assert len(set(ids)) == 4


def test_limit_above_maximum_is_a_validation_error(client, world, auth):
    assert_error(client.get(f"{API}/schools", params={"limit": 1000}, headers=auth(world.sysadmin)),
                 422, "validation_error")


def test_filters_by_region_subtree_kind_and_name(client, world, auth):
    h = auth(world.city_admin)
    assert names(client.get(f"{API}/schools", params={"region_id": world.district_b.id}, headers=h)) == {
        "西区第一小学", "西区山口村小"}
    assert names(client.get(f"{API}/schools", params={"region_id": world.city.id}, headers=h)) == {
        "东区实验小学", "东区石桥村小", "西区第一小学", "西区山口村小"}
    assert names(client.get(f"{API}/schools", params={"kind": "rural"}, headers=h)) == {"东区石桥村小", "西区山口村小"}
    assert names(client.get(f"{API}/schools", params={"q": "村小"}, headers=h)) == {"东区石桥村小", "西区山口村小"}
    assert names(client.get(f"{API}/schools", params={"q": "%"}, headers=h)) == set()


def test_region_filter_outside_the_scope_is_403(client, world, auth):
    r = client.get(f"{API}/schools", params={"region_id": world.district_b.id}, headers=auth(world.researcher_a))
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    r = client.get(f"{API}/schools", params={"region_id": world.district_a.id}, headers=auth(world.researcher_a))
    assert r.status_code == 200 and r.json()["count"] == 2


def test_get_a_school_of_another_district_is_403(client, world, auth):
    assert client.get(f"{API}/schools/{world.urban.id}", headers=auth(world.researcher_a)).status_code == 200
    assert_error(client.get(f"{API}/schools/{world.urban.id}", headers=auth(world.researcher_b)), 403, "forbidden")
    assert_error(client.get(f"{API}/schools/{world.urban.id}", headers=auth(world.admin_b)), 403, "forbidden")
    assert_error(client.get(f"{API}/schools/99999", headers=auth(world.sysadmin)), 404, "not_found")


def new_school(region, **kw):  # type: ignore[no-untyped-def]
    return {"name": "东区第二小学", "kind": "urban", "region_id": region.id, **kw}


def test_city_admin_creates_a_school_that_the_district_researcher_then_sees(client, world, auth):
    r = client.post(f"{API}/schools", json=new_school(world.district_a), headers=auth(world.city_admin))
    assert r.status_code == 201, r.text
    assert "东区第二小学" in names(client.get(f"{API}/schools", headers=auth(world.researcher_a)))
    assert "东区第二小学" not in names(client.get(f"{API}/schools", headers=auth(world.researcher_b)))


def test_students_terminals_and_school_admins_cannot_create_schools(client, world, auth):
    for user in (world.student, world.terminal_main, world.teacher, world.researcher_a, world.urban_admin):
        r = client.post(f"{API}/schools", json=new_school(world.district_a), headers=auth(user))
        assert_error(r, 403, "forbidden")


def test_district_admin_cannot_create_a_school_in_another_district(client, world, auth, session_factory):
    admin_a = district_admin(session_factory, world.district_a)
    assert client.post(f"{API}/schools", json=new_school(world.district_a), headers=auth(admin_a)).status_code == 201
    assert_error(client.post(f"{API}/schools", json=new_school(world.district_b), headers=auth(admin_a)),
                 403, "forbidden")


def test_update_name_by_covering_admin_but_not_by_another_school(client, world, auth):
    r = client.patch(f"{API}/schools/{world.urban.id}", json={"name": "东区实验小学（本部）"},
                     headers=auth(world.city_admin))
    assert (r.status_code, r.json()["name"], r.json()["kind"]) == (200, "东区实验小学（本部）", "urban")
    assert_error(client.patch(f"{API}/schools/{world.urban.id}", json={"name": "x"}, headers=auth(world.admin_b)),
                 403, "forbidden")
    assert_error(client.patch(f"{API}/schools/{world.urban.id}", json={"name": "x"}), 401, "not_authenticated")


def test_kind_cannot_change_while_an_active_pairing_needs_it(client, world, auth):
    r = client.patch(f"{API}/schools/{world.urban.id}", json={"kind": "rural"}, headers=auth(world.sysadmin))
    assert "城乡结对" in assert_error(r, 422, "invalid")["message"]


def test_moving_a_school_needs_the_target_region_in_scope(client, world, auth, session_factory):
    admin_a = district_admin(session_factory, world.district_a)
    r = client.patch(f"{API}/schools/{world.urban.id}", json={"region_id": world.district_b.id}, headers=auth(admin_a))
    assert_error(r, 403, "forbidden")
    r = client.patch(f"{API}/schools/{world.urban.id}", json={"region_id": world.district_b.id},
                     headers=auth(world.city_admin))
    assert r.json()["region_id"] == world.district_b.id


def test_education_groups_create_list_and_filter(client, world, auth):
    g = client.post(f"{API}/schools/groups", json={"name": "实验小学教育集团", "region_id": world.district_a.id},
                    headers=auth(world.city_admin))
    assert g.status_code == 201, g.text
    gid = g.json()["id"]
    r = client.patch(f"{API}/schools/{world.rural.id}", json={"group_id": gid}, headers=auth(world.city_admin))
    assert r.json()["group_id"] == gid
    assert names(client.get(f"{API}/schools", params={"group_id": gid}, headers=auth(world.sysadmin))) == {"东区石桥村小"}
    seen_by_a = client.get(f"{API}/schools/groups", headers=auth(world.researcher_a)).json()["data"]
    assert [x["id"] for x in seen_by_a] == [gid]
    assert client.get(f"{API}/schools/groups", headers=auth(world.researcher_b)).json()["count"] == 0
    assert client.get(f"{API}/schools/groups", headers=auth(world.assistant)).json()["count"] == 1
    cleared = client.patch(f"{API}/schools/{world.rural.id}", json={"group_id": None}, headers=auth(world.city_admin))
    assert cleared.json()["group_id"] is None


def test_a_school_cannot_join_a_group_of_another_district(client, world, auth):
    gid = client.post(f"{API}/schools/groups", json={"name": "东区集团", "region_id": world.district_a.id},
                      headers=auth(world.city_admin)).json()["id"]
    r = client.post(f"{API}/schools", json=new_school(world.district_b, group_id=gid), headers=auth(world.city_admin))
    assert "教育集团" in assert_error(r, 422, "invalid")["message"]


def test_groups_need_a_region_admin(client, world, auth):
    body = {"name": "集团", "region_id": world.district_a.id}
    assert_error(client.post(f"{API}/schools/groups", json=body), 401, "not_authenticated")
    assert_error(client.post(f"{API}/schools/groups", json=body, headers=auth(world.urban_admin)), 403, "forbidden")
    assert_error(client.get(f"{API}/schools/groups", headers=auth(world.student)), 403, "forbidden")
