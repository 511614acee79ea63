"""Property: whatever sequence of bookings and changes is attempted, the scheduler agrees with a
simple model of the timetable, on SQLite and on PostgreSQL.

The model is independent of the scheduler's code: a lesson holds its teacher, its main
classroom, its receiving classrooms and their assistants from the start of its first period to
the end of its last (the urban bells of ``tests.utils.factory``), on the dates its weekday, weeks
and week pattern give in the term (week 1 is the Monday-based week of the term's first day;
the National Day holiday drops its dates). Then, after every attempt:

- a booking or change that clashes with no live lesson (and does not hold one resource twice
  itself) is accepted;
- one that does clash is refused as a conflict, and every lesson the refusal names really is a
  live lesson holding one of the same resources at an overlapping time;
- the live lessons never leave a teacher or a classroom in two overlapping lessons. This is
  computed from the lesson instances themselves, not from the occupancy table, so it also
  proves occupancy is kept in step with every change.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler import bookings
from scheduler.access import scope_of
from scheduler.errors import Conflict, SchedulerError
from scheduler.models import InstanceStatus, LessonInstance, LessonKind, WeekPattern
from server.core.db import make_engine, make_session_factory
from tests.utils.factory import URBAN_BELLS, World

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

TERM_FIRST_MONDAY = date(2026, 8, 31)  # the factory's term runs 2026-09-01 .. 2027-01-22
TERM_START, TERM_END = date(2026, 9, 1), date(2027, 1, 22)
HOLIDAYS = {date(2026, 10, d) for d in range(1, 8)}


def _book(week_from: int, weeks: int, *, teacher: int = 0, main: int = 0, receivers: tuple[int, ...] = (0,),
          weekday: int = 2, period: int = 1, length: int = 0, pattern: WeekPattern = WeekPattern.every,
          assist: bool = False) -> dict[str, Any]:
    return {"op": "book", "teacher": teacher, "main": main, "receivers": list(receivers), "assist": assist,
            "weekday": weekday, "period": period, "length": length, "week_from": week_from, "weeks": weeks,
            "pattern": pattern}


# ---------------------------------------------------------------- the model


@dataclass(frozen=True)
class Lesson:
    """What the model knows of a lesson: when, and which resources it holds."""

    starts_at: datetime
    ends_at: datetime
    held: tuple[tuple[str, int], ...]


def _at(day: date, period_from: int, period_to: int) -> tuple[datetime, datetime]:
    start, end = URBAN_BELLS[period_from - 1][0], URBAN_BELLS[period_to - 1][1]
    return datetime.combine(day, time.fromisoformat(start)), datetime.combine(day, time.fromisoformat(end))


def _days(weekday: int, week_from: int, week_to: int, pattern: WeekPattern) -> list[date]:
    out = []
    for week in range(week_from, week_to + 1):
        if (pattern is WeekPattern.odd and week % 2 == 0) or (pattern is WeekPattern.even and week % 2 == 1):
            continue
        day = TERM_FIRST_MONDAY + timedelta(weeks=week - 1, days=weekday - 1)
        if TERM_START <= day <= TERM_END and day not in HOLIDAYS:
            out.append(day)
    return out


def _held(teacher_id: int, main_id: int, receivers: list[tuple[int, int | None]]) -> tuple[tuple[str, int], ...]:
    held = [("teacher", teacher_id), ("classroom", main_id)]
    for room, assistant in receivers:
        held.append(("classroom", room))
        if assistant is not None:
            held.append(("teacher", assistant))
    return tuple(held)


def _live(session: Session) -> dict[int, Lesson]:
    """The live lessons as they are in the database."""
    out = {}
    for inst in session.scalars(select(LessonInstance).where(LessonInstance.status != InstanceStatus.cancelled)):
        receivers = [(r.classroom_id, r.assistant_id) for r in inst.series.receivers]
        out[inst.id] = Lesson(inst.starts_at, inst.ends_at, _held(inst.teacher_id, inst.main_classroom_id, receivers))
    return out


def _clashes(new: Lesson, live: dict[int, Lesson], ignore: int | None = None) -> set[int]:
    """The live lessons ``new`` would overlap on a shared resource."""
    return {
        iid for iid, other in live.items()
        if iid != ignore and other.starts_at < new.ends_at and new.starts_at < other.ends_at
        and set(other.held) & set(new.held)
    }


def _holds_twice(lesson: Lesson) -> bool:
    return len(set(lesson.held)) < len(lesson.held)


def _overlaps(live: dict[int, Lesson]) -> list[tuple[Any, ...]]:
    held: dict[tuple[str, int], list[tuple[datetime, datetime, int]]] = {}
    for iid, lesson in live.items():
        for key in lesson.held:
            held.setdefault(key, []).append((lesson.starts_at, lesson.ends_at, iid))
    bad: list[tuple[Any, ...]] = []
    for key, spans in held.items():
        spans.sort()
        bad += [(key, a, b) for a, b in zip(spans, spans[1:]) if b[0] < a[1]]
    return bad


def _check_refusal(exc: SchedulerError, expected: set[int], internal: bool, live: dict[int, Lesson],
                   what: str) -> None:
    """A refusal the model expects: a conflict naming only lessons that really clash, and at least one of
    them when the clash is with other lessons (so a clerk knows which)."""
    assert isinstance(exc, Conflict), f"{what}: refused as {exc.code} ({exc}), the model expects a conflict"
    named = {i.instance_id for i in exc.items if isinstance(getattr(i, "instance_id", None), int)}
    assert named <= expected, f"{what}: names {named - expected}, which do not clash ({exc})"
    assert named <= set(live)
    if expected and not internal:
        assert named, f"{what}: refused without naming the lessons it clashes with ({exc})"


# ---------------------------------------------------------------- one database per example


@pytest.fixture
def fresh_database(db_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Any]]:
    """``with fresh_database() as url``: a new database of the engine under test, for one example."""
    from contextlib import contextmanager

    @contextmanager
    def make() -> Iterator[str]:
        if db_url.startswith("sqlite"):
            target = tmp_path / f"prop{next(_ids)}.db"
            shutil.copy(request.getfixturevalue("sqlite_template"), target)
            yield f"sqlite:///{target}"
            target.unlink(missing_ok=True)
            return
        import psycopg

        server = request.getfixturevalue("pg_server")
        admin = f"host=127.0.0.1 port={server.port} user=postgres dbname=postgres"
        name = f"sanke_p{os.getpid()}_{next(_ids)}"
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}" TEMPLATE sanke_template')
        try:
            yield server.url(name)
        finally:
            with psycopg.connect(admin, autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    yield make


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(ops=st.lists(st.one_of(book_op, change_op), min_size=1, max_size=12))
# the model is exercised whatever the draw: free slots accepted, a clash refused, a freed slot taken
@example(ops=[_book(2, 2), _book(2, 2, teacher=1, main=1, receivers=(1,)), _book(3, 0, teacher=1, main=1),
              {"op": "cancel", "pick": 1, "teacher": 0, "day": 0, "period": 1}, _book(3, 0)])
def test_the_scheduler_agrees_with_the_timetable_model(ops: list[dict[str, Any]], fresh_database: Any) -> None:
    with fresh_database() as url:
        engine = make_engine(url)
        try:
            with make_session_factory(engine)() as session:
                _play(session, ops)
        finally:
            engine.dispose()


def _play(session: Session, ops: list[dict[str, Any]]) -> None:
    w = World.build(session)
    session.commit()
    admin = w.urban_admin
    scope = scope_of(session, admin)
    teachers = [w.teacher, w.teacher2, w.assistant]
    mains, recvs = [w.main_room, w.main_room2], [w.recv_room, w.recv_room2]
    for n, op in enumerate(ops):
        live = _live(session)
        what = f"op {n} {op}"
        expected: set[int] = set()
        refused_other: type[SchedulerError] | None = None  # a refusal the model expects that is not a clash
        if op["op"] == "book":
            receivers = [(recvs[i].id, w.assistant.id if op["assist"] and j == 0 else None)
                         for j, i in enumerate(op["receivers"])]
            held = _held(teachers[op["teacher"]].id, mains[op["main"]].id, receivers)
            week_to = op["week_from"] + op["weeks"]
            days = _days(op["weekday"], op["week_from"], week_to, op["pattern"])
            planned = [Lesson(*_at(d, op["period"], op["period"] + op["length"]), held) for d in days]
            for lesson in planned:
                expected |= _clashes(lesson, live)
            internal = any(_holds_twice(lesson) for lesson in planned)
            if not days:
                refused_other = SchedulerError  # no meeting day in the term: a validation error
            spec = bookings.SeriesSpec(
                kind=LessonKind.dedicated, title="课", subject="数学", grade="三年级", term_id=w.term.id,
                main_classroom_id=mains[op["main"]].id, main_teacher_id=teachers[op["teacher"]].id,
                weekday=op["weekday"], period_from=op["period"], period_to=op["period"] + op["length"],
                week_from=op["week_from"], week_to=week_to, week_pattern=op["pattern"],
                receivers=tuple(bookings.ReceiverSpec(room, assistant_id=assistant) for room, assistant in receivers))
            act: Callable[[], Any] = lambda spec=spec: bookings.create_series(session, spec, actor=admin, scope=scope)
        else:
            scheduled = session.scalars(select(LessonInstance).where(
                LessonInstance.status == InstanceStatus.scheduled).order_by(LessonInstance.id)).all()
            if not scheduled:
                continue
            inst = scheduled[op["pick"] % len(scheduled)]
            mine = live[inst.id]
            internal = False
            if op["op"] == "reschedule":
                day = date(2026, 9, 7) + timedelta(op["day"])
                moved = Lesson(*_at(day, op["period"], op["period"] + inst.period_to - inst.period_from), mine.held)
                expected = _clashes(moved, live, ignore=inst.id)
                internal = _holds_twice(moved) or day in HOLIDAYS
                act = lambda inst=inst, day=day: bookings.reschedule_instance(
                    session, inst.id, day=day, period_from=op["period"], actor=admin, scope=scope, reason="r")
            elif op["op"] == "postpone":
                refused_other = Conflict  # no free regular slot left in the term: a conflict naming no lesson
                act = lambda inst=inst: bookings.postpone_instance(session, inst.id, actor=admin, scope=scope,
                                                                   reason="r")
            elif op["op"] == "cancel":
                act = lambda inst=inst: bookings.cancel_instance(session, inst.id, actor=admin, scope=scope,
                                                                 reason="r")
            else:
                new_teacher = teachers[op["teacher"]].id
                if new_teacher == inst.teacher_id:
                    refused_other = SchedulerError  # the same teacher: a validation error
                held = tuple(k for k in mine.held if k != ("teacher", inst.teacher_id)) + (("teacher", new_teacher),)
                swapped = Lesson(mine.starts_at, mine.ends_at, held)
                expected = _clashes(swapped, live, ignore=inst.id)
                internal = _holds_twice(swapped)  # the lesson's own assistant cannot also teach it
                act = lambda inst=inst, t=new_teacher: bookings.substitute_instance(
                    session, inst.id, teacher_id=t, actor=admin, scope=scope, reason="r")
        try:
            act()
            session.commit()
        except SchedulerError as exc:
            session.rollback()
            if refused_other is not None and not (expected or internal):
                assert isinstance(exc, refused_other), f"{what}: refused as {exc.code} ({exc})"
            else:
                assert expected or internal, f"{what}: refused ({exc}) though it clashes with nothing"
                _check_refusal(exc, expected, internal, live, what)
        else:
            assert not expected, f"{what}: accepted though it clashes with lessons {sorted(expected)}"
            assert not internal, f"{what}: accepted though it holds a resource twice or lands on a holiday"
            assert refused_other in (None, Conflict), f"{what}: accepted, the model expects a refusal"
            after = _live(session)
            if op["op"] == "book":
                added = sorted((x.starts_at, x.ends_at) for iid, x in after.items() if iid not in live)
                assert added == sorted((x.starts_at, x.ends_at) for x in planned), f"{what}: other lessons booked"
            elif op["op"] == "cancel":
                assert inst.id not in after and set(after) == set(live) - {inst.id}
            elif op["op"] in ("reschedule", "postpone"):
                assert inst.id not in after and len(after) == len(live)
            else:
                assert ("teacher", new_teacher) in after[inst.id].held
        assert _overlaps(_live(session)) == [], what
