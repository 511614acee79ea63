"""/api/v1/reports: staff only, scoped like the listings; CSV and XLSX files parse back with the right numbers."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from openpyxl import load_workbook

from tests.scheduler.test_record_reports import NOW, ReportsWorld, build_reports_world

P = "/api/v1/reports"
WEEK = {"date_from": "2026-09-07", "date_to": "2026-09-14"}


@pytest.fixture
def rw(session_factory: Any, world: Any, monkeypatch: pytest.MonkeyPatch) -> ReportsWorld:
    monkeypatch.setattr("scheduler.clock.now", lambda: NOW)
    with session_factory() as s:
        built = build_reports_world(s, world)
        s.commit()
    return built


def _csv(r: Any) -> list[dict[str, str]]:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"].startswith("attachment;")
    assert r.content.startswith("\ufeff".encode())
    return list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))


def _xlsx(r: Any) -> list[dict[str, Any]]:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/vnd.openxmlformats-officedocument.spreadsheetml")
    ws = load_workbook(io.BytesIO(r.content)).active
    rows = list(ws.iter_rows(values_only=True))
    return [dict(zip(rows[0], row)) for row in rows[1:]]


def test_reports_need_a_staff_login(client: Any, world: Any, auth: Any, rw: ReportsWorld) -> None:
    lid = rw.lessons["L1"]
    paths = ["/summary", "/breakdown", "/patrol", "/lessons", "/attendance", f"/lessons/{lid}"]
    for path in paths:
        r = client.get(P + path, params=WEEK)
        assert r.status_code == 401 and r.json()["code"] == "not_authenticated", path
        for user in (world.student, world.terminal_main):
            r = client.get(P + path, params=WEEK, headers=auth(user))
            assert r.status_code == 403, (path, user.username, r.status_code)


def test_a_region_or_school_outside_the_scope_is_refused(client: Any, world: Any, auth: Any,
                                                         rw: ReportsWorld) -> None:
    r = client.get(f"{P}/summary", params={**WEEK, "region_id": world.district_b.id}, headers=auth(world.researcher_a))
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    r = client.get(f"{P}/breakdown", params={**WEEK, "school_id": world.rural_b.id}, headers=auth(world.urban_admin))
    assert r.status_code == 403
    # a lesson outside the caller's region: its record is not theirs to read
    r = client.get(f"{P}/lessons/{rw.lessons['M1']}", headers=auth(world.researcher_b))
    assert r.status_code == 403
    r = client.get(f"{P}/summary", params={"date_from": "2026-09-08", "date_to": "2026-09-07"},
                   headers=auth(world.sysadmin))
    assert r.status_code == 422


def test_summary_json_and_files(client: Any, world: Any, auth: Any, rw: ReportsWorld) -> None:
    r = client.get(f"{P}/summary", params=WEEK, headers=auth(world.city_admin))
    assert r.status_code == 200, r.text
    body = r.json()
    t = body["total"]
    assert (t["due"], t["held"], t["partly_held"], t["missed"], t["unrecorded"]) == (8, 4, 1, 3, 2)
    assert t["held_rate"] == 0.625 and t["on_time_rate"] == 0.8 and t["attendance_rate"] == pytest.approx(6 / 9)
    assert body["average_score"] == 85.0 and len(body["series"]) == 8 and body["bucket"] == "day"
    rows = _csv(client.get(f"{P}/summary", params={**WEEK, "format": "csv"}, headers=auth(world.city_admin)))
    total = rows[-1]
    assert total["日期"] == "合计" and total["应开课"] == "8" and total["开课率(%)"] == "62.5"
    assert total["准时率(%)"] == "80.0" and total["到课率(%)"] == "66.7" and total["巡课覆盖率(%)"] == "40.0"
    assert rows[0]["日期"] == "2026-09-07" and rows[0]["开课率(%)"] == "100.0"
    sheet = _xlsx(client.get(f"{P}/summary", params={**WEEK, "format": "xlsx"}, headers=auth(world.city_admin)))
    assert sheet[-1]["日期"] == "合计" and sheet[-1]["开课率(%)"] == 62.5 and sheet[-1]["应到"] == 9
    assert sheet[-1]["实到"] == 6 and sheet[-1]["其中无记录"] == 2


def test_breakdown_is_scoped_and_exports(client: Any, world: Any, auth: Any, rw: ReportsWorld) -> None:
    r = client.get(f"{P}/breakdown", params={**WEEK, "by": "region"}, headers=auth(world.sysadmin))
    assert r.status_code == 200
    by_name = {u["name"]: u["tally"] for u in r.json()["data"]}
    assert (by_name["东区"]["scheduled"], by_name["西区"]["scheduled"]) == (10, 7)
    r = client.get(f"{P}/breakdown", params={**WEEK, "by": "school"}, headers=auth(world.researcher_b))
    assert [u["name"] for u in r.json()["data"]] == ["西区山口村小"]
    rows = _csv(client.get(f"{P}/breakdown", params={**WEEK, "by": "school", "format": "csv"},
                           headers=auth(world.sysadmin)))
    rural = next(row for row in rows if row["学校"] == "东区石桥村小")
    assert (rural["应到"], rural["实到"], rural["到课率(%)"]) == ("6", "4", "66.7")
    sheet = _xlsx(client.get(f"{P}/breakdown", params={**WEEK, "by": "teacher", "format": "xlsx"},
                             headers=auth(world.sysadmin)))
    assert {row["教师"]: row["应开课"] for row in sheet} == {"王老师": 5, "李老师": 2, "赵老师": 1}
    assert client.get(f"{P}/breakdown", params={**WEEK, "by": "weather"}, headers=auth(world.sysadmin)).status_code == 422


def test_patrol_report(client: Any, world: Any, auth: Any, rw: ReportsWorld) -> None:
    body = client.get(f"{P}/patrol", params=WEEK, headers=auth(world.sysadmin)).json()
    assert (body["held"], body["patrolled"], body["visits"], body["patrol_rate"]) == (5, 2, 3, 0.4)
    assert len(body["visitors"]) == 3
    mine = client.get(f"{P}/patrol", params=WEEK, headers=auth(world.researcher_a)).json()
    assert [v["name"] for v in mine["visitors"]] == ["东区教研员"]
    sheet = _xlsx(client.get(f"{P}/patrol", params={**WEEK, "format": "xlsx"}, headers=auth(world.sysadmin)))
    east = next(row for row in sheet if row["巡课人"] == "东区教研员")
    assert (east["巡课次数"], east["巡课分钟"], east["平均评分"]) == (2, 12.0, 80.0)
    assert next(row for row in sheet if row["巡课人"] == "巡课覆盖率(%)")["巡课次数"] == 40.0


def test_lesson_list_and_lesson_record(client: Any, world: Any, auth: Any, rw: ReportsWorld) -> None:
    page = client.get(f"{P}/lessons", params={**WEEK, "outcome": "missed"}, headers=auth(world.sysadmin)).json()
    assert page["count"] == 3 and {d["id"] for d in page["data"]} == {rw.lessons[k] for k in ("L4", "L5", "M2")}
    rows = _csv(client.get(f"{P}/lessons", params={**WEEK, "format": "csv"}, headers=auth(world.teacher)))
    assert len(rows) == 7  # 王老师's own lessons
    one = client.get(f"{P}/lessons/{rw.lessons['L1']}", headers=auth(world.researcher_a))
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["lesson"]["outcome"] == "held" and body["lesson"]["recording_id"] is None
    recv = [a for a in body["attendance"] if a["role"] == "receiving"]
    assert [len(a["sessions"]) for a in recv] == [2, 0]


def test_attendance_exports_per_lesson_and_per_term(client: Any, world: Any, auth: Any, rw: ReportsWorld) -> None:
    rows = _csv(client.get(f"{P}/lessons/{rw.lessons['L1']}", params={"format": "csv"}, headers=auth(world.sysadmin)))
    assert [r["参与方"] for r in rows] == ["主讲教室", "接收教室", "接收教室"]
    assert rows[1]["进出记录"] == "08:00:30–08:10:00；08:10:20–08:40:00" and rows[1]["首次进入"] == "08:00:30"
    term = _xlsx(client.get(f"{P}/attendance", params={"term_id": world.term.id, "format": "xlsx"},
                            headers=auth(world.sysadmin)))
    # every stored attendance row of the recorded lessons: L1 3, L2 3, L3 3, L4 2, M1 3, F1 2
    assert len(term) == 16
    students = [r for r in term if r["参与方"].startswith("在家学生")]
    assert [(r["学生/教师"], r["在线分钟"]) for r in students] == [("小明", 35.0), ("小明", 30.0)]
    page = client.get(f"{P}/attendance", params={**WEEK, "limit": 5}, headers=auth(world.sysadmin)).json()
    assert page["count"] == 16 and len(page["data"]) == 5
