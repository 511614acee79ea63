"""/lessons/{id}/quiz-questions and /records/lessons/{id}/quizzes: who prepares questions (the lesson's main
seat), who sees the results and their CSV (the teaching record's rule: staff who may see the lesson)."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any

from scheduler import quizzes
from tests.server.api.routes.test_lessons import book, lessons


def _lesson(client: Any, w: Any, auth: Any) -> int:
    book(client, w, auth, kind="famous_school", participant_ids=[w.student.id])
    return int(lessons(client, w.urban_admin, auth, limit=1)["data"][0]["id"])


def test_the_main_seat_prepares_questions_and_others_may_not(client: Any, world: Any, auth: Any) -> None:
    w = world
    lid = _lesson(client, w, auth)
    url = f"/api/v1/lessons/{lid}/quiz-questions"
    body = {"kind": "single", "text": "3 + 4 = ?", "options": ["6", "7"], "correct": [1]}
    for user in (w.terminal_recv, w.student, w.teacher_b, w.researcher_a, w.assistant):
        r = client.post(url, json=body, headers=auth(user))
        assert r.status_code == 403, (user.username, r.text)
    assert client.post(url, json=body).status_code == 401
    r = client.post(url, json={**body, "options": ["6"]}, headers=auth(w.teacher))
    assert r.status_code == 422 and r.json()["message"] == "选项应为 2 到 8 个"
    r = client.post(url, json=body, headers=auth(w.teacher))
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["options"] == ["6", "7"] and made["correct"] == [1] and made["opened_at"] is None
    r = client.post(url, json={"kind": "true_false", "text": "7 是质数", "correct": [0]}, headers=auth(w.terminal_main))
    assert r.status_code == 201 and r.json()["options"] == ["正确", "错误"]
    listed = client.get(url, headers=auth(w.teacher)).json()
    assert [q["text"] for q in listed["data"]] == ["3 + 4 = ?", "7 是质数"] and listed["count"] == 2
    assert client.get(url, headers=auth(w.terminal_recv)).status_code == 403  # the answers stay hidden
    assert client.delete(f"{url}/{made['id']}", headers=auth(w.student)).status_code == 403
    assert client.delete(f"{url}/{made['id']}", headers=auth(w.teacher)).status_code == 204
    assert client.get(url, headers=auth(w.teacher)).json()["count"] == 1


def test_results_follow_the_records_access_rule_and_the_csv_is_neutralised(client: Any, world: Any, auth: Any,
                                                                           session_factory: Any) -> None:
    w = world
    lid = _lesson(client, w, auth)
    t0 = datetime(2026, 9, 7, 8, 5)
    with session_factory() as s:
        q = quizzes.open_question(s, lid, new=quizzes.NewQuestion(quizzes.QuizKind.single, "=cmd|' /C calc'!A0",
                                                                   ["=1+1", "2"], [1]),
                                  by_user_id=w.teacher.id, now=t0)
        quizzes.answer(s, lid, q.id, [1], role="receiving", user_id=w.terminal_recv.id, classroom_id=w.recv_room.id,
                       name="=HYPERLINK(\"x\")", now=t0)
        quizzes.answer(s, lid, q.id, [0], role="student", user_id=w.student.id, classroom_id=None, name="小明", now=t0)
        s.commit()
    url = f"/api/v1/records/lessons/{lid}/quizzes"
    for user in (w.teacher_b, w.researcher_b, w.admin_b, w.student, w.terminal_recv):  # another school/region
        for path in (url, url + ".csv"):
            r = client.get(path, headers=auth(user))
            assert r.status_code == 403, (user.username, path, r.text)
    for user in (w.teacher, w.urban_admin, w.rural_admin, w.city_admin, w.researcher_a, w.researcher_city):
        r = client.get(url, headers=auth(user))
        assert r.status_code == 200, (user.username, r.text)
    data = client.get(url, headers=auth(w.teacher)).json()
    assert data["count"] == 1
    res = data["data"][0]
    assert res["open"] and res["counts"] == [1, 1] and res["answered"] == 2 and res["right"] == 1
    assert res["correct_share"] == 0.5 and res["question"]["opened_at"].startswith("2026-09-07T08:05:00")
    assert [(a["role"], a["choices"], a["right"]) for a in res["answers"]] == [("receiving", [1], True),
                                                                              ("student", [0], False)]
    r = client.get(url + ".csv", headers=auth(w.researcher_a))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[1][2] == "'=cmd|' /C calc'!A0" and rows[1][7] == "'=HYPERLINK(\"x\")"
    assert "A. =1+1" in rows[1][3]
    assert not any(cell.startswith(("=", "+", "@")) for row in rows for cell in row)
