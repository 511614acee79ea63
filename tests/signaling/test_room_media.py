"""The media hooks of a room: which hook is called when, ``NullMedia`` refusing media messages,
publications in the participant info, and the app's ``media_factory`` reaching the rooms."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from signaling.messages import (
    Chat,
    ClientMessage,
    LeaveReason,
    LessonRole,
    Mute,
    MuteAll,
    Offer,
    Publication,
    Publish,
    SetMuted,
    SetOnStage,
    Subscription,
    TrackSource,
    UpdateSubscriptions,
)
from signaling.media import LessonMedia, MediaService
from signaling.room import NullMedia, Participant, Room, RoomMedia, RoomRegistry
from tests.signaling.test_endpoint import (
    join_msg,
    join_token,
    open_lesson,
    recv,
    recv_until,
)

MIC, CAM = TrackSource.microphone, TrackSource.camera


class Recorder:
    """A media module that records its calls and answers ``publish`` by publishing."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def on_message(self, room: Room, p: Participant, msg: ClientMessage) -> None:
        self.calls.append(("message", p.participant_id, msg.type))
        if isinstance(msg, Publish):
            p.publications[msg.source] = Publication(source=msg.source, track_id=msg.track_id)
            room.ack(p, msg.request_id)
            room.updated(p)

    def on_joined(self, room: Room, p: Participant) -> None:
        self.calls.append(("joined", p.participant_id))

    def on_left(self, room: Room, p: Participant) -> None:
        self.calls.append(("left", p.participant_id))

    def on_resumed(self, room: Room, p: Participant, keep_media: bool) -> None:
        self.calls.append(("resumed", p.participant_id, keep_media))

    def on_stage_changed(self, room: Room, previous: Participant | None, current: Participant | None) -> None:
        self.calls.append(("stage", previous and previous.participant_id, current and current.participant_id))

    def on_mute_changed(self, room: Room, p: Participant, source: TrackSource, muted: bool) -> None:
        self.calls.append(("mute", p.participant_id, source.value, muted))

    def on_closed(self, room: Room) -> None:
        self.calls.append(("closed",))


def _member(pid: str, user_id: int, role: str, box: list[Any]) -> Participant:
    return Participant(participant_id=pid, user_id=user_id, display_name=f"u{user_id}", role=LessonRole(role),
                       classroom_id=None, listen_only=False, deliver=box.append)


class WorkerModel:
    """The media worker as ``LessonMedia`` sees it (the ``WorkerPool`` interface): a model of which
    transports, producers and consumers exist, answering like ``media.worker.Worker`` does."""

    def __init__(self) -> None:
        self.transports: dict[str, tuple[str, str]] = {}
        """transport id → (participant id, direction)"""
        self.producers: dict[str, str] = {}
        """producer id → its send transport"""
        self.paused: dict[str, bool] = {}
        self.consumers: dict[str, dict[str, str | None]] = {}
        """recv transport → consumer id → the producer id it forwards (None: nothing yet)"""

    def add_listener(self, fn: Any) -> Any:
        return lambda: None

    def release(self, router_id: str) -> None:
        pass

    async def request(self, router_id: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0)  # a real request yields to the loop
        tid = params.get("transport_id")
        if method == "transport.create":
            self.transports[tid] = (params["participant_id"], params["direction"])
        elif method == "transport.close":
            self.transports.pop(tid, None)
            self.consumers.pop(tid, None)
            for pid in [pid for pid, owner in self.producers.items() if owner == tid]:
                del self.producers[pid]
        elif method == "transport.publish":
            assert self.transports[tid][1] == "send"
            made = []
            for pub in params["publications"]:
                self.producers[pub["producer_id"]] = tid
                made.append({"producer_id": pub["producer_id"], "source": pub["source"], "mid": pub["mid"]})
            return {"sdp": f"answer-for-{tid}", "producers": made}
        elif method == "transport.set_consumers":
            assert self.transports[tid][1] == "recv"
            wanted = {c["consumer_id"]: c["producer_id"] for c in params["consumers"]}
            changed = set(wanted) != set(self.consumers.get(tid, {}))
            self.consumers[tid] = wanted
            if not changed:
                return {"offer": None}
            tracks = [{"mid": str(i), "consumer_id": cid} for i, cid in enumerate(wanted)]
            return {"offer": {"sdp": f"offer-for-{tid}", "tracks": tracks}}
        elif method == "producer.pause":
            self.paused[params["producer_id"]] = params["paused"]
        return {}

    def receives(self, participant_id: str) -> dict[str, str | None]:
        """What a participant's subscriber connection forwards: consumer id → producer id."""
        out: dict[str, str | None] = {}
        for tid, (pid, direction) in self.transports.items():
            if pid == participant_id and direction == "recv":
                out.update(self.consumers.get(tid, {}))
        return {cid: producer if producer in self.producers else None for cid, producer in out.items()}

    def publishes(self, participant_id: str) -> set[str]:
        return {prod for prod, tid in self.producers.items() if self.transports[tid][0] == participant_id}


