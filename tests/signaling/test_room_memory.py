"""What a big room costs stays small: a broadcast is one object shared by every session's replay
buffer, stamped only on its way to a socket, and serialised once for all sockets
(``signaling.room.Participant``, ``signaling.replay``, ``signaling.messages.wire_frame``).  What a session
keeps adds no object for the garbage collector (whose full collections pause the node's event loop for
as long as they scan every object): no pair per kept message, and no ``joined`` (the room's listing).

A node holds thousands of sessions and each keeps its last ``REPLAY_BUFFER`` messages for a resume;
a copy per session and message (about 1 KiB each) made a session with a full buffer cost half a
mebibyte.  Measured here with ``tracemalloc`` on a room of 100 sessions whose buffers fill with chat,
and checked that a resume still replays every kept message with its own ``seq``."""

from __future__ import annotations

import gc
import json
import tracemalloc
from typing import Any

from signaling.messages import Chat, LessonRole, wire_frame
from signaling.room import REPLAY_BUFFER, Participant, Room

SESSIONS = 100
BYTES_PER_KEPT_MESSAGE = 80
"""Budget per message kept per session (two deque slots and the seq's int: ~45 bytes; a pair and a deque
slot: ~70 bytes; a stamped copy: ~1,100)."""


def _member(i: int) -> Participant:
    """A session whose socket drops what it is sent (a socket's frames are not what is measured)."""
    return Participant(participant_id=f"p{i:04d}", user_id=i + 1, display_name=f"学生{i}", role=LessonRole.student,
                       classroom_id=None, listen_only=False, deliver=lambda _m: None)


def test_a_full_replay_buffer_costs_a_pair_per_message_not_a_copy_and_still_replays() -> None:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        room = Room(1)
        members = [_member(i) for i in range(SESSIONS)]
        for p in members:
            room.join(p)
        for p in members[1:]:  # sockets gone: what stays is what the sessions keep
            room.disconnect(p, p.link)
        speaker = members[0]
        for n in range(REPLAY_BUFFER):
            room.handle(speaker, Chat(text=f"第{n}条", request_id=None))
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before  # the room, its sessions and their buffers
    finally:
        tracemalloc.stop()
    kept = sum(len(p.sent) for p in members)
    assert kept >= SESSIONS * REPLAY_BUFFER * 0.99, kept
    per_message = grown / kept
    assert per_message < BYTES_PER_KEPT_MESSAGE, f"{per_message:.0f} bytes per kept message and session"

    # a session that dropped still gets every kept message on a resume, each with its own seq, in order
    late = members[7]
    got: list[Any] = []
    end = late.seq
    last_seq = end - 20
    resumed = room.resume(late.participant_id, last_seq, late.user_id, late.role, got.append, lambda _c: None)
    assert resumed is late
    replayed = [m for m in got if m.type == "chat"]
    assert [m.seq for m in replayed] == list(range(last_seq + 1, end + 1))
    assert [m.text for m in replayed] == [f"第{n}条" for n in range(REPLAY_BUFFER - 20, REPLAY_BUFFER)]
    assert len({id(m) for m in replayed}) == 20  # copies stamped for the socket, the kept one unchanged
    assert all(m.seq == 0 for _, m in late.sent)


def _tracked(kind: str | None = None) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if kind is None or type(o).__name__ == kind)


def test_a_kept_message_adds_no_object_per_session_for_the_garbage_collector() -> None:
    """500 chat lines kept by 100 sessions: the tracked objects grow with the lines (each is one shared
    message), not with lines x sessions (a pair per kept message was 50,000 more)."""
    room = Room(1)
    members = [_member(i) for i in range(SESSIONS)]
    for p in members:
        room.join(p)
    speaker = members[0]
    room.handle(speaker, Chat(text="热身", request_id=None))  # every lazily made object exists once
    before = _tracked()
    for n in range(REPLAY_BUFFER):
        room.handle(speaker, Chat(text=f"第{n}条", request_id=None))
    grown = _tracked() - before
    assert sum(len(p.sent) for p in members) >= SESSIONS * REPLAY_BUFFER * 0.99
    assert grown < REPLAY_BUFFER * 10, f"{grown} tracked objects for {REPLAY_BUFFER} lines kept by {SESSIONS} sessions"


