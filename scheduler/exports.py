"""Timetable exports: iCalendar feeds for a teacher or a classroom, and CSV of any instance listing;
the one rule for every cell of every spreadsheet export (``cell``, ``csv_bytes``).

Rows come from ``queries.instance_query`` — the one instance listing, already
scoped to what the caller may see — and the names they show (classrooms,
schools, teachers, assistants) are loaded in bulk, a few queries per export.

Every CSV and XLSX file SanKe writes (this module's and ``record_reports``'
tables) passes each cell through ``cell``: numbers stay numbers, any text a
spreadsheet would read as a formula is written as plain text.  Table builders
must not escape cells themselves.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event
from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.access import Scope
from scheduler.models import (
    Classroom,
    InstanceStatus,
    LessonInstance,
    LessonKind,
    ReceiverMode,
    School,
    User,
)
from scheduler.queries import InstanceFilter, instance_query

KIND_ZH = {LessonKind.dedicated: "专递课堂", LessonKind.master: "名师课堂", LessonKind.famous_school: "名校网络课堂"}
STATUS_ZH = {
    InstanceStatus.scheduled: "待上课", InstanceStatus.live: "上课中", InstanceStatus.held: "已上课",
    InstanceStatus.missed: "未开课", InstanceStatus.cancelled: "已停课",
}
WEEKDAY_ZH = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")

CSV_HEADERS = ("课次ID", "日期", "星期", "节次", "开始", "结束", "课程", "类型", "学科", "年级", "主讲学校",
               "主讲教室", "授课教师", "接收教室", "状态", "调课自", "停课原因")

_CHUNK = 500


# ---------------------------------------------------------------- loading


@dataclass
class _Names:
    rooms: dict[int, tuple[str, str]]
    """classroom id -> (classroom name, school name)"""
    users: dict[int, str]
    moved_from: dict[int, datetime]
    """instance id -> start of that (cancelled) instance, for 调课自."""

    def room(self, room_id: int) -> str:
        return self.rooms.get(room_id, (f"#{room_id}", ""))[0]

    def school_of(self, room_id: int) -> str:
        return self.rooms.get(room_id, ("", ""))[1]

    def user(self, user_id: int | None) -> str:
        return self.users.get(user_id, f"#{user_id}") if user_id is not None else ""


def _chunks(ids: Iterable[int]) -> Iterable[list[int]]:
    ordered = sorted(set(ids))
    for i in range(0, len(ordered), _CHUNK):
        yield ordered[i: i + _CHUNK]


def _load_names(session: Session, instances: Sequence[LessonInstance]) -> _Names:
    room_ids: set[int] = set()
    user_ids: set[int] = set()
    moved_ids: set[int] = set()
    for inst in instances:
        room_ids.add(inst.main_classroom_id)
        user_ids.add(inst.teacher_id)
        if inst.rescheduled_from_id is not None:
            moved_ids.add(inst.rescheduled_from_id)
        for r in inst.series.receivers:
            room_ids.add(r.classroom_id)
            if r.assistant_id is not None:
                user_ids.add(r.assistant_id)
    names = _Names({}, {}, {})
    for ids in _chunks(room_ids):
        for rid, room, school in session.execute(
                select(Classroom.id, Classroom.name, School.name).join(School, School.id == Classroom.school_id)
                .where(Classroom.id.in_(ids))):
            names.rooms[rid] = (room, school)
    for ids in _chunks(user_ids):
        names.users.update((uid, name) for uid, name in session.execute(select(User.id, User.display_name).where(User.id.in_(ids))))
    for ids in _chunks(moved_ids):
        names.moved_from.update(
            session.execute(select(LessonInstance.id, LessonInstance.starts_at).where(LessonInstance.id.in_(ids)))
            .all())
    return names


def list_for_export(session: Session, scope: Scope, f: InstanceFilter, *,
                    include_cancelled: bool = True) -> Sequence[LessonInstance]:
    """Every instance of the listing ``f`` the caller may see, in start order."""
    stmt = instance_query(session, scope, f)
    if not include_cancelled:
        stmt = stmt.where(LessonInstance.status != InstanceStatus.cancelled)
    return session.scalars(stmt.order_by(LessonInstance.starts_at, LessonInstance.id)).all()


def _periods(inst: LessonInstance) -> str:
    if inst.period_from == inst.period_to:
        return str(inst.period_from)
    return f"{inst.period_from}-{inst.period_to}"


def _receivers(inst: LessonInstance, names: _Names) -> list[str]:
    out = []
    for r in inst.series.receivers:
        notes = []
        if r.mode is ReceiverMode.listen_only:
            notes.append("听课")
        if r.assistant_id is not None:
            notes.append(f"助教：{names.user(r.assistant_id)}")
        suffix = f"（{'，'.join(notes)}）" if notes else ""
        out.append(f"{names.school_of(r.classroom_id)}/{names.room(r.classroom_id)}{suffix}")
    return out


def _teacher(inst: LessonInstance, names: _Names) -> str:
    return names.user(inst.teacher_id) + ("（代课）" if inst.substitute else "")


# ---------------------------------------------------------------- iCalendar


def instances_ical(session: Session, scope: Scope, f: InstanceFilter, *, calendar_name: str,
                   tz_name: str = "Asia/Shanghai") -> bytes:
    """A VCALENDAR with one VEVENT per non-cancelled instance of the listing ``f``.

    UIDs are stable (``instance-<id>@sanke``), so a subscribed calendar updates
    events in place; a cancelled or rescheduled lesson drops out of the feed
    and the new one appears.  Times are local wall-clock times with a TZID.
    """
    instances = list_for_export(session, scope, f, include_cancelled=False)
    names = _load_names(session, instances)
    zone = ZoneInfo(tz_name)
    cal = Calendar()
    cal.add("prodid", "-//SanKe 三课//课表//ZH")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", calendar_name)
    cal.add("x-wr-timezone", tz_name)
    cal.add("x-published-ttl", "PT1H")
    stamp = datetime.now(UTC).replace(microsecond=0)
    for inst in instances:
        series = inst.series
        event = Event()
        event.add("uid", f"instance-{inst.id}@sanke")
        event.add("dtstamp", stamp)
        event.add("dtstart", inst.starts_at.replace(tzinfo=zone))
        event.add("dtend", inst.ends_at.replace(tzinfo=zone))
        event.add("summary", f"《{series.title}》 {KIND_ZH[series.kind]}")
        event.add("location", names.room(inst.main_classroom_id))
        lines = [
            f"授课教师：{_teacher(inst, names)}",
            f"主讲：{names.school_of(inst.main_classroom_id)}/{names.room(inst.main_classroom_id)}",
            f"学科：{series.subject}  年级：{series.grade}  第 {_periods(inst)} 节",
        ]
        receivers = _receivers(inst, names)
        if receivers:
            lines.append("接收教室：" + "、".join(receivers))
        event.add("description", "\n".join(lines))
        event.add("status", "CONFIRMED")
        cal.add_component(event)
    if hasattr(cal, "add_missing_timezones"):  # icalendar >= 6.1 writes the VTIMEZONE for us
        cal.add_missing_timezones()
    return cal.to_ical()


def teacher_ical(session: Session, scope: Scope, teacher: User, *, tz_name: str = "Asia/Shanghai",
                 date_from: date | None = None, date_to: date | None = None) -> bytes:
    """The lessons ``teacher`` teaches (as main teacher or substitute)."""
    f = InstanceFilter(involving_user_id=teacher.id, date_from=date_from, date_to=date_to)
    return instances_ical(session, scope, f, calendar_name=f"{teacher.display_name}的课表", tz_name=tz_name)


def classroom_ical(session: Session, scope: Scope, classroom: Classroom, *, tz_name: str = "Asia/Shanghai",
                   date_from: date | None = None, date_to: date | None = None) -> bytes:
    """The lessons given or received in ``classroom``."""
    f = InstanceFilter(classroom_id=classroom.id, date_from=date_from, date_to=date_to)
    return instances_ical(session, scope, f, calendar_name=f"{classroom.name} 课表", tz_name=tz_name)


# ---------------------------------------------------------------- CSV


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
"""What Excel, LibreOffice and Google Sheets read as the start of a formula in a text cell."""


def cell(value: Any) -> Any:
    """One cell of an exported sheet (CSV or XLSX), defused against formula injection.

    ``None`` stays empty and numbers stay numbers (a numeric cell is never a
    formula, so ``-3`` is still minus three); anything else is text, and a text
    starting with ``= + - @``, tab or CR gets a leading apostrophe, so the
    spreadsheet shows it as typed instead of running it (``'=HYPERLINK(...)``).
    """
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value
    text = str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def csv_bytes(headers: Sequence[Any], rows: Iterable[Sequence[Any]]) -> bytes:
    """A sheet as CSV: UTF-8 with BOM (Excel shows the Chinese), CRLF, empty cells for None, every cell ``cell``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([cell(h) for h in headers])
    for row in rows:
        writer.writerow(["" if v is None else cell(v) for v in row])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def instances_csv(session: Session, scope: Scope, f: InstanceFilter) -> bytes:
    """The listing ``f`` as CSV (``csv_bytes``)."""
    instances = list_for_export(session, scope, f)
    names = _load_names(session, instances)
    rows = []
    for inst in instances:
        series = inst.series
        moved = names.moved_from.get(inst.rescheduled_from_id) if inst.rescheduled_from_id else None
        rows.append((
            inst.id,
            inst.day.isoformat(),
            WEEKDAY_ZH[inst.day.isoweekday() - 1],
            _periods(inst),
            f"{inst.starts_at:%H:%M}",
            f"{inst.ends_at:%H:%M}",
            series.title,
            KIND_ZH[series.kind],
            series.subject,
            series.grade,
            names.school_of(inst.main_classroom_id),
            names.room(inst.main_classroom_id),
            _teacher(inst, names),
            "、".join(_receivers(inst, names)),
            STATUS_ZH[inst.status],
            f"{moved:%Y-%m-%d %H:%M}" if moved else "",
            inst.cancel_reason,
        ))
    return csv_bytes(CSV_HEADERS, rows)
