"""What of a room outlives its node: a snapshot by user (on stage, mutes, raised hands in their order,
mute all, live, the recent chat), kept after every change, and a room opened from it on another node
that gives each user back its part when it joins there with a new session, in any order."""

from __future__ import annotations

from typing import Any

import pytest

from signaling.messages import Chat, LessonRole, Mute, MuteAll, RaiseHand, SetMuted, SetOnStage, TrackSource
from signaling.room import Participant, RoomRegistry, RoomSnapshot

MAIN, RECV1, RECV2, STUDENT, OBSERVER = 1, 2, 3, 4, 5
ROLES = {MAIN: "main", RECV1: "receiving", RECV2: "receiving", STUDENT: "student", OBSERVER: "observer"}


def member(user_id: int, box: list[Any], session: str) -> Participant:
    return Participant(participant_id=f"{session}{user_id}", user_id=user_id, display_name=f"u{user_id}",
                       role=LessonRole(ROLES[user_id]), classroom_id=None, listen_only=False, deliver=box.append)


def lesson_under_way() -> tuple[Any, dict[int, Participant], list[RoomSnapshot]]:
    rooms = RoomRegistry()
    saved: list[RoomSnapshot] = []
    rooms.on_change = lambda room: saved.append(RoomSnapshot.parse(room.snapshot().to_json()))
    room = rooms.get_or_open(7)
    ps = {u: member(u, [], "a") for u in ROLES}
    for p in ps.values():
        room.join(p)
    room.set_live()
    room.handle(ps[STUDENT], RaiseHand(raised=True))
    room.handle(ps[RECV2], RaiseHand(raised=True))
    room.handle(ps[MAIN], SetOnStage(participant_id=ps[RECV1].participant_id))
    room.handle(ps[MAIN], Mute(participant_id=ps[RECV2].participant_id, source=TrackSource.microphone, muted=True))
    room.handle(ps[STUDENT], SetMuted(source=TrackSource.camera, muted=True))
    for n in range(3):
        room.handle(ps[RECV1], Chat(text=f"第{n + 1}句"))
    return room, ps, saved


def test_every_change_is_kept_by_user() -> None:
    room, ps, saved = lesson_under_way()
    last = saved[-1]
    assert last == room.snapshot()
    assert last.live and not last.muted_all and last.on_stage == RECV1
    assert last.hands == [STUDENT, RECV2]
    assert last.users[RECV2]["muted_by_teacher"] == ["microphone"]
    assert last.users[STUDENT]["self_muted"] == ["camera"]
    assert [c["text"] for c in last.chat] == ["第1句", "第2句", "第3句"]
    # a change saved once per change: the stage, the mute, the chat lines are each in one
    assert [s.on_stage for s in saved].count(RECV1) >= 1 and len(saved) >= 10
    room.handle(ps[MAIN], MuteAll(muted=True))
    assert saved[-1].muted_all
    room.close()  # a closed room writes nothing more
    count = len(saved)
    room.handle(ps[MAIN], Chat(text="再见"))
    assert len(saved) == count


def test_a_room_opened_from_the_snapshot_gives_each_user_its_part_back_in_any_order() -> None:
    old, _, saved = lesson_under_way()
    snap = RoomSnapshot.parse(saved[-1].to_json())
    rooms = RoomRegistry()
    kept: list[RoomSnapshot] = []
    rooms.on_change = lambda room: kept.append(room.snapshot())
    room = rooms.get_or_open(7, snap)
    boxes = {u: [] for u in ROLES}
    # new sessions; the second receiving classroom (hand raised second) is back before the student
    order = [RECV2, OBSERVER, RECV1, STUDENT, MAIN]
    ps = {}
    for u in order:
        ps[u] = member(u, boxes[u], "b")
        room.join(ps[u])
        if u == RECV2:  # while others are still away, a snapshot keeps what they had
            assert kept[-1].on_stage == RECV1 and set(kept[-1].users) == set(ROLES)
            assert kept[-1].hands == [RECV2, STUDENT]
    assert room.live and not room.muted_all
    assert room.on_stage == ps[RECV1].participant_id and ps[RECV1].on_stage
    assert room.hands == [ps[STUDENT].participant_id, ps[RECV2].participant_id]  # the original order
    assert ps[RECV2].muted_by_teacher == {TrackSource.microphone} and ps[RECV2].effective_muted(TrackSource.microphone)
    assert ps[STUDENT].effective_muted(TrackSource.camera) and not ps[STUDENT].muted_by_teacher
    joined = boxes[MAIN][0]
    assert joined.type == "joined"
    assert joined.room.on_stage == ps[RECV1].participant_id and joined.room.live
    assert joined.room.hands_raised == [ps[STUDENT].participant_id, ps[RECV2].participant_id]
    assert [c.text for c in joined.recent_chat] == ["第1句", "第2句", "第3句"]
    by_id = {p.participant_id: p for p in joined.participants}
    assert by_id[ps[RECV2].participant_id].muted_by_teacher == [TrackSource.microphone]
    assert by_id[ps[RECV1].participant_id].on_stage
    # the ones back before RECV1 heard it go on stage again; the teacher heard the hands
    assert any(m.type == "on_stage_changed" and m.participant_id == ps[RECV1].participant_id for m in boxes[RECV2])
    assert kept[-1].hands == [STUDENT, RECV2] and kept[-1].on_stage == RECV1
    assert kept[-1].users == old.snapshot().users
    # restored once: a user leaving and coming back does not get it again
    room.handle(ps[RECV2], RaiseHand(raised=False))
    assert room.hands == [ps[STUDENT].participant_id]


@pytest.mark.parametrize("raw", [b"", b"[]", b"{\"users\": {\"x\": {}}}", b"{\"hands\": [\"a\"]}",
                                 b"{\"users\": {\"1\": {\"self_muted\": [\"radio\"]}}}",
                                 b"{\"chat\": [{\"text\": \"x\"}]}"])
def test_a_bad_snapshot_is_a_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError):
        RoomSnapshot.parse(raw)
