"""``/metrics`` during a live lesson, read with Prometheus's own parser, and who may read it.

A main classroom publishes a red wall and a tone through a media worker process; a receiving
classroom and a researcher on patrol receive them (aiortc clients, 127.0.0.1 only).  Two scrapes
show the room, its participants, the consumers and forwarded packets that grow between them."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from server.core.config import Settings
from tests.conftest import TEST_SECRET
from tests.media.sfu_helpers import RED, ColorTrack, ToneTrack, close_to, frames
from tests.media.sfu_harness import (  # noqa: F401 - fixtures of the SFU tests: a live lesson on 127.0.0.1
    Lesson,
    db_url,
    lesson,
    loopback_clients,
)

TOKEN = "scrape-me-0123456789abcdef"


@pytest.fixture
def settings(tmp_path: Any, db_url: str) -> Settings:  # noqa: F811 - this module's: a worker process, a token
    return Settings(data_dir=tmp_path / "data", database_url=db_url, secret_key=TEST_SECRET,
                    ice_host_addresses="127.0.0.1", ice_allowed_networks="127.0.0.0/8", media_workers=1,
                    media_spare_worker=False, node_id="node-m", metrics_token=TOKEN)


def scrape(base: str, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` as Prometheus reads it: (sample name, labels) → value."""
    r = httpx.get(f"{base}/metrics", headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted({"node": "node-m", **labels}.items())))]


def test_metrics_show_a_live_lesson_growing_between_two_scrapes(lesson: Lesson) -> None:
    w = lesson.world

    async def scenario() -> None:
        main = await lesson.join(w.teacher)
        recv = await lesson.join(w.terminal_recv)
        observer = await lesson.join(w.researcher_a)
        await main.publish({"camera": ColorTrack(RED), "microphone": ToneTrack()})
        m = main.participant_id
        await recv.subscribe([{"participant_id": m, "source": "camera"}, {"participant_id": m, "source": "microphone"}])
        await observer.subscribe([{"participant_id": m, "source": "camera"}])
        assert all(close_to(x, RED) for x in (await frames(await recv.track(m, "camera"), 10))[-5:])
        await frames(await observer.track(m, "camera"), 3)

        first = await asyncio.to_thread(scrape, lesson.base)
        assert value(first, "sanke_rooms") == 1
        assert value(first, "sanke_participants", role="main") == 1
        assert value(first, "sanke_participants", role="receiving") == 1
        assert value(first, "sanke_participants", role="observer") == 1
        assert value(first, "sanke_producers", worker="0") == 2
        assert value(first, "sanke_consumers", worker="0") == 3  # camera + microphone, and the patrol's camera
        assert value(first, "sanke_worker_routers", worker="0") == 1
        forwarded = value(first, "sanke_forwarded_packets_total", worker="0")
        assert forwarded > 0 and value(first, "sanke_forwarded_bytes_total", worker="0") > forwarded * 12
        assert value(first, "sanke_received_packets_total", worker="0") > 0
        assert value(first, "sanke_worker_cpu_seconds_total", worker="0") > 0
        assert value(first, "sanke_loss_ratio_down", worker="0") < 0.05  # nothing lost on loopback
        assert value(first, "sanke_node_accepting_rooms") == 1 and value(first, "sanke_node_draining") == 0
        assert value(first, "sanke_eventlog_backlog") >= 0
        assert ("sanke_room_placements_total", (("result", "here"),)) in first
        assert ("sanke_failovers_total", (("side", "taken_over"),)) in first

        deadline = time.monotonic() + 10
        while True:  # the forwarding goes on: a later scrape counts more
            await asyncio.sleep(0.3)
            later = await asyncio.to_thread(scrape, lesson.base)
            if value(later, "sanke_forwarded_packets_total", worker="0") > forwarded:
                break
            assert time.monotonic() < deadline, "forwarded packets did not grow"
        assert value(later, "sanke_worker_cpu_seconds_total", worker="0") >= value(
            first, "sanke_worker_cpu_seconds_total", worker="0")

        # a subscriber that leaves takes its consumers away, not the packets already counted
        before = value(later, "sanke_forwarded_packets_total", worker="0")
        await observer.close()
        deadline = time.monotonic() + 10
        while True:
            after = await asyncio.to_thread(scrape, lesson.base)
            if value(after, "sanke_consumers", worker="0") == 2:
                break
            assert time.monotonic() < deadline, "the observer's consumer stayed"
            await asyncio.sleep(0.2)
        assert value(after, "sanke_forwarded_packets_total", worker="0") >= before
        assert value(after, "sanke_participants", role="observer") == 0

    lesson.play(scenario)


def test_metrics_answer_this_machine_and_the_token_only(lesson: Lesson) -> None:
    base = lesson.base
    key = ("sanke_login_failures_total", (("reason", "bad_password"),))
    before = scrape(base)[key]
    r = httpx.post(f"{base}/api/v1/auth/login", json={"username": lesson.world.teacher.username, "password": "nope"})
    assert r.status_code == 401
    assert scrape(base)[key] == before + 1  # counted on the node that refused it
    assert httpx.get(f"{base}/metrics").status_code == 200  # loopback, straight to the node
    # through a proxy (uvicorn takes the forwarded address from a local proxy): a caller elsewhere
    elsewhere = {"X-Forwarded-For": "203.0.113.7"}
    r = httpx.get(f"{base}/metrics", headers=elsewhere)
    assert r.status_code == 403 and "sanke_" not in r.text
    assert httpx.get(f"{base}/metrics", headers={**elsewhere, "Authorization": "Bearer wrong"}).status_code == 403
    assert httpx.get(f"{base}/metrics", headers={"X-Real-IP": "127.0.0.1"}).status_code == 403  # a proxy's
    samples = scrape(base, **elsewhere, Authorization=f"Bearer {TOKEN}")
    assert value(samples, "sanke_rooms") == 0
