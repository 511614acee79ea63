"""A famous-school lesson larger than one media worker: its subscribers spread over two worker processes,
the second fed by a pipe (``media.pipe``), on 127.0.0.1 only.

The consumer limit per worker is set to 2, so the second receiving classroom and the observer land on the
other worker.  Every check is on what the clients decode (the teacher's red camera, grey screen and tone;
the on-stage classroom's camera), and on the SFU's own counters for what only the pipe sees (a packet
dropped on purpose on the pipe, repaired by NACK from the lesson's own worker).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from server.core.config import Settings
from tests.conftest import TEST_SECRET
from tests.media.sfu_harness import (  # noqa: F401 - fixtures: a live lesson on 127.0.0.1
    Lesson,
    db_url,
    lesson,
    loopback_clients,
)
from tests.media.sfu_helpers import BLUE, GREEN, RED, ColorTrack, ToneTrack, close_to, frames, tone
from tests.utils.wait import until

GREY = (128, 128, 128)
LIMIT = 2


@pytest.fixture
def settings(tmp_path: Any, db_url: str) -> Settings:  # noqa: F811 - two worker processes, two consumers each
    return Settings(data_dir=tmp_path / "data", database_url=db_url, secret_key=TEST_SECRET,
                    ice_host_addresses="127.0.0.1", ice_allowed_networks="127.0.0.0/8", media_workers=2,
                    media_spare_worker=False, node_worker_consumers=LIMIT)


def server_call(app: Any, coro_fn: Any) -> Any:
    """Run ``coro_fn(pool)`` on the server's event loop (where the worker channels live)."""
    pool = app.state.media
    loop = pool.workers[0].channel._read_task.get_loop()
    return asyncio.run_coroutine_threadsafe(coro_fn(pool), loop).result(10)


def dump(app: Any, router_id: str) -> dict[str, Any]:
    return dict(server_call(app, lambda pool: pool.request(router_id, "router.dump", {"router_id": router_id})))


async def adump(app: Any, router_id: str) -> dict[str, Any]:
    return await asyncio.to_thread(dump, app, router_id)


