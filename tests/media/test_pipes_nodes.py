"""A famous-school lesson larger than its node: subscribers served by a media worker of a second node
(``sanke serve`` in its own process, offering its workers with ``SANKE_MEDIA_REMOTE_LISTEN``), fed by a
pipe from the lesson's node, the two nodes talking over the cluster channel (``media.secure``); all on
127.0.0.1.

The first node has one worker taking three consumers. The first receiving classroom fills it; the second
and the observer go to the other node's worker. They decode the teacher's camera and screen, the observer
sees the on-stage slot switch there, and video packets dropped on the pipe are repaired by NACK.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from media import secure
from server.core.config import Settings
from tests.conftest import TEST_SECRET
from tests.media.sfu_harness import (  # noqa: F401 - fixtures: a live lesson on 127.0.0.1
    Lesson,
    db_url,
    lesson,
    loopback_clients,
)
from tests.media.sfu_helpers import BLUE, GREEN, RED, ColorTrack, ToneTrack, close_to, frames
from tests.media.test_pipes import GREY, dump
from tests.utils.sanke_proc import DEMO_AT, child_env, clock_hook, served
from tests.utils.wait import until

CLUSTER_SECRET = "cluster-secret-for-the-pipe-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def other_node(tmp_path_factory: Any) -> Iterator[str]:
    """A second node offering its one media worker to the cluster; its ``host:port`` for that."""
    tmp = tmp_path_factory.mktemp("other-node")
    port, offer = _free_port(), f"127.0.0.1:{_free_port()}"
    env = child_env(clock_hook(tmp / "hook"), DEMO_AT, SANKE_DATA_DIR=str(tmp / "data"), SANKE_SECRET_KEY=TEST_SECRET,
                    SANKE_MEDIA_WORKERS="1", SANKE_MEDIA_SPARE_WORKER="0", SANKE_ICE_HOST_ADDRESSES="127.0.0.1",
                    SANKE_ICE_ALLOWED_NETWORKS="127.0.0.0/8", SANKE_CLUSTER_SECRET=CLUSTER_SECRET,
                    SANKE_MEDIA_REMOTE_LISTEN=offer, SANKE_NODE_ID="node-b")
    command = [sys.executable, "-m", "server.cli", "serve", "--port", str(port)]
    with served(command, env, port, Path(tmp / "node-b.log"), start_timeout=120):
        yield offer


@pytest.fixture
def settings(tmp_path: Any, db_url: str, other_node: str) -> Settings:  # noqa: F811
    return Settings(data_dir=tmp_path / "data", database_url=db_url, secret_key=TEST_SECRET,
                    ice_host_addresses="127.0.0.1", ice_allowed_networks="127.0.0.0/8", media_workers=1,
                    media_spare_worker=False, node_worker_consumers=3, cluster_secret=CLUSTER_SECRET,
                    media_remote_workers=other_node)


def test_the_other_node_refuses_a_wrong_secret(other_node: str) -> None:
    host, port = other_node.split(":")

    async def main() -> None:
        with pytest.raises((secure.SecureError, asyncio.IncompleteReadError, ConnectionError)):
            await secure.connect(host, int(port), b"not-the-cluster-secret-at-all")

    asyncio.run(main())


def test_a_lesson_bigger_than_its_node_is_served_by_another_node(lesson: Lesson, app: Any) -> None:
    w = lesson.world
    home = f"lesson-{lesson.lid}"
    pool = app.state.media

    async def adump(router_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(dump, app, router_id)

    async def scenario() -> None:
        await until("the other node's workers in reach", lambda: pool.remotes, 20)
        far = f"{home}@{pool.remotes[0].index}"
        main = await lesson.join(w.teacher)
        recv_a = await lesson.join(w.terminal_recv)
        recv_b = await lesson.join(w.assistant)
        observer = await lesson.join(w.researcher_a)
        await main.publish({"camera": ColorTrack(RED), "screen": ColorTrack(GREY), "microphone": ToneTrack()})
        await recv_a.publish({"camera": ColorTrack(GREEN)})
        await recv_b.publish({"camera": ColorTrack(BLUE)})
        m = main.participant_id
        both = [{"participant_id": m, "source": "camera"}, {"participant_id": m, "source": "screen"}]
        await recv_a.subscribe([*both, {"participant_id": m, "source": "microphone"}])  # this node's worker is full
        await recv_b.subscribe(both)  # → the other node
        await observer.subscribe([{"participant_id": "stage", "source": "camera"}])  # → the other node too
        service = app.state.media_factory.__self__

        def placement() -> dict[str, str]:
            placed = {t: r for media in list(service.rooms.values()) for t, r in list(media.transport_router.items())}
            return {c.participant_id: placed[t] for c in (recv_a, recv_b, observer)
                    for t in placed if t.startswith(c.participant_id + "-recv")}

        await until("every subscriber placed", lambda: len(placement()) == 3, 10)
        assert placement() == {recv_a.participant_id: home, recv_b.participant_id: far,
                               observer.participant_id: far}, placement()

        for c in (recv_a, recv_b):
            seen = await frames(await c.track(m, "camera"), 15)
            assert all(close_to(rgb, RED) for rgb in seen[-10:]), (c.participant_id, seen)
            seen = await frames(await c.track(m, "screen"), 15)
            assert all(close_to(rgb, GREY) for rgb in seen[-10:]), (c.participant_id, seen)

        await main.request({"type": "set_on_stage", "participant_id": recv_a.participant_id})
        stage = await observer.track("stage", "camera")
        first = await frames(stage, 10)
        assert all(close_to(x, GREEN) for x in first[-5:]), first
        await main.request({"type": "set_on_stage", "participant_id": recv_b.participant_id})
        after = await frames(stage, 40)
        assert all(close_to(x, GREEN) or close_to(x, BLUE) for x in after), after
        first_blue = next(i for i, x in enumerate(after) if close_to(x, BLUE))
        assert all(close_to(x, BLUE) for x in after[first_blue:]), after

        (pipe_id,) = (await adump(far))["pipes"]
        await asyncio.to_thread(lambda: asyncio.run_coroutine_threadsafe(
            pool.request(far, "pipe.drop", {"router_id": far, "pipe_id": pipe_id, "every": 10}),
            pool.workers[0].channel._read_task.get_loop()).result(10))
        camera_b = await recv_b.track(m, "camera")
        got: list[tuple[int, int, int]] = []
        for _ in range(100):
            got += await frames(camera_b, 5)
            if (await adump(far))["pipes"][pipe_id]["dropped_on_purpose"] >= 30:
                break
        await asyncio.to_thread(lambda: asyncio.run_coroutine_threadsafe(
            pool.request(far, "pipe.drop", {"router_id": far, "pipe_id": pipe_id, "every": 0}),
            pool.workers[0].channel._read_task.get_loop()).result(10))
        got += await frames(camera_b, 30)
        assert all(close_to(x, RED) for x in got), got
        far_dump = await adump(far)
        far_pipe = far_dump["pipes"][pipe_id]
        recovered = sum(sum(v["recovered"]) for v in far_pipe["in"].values())
        assert far_pipe["dropped_on_purpose"] >= 30 and recovered >= far_pipe["dropped_on_purpose"] * 0.9, far_pipe
        assert far_pipe["srtp_errors"] == 0 and far_pipe["foreign"] == 0, far_pipe
        for cid, c in far_dump["consumers"].items():
            if c["sent"] > 100:
                assert c["lost"] / c["sent"] < 0.005, (cid, c)

    lesson.play(scenario)
