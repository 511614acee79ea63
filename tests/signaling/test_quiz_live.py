"""The quick quiz over the lesson socket, through a real server on 127.0.0.1 and Python lesson clients:
the main classroom pushes a question, two receiving classrooms and a home student answer, the teacher's
results are right; a second answer replaces the first; roles and bad input are refused in zh-CN; a client
that joins again mid-quiz gets the question and its own answer back; answers are in the database once acked."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from scheduler.models import LessonInstance, Role
from scheduler.quizzes_models import QuizAnswer
from signaling.client import LessonClient, LessonError
from tests.media.sfu_harness import (  # noqa: F401 - a live lesson on 127.0.0.1
    Lesson,
    db_url,
    loopback_clients,
    media_workers,
    settings,
)
from tests.server.api.routes.test_lessons import book, lessons
from tests.utils.factory import add_user
from tests.utils.live import live_server
from tests.utils.wait import until


@pytest.fixture
def lesson(loopback_clients: None, app: Any, world: Any, auth: Any, session_factory: Any) -> Iterator[Lesson]:
    """A famous-school lesson received by two classrooms (each with a terminal) and a student at home."""
    with session_factory() as s:
        recv2 = add_user(s, "term_recv2", Role.terminal, classroom=world.recv_room2, name="石桥二年级终端")
        s.commit()
        s.refresh(recv2)
        s.expunge(recv2)
    world.terminal_recv2 = recv2
    with live_server(app) as base, httpx.Client(base_url=base, timeout=20) as http:
        book(http, world, auth, kind="famous_school", participant_ids=[world.student.id],
             receivers=[{"classroom_id": world.recv_room.id, "assistant_id": world.assistant.id},
                        {"classroom_id": world.recv_room2.id}])
        lid = lessons(http, world.urban_admin, auth, limit=1)["data"][0]["id"]
        with session_factory() as s:
            s.get(LessonInstance, lid).room_opened_at = datetime(2026, 8, 24, 8, 55)
            s.commit()
        yield Lesson(base, http, world, auth, lid)


def latest(client: LessonClient, kind: str) -> dict[str, Any] | None:
    found = [m for m in client.messages if m["type"] == kind]
    return found[-1] if found else None


async def results_where(client: LessonClient, check: Any, what: str) -> dict[str, Any]:
    def ready() -> Any:
        r = latest(client, "quiz_results")
        return r if r is not None and check(r) else None
    return await until(what, ready, timeout=10)


QUESTION = {"kind": "single", "text": "3 + 4 = ?", "options": ["6", "7", "8"], "correct": [1]}


def test_a_pushed_question_is_answered_by_two_classrooms_and_a_student(lesson: Lesson,
                                                                       session_factory: Any) -> None:
    w = lesson.world

    async def scenario() -> None:
        main = await lesson.join(w.teacher)
        rural1 = await lesson.join(w.terminal_recv)
        rural2 = await lesson.join(w.terminal_recv2)
        student = await lesson.join(w.student)
        observer = await lesson.join(w.researcher_a)

        # a receiving classroom may not push a question; bad input gets a zh-CN error naming it
        with pytest.raises(LessonError) as refused:
            await rural1.request({"type": "quiz_start", "question": QUESTION})
        assert refused.value.reply["code"] == "not_allowed"
        with pytest.raises(LessonError) as bad:
            await main.request({"type": "quiz_start", "question": {**QUESTION, "options": ["只有一个"], "correct": []}})
        assert bad.value.reply["code"] == "bad_message" and "选项应为 2 到 8 个" in bad.value.reply["message"]
        with pytest.raises(LessonError) as bad:
            await main.request({"type": "quiz_start", "question": {**QUESTION, "correct": [0, 1]}})
        assert "单选题只能有一个正确答案" in bad.value.reply["message"]

        await main.request({"type": "quiz_start", "question": QUESTION})
        pushed = await until("the student gets the question", lambda: latest(student, "quiz"), timeout=10)
        qid = pushed["question"]["question_id"]
        assert pushed["question"]["options"] == ["6", "7", "8"] and pushed["question"]["open"]
        assert pushed["question"]["correct"] is None and pushed["my_choices"] is None  # not told while open
        assert (await until("rural2 gets it", lambda: latest(rural2, "quiz")))["question"]["question_id"] == qid
        assert latest(main, "quiz") is None and latest(observer, "quiz") is None  # they watch the results
        first = await results_where(main, lambda r: r["question"]["question_id"] == qid, "the teacher's results")
        assert first["answered"] == 0 and first["question"]["correct"] == [1]
        # only one question at a time
        with pytest.raises(LessonError) as busy:
            await main.request({"type": "quiz_start", "question": QUESTION})
        assert "请先结束正在进行的随堂测" in busy.value.reply["message"]
        # the main classroom does not answer; a multiple pick on a single-choice question is refused
        with pytest.raises(LessonError):
            await main.request({"type": "quiz_answer", "question_id": qid, "choices": [1]})
        with pytest.raises(LessonError) as bad:
            await rural1.request({"type": "quiz_answer", "question_id": qid, "choices": [0, 1]})
        assert "单选题只能选一个答案" in bad.value.reply["message"]

        await rural1.request({"type": "quiz_answer", "question_id": qid, "choices": [1]})
        with session_factory() as s:  # stored once acked
            assert [a.choices for a in s.query(QuizAnswer).filter_by(question_id=qid)] == [[1]]
        await rural2.request({"type": "quiz_answer", "question_id": qid, "choices": [0]})
        await student.request({"type": "quiz_answer", "question_id": qid, "choices": [1]})
        r = await results_where(main, lambda r: r["answered"] == 3, "three answers")
        assert r["counts"] == [1, 2, 0] and r["correct_share"] == pytest.approx(2 / 3, abs=1e-3)
        by_name = {a["name"]: (a["role"], a["choices"], a["right"]) for a in r["answers"]}
        assert by_name == {w.recv_room.name: ("receiving", [1], True), w.recv_room2.name: ("receiving", [0], False),
                           "小明": ("student", [1], True)}
        assert (await results_where(observer, lambda r: r["answered"] == 3, "the observer's results"))["counts"] \
            == [1, 2, 0]
        mine = await until("rural2's own answer", lambda: (latest(rural2, "quiz") or {}).get("my_choices"))
        assert mine == [0]

        # answering again replaces the answer: still one per classroom
        await rural2.request({"type": "quiz_answer", "question_id": qid, "choices": [1]})
        r = await results_where(main, lambda r: r["counts"] == [0, 3, 0], "rural2's changed answer")
        assert r["answered"] == 3 and r["correct_share"] == 1.0
        # the classroom's assistant answers for the same classroom: it replaces the terminal's answer
        assistant = await lesson.join(w.assistant)
        got = await until("the assistant gets the question and its classroom's answer",
                          lambda: latest(assistant, "quiz"))
        assert got["my_choices"] == [1] and got["question"]["question_id"] == qid

        # a page reloaded mid-quiz (a fresh join) gets the open question and its own answer back
        await student.close()
        again = await lesson.join(w.student)
        back = await until("the reloaded student's quiz", lambda: latest(again, "quiz"))
        assert back["question"]["question_id"] == qid and back["my_choices"] == [1] and back["question"]["open"]

        await main.request({"type": "quiz_close", "question_id": qid})
        closed = await until("rural1 sees the close", lambda: (latest(rural1, "quiz") or {}).get("question", {})
                             .get("open") is False and latest(rural1, "quiz"))
        assert closed["question"]["correct"] == [1] and closed["my_choices"] == [1]
        await results_where(main, lambda r: not r["question"]["open"], "the closed results")
        with pytest.raises(LessonError) as late:
            await rural1.request({"type": "quiz_answer", "question_id": qid, "choices": [0]})
        assert "该题已结束作答" in late.value.reply["message"]

    lesson.play(scenario)
    with session_factory() as s:
        rows = {a.answerer: (a.choices, a.changes) for a in s.query(QuizAnswer)}
    assert rows == {f"c{w.recv_room.id}": ([1], 0), f"c{w.recv_room2.id}": ([1], 1), f"u{w.student.id}": ([1], 0)}


def test_answers_acked_before_a_restart_are_there_after_it(loopback_clients: None, settings: Any, world: Any,
                                                           auth: Any, session_factory: Any) -> None:
    """The server stops mid-quiz and a new one starts on the same database: the question is still open,
    the student's page (a fresh join) gets its answer back, the teacher the results, and the quiz goes on."""
    from server.main import create_app

    w = world
    with live_server(create_app(settings, migrate=False, run_lifecycle=False)) as base, \
            httpx.Client(base_url=base, timeout=20) as http:
        book(http, w, auth, kind="famous_school", participant_ids=[w.student.id])
        lid = lessons(http, w.urban_admin, auth, limit=1)["data"][0]["id"]
        with session_factory() as s:
            s.get(LessonInstance, lid).room_opened_at = datetime(2026, 8, 24, 8, 55)
            s.commit()
        before = Lesson(base, http, w, auth, lid)
        asked: dict[str, int] = {}

        async def until_the_answer_is_acked() -> None:
            main = await before.join(w.teacher)
            student = await before.join(w.student)
            await main.request({"type": "quiz_start", "question": QUESTION})
            asked["qid"] = (await until("the question", lambda: latest(student, "quiz")))["question"]["question_id"]
            await student.request({"type": "quiz_answer", "question_id": asked["qid"], "choices": [2]})

        before.play(until_the_answer_is_acked)
    qid = asked["qid"]
    with live_server(create_app(settings, migrate=False, run_lifecycle=False)) as base, \
            httpx.Client(base_url=base, timeout=20) as http:
        after = Lesson(base, http, w, auth, lid)

        async def after_the_restart() -> None:
            student = await after.join(w.student)
            back = await until("the student's quiz after the restart", lambda: latest(student, "quiz"))
            assert back["question"]["question_id"] == qid and back["question"]["open"] and back["my_choices"] == [2]
            main = await after.join(w.teacher)
            r = await results_where(main, lambda r: r["question"]["question_id"] == qid, "the results after it")
            assert r["answered"] == 1 and r["counts"] == [0, 0, 1] and r["correct_share"] == 0.0
            rural = await after.join(w.terminal_recv)
            await rural.request({"type": "quiz_answer", "question_id": qid, "choices": [1]})
            await results_where(main, lambda r: r["answered"] == 2 and r["correct_share"] == 0.5, "a new answer")
            await main.request({"type": "quiz_close", "question_id": qid})

        after.play(after_the_restart)
