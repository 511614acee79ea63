"""/patrol over HTTP: the wall, rubrics, visits, evaluations, replies, snapshots, invitations;
401 without a token, 403 for a wrong role or region."""

from __future__ import annotations

from datetime import datetime

from scheduler import patrol
from scheduler.access import scope_of
from scheduler.models import InstanceStatus, LessonInstance, User
from tests.server.api.routes.helpers import assert_error
from tests.server.api.routes.test_lessons import book, lessons

P = "/api/v1/patrol"
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64 + b"\xff\xd9"


def live_lesson(client, world, auth, session_factory, **kw) -> int:
    book(client, world, auth, **kw)
    lid = lessons(client, world.urban_admin, auth, limit=1)["data"][0]["id"]
    with session_factory() as s:
        inst = s.get(LessonInstance, lid)
        inst.room_opened_at = datetime(2026, 8, 24, 8, 50)
        inst.status = InstanceStatus.live
        inst.started_at = datetime(2026, 8, 24, 8, 55)
        s.commit()
    return lid


def rubric(client, world, auth) -> dict:
    r = client.post(f"{P}/rubrics", headers=auth(world.city_admin), json={
        "region_id": world.city.id, "name": "课堂教学评价表",
        "items": [{"name": "教学目标", "max_score": 10, "weight": 1}, {"name": "师生互动", "max_score": 20, "weight": 3}]})
    assert r.status_code == 201, r.text
    return r.json()


def test_every_patrol_route_needs_a_login(client):
    for method, path in [("GET", "/live"), ("GET", "/rubrics"), ("POST", "/rubrics"), ("POST", "/lessons/1/visits"),
                         ("PUT", "/lessons/1/evaluation"), ("POST", "/lessons/1/snapshots"),
                         ("GET", "/snapshots/1"), ("GET", "/evaluations"), ("POST", "/lessons/1/invitations")]:
        assert_error(client.request(method, P + path), 401, "not_authenticated")


def test_rubrics_admins_of_the_region_define_them(client, world, auth):
    t = rubric(client, world, auth)
    assert [i["name"] for i in t["items"]] == ["教学目标", "师生互动"] and t["region_name"] == "示例市"
    body = {"region_id": world.district_a.id, "name": "x", "items": [{"name": "a", "max_score": 5}]}
    for user in (world.researcher_a, world.urban_admin, world.teacher):
        assert_error(client.post(f"{P}/rubrics", json=body, headers=auth(user)), 403, "forbidden")
    bad = {**body, "items": [{"name": "a", "max_score": 0}]}
    assert client.post(f"{P}/rubrics", json=bad, headers=auth(world.city_admin)).status_code == 422
    assert [x["id"] for x in client.get(f"{P}/rubrics", headers=auth(world.researcher_a)).json()] == [t["id"]]
    assert client.get(f"{P}/rubrics", headers=auth(world.student)).status_code == 403
    r = client.patch(f"{P}/rubrics/{t['id']}", json={"active": False}, headers=auth(world.admin_b))
    assert_error(r, 403, "forbidden")
    r = client.patch(f"{P}/rubrics/{t['id']}", json={"name": "新表"}, headers=auth(world.city_admin))
    assert r.status_code == 200 and r.json()["name"] == "新表"


def test_the_wall_shows_live_lessons_of_the_region_with_filters(client, world, auth, session_factory):
    lid = live_lesson(client, world, auth, session_factory)
    page = client.get(f"{P}/live", headers=auth(world.researcher_a)).json()
    assert [x["id"] for x in page["data"]] == [lid] and page["count"] == 1
    assert page["facets"]["subjects"] == ["数学"] and page["facets"]["grades"] == ["三年级"]
    assert {s["name"] for s in page["facets"]["schools"]} == {"东区实验小学", "东区石桥村小"}
    assert client.get(f"{P}/live", params={"subject": "语文"}, headers=auth(world.researcher_a)).json()["count"] == 0
    assert client.get(f"{P}/live", params={"kind": "dedicated", "grade": "三年级", "school_id": world.rural.id},
                      headers=auth(world.researcher_a)).json()["count"] == 1
    assert client.get(f"{P}/live", headers=auth(world.researcher_b)).json()["count"] == 0
    assert_error(client.get(f"{P}/live", params={"school_id": world.urban.id}, headers=auth(world.researcher_b)),
                 403, "forbidden")
    assert_error(client.get(f"{P}/live", headers=auth(world.teacher)), 403, "forbidden")


