"""A city morning, scaled down to this machine: rooms opening at 08:00 on three local nodes.

Three ``sanke serve`` nodes (``tests.utils.cluster``: one media worker each, loopback only) on one
PostgreSQL server and one redis-server, all started and stopped here. The timetable clock of every
node is pinned at 07:51 on a Monday of the term (``tests.utils.sanke_proc``'s clock hook), so the
first lifecycle pass of the nodes opens every room of the 08:00 period at once; then the clients
arrive, each at a random moment within ``--spread`` seconds, as classrooms do before the bell.

**The lessons** (all in period 1, 08:00–08:40, each booked through ``scheduler.bookings`` as an
admin would, so that placement weighs them by what they book, ``scheduler/room_weight.py``):

* 专递课堂 (most rooms): a main classroom and 1–3 receiving classrooms;
* 名师课堂 (``--master`` rooms): a main classroom and ``--master-receivers`` listen-only receiving
  classrooms;
* 名校网络课堂 (``--famous`` rooms): a main classroom, one receiving classroom and
  ``--famous-students`` enrolled home students.

**The clients are signaling only** (no media): each is the teacher of a main classroom, the
terminal of a receiving classroom or a home student, with its own account. It asks a join token
(``POST /api/v1/lessons/{id}/join-token``, the request that places a room the first time) from one
of the three nodes (the node a round-robin entry address would give it), opens the socket the
answer names, sends ``join`` and waits for ``joined`` (a ``redirect`` is followed once, and
counted). **Join time** is from the token request to ``joined``. Then it stays, pinging as the web
client does, until the run ends.

**What is printed:**

* placement spread: per node, the rooms it owns (by kind), their weight and the participants
  joined there, and whether every room's participants all reached one node;
* join times p50/p95/max, overall and per role, and the token request alone;
* which part of the cluster saturates first: CPU of each node's server process and media worker,
  PostgreSQL (all its processes), redis-server and the client processes, sampled every
  ``SAMPLE_S``: mean over the burst (first arrival to last ``joined``) and the busiest 1 s, and
  each node's ``/healthz`` answer time (its event loop's responsiveness) p50/max over the burst.

    .venv/bin/python -m bench.morning [--rooms 40] [--master 4] [--famous 2] [--famous-students 150]
                                      [--master-receivers 12] [--spread 20] [--hold 5] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.signaling import cpu_s, load_average, pct

DAY = date(2026, 9, 7)
"""A Monday of the test world's term (``tests.utils.factory``): week 2."""
WEEK = 2
CLOCK_AT = datetime(2026, 9, 7, 7, 51)
"""The nodes' clock: the rooms of 08:00 are due to open (10 minutes before) at the first lifecycle pass."""
NAMES = ("node-a", "node-b", "node-c")
SAMPLE_S = 0.25
KIND_ZH = {"dedicated": "专递课堂", "master": "名师课堂", "famous_school": "名校网络课堂"}


@dataclass(frozen=True)
class Seat:
    lesson: int
    kind: str
    role: str
    """What the seat joins as: ``main``, ``receiving`` or ``student``."""
    access: str
    """The user's access token."""
    entry: str
    """The node it asks first."""
    address: str
    """The loopback address it connects from (a school's address: the nodes' per-address gate counts them)."""


@dataclass
class Plan:
    seats: list[Seat]
    lessons: dict[int, str]
    """Lesson → kind."""


