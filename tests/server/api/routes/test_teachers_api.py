"""/api/v1/teachers/{id}/development-record: who may read it, the JSON's numbers, the CSV defused.

The world and its hand-computed numbers: ``tests/scheduler/test_teacher_record.py``.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from tests.scheduler.test_record_reports import NOW, ReportsWorld
from tests.scheduler.test_teacher_record import build_teacher_world

WEEK = {"date_from": "2026-09-07", "date_to": "2026-09-14"}


@pytest.fixture
def tw(session_factory: Any, world: Any, monkeypatch: pytest.MonkeyPatch) -> ReportsWorld:
    monkeypatch.setattr("scheduler.clock.now", lambda: NOW)
    with session_factory() as s:
        built = build_teacher_world(s, world)
        s.commit()
    return built


def _path(user: Any) -> str:
    return f"/api/v1/teachers/{user.id}/development-record"


def test_who_may_read_a_teachers_record(client: Any, world: Any, auth: Any, tw: ReportsWorld) -> None:
    assert client.get(_path(world.teacher), params=WEEK).status_code == 401
    for reader in (world.teacher, world.urban_admin, world.city_admin, world.researcher_a):
        r = client.get(_path(world.teacher), params=WEEK, headers=auth(reader))
        assert r.status_code == 200, (reader.username, r.text)
    for reader in (world.teacher2, world.researcher_b, world.rural_admin, world.student):
        r = client.get(_path(world.teacher), params=WEEK, headers=auth(reader))
        assert r.status_code == 403 and r.json()["code"] == "forbidden", (reader.username, r.status_code)
    r = client.get(_path(world.student), params=WEEK, headers=auth(world.sysadmin))
    assert r.status_code == 404


def test_the_record_in_json(client: Any, world: Any, auth: Any, tw: ReportsWorld) -> None:
    r = client.get(_path(world.teacher), params=WEEK, headers=auth(world.teacher))
    body = r.json()
    assert (body["teacher_name"], body["school_name"], body["term_id"]) == ("王老师", "东区实验小学", None)
    kinds = {k["kind"]: k["tally"] for k in body["by_kind"]}
    assert [k["name"] for k in body["by_kind"]] == ["专递课堂", "名师课堂", "名校网络课堂", "合计"]
    assert (kinds["total"]["due"], kinds["total"]["held"], kinds["total"]["partly_held"]) == (5, 2, 1)
    assert kinds["total"]["held_rate"] == 0.6 and kinds["dedicated"]["on_time"] == 2
    st = body["st"]
    assert (st["lessons"], st["avg_rt"], st["avg_ch"]) == (2, 0.6, 0.35)
    assert [(p["rt"], p["ch"], p["lesson_type_label"]) for p in st["points"]] == [(0.8, 0.2, "讲授型"),
                                                                                   (0.4, 0.5, "对话型")]
    assert [e["total_score"] for e in body["evaluations"]] == [80.0, 90.0] and body["average_score"] == 85.0
    assert body["evaluations"][0]["replies"][0]["author"] == "王老师"
    assert (body["quizzes"], body["recordings"]) == (1, 1)
    assert body["latest_recordings"][0]["instance_id"] == tw.lessons["L1"]
    # no dates: the current term (2026-09-01 .. 2027-01-22 holds NOW)
    term = client.get(_path(world.teacher), headers=auth(world.teacher)).json()
    assert (term["term_id"], term["date_from"], term["date_to"]) == (world.term.id, "2026-09-01", "2027-01-22")
    assert term["by_kind"][-1]["tally"]["scheduled"] == 7
    r = client.get(_path(world.teacher), params={"date_from": "2026-09-07"}, headers=auth(world.teacher))
    assert r.status_code == 422


def test_the_csv_has_a_row_per_lesson_and_no_formula(client: Any, world: Any, auth: Any, tw: ReportsWorld) -> None:
    r = client.get(_path(world.teacher), params={**WEEK, "format": "csv"}, headers=auth(world.urban_admin))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"].startswith("attachment;")
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert [row["开课情况"] for row in rows] == ["已开课", "已开课", "部分开课", "未开课", "未开课", "已停课", "未到期"]
    assert rows[0]["评课意见"].startswith("'=cmd") and rows[0]["S-T课型"] == "讲授型"


def test_the_record_as_a_workbook(client: Any, world: Any, auth: Any, tw: ReportsWorld) -> None:
    from openpyxl import load_workbook

    r = client.get(_path(world.teacher), params={**WEEK, "format": "xlsx"}, headers=auth(world.researcher_a))
    assert r.status_code == 200, r.text
    rows = list(load_workbook(io.BytesIO(r.content)).active.iter_rows(values_only=True))
    assert rows[0][:4] == ("课次ID", "日期", "开始", "课程") and len(rows) == 1 + 7
    assert rows[1][9:12] == (0.8, 0.2, "讲授型") and str(rows[1][14]).startswith("'=cmd")