def test_visits_evaluation_notes_and_the_teachers_reply(client, world, auth, session_factory):
    lid = live_lesson(client, world, auth, session_factory)
    t = rubric(client, world, auth)
    ra = auth(world.researcher_a)
    r = client.get(f"{P}/lessons/{lid}/evaluation", headers=ra)
    assert r.status_code == 200 and r.json() is None  # not evaluated yet
    assert_error(client.get(f"{P}/lessons/{lid}/evaluation", headers=auth(world.researcher_b)), 403, "forbidden")
    assert_error(client.put(f"{P}/lessons/{lid}/evaluation", json={}, headers=ra), 409, "invalid_state")
    assert_error(client.post(f"{P}/lessons/{lid}/visits", headers=auth(world.researcher_b)), 403, "forbidden")
    visit = client.post(f"{P}/lessons/{lid}/visits", headers=ra)
    assert visit.status_code == 201 and visit.json()["ended_at"] is None
    vid = visit.json()["id"]
    assert client.post(f"{P}/visits/{vid}/heartbeat", headers=ra).status_code == 200
    assert_error(client.post(f"{P}/visits/{vid}/end", headers=auth(world.researcher_city)), 403, "forbidden")
    assert client.get(f"{P}/lessons/{lid}/rubrics", headers=ra).json()[0]["id"] == t["id"]

    a, b = (str(i["id"]) for i in t["items"])
    r = client.put(f"{P}/lessons/{lid}/evaluation", headers=ra,
                   json={"template_id": t["id"], "scores": {a: 10, b: 10}, "comment": "节奏紧凑"})
    assert r.status_code == 200, r.text
    ev = r.json()
    assert ev["total_score"] == 62.5 and ev["mode"] == "live" and ev["template_name"] == "课堂教学评价表"
    r = client.put(f"{P}/lessons/{lid}/evaluation", headers=ra, json={"template_id": t["id"], "scores": {a: 99}})
    assert_error(r, 422, "invalid")
    note = client.post(f"{P}/evaluations/{ev['id']}/notes", json={"text": "小组合作"}, headers=ra)
    assert note.status_code == 201
    assert_error(client.post(f"{P}/evaluations/{ev['id']}/notes", json={"text": "x"},
                             headers=auth(world.researcher_city)), 403, "forbidden")
    ended = client.post(f"{P}/visits/{vid}/end", headers=ra).json()
    assert ended["end_reason"] == "left" and ended["duration_seconds"] == 0
    assert_error(client.post(f"{P}/visits/{vid}/heartbeat", headers=ra), 409, "invalid_state")

    # who reads it
    for reader in (world.researcher_a, world.city_admin, world.urban_admin, world.teacher):
        r = client.get(f"{P}/evaluations/{ev['id']}", headers=auth(reader))
        assert r.status_code == 200 and r.json()["notes"][0]["text"] == "小组合作", reader.username
    for outsider in (world.researcher_city, world.researcher_b, world.admin_b, world.teacher2, world.terminal_main):
        assert_error(client.get(f"{P}/evaluations/{ev['id']}", headers=auth(outsider)), 403, "forbidden")
    assert client.get(f"{P}/evaluations", headers=auth(world.researcher_city)).json()["count"] == 0
    assert client.get(f"{P}/evaluations", headers=auth(world.teacher)).json()["count"] == 1
    assert client.get(f"{P}/evaluations", params={"instance_id": lid}, headers=auth(world.city_admin)).json()["count"] == 1
    # the teacher replies; a researcher cannot
    r = client.post(f"{P}/evaluations/{ev['id']}/replies", json={"text": "感谢建议"}, headers=auth(world.teacher))
    assert r.status_code == 201 and r.json()["author_name"] == "王老师"
    assert_error(client.post(f"{P}/evaluations/{ev['id']}/replies", json={"text": "x"}, headers=ra), 403, "forbidden")
    assert client.get(f"{P}/evaluations/{ev['id']}", headers=ra).json()["replies"][0]["text"] == "感谢建议"
    # visits: own for researchers, in scope for admins
    assert client.get(f"{P}/visits", headers=ra).json()["count"] == 1
    assert client.get(f"{P}/visits", headers=auth(world.researcher_city)).json()["count"] == 0
    assert client.get(f"{P}/visits", headers=auth(world.city_admin)).json()["count"] == 1
    assert client.get(f"{P}/visits", headers=auth(world.admin_b)).json()["count"] == 0
    assert_error(client.get(f"{P}/visits", params={"researcher_id": world.researcher_city.id}, headers=ra),
                 403, "forbidden")
    assert_error(client.get(f"{P}/visits", headers=auth(world.teacher)), 403, "forbidden")


