"""Scheduler benchmark at province scale, on PostgreSQL and SQLite.

    .venv/bin/python -m bench.scheduler [--engine postgresql|sqlite|both] [--scale 1.0] [--samples 200]

Builds the schema with the real migrations (``server.core.migrate.upgrade``,
exclusion constraint / trigger included), bulk-loads the synthetic province of
``bench.province`` (COPY on PostgreSQL, ``executemany`` in one transaction on
SQLite), runs ANALYZE, then times three things with the real functions:

* conflict check for booking a new weekly series: ``find_conflicts`` over the
  slots ``plan_series`` makes for a whole term (about 19 dates x 3-4
  resources), half of the candidates clashing with the timetable, half free;
* one district's day timetable: ``list_instances`` for a district and a date,
  as a researcher of its city sees it;
* a term report: ``scheduler.reports.term_summary`` for a city.

PostgreSQL is a throwaway server on 127.0.0.1 (``tests.utils.pgserver``) and
SQLite a temporary file; both are removed at the end.  Figures go to stdout
and to ``bench/results/scheduler-<engine>.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from bench.province import COLUMNS, TABLES, TERM_START, TODAY, Province, Sizes, generate
from scheduler.access import Scope
from scheduler.bookings import ReceiverSpec, SeriesContext, SeriesSpec, plan_series
from scheduler.conflicts import find_conflicts
from scheduler.models import Base, LessonKind, Role
from scheduler.queries import InstanceFilter, list_instances
from scheduler.reports import term_summary
from server.core.db import make_engine, make_session_factory
from server.core.migrate import upgrade

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS_MS = {"conflict_check": 5.0, "district_day": 50.0}
"""p95 targets on PostgreSQL (the issue)."""
WARMUP = 3
"""Untimed calls before each measurement (statement caches, connection)."""


# ---------------------------------------------------------------- build


@dataclass
class Build:
    engine: str
    sizes: Sizes
    province: Province
    seconds: dict[str, float] = field(default_factory=dict)
    """Phase -> seconds (migrate, generate, load:<table>, constraints, analyze, total)."""
    rows: dict[str, int] = field(default_factory=dict)
    """Rows per table, counted in the database after the load."""


def build(url: str, sizes: Sizes, *, seed: int = 20261116, log: Callable[[str], None] = print) -> Build:
    """Migrate an empty database, load a generated province into it and ANALYZE."""
    engine = make_engine(url)
    dialect = engine.dialect.name
    b = Build(dialect, sizes, Province(sizes))
    started = time.perf_counter()
    try:
        with _phase(b, "migrate", log):
            upgrade(url)
        with _phase(b, "generate", log):
            b.province = generate(sizes, seed)
        if dialect == "postgresql":
            _load_postgresql(engine, b, log)
        else:
            _load_sqlite(engine, b, log)
        b.seconds["total"] = time.perf_counter() - started
        with engine.connect() as conn:
            b.rows = {t: int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in TABLES}
    finally:
        engine.dispose()
    return b


@contextmanager
def _phase(b: Build, name: str, log: Callable[[str], None]) -> Iterator[None]:
    t0 = time.perf_counter()
    yield
    b.seconds[name] = round(time.perf_counter() - t0, 3)
    log(f"  {b.engine:<10} {name:<28} {b.seconds[name]:8.2f} s")


# Secondary indexes and the no-overlap constraint of the two big tables are dropped
# before COPY and re-created from their own definitions afterwards: one sorted
# build instead of ~2 million single-row index inserts.  Re-adding the exclusion
# constraint checks every loaded row, so it is in force on the final data.
_BIG_TABLES = ("lesson_instance", "occupancy")


def _load_postgresql(engine: Engine, b: Build, log: Callable[[str], None]) -> None:
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        with conn.cursor() as cur:
            cur.execute("SET maintenance_work_mem = '512MB'")
            cur.execute("SET max_parallel_maintenance_workers = 2")
            saved = _drop_secondary(cur)
            for table in TABLES:
                cols = ", ".join(COLUMNS[table])
                with _phase(b, f"load:{table}", log):
                    with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                        for row in b.province.table_rows(table):
                            copy.write_row(row)
                    cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                f"(SELECT coalesce(max(id), 1) FROM {table}))")
            with _phase(b, "indexes+constraints", log):
                for _name, ddl in saved:
                    cur.execute(ddl)
            conn.commit()
        conn.autocommit = True
        with _phase(b, "analyze", log):
            conn.execute("VACUUM ANALYZE")
        conn.autocommit = False
        _check_no_overlap_rule(conn)
    finally:
        raw.close()


def _drop_secondary(cur: Any) -> list[tuple[str, str]]:
    """Drop the big tables' non-PK indexes and exclusion constraints; return DDL to re-create them."""
    saved: list[tuple[str, str]] = []
    cur.execute(
        "SELECT c.conname, c.conrelid::regclass::text, pg_get_constraintdef(c.oid) FROM pg_constraint c "
        "WHERE c.contype = 'x' AND c.conrelid::regclass::text = ANY(%s)", (list(_BIG_TABLES),))
    for name, table, definition in cur.fetchall():
        saved.append((name, f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}"))
        cur.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
    cur.execute(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid "
        "WHERE i.indrelid::regclass::text = ANY(%s) AND c.oid IS NULL", (list(_BIG_TABLES),))
    for name, ddl in cur.fetchall():
        saved.append((name, ddl))
        cur.execute(f"DROP INDEX {name}")
    return saved


def _check_no_overlap_rule(conn: Any) -> None:
    found = conn.execute("SELECT count(*) FROM pg_constraint WHERE conname = 'occupancy_no_overlap' "
                         "AND contype = 'x' AND convalidated").fetchone()[0]
    if found != 1:
        raise RuntimeError("occupancy_no_overlap is not in force after the load")


def _sqlite_converters(table: str, dialect: Any) -> list[Callable[[Any], Any] | None]:
    """The exact storage format SQLAlchemy uses on SQLite (dates and times are strings)."""
    out: list[Callable[[Any], Any] | None] = []
    for col in COLUMNS[table]:
        type_ = Base.metadata.tables[table].c[col].type
        name = type(type_).__name__
        if name in ("Date", "DateTime", "Time"):
            process = type_.dialect_impl(dialect).bind_processor(dialect)
            cache: dict[Any, Any] = {}

            def convert(v: Any, process: Any = process, cache: dict[Any, Any] = cache) -> Any:
                if v is None:
                    return None
                found = cache.get(v)
                if found is None:
                    found = cache[v] = process(v)
                return found

            out.append(convert)
        else:
            out.append(None)
    return out


def _sqlite_rows(table: str, rows: Iterable[tuple], dialect: Any) -> Iterator[tuple]:  # type: ignore[type-arg]
    conv = _sqlite_converters(table, dialect)
    if not any(conv):
        yield from rows
        return
    pairs = list(enumerate(conv))
    for row in rows:
        yield tuple(c(row[i]) if c else row[i] for i, c in pairs)


def _load_sqlite(engine: Engine, b: Build, log: Callable[[str], None]) -> None:
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        conn.execute("PRAGMA cache_size = -262144")  # 256 MB for the load
        conn.execute("BEGIN")
        for table in TABLES:
            cols = COLUMNS[table]
            sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
            with _phase(b, f"load:{table}", log):
                conn.executemany(sql, _sqlite_rows(table, b.province.table_rows(table), engine.dialect))
        conn.execute("COMMIT")
        with _phase(b, "analyze", log):
            conn.execute("ANALYZE")
    finally:
        raw.close()


# ---------------------------------------------------------------- candidates


@dataclass(frozen=True)
class Candidate:
    """A weekly series someone might book, and whether the timetable already clashes with it."""

    spec: SeriesSpec
    expect_conflict: bool


def conflict_candidates(pv: Province, rng: random.Random, n: int) -> list[Candidate]:
    """``n`` candidates, alternately clashing (reusing a teacher, main or receiving classroom
    of an existing series at its slot) and free (every resource free at that slot)."""
    out: list[Candidate] = []
    for i in range(n):
        make = _clashing if i % 2 == 0 else _free
        for _ in range(100):  # bounded retries
            spec = make(pv, rng)
            if spec is not None:
                out.append(Candidate(spec, expect_conflict=make is _clashing))
                break
        else:
            raise RuntimeError(f"could not draw a {'clashing' if make is _clashing else 'free'} candidate")
    return out


def _spec(pv: Province, teacher: int, main: int, receivers: list[int], weekday: int, period: int) -> SeriesSpec:
    return SeriesSpec(kind=LessonKind.dedicated, title="基准测试课", subject="数学", grade="三年级",
                      term_id=pv.term_id, main_classroom_id=main, main_teacher_id=teacher, weekday=weekday,
                      period_from=period, period_to=period,
                      receivers=tuple(ReceiverSpec(r) for r in receivers))


def _periods_ok(pv: Province, rooms: Iterable[int], period: int) -> bool:
    return all(period <= pv.school_periods[pv.school_of_room[r]] for r in rooms)


def _rural_rooms(pv: Province, rng: random.Random, school: int, exclude: Iterable[int], k: int) -> list[int]:
    partners = pv.rural_partners.get(school) or [s for s, kind in pv.school_kind.items() if kind == "rural"
                                                 and pv.school_district[s] == pv.school_district[school]]
    skip = set(exclude)
    rooms = [r for r in pv.rooms_of_school[rng.choice(partners)] if r not in skip]
    return rng.sample(rooms, min(k, len(rooms)))


def _clashing(pv: Province, rng: random.Random) -> SeriesSpec | None:
    s = rng.choice(pv.series)
    if s.days[-1] < TODAY:  # keep to series with lessons still to come (never cancelled)
        return None
    how = rng.choice(("teacher", "main", "receiver"))
    if how == "receiver":
        taken = rng.choice(s.receivers)
        urban = pv.urban_partners.get(pv.school_of_room[taken]) or [s.school]
        school = rng.choice(urban)
        main = rng.choice(pv.rooms_of_school[school])
        teacher = rng.choice(pv.teachers_of_school[school])
        receivers = [taken] + _rural_rooms(pv, rng, school, (taken, main), rng.randint(0, 1))
        if main == taken:
            return None
    else:
        teacher = s.teacher if how == "teacher" else rng.choice(pv.teachers_of_school[s.school])
        main = s.main if how == "main" else rng.choice(pv.rooms_of_school[s.school])
        receivers = _rural_rooms(pv, rng, s.school, (main,), rng.randint(1, 2))
    if not receivers or not _periods_ok(pv, (main, *receivers), s.period_from):
        return None
    return _spec(pv, teacher, main, receivers, s.weekday, s.period_from)


def _free(pv: Province, rng: random.Random) -> SeriesSpec | None:
    school, _rural = rng.choice(pv.pairings)
    main = rng.choice(pv.rooms_of_school[school])
    teacher = rng.choice(pv.teachers_of_school[school])
    receivers = _rural_rooms(pv, rng, school, (main,), rng.randint(1, 2))
    if not receivers:
        return None
    max_period = min(pv.school_periods[pv.school_of_room[r]] for r in (main, *receivers))
    cells = pv.free_cells((teacher, -main, *(-r for r in receivers)), max_period)
    if not cells:
        return None
    weekday, period = rng.choice(cells)
    return _spec(pv, teacher, main, receivers, weekday, period)


# ---------------------------------------------------------------- measurements


@dataclass
class Timing:
    name: str
    samples_ms: list[float] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def pct(self, p: float) -> float:
        """Nearest-rank percentile, in ms."""
        if not self.samples_ms:
            return float("nan")
        ordered = sorted(self.samples_ms)
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    def summary(self) -> dict[str, Any]:
        return {"n": len(self.samples_ms), "p50_ms": round(self.pct(50), 3), "p95_ms": round(self.pct(95), 3),
                "p99_ms": round(self.pct(99), 3), "max_ms": round(max(self.samples_ms, default=float("nan")), 3),
                **self.notes}


def _budget_left(started: float, budget_s: float, done: int, minimum: int = 5) -> bool:
    return done < minimum or time.perf_counter() - started < budget_s


def measure_conflicts(factory: sessionmaker[Session], pv: Province, *, samples: int, rng: random.Random,
                      budget_s: float = 300.0) -> Timing:
    """Time ``find_conflicts`` over a whole term's slots of a candidate weekly series.

    The slots come from the real ``SeriesContext`` / ``plan_series`` (untimed); every
    result is checked against what the generated timetable says it must be."""
    t = Timing("conflict_check")
    candidates = conflict_candidates(pv, rng, samples + WARMUP)
    wrong: list[str] = []
    slots_n: list[int] = []
    started = time.perf_counter()
    for i, cand in enumerate(candidates):
        if i >= WARMUP and not _budget_left(started, budget_s, len(t.samples_ms)):
            break
        with factory() as session:
            planned = plan_series(session, cand.spec, SeriesContext(
                session, term_id=cand.spec.term_id, main_classroom_id=cand.spec.main_classroom_id,
                receivers=cand.spec.receivers), not_before=TERM_START)  # a series booked for the whole term
            slots = [s for p in planned for s in p.slots]
            t0 = time.perf_counter()
            items = find_conflicts(session, slots)
            elapsed = (time.perf_counter() - t0) * 1000
            session.rollback()
        if bool(items) != cand.expect_conflict:
            wrong.append(f"{cand.spec} expected conflict={cand.expect_conflict}, got {len(items)} items")
        if i >= WARMUP:
            t.samples_ms.append(elapsed)
            slots_n.append(len(slots))
    checked = len(t.samples_ms) + min(WARMUP, len(candidates))
    t.notes = {"candidates_conflicting": sum(c.expect_conflict for c in candidates[:checked]),
               "candidates_free": sum(not c.expect_conflict for c in candidates[:checked]),
               "wrong_answers": len(wrong), "slots_per_check_avg": round(sum(slots_n) / max(1, len(slots_n)), 1)}
    if wrong:
        t.notes["first_wrong"] = wrong[0]
    return t


def _researcher_scope(pv: Province, region_id: int) -> Scope:
    return Scope(pv.researcher_of_region[region_id], Role.researcher, pv.region_path[region_id], None, None)


def measure_district_day(factory: sessionmaker[Session], pv: Province, *, samples: int, rng: random.Random,
                         budget_s: float = 300.0) -> Timing:
    """Time ``list_instances`` for one district and one teaching day (a researcher of its city)."""
    t = Timing("district_day")
    rows_seen: list[int] = []
    started = time.perf_counter()
    for i in range(samples + WARMUP):
        if i >= WARMUP and not _budget_left(started, budget_s, len(t.samples_ms)):
            break
        district = rng.choice(pv.district_ids)
        day: date = rng.choice(pv.teaching_days)
        scope = _researcher_scope(pv, pv.city_of_district[district])
        flt = InstanceFilter(region_id=district, date_from=day, date_to=day)
        with factory() as session:
            t0 = time.perf_counter()
            _rows, total = list_instances(session, scope, flt, limit=500)
            elapsed = (time.perf_counter() - t0) * 1000
            session.rollback()
        if i >= WARMUP:
            t.samples_ms.append(elapsed)
            rows_seen.append(total)
    t.notes = {"lessons_per_view_avg": round(sum(rows_seen) / max(1, len(rows_seen)), 1),
               "lessons_per_view_max": max(rows_seen, default=0)}
    return t


def measure_term_report(factory: sessionmaker[Session], pv: Province, *, samples: int, rng: random.Random,
                        budget_s: float = 300.0) -> Timing:
    """Time ``term_summary`` for a city (per-district rows), as a researcher of that city."""
    t = Timing("term_report")
    units: list[int] = []
    held_rates: list[float] = []
    started = time.perf_counter()
    for i in range(samples + WARMUP):
        if i >= WARMUP and not _budget_left(started, budget_s, len(t.samples_ms)):
            break
        city = rng.choice(pv.city_ids)
        with factory() as session:
            t0 = time.perf_counter()
            report = term_summary(session, _researcher_scope(pv, city), term_id=pv.term_id, region_id=city)
            elapsed = (time.perf_counter() - t0) * 1000
            session.rollback()
        if i >= WARMUP:
            t.samples_ms.append(elapsed)
            units.append(len(report))
            held_rates.extend(r.held_rate for r in report if r.held_rate is not None)
    t.notes = {"units_per_report_avg": round(sum(units) / max(1, len(units)), 1),
               "held_rate_avg": round(sum(held_rates) / max(1, len(held_rates)), 4)}
    return t


def measure(url: str, pv: Province, *, samples: int, seed: int = 7, budget_s: float = 300.0,
            report_samples: int | None = None) -> dict[str, Timing]:
    engine = make_engine(url)
    try:
        factory = make_session_factory(engine)
        out = {}
        out["conflict_check"] = measure_conflicts(factory, pv, samples=samples, rng=random.Random(seed),
                                                  budget_s=budget_s)
        out["district_day"] = measure_district_day(factory, pv, samples=samples, rng=random.Random(seed + 1),
                                                   budget_s=budget_s)
        out["term_report"] = measure_term_report(factory, pv, samples=report_samples or samples,
                                                 rng=random.Random(seed + 2), budget_s=budget_s)
        return out
    finally:
        engine.dispose()


# ---------------------------------------------------------------- running


@contextmanager
def database(engine_name: str) -> Iterator[str]:
    """A fresh, empty database URL: a throwaway PostgreSQL server or a temporary SQLite file."""
    if engine_name == "postgresql":
        from tests.utils.pgserver import PostgresServer

        server = PostgresServer().start()
        try:
            yield server.create_database("sanke_bench")
        finally:
            server.stop()
    else:
        with tempfile.TemporaryDirectory(prefix="sanke-bench-") as tmp:
            yield f"sqlite:///{Path(tmp) / 'bench.db'}"


def run_engine(engine_name: str, sizes: Sizes, *, samples: int, budget_s: float,
               report_samples: int | None) -> dict[str, Any]:
    print(f"[{engine_name}] building {sizes}", flush=True)
    with database(engine_name) as url:
        b = build(url, sizes, log=lambda m: print(m, flush=True))
        print(f"[{engine_name}] rows: " + ", ".join(f"{t}={n}" for t, n in b.rows.items()), flush=True)
        expected = b.province.counts()
        if b.rows != expected:
            raise RuntimeError(f"loaded rows differ from generated: {b.rows} != {expected}")
        print(f"[{engine_name}] measuring ({samples} samples each)", flush=True)
        timings = measure(url, b.province, samples=samples, budget_s=budget_s, report_samples=report_samples)
    result: dict[str, Any] = {
        "engine": engine_name,
        "sizes": asdict(sizes),
        "build_s": round(b.seconds["total"], 2),
        "build_phases_s": b.seconds,
        "rows": b.rows,
        **{name: timing.summary() for name, timing in timings.items()},
        "host": {"python": platform.python_version(), "machine": platform.machine(),
                 "cpus": os.cpu_count()},
    }
    if engine_name == "postgresql":
        result["targets_p95_ms"] = {k: {"target": v, "met": result[k]["p95_ms"] < v} for k, v in TARGETS_MS.items()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"scheduler-{engine_name}.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    return result


def format_table(results: list[dict[str, Any]]) -> str:
    head = (f"{'engine':<11} {'build_s':>8} {'instances':>10} {'occupancy':>10}  "
            f"{'conflict p50/p95/p99 ms':>24}  {'district-day p50/p95/p99 ms':>28}  "
            f"{'term-report p50/p95/p99 ms':>27}")
    lines = [head, "-" * len(head)]

    def trio(r: dict[str, Any]) -> str:
        return f"{r['p50_ms']:.2f}/{r['p95_ms']:.2f}/{r['p99_ms']:.2f}"

    for r in results:
        lines.append(f"{r['engine']:<11} {r['build_s']:>8.1f} {r['rows']['lesson_instance']:>10} "
                     f"{r['rows']['occupancy']:>10}  {trio(r['conflict_check']):>24}  "
                     f"{trio(r['district_day']):>28}  {trio(r['term_report']):>27}")
    for r in results:
        c, d, t = r["conflict_check"], r["district_day"], r["term_report"]
        lines.append(
            f"{r['engine']}: samples {c['n']}/{d['n']}/{t['n']}; conflict candidates "
            f"{c['candidates_conflicting']} clashing + {c['candidates_free']} free, wrong answers "
            f"{c['wrong_answers']}, {c['slots_per_check_avg']} slots/check; district-day "
            f"{d['lessons_per_view_avg']} lessons/view (max {d['lessons_per_view_max']}); term report "
            f"{t['units_per_report_avg']} districts/report, held rate {t['held_rate_avg']:.1%}")
        for name, tgt in r.get("targets_p95_ms", {}).items():
            lines.append(f"{r['engine']}: target {name} p95 < {tgt['target']:g} ms: "
                         f"{'met' if tgt['met'] else 'NOT MET'} ({r[name]['p95_ms']:.2f} ms)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.scheduler", description=__doc__.split("\n\n")[0])
    ap.add_argument("--engine", choices=("postgresql", "sqlite", "both"), default="both")
    ap.add_argument("--scale", type=float, default=1.0, help="1.0 = 30,000 classrooms, 500,000 lessons")
    ap.add_argument("--samples", type=int, default=200, help="timed calls per measurement")
    ap.add_argument("--report-samples", type=int, default=None,
                    help="timed term reports (default: --samples)")
    ap.add_argument("--budget-s", type=float, default=300.0,
                    help="stop a measurement after this many seconds (at least 5 samples)")
    args = ap.parse_args(argv)
    if args.samples < 1:
        ap.error("--samples must be at least 1")
    sizes = Sizes.for_scale(args.scale)
    engines = ("postgresql", "sqlite") if args.engine == "both" else (args.engine,)
    results = [run_engine(e, sizes, samples=args.samples, budget_s=args.budget_s,
                          report_samples=args.report_samples) for e in engines]
    print()
    print(format_table(results))
    print(f"\nJSON: {', '.join(str(RESULTS / f'scheduler-{e}.json') for e in engines)}")
    wrong = sum(r["conflict_check"]["wrong_answers"] for r in results)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
