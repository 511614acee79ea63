"""/users: admins manage the accounts in their scope, with role placement rules."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from server.core import security
from tests.server.api.routes.helpers import API, assert_error
from tests.utils.factory import PASSWORD


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch):  # type: ignore[no-untyped-def]
    """Argon2 with tiny costs: the hashes are still real argon2, the tests just don't wait for them."""
    monkeypatch.setattr(security, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


def usernames(r) -> set[str]:  # type: ignore[no-untyped-def]
    assert r.status_code == 200, r.text
    return {u["username"] for u in r.json()["data"]}


def login(client, username: str, password: str):  # type: ignore[no-untyped-def]
    return client.post(f"{API}/auth/login", json={"username": username, "password": password})


def test_listing_users_needs_a_token_and_an_admin(client, world, auth):
    assert_error(client.get(f"{API}/users"), 401, "not_authenticated")
    for user in (world.teacher, world.researcher_city, world.terminal_main, world.student):
        assert_error(client.get(f"{API}/users", headers=auth(user)), 403, "forbidden")


def test_school_admin_lists_only_their_schools_accounts(client, world, auth):
    r = client.get(f"{API}/users", headers=auth(world.urban_admin))
    assert usernames(r) == {"urban_admin", "teacher", "teacher2", "term_main"}
    assert r.json()["count"] == 4
    assert "password_hash" not in r.json()["data"][0]


def test_city_admin_lists_everyone_in_the_city_but_not_the_system_admin(client, world, auth):
    r = client.get(f"{API}/users", params={"limit": 100}, headers=auth(world.city_admin))
    got = usernames(r)
    assert "sysadmin" not in got
    assert {"researcher_a", "researcher_b", "researcher_city", "city_admin", "admin_b", "student"} <= got
    assert r.json()["count"] == 14  # the world's 15 accounts less the system admin
    page = client.get(f"{API}/users", params={"limit": 5, "offset": 10}, headers=auth(world.city_admin)).json()
    assert (len(page["data"]), page["count"]) == (4, 14)


def test_user_filters(client, world, auth):
    h = auth(world.sysadmin)
    assert usernames(client.get(f"{API}/users", params={"role": "researcher"}, headers=h)) == {
        "researcher_a", "researcher_b", "researcher_city"}
    assert usernames(client.get(f"{API}/users", params={"school_id": world.rural.id}, headers=h)) == {
        "rural_admin", "assistant", "term_recv", "student"}
    assert usernames(client.get(f"{API}/users", params={"q": "王老师"}, headers=h)) == {"teacher"}


def test_get_a_user_of_another_school_is_403(client, world, auth):
    assert client.get(f"{API}/users/{world.teacher.id}", headers=auth(world.urban_admin)).status_code == 200
    assert_error(client.get(f"{API}/users/{world.teacher.id}", headers=auth(world.admin_b)), 403, "forbidden")
    assert_error(client.get(f"{API}/users/{world.sysadmin.id}", headers=auth(world.city_admin)), 403, "forbidden")


def new_user(**kw):  # type: ignore[no-untyped-def]
    return {"username": "teacher_new", "display_name": "陈老师", "password": "Long-enough-1", "role": "teacher", **kw}


def test_school_admin_creates_a_teacher_who_can_then_log_in(client, world, auth):
    r = client.post(f"{API}/users", json=new_user(school_id=world.urban.id), headers=auth(world.urban_admin))
    assert r.status_code == 201, r.text
    assert r.json()["school_id"] == world.urban.id and r.json()["is_active"] is True
    assert login(client, "teacher_new", "Long-enough-1").status_code == 200


def test_school_admin_cannot_create_accounts_for_another_school(client, world, auth):
    r = client.post(f"{API}/users", json=new_user(school_id=world.rural.id), headers=auth(world.urban_admin))
    assert_error(r, 403, "forbidden")


def test_non_admins_cannot_create_accounts(client, world, auth):
    for user in (world.teacher, world.student, world.terminal_main, world.researcher_a):
        r = client.post(f"{API}/users", json=new_user(school_id=world.urban.id), headers=auth(user))
        assert_error(r, 403, "forbidden")


def test_school_admin_creates_terminal_student_and_admin_of_own_school(client, world, auth):
    h = auth(world.urban_admin)
    term = client.post(f"{API}/users", json=new_user(username="term_302", role="terminal",
                                                     classroom_id=world.main_room2.id), headers=h)
    assert term.status_code == 201, term.text
    assert (term.json()["classroom_id"], term.json()["school_id"]) == (world.main_room2.id, world.urban.id)
    assert client.post(f"{API}/users", json=new_user(username="pupil", role="student", school_id=world.urban.id),
                       headers=h).status_code == 201
    assert client.post(f"{API}/users", json=new_user(username="admin2", role="admin", school_id=world.urban.id),
                       headers=h).status_code == 201


def test_school_admin_cannot_create_researchers_bureau_or_system_admins(client, world, auth):
    h = auth(world.urban_admin)
    for body in (new_user(role="researcher", region_id=world.district_a.id),
                 new_user(role="admin", region_id=world.district_a.id),
                 new_user(role="admin")):
        assert_error(client.post(f"{API}/users", json=body, headers=h), 403, "forbidden")


def test_city_admin_creates_a_researcher_for_a_district(client, world, auth):
    r = client.post(f"{API}/users", json=new_user(username="researcher_new", role="researcher",
                                                  region_id=world.district_a.id), headers=auth(world.city_admin))
    assert r.status_code == 201, r.text
    assert (r.json()["region_id"], r.json()["school_id"]) == (world.district_a.id, None)


def test_city_admin_cannot_create_a_system_admin(client, world, auth):
    assert_error(client.post(f"{API}/users", json=new_user(role="admin"), headers=auth(world.city_admin)),
                 403, "forbidden")
    assert client.post(f"{API}/users", json=new_user(username="root2", role="admin"),
                       headers=auth(world.sysadmin)).status_code == 201


def test_placement_rules_are_422_in_chinese(client, world, auth):
    h = auth(world.city_admin)
    cases = [
        (new_user(role="terminal", school_id=world.urban.id), "教室终端账号必须指定所属教室"),
        (new_user(role="researcher"), "教研员账号必须指定所属区域"),
        (new_user(), "教师账号必须指定所属学校"),
        (new_user(role="terminal", classroom_id=world.recv_room.id, school_id=world.urban.id),
         "教室终端账号的学校应与其教室所属学校一致"),
        (new_user(role="admin", school_id=world.urban.id, region_id=world.district_a.id),
         "管理员只能属于一所学校或一个区域，不能同时指定"),
        (new_user(school_id=world.urban.id, classroom_id=world.main_room.id), "只有教室终端账号可以指定教室"),
        (new_user(school_id=world.urban.id, password="short"), "密码至少 8 位"),
        (new_user(school_id=world.urban.id, username="有空格 的名字"), "用户名应为 3–64 位字母、数字或 _ . @ -"),
    ]
    for body, message in cases:
        r = client.post(f"{API}/users", json=body, headers=h)
        assert assert_error(r, 422, "invalid")["message"] == message, body


def test_duplicate_username_is_409(client, world, auth):
    r = client.post(f"{API}/users", json=new_user(username="teacher", school_id=world.urban.id),
                    headers=auth(world.urban_admin))
    assert "teacher" in assert_error(r, 409, "duplicate")["message"]


def test_deactivating_a_teacher_locks_them_out(client, world, auth):
    headers = auth(world.teacher)
    r = client.patch(f"{API}/users/{world.teacher.id}", json={"is_active": False}, headers=auth(world.urban_admin))
    assert (r.status_code, r.json()["is_active"]) == (200, False)
    assert_error(client.get(f"{API}/auth/me", headers=headers), 401, "token_invalid")
    assert_error(login(client, "teacher", PASSWORD), 401, "bad_credentials")


def test_password_reset_and_rename(client, world, auth):
    r = client.patch(f"{API}/users/{world.teacher.id}", json={"password": "A-new-password", "display_name": "王明"},
                     headers=auth(world.urban_admin))
    assert (r.status_code, r.json()["display_name"]) == (200, "王明")
    assert login(client, "teacher", "A-new-password").status_code == 200
    assert login(client, "teacher", PASSWORD).status_code == 401
    r = client.patch(f"{API}/users/{world.teacher.id}", json={"password": "short"}, headers=auth(world.urban_admin))
    assert_error(r, 422, "invalid")


def test_admin_of_another_school_cannot_edit_and_nobody_deactivates_themselves(client, world, auth):
    assert_error(client.patch(f"{API}/users/{world.teacher.id}", json={"is_active": False},
                              headers=auth(world.admin_b)), 403, "forbidden")
    assert_error(client.patch(f"{API}/users/{world.teacher.id}", json={"is_active": False}), 401, "not_authenticated")
    r = client.patch(f"{API}/users/{world.urban_admin.id}", json={"is_active": False}, headers=auth(world.urban_admin))
    assert assert_error(r, 422, "invalid")["message"] == "不能停用自己的账号"
