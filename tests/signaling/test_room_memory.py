"""What a big room's sessions keep costs little: a broadcast is one object shared by every session's
replay buffer, stamped only on its way to a socket (``signaling.room.Participant``).

A node holds thousands of sessions and each keeps its last ``REPLAY_BUFFER`` messages for a resume;
a copy per session and message (about 1 KiB each) made a session with a full buffer cost half a
mebibyte.  Measured here with ``tracemalloc`` on a room of 100 sessions whose buffers fill with chat,
and checked that a resume still replays every kept message with its own ``seq``."""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

from signaling.messages import Chat, LessonRole
from signaling.room import REPLAY_BUFFER, Participant, Room

SESSIONS = 100
BYTES_PER_KEPT_MESSAGE = 200
"""Budget per message kept per session (a pair and a deque slot: ~70 bytes; a stamped copy: ~1,100)."""


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
