"""Signaling at scale: thousands of WebSocket clients on one node, fan-out latency and memory per client.

One ``sanke serve`` node (a child process on 127.0.0.1, SQLite, no media worker: signaling only, its
timetable clock pinned four minutes before the lessons' rooms' first lesson) and client processes
that open real lesson sockets with join tokens (minted with the node's secret, one user per client),
from many loopback source addresses (127.0.0.2 and up: the node's per-address gate sees a school's
worth of clients per address, and no address runs short of ephemeral ports). The clients fill rooms
of ``--room-size`` (each a lesson whose room is open) in steps (``--steps``, each a bounded number of
clients added to the ones already in), and at each step, for ``--window`` seconds:

* every client pings every ``ping_interval_s`` of its ``joined`` (15 s), with a random phase, as the
  web client does; the pong's round trip is timed;
* every room gets one chat line every ``--chat-every`` s from a random member; every member (the
  sender too) times its arrival against the moment it was sent: **chat fan-out latency**;
* one member per room leaves and joins again (a new token, a new session) once per window: every
  other member times ``participant_left`` and ``participant_joined`` against the moment the leave /
  join was sent: **roster fan-out latency**.

A room's members all live in one client process, so the sending and receiving moments are read
on one clock (``time.monotonic``). The figures include the client processes' own delays (they share
the machine's cores with the node); the node's CPU and the clients' are printed beside them, and the
clients' own loop lag (a client process freezes its objects after each step's joins, ``gc.freeze``, so
its own full collections do not stall it). ``--watch`` runs the node with its loop watch
(``server.core.loopwatch``) and prints its stalls per step: how long, what the loop ran, which
collections fell in them.

Per step it prints the clients, the rooms, the deliveries counted against those expected (a
missing delivery is a failure, not a slow one), latency p50/p95/p99/max for chat and roster and the
ping round trip, the node's CPU over the window (% of one core), and its resident memory (RSS, from
``/proc``) minus the idle node's, per client. The goal of issue 13: chat fan-out p99 < 50 ms.

    .venv/bin/python -m bench.signaling [--steps 500,1000,2000,5000] [--room-size 100] [--window 10]
                                        [--chat-every 1.0] [--procs 2] [--addresses 100] [--watch]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import multiprocessing as mp
import os
import random
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

CONNECT_CONCURRENCY = 64
"""Sockets one client process has connecting (not yet joined) at once."""
JOIN_TIMEOUT_S = 60.0
SETTLE_S = 2.0
"""After a step's clients joined, before the window: the join fan-out has drained."""


# ------------------------------------------------------------------------------------------ setup

@dataclass(frozen=True)
class Seat:
    """One client: its user, its room (lesson), the source address it connects from."""

    user_id: int
    lesson_id: int
    address: str


def build(db_url: str, rooms: int, clients: int) -> tuple[list[int], list[int], datetime]:
    """The test world, ``rooms`` lessons with their rooms open, ``clients`` student users; answers the
    lessons, the users and where the clock must stand (4 min before the first lesson)."""
    from sqlalchemy import select

    from scheduler.access import scope_of
    from scheduler.bookings import ReceiverSpec, SeriesSpec, create_series
    from scheduler.models import LessonInstance, LessonKind, Role, User
    from server.core.db import make_engine, make_session_factory
    from server.core.migrate import upgrade
    from tests.utils.factory import World, password_hash

    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with make_session_factory(engine)() as s:
            w = World.build(s)
            scope = scope_of(s, w.urban_admin)
            made = 0
            for weekday in range(1, 6):
                for period in range(1, 5):
                    if made >= rooms:
                        break
                    create_series(s, SeriesSpec(
                        kind=LessonKind.famous_school, title="名校网络课堂", subject="数学", grade="三年级",
                        term_id=w.term.id, main_classroom_id=w.main_room.id, main_teacher_id=w.teacher.id,
                        weekday=weekday, period_from=period, period_to=period,
                        receivers=(ReceiverSpec(w.recv_room.id),)), actor=w.urban_admin, scope=scope)
                    made = s.query(LessonInstance).count()
            instances = list(s.scalars(select(LessonInstance).order_by(LessonInstance.starts_at)))[:rooms]
            assert len(instances) == rooms, f"only {len(instances)} lessons for {rooms} rooms"
            first = instances[0]
            for inst in instances:
                inst.room_opened_at = first.starts_at - timedelta(minutes=5)
            hashed = password_hash()
            users = [User(username=f"bench{i:05d}", display_name=f"学生{i:05d}", password_hash=hashed,
                          role=Role.student, school_id=w.urban.id) for i in range(clients)]
            s.add_all(users)
            s.commit()
            return [i.id for i in instances], [u.id for u in users], first.starts_at - timedelta(minutes=4)
    finally:
        engine.dispose()


