"""Placement against a real redis-server: rooms spread by headroom and weight, also sixty in the same
second; one owner per room whoever asks; draining and full nodes skipped; the lease held while its
owner renews it and placed again when the owner is gone.

The nodes here are registry entries written as their heartbeats write them (``server.core.nodes``),
read by three :class:`Placement` objects, one per node, as three ``sanke serve`` processes would;
tests/server/test_placement_nodes.py does the same with real nodes."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter

from scheduler.models import LessonKind
from scheduler.room_weight import room_weight
from server.core.config import Settings
from server.core.nodes import KEY_PREFIX, NodeInfo, NodeRegistry
from tests.utils.tcpcut import TcpCut
from server.core.placement import (
    LIVE_PREFIX,
    NODE_ROOMS_PREFIX,
    ROOM_PREFIX,
    NoNodeError,
    Placed,
    Placement,
    headroom,
)

NODES = ("node-a", "node-b", "node-c")
BALANCE = 2
"""The documented balance (docs/operations.md): rooms of one weight on alike nodes, each node within
this many rooms of an even share."""


def entry(node_id: str, *, consumers: int = 0, cpu: float = 0.0, draining: bool = False,
          accepting: bool = True, max_rooms: int | None = None, workers: int = 1) -> NodeInfo:
    return NodeInfo(node_id=node_id, url=f"http://127.0.0.{NODES.index(node_id) + 1}:8000",
                    media_addresses=["127.0.0.1"], started_at=time.time(), draining=draining,
                    accepting_rooms=accepting and not draining,
                    capacity={"workers": workers, "consumers_per_worker": 300, "max_rooms": max_rooms},
                    workers=[{"index": i, "pid": 1, "cpu": cpu / workers, "packets_per_s": 0.0, "routers": 0,
                              "transports": 0, "producers": 0, "consumers": consumers // workers}
                             for i in range(workers)])


class Cluster:
    """Redis, the nodes' entries and one Placement per node."""

    def __init__(self, url: str, lease_s: float) -> None:
        self.url = url
        self.lease_s = lease_s
        self.redis = aioredis.from_url(url)
        self.registry = CollectorRegistry()
        self.counter = PromCounter("sanke_room_placements", "test", ["result"], registry=self.registry)
        self.records: list[tuple[str, int, str, int]] = []
        self.placements: dict[str, Placement] = {}
        self._clients: list[Any] = []

    async def write(self, info: NodeInfo, ttl_s: float = 30.0) -> None:
        """A node's heartbeat, and its lease renewals going on (its live key)."""
        await self.redis.set(KEY_PREFIX + info.node_id, info.to_json(), px=int(ttl_s * 1000))
        await self.redis.set(LIVE_PREFIX + info.node_id, "1", px=int(ttl_s * 1000))

    def placement(self, node_id: str, url: str | None = None) -> Placement:
        """``url``: the Redis this node reaches (default: the cluster's)."""
        if node_id not in self.placements:
            client = aioredis.from_url(url or self.url)
            self._clients.append(client)
            settings = Settings(node_id=node_id, node_heartbeat_seconds=1.0)
            registry = NodeRegistry(settings, load=None, redis=client)  # type: ignore[arg-type]
            registry.redis_ok = True
            self.placements[node_id] = Placement(
                registry, lease_seconds=self.lease_s, counter=self.counter,
                record=lambda kind, lesson, node, weight, now: self.records.append((kind, lesson, node, weight)))
        return self.placements[node_id]

    def count(self, result: str) -> float:
        return self.registry.get_sample_value("sanke_room_placements_total", {"result": result}) or 0.0

    async def owners(self, lessons: range) -> dict[int, str | None]:
        raw = await self.redis.mget([ROOM_PREFIX + str(n) for n in lessons])
        return {n: (v.decode() if v is not None else None) for n, v in zip(lessons, raw)}

    async def close(self) -> None:
        for client in [self.redis, *self._clients]:
            await client.aclose()


@asynccontextmanager
async def cluster(redis_server: Any, lease_s: float = 30.0) -> AsyncIterator[Cluster]:
    c = Cluster(redis_server.url, lease_s)
    await c.redis.flushdb()
    try:
        yield c
    finally:
        await c.close()


def run(body: Callable[[], Any]) -> Any:
    return asyncio.run(body())


# ---------------------------------------------------------------------------------------------- the rule


