"""Two bookings of one slot racing each other can never both succeed."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import func, select

from scheduler import bookings
from scheduler.access import scope_of
from scheduler.errors import Conflict
from scheduler.models import LessonInstance, LessonKind, Occupancy, User
from tests.utils.live import live_server


def series_body(w, n):
    return {"kind": "dedicated", "title": f"抢占课程 {n}", "subject": "数学", "grade": "三年级", "term_id": w.term.id,
            "main_classroom_id": w.main_room.id if n % 2 else w.main_room2.id,
            "main_teacher_id": w.teacher.id, "weekday": 4, "period_from": 2,
            "receivers": [{"classroom_id": w.recv_room.id if n % 2 else w.recv_room2.id}]}


def test_concurrent_requests_for_one_slot_book_exactly_one(app, world, auth):
    """Eight clerks press "book" at once for the same teacher and time: one wins, seven get 409."""
    n = 8
    with live_server(app) as base:
        barrier = threading.Barrier(n)

        def post(i: int) -> httpx.Response:
            with httpx.Client(base_url=base, timeout=60) as c:
                barrier.wait()
                return c.post("/api/v1/series", json=series_body(world, i), headers=auth(world.urban_admin))

        with ThreadPoolExecutor(n) as pool:
            responses = list(pool.map(post, range(n)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] + [409] * (n - 1), [r.text for r in responses]
    assert all(r.json()["code"] == "conflict" for r in responses if r.status_code == 409)
    with app.state.session_factory() as s:
        assert s.scalar(select(func.count()).select_from(LessonInstance)) == 20  # Thursdays of the term, less 1 Oct


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_database_constraint_stops_a_race_the_application_check_missed(session_factory, world, monkeypatch):
    """Both bookings pass the application's conflict check before either writes; PostgreSQL's
    exclusion constraint still lets only one commit, and the loser gets a proper Conflict."""
    barrier = threading.Barrier(2, timeout=30)
    real_check = bookings._check_slots

    def check_then_wait(session, planned, ignore=(), **kw):
        real_check(session, planned, ignore, **kw)
        barrier.wait()  # both have checked; now both write

    monkeypatch.setattr(bookings, "_check_slots", check_then_wait)
    results: list[object] = [None, None]

    def book(i: int) -> None:
        with session_factory() as s:
            admin = s.get(User, world.urban_admin.id)
            spec = bookings.SeriesSpec(
                kind=LessonKind.dedicated, title=f"竞争 {i}", subject="数学", grade="三年级", term_id=world.term.id,
                main_classroom_id=(world.main_room, world.main_room2)[i].id, main_teacher_id=world.teacher.id,
                weekday=2, period_from=1, period_to=1,
                receivers=(bookings.ReceiverSpec((world.recv_room, world.recv_room2)[i].id),))
            try:
                bookings.create_series(s, spec, actor=admin, scope=scope_of(s, admin))
                s.commit()
                results[i] = "ok"
            except Conflict as exc:
                s.rollback()
                results[i] = exc

    threads = [threading.Thread(target=book, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(type(r).__name__ for r in results) == ["Conflict", "str"]
    loser = next(r for r in results if isinstance(r, Conflict))
    assert loser.items and loser.items[0].resource == "teacher"
    with session_factory() as s:
        rows = s.execute(select(Occupancy.resource_id, Occupancy.starts_at)
                         .where(Occupancy.resource_type == "teacher", Occupancy.resource_id == world.teacher.id)).all()
        assert len(rows) == len(set(rows)) == 20
