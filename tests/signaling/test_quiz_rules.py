"""The quiz messages' shape and role rules (``signaling.messages``), and an answer the database cannot store
(``signaling.quiz``), without a server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from signaling import quiz
from signaling.messages import ErrorCode, LessonRole, ProtocolError, QuizAnswer, allowed, parse_client_message
from signaling.room import Participant, RoomRegistry

START = {"type": "quiz_start", "question": {"kind": "true_false", "text": "对吗", "correct": [0]}}
ANSWER = {"type": "quiz_answer", "question_id": 3, "choices": [0]}
CLOSE = {"type": "quiz_close", "question_id": 3}


@pytest.mark.parametrize(("role", "start", "answer"), [
    (LessonRole.main, True, False),
    (LessonRole.receiving, False, True),
    (LessonRole.student, False, True),
    (LessonRole.observer, False, False),
])
def test_only_the_main_classroom_starts_and_closes_and_classrooms_and_students_answer(
        role: LessonRole, start: bool, answer: bool) -> None:
    def may(frame: dict[str, object], listen_only: bool = False) -> bool:
        return allowed(role, parse_client_message(json.dumps(frame)), False, listen_only) is None

    assert may(START) is start and may(CLOSE) is start
    assert may(ANSWER) is answer
    if role is LessonRole.receiving:
        assert may(ANSWER, listen_only=True)  # a listen-only classroom answers too
    if not answer:
        assert allowed(role, parse_client_message(json.dumps(ANSWER)), False, False) is ErrorCode.not_allowed


def test_a_start_names_one_question_and_an_answer_picks_something() -> None:
    for frame in ({"type": "quiz_start"}, {**START, "question_id": 3},
                  {**ANSWER, "choices": []}, {"type": "quiz_answer", "question_id": 0, "choices": [1]}):
        with pytest.raises(ProtocolError) as exc:
            parse_client_message(json.dumps(frame))
        assert exc.value.code is ErrorCode.bad_message and exc.value.message_zh.startswith("消息字段不合法")
    assert parse_client_message(json.dumps({"type": "quiz_start", "question_id": 3})).type == "quiz_start"


def test_an_answer_the_database_cannot_store_is_refused_not_acked() -> None:
    def away() -> Any:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    got: list[Any] = []
    room = RoomRegistry().get_or_open(5)
    student = Participant(participant_id="s", user_id=9, display_name="小明", role=LessonRole.student,
                          classroom_id=None, listen_only=False, deliver=got.append)
    room.join(student)
    got.clear()
    asyncio.run(quiz.handle(away, room, student, QuizAnswer(question_id=3, choices=[1], request_id="a1")))
    assert [(m.type, m.code, m.message, m.request_id) for m in got] == [
        ("error", ErrorCode.internal, quiz.DATABASE_AWAY_ZH, "a1")]
