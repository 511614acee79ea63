"""/timetable: import uploads, iCalendar feeds and CSV export, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from zoneinfo import ZoneInfo

from icalendar import Calendar
from openpyxl import Workbook
from sqlalchemy import func, select

from scheduler import bookings
from scheduler.access import scope_of
from scheduler.exports import CSV_HEADERS
from scheduler.models import InstanceStatus, LessonInstance, LessonKind, LessonSeries
from tests.conftest import TEST_SECRET
from tests.scheduler.test_timetable_import import HEADERS, lesson, second_lesson, to_csv
from tests.utils.factory import World, token_for

URL = "/api/v1/timetable"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def upload(client, headers, data: bytes, filename: str = "课表.csv",  # type: ignore[no-untyped-def]
           dry_run: bool = True):
    return client.post(f"{URL}/import", params={"dry_run": str(dry_run).lower()}, headers=headers,
                       files={"file": (filename, data, "application/octet-stream")})


def instance_count(session_factory) -> int:  # type: ignore[no-untyped-def]
    with session_factory() as s:
        return int(s.scalar(select(func.count()).select_from(LessonInstance)))


def book_monday_maths(session_factory, w: World) -> int:  # type: ignore[no-untyped-def]
    """19 Monday 08:00 lessons: 王老师 in 301, received in 石桥一年级 with 刘助教."""
    with session_factory() as s:
        actor = s.merge(w.urban_admin)
        spec = bookings.SeriesSpec(
            kind=LessonKind.dedicated, title="三年级数学", subject="数学", grade="三年级", term_id=w.term.id,
            main_classroom_id=w.main_room.id, main_teacher_id=w.teacher.id, weekday=1, period_from=1, period_to=1,
            receivers=(bookings.ReceiverSpec(w.recv_room.id, assistant_id=w.assistant.id),))
        series = bookings.create_series(s, spec, actor=actor, scope=scope_of(s, actor))
        s.commit()
        return series.id


def events(body: bytes) -> list:  # type: ignore[type-arg]
    return list(Calendar.from_ical(body).walk("VEVENT"))


# ---------------------------------------------------------------- import


def test_dry_run_upload_returns_the_report_and_writes_nothing(client, world, auth, session_factory):
    r = upload(client, auth(world.urban_admin), to_csv([lesson(world), lesson(world, 节次="9-3")]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["rows_total"], body["rows_ok"], body["dry_run"], body["committed"]) == (2, 1, True, False)
    assert body["errors"] == [{"row": 3, "column": "节次", "reason": body["errors"][0]["reason"]}]
    assert "结束节不能早于开始节" in body["errors"][0]["reason"]
    assert instance_count(session_factory) == 0


def test_commit_upload_books_every_series(client, world, auth, session_factory):
    r = upload(client, auth(world.sysadmin), to_csv([lesson(world), second_lesson(world)]), dry_run=False)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["committed"] and body["ok"] and len(body["created_series_ids"]) == 2
    with session_factory() as s:
        maths = s.get(LessonSeries, body["created_series_ids"][0])
        first = s.scalars(select(LessonInstance).where(LessonInstance.series_id == maths.id)
                          .order_by(LessonInstance.day)).first()
        assert (first.starts_at, first.ends_at) == (datetime(2026, 9, 7, 8, 0), datetime(2026, 9, 7, 8, 40))
    assert instance_count(session_factory) > 19


def test_commit_with_a_bad_row_is_422_import_failed_and_writes_nothing(client, world, auth, session_factory):
    book_monday_maths(session_factory, world)
    before = instance_count(session_factory)
    rows = [second_lesson(world), lesson(world, 主讲教室=world.main_room2.name, 接收教室=world.recv_room2.name)]
    r = upload(client, auth(world.urban_admin), to_csv(rows), dry_run=False)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "import_failed" and body["message"]
    assert [(e["row"], e["column"]) for e in body["report"]["errors"]] == [(3, "节次")]
    assert instance_count(session_factory) == before


def test_xlsx_upload_is_imported(client, world, auth, session_factory):
    book = Workbook()
    sheet = book.active
    sheet.append(HEADERS)
    sheet.append([lesson(world)[h] for h in HEADERS])
    out = io.BytesIO()
    book.save(out)
    r = upload(client, auth(world.urban_admin), out.getvalue(), "课表.xlsx", dry_run=False)
    assert r.status_code == 200, r.text
    assert instance_count(session_factory) == 19


def test_gbk_csv_upload_is_imported(client, world, auth, session_factory):
    r = upload(client, auth(world.urban_admin), to_csv([lesson(world)], encoding="gbk"), dry_run=False)
    assert r.status_code == 200, r.text
    assert instance_count(session_factory) == 19


def test_oversized_upload_is_413(client, app, world, auth):
    app.state.settings.max_upload_bytes = 20_000
    big = to_csv([lesson(world)]) + b"#" * 100_000
    r = upload(client, auth(world.urban_admin), big)
    assert r.status_code == 413 and r.json()["code"] == "upload_too_large"
    # Refused from its declared length, before the form (and its file name) is even read:
    assert upload(client, auth(world.urban_admin), big, "课表.pdf").status_code == 413
    a_bit_over = to_csv([lesson(world)]) + b"#" * 25_000  # passes the length check, caught while reading
    r = upload(client, auth(world.urban_admin), a_bit_over)
    assert r.status_code == 413 and r.json()["code"] == "upload_too_large"
    assert "MB" in r.json()["message"]


def test_unknown_file_type_is_422_unsupported_file(client, world, auth):
    r = upload(client, auth(world.urban_admin), b"whatever", "课表.pdf")
    assert r.status_code == 422 and r.json()["code"] == "unsupported_file"


def test_import_needs_an_admin(client, world, auth):
    assert upload(client, auth(world.teacher), to_csv([lesson(world)])).status_code == 403
    assert upload(client, auth(world.researcher_a), to_csv([lesson(world)])).status_code == 403
    assert upload(client, {}, to_csv([lesson(world)])).status_code == 401


def test_the_sample_file_is_the_callers_own_lesson_and_passes_the_dry_run(client, world, auth, session_factory):
    book_monday_maths(session_factory, world)  # the sample avoids what is already booked
    r = client.get(f"{URL}/import/sample.csv", headers=auth(world.urban_admin))
    assert r.status_code == 200 and r.content.startswith("\ufeff".encode())
    (row,) = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert row["主讲教室"].startswith("东区实验小学/") and row["接收教室"].startswith("东区石桥村小/")
    report = upload(client, auth(world.urban_admin), r.content).json()
    assert report["ok"] is True and report["errors"] == [] and report["rows_ok"] == 1
    assert client.get(f"{URL}/import/sample.csv", headers=auth(world.teacher)).status_code == 403


# ---------------------------------------------------------------- iCalendar


def test_teacher_feed_has_one_event_per_lesson_at_local_time(client, world, auth, session_factory):
    book_monday_maths(session_factory, world)
    with session_factory() as s:  # one lesson is called off: it leaves the feed
        first = s.scalars(select(LessonInstance).order_by(LessonInstance.day)).first()
        first.status = InstanceStatus.cancelled
        first_id = first.id
        s.commit()
    r = client.get(f"{URL}/teachers/{world.teacher.id}.ics", headers=auth(world.teacher))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/calendar")
    cal = Calendar.from_ical(r.content)
    assert str(cal["X-WR-CALNAME"]) == "王老师的课表"
    evs = events(r.content)
    assert len(evs) == 18
    assert f"instance-{first_id}@sanke" not in {str(e["UID"]) for e in evs}
    second = min(evs, key=lambda e: e.decoded("DTSTART"))
    start = second.decoded("DTSTART")
    assert start == datetime(2026, 9, 14, 8, 0, tzinfo=SHANGHAI)
    assert start.tzinfo is not None and start.utcoffset().total_seconds() == 8 * 3600
    assert second.decoded("DTEND") == datetime(2026, 9, 14, 8, 40, tzinfo=SHANGHAI)
    assert str(second["SUMMARY"]) == "《三年级数学》 专递课堂"
    assert str(second["LOCATION"]) == world.main_room.name
    assert "刘助教" in str(second["DESCRIPTION"]) and "王老师" in str(second["DESCRIPTION"])
    assert b"TZID=Asia/Shanghai" in r.content


def test_feed_accepts_a_token_in_the_query_for_calendar_apps(client, world, session_factory):
    book_monday_maths(session_factory, world)
    token = token_for(world.teacher, TEST_SECRET)
    r = client.get(f"{URL}/teachers/{world.teacher.id}.ics", params={"token": token})
    assert r.status_code == 200 and len(events(r.content)) == 19
    assert client.get(f"{URL}/teachers/{world.teacher.id}.ics").status_code == 401
    assert client.get(f"{URL}/teachers/{world.teacher.id}.ics", params={"token": "nope"}).status_code == 401


def test_who_may_read_a_teachers_feed(client, world, auth, session_factory):
    book_monday_maths(session_factory, world)
    path = f"{URL}/teachers/{world.teacher.id}.ics"
    assert client.get(path, headers=auth(world.urban_admin)).status_code == 200
    assert len(events(client.get(path, headers=auth(world.researcher_a)).content)) == 19
    assert client.get(path, headers=auth(world.teacher2)).status_code == 403
    assert client.get(path, headers=auth(world.researcher_b)).status_code == 403
    assert client.get(path, headers=auth(world.admin_b)).status_code == 403
    assert client.get(path, headers=auth(world.terminal_main)).status_code == 403
    assert client.get(f"{URL}/teachers/{world.urban_admin.id}.ics", headers=auth(world.sysadmin)).status_code == 404


def test_classroom_feed_for_its_terminal_and_staff_in_scope(client, world, auth, session_factory):
    book_monday_maths(session_factory, world)
    path = f"{URL}/classrooms/{world.recv_room.id}.ics"
    r = client.get(path, headers=auth(world.terminal_recv))
    assert r.status_code == 200 and len(events(r.content)) == 19
    assert str(Calendar.from_ical(r.content)["X-WR-CALNAME"]).startswith(world.recv_room.name)
    assert client.get(path, headers=auth(world.rural_admin)).status_code == 200
    assert client.get(path, headers=auth(world.terminal_main)).status_code == 403
    assert client.get(path, headers=auth(world.teacher)).status_code == 403
    assert client.get(path, headers=auth(world.researcher_b)).status_code == 403
    assert client.get(f"{URL}/classrooms/99999.ics", headers=auth(world.sysadmin)).status_code == 404


# ---------------------------------------------------------------- CSV export


def read_csv(body: bytes) -> list[list[str]]:
    assert body.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))


def test_csv_export_has_bom_chinese_headers_and_one_row_per_lesson(client, world, auth, session_factory):
    book_monday_maths(session_factory, world)
    r = client.get(f"{URL}/export.csv", params={"school_id": world.urban.id}, headers=auth(world.urban_admin))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    rows = read_csv(r.content)
    assert tuple(rows[0]) == CSV_HEADERS
    assert len(rows) == 1 + 19
    first = dict(zip(rows[0], rows[1]))
    assert (first["日期"], first["星期"], first["节次"], first["开始"], first["结束"]) == (
        "2026-09-07", "周一", "1", "08:00", "08:40")
    assert (first["课程"], first["类型"], first["授课教师"], first["状态"]) == ("三年级数学", "专递课堂", "王老师", "待上课")
    assert first["主讲学校"] == world.urban.name and world.recv_room.name in first["接收教室"]


def test_csv_export_filters_and_scope(client, world, auth, session_factory):
    book_monday_maths(session_factory, world)
    url = f"{URL}/export.csv"
    a = {"region_id": world.district_a.id}
    assert len(read_csv(client.get(url, params=a, headers=auth(world.researcher_a)).content)) == 20
    r = client.get(url, params=a, headers=auth(world.researcher_b))
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    assert client.get(url, params={"school_id": world.urban.id}, headers=auth(world.admin_b)).status_code == 403
    assert len(read_csv(client.get(url, headers=auth(world.researcher_b)).content)) == 1  # nothing in district B
    in_october = {"date_from": "2026-10-01", "date_to": "2026-10-31"}
    assert len(read_csv(client.get(url, params=in_october, headers=auth(world.sysadmin)).content)) == 1 + 3
    assert client.get(url).status_code == 401


def test_assistant_teachers_feed_lists_the_lessons_they_assist(client, world, auth, session_factory):
    book_monday_maths(session_factory, world)
    r = client.get(f"{URL}/teachers/{world.assistant.id}.ics", headers=auth(world.assistant))
    assert r.status_code == 200
    assert len(events(r.content)) == 19


def test_feed_token_reads_own_feed_only_and_can_be_revoked(client, world, auth, session_factory):
    book_monday_maths(session_factory, world)
    out = client.post(f"{URL}/feed-token", headers=auth(world.teacher)).json()
    assert out["feed_path"] == f"/api/v1/timetable/teachers/{world.teacher.id}.ics?token={out['token']}"
    assert out["feed_url"] == f"http://testserver{out['feed_path']}"
    assert out["expires_in"] == 365 * 86400
    # a calendar app fetches the link as given: no Authorization header, nothing added
    r = client.get(out["feed_url"])
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/calendar")
    evs = events(r.content)
    assert len(evs) == 19 and {str(e["SUMMARY"]) for e in evs} == {"《三年级数学》 专递课堂"}
    assert min(e.decoded("DTSTART") for e in evs) == datetime(2026, 9, 7, 8, 0, tzinfo=SHANGHAI)
    assert client.get(out["feed_path"]).status_code == 200
    # a feed token is not an API login
    r = client.get("/api/v1/lessons", headers={"Authorization": f"Bearer {out['token']}"})
    assert r.status_code == 401
    # nor does it open someone else's feed
    r = client.get(f"{URL}/teachers/{world.teacher2.id}.ics", params={"token": out["token"]})
    assert r.status_code == 403
    assert client.delete(f"{URL}/feed-token", headers=auth(world.teacher)).status_code == 204
    r = client.get(out["feed_url"])
    assert r.status_code == 401 and r.json()["code"] == "token_revoked"
    fresh = client.post(f"{URL}/feed-token", headers=auth(world.teacher)).json()
    assert fresh["feed_url"] != out["feed_url"] and client.get(fresh["feed_url"]).status_code == 200


def test_terminal_feed_token_points_at_its_classroom(client, world, auth, session_factory):
    book_monday_maths(session_factory, world)
    out = client.post(f"{URL}/feed-token", headers=auth(world.terminal_recv)).json()
    assert out["feed_path"].startswith(f"/api/v1/timetable/classrooms/{world.recv_room.id}.ics?token=")
    r = client.get(out["feed_url"])
    assert r.status_code == 200 and len(events(r.content)) == 19


def test_roles_without_a_feed_of_their_own_get_a_token_and_no_link(client, world, auth):
    out = client.post(f"{URL}/feed-token", headers=auth(world.urban_admin)).json()
    assert out["token"] and out["feed_path"] is None and out["feed_url"] is None
