"""Reviewing and ending a series: ``POST /series/{id}/reject`` (a teacher's request, with a reason the
teacher then reads) and ``POST /series/{id}/cancel`` (停课 for the rest of the term): who may, in
which state, and what everyone sees afterwards."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.server.api.routes.helpers import API, assert_error

MID_TERM = datetime(2026, 9, 16, 12, 0)
"""A Wednesday in week 3: the series' Tuesday lessons of 09-01, 09-08 and 09-15 are past."""


def body(w, **kw):  # type: ignore[no-untyped-def]
    b = {"kind": "dedicated", "title": "三年级数学", "subject": "数学", "grade": "三年级", "term_id": w.term.id,
         "main_classroom_id": w.main_room.id, "main_teacher_id": w.teacher.id, "weekday": 2, "period_from": 3,
         "receivers": [{"classroom_id": w.recv_room.id}]}
    b.update(kw)
    return b


def request_series(client, w, auth) -> int:  # type: ignore[no-untyped-def]
    """The teacher asks for a series: pending, no lessons yet."""
    r = client.post(f"{API}/series", json=body(w), headers=auth(w.teacher))
    assert r.status_code == 201 and r.json()["status"] == "pending", r.text
    return int(r.json()["id"])


def book_series(client, w, auth, **kw) -> int:  # type: ignore[no-untyped-def]
    r = client.post(f"{API}/series", json=body(w, **kw), headers=auth(w.urban_admin))
    assert r.status_code == 201 and r.json()["status"] == "approved", r.text
    return int(r.json()["id"])


def lessons(client, w, auth, user=None, **params):  # type: ignore[no-untyped-def]
    r = client.get(f"{API}/lessons", params={"limit": 500, **params}, headers=auth(user or w.urban_admin))
    assert r.status_code == 200, r.text
    return r.json()["data"]


def vevents(client, path: str, headers: dict[str, str]) -> int:
    r = client.get(path, headers=headers)
    assert r.status_code == 200, r.text
    return r.text.count("BEGIN:VEVENT")


# ---------------------------------------------------------------- reject


def test_the_teacher_sees_why_the_request_was_rejected_and_nothing_is_booked(client, world, auth):
    w = world
    sid = request_series(client, w, auth)
    r = client.post(f"{API}/series/{sid}/reject", json={"reason": "该时段已安排全校教研活动"},
                    headers=auth(w.urban_admin))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "rejected" and r.json()["instance_count"] == 0

    # the requesting teacher: the request is rejected, with the admin's name and reason in its history
    mine = client.get(f"{API}/series/{sid}", headers=auth(w.teacher)).json()
    assert mine["status"] == "rejected"
    trail = client.get(f"{API}/audit", params={"entity": "series", "entity_id": sid}, headers=auth(w.teacher))
    assert trail.status_code == 200, trail.text
    last = trail.json()[-1]
    assert (last["action"], last["reason"], last["actor_name"]) == (
        "reject", "该时段已安排全校教研活动", "实验小学教务")
    assert [s["id"] for s in client.get(f"{API}/series", params={"status": "rejected"},
                                        headers=auth(w.teacher)).json()["data"]] == [sid]

    # no lesson anywhere, and the slot is still free for a booking
    assert lessons(client, w, auth, series_id=sid) == []
    assert lessons(client, w, auth, user=w.teacher, teacher_id=w.teacher.id) == []
    book_series(client, w, auth)

    # a rejected request stays rejected
    assert_error(client.post(f"{API}/series/{sid}/approve", json={}, headers=auth(w.urban_admin)), 409, "invalid_state")
    again = client.post(f"{API}/series/{sid}/reject", json={"reason": "再次驳回"}, headers=auth(w.urban_admin))
    assert_error(again, 409, "invalid_state")


def test_only_an_admin_over_the_main_school_may_reject_and_only_with_a_reason(client, world, auth):
    w = world
    sid = request_series(client, w, auth)
    url = f"{API}/series/{sid}/reject"
    for who in (w.teacher, w.teacher2, w.admin_b, w.rural_admin, w.researcher_a, w.terminal_main, w.student):
        r = client.post(url, json={"reason": "不同意"}, headers=auth(who))
        assert r.status_code == 403, (who.username, r.text)
    assert_error(client.post(url, json={}, headers=auth(w.urban_admin)), 422, "invalid")
    assert_error(client.post(url, json={"reason": "   "}, headers=auth(w.urban_admin)), 422, "invalid")
    assert client.get(f"{API}/series/{sid}", headers=auth(w.teacher)).json()["status"] == "pending"
    assert client.post(url, json={"reason": "不同意"}).status_code == 401
    assert_error(client.post(f"{API}/series/99999/reject", json={"reason": "不同意"}, headers=auth(w.urban_admin)),
                 404, "not_found")
    # an admin above the school (the city's bureau) may
    r = client.post(url, json={"reason": "全市统一调整课表"}, headers=auth(w.city_admin))
    assert r.status_code == 200 and r.json()["status"] == "rejected"