def build(db_url: str, args: argparse.Namespace, rng: random.Random) -> Plan:
    """The test world, every lesson of the morning booked in period 1 of ``DAY`` (week ``WEEK`` only),
    their users; answers the seats in a random order of arrival."""
    from sqlalchemy import select

    from scheduler.access import scope_of
    from scheduler.bookings import ReceiverSpec, SeriesSpec, create_series
    from scheduler.models import Classroom, LessonInstance, LessonKind, ReceiverMode, Role, User
    from server.core.db import make_engine, make_session_factory
    from server.core.migrate import upgrade
    from tests.conftest import TEST_SECRET
    from tests.utils.factory import World, password_hash, token_for

    upgrade(db_url)
    engine = make_engine(db_url)
    hashed = password_hash()
    n = 0

    def person(s: Any, role: Role, name: str, **where: Any) -> User:
        nonlocal n
        n += 1
        u = User(username=f"m{n:05d}", display_name=name, password_hash=hashed, role=role, **where)
        s.add(u)
        return u

    kinds = ([LessonKind.famous_school] * args.famous + [LessonKind.master] * args.master
             + [LessonKind.dedicated] * (args.rooms - args.famous - args.master))
    try:
        with make_session_factory(engine)() as s:
            w = World.build(s)
            scope = scope_of(s, w.sysadmin)
            seats: list[tuple[LessonKind, str, User, int]] = []  # kind, role, user, lesson (filled below)
            lessons: dict[int, str] = {}
            for k, kind in enumerate(kinds):
                main_room = Classroom(school_id=w.urban.id, name=f"主讲教室 {k + 1}", capacity=45)
                receivers = (1 if kind is LessonKind.famous_school else args.master_receivers
                             if kind is LessonKind.master else rng.randint(1, 3))
                rooms = [Classroom(school_id=w.rural.id, name=f"接收教室 {k + 1}-{j + 1}", capacity=30)
                         for j in range(receivers)]
                s.add_all([main_room, *rooms])
                s.flush()
                teacher = person(s, Role.teacher, f"主讲教师{k + 1}", school_id=w.urban.id)
                terminals = [person(s, Role.terminal, f"接收终端{k + 1}-{j + 1}", classroom_id=r.id,
                                    school_id=w.rural.id) for j, r in enumerate(rooms)]
                students = ([person(s, Role.student, f"学生{k + 1}-{j + 1}", school_id=w.rural.id)
                             for j in range(args.famous_students)] if kind is LessonKind.famous_school else [])
                s.flush()
                mode = ReceiverMode.listen_only if kind is LessonKind.master else ReceiverMode.interactive
                series = create_series(s, SeriesSpec(
                    kind=kind, title=f"{KIND_ZH[kind.value]} {k + 1}", subject="数学", grade="三年级",
                    term_id=w.term.id, main_classroom_id=main_room.id, main_teacher_id=teacher.id, weekday=1,
                    period_from=1, period_to=1, week_from=WEEK, week_to=WEEK,
                    receivers=tuple(ReceiverSpec(r.id, mode=mode) for r in rooms),
                    participant_ids=tuple(u.id for u in students), recording=False,
                    pairing_override_reason="压测：城市早八点"), actor=w.sysadmin, scope=scope, not_before=DAY)
                s.flush()
                (inst,) = s.scalars(select(LessonInstance).where(LessonInstance.series_id == series.id,
                                                                LessonInstance.day == DAY)).all()
                lessons[inst.id] = kind.value
                seats += [(kind, "main", teacher, inst.id)]
                seats += [(kind, "receiving", t, inst.id) for t in terminals]
                seats += [(kind, "student", u, inst.id) for u in students]
            s.commit()
            rng.shuffle(seats)
            return Plan([Seat(lesson, kind.value, role, token_for(u, TEST_SECRET), NAMES[i % len(NAMES)],
                              f"127.0.0.{2 + i % 100}") for i, (kind, role, u, lesson) in enumerate(seats)], lessons)
    finally:
        engine.dispose()


class DirectLink:
    """A node's way to Redis without a forwarder (what ``tests.utils.cluster.start_node`` asks of a link)."""

    def __init__(self, url: str) -> None:
        self._url = url

    def url(self) -> str:
        return self._url


# ------------------------------------------------------------------------------------------ clients

@dataclass
class Joined:
    seat: Seat
    node: str
    token_s: float
    join_s: float
    redirects: int


