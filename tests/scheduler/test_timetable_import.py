"""Timetable import from CSV and XLSX, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime

import pytest
from openpyxl import Workbook
from sqlalchemy import func, select

from scheduler import bookings
from scheduler.access import scope_of
from scheduler.models import (
    AuditEntry, LessonInstance, LessonKind, LessonSeries, ReceiverMode, SeriesReceiver, WeekPattern,
)
from scheduler.timetable_import import (
    UnreadableFile,
    UnsupportedFile,
    import_timetable,
    parse_file,
    parse_periods,
    parse_receivers,
    parse_weekday,
    parse_weeks,
    run_cli_import,
)
from server.core.config import Settings
from server.core.migrate import upgrade
from tests.utils.factory import World

HEADERS = ["课程名称", "类型", "学科", "年级", "学期", "主讲教室", "主讲教师", "星期", "节次", "周次", "单双周",
           "接收教室", "录播"]


def lesson(w: World, **kw: str) -> dict[str, str]:
    """One timetable row in the clerk's words: names, not ids."""
    row = {
        "课程名称": "三年级数学", "类型": "专递课堂", "学科": "数学", "年级": "三年级", "学期": w.term.name,
        "主讲教室": w.main_room.name, "主讲教师": w.teacher.username, "星期": "周一", "节次": "1", "周次": "",
        "单双周": "", "接收教室": f"{w.rural.name}/{w.recv_room.name}@{w.assistant.username}", "录播": "否",
    }
    row.update(kw)
    return row


def second_lesson(w: World, **kw: str) -> dict[str, str]:
    """A Tuesday double period in the other classroom, by the other teacher's display name."""
    return lesson(w, 课程名称="三年级语文", 学科="语文", 主讲教室=w.main_room2.name, 主讲教师=w.teacher2.display_name,
                  星期="星期二", 节次="3-4", 接收教室=f"{w.recv_room2.name}:听课", **kw)


def to_csv(rows: list[dict[str, str]], encoding: str = "utf-8-sig", headers: list[str] = HEADERS) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(headers)
    writer.writerows([[r.get(h, "") for h in headers] for r in rows])
    return buf.getvalue().encode(encoding)


def to_xlsx(rows: list[list[object]], headers: list[str] = HEADERS) -> bytes:
    book = Workbook()
    sheet = book.active
    sheet.append(headers)
    for r in rows:
        sheet.append(r)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def run(session, w: World, data: bytes, filename: str = "课表.csv", *,  # type: ignore[no-untyped-def]
        commit: bool, actor=None):
    actor = session.merge(actor or w.urban_admin)
    return import_timetable(session, data, filename, actor=actor, scope=scope_of(session, actor), commit=commit)


def count(session, model) -> int:  # type: ignore[no-untyped-def]
    return int(session.scalar(select(func.count()).select_from(model)))


# ---------------------------------------------------------------- cell parsing


@pytest.mark.parametrize("text,expected", [
    ("1", 1), ("7", 7), ("周一", 1), ("星期三", 3), ("星期日", 7), ("周天", 7), ("礼拜五", 5), ("五", 5),
    ("Mon", 1), ("friday", 5), ("３", 3),
])
def test_weekday_accepts_numbers_and_chinese_names(text: str, expected: int) -> None:
    assert parse_weekday(text) == expected


@pytest.mark.parametrize("text", ["0", "8", "周八", "", "星期"])
def test_weekday_rejects_anything_else(text: str) -> None:
    with pytest.raises(Exception, match="星期"):
        parse_weekday(text)


def test_periods_and_weeks_ranges() -> None:
    assert parse_periods("3") == (3, 3)
    assert parse_periods("3-4") == (3, 4)
    assert parse_periods("第3～4节") == (3, 4)
    assert parse_periods("3–4") == (3, 4)
    assert parse_weeks("") == (1, 99)
    assert parse_weeks("1-18") == (1, 18)
    with pytest.raises(Exception, match="结束节不能早于开始节"):
        parse_periods("9-3")
    with pytest.raises(Exception, match="格式有误"):
        parse_periods("三")


def test_receivers_cell_lists_rooms_with_mode_and_assistant() -> None:
    entries = parse_receivers("东区石桥村小/一年级教室@assistant；二年级教室:听课、山口村小 教室：listen@刘助教")
    assert [(e.classroom, e.mode, e.assistant) for e in entries] == [
        ("东区石桥村小/一年级教室", ReceiverMode.interactive, "assistant"),
        ("二年级教室", ReceiverMode.listen_only, None),
        ("山口村小 教室", ReceiverMode.listen_only, "刘助教"),
    ]


