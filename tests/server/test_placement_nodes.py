"""Placement on real nodes: three ``sanke serve`` processes on one redis-server and one PostgreSQL,
all on 127.0.0.1, started and stopped here.  Join tokens fetched from different nodes send their
holders to the one node that owns the room, where they meet; a socket opened at another node is
redirected there; sixty rooms asked for in the same second are spread over the three nodes; a draining
node gets no new rooms; a room whose owner is killed is placed elsewhere by the next join; the
placements are counted in ``/metrics`` and recorded in the database."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from media.ice import IcePolicy
from scheduler.access import scope_of
from scheduler.bookings import ReceiverSpec, SeriesSpec, create_series
from scheduler.models import LessonInstance, LessonKind
from scheduler.placement_models import RoomPlacement
from server.core.db import make_engine, make_session_factory
from server.core.migrate import upgrade
from signaling.client import LessonClient
from tests.conftest import TEST_SECRET
from tests.utils.factory import World, token_for
from tests.utils.cluster import start_nodes
from tests.utils.redisserver import RedisServer
from tests.utils.sanke_proc import Served
from tests.utils.tcpcut import TcpCut
from tests.utils.wait import wait_until

HEARTBEAT_S = 1.0
LEASE_S = 3.0
BALANCE = 2
"""docs/operations.md: rooms of one weight on alike nodes, each within this many of an even share."""
POLICY = IcePolicy.from_strings(None, "127.0.0.1", "127.0.0.0/8", None)
NAMES = ("node-a", "node-b", "node-c")
T = TypeVar("T")
_db_names = itertools.count()


def wait_for(what: str, check: Callable[[], T], timeout: float) -> T:
    """``check()`` until it returns something truthy, for at most ``timeout`` seconds (a node that does not
    answer yet, or a Redis that is down, counts as not yet)."""
    return wait_until(what, check, timeout, interval=0.05, ignoring=(httpx.HTTPError, redis.RedisError))


@dataclass
class Cluster:
    nodes: dict[str, Served]
    redis: redis.Redis
    db_url: str
    lessons: list[int]
    """Sixty dedicated lessons (one receiving classroom each), their rooms open."""
    spare: list[int]
    """Six more, for after the sixty."""
    teacher: str
    receiving: str
    """Access tokens of the lessons' teacher and of the receiving classroom's terminal."""
    links: dict[str, TcpCut]
    """Each node's way to Redis, which a test may cut."""

    def join_token(self, node: str, lesson: int, who: str | None = None) -> dict[str, Any]:
        r = httpx.post(f"{self.nodes[node].base}/api/v1/lessons/{lesson}/join-token",
                       headers={"Authorization": f"Bearer {who or self.teacher}"}, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    def base_of(self, node: str) -> str:
        return self.nodes[node].base

    def owner_of(self, ws_url: str) -> str:
        return next(name for name, srv in self.nodes.items()
                    if ws_url.startswith(srv.base.replace("http://", "ws://") + "/"))


def prepare(db_url: str) -> tuple[list[int], str, str, datetime]:
    """Sixty-six dedicated lessons on ``db_url``, their rooms open."""
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with make_session_factory(engine)() as s:
            w = World.build(s)
            for weekday, period in ((1, 1), (2, 1), (3, 1), (4, 1)):
                create_series(s, SeriesSpec(
                    kind=LessonKind.dedicated, title="三年级数学", subject="数学", grade="三年级", term_id=w.term.id,
                    main_classroom_id=w.main_room.id, main_teacher_id=w.teacher.id, weekday=weekday,
                    period_from=period, period_to=period, receivers=(ReceiverSpec(w.recv_room.id),),
                ), actor=w.urban_admin, scope=scope_of(s, w.urban_admin))
            instances = list(s.scalars(select(LessonInstance).order_by(LessonInstance.starts_at)))[:66]
            assert len(instances) == 66
            first = instances[0]
            for inst in instances:  # 08:00: every room opens in the same minute
                inst.room_opened_at = first.starts_at - timedelta(minutes=5)
            s.commit()
            return ([i.id for i in instances], token_for(w.teacher, TEST_SECRET),
                    token_for(w.terminal_recv, TEST_SECRET), first.starts_at - timedelta(minutes=4))
    finally:
        engine.dispose()


@pytest.fixture
def cluster(pg_server: Any, tmp_path: Path) -> Iterator[Cluster]:
    db_url = pg_server.create_database(f"sanke_place_{os.getpid()}_{next(_db_names)}")
    lessons, teacher, receiving, clock_at = prepare(db_url)
    rs = RedisServer().start()
    try:
        with ExitStack() as stack:
            links: dict[str, TcpCut] = {}
            nodes = start_nodes(stack, NAMES, redis_url=rs.url, db_url=db_url, redis_port=rs.port, tmp_path=tmp_path,
                                clock_at=clock_at, heartbeat_s=HEARTBEAT_S, lease_s=LEASE_S, links=links)
            r = redis.Redis.from_url(rs.url)
            yield Cluster(nodes, r, db_url, lessons[:60], lessons[60:], teacher, receiving, links)
    finally:
        rs.stop()


def placements(db_url: str) -> list[tuple[int, str, str]]:
    engine = make_engine(db_url)
    try:
        with make_session_factory(engine)() as s:
            return [(p.instance_id, p.node_id, p.placed_by) for p in s.scalars(select(RoomPlacement).order_by(RoomPlacement.id))]
    finally:
        engine.dispose()


def placed_counts(base: str) -> dict[str, float]:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    return {s.labels["result"]: s.value for f in text_string_to_metric_families(text)
            if f.name == "sanke_room_placements" for s in f.samples if s.name.endswith("_total")}


def rooms_open(base: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    return sum(s.value for f in text_string_to_metric_families(text) if f.name == "sanke_rooms" for s in f.samples)


def test_tokens_from_different_nodes_meet_in_one_room_and_a_wrong_node_redirects(cluster: Cluster) -> None:
    lesson = cluster.lessons[0]
    main = cluster.join_token("node-a", lesson)
    recv = cluster.join_token("node-b", lesson, cluster.receiving)
    assert main["ws_url"] == recv["ws_url"] and main["node_id"] == recv["node_id"]
    owner = cluster.owner_of(main["ws_url"])
    assert owner == main["node_id"]
    elsewhere = next(n for n in NAMES if n != owner)

    async def body() -> dict[str, Any]:
        # the teacher goes where the answer says; the classroom's socket reaches another node first
        teacher = LessonClient(cluster.base_of(owner), lesson, main["token"], policy=POLICY)
        classroom = LessonClient(cluster.base_of(elsewhere), lesson, recv["token"], policy=POLICY)
        try:
            await teacher.connect()
            seeing = asyncio.ensure_future(teacher.next_message("participant_joined"))
            await asyncio.sleep(0)  # the waiter is registered before the classroom joins
            joined = await classroom.connect()
            seen = await seeing
            return {"c": joined, "seen": seen, "teacher": teacher, "classroom": classroom}
        finally:
            await classroom.close()
            await teacher.close()

    got = asyncio.run(body())
    teacher, classroom, c, seen = got["teacher"], got["classroom"], got["c"], got["seen"]
    assert teacher.redirects == []
    assert [r["node_id"] for r in classroom.redirects] == [owner]
    assert classroom.url == main["ws_url"]
    assert [p["role"] for p in c["participants"]] == ["main"]  # the classroom sees the teacher...
    assert seen["participant"]["role"] == "receiving"  # ...and the teacher the classroom: one room
    rows = placements(cluster.db_url)
    assert [(lid, node) for lid, node, _ in rows] == [(lesson, owner)]
    assert rows[0][2] == "node-a"  # placed by the node the first token request reached
    # the node that redirected opened no copy of the room
    # (a scrape may reuse a load sample up to half a heartbeat old)
    wait_for("the owner's room in its metrics", lambda: rooms_open(cluster.base_of(owner)) == 1.0, 5)
    assert {name: rooms_open(cluster.base_of(name)) for name in NAMES if name != owner} == {
        name: 0.0 for name in NAMES if name != owner}


def test_sixty_rooms_in_one_second_spread_over_three_nodes_draining_and_killed_nodes(cluster: Cluster) -> None:
    lessons = cluster.lessons

    async def burst(ids: list[int], through: tuple[str, ...]) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(timeout=30) as client:
            async def one(i: int, lesson: int) -> dict[str, Any]:
                r = await client.post(f"{cluster.base_of(through[i % len(through)])}/api/v1/lessons/{lesson}/join-token",
                                      headers={"Authorization": f"Bearer {cluster.teacher}"})
                assert r.status_code == 200, r.text
                return r.json()
            return await asyncio.gather(*(one(i, lesson) for i, lesson in enumerate(ids)))

    started = time.monotonic()
    answers = asyncio.run(burst(lessons, NAMES))
    took = time.monotonic() - started
    per_node = Counter(a["node_id"] for a in answers)
    print(f"placement: 60 join tokens at once through three nodes: {dict(sorted(per_node.items()))} in {took:.2f} s")
    assert set(per_node) == set(NAMES), per_node
    for name in NAMES:
        assert abs(per_node[name] - 20) <= BALANCE, (per_node, took)
    owners = {lesson: a["node_id"] for lesson, a in zip(lessons, answers)}
    rows = placements(cluster.db_url)
    assert sorted((lid, node) for lid, node, _ in rows) == sorted(owners.items())  # one row per room
    # counted by the node that placed each room
    counts = [placed_counts(cluster.base_of(n)) for n in NAMES]
    assert sum(c.get("here", 0) + c.get("elsewhere", 0) for c in counts) == 60
    assert sum(c.get("refused", 0) for c in counts) == 0
    # asked again, through any node: the same owner
    again = asyncio.run(burst(lessons[:9], NAMES))
    assert [a["node_id"] for a in again] == [owners[lesson] for lesson in lessons[:9]]

    # node-c drains (SIGTERM): from the moment it says so it gets no new room
    cluster.nodes["node-c"].process.send_signal(signal.SIGTERM)
    wait_for("node-c draining", lambda: (raw := cluster.redis.get("sanke:node:node-c")) is None
             or json.loads(raw)["draining"], 5)
    fresh = asyncio.run(burst(cluster.spare, ("node-a", "node-b")))
    assert {a["node_id"] for a in fresh} <= {"node-a", "node-b"}
    # rooms of node-b, whose owner is then killed: placed again, on node-a (c drains, b is dead)
    victims = [lesson for lesson, node in owners.items() if node == "node-b"][:4]
    killed = cluster.nodes["node-b"].process
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(timeout=10)
    moved = wait_for("node-b's rooms placed again",
                     lambda: (a := asyncio.run(burst(victims, ("node-a",))))
                     and all(x["node_id"] != "node-b" for x in a) and a, 3 * HEARTBEAT_S + LEASE_S + 5)
    assert {x["node_id"] for x in moved} == {"node-a"}
    history = placements(cluster.db_url)
    for lesson in victims:
        # never placed on the killed node again, though its registry entry outlived its leases
        assert [node for lid, node, _ in history if lid == lesson] == ["node-b", "node-a"], history


def test_a_node_cut_off_from_redis_stops_its_room_before_another_node_takes_it(cluster: Cluster) -> None:
    lesson = cluster.lessons[1]
    first = cluster.join_token("node-a", lesson)
    owner = first["node_id"]
    other = next(n for n in NAMES if n != owner)

    async def body() -> dict[str, Any]:
        teacher = LessonClient(cluster.base_of(owner), lesson, first["token"], policy=POLICY)
        await teacher.connect()
        try:
            cluster.links[owner].cut()
            cut_at = time.monotonic()
            await asyncio.wait_for(teacher.ws.wait_closed(), LEASE_S + 5)
            closed_after = time.monotonic() - cut_at
            code = teacher.ws.close_code
            # meanwhile the others place the room again once its lease lapsed: on one of them
            loop = asyncio.get_running_loop()
            moved = await loop.run_in_executor(None, lambda: wait_for(
                "the room placed elsewhere", lambda: (a := cluster.join_token(other, lesson))["node_id"] != owner
                and a, 3 * HEARTBEAT_S + LEASE_S + 5))
            placed_after = time.monotonic() - cut_at
            health = httpx.get(f"{cluster.base_of(owner)}/healthz", timeout=10).json()
            return {"closed_after": closed_after, "code": code, "moved": moved, "placed_after": placed_after,
                    "health": health}
        finally:
            await teacher.close()
            cluster.links[owner].mend()

    r = asyncio.run(body())
    print(f"cut off from Redis: room stopped after {r['closed_after']:.2f} s, placed elsewhere after "
          f"{r['placed_after']:.2f} s")
    assert r["code"] == 4010  # its client goes for a new token, which names the next owner
    assert r["closed_after"] < LEASE_S  # before its lease could lapse...
    assert r["closed_after"] < r["placed_after"]  # ...so never two live copies
    assert r["moved"]["node_id"] != owner
    assert r["health"]["status"] == "degraded" and r["health"]["accepting_rooms"] is False
    wait_for("no room left on the cut-off node", lambda: rooms_open(cluster.base_of(owner)) == 0.0, 5)
    # Redis back: the node takes rooms again, and its own lease of the moved room was given up
    wait_for("the owner healthy again",
             lambda: httpx.get(f"{cluster.base_of(owner)}/healthz", timeout=10).json()["status"] == "ok", 10)
    assert cluster.redis.get(f"sanke:room:{lesson}") == r["moved"]["node_id"].encode()
    assert str(lesson).encode() not in cluster.redis.hkeys(f"sanke:node-rooms:{owner}")
