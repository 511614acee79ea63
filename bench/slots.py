"""Slot finder (智能排课) benchmark at province scale, on PostgreSQL.

    .venv/bin/python -m bench.slots [--scale 1.0] [--samples 200] [--engine postgresql|sqlite]

Builds the synthetic province of ``bench.province`` with ``bench.scheduler.build`` (the real
migrations, COPY, ANALYZE), then times ``scheduler.slots.find_slots`` — one proposal: every
weekday and period of the main school's bells inside the receiving schools' bells, their lessons
over the rest of the term, what is in their way, ranked — for random pairings of the province:
a teacher and a main classroom of the urban school, one or two classrooms of the rural school,
weeks from the benchmark's "today" (week 12) to the end of the term, as a system admin.

Each answer is checked against the generated timetable: every cell the timetable leaves free for
all the resources every week must be proposed without a clash (``wrong_answers`` counts those
that are not).  The goal (issue 15): p95 < 200 ms on PostgreSQL.  Figures go to stdout and to
``bench/results/slots-<engine>.json``.

``--quiet-lock PATH``: on a shared machine, wait (up to 10 minutes) until PATH does not exist,
hold it while measuring, and remove it afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.province import TODAY, TERM_WEEKS, Province, Sizes
from bench.scheduler import RESULTS, WARMUP, Timing, build, database
from scheduler.access import Scope
from scheduler.models import Role
from scheduler.slots import SlotRequest, find_slots
from server.core.db import make_engine, make_session_factory

TARGET_P95_MS = 200.0
FROM_WEEK = 12
"""The week of ``bench.province.TODAY``: proposals cover the rest of the term."""


def requests(pv: Province, rng: random.Random, n: int) -> list[SlotRequest]:
    subjects = {row[0]: json.loads(row[5]) for row in pv.rows["pairing"]}
    out = []
    while len(out) < n:
        pid = rng.randrange(1, len(pv.pairings) + 1)
        urban, rural = pv.pairings[pid - 1]
        rooms = pv.rooms_of_school[rural]
        receivers = rng.sample(rooms, min(len(rooms), rng.randint(1, 2)))
        out.append(SlotRequest(term_id=pv.term_id, subject=rng.choice(subjects[pid] or ["数学"]),
                               main_classroom_id=rng.choice(pv.rooms_of_school[urban]),
                               teacher_id=rng.choice(pv.teachers_of_school[urban]),
                               receiver_ids=tuple(receivers), week_from=FROM_WEEK, week_to=TERM_WEEKS))
    return out


def measure(url: str, pv: Province, *, samples: int, budget_s: float, seed: int = 15) -> Timing:
    engine = make_engine(url)
    factory = make_session_factory(engine)
    scope = Scope(0, Role.admin, None, None, None, everywhere=True)
    t = Timing("free_slots")
    wrong: list[str] = []
    proposals_n: list[int] = []
    clean_n: list[int] = []
    started = time.perf_counter()
    try:
        for i, req in enumerate(requests(pv, random.Random(seed), samples + WARMUP)):
            if i >= WARMUP and len(t.samples_ms) >= 5 and time.perf_counter() - started > budget_s:
                break
            with factory() as session:
                t0 = time.perf_counter()
                found = find_slots(session, req, scope=scope, not_before=TODAY)
                elapsed = (time.perf_counter() - t0) * 1000
                session.rollback()
            max_period = min(pv.school_periods[pv.school_of_room[r]]
                             for r in (req.main_classroom_id, *req.receiver_ids))
            free = set(pv.free_cells((req.teacher_id, -req.main_classroom_id, *(-r for r in req.receiver_ids)),
                                     max_period))
            clean = {(p.weekday, p.period_from) for p in found.proposals if p.bookable}
            if not free <= clean:
                wrong.append(f"{req}: free in the timetable but not proposed clean: {sorted(free - clean)[:5]}")
            if i >= WARMUP:
                t.samples_ms.append(elapsed)
                proposals_n.append(len(found.proposals))
                clean_n.append(len(clean))
    finally:
        engine.dispose()
    t.notes = {"wrong_answers": len(wrong), "weeks": f"{FROM_WEEK}-{TERM_WEEKS}",
               "proposals_avg": round(sum(proposals_n) / max(1, len(proposals_n)), 1),
               "clean_proposals_avg": round(sum(clean_n) / max(1, len(clean_n)), 1)}
    if wrong:
        t.notes["first_wrong"] = wrong[0]
    return t


@contextmanager
def quiet(lock: str | None) -> Iterator[None]:
    if lock is None:
        yield
        return
    path = Path(lock)
    deadline = time.monotonic() + 600
    while path.exists() and time.monotonic() < deadline:
        time.sleep(5)
    if path.exists():
        raise SystemExit(f"{lock} still held after 10 minutes: not measuring")
    path.write_text(f"bench.slots pid {os.getpid()}\n")
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.slots", description=__doc__.split("\n\n")[0])
    ap.add_argument("--engine", choices=("postgresql", "sqlite"), default="postgresql")
    ap.add_argument("--scale", type=float, default=1.0, help="1.0 = 30,000 classrooms, 500,000 lessons")
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--budget-s", type=float, default=150.0, help="stop measuring after this (at least 5 samples)")
    ap.add_argument("--quiet-lock", default=None, help="a file to wait for and hold while measuring")
    args = ap.parse_args(argv)
    sizes = Sizes.for_scale(args.scale)
    print(f"[{args.engine}] building {sizes}", flush=True)
    with database(args.engine) as url:
        b = build(url, sizes, log=lambda m: print(m, flush=True))
        print(f"[{args.engine}] rows: " + ", ".join(f"{k}={n}" for k, n in b.rows.items()), flush=True)
        with quiet(args.quiet_lock):
            at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            load = os.getloadavg()
            t = measure(url, b.province, samples=args.samples, budget_s=args.budget_s)
    result: dict[str, Any] = {
        "engine": args.engine, "sizes": asdict(sizes), "build_s": round(b.seconds["total"], 2), "rows": b.rows,
        "measured_at": at, "loadavg_before": [round(x, 2) for x in load],
        "free_slots": t.summary(),
        "host": {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()},
    }
    if args.engine == "postgresql":
        result["target_p95_ms"] = {"target": TARGET_P95_MS, "met": t.pct(95) < TARGET_P95_MS}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"slots-{args.engine}.json"
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    s = result["free_slots"]
    print(f"\n{args.engine}: free slots of a pairing, weeks {s['weeks']}: n {s['n']}, p50 {s['p50_ms']:.1f} ms, "
          f"p95 {s['p95_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms, max {s['max_ms']:.1f} ms; "
          f"{s['proposals_avg']} proposals ({s['clean_proposals_avg']} without a clash) per answer; "
          f"wrong answers {s['wrong_answers']}; measured {at}, load average before {result['loadavg_before']}")
    if args.engine == "postgresql":
        print(f"target p95 < {TARGET_P95_MS:.0f} ms: {'met' if result['target_p95_ms']['met'] else 'NOT met'}")
    print(f"JSON: {out}")
    return 1 if s["wrong_answers"] else 0


if __name__ == "__main__":
    sys.exit(main())
