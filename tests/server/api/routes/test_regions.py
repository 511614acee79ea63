"""/regions: the tree is readable by everyone signed in, writable by the admins who cover it."""

from __future__ import annotations

from tests.server.api.routes.helpers import API, assert_error, district_admin


def test_listing_regions_needs_a_token(client, world):
    assert_error(client.get(f"{API}/regions"), 401, "not_authenticated")


def test_any_signed_in_user_reads_the_tree_in_path_order(client, world, auth):
    r = client.get(f"{API}/regions", headers=auth(world.student))
    assert r.status_code == 200
    body = r.json()
    assert body["count"] == 3
    assert [x["id"] for x in body["data"]] == [world.city.id, world.district_a.id, world.district_b.id]
    a = body["data"][1]
    assert a == {"id": world.district_a.id, "name": "东区", "level": "district", "parent_id": world.city.id,
                 "path": world.district_a.path}


def test_children_and_subtree_filters(client, world, auth):
    children = client.get(f"{API}/regions", params={"parent_id": world.city.id}, headers=auth(world.teacher)).json()
    assert {x["id"] for x in children["data"]} == {world.district_a.id, world.district_b.id}
    subtree = client.get(f"{API}/regions", params={"within_id": world.district_b.id}, headers=auth(world.teacher))
    assert [x["id"] for x in subtree.json()["data"]] == [world.district_b.id]


def test_get_one_region_and_a_missing_one(client, world, auth):
    assert client.get(f"{API}/regions/{world.city.id}", headers=auth(world.teacher)).json()["name"] == "示例市"
    assert_error(client.get(f"{API}/regions/99999", headers=auth(world.teacher)), 404, "not_found")


def test_city_admin_creates_a_district_whose_path_extends_the_parents(client, world, auth):
    r = client.post(f"{API}/regions", json={"name": "南区", "level": "district", "parent_id": world.city.id},
                    headers=auth(world.city_admin))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["path"] == f"{world.city.path}{body['id']}/"
    assert body["parent_id"] == world.city.id


def test_system_admin_creates_a_top_level_province(client, world, auth):
    r = client.post(f"{API}/regions", json={"name": "示例省", "level": "province"}, headers=auth(world.sysadmin))
    assert r.status_code == 201
    assert r.json()["path"] == f"/{r.json()['id']}/"


def test_bureau_admin_cannot_create_a_top_level_region(client, world, auth):
    r = client.post(f"{API}/regions", json={"name": "另一市", "level": "city"}, headers=auth(world.city_admin))
    assert_error(r, 403, "forbidden")


def test_teacher_and_school_admin_cannot_create_regions(client, world, auth):
    body = {"name": "南区", "level": "district", "parent_id": world.city.id}
    assert_error(client.post(f"{API}/regions", json=body, headers=auth(world.teacher)), 403, "forbidden")
    assert_error(client.post(f"{API}/regions", json=body, headers=auth(world.urban_admin)), 403, "forbidden")
    assert_error(client.post(f"{API}/regions", json=body, headers=auth(world.researcher_city)), 403, "forbidden")


def test_district_admin_cannot_create_under_another_district_or_the_city(client, world, auth, session_factory):
    admin_a = district_admin(session_factory, world.district_a)
    for parent in (world.district_b, world.city):
        r = client.post(f"{API}/regions", json={"name": "街道", "level": "district", "parent_id": parent.id},
                        headers=auth(admin_a))
        assert_error(r, 403, "forbidden")


def test_a_child_must_be_a_lower_level_than_its_parent(client, world, auth):
    r = client.post(f"{API}/regions", json={"name": "错层", "level": "city", "parent_id": world.district_a.id},
                    headers=auth(world.sysadmin))
    body = assert_error(r, 422, "invalid")
    assert "区县级区域" in body["message"]


def test_blank_name_is_refused_in_chinese(client, world, auth):
    r = client.post(f"{API}/regions", json={"name": "  ", "level": "district", "parent_id": world.city.id},
                    headers=auth(world.city_admin))
    assert assert_error(r, 422, "invalid")["message"] == "区域名称不能为空"


def test_rename_by_covering_admin_only(client, world, auth, session_factory):
    r = client.patch(f"{API}/regions/{world.district_a.id}", json={"name": "东城区"}, headers=auth(world.city_admin))
    assert (r.status_code, r.json()["name"]) == (200, "东城区")
    admin_b = district_admin(session_factory, world.district_b, "admin_district_b")
    assert_error(client.patch(f"{API}/regions/{world.district_a.id}", json={"name": "x"}, headers=auth(admin_b)),
                 403, "forbidden")
    assert_error(client.patch(f"{API}/regions/{world.district_a.id}", json={"name": "x"},
                              headers=auth(world.admin_b)), 403, "forbidden")
    assert_error(client.patch(f"{API}/regions/{world.district_a.id}", json={"name": "x"}), 401, "not_authenticated")
