"""The demo data comes with real teaching records, patrol visits and evaluations, so the reports show something."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scheduler import record_reports as rr
from scheduler import records
from scheduler.access import scope_of
from scheduler.models import InstanceStatus, LessonInstance, User
from scheduler.patrol_models import Evaluation, PatrolVisit
from scheduler.records_models import (
    AttendanceRecord,
    RecordStatus,
    SessionEvent,
    TeachingRecord,
)
from server.core.config import Settings
from server.core.db import make_engine, make_session_factory
from server.demo import PASSWORD, RECORD_DAYS, DemoSummary, load_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, DemoSummary]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("demo-records"), secret_key="x" * 32)
    with contextlib.redirect_stdout(io.StringIO()):
        summary = load_demo(settings)
    return settings, summary


@pytest.fixture
def session(demo: tuple[Settings, DemoSummary]) -> Iterator[Session]:
    engine = make_engine(demo[0].effective_database_url)
    with make_session_factory(engine)() as s:
        yield s
    engine.dispose()


def test_the_demo_stays_fast(demo: tuple[Settings, DemoSummary]) -> None:
    assert demo[1].seconds < 90, demo[1].seconds  # ~30 s on a quiet machine; the bound leaves room for a busy one


def test_every_lesson_of_the_past_month_has_a_record_that_agrees_with_its_status(
        session: Session, demo: tuple[Settings, DemoSummary]) -> None:
    now = demo[1].now
    assert now is not None
    rows = session.execute(
        select(LessonInstance.status, TeachingRecord.status)
        .outerjoin(TeachingRecord, TeachingRecord.instance_id == LessonInstance.id)
        .where(LessonInstance.room_closed_at.is_not(None), LessonInstance.status != InstanceStatus.cancelled,
               LessonInstance.day >= now.date() - timedelta(days=RECORD_DAYS))
    ).all()
    assert len(rows) > 800
    for status, record in rows:
        assert record is not None
        if status is InstanceStatus.missed:
            assert record is RecordStatus.missed
        else:
            assert record in (RecordStatus.held, RecordStatus.partly_held)
    assert session.scalar(select(func.count()).select_from(AttendanceRecord)) > 2500
    assert session.scalar(select(func.count()).select_from(SessionEvent)
                          .where(SessionEvent.kind == "link_quality")) > 10_000


def test_a_stored_record_is_the_computation_of_its_log(session: Session, demo: tuple[Settings, DemoSummary]) -> None:
    iid = session.scalar(select(SessionEvent.instance_id).where(SessionEvent.kind == "link_quality")
                         .order_by(SessionEvent.id.desc()).limit(1))
    stored = session.get(TeachingRecord, iid)
    assert stored is not None
    fresh = records.compute(session, iid, now=demo[1].now)
    assert (fresh.status, fresh.actual_start, fresh.duration_s, fresh.attended_receivers) == (
        stored.status, stored.actual_start, stored.duration_s, stored.attended_receivers)
    linked = [a for a in fresh.attendance if a.link_samples]
    assert linked and all(a.rtt_p50_ms is not None for a in linked)


def test_the_month_report_is_real_and_consistent(session: Session, demo: tuple[Settings, DemoSummary]) -> None:
    now = demo[1].now
    assert now is not None
    admin = session.scalar(select(User).where(User.username == "city_admin"))
    scope = scope_of(session, admin)
    f = rr.ReportFilter(now.date() - timedelta(days=29), now.date())
    s = rr.summary(session, scope, f, now=now)
    t = s.total
    assert t.due > 500 and t.unrecorded == 0
    assert 0.85 < t.held_rate < 1 and 0.8 < t.on_time_rate < 1 and 0.8 < t.attendance_rate < 1
    assert 0.1 < t.patrol_rate < 0.5 and s.average_score is not None and 60 < s.average_score <= 100
    assert sum(k.scheduled for k in s.by_kind.values()) == t.scheduled
    assert sum(b.tally.scheduled for b in s.series) == t.scheduled
    kinds = rr.breakdown(session, scope, f, "kind", now=now)
    assert sum(u.tally.held for u in kinds) == t.held
    districts = rr.breakdown(session, scope, f, "region", now=now)
    assert len(districts) == 3
    assert sum(u.tally.expected for u in districts) == t.expected  # each receiver at its own district
    p = rr.patrol_coverage(session, scope, f, now=now)
    assert p.patrolled == t.patrolled and p.visits >= p.patrolled > 0 and len(p.visitors) >= 3
    assert session.scalar(select(func.count()).select_from(Evaluation)) == sum(v.evaluations for v in p.visitors)
    assert session.scalar(select(func.count()).select_from(PatrolVisit)) == p.visits


def test_the_researcher_account_sees_its_district_report(demo: tuple[Settings, DemoSummary],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from server.main import create_app

    monkeypatch.setattr("scheduler.clock.now", lambda: demo[1].now)
    settings = demo[0]
    with TestClient(create_app(settings, migrate=False, run_lifecycle=False)) as client:
        token = client.post("/api/v1/auth/login", json={"username": "researcher", "password": PASSWORD}).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        body = client.get("/api/v1/reports/summary", headers=headers).json()
        assert body["total"]["due"] > 100 and body["total"]["held_rate"] > 0.8
        schools = client.get("/api/v1/reports/breakdown", params={"by": "region"}, headers=headers).json()["data"]
        assert len(schools) >= 1
        mine = client.get("/api/v1/reports/patrol", headers=headers).json()
        assert len(mine["visitors"]) == 1 and mine["visitors"][0]["visits"] > 0