@dataclass
class Crowd:
    """Every client, on one event loop in a thread of the bench."""

    bases: dict[str, str]
    results: list[Joined] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    sockets: list[Any] = field(default_factory=list)
    first: float = math.inf
    last: float = 0.0

    def node_of(self, ws_url: str) -> str:
        return next(n for n, b in self.bases.items() if ws_url.startswith(b.replace("http://", "ws://") + "/"))

    async def one(self, seat: Seat, at: float, http: httpx.AsyncClient, start: float, stop: asyncio.Event) -> None:
        import websockets

        from signaling.messages import PROTOCOL_VERSION

        await asyncio.sleep(max(0.0, start + at - time.monotonic()))
        t0 = time.monotonic()
        self.first = min(self.first, t0)
        try:
            r = await http.post(f"{self.bases[seat.entry]}/api/v1/lessons/{seat.lesson}/join-token",
                                headers={"Authorization": f"Bearer {seat.access}"})
            r.raise_for_status()
            answer = r.json()
            token_s = time.monotonic() - t0
            url, redirects = answer["ws_url"], 0
            while True:
                ws = await websockets.connect(url, ping_interval=None, open_timeout=60, compression=None,
                                              local_addr=(seat.address, 0))
                await ws.send(json.dumps({"type": "join", "request_id": "join",
                                          "protocol_version": PROTOCOL_VERSION, "token": answer["token"]}))
                msg = json.loads(await asyncio.wait_for(ws.recv(), 60))
                if msg["type"] == "redirect" and redirects == 0:
                    redirects, url = 1, msg["ws_url"]
                    await ws.close()
                    continue
                if msg["type"] != "joined":
                    raise RuntimeError(f"{msg['type']}: {msg.get('message')}")
                break
            done = time.monotonic()
            self.last = max(self.last, done)
            self.results.append(Joined(seat, self.node_of(url), token_s, done - t0, redirects))
            self.sockets.append(ws)
            interval = float(msg.get("ping_interval_s") or 15)
            while not stop.is_set():  # stays in the lesson, pinging as the web client does; reads what comes
                try:
                    await asyncio.wait_for(ws.recv(), interval)
                except TimeoutError:
                    await ws.send(json.dumps({"type": "ping", "ts": int(time.time() * 1000)}))
        except Exception as exc:  # noqa: BLE001 - counted and shown, the run goes on
            if not stop.is_set():
                self.failures.append(f"{seat.role} of lesson {seat.lesson} via {seat.entry}: {exc!r}")

    async def run(self, seats: list[Seat], arrivals: list[float], stop: asyncio.Event, ready: threading.Event,
                  all_in: threading.Event) -> None:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(timeout=60, limits=limits) as http:
            start = time.monotonic() + 0.5
            ready.set()
            tasks = [asyncio.create_task(self.one(s, a, http, start, stop)) for s, a in zip(seats, arrivals)]

            async def watch() -> None:
                while len(self.results) + len(self.failures) < len(seats):
                    await asyncio.sleep(0.05)
                all_in.set()

            watcher = asyncio.create_task(watch())
            await stop.wait()
            for t in (*tasks, watcher):
                t.cancel()
            await asyncio.gather(*tasks, watcher, return_exceptions=True)
            for ws in self.sockets:
                try:
                    await ws.close()
                except Exception:  # noqa: BLE001
                    pass


# ------------------------------------------------------------------------------------------ sampling

