"""Real ``sanke serve`` nodes for the cluster tests: processes on 127.0.0.1 that share one PostgreSQL
database and one redis-server, each reaching Redis through its own :class:`TcpCut` (which a test may
cut), all started here and stopped by the ``ExitStack`` the caller passes (SIGTERM, then whatever is
left of each process group)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path

import httpx
import redis

from tests.conftest import TEST_SECRET
from tests.utils.live import free_port
from tests.utils.sanke_proc import Served, child_env, clock_hook, served
from tests.utils.tcpcut import TcpCut
from tests.utils.wait import wait_until


def start_node(stack: ExitStack, name: str, *, db_url: str, redis_port: int, tmp_path: Path, clock_at: datetime,
               heartbeat_s: float, lease_s: float, links: dict[str, TcpCut], port: int | None = None,
               **settings: str) -> Served:
    """One node, ``SANKE_NODE_ID`` ``name``, its data in ``tmp_path/name`` (a node started again with the
    same name and folder is the same node, as after a restart); its Redis link is ``links[name]``.  The
    nodes of one ``tmp_path`` share one clock (machines kept in time), which starts at ``clock_at``."""
    port = port or free_port()
    epoch = tmp_path / "clock-epoch"  # every node of the cluster (and a node started again) on one clock
    if not epoch.exists():
        epoch.write_text(repr(time.time()))
    if name not in links:
        links[name] = TcpCut("127.0.0.1", redis_port).start()
        stack.callback(links[name].stop)
    env = child_env(clock_hook(tmp_path / "hook"), clock_at, SANKE_DATA_DIR=str(tmp_path / name),
                    SANKE_DATABASE_URL=db_url, SANKE_REDIS_URL=links[name].url(), SANKE_SECRET_KEY=TEST_SECRET,
                    SANKE_NODE_ID=name, SANKE_MEDIA_SPARE_WORKER="0", SANKE_TEST_CLOCK_EPOCH=epoch.read_text(),
                    SANKE_NODE_HEARTBEAT_SECONDS=str(heartbeat_s), SANKE_ROOM_LEASE_SECONDS=str(lease_s),
                    **{"SANKE_MEDIA_WORKERS": "1", **settings})
    command = [sys.executable, "-m", "server.cli", "serve", "--port", str(port)]
    return stack.enter_context(served(command, env, port, tmp_path / f"{name}.log", start_timeout=120))


def start_nodes(stack: ExitStack, names: Iterable[str], *, redis_url: str, **kwargs: object) -> dict[str, Served]:
    """``start_node`` for each name, then wait until every one is registered with its media workers past
    their start (a starting worker's CPU counts as load)."""
    names = list(names)
    nodes = {name: start_node(stack, name, **kwargs) for name in names}  # type: ignore[arg-type]
    r = redis.Redis.from_url(redis_url)
    try:
        wait_until("settled nodes", lambda: len(e := [json.loads(r.get(k) or "{}") for k in r.keys("sanke:node:*")])
                   == len(names) and all(x.get("workers") and all(w["cpu"] < 0.05 for w in x["workers"]) for x in e),
                   30, interval=0.05, ignoring=(httpx.HTTPError, redis.RedisError))
    finally:
        r.close()
    return nodes