def test_a_lesson_bigger_than_one_worker_is_served_across_two(lesson: Lesson, app: Any) -> None:
    w = lesson.world
    home = f"lesson-{lesson.lid}"

    def adump_(router_id: str) -> Any:
        return adump(app, router_id)

    async def scenario() -> None:
        main = await lesson.join(w.teacher)
        recv_a = await lesson.join(w.terminal_recv)
        recv_b = await lesson.join(w.assistant)
        observer = await lesson.join(w.researcher_a)
        student = await lesson.join(w.student)
        # (H.264, as a famous-school main classroom sends: its stream is not refused, so the home student gets
        # a WebRTC seat even when every worker is full)
        await main.publish({"camera": ColorTrack(RED), "screen": ColorTrack(GREY), "microphone": ToneTrack()},
                           video_codec="video/H264")
        await recv_a.publish({"camera": ColorTrack(GREEN)})
        await recv_b.publish({"camera": ColorTrack(BLUE)})
        m = main.participant_id
        both = [{"participant_id": m, "source": "camera"}, {"participant_id": m, "source": "screen"}]
        await recv_a.subscribe(both)  # 2 consumers: the lesson's own worker is full
        await recv_b.subscribe([*both, {"participant_id": m, "source": "microphone"}])  # → the other worker
        await observer.subscribe([{"participant_id": m, "source": "camera"}])  # nowhere fits: the least loaded
        await student.subscribe([*both, {"participant_id": "stage", "source": "camera"}])  # a tie: not the home one

        # where the server put them: two subscribers on each worker, the second worker's router fed by a pipe
        pool = app.state.media
        service = app.state.media_factory.__self__  # the MediaService

        def placement() -> dict[str, str]:
            placed = {tid: r for media in list(service.rooms.values()) for tid, r in list(media.transport_router.items())}
            return {c.participant_id: placed[t] for c in (recv_a, recv_b, observer, student)
                    for t in placed if t.startswith(c.participant_id + "-recv")}

        await until("every subscriber placed", lambda: len(placement()) == 4, 10)
        routers = placement()
        other = f"{home}@1" if pool.worker_for(home).index == 0 else f"{home}@0"
        assert routers == {recv_a.participant_id: home, recv_b.participant_id: other,
                           observer.participant_id: home, student.participant_id: other}, routers
        assert pool.worker_for(home).pid != pool.worker_for(other).pid

        # every subscriber decodes the teacher's camera and screen, on either worker
        seen = await frames(await observer.track(m, "camera"), 15)
        assert all(close_to(rgb, RED) for rgb in seen[-10:]), seen
        for c in (recv_a, recv_b, student):
            seen = await frames(await c.track(m, "camera"), 15)
            assert all(close_to(rgb, RED) for rgb in seen[-10:]), (c.participant_id, seen)
            seen = await frames(await c.track(m, "screen"), 15)
            assert all(close_to(rgb, GREY) for rgb in seen[-10:]), (c.participant_id, seen)
        rms, hz = await tone(await recv_b.track(m, "microphone"), 1.0)
        assert rms > 1000 and 400 < hz < 480, (rms, hz)

        # on-stage switching across the pipe: the student (far worker) sees one classroom, then the other
        await main.request({"type": "set_on_stage", "participant_id": recv_a.participant_id})
        stage = await student.track("stage", "camera")
        first = await frames(stage, 10)
        assert all(close_to(x, GREEN) for x in first[-5:]), first
        await main.request({"type": "set_on_stage", "participant_id": recv_b.participant_id})
        after = await frames(stage, 40)
        assert all(close_to(x, GREEN) or close_to(x, BLUE) for x in after), after
        first_blue = next(i for i, x in enumerate(after) if close_to(x, BLUE))
        assert all(close_to(x, BLUE) for x in after[first_blue:]), after
        assert first_blue < 30

        # the pipe is no open port: datagrams from anyone else are dropped, counted, and change nothing
        far = (await adump_(other))["pipes"]
        (pipe_id, far_pipe), = far.items()
        home_pipe = (await adump_(home))["pipes"][pipe_id]
        host, port = home_pipe["remote"]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(50):
                s.sendto(bytes([0x80, 96, 0, i]) + bytes(200), (host, port))
        for _ in range(50):
            if (await adump_(other))["pipes"][pipe_id]["foreign"] >= 50:
                break
            await asyncio.sleep(0.1)
        assert (await adump_(other))["pipes"][pipe_id]["foreign"] >= 50

        # a video packet in ten dropped on the pipe (deliberately, at the far end): the far worker NACKs it to
        # the lesson's own worker, which resends it; the subscribers there see a clean picture throughout
        await asyncio.to_thread(server_call, app, lambda pool: pool.request(
            other, "pipe.drop", {"router_id": other, "pipe_id": pipe_id, "every": 10}))
        before = await adump_(other)
        camera_b = await recv_b.track(m, "camera")
        got: list[tuple[int, int, int]] = []
        for _ in range(100):  # decoding all the while, until 30 packets were dropped (a couple of seconds)
            got += await frames(camera_b, 5)
            if (await adump_(other))["pipes"][pipe_id]["dropped_on_purpose"] >= 30:
                break
        await asyncio.to_thread(server_call, app, lambda pool: pool.request(
            other, "pipe.drop", {"router_id": other, "pipe_id": pipe_id, "every": 0}))
        got += await frames(camera_b, 30)
        assert all(close_to(x, RED) for x in got), got
        after_dump = await adump_(other)
        far_pipe = after_dump["pipes"][pipe_id]
        dropped = far_pipe["dropped_on_purpose"]
        recovered = sum(sum(v["recovered"]) for v in far_pipe["in"].values())
        recovered_before = sum(sum(v["recovered"]) for v in before["pipes"][pipe_id]["in"].values())
        assert dropped >= 20, far_pipe
        assert recovered - recovered_before >= dropped * 0.9, far_pipe
        assert (await adump_(home))["pipes"][pipe_id]["retransmitted"] >= dropped * 0.9
        # and what the subscribers of the far worker lost, by their own receiver reports: under 0.5 % (a
        # consumer that sent only ~150 packets, as the stage camera since its switch, may show one: a report
        # sent while a repair was on its way counts it until the next report)
        for cid, c in after_dump["consumers"].items():
            if c["sent"] > 100:
                assert c["lost"] <= max(1, 0.005 * c["sent"]), (cid, c)

    lesson.play(scenario)