def test_a_famous_school_lesson_weighs_more_than_a_dedicated_one() -> None:
    dedicated = room_weight(LessonKind.dedicated, receivers=1, students=0)
    dedicated_3 = room_weight(LessonKind.dedicated, receivers=3, students=0)
    master = room_weight(LessonKind.master, receivers=12, students=0)
    famous = room_weight(LessonKind.famous_school, receivers=2, students=0)
    assert dedicated == 3 * 1 + 2 * 1  # main's 3 tracks to one classroom, its 2 tracks back
    assert dedicated_3 == 3 * 3 + 2 * 3 + 2 * 3  # and the classroom on stage to everyone
    assert dedicated < dedicated_3 < master < famous
    assert famous >= 3 * 100  # watched by whole schools: at least its kind's audience
    with pytest.raises(ValueError):
        room_weight(LessonKind.dedicated, receivers=-1, students=0)


def test_headroom_counts_the_busier_of_consumers_and_cpu() -> None:
    assert headroom(entry("node-a")) == (300, 0)
    assert headroom(entry("node-a", consumers=120)) == (300, 120)
    assert headroom(entry("node-a", cpu=0.85)) == (300, 300)  # a full core: full, whatever its consumers
    assert headroom(entry("node-a", cpu=0.04)) == (300, 0)  # an idle worker's timers are no load
    assert headroom(entry("node-a", consumers=10, cpu=0.45)) == (300, 150)
    assert headroom(entry("node-a", workers=2, consumers=100, cpu=0.2)) == (600, 100)


def test_ws_url_is_the_owners_socket_of_the_lesson() -> None:
    assert Placed("n", "https://node1.example.edu.cn/", new=True, here=False).ws_url(7) == \
        "wss://node1.example.edu.cn/api/v1/lessons/7/ws"
    assert Placed("n", "http://127.0.0.1:8001", new=True, here=False).ws_url(7) == "ws://127.0.0.1:8001/api/v1/lessons/7/ws"


# ---------------------------------------------------------------------------------------------- spreading


def test_sixty_rooms_placed_in_the_same_second_through_three_nodes_are_spread_evenly(redis_server) -> None:
    async def body() -> tuple[Counter[str], dict[int, str | None], float, float]:
        async with cluster(redis_server) as c:
            for n in NODES:
                await c.write(entry(n))
            weight = room_weight(LessonKind.dedicated, receivers=1, students=0)
            lessons = range(1000, 1060)
            # every request at once, each reaching one of the three nodes (as a load balancer sends them)
            placed = await asyncio.gather(*(c.placement(NODES[i % 3]).place(lesson, weight)
                                            for i, lesson in enumerate(lessons)))
            owners = await c.owners(lessons)
            return Counter(p.node_id for p in placed), owners, c.count("here"), c.count("elsewhere")

    per_node, owners, here, elsewhere = run(body)
    assert set(per_node) == set(NODES)
    for n in NODES:
        assert abs(per_node[n] - 20) <= BALANCE, per_node
    assert Counter(owners.values()) == per_node  # the leases say the same as the answers
    assert here + elsewhere == 60


def test_placement_goes_by_headroom_and_weight_not_room_count(redis_server) -> None:
    async def body() -> list[str]:
        async with cluster(redis_server) as c:
            await c.write(entry("node-a", consumers=200))  # busy with lessons placed before
            await c.write(entry("node-b", cpu=0.6))  # its worker 60 % busy: ~206 consumers' worth
            await c.write(entry("node-c"))
            p = c.placement("node-a")
            famous = room_weight(LessonKind.famous_school, receivers=2, students=0)  # > 300: fits nowhere whole
            dedicated = room_weight(LessonKind.dedicated, receivers=1, students=0)
            order = [(await p.place(1, famous)).node_id]
            # node-c now carries the famous school's weight; the small rooms go where most is free
            order += [(await p.place(lesson, dedicated)).node_id for lesson in range(2, 8)]
            return order

    order = run(body)
    assert order[0] == "node-c"  # the most headroom, although every node has no room yet
    assert order[1:] == ["node-a"] * 6  # 100 free on node-a, 94 on node-b, none on node-c


