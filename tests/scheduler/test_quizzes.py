"""The quick quiz's rules (``scheduler.quizzes``): the bounds of a question and an answer, one open
question at a time, one answer per classroom or student (a new one replaces it), results and their
right share, a question closed with the lesson's room, and the CSV export."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any

import pytest

from scheduler import quizzes
from scheduler.errors import Invalid, InvalidState
from scheduler.models import LessonInstance
from scheduler.quizzes import NewQuestion
from scheduler.quizzes_models import QuizKind
from tests.server.api.routes.test_lessons import book, lessons

T0 = datetime(2026, 9, 7, 8, 5)


def _invalid(q: NewQuestion) -> str:
    with pytest.raises(Invalid) as exc:
        quizzes.validate(q)
    return exc.value.message


def test_a_question_is_checked_with_a_message_for_each_mistake() -> None:
    single = QuizKind.single
    assert "请填写题目" in _invalid(NewQuestion(single, "  ", ["a", "b"], [0]))
    assert "不能超过 500 个字" in _invalid(NewQuestion(single, "长" * 501, ["a", "b"], [0]))
    assert "选项应为 2 到 8 个" in _invalid(NewQuestion(single, "题", ["a"], [0]))
    assert "选项应为 2 到 8 个" in _invalid(NewQuestion(single, "题", list("abcdefghi"), [0]))
    assert "选项 B 不能为空" in _invalid(NewQuestion(single, "题", ["a", " "], [0]))
    assert "选项 A 不能超过 100 个字" in _invalid(NewQuestion(single, "题", ["x" * 101, "b"], [0]))
    assert "选项不能重复" in _invalid(NewQuestion(single, "题", ["a", "a"], [0]))
    assert "正确答案必须是已有的选项" in _invalid(NewQuestion(single, "题", ["a", "b"], [2]))
    assert "单选题只能有一个正确答案" in _invalid(NewQuestion(single, "题", ["a", "b"], [0, 1]))
    assert "判断题只能有一个正确答案" in _invalid(NewQuestion(QuizKind.true_false, "题", [], [0, 1]))
    ok = quizzes.validate(NewQuestion(QuizKind.true_false, " 地球是圆的 ", ["忽略"], [0]))
    assert ok.text == "地球是圆的" and ok.options == ["正确", "错误"] and ok.correct == [0]
    poll = quizzes.validate(NewQuestion(QuizKind.multiple, "喜欢哪些？", [" 猫", "狗 "], []))
    assert poll.options == ["猫", "狗"] and poll.correct == []


@pytest.fixture
def lid(client: Any, world: Any, auth: Any) -> int:
    book(client, world, auth, kind="famous_school", participant_ids=[world.student.id])
    return int(lessons(client, world.urban_admin, auth, limit=1)["data"][0]["id"])


def _answer(s: Any, lid: int, qid: int, choices: list[int], who: Any, classroom_id: int | None = None,
            role: str = "receiving", at: datetime = T0) -> Any:
    return quizzes.answer(s, lid, qid, choices, role=role, user_id=who.id, classroom_id=classroom_id,
                          name=who.display_name, now=at)


def test_one_open_question_one_answer_each_and_the_results(session: Any, world: Any, lid: int) -> None:
    w = world
    prepared = quizzes.prepare(session, lid, NewQuestion(QuizKind.multiple, "哪些是偶数？", ["1", "2", "4"], [1, 2]),
                               by_user_id=w.teacher.id, now=T0)
    with pytest.raises(InvalidState):  # not pushed yet: nobody answers
        _answer(session, lid, prepared.id, [1], w.terminal_recv, w.recv_room.id)
    q = quizzes.open_question(session, lid, question_id=prepared.id, by_user_id=w.teacher.id, now=T0)
    with pytest.raises(InvalidState, match="请先结束"):
        quizzes.open_question(session, lid, new=NewQuestion(QuizKind.true_false, "对吗", [], [0]),
                              by_user_id=w.teacher.id, now=T0)
    with pytest.raises(InvalidState):
        _answer(session, lid, q.id, [1], w.teacher, role="main")
    with pytest.raises(Invalid, match="所选答案不是本题的选项"):
        _answer(session, lid, q.id, [3], w.terminal_recv, w.recv_room.id)
    with pytest.raises(Invalid, match="请选择答案"):
        _answer(session, lid, q.id, [], w.terminal_recv, w.recv_room.id)
    _answer(session, lid, q.id, [1], w.terminal_recv, w.recv_room.id)
    _answer(session, lid, q.id, [1, 2], w.student, role="student")
    # the classroom's assistant answers for the same classroom: it replaces the terminal's answer
    _answer(session, lid, q.id, [2, 1], w.assistant, w.recv_room.id, at=datetime(2026, 9, 7, 8, 6))
    r = quizzes.results(session, q)
    assert r.open and r.counts == [0, 2, 2] and r.answered == 2 and r.right == 2 and r.correct_share == 1.0
    assert [(a.answerer, a.choices, a.changes) for a in r.answers] == [
        (f"u{w.student.id}", [1, 2], 0), (f"c{w.recv_room.id}", [1, 2], 1)]
    assert quizzes.choices_of(session, q.id, f"c{w.recv_room.id}") == [1, 2]

    quizzes.close(session, lid, q.id, now=datetime(2026, 9, 7, 8, 7))
    with pytest.raises(InvalidState, match="该题已结束作答"):
        _answer(session, lid, q.id, [0], w.student, role="student")
    with pytest.raises(InvalidState, match="已推送过"):
        quizzes.open_question(session, lid, question_id=q.id, by_user_id=w.teacher.id, now=T0)
    with pytest.raises(InvalidState, match="不能删除"):
        quizzes.remove_prepared(session, lid, q.id)
    assert quizzes.current(session, lid) is None

    # a poll, left open when the lesson's room closes: closed with it, no right share
    poll = quizzes.open_question(session, lid, new=NewQuestion(QuizKind.single, "下节课学什么？", ["诗", "词"], []),
                                 by_user_id=w.teacher.id, now=datetime(2026, 9, 7, 8, 10))
    _answer(session, lid, poll.id, [0], w.student, role="student")
    assert quizzes.results(session, poll).correct_share is None
    session.get(LessonInstance, lid).room_closed_at = datetime(2026, 9, 7, 8, 45)
    session.flush()
    done = quizzes.lesson_results(session, lid)
    assert [(x.question.id, x.open, x.closed_at) for x in done] == [
        (q.id, False, datetime(2026, 9, 7, 8, 7)), (poll.id, False, datetime(2026, 9, 7, 8, 45))]
    assert quizzes.current(session, lid) is None
    with pytest.raises(InvalidState):
        _answer(session, lid, poll.id, [1], w.terminal_recv, w.recv_room.id)


def test_the_csv_lists_every_answer_and_neutralises_formula_text(session: Any, world: Any, lid: int) -> None:
    w = world
    q = quizzes.open_question(session, lid, new=NewQuestion(QuizKind.single, "=cmd|' /C calc'!A0", ["@SUM(1)", "+1"],
                                                            [1]), by_user_id=w.teacher.id, now=T0)
    _answer(session, lid, q.id, [1], w.student, role="student")
    quizzes.close(session, lid, q.id, now=T0)
    unanswered = quizzes.open_question(session, lid, new=NewQuestion(QuizKind.true_false, "对吗", [], [1]),
                                       by_user_id=w.teacher.id, now=T0)
    body = quizzes.results_csv(session, lid)
    assert body.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows[0][:5] == ["题号", "题型", "题目", "选项", "正确答案"]
    assert rows[1][1:5] == ["单选题", "'=cmd|' /C calc'!A0", "A. @SUM(1)；B. +1", "B"]
    assert rows[1][7:13] == ["小明", "学生", "", str(w.student.id), "B", "是"]
    assert rows[2][:3] == ["2", "判断题", "对吗"] and rows[2][7] == "" and unanswered.id
    assert len(rows) == 3