def test_unsupported_and_unreadable_files_are_refused() -> None:
    with pytest.raises(UnsupportedFile):
        parse_file(b"x", "课表.xls")
    with pytest.raises(UnsupportedFile):
        parse_file(b"x", "课表.txt")
    with pytest.raises(UnreadableFile):
        parse_file(b"not a zip", "课表.xlsx")
    with pytest.raises(UnreadableFile):
        parse_file(b"\r\n,,\r\n", "课表.csv")


def test_parse_file_keeps_spreadsheet_row_numbers_across_blank_rows() -> None:
    data = "课程名称,类型\r\n数学,专递课堂\r\n,\r\n语文,名师课堂\r\n".encode()
    sheet = parse_file(data, "a.csv")
    assert sheet.headers == ("课程名称", "类型")
    assert [(r.number, r.values) for r in sheet.rows] == [(2, ("数学", "专递课堂")), (4, ("语文", "名师课堂"))]


# ---------------------------------------------------------------- dry run and commit


def test_dry_run_of_a_clean_file_passes_every_row_and_writes_nothing(session, world):
    report = run(session, world, to_csv([lesson(world), second_lesson(world)]), commit=False)
    assert (report.rows_total, report.rows_ok, report.errors) == (2, 2, [])
    assert report.created_series_ids == [] and not report.committed
    session.commit()
    assert count(session, LessonSeries) == 0
    assert count(session, LessonInstance) == 0
    assert count(session, AuditEntry) == 0


def test_commit_books_every_row_at_the_main_schools_bell_times(session, world):
    report = run(session, world, to_csv([lesson(world), second_lesson(world)]), commit=True)
    session.commit()
    assert report.ok and report.committed and len(report.created_series_ids) == 2
    maths, chinese = (session.get(LessonSeries, i) for i in report.created_series_ids)
    assert (maths.kind, maths.weekday, maths.period_from, maths.period_to) == (LessonKind.dedicated, 1, 1, 1)
    assert maths.receivers[0].assistant_id == world.assistant.id
    assert chinese.main_teacher_id == world.teacher2.id
    assert chinese.receivers[0].mode is ReceiverMode.listen_only
    first = session.scalars(select(LessonInstance).where(LessonInstance.series_id == chinese.id)
                            .order_by(LessonInstance.day)).first()
    assert (first.starts_at, first.ends_at) == (datetime(2026, 9, 1, 9, 50), datetime(2026, 9, 1, 11, 20))
    per_series = dict(session.execute(select(LessonInstance.series_id, func.count())
                                      .group_by(LessonInstance.series_id)).all())
    assert per_series[maths.id] == 19  # every Monday of term but National Day
    assert count(session, LessonInstance) == sum(per_series.values())


def test_dry_run_reports_each_bad_row_with_its_row_number_and_column(session, world):
    rows = [
        lesson(world),                                              # row 2: fine
        lesson(world, 主讲教室="不存在的教室"),                        # row 3
        lesson(world, 星期="周八"),                                   # row 4
        lesson(world, 节次="9-3"),                                    # row 5
        lesson(world, 星期="4", 周次="5"),                            # row 6: week 5's Thursday is 1 October
        lesson(world, 主讲教室=world.main_room2.name,                 # row 7: same teacher and slot as row 2
               接收教室=f"{world.recv_room2.name}"),
        lesson(world, 星期="3", 接收教室=world.recv_room_b.name),     # row 8: no pairing with that school
    ]
    report = run(session, world, to_csv(rows), commit=False)
    got = {(e.row, e.column): e.reason for e in report.errors}
    assert set(got) == {(3, "主讲教室"), (4, "星期"), (5, "节次"), (6, "周次"), (7, "节次"), (8, "接收教室")}
    assert "不存在的教室" in got[(3, "主讲教室")]
    assert "周八" in got[(4, "星期")]
    assert "结束节不能早于开始节" in got[(5, "节次")]
    assert "没有任何上课日" in got[(6, "周次")]
    assert "王老师" in got[(7, "节次")] and "第 2 行" in got[(7, "节次")]
    assert "结对" in got[(8, "接收教室")]
    assert (report.rows_total, report.rows_ok) == (7, 1)
    session.commit()
    assert count(session, LessonSeries) == 0 and count(session, LessonInstance) == 0


