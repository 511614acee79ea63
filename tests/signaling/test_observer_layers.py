"""Which simulcast layers an observer (巡课) may get: the lowest unless its subscription names one,
which is then its ceiling; anyone else is not capped. ``LessonMedia`` decides this in the specs it
hands the media worker (``max_layer`` caps the consumer's layer gate, ``media.bwe``)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from signaling.media import LessonMedia
from signaling.messages import LessonRole, Subscription, UpdateSubscriptions
from signaling.room import Participant, Room


def member(pid: str, user_id: int, role: str) -> Participant:
    box: list[Any] = []
    return Participant(participant_id=pid, user_id=user_id, display_name=f"u{user_id}", role=LessonRole(role),
                       classroom_id=None, listen_only=False, deliver=box.append)


def specs(media: LessonMedia, p: Participant, subs: list[dict[str, Any]]) -> dict[str, tuple[Any, Any]]:
    media.subscriptions[p.participant_id] = [Subscription.model_validate(s) for s in subs]
    return {s["consumer_id"].split("~", 1)[1]: (s["max_layer"], s["preferred_layer"]) for s in media._consumer_specs(p)}


def test_an_observer_gets_the_lowest_layer_unless_it_names_one() -> None:
    room = Room(9)
    main, rc, wall, full = (member("m", 1, "main"), member("r", 2, "receiving"), member("o1", 3, "observer"),
                            member("o2", 4, "observer"))
    for p in (main, rc, wall, full):
        room.join(p)
    media = LessonMedia(9, service=None)  # type: ignore[arg-type]
    media.room = room

    # a wall tile: no layer named, the lowest layer only
    assert specs(media, wall, [{"participant_id": "m", "source": "camera"}]) == {"m~camera": (0, None)}
    # the full view: "high" for the camera, the screen and the stage; never more than it named
    got = specs(media, full, [{"participant_id": "m", "source": "camera", "layer": "high"},
                              {"participant_id": "m", "source": "screen", "layer": "high"},
                              {"participant_id": "stage", "source": "camera", "layer": "medium"},
                              {"participant_id": "r", "source": "camera", "layer": "low"},
                              {"participant_id": "m", "source": "microphone"}])
    assert got == {"m~camera": (2, 2), "m~screen": (2, 2), "stage~camera": (1, 1), "r~camera": (0, 0),
                   "m~microphone": (0, None)}
    # a classroom is not capped; its named layer is a preference only
    assert specs(media, rc, [{"participant_id": "m", "source": "camera", "layer": "low"}]) == {"m~camera": (None, 0)}


def test_a_layer_that_does_not_exist_is_refused_by_the_protocol() -> None:
    with pytest.raises(ValidationError):
        UpdateSubscriptions.model_validate({"type": "update_subscriptions", "subscriptions": [
            {"participant_id": "m", "source": "camera", "layer": "ultra"}]})
