"""The demo data loads through the real booking rules and looks like a term in progress."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from scheduler.models import (
    Classroom,
    DemandOffer,
    DemandOrder,
    InstanceStatus,
    LessonInstance,
    LessonKind,
    LessonSeries,
    Occupancy,
    Pairing,
    Role,
    SeriesParticipant,
    SeriesReceiver,
    SeriesStatus,
    Term,
    User,
    WeekPattern,
)
from server.core.config import Settings
from server.core.db import make_engine, make_session_factory
from scheduler.terms import TermCalendar, timetable_weekday
from server.demo import PASSWORD, DemoSummary, load_demo, plan_term


@dataclass
class Loaded:
    settings: Settings
    summary: DemoSummary
    output: str


def _load(settings: Settings, **kwargs) -> tuple[DemoSummary, str]:  # type: ignore[no-untyped-def]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        summary = load_demo(settings, **kwargs)
    return summary, out.getvalue()


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Loaded:
    settings = Settings(data_dir=tmp_path_factory.mktemp("demo"), secret_key="x" * 32)
    summary, output = _load(settings)
    return Loaded(settings, summary, output)


@pytest.fixture
def session(loaded: Loaded) -> Iterator[Session]:
    engine = make_engine(loaded.settings.effective_database_url)
    with make_session_factory(engine)() as s:
        yield s
    engine.dispose()


OVERLAPS = text(
    "SELECT count(*) FROM occupancy a JOIN occupancy b"
    " ON a.resource_type = b.resource_type AND a.resource_id = b.resource_id AND a.id < b.id"
    " AND a.starts_at < b.ends_at AND b.starts_at < a.ends_at"
)


def test_counts_are_in_the_required_ranges(loaded: Loaded) -> None:
    s = loaded.summary
    assert s.loaded
    assert s.districts == 3
    assert 15 <= s.urban_schools <= 25
    assert 35 <= s.rural_schools <= 45
    assert s.series >= 300
    assert all(s.series_by_kind.get(k.value, 0) > 0 for k in LessonKind)
    assert 40 <= s.pairings <= 60
    assert all(s.users_by_role.get(r.value, 0) >= 1 for r in Role)
    assert s.demand_orders >= 2


def test_no_resource_is_double_booked(session: Session) -> None:
    assert session.scalar(OVERLAPS) == 0


def test_every_dedicated_receiver_is_paired_and_has_a_local_assistant(session: Session) -> None:
    school_of = dict(session.execute(select(Classroom.id, Classroom.school_id)).all())
    teacher_school = dict(session.execute(select(User.id, User.school_id).where(User.role == Role.teacher))
                          .all())
    pairings = session.scalars(select(Pairing).where(Pairing.active.is_(True))).all()
    dedicated = session.scalars(select(LessonSeries).where(LessonSeries.kind == LessonKind.dedicated)).all()
    overrides = 0
    for series in dedicated:
        main_school = school_of[series.main_classroom_id]
        assert series.receivers
        for r in series.receivers:
            recv_school = school_of[r.classroom_id]
            assert r.assistant_id is not None and teacher_school[r.assistant_id] == recv_school
            paired = any(
                {p.urban_school_id, p.rural_school_id} == {main_school, recv_school}
                and p.term_id in (None, series.term_id)
                and (not p.subjects or series.subject in p.subjects)
                and p.urban_classroom_id in (None, series.main_classroom_id, r.classroom_id)
                and p.rural_classroom_id in (None, series.main_classroom_id, r.classroom_id)
                for p in pairings
            )
            if not paired:
                assert (series.pairing_override_reason or "").strip()
                overrides += 1
    assert overrides <= 5


def test_the_series_use_the_features_of_the_three_kinds(session: Session) -> None:
    assert session.scalar(select(func.count()).where(SeriesReceiver.receiving_period.is_not(None))) > 0
    assert session.scalar(select(func.count()).where(LessonSeries.kind == LessonKind.master,
                                                     LessonSeries.week_pattern != WeekPattern.every)) > 0
    famous = session.scalars(select(LessonSeries).where(LessonSeries.kind == LessonKind.famous_school)).all()
    assert all(s.recording for s in famous)
    assert any(s.participants and s.receivers for s in famous)
    assert session.scalar(select(func.count()).where(LessonSeries.status == SeriesStatus.pending)) > 0


def test_the_term_is_in_progress(loaded: Loaded, session: Session) -> None:
    now = loaded.summary.now
    assert now is not None
    term = session.scalars(select(Term)).one()
    assert term.start_date <= now.date() <= term.end_date
    ended = session.execute(select(LessonInstance.status, func.count()).where(LessonInstance.ends_at < now)
                            .group_by(LessonInstance.status)).all()
    by_status = dict(ended)
    assert InstanceStatus.scheduled not in by_status
    total = sum(by_status.values())
    if total >= 200:
        assert 0.8 <= by_status.get(InstanceStatus.held, 0) / total <= 0.97
    # Cancelled lessons free their slots; the others hold at least a teacher and a classroom.
    held_by_cancelled = session.scalar(
        select(func.count(Occupancy.id)).join(LessonInstance, LessonInstance.id == Occupancy.instance_id)
        .where(LessonInstance.status == InstanceStatus.cancelled))
    assert held_by_cancelled == 0
    for inst in session.scalars(select(LessonInstance).where(LessonInstance.status == InstanceStatus.held).limit(50)):
        assert inst.room_opened_at and inst.started_at and inst.room_closed_at
        assert inst.starts_at <= inst.started_at <= inst.ends_at


def test_today_has_lessons_for_the_demo_accounts(loaded: Loaded, session: Session) -> None:
    today = loaded.summary.today
    assert loaded.summary.today_lessons >= 5
    teacher = session.scalars(select(User).where(User.username == "teacher")).one()
    mine = session.scalars(select(LessonInstance).where(LessonInstance.day == today,
                                                        LessonInstance.teacher_id == teacher.id)).all()
    assert mine
    main = session.scalars(select(User).where(User.username == "terminal_main")).one()
    recv = session.scalars(select(User).where(User.username == "terminal_recv")).one()
    assert any(i.main_classroom_id == main.classroom_id
               and recv.classroom_id in {r.classroom_id for r in i.series.receivers} for i in mine)
    student = session.scalars(select(User).where(User.username == "student")).one()
    enrolled = session.scalars(select(LessonSeries).join(SeriesParticipant)
                               .where(SeriesParticipant.user_id == student.id)).all()
    assert any(s.kind is LessonKind.famous_school for s in enrolled)
    assert session.scalar(select(func.count(DemandOffer.id))) == session.scalar(select(func.count(DemandOrder.id)))


def test_the_printed_accounts_can_log_in(loaded: Loaded) -> None:
    from server.main import create_app

    accounts = loaded.summary.accounts
    names = {a.username for a in accounts}
    assert {"admin", "city_admin", "school_admin", "rural_admin", "teacher", "terminal_main", "terminal_recv",
            "student", "researcher", "researcher_city"} <= names
    for a in accounts:
        assert a.username in loaded.output and a.password == PASSWORD
    app = create_app(loaded.settings, migrate=False, run_lifecycle=False)
    roles = {}
    with TestClient(app) as client:
        for a in accounts:
            res = client.post("/api/v1/auth/login", json={"username": a.username, "password": a.password})
            assert res.status_code == 200, (a.username, res.text)
            roles[a.username] = res.json()["user"]
        bad = client.post("/api/v1/auth/login", json={"username": "teacher", "password": "wrong"})
        assert bad.status_code == 401
    assert roles["admin"]["role"] == "admin" and roles["admin"]["region_id"] is None
    assert roles["city_admin"]["region_id"] is not None
    assert roles["school_admin"]["school_id"] is not None
    assert roles["terminal_main"]["role"] == "terminal" and roles["terminal_main"]["classroom_id"] is not None
    assert roles["student"]["role"] == "student"
    assert roles["researcher"]["region_id"] != roles["researcher_city"]["region_id"]


def test_loading_twice_does_not_duplicate(loaded: Loaded) -> None:
    again, output = _load(loaded.settings, if_empty=True)
    assert not again.loaded
    assert "已经在了" in output
    assert (again.users, again.series, again.instances) == (loaded.summary.users, loaded.summary.series,
                                                           loaded.summary.instances)
    forced, output = _load(loaded.settings, if_empty=False)
    assert not forced.loaded and forced.series == loaded.summary.series


@pytest.mark.parametrize("today", [
    date(2026, 11, 23),  # a Monday in term: nothing bent
    date(2026, 11, 22),  # a Sunday in term
    date(2026, 10, 5),  # a 国庆 holiday
    date(2027, 3, 13),  # a Saturday after the term
    date(2025, 5, 6),  # long before it
])
def test_the_term_always_makes_today_a_teaching_day(today: date) -> None:
    plan = plan_term(today)
    cal = TermCalendar(plan.start, plan.end, frozenset(d for d, _ in plan.holidays),
                       {d: w for d, w, _ in plan.makeup})
    assert plan.start <= today <= plan.end
    assert (plan.end - plan.start).days > 100
    assert timetable_weekday(cal, today) in range(1, 6)
    assert plan.start.weekday() == date(2026, 9, 1).weekday()
    assert bool(plan.note) == (today != date(2026, 11, 23))
    assert (plan.name == "2026—2027学年第一学期") == (date(2026, 9, 1) <= today <= date(2027, 1, 22))


@pytest.mark.postgres
def test_loads_on_postgresql_on_a_weekend_outside_the_term(pg_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = pg_server.create_database(f"sanke_demo_{os.getpid()}")
    settings = Settings(data_dir=tmp_path, database_url=url, secret_key="x" * 32)
    saturday = datetime(2027, 3, 13, 9, 15)
    summary, output = _load(settings, now=saturday)
    assert summary.loaded and summary.series >= 300 and summary.today_lessons > 0
    assert "平移" in output and "调课日" in output
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as s:
            term = s.scalars(select(Term)).one()
            assert term.start_date <= saturday.date() <= term.end_date
            assert s.scalar(OVERLAPS) == 0
    finally:
        engine.dispose()