def test_conflict_with_an_existing_booking_is_reported_on_the_periods_column(session, world):
    actor = session.merge(world.urban_admin)
    existing = bookings.SeriesSpec(
        kind=LessonKind.dedicated, title="已有的课", subject="数学", grade="三年级", term_id=world.term.id,
        main_classroom_id=world.main_room2.id, main_teacher_id=world.teacher.id, weekday=1, period_from=1,
        period_to=1, receivers=(bookings.ReceiverSpec(world.recv_room2.id),))
    bookings.create_series(session, existing, actor=actor, scope=scope_of(session, actor))
    session.commit()
    before = count(session, LessonInstance)
    report = run(session, world, to_csv([lesson(world)]), commit=False)
    (err,) = report.errors
    assert (err.row, err.column) == (2, "节次")
    assert "《已有的课》" in err.reason and "本文件" not in err.reason
    session.commit()
    assert count(session, LessonInstance) == before


def test_commit_with_one_bad_row_writes_nothing_at_all(session, world):
    before = (count(session, LessonSeries), count(session, LessonInstance), count(session, AuditEntry))
    report = run(session, world, to_csv([lesson(world), second_lesson(world), lesson(world, 节次="9-3")]),
                 commit=True)
    session.commit()
    assert [(e.row, e.column) for e in report.errors] == [(4, "节次")]
    assert report.rows_ok == 2 and not report.committed and report.created_series_ids == []
    assert (count(session, LessonSeries), count(session, LessonInstance), count(session, AuditEntry)) == before


def test_gbk_csv_from_chinese_excel_is_read(session, world):
    report = run(session, world, to_csv([lesson(world)], encoding="gbk"), commit=True)
    session.commit()
    assert report.ok and count(session, LessonInstance) == 19
    assert session.get(LessonSeries, report.created_series_ids[0]).title == "三年级数学"


def test_utf8_csv_without_bom_is_read(session, world):
    report = run(session, world, to_csv([lesson(world)], encoding="utf-8"), commit=False)
    assert report.ok and report.rows_ok == 1


def test_xlsx_first_sheet_with_numbers_and_excel_dates(session, world):
    w = world
    rows: list[list[object]] = [
        ["三年级数学", "专递课堂", "数学", "三年级", w.term.name, w.main_room.name, w.teacher.username, 1, 1,
         "1-18", "单周", f"{w.recv_room.name}@{w.assistant.username}", "是"],
        # Excel turns a typed "3-4" into 4 March: still periods 3 to 4.
        ["三年级语文", "名师课堂", "语文", "三年级", w.term.name, f"{w.urban.name}/{w.main_room2.name}",
         w.teacher2.display_name, "周二", datetime(2026, 3, 4), None, None, None, None],
    ]
    report = run(session, w, to_xlsx(rows), "课表.xlsx", commit=True)
    session.commit()
    assert report.ok, report.errors
    maths, chinese = (session.get(LessonSeries, i) for i in report.created_series_ids)
    assert (maths.week_from, maths.week_to, maths.week_pattern, maths.recording) == (1, 18, WeekPattern.odd, True)
    assert (chinese.kind, chinese.period_from, chinese.period_to) == (LessonKind.master, 3, 4)
    days = session.scalars(select(LessonInstance.day).where(LessonInstance.series_id == maths.id)
                           .order_by(LessonInstance.day)).all()
    assert days[:2] == [date(2026, 9, 14), date(2026, 9, 28)]  # Mondays of weeks 3 and 5


def test_english_headers_and_values_are_understood(session, world):
    headers = ["title", "kind", "subject", "grade", "term", "main_classroom", "main_teacher", "weekday", "periods",
               "weeks", "week_pattern", "receivers", "recording"]
    row = dict(zip(headers, ["Maths", "dedicated", "数学", "三年级", str(world.term.id), world.main_room.name,
                             world.teacher.display_name, "Wed", "2", "1-10", "even",
                             f"{world.recv_room.name}:listen", "no"]))
    report = run(session, world, to_csv([row], headers=headers), commit=True)
    session.commit()
    assert report.ok, report.errors
    series = session.get(LessonSeries, report.created_series_ids[0])
    assert (series.weekday, series.week_pattern, series.week_to) == (3, WeekPattern.even, 10)
    mode = session.scalar(select(SeriesReceiver.mode).where(SeriesReceiver.series_id == series.id))
    assert mode is ReceiverMode.listen_only