async def _settled(media: LessonMedia) -> None:
    """Wait (5 s at most) until the room's media requests have all been applied."""
    deadline = time.monotonic() + 5
    while media._queue or (media._runner is not None and not media._runner.done()):
        assert time.monotonic() < deadline, "media requests still pending"
        await asyncio.sleep(0.01)


def test_the_sfu_forwards_what_each_role_may_receive() -> None:
    """Through the real ``LessonMedia``: producers exist for who published, a receiving classroom's
    subscriber connection forwards the main classroom and whoever is on stage, and nothing else."""

    async def scenario() -> None:
        worker = WorkerModel()
        service = MediaService(worker)  # type: ignore[arg-type]
        media = service.factory(9)
        room = Room(9, media)
        got: dict[str, list[Any]] = {"m": [], "r1": [], "r2": []}
        main = _member("m", 1, "main", got["m"])
        r1, r2 = _member("r1", 2, "receiving", got["r1"]), _member("r2", 3, "receiving", got["r2"])
        for p in (main, r1, r2):
            room.join(p)

        room.handle(main, Publish(request_id="p1", source=CAM, track_id="cam", mid="0"))
        room.handle(main, Publish(request_id="p2", source=MIC, track_id="mic", mid="1"))
        room.handle(main, Offer(request_id="o1", sdp="v=0 main"))
        for p in (r1, r2):
            room.handle(p, Publish(source=CAM, track_id="cam", mid="0"))
            room.handle(p, Offer(request_id=f"o-{p.participant_id}", sdp="v=0 rc"))
        await _settled(media)
        assert worker.publishes("m") == {"m:camera", "m:microphone"}
        assert worker.publishes("r1") == {"r1:camera"} and worker.publishes("r2") == {"r2:camera"}
        answers = [x for x in got["m"] if x.type == "answer"]
        assert [(a.request_id, a.sdp.startswith("answer-for-m-send")) for a in answers] == [("o1", True)]
        seen = [x.participant for x in got["r1"]
                if x.type == "participant_updated" and x.participant.participant_id == "m"]
        assert [(pub.source, pub.muted) for pub in seen[-1].publications] == [(CAM, False), (MIC, False)]

        room.handle(r1, UpdateSubscriptions(request_id="s1", subscriptions=[
            Subscription(participant_id="m", source=CAM), Subscription(participant_id="m", source=MIC),
            Subscription(participant_id="stage", source=CAM)]))
        await _settled(media)
        assert worker.receives("r1") == {"r1~m~camera": "m:camera", "r1~m~microphone": "m:microphone",
                                         "r1~stage~camera": None}
        offer = [x for x in got["r1"] if x.type == "offer"][-1]
        assert [(t.participant_id, t.source) for t in offer.tracks] == [("m", CAM), ("m", MIC), ("stage", CAM)]

        # another receiving classroom off stage: refused, and nothing changes
        room.handle(r1, UpdateSubscriptions(request_id="s2",
                                            subscriptions=[Subscription(participant_id="r2", source=CAM)]))
        assert got["r1"][-1].type == "error" and got["r1"][-1].request_id == "s2"
        await _settled(media)
        assert "r1~r2~camera" not in worker.receives("r1")

        # r2 on stage: r1's stage tile forwards r2's camera; then off stage: nothing again
        room.handle(main, SetOnStage(participant_id="r2"))
        await _settled(media)
        assert worker.receives("r1")["r1~stage~camera"] == "r2:camera"
        assert worker.paused.get("r2:camera") is False
        room.handle(main, Mute(participant_id="r2", source=CAM, muted=True))  # the teacher mutes its camera
        await _settled(media)
        assert worker.paused["r2:camera"] is True
        room.handle(main, Mute(participant_id="r2", source=CAM, muted=False))
        room.handle(r2, SetMuted(source=CAM, muted=False))  # the classroom turns it on again itself
        await _settled(media)
        assert worker.paused["r2:camera"] is False
        room.handle(main, SetOnStage(participant_id=None))
        await _settled(media)
        assert worker.receives("r1")["r1~stage~camera"] is None

        # the main classroom leaves: its producers and transports are gone, r1 receives nothing from it
        room.remove(main, LeaveReason.client_left)
        await _settled(media)
        assert worker.publishes("m") == set()
        assert all(owner != "m" for owner, _ in worker.transports.values())
        assert worker.receives("r1") == {"r1~stage~camera": None}
        room.close()
        await _settled(media)
        assert media.closed and "lesson-9" not in service.rooms

    asyncio.run(scenario())


def test_null_media_is_room_media_and_publishes_nothing() -> None:
    null: RoomMedia = NullMedia()
    room = Room(9, null)
    got: list[Any] = []
    main = _member("m", 1, "main", got)
    room.join(main)
    room.handle(main, Offer(request_id="o", sdp="v=0"))
    assert got[-1].type == "error" and got[-1].request_id == "o"
    assert main.publications == {}