def test_a_room_asked_for_through_every_node_at_once_gets_one_owner(redis_server) -> None:
    async def body() -> tuple[set[str], list[tuple[str, int, str, int]], float]:
        async with cluster(redis_server) as c:
            for n in NODES:
                await c.write(entry(n))
            placed = await asyncio.gather(*(c.placement(NODES[i % 3]).place(42, 5) for i in range(30)))
            return {p.node_id for p in placed}, c.records, c.count("here") + c.count("elsewhere")

    owners, records, counted = run(body)
    assert len(owners) == 1
    assert len([r for r in records if r[0] == "placed"]) == 1 == counted


def test_draining_full_and_unhealthy_nodes_get_no_new_rooms_but_keep_theirs(redis_server) -> None:
    async def body() -> dict[str, Any]:
        async with cluster(redis_server) as c:
            for n in NODES:
                await c.write(entry(n))
            p = c.placement("node-a")
            first = (await p.place(1, 5)).node_id  # all alike: one of them
            await c.write(entry(first, draining=True))
            others = [n for n in NODES if n != first]
            await c.write(entry(others[0], max_rooms=2))
            await c.write(entry(others[1], accepting=False))  # lost Redis a moment ago
            later = [(await p.place(lesson, 5)).node_id for lesson in (2, 3)]
            kept = (await p.place(1, 5)).node_id  # the draining node keeps the room it has
            try:
                await p.place(4, 5)
                refused = False
            except NoNodeError:
                refused = True
            return {"first": first, "others": others, "later": later, "kept": kept, "refused": refused,
                    "count": c.count("refused")}

    r = run(body)
    assert r["later"] == [r["others"][0]] * 2
    assert r["kept"] == r["first"]
    assert r["refused"] and r["count"] == 1  # node 1 full (2 rooms), node 2 not accepting, node 0 draining


# ---------------------------------------------------------------------------------------------- the lease


def test_the_owner_renews_its_leases_and_releases_a_closed_room(redis_server) -> None:
    async def body() -> dict[str, Any]:
        async with cluster(redis_server, lease_s=0.6) as c:
            for n in NODES:
                await c.write(entry(n, consumers=0 if n == "node-b" else 250))
            placed = await c.placement("node-a").place(7, 5)
            owner = c.placement(placed.node_id)
            async with owner:  # renews every 0.2 s
                await asyncio.sleep(1.5)  # 2.5 leases
                held = (await c.owners(range(7, 8)))[7]
                ttl = await c.redis.pttl(NODE_ROOMS_PREFIX + placed.node_id)
            owner.on_event("lesson", {"type": "room_closed", "instance_id": 7})
            deadline = time.monotonic() + 5
            while (await c.redis.get(ROOM_PREFIX + "7")) is not None and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            return {"placed": placed, "held": held, "ttl": ttl,
                    "after": await c.redis.get(ROOM_PREFIX + "7"),
                    "hash": await c.redis.hgetall(NODE_ROOMS_PREFIX + placed.node_id),
                    "records": c.records, "renewals": owner.renewals}

    r = run(body)
    assert r["placed"].node_id == "node-b" and r["placed"].new and not r["placed"].here
    assert r["held"] == "node-b" and r["renewals"] >= 5
    assert 0 < r["ttl"] <= 600
    assert r["after"] is None and r["hash"] == {}
    assert [x[:3] for x in r["records"]] == [("placed", 7, "node-b"), ("released", 7, "node-b")]


def test_a_room_whose_owner_is_gone_is_placed_again_on_the_next_join(redis_server) -> None:
    async def body() -> dict[str, Any]:
        async with cluster(redis_server, lease_s=0.5) as c:
            for n in NODES:
                await c.write(entry(n, consumers=0 if n == "node-c" else 100))
            first = await c.placement("node-a").place(9, 5)
            # node-c dies: its heartbeat and its renewals stop, its entry expires, its lease lapses
            await c.redis.delete(KEY_PREFIX + "node-c")
            await asyncio.sleep(0.7)
            lapsed = await c.redis.get(ROOM_PREFIX + "9")
            second = await c.placement("node-a").place(9, 5)
            # the new owner is killed too: its registry entry is gone before its lease lapsed, and the
            # lease of a node that is not registered counts for nothing
            await c.redis.delete(KEY_PREFIX + second.node_id)
            held = await c.redis.get(ROOM_PREFIX + "9")
            third = await c.placement("node-a").place(9, 5)
            return {"first": first.node_id, "lapsed": lapsed, "second": second, "held": held, "third": third,
                    "records": [r[:3] for r in c.records]}

    r = run(body)
    assert r["first"] == "node-c" and r["lapsed"] is None
    assert r["second"].new and r["second"].node_id in ("node-a", "node-b")
    assert r["held"] == r["second"].node_id.encode()
    remaining = ({"node-a", "node-b"} - {r["second"].node_id}).pop()
    assert r["third"].new and r["third"].node_id == remaining
    assert [x[2] for x in r["records"]] == ["node-c", r["second"].node_id, remaining]


