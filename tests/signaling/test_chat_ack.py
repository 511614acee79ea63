"""Chat is a request like the others: the sender gets an ``ack`` for its ``request_id`` (the page clears
its input on it), a refused line an ``error`` with the same ``request_id``."""

from __future__ import annotations

from typing import Any

from signaling.messages import Chat, LessonRole
from signaling.room import Participant, RoomRegistry


def _member(pid: str, user_id: int, role: str, box: list[Any]) -> Participant:
    return Participant(participant_id=pid, user_id=user_id, display_name=f"u{user_id}", role=LessonRole(role),
                       classroom_id=None, listen_only=False, deliver=box.append)


def test_a_chat_line_is_acked_to_its_sender_after_it_went_out() -> None:
    room = RoomRegistry().get_or_open(7)
    got_main: list[Any] = []
    got_recv: list[Any] = []
    main = _member("m", 1, "main", got_main)
    recv = _member("r", 2, "receiving", got_recv)
    room.join(main)
    room.join(recv)
    got_main.clear()
    got_recv.clear()

    room.handle(recv, Chat(text="老师好", request_id="r7"))
    assert [(m.type, getattr(m, "text", None)) for m in got_main] == [("chat", "老师好")]
    assert [m.type for m in got_recv] == ["chat", "ack"]
    assert got_recv[-1].request_id == "r7"
    # without a request_id, no ack (nothing waits for it)
    room.handle(recv, Chat(text="再说一句"))
    assert got_recv[-1].type == "chat"


def test_a_refused_chat_line_answers_an_error_with_its_request_id() -> None:
    room = RoomRegistry().get_or_open(8)
    got_obs: list[Any] = []
    room.join(_member("m", 1, "main", []))
    observer = _member("o", 3, "observer", got_obs)
    room.join(observer)
    room.handle(observer, Chat(text="巡课", request_id="c1"))
    assert got_obs[-1].type == "error" and got_obs[-1].request_id == "c1"
    assert not any(m.type in ("ack", "chat") for m in got_obs)