def test_hooks_in_order() -> None:
    media = Recorder()
    room = Room(9, media)
    got_m: list[Any] = []
    got_r: list[Any] = []
    main, rc = _member("m", 1, "main", got_m), _member("r", 2, "receiving", got_r)
    room.join(main)
    room.join(rc)
    assert media.calls == [("joined", "m"), ("joined", "r")]
    media.calls.clear()

    room.handle(rc, Publish(request_id="p", source=MIC, track_id="mic"))
    assert media.calls == [("message", "r", "publish")]
    assert [m.type for m in got_r[-2:]] == ["ack", "participant_updated"]
    upd = got_m[-1]
    assert upd.type == "participant_updated"
    assert [(x.source, x.muted) for x in upd.participant.publications] == [(MIC, False)]
    room.handle(rc, Publish(source=CAM, track_id="cam"))
    assert [x.source for x in rc.info().publications] == [CAM, MIC]  # sorted by source
    media.calls.clear()

    room.handle(rc, SetMuted(source=MIC, muted=True))
    room.handle(rc, SetMuted(source=MIC, muted=True))  # no change: no hook
    assert media.calls == [("mute", "r", "microphone", True)]
    assert rc.effective_muted(MIC) and not rc.effective_muted(CAM)
    assert got_m[-1].type == "participant_updated" and got_m[-1].participant.publications[1].muted is True
    room.handle(rc, SetMuted(source=MIC, muted=False))
    media.calls.clear()

    room.handle(main, Mute(participant_id="r", source=CAM, muted=True))
    assert media.calls == [("mute", "r", "camera", True)]
    room.handle(main, Mute(participant_id="r", source=CAM, muted=False))  # still self-muted: no change
    assert media.calls == [("mute", "r", "camera", True)]
    assert rc.effective_muted(CAM)
    room.handle(rc, SetMuted(source=CAM, muted=False))
    media.calls.clear()

    room.handle(main, MuteAll(muted=True))
    assert media.calls == [("mute", "r", "microphone", True)]
    assert not main.effective_muted(MIC)
    room.handle(main, MuteAll(muted=False))
    media.calls.clear()

    room.handle(main, SetOnStage(participant_id="r"))
    room.handle(main, SetOnStage(participant_id="r"))  # no change: no hook
    room.handle(main, SetOnStage(participant_id=None))
    room.handle(main, SetOnStage(participant_id="r"))
    assert media.calls == [("stage", None, "r"), ("stage", "r", None), ("stage", None, "r")]
    media.calls.clear()

    room.handle(main, UpdateSubscriptions(subscriptions=[]))
    room.handle(main, Chat(text="hi"))  # not a media message
    assert media.calls == [("message", "m", "update_subscriptions")]
    media.calls.clear()

    room.remove(rc, LeaveReason.client_left)  # on stage: steps down, then leaves
    assert media.calls == [("stage", "r", None), ("left", "r")]
    room.close()
    assert media.calls[-1] == ("closed",)


def test_null_media_refuses_media_messages() -> None:
    room = Room(9)
    got: list[Any] = []
    main = _member("m", 1, "main", got)
    room.join(main)
    room.handle(main, Publish(request_id="p", source=CAM, track_id="cam"))
    assert got[-1].type == "error" and got[-1].request_id == "p" and "媒体" in got[-1].message


def test_a_failing_hook_does_not_break_the_room(caplog) -> None:
    class Broken(Recorder):
        def on_joined(self, room: Room, p: Participant) -> None:
            raise RuntimeError("boom")

    room = Room(9, Broken())
    got: list[Any] = []
    room.join(_member("m", 1, "main", got))
    assert got[-1].type == "joined" and "m" in room.participants
    assert "on_joined" in caplog.text


def test_registry_makes_media_per_room() -> None:
    made: list[int] = []

    def factory(instance_id: int) -> RoomMedia:
        made.append(instance_id)
        return Recorder()

    reg = RoomRegistry(factory)
    assert isinstance(reg.get_or_open(3).media, Recorder)
    reg.get_or_open(3)
    assert made == [3]
    assert isinstance(RoomRegistry().get_or_open(4).media, NullMedia)


def test_the_apps_media_factory_reaches_the_rooms(client, app, world, auth, session_factory) -> None:
    media = Recorder()
    app.state.media_factory = lambda instance_id: media  # set after attach(app): looked up when a room opens
    lid = open_lesson(client, world, auth, session_factory)
    with client.websocket_connect(f"/api/v1/lessons/{lid}/ws") as ws:
        ws.send_json(join_msg(join_token(client, auth, world.teacher, lid)))
        pid = recv(ws)["session_id"]
        ws.send_json({"type": "publish", "request_id": "p1", "source": "camera", "track_id": "cam"})
        assert recv_until(ws, "ack")["request_id"] == "p1"
        ws.send_json({"type": "leave"})
        recv_until(ws, "leave")
    assert media.calls == [("joined", pid), ("message", pid, "publish"), ("left", pid)]
