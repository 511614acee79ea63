"""The event bus: in-process on one node, Redis pub/sub across nodes."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from fastapi.testclient import TestClient

from server.core.bus import InProcessBus, RedisBus
from server.core.config import Settings
from server.core.lifecycle_task import LifecycleTask
from server.main import create_app


async def _wait_for(items: list, n: int, timeout: float = 5.0) -> None:
    async def until() -> None:
        while len(items) < n:
            await asyncio.sleep(0.01)
    await asyncio.wait_for(until(), timeout)


def test_in_process_bus_delivers_in_order_and_survives_a_failing_handler():
    async def main() -> list:
        seen: list = []
        async with InProcessBus() as bus:
            bus.subscribe("lesson", lambda t, e: 1 / 0)
            bus.subscribe("lesson", lambda t, e: seen.append(e["n"]))
            for n in range(3):
                await bus.publish("lesson", {"n": n})
            await bus.publish("other", {"n": 99})
        return seen
    assert asyncio.run(main()) == [0, 1, 2]


def test_events_published_on_one_node_reach_subscribers_on_another(redis_server):
    async def main() -> tuple[list, list]:
        on_a: list = []
        on_b: list = []
        async with RedisBus(redis_server.url) as node_a, RedisBus(redis_server.url) as node_b:
            node_a.subscribe("lesson", lambda t, e: on_a.append(e))
            node_b.subscribe("lesson", lambda t, e: 1 / 0)  # a broken listener on B harms nobody
            node_b.subscribe("lesson", lambda t, e: on_b.append(e))
            for n in range(5):
                await node_a.publish("lesson", {"type": "room_opened", "instance_id": n, "名": "课"})
            await node_a.publish("unrelated", {"x": 1})
            await _wait_for(on_b, 5)
            await _wait_for(on_a, 5)
        return on_a, on_b
    on_a, on_b = asyncio.run(main())
    assert [e["instance_id"] for e in on_b] == [0, 1, 2, 3, 4] == [e["instance_id"] for e in on_a]
    assert on_b[0]["名"] == "课"


def test_app_with_redis_url_publishes_lifecycle_events_to_other_nodes(redis_server, tmp_path, session_factory,
                                                                      world, db_url, monkeypatch):
    from tests.scheduler.test_lifecycle import booked

    with session_factory() as s:
        first, _ = booked(s, world)
    monkeypatch.setattr("scheduler.clock.now", lambda: first.starts_at - timedelta(minutes=5))
    app = create_app(Settings(data_dir=tmp_path, database_url=db_url, secret_key="k" * 32,
                              redis_url=redis_server.url), migrate=False, run_lifecycle=False)
    seen: list = []

    async def other_node_watch_and_tick() -> None:
        async with RedisBus(redis_server.url) as other:
            other.subscribe("lesson", lambda t, e: seen.append(e))
            await LifecycleTask(app.state.session_factory, app.state.bus, app.state.settings).run_once()
            await _wait_for(seen, 1)

    with TestClient(app) as client:  # the lifespan enters the Redis bus
        assert client.get("/healthz").json()["status"] == "ok"
        client.portal.call(other_node_watch_and_tick)
    assert [(e["type"], e["instance_id"]) for e in seen] == [("room_opened", first.id)]
