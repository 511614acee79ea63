"""``LessonMedia`` spreading a lesson over two workers, against the real ``WorkerPool`` placement with a model
of each worker behind it (fast; ``tests/media/test_pipes.py`` does it with worker processes and clients).

- a subscriber that does not fit on the lesson's worker goes to the other one, whose router is made and
  fed by a pipe from the lesson's own: the lesson's producers are piped there, again after a new publish;
- subscribers placed together are counted at once (two at the same moment do not both take the last room);
- the other worker dies: only its subscribers are told (``media_restart`` of the subscriber connection) and
  placed again, on a worker that is up.
"""

from __future__ import annotations

import asyncio
from typing import Any

from media.pool import WorkerHandle, WorkerPool
from signaling.messages import Offer, PeerTarget, Publish, Subscription, TrackSource, UpdateSubscriptions
from signaling.media import MediaService
from signaling.room import Room
from tests.signaling.test_room_media import WorkerModel, _member, _settled

CAM, MIC = TrackSource.camera, TrackSource.microphone


class Model(WorkerModel):
    """One worker: transports, producers and consumers as in ``WorkerModel``, plus routers and pipe ends."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index
        self.routers: list[str] = []
        self.pipes: dict[str, dict[str, Any]] = {}
        self.piped_in: dict[str, list[str]] = {}
        """pipe id → the producer ids piped in (far side)"""

    async def request(self, router_id: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "router.create":
            self.routers.append(router_id)
        elif method == "router.close":
            self.routers.remove(router_id)
        elif method == "pipe.create":
            self.pipes[params["pipe_id"]] = {"router": router_id}
            return {"host": "127.0.0.1", "port": 40000 + self.index, "key": f"key-{self.index}"}
        elif method == "pipe.connect":
            self.pipes[params["pipe_id"]]["peer"] = params["port"]
        elif method == "pipe.consume":
            return {"producers": [{"producer_id": x} for x in params["producer_ids"] if x in self.producers]}
        elif method == "pipe.produce":
            self.piped_in.setdefault(params["pipe_id"], []).extend(d["producer_id"] for d in params["producers"])
        return await super().request(router_id, method, params)


class Channel:
    def __init__(self, model: Model) -> None:
        self.model = model
        self.closed = False

    async def request(self, method: str, params: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        return await self.model.request(params["router_id"], method, params)


def _pool() -> tuple[WorkerPool, list[Model]]:
    pool = WorkerPool(2, {})
    models = [Model(0), Model(1)]
    pool.workers = [WorkerHandle(index=i, pid=None, channel=Channel(m), slot=[i]) for i, m in enumerate(models)]  # type: ignore[arg-type]
    return pool, models


def _lesson() -> tuple[WorkerPool, list[Model], Any, Room, dict[str, list[Any]], dict[str, Any]]:
    pool, models = _pool()
    service = MediaService(pool, consumer_limit=2)
    media = service.factory(9)
    room = Room(9, media, None)  # type: ignore[arg-type]
    got: dict[str, list[Any]] = {k: [] for k in ("m", "r", "o", "s")}
    people = {"m": _member("m", 1, "main", got["m"]), "r": _member("r", 2, "receiving", got["r"]),
              "o": _member("o", 3, "observer", got["o"]), "s": _member("s", 4, "student", got["s"])}
    for p in people.values():
        room.join(p)
    return pool, models, media, room, got, people


def _both(pid: str = "m") -> UpdateSubscriptions:
    return UpdateSubscriptions(subscriptions=[Subscription(participant_id=pid, source=CAM),
                                              Subscription(participant_id=pid, source=MIC)])


def test_a_subscriber_past_the_limit_goes_to_the_other_worker_fed_by_a_pipe() -> None:
    async def scenario() -> None:
        pool, (w0, w1), media, room, got, people = _lesson()
        m, r, o = people["m"], people["r"], people["o"]
        room.handle(m, Publish(source=CAM, track_id="cam", mid="0"))
        room.handle(m, Publish(source=MIC, track_id="mic", mid="1"))
        room.handle(m, Offer(request_id="o1", sdp="v=0 main"))
        room.handle(r, _both())
        await _settled(media)
        assert w0.receives("r") == {"r~m~camera": "m:camera", "r~m~microphone": "m:microphone"}
        assert w1.routers == []  # the lesson's own worker had room: nothing spread
        room.handle(o, _both())
        await _settled(media)
        assert w0.receives("o") == {} and set(w1.receives("o")) == {"o~m~camera", "o~m~microphone"}
        assert w1.routers == ["lesson-9@1"]
        assert w0.pipes["pipe-9-1"]["peer"] == 40001 and w1.pipes["pipe-9-1"]["peer"] == 40000
        assert sorted(w1.piped_in["pipe-9-1"]) == ["m:camera", "m:microphone"]
        assert [x.sdp for x in got["o"] if x.type == "offer"] == [f"offer-for-{media.transports['o']['recv']}"]
        assert pool.workers[0].consumer_count == 2 and pool.workers[1].consumer_count == 2
        # the publisher connects again: its new producers are piped again
        room.handle(m, Offer(request_id="o2", sdp="v=0 main again"))
        await _settled(media)
        assert sorted(w1.piped_in["pipe-9-1"]) == ["m:camera", "m:camera", "m:microphone", "m:microphone"]
        room.close()
        await _settled(media)
        assert w0.routers == [] and w1.routers == []
        assert pool.workers[0].consumer_count == 0 and pool.workers[1].consumer_count == 0

    asyncio.run(scenario())


def test_subscribers_placed_together_are_counted_at_once() -> None:
    async def scenario() -> None:
        pool, (w0, w1), media, room, got, people = _lesson()
        m = people["m"]
        room.handle(m, Publish(source=CAM, track_id="cam", mid="0"))
        room.handle(m, Offer(request_id="o1", sdp="v=0 main"))
        await _settled(media)
        # three subscribers' connections made at the same time (as a recovery does)
        await asyncio.gather(*(media._transport(people[k], "recv") for k in ("r", "o", "s")))
        where = {k: media.transport_router[media.transports[k]["recv"]] for k in ("r", "o", "s")}
        assert sorted(where.values()) == ["lesson-9", "lesson-9", "lesson-9@1"], where  # one consumer slot each
        assert w1.routers == ["lesson-9@1"]  # made once, whoever asked first
        assert len(w1.pipes) == 1

    asyncio.run(scenario())


def test_the_other_worker_dies_and_only_its_subscribers_are_placed_again() -> None:
    async def scenario() -> None:
        pool, (w0, w1), media, room, got, people = _lesson()
        m, r, o = people["m"], people["r"], people["o"]
        room.handle(m, Publish(source=CAM, track_id="cam", mid="0"))
        room.handle(m, Offer(request_id="o1", sdp="v=0 main"))
        room.handle(r, _both())
        await _settled(media)
        room.handle(o, _both())
        await _settled(media)
        assert set(w1.receives("o")) == {"o~m~camera", "o~m~microphone"}
        pool.workers[1].alive = False  # the pool saw it die
        pool._emit(1, "worker_died", {"routers": ["lesson-9@1"], "pid": 1, "exit_code": -9})
        await _settled(media)
        [restart] = [x for x in got["o"] if x.type == "media_restart"]
        assert restart.targets == [PeerTarget.subscriber] and restart.reason == "worker_restarted"
        assert not [x for x in got["r"] if x.type == "media_restart"]
        assert not [x for x in got["m"] if x.type == "media_restart"]
        # nowhere has room now: the least loaded worker that is up, the lesson's own
        assert set(w0.receives("o")) == {"o~m~camera", "o~m~microphone"}
        assert media.spans == {} and w0.pipes["pipe-9-1"]  # the pipe's dead end is closed at the origin
        assert len([x for x in got["o"] if x.type == "offer"]) == 2

    asyncio.run(scenario())
