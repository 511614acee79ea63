"""/series stream_from: when the home students of a 名校网络课堂 watch its HLS stream, who decides, and
what the lesson API tells the student's page."""

from __future__ import annotations

from tests.server.api.routes.test_series import body


def famous(w, **kw):  # type: ignore[no-untyped-def]
    return body(w, kind="famous_school", receivers=[], participant_ids=[w.student.id], **kw)


def test_a_famous_school_series_booked_with_a_threshold_gives_it_to_every_lesson(client, world, auth):
    r = client.post("/api/v1/series", json=famous(world, stream_from=30), headers=auth(world.urban_admin))
    assert r.status_code == 201, r.text
    assert r.json()["stream_from"] == 30
    lessons = client.get("/api/v1/lessons", params={"series_id": r.json()["id"], "limit": 3},
                         headers=auth(world.student)).json()["data"]
    assert lessons and all(x["stream_from"] == 30 for x in lessons)
    one = client.get(f"/api/v1/lessons/{lessons[0]['id']}", headers=auth(world.student)).json()
    assert one["stream_from"] == 30


def test_without_a_threshold_home_students_stay_on_webrtc(client, world, auth):
    sid = client.post("/api/v1/series", json=famous(world), headers=auth(world.urban_admin)).json()["id"]
    lesson = client.get("/api/v1/lessons", params={"series_id": sid, "limit": 1},
                        headers=auth(world.student)).json()["data"][0]
    assert lesson["stream_from"] is None


def test_only_a_famous_school_series_takes_a_threshold(client, world, auth):
    r = client.post("/api/v1/series", json=body(world, stream_from=0), headers=auth(world.urban_admin))
    assert r.status_code == 422 and r.json()["field"] == "stream_from" and "名校网络课堂" in r.json()["message"]
    sid = client.post("/api/v1/series", json=body(world), headers=auth(world.urban_admin)).json()["id"]
    r = client.put(f"/api/v1/series/{sid}/stream-from", json={"stream_from": 0}, headers=auth(world.urban_admin))
    assert r.status_code == 422 and "名校网络课堂" in r.json()["message"]


def test_the_main_teacher_switches_it_and_the_change_is_audited(client, world, auth, session):
    from sqlalchemy import select

    from scheduler.models import AuditEntry

    sid = client.post("/api/v1/series", json=famous(world), headers=auth(world.urban_admin)).json()["id"]
    r = client.put(f"/api/v1/series/{sid}/stream-from", json={"stream_from": 0}, headers=auth(world.teacher))
    assert r.status_code == 200, r.text
    assert r.json()["stream_from"] == 0
    lesson = client.get("/api/v1/lessons", params={"series_id": sid, "limit": 1},
                        headers=auth(world.student)).json()["data"][0]
    assert lesson["stream_from"] == 0
    r = client.put(f"/api/v1/series/{sid}/stream-from", json={"stream_from": None}, headers=auth(world.urban_admin))
    assert r.status_code == 200 and r.json()["stream_from"] is None
    changes = session.scalars(select(AuditEntry).where(AuditEntry.entity == "series", AuditEntry.entity_id == sid,
                                                       AuditEntry.action == "stream_from")
                              .order_by(AuditEntry.id)).all()
    assert [(c.actor_id, c.details) for c in changes] == [
        (world.teacher.id, {"from": None, "to": 0}), (world.urban_admin.id, {"from": 0, "to": None})]


def test_no_one_else_may_switch_it(client, world, auth):
    sid = client.post("/api/v1/series", json=famous(world), headers=auth(world.urban_admin)).json()["id"]
    url = f"/api/v1/series/{sid}/stream-from"
    assert client.put(url, json={"stream_from": 5}).status_code == 401
    for who in (world.teacher2, world.admin_b, world.researcher_a, world.student, world.terminal_main):
        r = client.put(url, json={"stream_from": 5}, headers=auth(who))
        assert r.status_code == 403, (who.display_name, r.text)
    assert client.put(url, json={"stream_from": -1}, headers=auth(world.teacher)).status_code == 422
    assert client.put("/api/v1/series/999999/stream-from", json={"stream_from": 1},
                      headers=auth(world.urban_admin)).status_code == 404
    lesson = client.get("/api/v1/lessons", params={"series_id": sid, "limit": 1},
                        headers=auth(world.student)).json()["data"][0]
    assert lesson["stream_from"] is None
