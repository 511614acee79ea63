"""The scheduler benchmark builds what it was asked for and times real answers.

A tiny province (scale 0.005) on SQLite only, a few samples: enough to make
sure the benchmark cannot silently measure nothing.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from bench.province import STATUSES, TERM_START, Province, Sizes
from bench.scheduler import Build, build, conflict_candidates, measure
from scheduler.access import Scope
from scheduler.bookings import SeriesContext, plan_series
from scheduler.conflicts import find_conflicts
from scheduler.models import Role
from scheduler.reports import term_summary
from server.core.db import make_engine, make_session_factory

SCALE = 0.005


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Build]:
    url = f"sqlite:///{Path(tmp_path_factory.mktemp('bench')) / 'bench.db'}"
    return url, build(url, Sizes.for_scale(SCALE), log=lambda _line: None)


def test_the_database_holds_the_requested_province(built: tuple[str, Build]) -> None:
    _url, b = built
    sizes = Sizes.for_scale(SCALE)
    assert (b.rows["classroom"], b.rows["pairing"], b.rows["lesson_instance"]) == (150, 75, 2500)
    assert b.rows["classroom"] == sizes.classrooms
    assert b.rows["pairing"] == sizes.pairings
    assert b.rows["lesson_instance"] == sizes.instances
    assert b.rows["school"] == sizes.schools
    assert b.rows == b.province.counts()
    # teacher + main classroom + receivers for every lesson that was not cancelled
    assert b.rows["occupancy"] > 3 * b.rows["lesson_instance"] * 0.9


def test_a_clashing_candidate_is_reported_and_a_free_one_is_not(built: tuple[str, Build]) -> None:
    url, b = built
    engine = make_engine(url)
    try:
        factory = make_session_factory(engine)
        candidates = conflict_candidates(b.province, random.Random(5), 8)
        assert {c.expect_conflict for c in candidates} == {True, False}
        for cand in candidates:
            with factory() as session:
                ctx = SeriesContext(session, term_id=cand.spec.term_id,
                                    main_classroom_id=cand.spec.main_classroom_id, receivers=cand.spec.receivers)
                slots = [s for p in plan_series(session, cand.spec, ctx, not_before=TERM_START) for s in p.slots]
                assert len(slots) >= 19 * 3
                items = find_conflicts(session, slots)
            assert bool(items) is cand.expect_conflict, cand
    finally:
        engine.dispose()


def test_every_measurement_times_calls_that_return_something(built: tuple[str, Build]) -> None:
    url, b = built
    timings = measure(url, b.province, samples=5)
    conflict, day, report = timings["conflict_check"], timings["district_day"], timings["term_report"]
    assert [len(t.samples_ms) for t in (conflict, day, report)] == [5, 5, 5]
    assert all(ms > 0 for t in (conflict, day, report) for ms in t.samples_ms)
    assert conflict.notes["wrong_answers"] == 0
    assert conflict.notes["candidates_conflicting"] > 0 and conflict.notes["candidates_free"] > 0
    assert day.notes["lessons_per_view_avg"] > 0
    assert report.notes["units_per_report_avg"] > 0
    assert 0.85 < report.notes["held_rate_avg"] < 1.0


def _expected_by_district(pv: Province) -> dict[int, Counter[str]]:
    """Each lesson counts once for every district that gives or receives it."""
    out: dict[int, Counter[str]] = {}
    for s in pv.series:
        districts = {pv.school_district[pv.school_of_room[r]] for r in (s.main, *s.receivers)}
        for k in range(len(s.days)):
            status = STATUSES[pv.statuses[s.first_instance + k]]
            for d in districts:
                c = out.setdefault(d, Counter())
                c["total"] += 1
                c[status] += 1
                c[s.kind] += 1
    return out


def test_term_summary_counts_each_lesson_for_every_district_taking_part(built: tuple[str, Build]) -> None:
    url, b = built
    pv = b.province
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session:
            everywhere = Scope(pv.admin_id, Role.admin, None, None, None, everywhere=True)
            rows = term_summary(session, everywhere, term_id=pv.term_id)
            city = pv.city_ids[0]
            as_city_researcher = term_summary(
                session, Scope(pv.researcher_of_region[city], Role.researcher, pv.region_path[city], None, None),
                term_id=pv.term_id, region_id=city)
            district = pv.district_ids[0]
            per_school = term_summary(session, everywhere, term_id=pv.term_id, region_id=district)
    finally:
        engine.dispose()
    expected = _expected_by_district(pv)
    got = {r.unit_id: r for r in rows}
    assert set(got) == set(expected)
    for did, c in expected.items():
        r = got[did]
        assert r.unit == "district"
        assert (r.total, r.scheduled, r.live, r.held, r.missed, r.cancelled) == (
            c["total"], c["scheduled"], c["live"], c["held"], c["missed"], c["cancelled"])
        assert (r.dedicated, r.master, r.famous_school) == (c["dedicated"], c["master"], c["famous_school"])
        assert r.held_rate == pytest.approx(c["held"] / (c["held"] + c["missed"]))
    assert {r.unit_id for r in as_city_researcher} == {d for d in expected if pv.city_of_district[d] == city}
    assert per_school and all(r.unit == "school" and pv.school_district[r.unit_id] == district for r in per_school)