def test_an_owner_whose_renewal_is_overdue_stays_the_owner_and_the_answer_says_when_its_lease_lapses(
        redis_server) -> None:
    """A killed owner's clients cannot reach it, and until its lease lapses every answer names it: the
    answer says when the lease lapses once a renewal is overdue (never while its owner renews), so they
    ask again right then.  The lease itself ends only by Redis's expiry."""
    async def body() -> dict[str, Any]:
        async with cluster(redis_server, lease_s=1.2) as c:
            for n in NODES:
                await c.write(entry(n, consumers=0 if n == "node-b" else 250))
            placed = await c.placement("node-a").place(7, 5)
            owner = c.placement(placed.node_id)
            renewing = []
            async with owner:  # renews every 0.4 s: never overdue
                for _ in range(12):
                    renewing.append(await c.placement("node-c").place(7, 5))
                    await asyncio.sleep(0.05)
            # the owner stopped renewing (killed): once half the lease is left its renewal is overdue
            left = await c.redis.pttl(ROOM_PREFIX + "7")
            fresh = await c.placement("node-c").place(7, 5)
            await asyncio.sleep(max(0.0, left / 1000 - 0.25))
            asked = time.monotonic()
            overdue = await c.placement("node-c").place(7, 5)
            here = await c.placement(placed.node_id).place(7, 5)  # the owner itself is told nothing
            while await c.redis.get(ROOM_PREFIX + "7") is not None:
                await asyncio.sleep(0.005)
            lapsed = time.monotonic() - asked
            after = await c.placement("node-c").place(7, 5)
            return {"placed": placed, "renewing": renewing, "left": left, "fresh": fresh, "overdue": overdue,
                    "here": here, "lapsed": lapsed, "after": after}

    r = run(body)
    owner = r["placed"].node_id
    assert all(p.node_id == owner and p.lapses_in_ms is None for p in r["renewing"]), r["renewing"]
    assert r["left"] > 600 and r["fresh"].node_id == owner and r["fresh"].lapses_in_ms is None
    overdue = r["overdue"]
    assert overdue.node_id == owner and not overdue.new and overdue.lapses_in_ms is not None
    assert 0 < overdue.lapses_in_ms < 600
    assert abs(r["lapsed"] - overdue.lapses_in_ms / 1000) < 0.05, (r["lapsed"], overdue)
    assert r["here"].here and r["here"].lapses_in_ms is None
    assert r["after"].new and r["after"].node_id != owner and r["after"].lapses_in_ms is None


def test_a_registered_node_whose_renewals_stopped_gets_no_room(redis_server) -> None:
    """A killed node's registry entry outlives its leases by up to a heartbeat or two; in that time it
    must not be chosen again, neither for the rooms it had nor for new ones."""
    async def body() -> dict[str, Any]:
        async with cluster(redis_server, lease_s=0.5) as c:
            for n in NODES:  # node-c has the most headroom
                await c.write(entry(n, consumers=0 if n == "node-c" else 100))
            first = (await c.placement("node-a").place(9, 5)).node_id
            # node-c is killed: its renewals stop (live key and leases lapse), its entry is still there
            await c.redis.delete(LIVE_PREFIX + "node-c", ROOM_PREFIX + "9")
            registered = await c.redis.exists(KEY_PREFIX + "node-c")
            again = await c.placement("node-b").place(9, 5)
            fresh = [(await c.placement("node-a").place(lesson, 5)).node_id for lesson in (10, 11, 12)]
            # every node's renewals stopped: nobody takes the room
            await c.redis.delete(*(LIVE_PREFIX + n for n in NODES))
            try:
                await c.placement("node-a").place(13, 5)
                refused = False
            except NoNodeError:
                refused = True
            return {"first": first, "registered": registered, "again": again, "fresh": fresh, "refused": refused}

    r = run(body)
    assert r["first"] == "node-c" and r["registered"] == 1
    assert r["again"].new and r["again"].node_id in ("node-a", "node-b")
    assert set(r["fresh"]) <= {"node-a", "node-b"}
    assert r["refused"]