def test_snapshots_need_media_and_are_served_to_readers_only(client, world, auth, session_factory, settings):
    lid = live_lesson(client, world, auth, session_factory)
    ra = auth(world.researcher_a)
    assert_error(client.post(f"{P}/lessons/{lid}/snapshots", headers=auth(world.researcher_b)), 403, "forbidden")
    assert_error(client.post(f"{P}/lessons/{lid}/snapshots", headers=auth(world.teacher)), 403, "forbidden")
    assert_error(client.post(f"{P}/lessons/{lid}/snapshots", headers=ra), 409, "no_media")  # nobody in the room
    client.post(f"{P}/lessons/{lid}/visits", headers=ra)
    with session_factory() as s:
        user = s.get(User, world.researcher_a.id)
        snap = patrol.add_snapshot(s, user, scope_of(s, user), lid, jpeg=JPEG, width=2, height=2,
                                   data_dir=settings.ensure_data_dir(), now=datetime(2026, 8, 24, 9, 0))
        s.commit()
        sid = snap.id
    ev = client.get(f"{P}/lessons/{lid}/evaluation", headers=ra).json()
    assert ev["snapshots"][0]["url"] == f"/api/v1/patrol/snapshots/{sid}"
    for reader in (world.researcher_a, world.teacher, world.city_admin):
        r = client.get(f"{P}/snapshots/{sid}", headers=auth(reader))
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.content == JPEG
    for outsider in (world.researcher_city, world.researcher_b, world.admin_b):
        assert_error(client.get(f"{P}/snapshots/{sid}", headers=auth(outsider)), 403, "forbidden")
    assert_error(client.get(f"{P}/snapshots/{sid + 1}", headers=ra), 404, "not_found")


def test_invitations_and_replay_evaluation(client, world, auth, session_factory):
    lid = live_lesson(client, world, auth, session_factory)
    with session_factory() as s:
        s.get(LessonInstance, lid).status = InstanceStatus.held
        s.commit()
    rb = auth(world.researcher_b)
    replay = {"mode": "replay", "comment": "回放评课"}
    assert_error(client.put(f"{P}/lessons/{lid}/evaluation", json=replay, headers=rb), 403, "forbidden")
    assert_error(client.post(f"{P}/lessons/{lid}/invitations", json={"invitee_id": world.researcher_a.id}, headers=rb),
                 403, "forbidden")
    assert_error(client.post(f"{P}/lessons/{lid}/invitations", json={"invitee_id": world.researcher_b.id},
                             headers=auth(world.teacher)), 403, "forbidden")
    r = client.post(f"{P}/lessons/{lid}/invitations", json={"invitee_id": world.researcher_b.id, "note": "请帮忙评课"},
                    headers=auth(world.researcher_a))
    assert r.status_code == 201 and r.json()["invitee_name"] == "西区教研员"
    assert_error(client.post(f"{P}/lessons/{lid}/invitations", json={"invitee_id": world.researcher_b.id},
                             headers=auth(world.city_admin)), 409, "invalid_state")
    assert_error(client.post(f"{P}/lessons/{lid}/invitations", json={"invitee_id": world.teacher.id},
                             headers=auth(world.city_admin)), 422, "invalid")
    assert [x["instance_id"] for x in client.get(f"{P}/invitations", headers=rb).json()] == [lid]
    r = client.put(f"{P}/lessons/{lid}/evaluation", json=replay, headers=rb)
    assert r.status_code == 200 and r.json()["mode"] == "replay"
    assert len(client.get(f"{P}/lessons/{lid}/invitations", headers=auth(world.city_admin)).json()) == 1
    assert_error(client.get(f"{P}/lessons/{lid}/invitations", headers=auth(world.teacher2)), 403, "forbidden")
    inv = client.get(f"{P}/invitations", headers=rb).json()[0]["id"]
    assert_error(client.delete(f"{P}/invitations/{inv}", headers=rb), 403, "forbidden")
    assert client.delete(f"{P}/invitations/{inv}", headers=auth(world.researcher_a)).status_code == 204


def test_invitation_candidates_are_the_researchers_and_teachers_of_the_province(client, world, auth, session_factory):
    lid = live_lesson(client, world, auth, session_factory)
    url = f"{P}/lessons/{lid}/invitation-candidates"
    r = client.get(url, headers=auth(world.researcher_a))
    assert r.status_code == 200, r.text
    got = {x["id"]: x for x in r.json()}
    assert world.researcher_b.id in got and world.researcher_city.id in got and world.teacher2.id in got
    assert got[world.researcher_b.id]["place"] == "西区" and got[world.teacher2.id]["role"] == "teacher"
    assert world.researcher_a.id not in got and world.teacher.id not in got  # not oneself, not the lesson's teacher
    assert all(x["role"] in ("researcher", "teacher") for x in got.values())
    assert [x["id"] for x in client.get(url, params={"q": "西区"}, headers=auth(world.researcher_a)).json()] == \
        [world.researcher_b.id]
    client.post(f"{P}/lessons/{lid}/invitations", json={"invitee_id": world.researcher_b.id},
                headers=auth(world.researcher_a))
    assert world.researcher_b.id not in {x["id"] for x in client.get(url, headers=auth(world.city_admin)).json()}
    for outsider in (world.researcher_b, world.teacher2, world.admin_b):
        assert_error(client.get(url, headers=auth(outsider)), 403, "forbidden")
    assert client.get(url).status_code == 401
