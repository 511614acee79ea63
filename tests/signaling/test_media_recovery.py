"""``LessonMedia`` bringing media back by itself, against a model of the worker (fast; the browser tests
``tests/web/test_media_recovery.py`` and ``tests/web/test_peer_lost.py`` do it for real).

- the worker dies: everyone with connections is told (``media_restart``, reason ``worker_restarted``),
  SDP queued for the dead connections is answered with an error, the router is made again once a
  worker is up, every subscriber gets a fresh offer on a new connection, a publisher's next offer
  makes a new publisher connection, and the gap is logged (``media_gap``) once all are connected;
- the worker reports a connection ``closed``: that participant alone is told and offered again;
- a client asks (``media_restart``): its connection is rebuilt, at most once per 2 s.
"""

from __future__ import annotations

import asyncio
from typing import Any

from media.channel import ChannelError
from signaling.messages import (
    Answer,
    ErrorCode,
    Leave,
    LeaveReason,
    MediaRestart,
    Offer,
    PeerTarget,
    Publish,
    Subscription,
    TrackSource,
    UpdateSubscriptions,
)
from signaling.media import MediaService
from signaling.room import Room, RoomSnapshot
from tests.signaling.test_room_media import WorkerModel, _member, _settled

CAM = TrackSource.camera


class DyingWorker(WorkerModel):
    """The worker model, with a death: its state is gone and no worker answers until ``replace``."""

    def __init__(self) -> None:
        super().__init__()
        self.up = True
        self.listeners: list[Any] = []
        self.routers: list[str] = []

    def add_listener(self, fn: Any) -> Any:
        self.listeners.append(fn)
        return lambda: None

    def worker_for(self, router_id: str) -> Any:
        if not self.up:
            raise ChannelError("no_worker", "no media worker is running")
        return self

    async def request(self, router_id: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.worker_for(router_id)
        if method == "router.create":
            self.routers.append(router_id)
        return await super().request(router_id, method, params)

    def die(self) -> None:
        listeners = self.listeners
        self.__init__()  # type: ignore[misc]  # every transport, producer and consumer is gone
        self.listeners = listeners
        self.up = False

    def emit(self, event: str, data: dict[str, Any]) -> None:
        for fn in self.listeners:
            fn(0, event, data)

    def tid(self, participant_id: str, direction: str) -> str:
        [tid] = [t for t, (p, d) in self.transports.items() if p == participant_id and d == direction]
        return tid


class Journal:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any] | None]] = []

    def record(self, instance_id: int, kind: str, subject: Any, data: dict[str, Any] | None = None) -> None:
        self.events.append((kind, subject.participant_id, data))

    def chat(self, instance_id: int, subject: Any, text: str) -> None:
        pass


def _lesson() -> tuple[DyingWorker, MediaService, Any, Room, Journal, dict[str, list[Any]], dict[str, Any]]:
    worker = DyingWorker()
    service = MediaService(worker)  # type: ignore[arg-type]
    media = service.factory(9)
    journal = Journal()
    room = Room(9, media, journal)  # type: ignore[arg-type]
    got: dict[str, list[Any]] = {"m": [], "r": [], "o": []}
    people = {"m": _member("m", 1, "main", got["m"]), "r": _member("r", 2, "receiving", got["r"]),
              "o": _member("o", 3, "observer", got["o"])}
    for p in people.values():
        room.join(p)
    return worker, service, media, room, journal, got, people


def _of(box: list[Any], type_: str) -> list[Any]:
    return [m for m in box if m.type == type_]


async def _publish_and_subscribe(worker: DyingWorker, media: Any, room: Room, people: dict[str, Any]) -> None:
    m, r, o = people["m"], people["r"], people["o"]
    room.handle(m, Publish(source=CAM, track_id="cam", mid="0"))
    room.handle(m, Offer(request_id="o1", sdp="v=0 main"))
    room.handle(r, Publish(source=CAM, track_id="cam", mid="0"))
    room.handle(r, Offer(request_id="o2", sdp="v=0 rc"))
    for p in (r, o):
        room.handle(p, UpdateSubscriptions(subscriptions=[Subscription(participant_id="m", source=CAM)]))
    room.handle(m, UpdateSubscriptions(subscriptions=[Subscription(participant_id="r", source=CAM)]))
    await _settled(media)
    assert worker.receives("r") == {"r~m~camera": "m:camera"} and worker.receives("m") == {"m~r~camera": "r:camera"}


