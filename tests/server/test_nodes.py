"""Nodes as an operator runs them: ``sanke serve`` processes on one Redis register, heartbeat with
their load, vanish when killed, say so when Redis is gone, come back with it, and show draining on
SIGTERM.  Every process (redis-server, servers, their media workers) is started and stopped here, on
127.0.0.1 only.  The registry is read straight from Redis, as another node would read it."""

from __future__ import annotations

import json
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import redis

from tests.utils.live import free_port
from tests.utils.redisserver import RedisServer
from tests.utils.sanke_proc import DEMO_AT, Served, child_env, clock_hook, served
from tests.utils.wait import wait_until

HEARTBEAT_S = 1.0
TTL_S = 3 * HEARTBEAT_S
"""A node's entry lives three heartbeats (``Settings.node_ttl_seconds``)."""
POLL_S = 0.05

T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T], timeout: float) -> T:
    """``check()`` until it returns something truthy, for at most ``timeout`` seconds (a node that does not
    answer yet, or a Redis that is down, counts as not yet)."""
    return wait_until(what, check, timeout, interval=POLL_S, ignoring=(httpx.HTTPError, redis.RedisError))


def entries(r: redis.Redis) -> dict[str, dict[str, Any]]:
    """The registry as Redis holds it: node id → entry."""
    out = {}
    for key in r.scan_iter(match="sanke:node:*"):
        raw = r.get(key)
        if raw is not None:
            entry = json.loads(raw)
            assert key.decode() == "sanke:node:" + entry["node_id"]
            out[entry["node_id"]] = entry
    return out


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test alone (the tests stop and restart it)."""
    server = RedisServer().start()
    yield server
    server.stop()


@contextmanager
def node(tmp_path: Path, name: str, redis_url: str, *, heartbeat_s: float = HEARTBEAT_S,
         **settings: str) -> Iterator[tuple[Served, int]]:
    """``sanke serve`` (this checkout's code) on a free port with its own SQLite, one media worker."""
    port = free_port()
    env = child_env(clock_hook(tmp_path / "hook"), DEMO_AT, SANKE_DATA_DIR=str(tmp_path / name),
                    SANKE_REDIS_URL=redis_url, SANKE_MEDIA_WORKERS="1", SANKE_MEDIA_SPARE_WORKER="0",
                    SANKE_NODE_HEARTBEAT_SECONDS=str(heartbeat_s), **settings)
    command = [sys.executable, "-m", "server.cli", "serve", "--port", str(port)]
    with served(command, env, port, tmp_path / f"{name}.log", start_timeout=120) as srv:
        yield srv, port


def comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def test_two_nodes_register_with_their_load_and_a_killed_one_is_gone_within_the_ttl(own_redis, tmp_path):
    r = redis.Redis.from_url(own_redis.url)
    host = socket.gethostname()
    with ExitStack() as stack:
        (a, port_a) = stack.enter_context(node(tmp_path, "a", own_redis.url))
        (b, port_b) = stack.enter_context(node(tmp_path, "b", own_redis.url, SANKE_NODE_MAX_ROOMS="40"))
        ids = {f"{host}:{port_a}", f"{host}:{port_b}"}  # the default id: host name and port
        found = wait_for("both nodes registered", lambda: set((e := entries(r))) == ids and e, 10)
        for port, entry in ((port_a, found[f"{host}:{port_a}"]), (port_b, found[f"{host}:{port_b}"])):
            assert entry["url"] == f"http://127.0.0.1:{port}"
            assert entry["media_addresses"] == ["127.0.0.1"]  # a loopback server's media stay on loopback
            assert entry["draining"] is False and entry["accepting_rooms"] is True
            assert entry["rooms"] == 0 and entry["participants"] == 0
            assert entry["capacity"]["workers"] == 1 and entry["capacity"]["consumers_per_worker"] == 300
            [worker] = entry["workers"]  # the load of its one media worker, a process of its own
            assert worker["index"] == 0 and comm(worker["pid"]) == "sanke-media-0"
            assert worker["consumers"] == 0 and 0 <= worker["cpu"] < 2
        assert found[f"{host}:{port_a}"]["capacity"]["max_rooms"] is None
        assert found[f"{host}:{port_b}"]["capacity"]["max_rooms"] == 40
        # the heartbeat keeps an entry alive well past its time to live
        first_seen = time.monotonic()
        while time.monotonic() < first_seen + 2 * TTL_S:
            assert set(entries(r)) == ids
            time.sleep(0.2)

        # node b is killed: no goodbye, its key expires
        b.process.send_signal(signal.SIGKILL)
        b.process.wait(timeout=10)
        killed = time.monotonic()
        left_ms = r.pttl(f"sanke:node:{host}:{port_b}")
        assert 0 < left_ms <= TTL_S * 1000  # at most one time to live from its last heartbeat...
        wait_for("node b gone", lambda: set(entries(r)) == {f"{host}:{port_a}"}, TTL_S + 5)
        gone_after = time.monotonic() - killed
        assert gone_after <= left_ms / 1000 + 1.5, (gone_after, left_ms)  # ...and never renewed (1.5 s: polling)
        health = httpx.get(f"{a.base}/healthz").json()
        assert health["status"] == "ok" and health["redis"] == "ok" and health["accepting_rooms"] is True
        assert health["node_id"] == f"{host}:{port_a}"
    # a stopped node leaves the registry at once
    assert entries(r) == {}


def test_a_node_that_loses_redis_says_so_and_registers_again_when_it_is_back(own_redis, tmp_path):
    r = redis.Redis.from_url(own_redis.url)
    with node(tmp_path, "a", own_redis.url, SANKE_NODE_ID="node-a") as (a, _):
        wait_for("registered", lambda: "node-a" in entries(r), 10)
        own_redis.halt()
        lost = wait_for("healthz says Redis is gone",
                        lambda: (h := httpx.get(f"{a.base}/healthz", timeout=5).json())["redis"] == "unreachable" and h,
                        3 * HEARTBEAT_S + 5)
        assert lost["status"] == "degraded" and lost["accepting_rooms"] is False and lost["draining"] is False
        assert httpx.get(f"{a.base}/healthz").status_code == 200  # its lessons go on: not taken out of service
        assert "sanke_node_accepting_rooms{node=\"node-a\"} 0.0" in httpx.get(f"{a.base}/metrics").text

        wait_for("a heartbeat failed", lambda: "cannot reach Redis" in a.text(), 3 * HEARTBEAT_S + 5)
        own_redis.start()  # empty, on the same port: as a restarted Redis without persistence
        # registered again, taking rooms once its bus has subscribed again too (a heartbeat may come first)
        wait_for("registered again", lambda: (e := entries(r).get("node-a")) and e["accepting_rooms"],
                 3 * HEARTBEAT_S + 5)
        back = wait_for("healthz says Redis is back",
                        lambda: (h := httpx.get(f"{a.base}/healthz", timeout=5).json())["status"] == "ok" and h, 10)
        assert back["redis"] == "ok" and back["accepting_rooms"] is True
        assert "Redis reachable again" in a.text()


def test_sigterm_shows_the_node_draining_before_it_goes(own_redis, tmp_path):
    r = redis.Redis.from_url(own_redis.url)
    heartbeat_s = 2.0  # the default: a draining node stays listed one heartbeat before it goes
    with node(tmp_path, "a", own_redis.url, heartbeat_s=heartbeat_s, SANKE_NODE_ID="node-a") as (a, _):
        before = wait_for("registered", lambda: entries(r).get("node-a"), 10)
        assert before["draining"] is False
        a.process.send_signal(signal.SIGTERM)
        entry = wait_for("draining in the registry", lambda: (e := entries(r).get("node-a")) and e["draining"] and e,
                         heartbeat_s)  # written at once, not at the next heartbeat
        assert entry["accepting_rooms"] is False
        assert a.process.wait(timeout=60) is not None
        assert "node-a" not in entries(r)  # it said goodbye on its way out
        assert "is draining" in a.text()
