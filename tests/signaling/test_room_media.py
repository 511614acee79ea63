"""The media hooks of a room: which hook is called when, ``NullMedia`` refusing media messages,
publications in the participant info, and the app's ``media_factory`` reaching the rooms."""

from __future__ import annotations

from typing import Any

from signaling.messages import (
    Chat,
    ClientMessage,
    LeaveReason,
    LessonRole,
    Mute,
    MuteAll,
    Publication,
    Publish,
    SetMuted,
    SetOnStage,
    TrackSource,
    UpdateSubscriptions,
)
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


def test_recorder_and_null_media_are_room_media() -> None:
    media: RoomMedia = Recorder()
    assert media is not None
    null: RoomMedia = NullMedia()
    assert null is not None


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