def test_a_dead_worker_is_survived_without_anyone_doing_anything() -> None:
    async def scenario() -> None:
        worker, service, media, room, journal, got, people = _lesson()
        m, r, o = people["m"], people["r"], people["o"]
        await _publish_and_subscribe(worker, media, room, people)
        old = {pid: dict(media.transports[pid]) for pid in ("m", "r", "o")}
        offers_before = {pid: len(_of(got[pid], "offer")) for pid in got}

        # an answer of r is queued when the worker dies: it belongs to a dead connection
        room.handle(r, Answer(request_id="a-late", sdp="v=0 answer"))
        worker.die()
        worker.emit("worker_died", {"routers": ["lesson-9"], "pid": 1, "exit_code": -9})
        for pid, targets in (("m", ["subscriber", "publisher"]), ("r", ["subscriber", "publisher"]),
                             ("o", ["subscriber"])):
            [restart] = _of(got[pid], "media_restart")
            assert (restart.targets, restart.reason) == ([PeerTarget(t) for t in targets], "worker_restarted")
        [late] = [e for e in _of(got["r"], "error") if e.request_id == "a-late"]
        assert late.code is ErrorCode.internal

        await asyncio.sleep(0.3)  # no worker yet: the lesson waits for one
        assert not worker.transports and worker.routers == []
        worker.up = True  # the replacement is up
        # the clients publish again, told by media_restart
        room.handle(m, Publish(source=CAM, track_id="cam", mid="0"))
        room.handle(m, Offer(request_id="o3", sdp="v=0 main again"))
        room.handle(r, Publish(source=CAM, track_id="cam", mid="0"))
        room.handle(r, Offer(request_id="o4", sdp="v=0 rc again"))
        await _settled(media)
        assert worker.routers == ["lesson-9"]
        for pid in ("m", "r", "o"):  # a fresh offer on a new subscriber connection
            assert len(_of(got[pid], "offer")) == offers_before[pid] + 1
            new = _of(got[pid], "offer")[-1].sdp
            assert new == f"offer-for-{media.transports[pid]['recv']}" and media.transports[pid]["recv"] != old[pid]["recv"]
        assert worker.receives("r") == {"r~m~camera": "m:camera"} and worker.receives("o") == {"o~m~camera": "m:camera"}
        assert worker.receives("m") == {"m~r~camera": "r:camera"}
        assert [a.request_id for a in _of(got["m"], "answer")] == ["o1", "o3"]

        # the gap ends when every connection that carried media is connected again
        assert not [e for e in journal.events if e[0] == "media_gap"]
        for pid, direction in (("m", "send"), ("m", "recv"), ("r", "send"), ("r", "recv"), ("o", "recv")):
            assert media.gap is not None
            worker.emit("transport_state", {"transport_id": worker.tid(pid, direction), "participant_id": pid,
                                            "state": "connected"})
        [(kind, subject, data)] = [e for e in journal.events if e[0] == "media_gap"]
        assert subject == "sfu" and data["reason"] == "worker_restarted" and data["restored"] is True
        assert 0.3 <= data["gap_s"] < 5
        assert media.gap is None
        room.close()
        await _settled(media)

    asyncio.run(scenario())


def test_a_connection_the_worker_sees_close_is_rebuilt_for_that_participant_alone() -> None:
    async def scenario() -> None:
        worker, service, media, room, journal, got, people = _lesson()
        await _publish_and_subscribe(worker, media, room, people)
        r_recv, m_recv = media.transports["r"]["recv"], media.transports["m"]["recv"]
        offers = {pid: len(_of(got[pid], "offer")) for pid in got}

        # closed by signaling itself (the observer leaves): no rebuild
        o_recv = media.transports["o"]["recv"]
        room.remove(people["o"], LeaveReason.client_left)
        await _settled(media)
        worker.emit("transport_state", {"transport_id": o_recv, "participant_id": "o", "state": "closed"})

        worker.emit("transport_state", {"transport_id": r_recv, "participant_id": "r", "state": "closed"})
        await asyncio.sleep(0.5)
        await _settled(media)
        [restart] = _of(got["r"], "media_restart")
        assert (restart.targets, restart.reason) == ([PeerTarget.subscriber], "connection_lost")
        assert r_recv not in worker.transports and media.transports["r"]["recv"] != r_recv
        assert len(_of(got["r"], "offer")) == offers["r"] + 1
        assert worker.receives("r") == {"r~m~camera": "m:camera"}
        assert "r:camera" in worker.producers  # its publisher connection was not touched
        assert media.transports["m"]["recv"] == m_recv and not _of(got["m"], "media_restart")
        assert len(_of(got["m"], "offer")) == offers["m"]
        assert not _of(got["o"], "media_restart")
        room.close()
        await _settled(media)

    asyncio.run(scenario())