def test_an_approved_or_cancelled_series_cannot_be_rejected(client, world, auth):
    w = world
    sid = book_series(client, w, auth)
    assert_error(client.post(f"{API}/series/{sid}/reject", json={"reason": "不同意"}, headers=auth(w.urban_admin)),
                 409, "invalid_state")
    assert len(lessons(client, w, auth, series_id=sid, status="scheduled")) == 20  # nothing was touched
    r = client.post(f"{API}/series/{sid}/cancel", json={"reason": "停开"}, headers=auth(w.urban_admin))
    assert r.status_code == 200
    assert_error(client.post(f"{API}/series/{sid}/reject", json={"reason": "不同意"}, headers=auth(w.urban_admin)),
                 409, "invalid_state")


# ---------------------------------------------------------------- cancel


def test_cancelling_a_series_takes_its_remaining_lessons_off_every_timetable(client, world, auth, monkeypatch):
    w = world
    sid = book_series(client, w, auth)
    assert len(lessons(client, w, auth, series_id=sid)) == 20
    teacher_feed = f"{API}/timetable/teachers/{w.teacher.id}.ics"
    room_feed = f"{API}/timetable/classrooms/{w.recv_room.id}.ics"
    assert vevents(client, teacher_feed, auth(w.teacher)) == 20
    assert vevents(client, room_feed, auth(w.terminal_recv)) == 20

    monkeypatch.setattr("scheduler.clock.now", lambda: MID_TERM)
    r = client.post(f"{API}/series/{sid}/cancel", json={"reason": "教师长期病假"}, headers=auth(w.urban_admin))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"

    rows = lessons(client, w, auth, series_id=sid)
    past = [x for x in rows if x["starts_at"] < MID_TERM.isoformat()]
    future = [x for x in rows if x["starts_at"] > MID_TERM.isoformat()]
    assert [x["day"] for x in past] == ["2026-09-01", "2026-09-08", "2026-09-15"]
    assert all(x["status"] == "scheduled" for x in past)  # what already happened is not rewritten
    assert len(future) == 17 and all(x["status"] == "cancelled" for x in future)
    assert {x["cancel_reason"] for x in future} == {"教师长期病假"}
    # the receiving classroom's terminal sees the same
    seen = lessons(client, w, auth, user=w.terminal_recv, series_id=sid, status="scheduled")
    assert [x["day"] for x in seen] == ["2026-09-01", "2026-09-08", "2026-09-15"]
    # calendar feeds drop the cancelled lessons
    assert vevents(client, teacher_feed, auth(w.teacher)) == 3
    assert vevents(client, room_feed, auth(w.terminal_recv)) == 3
    # the freed slots can be booked again
    other = book_series(client, w, auth, title="三年级科学", subject="科学", main_teacher_id=w.teacher.id)
    assert len(lessons(client, w, auth, series_id=other)) == 17
    trail = client.get(f"{API}/audit", params={"entity": "series", "entity_id": sid}, headers=auth(w.teacher)).json()
    assert (trail[-1]["action"], trail[-1]["reason"], trail[-1]["details"]) == (
        "cancel", "教师长期病假", {"instances_cancelled": 17})


def test_a_pending_request_can_be_withdrawn_by_cancelling_it(client, world, auth):
    w = world
    sid = request_series(client, w, auth)
    r = client.post(f"{API}/series/{sid}/cancel", json={"reason": "不再需要"}, headers=auth(w.urban_admin))
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert_error(client.post(f"{API}/series/{sid}/approve", json={}, headers=auth(w.urban_admin)), 409, "invalid_state")
    assert lessons(client, w, auth, series_id=sid) == []


def test_only_an_admin_over_the_main_school_may_cancel_and_only_with_a_reason(client, world, auth):
    w = world
    sid = book_series(client, w, auth)
    url = f"{API}/series/{sid}/cancel"
    for who in (w.teacher, w.teacher2, w.admin_b, w.rural_admin, w.researcher_a, w.terminal_main, w.student):
        r = client.post(url, json={"reason": "停课"}, headers=auth(who))
        assert r.status_code == 403, (who.username, r.text)
    assert_error(client.post(url, json={}, headers=auth(w.urban_admin)), 422, "invalid")
    assert client.post(url, json={"reason": "停课"}).status_code == 401
    assert_error(client.post(f"{API}/series/99999/cancel", json={"reason": "停课"}, headers=auth(w.urban_admin)),
                 404, "not_found")
    assert len(lessons(client, w, auth, series_id=sid, status="scheduled")) == 20  # none of that changed anything


@pytest.mark.parametrize("first", ["reject", "cancel"])
def test_a_rejected_or_cancelled_series_cannot_be_cancelled(client, world, auth, first):
    w = world
    sid = request_series(client, w, auth)
    r = client.post(f"{API}/series/{sid}/{first}", json={"reason": "第一次"}, headers=auth(w.urban_admin))
    assert r.status_code == 200, r.text
    status = r.json()["status"]
    assert_error(client.post(f"{API}/series/{sid}/cancel", json={"reason": "第二次"}, headers=auth(w.urban_admin)),
                 409, "invalid_state")
    assert client.get(f"{API}/series/{sid}", headers=auth(w.teacher)).json()["status"] == status
    trail = client.get(f"{API}/audit", params={"entity": "series", "entity_id": sid}, headers=auth(w.teacher)).json()
    assert [e["reason"] for e in trail if e["action"] in ("reject", "cancel")] == ["第一次"]
