"""Property: whatever sequence of bookings and changes is attempted, the accepted ones
never leave a teacher or a classroom in two overlapping lessons.

The invariant is computed from the lesson instances themselves (teacher, main
classroom, receiving classrooms and their times), not from the occupancy table,
so it also proves occupancy is kept in step with every change.
"""

from __future__ import annotations

import itertools
import shutil
from datetime import date, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from scheduler import bookings
from scheduler.access import scope_of
from scheduler.errors import SchedulerError
from scheduler.models import InstanceStatus, LessonInstance, LessonKind, WeekPattern
from server.core.db import make_engine, make_session_factory
from tests.utils.factory import World

_ids = itertools.count()

book_op = st.fixed_dictionaries({
    "op": st.just("book"),
    "teacher": st.integers(0, 2), "main": st.integers(0, 1),
    "receivers": st.lists(st.integers(0, 1), min_size=1, max_size=2, unique=True),
    "assist": st.booleans(),
    "weekday": st.integers(1, 3), "period": st.integers(1, 3), "length": st.integers(0, 1),
    "week_from": st.integers(1, 4), "weeks": st.integers(0, 4),
    "pattern": st.sampled_from(list(WeekPattern)),
})
change_op = st.fixed_dictionaries({
    "op": st.sampled_from(["reschedule", "postpone", "cancel", "substitute"]),
    "pick": st.integers(0, 10_000), "teacher": st.integers(0, 2),
    "day": st.integers(0, 30), "period": st.integers(1, 4),
})


def _overlaps(session) -> list[tuple]:
    held: dict[tuple[str, int], list[tuple]] = {}
    for inst in session.scalars(select(LessonInstance).where(LessonInstance.status != InstanceStatus.cancelled)):
        keys = [("teacher", inst.teacher_id), ("classroom", inst.main_classroom_id)]
        keys += [("classroom", r.classroom_id) for r in inst.series.receivers]
        keys += [("teacher", r.assistant_id) for r in inst.series.receivers if r.assistant_id]
        for k in keys:
            held.setdefault(k, []).append((inst.starts_at, inst.ends_at, inst.id))
    bad = []
    for k, spans in held.items():
        spans.sort()
        bad += [(k, a, b) for a, b in zip(spans, spans[1:]) if b[0] < a[1]]
    return bad


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(ops=st.lists(st.one_of(book_op, change_op), min_size=1, max_size=12))
def test_accepted_bookings_never_double_book(ops, sqlite_template, tmp_path):
    db = tmp_path / f"prop{next(_ids)}.db"
    shutil.copy(sqlite_template, db)
    engine = make_engine(f"sqlite:///{db}")
    try:
        factory = make_session_factory(engine)
        with factory() as session:
            w = World.build(session)
            session.commit()
            admin = w.urban_admin
            scope = scope_of(session, admin)
            teachers = [w.teacher, w.teacher2, w.assistant]
            mains, recvs = [w.main_room, w.main_room2], [w.recv_room, w.recv_room2]
            accepted = 0
            for op in ops:
                try:
                    if op["op"] == "book":
                        spec = bookings.SeriesSpec(
                            kind=LessonKind.dedicated, title="课", subject="数学", grade="三年级", term_id=w.term.id,
                            main_classroom_id=mains[op["main"]].id, main_teacher_id=teachers[op["teacher"]].id,
                            weekday=op["weekday"], period_from=op["period"], period_to=op["period"] + op["length"],
                            week_from=op["week_from"], week_to=op["week_from"] + op["weeks"],
                            week_pattern=op["pattern"],
                            receivers=tuple(bookings.ReceiverSpec(
                                recvs[i].id, assistant_id=w.assistant.id if op["assist"] and j == 0 else None)
                                for j, i in enumerate(op["receivers"])))
                        bookings.create_series(session, spec, actor=admin, scope=scope)
                    else:
                        live = session.scalars(select(LessonInstance).where(
                            LessonInstance.status == InstanceStatus.scheduled).order_by(LessonInstance.id)).all()
                        if not live:
                            continue
                        inst = live[op["pick"] % len(live)]
                        if op["op"] == "reschedule":
                            bookings.reschedule_instance(session, inst.id, day=date(2026, 9, 7) + timedelta(op["day"]),
                                                         period_from=op["period"], actor=admin, scope=scope, reason="r")
                        elif op["op"] == "postpone":
                            bookings.postpone_instance(session, inst.id, actor=admin, scope=scope, reason="r")
                        elif op["op"] == "cancel":
                            bookings.cancel_instance(session, inst.id, actor=admin, scope=scope, reason="r")
                        else:
                            bookings.substitute_instance(session, inst.id, teacher_id=teachers[op["teacher"]].id,
                                                         actor=admin, scope=scope, reason="r")
                    session.commit()
                    accepted += 1
                except SchedulerError:
                    session.rollback()
                assert _overlaps(session) == []
    finally:
        engine.dispose()
