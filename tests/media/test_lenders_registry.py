"""Lending nodes found in the registry: no address configured on the lesson's node.

Two ``sanke serve`` nodes (own processes, on 127.0.0.1) lend their one media worker
(``SANKE_MEDIA_REMOTE_LISTEN``) and take no rooms of their own (``SANKE_NODE_MAX_ROOMS=0``); one takes
5 consumers, the other 50.  Each advertises itself in its registry entry (address, free consumers).
The lesson's node (in this process, one worker taking three consumers, the same redis-server and
cluster secret, no ``SANKE_MEDIA_REMOTE_WORKERS``) connects to both from the registry; when its own
worker is full, the next subscriber goes to the lender with the most headroom and decodes the
teacher's camera through the pipe.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import redis

from server.core.config import Settings
from tests.conftest import TEST_SECRET
from tests.media.sfu_harness import (  # noqa: F401 - fixtures: a live lesson on 127.0.0.1
    Lesson,
    lesson,
    loopback_clients,
)
from tests.media.sfu_helpers import RED, ColorTrack, close_to, frames
from tests.utils.live import free_port
from tests.utils.redisserver import RedisServer
from tests.utils.sanke_proc import DEMO_AT, child_env, clock_hook, served
from tests.utils.wait import until

CLUSTER_SECRET = "cluster-secret-for-the-lender-test"
LENDERS = {"lender-a-small": 5, "lender-b-big": 50}
"""Node id → the consumers its one worker takes."""


@pytest.fixture
def db_url(pg_server: Any) -> Iterator[str]:
    """PostgreSQL only: nodes with Redis share one database (docs/operations.md)."""
    import psycopg

    name = f"sanke_lenders_{os.getpid()}"
    admin = f"host=127.0.0.1 port={pg_server.port} user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}" TEMPLATE sanke_template')
    yield pg_server.url(name)
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A redis-server of this test and the two lenders; (Redis URL, node id → lending address)."""
    rs = RedisServer().start()
    try:
        with ExitStack() as stack:
            addresses = {}
            for name, consumers in LENDERS.items():
                port, offer = free_port(), f"127.0.0.1:{free_port()}"
                env = child_env(clock_hook(tmp_path / "hook"), DEMO_AT, SANKE_DATA_DIR=str(tmp_path / name),
                                SANKE_SECRET_KEY=TEST_SECRET, SANKE_MEDIA_WORKERS="1", SANKE_MEDIA_SPARE_WORKER="0",
                                SANKE_ICE_HOST_ADDRESSES="127.0.0.1", SANKE_ICE_ALLOWED_NETWORKS="127.0.0.0/8",
                                SANKE_CLUSTER_SECRET=CLUSTER_SECRET, SANKE_MEDIA_REMOTE_LISTEN=offer, SANKE_NODE_ID=name,
                                SANKE_REDIS_URL=rs.url, SANKE_NODE_MAX_ROOMS="0", SANKE_NODE_HEARTBEAT_SECONDS="1",
                                SANKE_NODE_WORKER_CONSUMERS=str(consumers))
                command = [sys.executable, "-m", "server.cli", "serve", "--port", str(port)]
                stack.enter_context(served(command, env, port, tmp_path / f"{name}.log", start_timeout=120))
                addresses[name] = offer
            yield rs.url, addresses
    finally:
        rs.stop()


@pytest.fixture
def settings(tmp_path: Any, db_url: str, cluster: tuple[str, dict[str, str]]) -> Settings:  # noqa: F811
    return Settings(data_dir=tmp_path / "data", database_url=db_url, secret_key=TEST_SECRET,
                    ice_host_addresses="127.0.0.1", ice_allowed_networks="127.0.0.0/8", media_workers=1,
                    media_spare_worker=False, node_worker_consumers=3, cluster_secret=CLUSTER_SECRET,
                    redis_url=cluster[0], node_id="owner", node_heartbeat_seconds=1.0)


def test_the_lesson_node_finds_the_lenders_in_the_registry_and_picks_the_one_with_headroom(
        lesson: Lesson, app: Any, cluster: tuple[str, dict[str, str]]) -> None:
    url, addresses = cluster
    w = lesson.world
    home = f"lesson-{lesson.lid}"
    pool = app.state.media
    r = redis.Redis.from_url(url)
    try:
        # each lender advertises itself: where it is reached, what it still takes
        for name, consumers in LENDERS.items():
            entry = json.loads(r.get(f"sanke:node:{name}") or "{}")
            assert entry.get("lends") == {"address": addresses[name], "free_consumers": consumers}, entry
        assert json.loads(r.get("sanke:node:owner") or "{}").get("lends") is None  # lends nothing
    finally:
        r.close()

    async def scenario() -> None:
        await until("both lenders in reach, with their headroom", lambda: {h.remote for h in pool.remotes}
                    == set(addresses.values()) and set(pool.lender_free) == set(addresses.values()), 20)
        big = next(h for h in pool.remotes if h.remote == addresses["lender-b-big"])
        small = next(h for h in pool.remotes if h.remote == addresses["lender-a-small"])
        assert (pool.headroom(big), pool.headroom(small)) == (50, 5)
        assert small.index < big.index  # (found first: the registry lists it first)
        main = await lesson.join(w.teacher)
        recv_a = await lesson.join(w.terminal_recv)
        recv_b = await lesson.join(w.assistant)
        await main.publish({"camera": ColorTrack(RED), "screen": ColorTrack(RED)})
        m = main.participant_id
        both = [{"participant_id": m, "source": "camera"}, {"participant_id": m, "source": "screen"}]
        await recv_a.subscribe(both)  # this node's worker: 2 of 3
        await recv_b.subscribe(both)  # does not fit any more: to the lender with the most headroom
        service = app.state.media_factory.__self__

        def placement() -> dict[str, str]:
            placed = {t: r for media in list(service.rooms.values()) for t, r in list(media.transport_router.items())}
            return {c.participant_id: placed[t] for c in (recv_a, recv_b) for t in placed
                    if t.startswith(c.participant_id + "-recv")}

        await until("both subscribers placed", lambda: len(placement()) == 2, 10)
        assert placement() == {recv_a.participant_id: home, recv_b.participant_id: f"{home}@{big.index}"}, placement()
        assert pool.headroom(big) == 48 and pool.headroom(small) == 5  # counted at once, before its next entry
        seen = await frames(await recv_b.track(m, "camera"), 15)
        assert all(close_to(rgb, RED) for rgb in seen[-10:]), seen

    lesson.play(scenario)
