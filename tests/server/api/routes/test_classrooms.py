"""/classrooms: listing within scope, and only the school's admins may create or edit."""

from __future__ import annotations

from tests.server.api.routes.helpers import API, assert_error


def test_listing_classrooms_needs_a_token(client, world):
    assert_error(client.get(f"{API}/classrooms"), 401, "not_authenticated")


def test_school_admin_sees_the_classrooms_of_their_school(client, world, auth):
    r = client.get(f"{API}/classrooms", headers=auth(world.urban_admin))
    body = r.json()
    assert body["count"] == 2
    assert {c["id"] for c in body["data"]} == {world.main_room.id, world.main_room2.id}
    assert body["data"][0].keys() == {"id", "school_id", "name", "capacity"}


def test_paging_and_school_filter(client, world, auth):
    h = auth(world.researcher_city)
    assert client.get(f"{API}/classrooms", headers=h).json()["count"] == 5
    page = client.get(f"{API}/classrooms", params={"school_id": world.rural.id, "limit": 1}, headers=h).json()
    assert (len(page["data"]), page["count"]) == (1, 2)
    second = client.get(f"{API}/classrooms", params={"school_id": world.rural.id, "limit": 1, "offset": 1},
                        headers=h).json()
    assert {page["data"][0]["id"], second["data"][0]["id"]} == {world.recv_room.id, world.recv_room2.id}


def test_asking_for_another_schools_classrooms_is_403(client, world, auth):
    r = client.get(f"{API}/classrooms", params={"school_id": world.urban.id}, headers=auth(world.admin_b))
    assert_error(r, 403, "forbidden")
    assert_error(client.get(f"{API}/classrooms/{world.main_room.id}", headers=auth(world.researcher_b)),
                 403, "forbidden")
    assert client.get(f"{API}/classrooms/{world.main_room.id}", headers=auth(world.terminal_main)).status_code == 200


def test_school_admin_creates_a_classroom(client, world, auth):
    r = client.post(f"{API}/classrooms", json={"school_id": world.urban.id, "name": "实验小学 303 录播教室",
                                               "capacity": 50}, headers=auth(world.urban_admin))
    assert r.status_code == 201, r.text
    assert r.json()["capacity"] == 50
    assert client.get(f"{API}/classrooms", headers=auth(world.urban_admin)).json()["count"] == 3


def test_teachers_terminals_and_students_cannot_create_classrooms(client, world, auth):
    body = {"school_id": world.urban.id, "name": "新教室"}
    for user in (world.teacher, world.terminal_main, world.student, world.researcher_a):
        assert_error(client.post(f"{API}/classrooms", json=body, headers=auth(user)), 403, "forbidden")
    assert_error(client.post(f"{API}/classrooms", json=body), 401, "not_authenticated")


def test_admin_of_another_school_cannot_create_or_edit_its_classrooms(client, world, auth):
    body = {"school_id": world.urban.id, "name": "新教室"}
    assert_error(client.post(f"{API}/classrooms", json=body, headers=auth(world.admin_b)), 403, "forbidden")
    r = client.patch(f"{API}/classrooms/{world.recv_room.id}", json={"name": "x"}, headers=auth(world.urban_admin))
    assert_error(r, 403, "forbidden")


def test_own_school_admin_and_region_admin_edit_a_classroom(client, world, auth):
    r = client.patch(f"{API}/classrooms/{world.recv_room.id}", json={"name": "石桥村小 多媒体教室"},
                     headers=auth(world.rural_admin))
    assert (r.status_code, r.json()["name"], r.json()["capacity"]) == (200, "石桥村小 多媒体教室", 30)
    r = client.patch(f"{API}/classrooms/{world.recv_room.id}", json={"capacity": 35}, headers=auth(world.city_admin))
    assert r.json()["capacity"] == 35


def test_bad_capacity_and_blank_name_are_422_in_chinese(client, world, auth):
    h = auth(world.urban_admin)
    r = client.patch(f"{API}/classrooms/{world.main_room.id}", json={"capacity": 0}, headers=h)
    assert "教室容量" in assert_error(r, 422, "invalid")["message"]
    r = client.post(f"{API}/classrooms", json={"school_id": world.urban.id, "name": ""}, headers=h)
    assert assert_error(r, 422, "invalid")["message"] == "教室名称不能为空"
    assert_error(client.get(f"{API}/classrooms/99999", headers=h), 404, "not_found")
