"""Dynacast: ``LessonMedia`` tells a simulcast publisher which camera layers someone can receive
(``layers_wanted``), so a camera watched only by the patrol wall sends its low layer alone, and the
others come back the moment a full view or a classroom subscribes."""

from __future__ import annotations

from typing import Any

from signaling.media import LessonMedia
from signaling.messages import (
    LayersWanted,
    LessonRole,
    Publication,
    Publish,
    Subscription,
    TrackSource,
    server_adapter,
)
from signaling.room import Participant, Room

LAYERS = [{"layer": "low", "rid": "q", "width": 320, "height": 180, "max_bitrate_kbps": 150},
          {"layer": "medium", "rid": "h", "width": 640, "height": 360, "max_bitrate_kbps": 500},
          {"layer": "high", "rid": "f", "width": 1280, "height": 720, "max_bitrate_kbps": 1500}]


def member(pid: str, user_id: int, role: str, box: list[Any]) -> Participant:
    return Participant(participant_id=pid, user_id=user_id, display_name=f"u{user_id}", role=LessonRole(role),
                       classroom_id=None, listen_only=False, deliver=box.append)


def wanted(box: list[Any]) -> list[list[str]]:
    return [m.rids for m in box if isinstance(m, LayersWanted)]


def subscribe(media: LessonMedia, p: Participant, subs: list[dict[str, Any]]) -> None:
    media.subscriptions[p.participant_id] = [Subscription.model_validate(s) for s in subs]
    media._dynacast()


def test_layers_nobody_receives_are_paused_at_the_publisher_and_come_back() -> None:
    room = Room(9)
    boxes: dict[str, list[Any]] = {k: [] for k in ("m", "r", "o1", "o2")}
    main, rc, wall, full = (member("m", 1, "main", boxes["m"]), member("r", 2, "receiving", boxes["r"]),
                            member("o1", 3, "observer", boxes["o1"]), member("o2", 4, "observer", boxes["o2"]))
    for p in (main, wall):
        room.join(p)
    media = LessonMedia(9, service=None)  # type: ignore[arg-type]
    media.room = room
    media.announced["m"] = {TrackSource.camera: Publish(source=TrackSource.camera, track_id="cam", mid="0",
                                                        simulcast=LAYERS)}
    main.publications = {TrackSource.camera: Publication(source=TrackSource.camera, track_id="cam",
                                                         layers=["low", "medium", "high"])}
    media._dynacast()
    assert wanted(boxes["m"]) == [["q"]]  # nobody watches: the low layer only (cheap, starts fast)
    subscribe(media, wall, [{"participant_id": "m", "source": "camera", "layer": "low"}])
    assert wanted(boxes["m"]) == [["q"]]  # the patrol wall: still the low layer only, nothing new sent
    room.join(full)
    subscribe(media, full, [{"participant_id": "m", "source": "camera", "layer": "medium"}])
    assert wanted(boxes["m"])[-1] == ["q", "h"]
    room.join(rc)  # a receiving classroom gets the best its link carries: every layer
    subscribe(media, rc, [{"participant_id": "m", "source": "camera"}])
    assert wanted(boxes["m"])[-1] == ["q", "h", "f"]
    media.subscriptions.pop("r")
    media.subscriptions.pop("o2")
    media._dynacast()
    assert wanted(boxes["m"]) == [["q"], ["q", "h"], ["q", "h", "f"], ["q"]]
    # the message as the client gets it
    msg = server_adapter.validate_python({"type": "layers_wanted", "source": "camera", "rids": ["q"], "seq": 1})
    assert isinstance(msg, LayersWanted) and msg.source is TrackSource.camera
    # a recorded lesson keeps the main classroom's best picture
    media.recording = {"id": 1, "directory": "/tmp/x"}
    media._dynacast()
    assert wanted(boxes["m"])[-1] == ["q", "h", "f"]
    # a camera without simulcast, and the others' cameras, get nothing
    assert wanted(boxes["o1"]) == [] and wanted(boxes["r"]) == []


def test_the_on_stage_slot_wants_the_layers_of_whoever_is_on_stage() -> None:
    room = Room(9)
    boxes: dict[str, list[Any]] = {k: [] for k in ("m", "r", "s")}
    main, rc, student = (member("m", 1, "main", boxes["m"]), member("r", 2, "receiving", boxes["r"]),
                         member("s", 3, "student", boxes["s"]))
    for p in (main, rc, student):
        room.join(p)
    media = LessonMedia(9, service=None)  # type: ignore[arg-type]
    media.room = room
    media.announced["s"] = {TrackSource.camera: Publish(source=TrackSource.camera, track_id="cam", simulcast=LAYERS)}
    student.publications = {TrackSource.camera: Publication(source=TrackSource.camera, track_id="cam")}
    subscribe(media, rc, [{"participant_id": "stage", "source": "camera"}])
    assert wanted(boxes["s"]) == [["q"]]
    room.on_stage = "s"
    media._dynacast()
    assert wanted(boxes["s"]) == [["q"], ["q", "h", "f"]]