# ------------------------------------------------------------------------------------------ clients

@dataclass
class Member:
    seat: Seat
    ws: Any = None
    pid: str = ""
    joined: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None
    pinger: asyncio.Task[None] | None = None


class ClientProcess:
    """The clients of some rooms, on one event loop (``run`` in a child process)."""

    def __init__(self, secret: str, ws_base: str) -> None:
        self.secret, self.ws_base = secret, ws_base
        self.members: dict[int, list[Member]] = defaultdict(list)
        self.chat_sent: dict[str, float] = {}
        self.chat_meant: dict[str, int] = {}
        self.chat_count: dict[str, int] = defaultdict(int)
        self.roster_sent: dict[tuple[str, str], float] = {}
        self.chat_lat: list[float] = []
        self.roster_lat: list[float] = []
        self.pong_rtt: list[float] = []
        self.chat_got = 0
        self.roster_got = 0
        self.measuring = False
        self.failures: list[str] = []
        self.ping_interval = 15.0

    def token(self, seat: Seat) -> str:
        from server.core.security import JoinClaims, create_join_token

        return create_join_token(JoinClaims(user_id=seat.user_id, instance_id=seat.lesson_id, lesson_role="student",
                                            classroom_id=None, expires_at=int(time.time()) + 3600), self.secret)

    async def connect(self, m: Member) -> None:
        import websockets

        from signaling.messages import PROTOCOL_VERSION

        url = f"{self.ws_base}/api/v1/lessons/{m.seat.lesson_id}/ws"
        m.joined = asyncio.Event()
        m.ws = await websockets.connect(url, local_addr=(m.seat.address, 0), open_timeout=JOIN_TIMEOUT_S,
                                        ping_interval=None, max_queue=None, compression=None)
        m.reader = asyncio.create_task(self.read(m, m.ws))
        await m.ws.send(json.dumps({"type": "join", "request_id": "join", "protocol_version": PROTOCOL_VERSION,
                                    "token": self.token(m.seat)}))
        await asyncio.wait_for(m.joined.wait(), JOIN_TIMEOUT_S)
        m.pinger = asyncio.create_task(self.ping(m, m.ws))

    async def read(self, m: Member, ws: Any) -> None:
        try:
            async for raw in ws:
                now = time.monotonic()
                msg = json.loads(raw)
                kind = msg.get("type")
                if kind == "chat":
                    sent = self.chat_sent.get(msg["text"])
                    if sent is not None and self.measuring:
                        self.chat_lat.append(now - sent)
                        self.chat_got += 1
                        self.chat_count[msg["text"]] += 1
                elif kind == "participant_left":
                    sent = self.roster_sent.get(("left", msg["participant_id"]))
                    if sent is not None and self.measuring:
                        self.roster_lat.append(now - sent)
                        self.roster_got += 1
                elif kind == "participant_joined":
                    sent = self.roster_sent.get(("joined", str(msg["participant"]["user_id"])))
                    if sent is not None and self.measuring:
                        self.roster_lat.append(now - sent)
                        self.roster_got += 1
                elif kind == "pong":
                    if self.measuring:
                        self.pong_rtt.append(time.time() - msg["ts"] / 1000.0)
                elif kind == "joined":
                    m.pid = msg["participant"]["participant_id"]
                    self.ping_interval = float(msg.get("ping_interval_s") or 15)
                    m.joined.set()
                elif kind == "error":
                    self.failures.append(f"error {msg.get('code')}: {msg.get('message')}")
        except Exception as exc:  # noqa: BLE001 - a dropped client is counted, not fatal
            if ws is m.ws:
                self.failures.append(f"socket of user {m.seat.user_id} ended: {exc!r}")

    async def ping(self, m: Member, ws: Any) -> None:
        await asyncio.sleep(random.uniform(0, self.ping_interval))
        while ws is m.ws:
            await ws.send(json.dumps({"type": "ping", "ts": int(time.time() * 1000)}))
            await asyncio.sleep(self.ping_interval)

    async def add(self, seats: list[Seat]) -> float:
        """Connect and join ``seats``; answers the seconds it took."""
        started = time.monotonic()
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(seat: Seat) -> None:
            m = Member(seat)
            async with gate:
                await self.connect(m)
            self.members[seat.lesson_id].append(m)

        await asyncio.gather(*(one(s) for s in seats))
        return time.monotonic() - started

    async def window(self, seconds: float, chat_every: float) -> dict[str, Any]:
        """Chat and churn in every room for ``seconds``; answers the samples and counts."""
        self.chat_lat, self.roster_lat, self.pong_rtt = [], [], []
        self.chat_got = self.roster_got = 0
        expected = {"chat": 0, "roster": 0}
        self.measuring = True
        end = time.monotonic() + seconds

        async def drained(text: str | None) -> None:
            """Every member that was meant to get line ``text`` has it (at most 2 s): a member leaves only
            then, so no line is counted for a member that left before the node sent it."""
            deadline = time.monotonic() + 2.0
            while text is not None and self.chat_count.get(text, 0) < self.chat_meant.get(text, 0):
                if time.monotonic() > deadline:
                    return
                await asyncio.sleep(0.01)

        async def churn(m: Member, others: list[Member]) -> None:
            """``m`` leaves (``leave``) and joins again with a new token, a new session."""
            old = m.ws
            m.joined.clear()
            self.roster_sent[("left", m.pid)] = time.monotonic()
            expected["roster"] += len(others)
            await old.send(json.dumps({"type": "leave", "request_id": "bye"}))
            await old.wait_closed()
            if m.pinger is not None:
                m.pinger.cancel()
            self.roster_sent[("joined", str(m.seat.user_id))] = time.monotonic()
            expected["roster"] += len(others)
            await self.connect(m)

        async def room(lesson: int, members: list[Member]) -> None:
            """A chat line every ``chat_every`` s from a random member; once, somewhere in the middle of the
            window, the last member leaves and comes back instead."""
            n, last = 0, None
            churn_at = time.monotonic() + seconds * random.uniform(0.3, 0.7) if len(members) > 1 else math.inf
            await asyncio.sleep(random.uniform(0, chat_every))
            while time.monotonic() < end:
                if time.monotonic() >= churn_at:
                    churn_at = math.inf
                    await drained(last)
                    await churn(members[-1], members[:-1])
                    continue
                present = [x for x in members if x.joined.is_set()]
                sender = random.choice(present)
                text = f"r{lesson}:{n}"
                n += 1
                expected["chat"] += len(present)
                self.chat_meant[text] = len(present)
                self.chat_sent[text] = time.monotonic()
                await sender.ws.send(json.dumps({"type": "chat", "request_id": f"c{n}", "text": text}))
                last = text
                await asyncio.sleep(chat_every)

        lags: list[float] = []

        async def tick() -> None:
            """This process's own loop lag (a late client inflates the latencies it measures)."""
            loop = asyncio.get_running_loop()
            while True:
                t = loop.time()
                await asyncio.sleep(0.005)
                lags.append(loop.time() - t - 0.005)

        ticker = asyncio.create_task(tick())
        results = await asyncio.gather(*(room(lesson, ms) for lesson, ms in self.members.items()),
                                       return_exceptions=True)
        await asyncio.sleep(1.0)  # the last lines' deliveries arrive (counted: lost ones stay missing)
        ticker.cancel()
        self.measuring = False
        self.roster_sent.clear()
        self.chat_sent.clear()
        self.chat_meant.clear()
        self.chat_count.clear()
        for r in results:
            if isinstance(r, BaseException):
                self.failures.append(f"window task failed: {r!r}")
        failures, self.failures = self.failures, []
        return {"chat": self.chat_lat, "roster": self.roster_lat, "pong": self.pong_rtt,
                "chat_got": self.chat_got, "roster_got": self.roster_got, "expected": expected,
                "failures": failures[:20], "failure_count": len(failures), "lag": lags}

    async def close(self) -> None:
        for ms in self.members.values():
            for m in ms:
                for t in (m.pinger, m.reader):
                    if t is not None:
                        t.cancel()
                if m.ws is not None:
                    await m.ws.close()


