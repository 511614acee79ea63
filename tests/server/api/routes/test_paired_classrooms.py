"""GET /pairings/classrooms: the paired schools' classrooms a booking dialog offers as receivers."""

from __future__ import annotations

from tests.server.api.routes.helpers import API, assert_error


def test_paired_classrooms_need_a_token_and_staff(client, world, auth):
    q = {"school_id": world.urban.id}
    assert_error(client.get(f"{API}/pairings/classrooms", params=q), 401, "not_authenticated")
    for user in (world.student, world.terminal_main):
        assert_error(client.get(f"{API}/pairings/classrooms", params=q, headers=auth(user)), 403, "forbidden")


def test_a_school_admin_gets_the_classrooms_of_the_paired_school(client, world, auth):
    r = client.get(f"{API}/pairings/classrooms", params={"school_id": world.urban.id}, headers=auth(world.urban_admin))
    assert r.status_code == 200, r.text
    rows = r.json()["data"]
    assert [x["classroom_id"] for x in rows] == [world.recv_room.id, world.recv_room2.id]
    assert {x["school_name"] for x in rows} == {world.rural.name}
    assert {x["pairing_id"] for x in rows} == {world.pairing.id}
    # and the other way round, for the rural side
    back = client.get(f"{API}/pairings/classrooms", params={"school_id": world.rural.id},
                      headers=auth(world.rural_admin)).json()["data"]
    assert [x["classroom_id"] for x in back] == [world.main_room.id, world.main_room2.id]


def test_a_pairing_naming_a_classroom_offers_only_that_one_and_inactive_pairings_none(client, world, auth):
    h = auth(world.urban_admin)
    client.patch(f"{API}/pairings/{world.pairing.id}", json={"rural_classroom_id": world.recv_room2.id},
                 headers=auth(world.sysadmin)).raise_for_status()
    rows = client.get(f"{API}/pairings/classrooms", params={"school_id": world.urban.id}, headers=h).json()["data"]
    assert [x["classroom_id"] for x in rows] == [world.recv_room2.id]
    client.post(f"{API}/pairings/{world.pairing.id}/deactivate", headers=auth(world.sysadmin)).raise_for_status()
    assert client.get(f"{API}/pairings/classrooms", params={"school_id": world.urban.id}, headers=h).json()["count"] == 0


def test_a_school_outside_the_callers_scope_is_refused(client, world, auth):
    r = client.get(f"{API}/pairings/classrooms", params={"school_id": world.urban_b.id}, headers=auth(world.urban_admin))
    assert_error(r, 403, "forbidden")
    r = client.get(f"{API}/pairings/classrooms", params={"school_id": world.urban_b.id},
                   headers=auth(world.researcher_a))
    assert_error(r, 403, "forbidden")