def test_a_client_rebuilds_its_connection_at_most_every_2_s() -> None:
    async def scenario() -> None:
        worker, service, media, room, journal, got, people = _lesson()
        await _publish_and_subscribe(worker, media, room, people)
        r = people["r"]
        r_send, r_recv = media.transports["r"]["send"], media.transports["r"]["recv"]
        offers = len(_of(got["r"], "offer"))
        room.handle(r, MediaRestart(request_id="x1", targets=[PeerTarget.subscriber, PeerTarget.publisher]))
        await _settled(media)
        assert [a.request_id for a in _of(got["r"], "ack")][-1] == "x1"
        assert not _of(got["r"], "media_restart")  # it asked: nothing to tell it
        assert r_send not in worker.transports and r_recv not in worker.transports
        assert "send" not in media.transports["r"] and media.transports["r"]["recv"] != r_recv
        assert len(_of(got["r"], "offer")) == offers + 1
        assert worker.receives("m") == {"m~r~camera": None}  # until r publishes again
        room.handle(r, Publish(source=CAM, track_id="cam", mid="0"))
        room.handle(r, Offer(request_id="o9", sdp="v=0 rc again"))
        await _settled(media)
        assert worker.receives("m") == {"m~r~camera": "r:camera"}

        room.handle(r, MediaRestart(request_id="x2", targets=[PeerTarget.subscriber]))
        [refused] = [e for e in _of(got["r"], "error") if e.request_id == "x2"]
        assert refused.code is ErrorCode.rate_limited
        # an observer may rebuild its subscriber connection, not a publisher connection it cannot have
        room.handle(people["o"], MediaRestart(request_id="x3", targets=[PeerTarget.publisher]))
        [denied] = [e for e in _of(got["o"], "error") if e.request_id == "x3"]
        assert denied.code is ErrorCode.not_allowed
        room.close()
        await _settled(media)

    asyncio.run(scenario())


def test_a_room_opened_from_another_nodes_snapshot_logs_one_gap_from_that_nodes_last_sign_of_life() -> None:
    """After a failover the room opens here from the snapshot its dead node left (2 s ago by that node's
    last lease renewal): one ``media_gap`` (reason ``node_failover``) from then until every user the room
    had has its subscriber connection up here again; someone who never comes back is not waited for."""
    async def scenario() -> None:
        worker = DyingWorker()
        media = MediaService(worker).factory(9)  # type: ignore[arg-type]
        journal = Journal()
        room = Room(9, media, journal)  # type: ignore[arg-type]
        snap = RoomSnapshot(users={1: {}, 2: {}, 3: {}, 4: {}}, down_s=2.0)  # 4: a user who does not come back
        room.restore(snap)
        got: dict[str, list[Any]] = {"m": [], "r": [], "o": []}
        people = {"m": _member("m", 1, "main", got["m"]), "r": _member("r", 2, "receiving", got["r"]),
                  "o": _member("o", 3, "observer", got["o"])}
        for p in people.values():
            room.join(p)
        await _publish_and_subscribe(worker, media, room, people)
        for pid in ("m", "r"):
            worker.emit("transport_state", {"transport_id": worker.tid(pid, "recv"), "participant_id": pid,
                                            "state": "connected"})
        assert media.gap is not None and media.gap.users == {3, 4}
        worker.emit("transport_state", {"transport_id": worker.tid("o", "recv"), "participant_id": "o",
                                        "state": "connected"})
        assert media.gap is not None and media.gap.users == {4}  # the fourth is still awaited...
        leaver = _member("x", 4, "student", [])
        room.join(leaver)
        room.handle(leaver, Leave())  # ...until it leaves
        [(kind, subject, data)] = [e for e in journal.events if e[0] == "media_gap"]
        assert subject == "sfu" and data["reason"] == "node_failover" and data["restored"] is True
        assert 2.0 <= data["gap_s"] < 4
        assert media.gap is None
        room.close()
        await _settled(media)

    asyncio.run(scenario())