def test_admin_may_book_without_a_pairing_when_the_reason_column_says_why(session, world):
    headers = [*HEADERS, "越过结对原因"]
    row = lesson(world, 接收教室=world.recv_room_b.name, 越过结对原因="区教育局临时安排")
    report = run(session, world, to_csv([row], headers=headers), commit=True)
    assert report.ok, report.errors


def test_missing_and_unknown_columns_are_reported_on_the_header_row(session, world):
    headers = [h for h in HEADERS if h != "主讲教师"] + ["颜色"]
    report = run(session, world, to_csv([lesson(world)], headers=headers), commit=False)
    assert {(e.row, e.column) for e in report.errors} == {(1, "主讲教师"), (1, "颜色")}
    assert report.rows_ok == 0


def test_unknown_teacher_and_ambiguous_names_point_at_their_columns(session, world):
    rows = [
        lesson(world, 主讲教师="张老师"),
        lesson(world, 学期="2030 学年"),
        lesson(world, 接收教室=f"{world.recv_room.name}@nobody"),
        lesson(world, 类型="公开课", 课程名称=""),
    ]
    report = run(session, world, to_csv(rows), commit=False)
    got = {(e.row, e.column): e.reason for e in report.errors}
    assert set(got) == {(2, "主讲教师"), (3, "学期"), (4, "接收教室"), (5, "类型"), (5, "课程名称")}
    assert "张老师" in got[(2, "主讲教师")] and world.urban.name in got[(2, "主讲教师")]


def test_a_school_admin_cannot_import_into_another_schools_classroom(session, world):
    report = run(session, world, to_csv([lesson(world)]), commit=False, actor=world.admin_b)
    assert [(e.row, e.column) for e in report.errors] == [(2, "主讲教室")]


# ---------------------------------------------------------------- command line


@pytest.fixture
def cli_db(tmp_path):  # type: ignore[no-untyped-def]
    """A migrated SQLite file with the test world, and settings that point at it."""
    from server.core.db import make_engine, make_session_factory

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    upgrade(url)
    engine = make_engine(url)
    with make_session_factory(engine)() as s:
        w = World.build(s)
        s.commit()
    engine.dispose()
    settings = Settings(data_dir=tmp_path / "data", database_url=url, secret_key="sanke-test-secret-key-0123456789")
    return settings, w, url


def _instances_in(url: str) -> int:
    from server.core.db import make_engine, make_session_factory

    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as s:
            return count(s, LessonInstance)
    finally:
        engine.dispose()


def test_cli_prints_row_errors_and_exits_1(cli_db, tmp_path, capsys):
    settings, w, url = cli_db
    path = tmp_path / "课表.csv"
    path.write_bytes(to_csv([lesson(w), lesson(w, 主讲教室="火星教室")]))
    assert run_cli_import(settings, path, commit=True, actor_username=None) == 1
    out = capsys.readouterr().out
    assert "第 3 行 [主讲教室]:" in out and "火星教室" in out
    assert _instances_in(url) == 0


def test_cli_imports_a_clean_file_and_exits_0(cli_db, tmp_path, capsys):
    settings, w, url = cli_db
    path = tmp_path / "课表.csv"
    path.write_bytes(to_csv([lesson(w), second_lesson(w)]))
    assert run_cli_import(settings, path, commit=False, actor_username="urban_admin") == 0
    assert "未写入" in capsys.readouterr().out and _instances_in(url) == 0
    assert run_cli_import(settings, path, commit=True, actor_username=None) == 0
    assert "导入成功" in capsys.readouterr().out
    assert _instances_in(url) > 19


def test_cli_refuses_a_non_admin_actor_and_a_missing_file(cli_db, tmp_path, capsys):
    settings, w, _url = cli_db
    path = tmp_path / "课表.csv"
    path.write_bytes(to_csv([lesson(w)]))
    assert run_cli_import(settings, path, commit=False, actor_username="teacher") == 1
    assert "不是管理员" in capsys.readouterr().out
    assert run_cli_import(settings, tmp_path / "nope.csv", commit=False, actor_username=None) == 1