def test_joined_is_not_kept_its_listing_is_freed_and_a_resume_from_before_it_is_refused() -> None:
    """``joined`` lists everyone in the room: kept by every session it was ~50 ``ParticipantInfo`` per
    session in a room of 100 (~250 tracked objects each).  A resume needs messages after it only."""
    alive_before = _tracked("ParticipantInfo")  # other tests' rooms may still be alive
    room = Room(1)
    members = [_member(i) for i in range(SESSIONS)]
    for p in members:
        room.join(p)
    # the one listing each join's participant_joined carries, kept by the others: one per session
    grown = _tracked("ParticipantInfo") - alive_before
    assert grown <= SESSIONS + 5, f"{grown} ParticipantInfo alive for a room of {SESSIONS}"
    assert not any(m.type == "joined" for p in members for _, m in p.sent)

    late = members[-1]  # joined last: its first kept message comes after joined
    joined_seq = late.seq
    room.disconnect(late, late.link)
    room.handle(members[0], Chat(text="你好", request_id=None))
    assert room.resume(late.participant_id, joined_seq - 1, late.user_id, late.role, lambda _m: None,
                       lambda _c: None) is None  # before joined: not a resume, a fresh join
    got: list[Any] = []
    assert room.resume(late.participant_id, joined_seq, late.user_id, late.role, got.append,
                       lambda _c: None) is late
    assert [(m.type, m.seq) for m in got] == [("resumed", joined_seq + 2), ("chat", joined_seq + 1)]


def test_a_broadcast_framed_once_reaches_every_socket_with_its_own_seq() -> None:
    """The endpoint's sockets take the shared message and their session's ``seq`` (``deliver_stamped``)
    and write ``wire_frame``: every frame is the message as its own dump says, with that socket's seq."""
    frames: dict[str, list[str]] = {}

    def member(i: int) -> Participant:
        pid = f"p{i}"
        frames[pid] = []
        return Participant(participant_id=pid, user_id=i + 1, display_name=f"学生{i}", role=LessonRole.student,
                           classroom_id=None, listen_only=False, deliver=lambda _m: None,
                           deliver_stamped=lambda m, seq, pid=pid: frames[pid].append(wire_frame(m, seq)))

    room = Room(1)
    members = [member(i) for i in range(5)]
    for p in members:
        room.join(p)
    room.handle(members[2], Chat(text="大家好 \"引号\" \\ 反斜杠", request_id="c1"))
    for p in members:
        got = [json.loads(f) for f in frames[p.participant_id]]
        assert [m["seq"] for m in got] == list(range(1, p.seq + 1))  # every frame, numbered in order
        chat = next(m for m in got if m["type"] == "chat")
        kept = next(m for seq, m in p.sent if m.type == "chat")
        assert chat == {**kept.model_dump(mode="json"), "seq": chat["seq"]}
        assert chat["text"] == "大家好 \"引号\" \\ 反斜杠" and chat["from_participant_id"] == "p2"
    # one message object for all five, unchanged (seq 0) where the sessions keep it
    kept_chats = {id(m) for p in members for _, m in p.sent if m.type == "chat"}
    assert len(kept_chats) == 1


def test_pongs_are_not_kept_but_take_their_seq_and_a_resume_after_one_replays_what_followed() -> None:
    """A ``pong`` answers its socket's ``ping``: a resumed socket has no ping waiting, so it is not kept
    (kept, a session held one per ping interval until its buffer filled)."""
    from signaling.messages import Ping

    room = Room(1)
    got: list[Any] = []
    a = Participant(participant_id="pa", user_id=1, display_name="甲", role=LessonRole.student, classroom_id=None,
                    listen_only=False, deliver=got.append)
    b = _member(2)
    room.join(a)
    room.join(b)
    for n in range(20):
        room.handle(a, Ping(ts=n, request_id=None))
    pongs = [m for m in got if m.type == "pong"]
    assert [m.ts for m in pongs] == list(range(20))
    assert not any(m.type == "pong" for _, m in a.sent)
    after_pong = pongs[-1].seq
    room.disconnect(a, a.link)
    room.handle(b, Chat(text="还在吗", request_id=None))
    again: list[Any] = []
    assert room.resume("pa", after_pong, 1, LessonRole.student, again.append, lambda _c: None) is a
    assert [m.type for m in again] == ["resumed", "chat"] and again[1].seq == after_pong + 1
