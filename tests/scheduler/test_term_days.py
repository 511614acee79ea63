"""A holiday or make-up day added after booking moves the booked lessons with it."""

from __future__ import annotations

from datetime import date

from sqlalchemy import func, select

from scheduler.models import InstanceStatus, LessonInstance, Occupancy


def book(client, w, auth, **kw):
    b = {"kind": "dedicated", "title": "三年级数学", "subject": "数学", "grade": "三年级", "term_id": w.term.id,
         "main_classroom_id": w.main_room.id, "main_teacher_id": w.teacher.id, "weekday": 1, "period_from": 1,
         "receivers": [{"classroom_id": w.recv_room.id}]}
    b.update(kw)
    r = client.post("/api/v1/series", json=b, headers=auth(w.urban_admin))
    assert r.status_code == 201, r.text
    return r.json()["id"]


def on_day(session_factory, day):
    with session_factory() as s:
        return {(i.series.title, i.status) for i in s.scalars(select(LessonInstance).where(LessonInstance.day == day))}


def test_new_holiday_cancels_that_days_lessons_and_frees_their_slots(client, world, auth, session_factory):
    book(client, world, auth)
    r = client.post(f"/api/v1/terms/{world.term.id}/days", json={"day": "2026-11-16", "kind": "holiday",
                                                                 "name": "运动会"}, headers=auth(world.city_admin))
    assert r.status_code == 201, r.text
    assert len(r.json()["cancelled_lessons"]) == 1 and r.json()["added_lessons"] == []
    assert on_day(session_factory, date(2026, 11, 16)) == {("三年级数学", InstanceStatus.cancelled)}
    with session_factory() as s:
        lid = r.json()["cancelled_lessons"][0]
        assert s.scalar(select(func.count()).select_from(Occupancy).where(Occupancy.instance_id == lid)) == 0
        assert s.get(LessonInstance, lid).cancel_reason == "运动会停课"


def test_makeup_saturday_gets_the_followed_weekdays_lessons(client, world, auth, session_factory):
    book(client, world, auth, weekday=5, title="周五科学", subject="科学")
    book(client, world, auth, weekday=3, title="周三语文", subject="语文", main_teacher_id=world.teacher2.id)
    r = client.post(f"/api/v1/terms/{world.term.id}/days",
                    json={"day": "2026-11-21", "kind": "makeup", "follows_weekday": 5, "name": "调休"},
                    headers=auth(world.city_admin))
    assert r.status_code == 201, r.text
    assert len(r.json()["added_lessons"]) == 1 and r.json()["not_added"] == []
    assert on_day(session_factory, date(2026, 11, 21)) == {("周五科学", InstanceStatus.scheduled)}
    with session_factory() as s:
        inst = s.get(LessonInstance, r.json()["added_lessons"][0])
        assert inst.starts_at.isoformat() == "2026-11-21T08:00:00"


def test_makeup_weekday_replaces_its_own_timetable(client, world, auth, session_factory):
    book(client, world, auth, weekday=1, title="周一数学")
    book(client, world, auth, weekday=5, title="周五科学", subject="科学", main_teacher_id=world.teacher2.id,
         main_classroom_id=world.main_room2.id, receivers=[{"classroom_id": world.recv_room2.id}])
    r = client.post(f"/api/v1/terms/{world.term.id}/days",
                    json={"day": "2026-11-23", "kind": "makeup", "follows_weekday": 5},
                    headers=auth(world.city_admin))
    assert r.status_code == 201
    assert on_day(session_factory, date(2026, 11, 23)) == {
        ("周一数学", InstanceStatus.cancelled), ("周五科学", InstanceStatus.scheduled)}


def test_makeup_day_keeps_a_lesson_moved_onto_it_and_reports_the_clash(client, world, auth, session_factory):
    book(client, world, auth, weekday=5, title="周五科学", subject="科学")
    book(client, world, auth, weekday=2, title="周二数学", main_classroom_id=world.main_room2.id,
         receivers=[{"classroom_id": world.recv_room2.id}])
    tuesday = client.get("/api/v1/lessons", params={"date_from": "2026-11-17", "date_to": "2026-11-17"},
                         headers=auth(world.urban_admin)).json()["data"][0]
    r = client.post(f"/api/v1/lessons/{tuesday['id']}/reschedule", json={"day": "2026-11-21", "reason": "外出"},
                    headers=auth(world.urban_admin))
    assert r.status_code == 200, r.text
    r = client.post(f"/api/v1/terms/{world.term.id}/days",
                    json={"day": "2026-11-21", "kind": "makeup", "follows_weekday": 5},
                    headers=auth(world.city_admin))
    out = r.json()
    assert out["cancelled_lessons"] == [] and out["added_lessons"] == []
    assert out["not_added"][0]["resource"] == "teacher" and out["not_added"][0]["lesson_title"] == "周二数学"
    assert on_day(session_factory, date(2026, 11, 21)) == {("周二数学", InstanceStatus.scheduled)}