def children_of(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def postgres_pids(datadir: Path) -> list[int]:
    """The postmaster of ``datadir`` (its ``postmaster.pid``) and its children: this bench's PostgreSQL only."""
    try:
        postmaster = int((datadir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    return [postmaster, *children_of(postmaster)]


class Sampler(threading.Thread):
    """CPU seconds of named groups of processes every ``SAMPLE_S``, and each node's ``/healthz`` time."""

    def __init__(self, groups: dict[str, Any], bases: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.groups, self.bases = groups, bases
        self.samples: list[tuple[float, dict[str, float]]] = []
        self.health: dict[str, list[tuple[float, float]]] = defaultdict(list)
        self.halt = threading.Event()

    def cpu(self) -> dict[str, float]:
        out = {}
        for name, pids in self.groups.items():
            total = 0.0
            for pid in (pids() if callable(pids) else pids):
                try:
                    total += cpu_s(pid)
                except (OSError, IndexError):
                    pass
            out[name] = total
        return out

    def run(self) -> None:
        with httpx.Client(timeout=10) as http:
            while not self.halt.is_set():
                self.samples.append((time.monotonic(), self.cpu()))
                for node, base in self.bases.items():
                    t0 = time.monotonic()
                    try:
                        http.get(f"{base}/healthz")
                        self.health[node].append((t0, time.monotonic() - t0))
                    except httpx.HTTPError:
                        self.health[node].append((t0, math.inf))
                self.halt.wait(SAMPLE_S)

    def between(self, t0: float, t1: float) -> dict[str, tuple[float, float, float]]:
        """Per group: mean CPU % of one core over [t0, t1], the busiest 1 s within it, and when (s after t0)."""
        inside = [(t, c) for t, c in self.samples if t0 - SAMPLE_S <= t <= t1 + SAMPLE_S]
        out = {}
        for name in self.groups:
            if len(inside) < 2:
                out[name] = (math.nan, math.nan, math.nan)
                continue
            mean = (inside[-1][1][name] - inside[0][1][name]) / (inside[-1][0] - inside[0][0]) * 100
            peak, when = 0.0, 0.0
            for i, (t, c) in enumerate(inside):
                j = next((j for j in range(i, len(inside)) if inside[j][0] - t >= 1.0), None)
                if j is None:
                    break
                rate = (inside[j][1][name] - c[name]) / (inside[j][0] - t) * 100
                if rate > peak:
                    peak, when = rate, t - t0
            out[name] = (mean, peak, when)
        return out


# ------------------------------------------------------------------------------------------ the run

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rooms", type=int, default=40)
    parser.add_argument("--master", type=int, default=4, help="名师课堂 among the rooms")
    parser.add_argument("--famous", type=int, default=2, help="名校网络课堂 among the rooms")
    parser.add_argument("--famous-students", type=int, default=150, help="home students of each 名校网络课堂")
    parser.add_argument("--master-receivers", type=int, default=12, help="receiving classrooms of each 名师课堂")
    parser.add_argument("--spread", type=float, default=20.0, help="seconds over which the clients arrive")
    parser.add_argument("--hold", type=float, default=5.0, help="seconds everyone stays after the last join")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the nodes' logs here")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here too")
    args = parser.parse_args()
    assert 1 <= args.rooms <= 400 and 0 <= args.famous + args.master <= args.rooms
    assert 1 <= args.famous_students <= 1000 and 1 <= args.master_receivers <= 60 and 0 < args.spread <= 300

    from tests.utils.cluster import start_nodes
    from tests.utils.pgserver import PostgresServer
    from tests.utils.redisserver import RedisServer
    from tests.utils.wait import wait_until

    rng = random.Random(args.seed)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sanke-bench-morning-"))
    workdir.mkdir(parents=True, exist_ok=True)
    pg = PostgresServer().start()
    rs = None
    try:
        db_url = pg.create_database("sanke_morning")
        t = time.monotonic()
        plan = build(db_url, args, rng)
        kinds = Counter(plan.lessons.values())
        print(f"built {len(plan.lessons)} lessons ({', '.join(f'{KIND_ZH[k]} {v}' for k, v in kinds.items())}), "
              f"{len(plan.seats)} participants, in {time.monotonic() - t:.1f} s; workdir {workdir}", flush=True)
        rs = RedisServer().start()
        with ExitStack() as stack:
            # every node straight to Redis (the tests' cluster helper can put a cuttable forwarder between)
            links: dict[str, Any] = {n: DirectLink(rs.url) for n in NAMES}
            served = start_nodes(stack, NAMES, redis_url=rs.url, db_url=db_url, redis_port=rs.port, tmp_path=workdir,
                                 clock_at=CLOCK_AT, heartbeat_s=2.0, lease_s=6.0, links=links,
                                 SANKE_LIFECYCLE_INTERVAL_SECONDS="1")
            registry = redis.Redis.from_url(rs.url)
            stack.callback(registry.close)
            bases = {n: served[n].base for n in NAMES}
            opened = wait_until("every room of 08:00 open", lambda: rooms_open(db_url, plan), 60, interval=0.2)
            print(f"{opened} rooms open at 07:51 (pinned clock); load average {load_average()}", flush=True)
            servers = {n: served[n].process.pid for n in NAMES}
            workers = {n: children_of(pid) for n, pid in servers.items()}
            groups: dict[str, Any] = {f"{n} server": [pid] for n, pid in servers.items()}
            groups |= {f"{n} worker": ws for n, ws in workers.items()}
            groups |= {"postgresql": lambda: postgres_pids(pg.datadir), "redis-server": [rs._proc.pid],
                       "clients (bench)": [os.getpid()]}
            sampler = Sampler(groups, bases)
            sampler.start()

            arrivals = [rng.uniform(0, args.spread) for _ in plan.seats]
            crowd = Crowd(bases)
            loop = asyncio.new_event_loop()
            ready, all_in = threading.Event(), threading.Event()
            stop = asyncio.Event()
            runner = threading.Thread(target=lambda: loop.run_until_complete(
                crowd.run(plan.seats, arrivals, stop, ready, all_in)), daemon=True)
            runner.start()
            ready.wait(30)
            all_in.wait(args.spread + 180)
            entries = {}  # the registry after the burst
            for key in registry.keys("sanke:node:*"):
                if (raw := registry.get(key)) is not None:
                    e = json.loads(raw)
                    entries[e["node_id"]] = e
            time.sleep(args.hold)
            loop.call_soon_threadsafe(stop.set)
            runner.join(60)
            sampler.halt.set()
            sampler.join(10)
            placed = placements(db_url)
            report(args, plan, crowd, sampler, placed, entries, bases)
    finally:
        if rs is not None:
            rs.stop()
        pg.stop()
    return 0


def rooms_open(db_url: str, plan: Plan) -> int:
    from sqlalchemy import func, select

    from scheduler.models import LessonInstance
    from server.core.db import make_engine, make_session_factory

    engine = make_engine(db_url)
    try:
        with make_session_factory(engine)() as s:
            n = s.scalar(select(func.count()).select_from(LessonInstance).where(
                LessonInstance.id.in_(list(plan.lessons)), LessonInstance.room_opened_at.is_not(None)))
            return int(n or 0) if n == len(plan.lessons) else 0
    finally:
        engine.dispose()


def placements(db_url: str) -> dict[int, tuple[str, int]]:
    from sqlalchemy import select

    from scheduler.placement_models import RoomPlacement
    from server.core.db import make_engine, make_session_factory

    engine = make_engine(db_url)
    try:
        with make_session_factory(engine)() as s:
            # the latest placement of each room (a room placed again, after its owner left, has several)
            return {p.instance_id: (p.node_id, p.weight)
                    for p in s.scalars(select(RoomPlacement).order_by(RoomPlacement.id))}
    finally:
        engine.dispose()


def report(args: argparse.Namespace, plan: Plan, crowd: Crowd, sampler: Sampler,
           placed: dict[int, tuple[str, int]], entries: dict[str, Any], bases: dict[str, str]) -> None:
    res = crowd.results
    print(f"\n{len(res)}/{len(plan.seats)} joined, {len(crowd.failures)} failed, "
          f"{sum(r.redirects for r in res)} redirected; burst {crowd.last - crowd.first:.1f} s "
          f"(arrivals spread over {args.spread:.0f} s); load average {load_average()}")
    for f in crowd.failures[:5]:
        print(f"  failure: {f}")
    # one room, one node
    nodes_of_room: dict[int, set[str]] = defaultdict(set)
    for r in res:
        nodes_of_room[r.seat.lesson].add(r.node)
    split = [lesson for lesson, ns in nodes_of_room.items() if len(ns) > 1]
    print(f"rooms whose participants reached more than one node: {len(split)}")

    print("\nplacement spread")
    header = f"{'node':<8} {'rooms':>5} {'专递':>4} {'名师':>4} {'名校':>4} {'weight':>7} {'joined':>7} {'heartbeat: rooms/participants':>30}"
    print(header + "\n" + "-" * len(header))
    for n in NAMES:
        mine = [lesson for lesson, (node, _) in placed.items() if node == n]
        k = Counter(plan.lessons[lesson] for lesson in mine)
        weight = sum(placed[lesson][1] for lesson in mine)
        joined = sum(1 for r in res if r.node == n)
        e = entries.get(n, {})
        hb = f"{e.get('rooms', '?')}/{e.get('participants', '?')}"
        print(f"{n:<8} {len(mine):>5} {k['dedicated']:>4} {k['master']:>4} {k['famous_school']:>4} {weight:>7} "
              f"{joined:>7} {hb:>30}")

    def line(name: str, values: list[float]) -> str:
        return (f"{name:<28} {len(values):>5} {pct(values, 0.5) * 1000:>8.0f} {pct(values, 0.95) * 1000:>8.0f} "
                f"{max(values, default=math.nan) * 1000:>8.0f}")

    print("\njoin times (token request → joined), ms")
    header = f"{'':<28} {'n':>5} {'p50':>8} {'p95':>8} {'max':>8}"
    print(header + "\n" + "-" * len(header))
    print(line("all", [r.join_s for r in res]))
    for role in ("main", "receiving", "student"):
        print(line(f"  {role}", [r.join_s for r in res if r.seat.role == role]))
    for kind in ("dedicated", "master", "famous_school"):
        print(line(f"  in {KIND_ZH[kind]}", [r.join_s for r in res if r.seat.kind == kind]))
    print(line("token request alone", [r.token_s for r in res]))

    print("\nCPU during the burst (% of one core): mean, busiest 1 s (at s)")
    cpu = sampler.between(crowd.first, crowd.last)
    header = f"{'part':<18} {'mean':>6} {'busiest 1 s':>12} {'at s':>6}"
    print(header + "\n" + "-" * len(header))
    for name, (mean, peak, when) in sorted(cpu.items(), key=lambda kv: -kv[1][1]):
        print(f"{name:<18} {mean:>6.0f} {peak:>12.0f} {when:>6.1f}")
    for n in NAMES:
        times = [d for t, d in sampler.health[n] if crowd.first <= t <= crowd.last]
        print(f"{n} /healthz during the burst: p50 {pct(times, 0.5) * 1000:.0f} ms, max "
              f"{max(times, default=math.nan) * 1000:.0f} ms ({len(times)} samples)")
    busiest = max(cpu.items(), key=lambda kv: kv[1][1])
    print(f"busiest part: {busiest[0]} ({busiest[1][1]:.0f} % of a core in its busiest second)")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "args": {k: str(v) for k, v in vars(args).items()},
            "joined": len(res), "failed": len(crowd.failures), "split_rooms": len(split),
            "placement": {str(k): v for k, v in placed.items()},
            "join_s": [r.join_s for r in res], "cpu": cpu}, indent=1, default=str))


if __name__ == "__main__":
    sys.exit(main())