def client_main(conn: Any, secret: str, ws_base: str) -> None:
    """A client process: answers commands from the bench (``add``, ``window``, ``close``) over ``conn``."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    loop = asyncio.new_event_loop()
    procs = ClientProcess(secret, ws_base)
    loop.set_exception_handler(lambda _l, _c: None)
    try:
        while True:
            command, arg = conn.recv()
            if command == "add":
                try:
                    took = loop.run_until_complete(procs.add(arg))
                    # the clients' own full collections would stall their loops (hundreds of ms at 2,500
                    # sockets) and count as the node's latency: what is alive now is never scanned again
                    # (a client process lives for one run)
                    gc.collect()
                    gc.freeze()
                    conn.send({"ok": True, "took": took})
                except Exception as exc:  # noqa: BLE001 - reported to the bench, which stops
                    conn.send({"ok": False, "error": repr(exc), "failures": procs.failures[:10]})
            elif command == "window":
                conn.send(loop.run_until_complete(procs.window(*arg)))
            elif command == "close":
                loop.run_until_complete(procs.close())
                conn.send({"ok": True})
                return
    finally:
        loop.close()


# ------------------------------------------------------------------------------------------ the node

def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def ms(values: list[float]) -> str:
    return "/".join(f"{pct(values, q) * 1000:.1f}" for q in (0.5, 0.95, 0.99, 1.0))


def watched(path: Path, since: float, until: float) -> dict[str, Any]:
    """The node's loop watch lines (``server.core.loopwatch``) from ``since`` to ``until`` (wall clock),
    printed: its stalls, the collections in them and the most frequent stacks of the longest ones."""
    stalls, gcs = [], []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            body = item.get("stall") or item.get("gc")
            if body is None or not since <= body["at"] <= until:
                continue
            (stalls if "stall" in item else gcs).append(body)
    full = [g for g in gcs if g["gen"] == 2]
    total = sum(x["ms"] for x in stalls)
    print(f"  node stalls >= 20 ms: {len(stalls)}, {total:.0f} ms in all, longest "
          f"{max((x['ms'] for x in stalls), default=0):.0f} ms; collections >= 5 ms: {len(gcs)} "
          f"({len(full)} full, longest {max((g['ms'] for g in full), default=0):.0f} ms)", flush=True)
    for x in sorted(stalls, key=lambda x: -x["ms"])[:3]:
        gc_in = ", ".join(f"gen{g['gen']} {g['ms']:.0f} ms (cpu {g.get('cpu_ms', 0):.0f})" for g in x["gc"]) or "none"
        print(f"    stall {x['ms']:.0f} ms, the loop's thread on a core {x.get('cpu_ms', 0):.0f} ms of it "
              f"(collections: {gc_in})", flush=True)
        for st in x["stacks"][:2]:
            print(f"      {st['n']} x " + " < ".join(st["stack"][:8]), flush=True)
    return {"stalls": stalls, "gcs": gcs}


def census(path: Path) -> None:
    """The node's last census of its garbage collector's objects (``--census``), printed."""
    last = None
    for line in path.read_text().splitlines() if path.exists() else []:
        if '"census"' in line:
            last = json.loads(line)["census"]
    if last is not None:
        print(f"  node's tracked objects: {last['tracked']}: " + ", ".join(f"{t} {n}" for t, n in last["top"][:15]),
              flush=True)
        print(f"    a young generation: {last.get('young')}", flush=True)
        for kind in ("coroutines", "functions"):
            print(f"    {kind}: " + ", ".join(f"{t} {n}" for t, n in last.get(kind, [])[:20]), flush=True)


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="500,1000,2000,5000", help="clients at each step (ascending)")
    parser.add_argument("--room-size", type=int, default=100, help="clients per room")
    parser.add_argument("--window", type=float, default=10.0, help="seconds measured at each step")
    parser.add_argument("--chat-every", type=float, default=1.0, help="seconds between chat lines in a room")
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument("--addresses", type=int, default=100, help="loopback source addresses (127.0.0.2 on)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the node's data and log here")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here too")
    parser.add_argument("--census", action="store_true",
                        help="a diagnosis, not a measurement: the node counts its objects by type every 10 s "
                             "(which stalls it), the last count is printed per step")
    parser.add_argument("--watch", action="store_true",
                        help="run the node with its loop watch (SANKE_LOOP_WATCH_FILE): its stalls, what ran in "
                             "them and its garbage collections, printed per step")
    args = parser.parse_args()
    steps = [int(x) for x in args.steps.split(",")]
    assert steps == sorted(steps) and steps[0] > 0 and steps[-1] <= 20000, "steps: ascending, at most 20000"
    assert 2 <= args.room_size and 1 <= args.addresses <= 250 and 1 <= args.procs <= 8

    from tests.conftest import TEST_SECRET
    from tests.utils.live import free_port
    from tests.utils.sanke_proc import child_env, clock_hook, served

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sanke-bench-signaling-"))
    workdir.mkdir(parents=True, exist_ok=True)
    total = steps[-1]
    rooms = math.ceil(total / args.room_size)
    db = workdir / "signaling.db"
    if db.exists():
        db.unlink()
    db_url = f"sqlite:///{db}"
    started = time.monotonic()
    lessons, users, clock_at = build(db_url, rooms, total)
    print(f"built {rooms} rooms and {total} users in {time.monotonic() - started:.1f} s ({workdir})", flush=True)

    # seat i: room i // room_size; a room lives in one client process; addresses round-robin
    seats = [Seat(users[i], lessons[i // args.room_size], f"127.0.0.{2 + i % args.addresses}") for i in range(total)]
    proc_of_room = {lesson: k % args.procs for k, lesson in enumerate(lessons)}

    port = free_port()
    watch_file = workdir / "loopwatch.jsonl"
    if watch_file.exists():
        watch_file.unlink()
    extra = {"SANKE_LOOP_WATCH_FILE": str(watch_file)} if args.watch or args.census else {}
    if args.census:
        extra["SANKE_LOOP_WATCH_CENSUS"] = "1"
    env = child_env(clock_hook(workdir / "hook"), clock_at, SANKE_DATA_DIR=str(workdir / "data"),
                    SANKE_DATABASE_URL=db_url, SANKE_SECRET_KEY=TEST_SECRET, SANKE_MEDIA_WORKERS="0", **extra)
    command = [sys.executable, "-m", "server.cli", "serve", "--port", str(port)]
    figures: list[dict[str, Any]] = []
    ctx = mp.get_context("spawn")
    with served(command, env, port, workdir / "node.log", start_timeout=120) as node:
        server_pid = node.process.pid
        time.sleep(2.0)  # the node's start-up work (migrations check, lifecycle pass) is over
        rss0 = rss_kib(server_pid)
        print(f"node pid {server_pid}, idle RSS {rss0 / 1024:.1f} MiB; load average {load_average()}", flush=True)
        pipes, children = [], []
        for _ in range(args.procs):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=client_main, args=(child, TEST_SECRET, node.base.replace("http://", "ws://")),
                            daemon=True)
            p.start()
            pipes.append(parent)
            children.append(p)
        try:
            header = (f"{'clients':>7} {'rooms':>5} {'join s':>6} {'chat got/expected':>19} "
                      f"{'chat p50/p95/p99/max ms':>25} {'roster got/exp':>15} {'roster p50/p95/p99/max ms':>27} "
                      f"{'pong p50/p99 ms':>16} {'node cpu%':>9} {'clients cpu%':>12} {'RSS MiB':>8} "
                      f"{'KiB/client':>10} {'load':>15}")
            print(header + "\n" + "-" * len(header), flush=True)
            have = 0
            for step in steps:
                new = seats[have:step]
                t0 = time.monotonic()
                for k, pipe in enumerate(pipes):
                    pipe.send(("add", [s for s in new if proc_of_room[s.lesson_id] == k]))
                for pipe in pipes:
                    answer = pipe.recv()
                    if not answer["ok"]:
                        raise RuntimeError(f"clients failed to join: {answer}")
                join_s = time.monotonic() - t0
                have = step
                time.sleep(SETTLE_S)
                cpu0, w0, wall0 = cpu_s(server_pid), time.monotonic(), time.time()
                ccpu0 = sum(cpu_s(p.pid) for p in children)
                for pipe in pipes:
                    pipe.send(("window", (args.window, args.chat_every)))
                parts = [pipe.recv() for pipe in pipes]
                wall = time.monotonic() - w0
                node_cpu = (cpu_s(server_pid) - cpu0) / wall * 100
                clients_cpu = (sum(cpu_s(p.pid) for p in children) - ccpu0) / wall * 100
                rss = rss_kib(server_pid)
                chat = [x for p in parts for x in p["chat"]]
                roster = [x for p in parts for x in p["roster"]]
                pong = [x for p in parts for x in p["pong"]]
                chat_exp = sum(p["expected"]["chat"] for p in parts)
                roster_exp = sum(p["expected"]["roster"] for p in parts)
                failures = [f for p in parts for f in p["failures"]]
                row = {"clients": step, "rooms": math.ceil(step / args.room_size), "join_s": join_s,
                       "chat_got": len(chat), "chat_expected": chat_exp, "roster_got": len(roster),
                       "roster_expected": roster_exp,
                       "chat_ms": {q: pct(chat, q) * 1000 for q in (0.5, 0.95, 0.99, 1.0)},
                       "roster_ms": {q: pct(roster, q) * 1000 for q in (0.5, 0.95, 0.99, 1.0)},
                       "pong_ms": {q: pct(pong, q) * 1000 for q in (0.5, 0.99)},
                       "node_cpu_pct": node_cpu, "clients_cpu_pct": clients_cpu, "rss_mib": rss / 1024, "kib_per_client": (rss - rss0) / step,
                       "load": load_average(), "failures": sum(p["failure_count"] for p in parts)}
                figures.append(row)
                print(f"{step:>7} {row['rooms']:>5} {join_s:>6.1f} {f'{len(chat)}/{chat_exp}':>19} {ms(chat):>25} "
                      f"{f'{len(roster)}/{roster_exp}':>15} {ms(roster):>27} "
                      f"{pct(pong, 0.5) * 1000:>7.1f}/{pct(pong, 0.99) * 1000:<8.1f} {node_cpu:>9.0f} "
                      f"{clients_cpu:>12.0f} {rss / 1024:>8.1f} {(rss - rss0) / step:>10.1f} {row['load']:>15}",
                      flush=True)
                for f in failures[:5]:
                    print(f"  failure: {f}", flush=True)
                lag = sorted(x for p in parts for x in p["lag"])
                print(f"  clients' loop lag p50/p99/max ms: {pct(lag, 0.5) * 1000:.1f}/{pct(lag, 0.99) * 1000:.1f}/"
                      f"{pct(lag, 1.0) * 1000:.1f}", flush=True)
                if args.census:
                    census(watch_file)
                if args.watch:
                    row["watch"] = watched(watch_file, wall0, time.time())
            last = figures[-1]
            p99 = last["chat_ms"][0.99]
            print(f"goal: chat fan-out p99 < 50 ms at {last['clients']} clients: "
                  f"{'met' if p99 < 50 else 'NOT met'} ({p99:.1f} ms)", flush=True)
        finally:
            for pipe in pipes:
                try:
                    pipe.send(("close", None))
                    pipe.recv()
                except (OSError, EOFError):
                    pass
            for p in children:
                p.join(timeout=10)
                if p.is_alive():
                    p.kill()
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "steps": figures},
                                        indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
