"""Rooms open a lead time before the lesson, lessons go live when started, rooms close after end + grace."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from scheduler import bookings, lifecycle
from scheduler.access import scope_of
from scheduler.errors import InvalidState
from scheduler.models import InstanceStatus, LessonInstance, LessonKind
from server.core.bus import InProcessBus
from server.core.config import Settings
from server.api.times import to_local
from server.core.lifecycle_task import LifecycleTask

LEAD, GRACE = timedelta(minutes=10), timedelta(minutes=10)


def booked(session, w, weeks=2):
    admin = session.merge(w.urban_admin)
    spec = bookings.SeriesSpec(kind=LessonKind.dedicated, title="数学", subject="数学", grade="三年级",
                               term_id=w.term.id, main_classroom_id=w.main_room.id, main_teacher_id=w.teacher.id,
                               weekday=1, period_from=1, period_to=1, week_from=2, week_to=1 + weeks,
                               receivers=(bookings.ReceiverSpec(w.recv_room.id),))
    s = bookings.create_series(session, spec, actor=admin, scope=scope_of(session, admin))
    session.commit()
    return session.scalars(select(LessonInstance).where(LessonInstance.series_id == s.id)
                           .order_by(LessonInstance.starts_at)).all()


def test_room_opens_lead_time_before_start_and_not_earlier(session, world):
    first, second = booked(session, world)
    start = first.starts_at  # 2026-09-07 08:00
    assert lifecycle.tick(session, start - LEAD - timedelta(seconds=1), lead=LEAD, grace=GRACE) == []
    events = lifecycle.tick(session, start - LEAD, lead=LEAD, grace=GRACE)
    assert [(e.type, e.instance_id) for e in events] == [("room_opened", first.id)]
    assert first.room_opened_at == start - LEAD and lifecycle.room_is_open(first)
    assert lifecycle.tick(session, start - timedelta(minutes=5), lead=LEAD, grace=GRACE) == []  # once only


def test_started_lesson_is_held_and_unstarted_one_missed(session, world):
    first, second = booked(session, world)
    lifecycle.tick(session, first.starts_at - LEAD, lead=LEAD, grace=GRACE)
    ev = lifecycle.mark_started(session, first.id, first.starts_at + timedelta(minutes=1))
    assert ev.type == "lesson_live" and first.status is InstanceStatus.live
    assert lifecycle.mark_started(session, first.id, first.starts_at + timedelta(minutes=2)) is None
    events = lifecycle.tick(session, first.ends_at + GRACE, lead=LEAD, grace=GRACE)
    assert [(e.type, e.status) for e in events] == [("room_closed", "held")]
    assert first.status is InstanceStatus.held and not lifecycle.room_is_open(first)
    lifecycle.tick(session, second.starts_at - LEAD, lead=LEAD, grace=GRACE)
    events = lifecycle.tick(session, second.ends_at + GRACE, lead=LEAD, grace=GRACE)
    assert [(e.type, e.instance_id, e.status) for e in events] == [("room_closed", second.id, "missed")]


def test_cannot_start_before_room_opens_or_after_it_closed(session, world):
    first, _ = booked(session, world)
    with pytest.raises(InvalidState):
        lifecycle.mark_started(session, first.id, first.starts_at - timedelta(hours=1))
    lifecycle.tick(session, first.ends_at + GRACE, lead=LEAD, grace=GRACE)  # server was down the whole time
    assert first.status is InstanceStatus.missed
    with pytest.raises(InvalidState):
        lifecycle.mark_started(session, first.id, first.ends_at + GRACE)


def test_lifecycle_task_publishes_events_on_the_bus(session_factory, world, tmp_path, monkeypatch):
    with session_factory() as s:
        first, _ = booked(s, world)
    bus = InProcessBus()
    seen = []
    bus.subscribe(lifecycle.TOPIC, lambda topic, ev: seen.append(ev))
    monkeypatch.setattr("scheduler.clock.now", lambda: first.starts_at - timedelta(minutes=3))
    task = LifecycleTask(session_factory, bus, Settings(data_dir=tmp_path, secret_key="x" * 32))
    events = asyncio.run(task.run_once())
    assert [e.type for e in events] == ["room_opened"]
    assert seen == [{"type": "room_opened", "instance_id": first.id, "at": (first.starts_at - timedelta(minutes=3))
                     .isoformat(), "status": "scheduled"}]
    with session_factory() as s:
        assert s.get(LessonInstance, first.id).room_opened_at is not None


def test_lifecycle_task_runs_in_the_app_and_start_endpoint_goes_live(client, world, auth, app, monkeypatch):
    from tests.server.api.routes.test_lessons import book, lessons
    book(client, world, auth)
    first = lessons(client, world.urban_admin, auth, limit=1)["data"][0]
    starts = to_local(datetime.fromisoformat(first["starts_at"]))  # the wall clock the lesson is booked at
    monkeypatch.setattr("scheduler.clock.now", lambda: starts - timedelta(minutes=2))
    r = client.post(f"/api/v1/lessons/{first['id']}/start", headers=auth(world.teacher))
    assert r.status_code == 409  # room not open yet: the lifecycle task has not run
    task = LifecycleTask(app.state.session_factory, app.state.bus, app.state.settings)
    asyncio.run(task.run_once())
    assert client.post(f"/api/v1/lessons/{first['id']}/start", headers=auth(world.terminal_recv)).status_code == 403
    r = client.post(f"/api/v1/lessons/{first['id']}/start", headers=auth(world.teacher))
    assert r.status_code == 200 and r.json()["status"] == "live" and r.json()["room_open"] is True
    assert app.state.bus.published[-1][1]["type"] == "lesson_live"


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_nodes_ticking_at_once_open_each_room_once(session_factory, world):
    with session_factory() as s:
        first, _ = booked(s, world)
    when = first.starts_at - LEAD
    with session_factory() as node_a, session_factory() as node_b:
        a = lifecycle.tick(node_a, when, lead=LEAD, grace=GRACE)  # holds its row locks until commit
        b = lifecycle.tick(node_b, when, lead=LEAD, grace=GRACE)
        node_a.commit()
        node_b.commit()
    assert [e.instance_id for e in a] == [first.id] and b == []