def test_a_node_that_cannot_renew_stops_its_rooms_before_their_leases_lapse(redis_server) -> None:
    """Cut off from Redis, the owner stops serving its rooms while their leases still hold (so there is
    never a second live copy once another node takes them), and when Redis is back it gives up those
    leases instead of taking them back; a lease another node took is given up at the next renewal."""
    async def body() -> dict[str, Any]:
        link = TcpCut("127.0.0.1", redis_server.port).start()
        try:
            async with cluster(redis_server, lease_s=0.9) as c:
                for n in NODES:
                    await c.write(entry(n, consumers=0 if n == "node-b" else 250))
                owner = c.placement("node-b", url=link.url())
                stopped: list[tuple[list[int] | None, bytes | None]] = []
                rooms_here = {7, 8}

                def on_lost(lessons: list[int] | None) -> list[int]:
                    gone = sorted(rooms_here if lessons is None else rooms_here & set(lessons))
                    rooms_here.difference_update(gone)
                    stopped.append((lessons, None))
                    return gone

                owner.on_lost = on_lost
                async with owner:  # renews every 0.3 s
                    placed = [(await c.placement("node-a").place(lesson, 5)).node_id for lesson in (7, 8)]
                    await asyncio.sleep(0.5)
                    link.cut()
                    cut_at = time.monotonic()
                    while not stopped and time.monotonic() < cut_at + 5:
                        await asyncio.sleep(0.01)
                    stopped_after = time.monotonic() - cut_at
                    held = await c.redis.mget([ROOM_PREFIX + "7", ROOM_PREFIX + "8"])  # not lapsed yet
                    while await c.redis.exists(ROOM_PREFIX + "7") and time.monotonic() < cut_at + 5:
                        await asyncio.sleep(0.01)
                    elsewhere = (await c.placement("node-a").place(7, 5)).node_id
                    link.mend()
                    renewals = owner.renewals
                    while owner.renewals < renewals + 2 and time.monotonic() < cut_at + 10:
                        await asyncio.sleep(0.01)
                    after = {"7": await c.redis.get(ROOM_PREFIX + "7"), "8": await c.redis.get(ROOM_PREFIX + "8"),
                             "hash": await c.redis.hkeys(NODE_ROOMS_PREFIX + "node-b")}
                    # a room placed here again, then taken by another node (as after a lapse elsewhere)
                    rooms_here.add(9)
                    await c.redis.set(ROOM_PREFIX + "9", "node-b")
                    await c.redis.hset(NODE_ROOMS_PREFIX + "node-b", "9", 5)
                    await c.redis.set(ROOM_PREFIX + "9", "node-c")
                    while len(stopped) < 2 and time.monotonic() < cut_at + 15:
                        await asyncio.sleep(0.01)
                return {"placed": placed, "stopped": stopped, "stopped_after": stopped_after, "held": held,
                        "elsewhere": elsewhere, "after": after, "dropped": owner.dropped_total, "left": rooms_here}
        finally:
            link.stop()

    r = run(body)
    assert r["placed"] == ["node-b", "node-b"]
    assert r["stopped"][0][0] is None  # every room here
    assert r["stopped_after"] < 0.9, r  # before a lease (0.9 s) could lapse...
    assert r["held"] == [b"node-b", b"node-b"]  # ...and indeed while both were still node-b's
    assert r["elsewhere"] != "node-b"
    assert r["after"]["7"] == r["elsewhere"].encode()
    assert r["after"]["8"] is None and r["after"]["hash"] == []  # given up, not taken back
    assert r["stopped"][1][0] == [9] and r["left"] == set()
    assert r["dropped"] == 3


def test_without_redis_this_node_owns_every_room_and_nothing_is_written() -> None:
    async def body() -> Placed:
        settings = Settings(node_id="solo", port=8123)
        registry = NodeRegistry(settings, load=None)  # type: ignore[arg-type]
        records: list[Any] = []
        p = Placement(registry, lease_seconds=6, record=lambda *a: records.append(a))
        async with p:
            placed = await p.place(1, 5)
        assert records == []
        return placed

    placed = run(body)
    assert placed == Placed("solo", "http://127.0.0.1:8123", new=False, here=True)
