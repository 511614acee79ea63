"""Domain errors. The server maps them to HTTP (see ``server/api/errors.py``);
nothing here knows about HTTP.  Messages are zh-CN for the people who read them:
timetable clerks, teachers, admins."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any


class SchedulerError(Exception):
    """Base of every domain error: a machine code plus a zh-CN message."""

    code = "error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        """The input field most responsible (``periods``, ``receivers``...), for forms and import reports."""

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field:
            out["field"] = self.field
        return out


class NotFound(SchedulerError):
    code = "not_found"


class Invalid(SchedulerError):
    """The request cannot be carried out as asked (bad period, week range, missing pairing...)."""

    code = "invalid"


class Forbidden(SchedulerError):
    code = "forbidden"


class InvalidState(SchedulerError):
    """The object is in a state that does not allow this (e.g. cancelling a held lesson)."""

    code = "invalid_state"


_WEEKDAY_ZH = {1: "一", 2: "二", 3: "三", 4: "四", 5: "五", 6: "六", 7: "日"}
_ROLE_ZH = {"main": "主讲", "receiving": "接收", "assistant": "助教"}


@dataclass(frozen=True)
class ConflictItem:
    """One clash on one date: which resource, with which existing lesson, when."""

    resource: str
    """``teacher`` or ``classroom`` (the resource held twice); ``holiday`` or ``term`` for a date that cannot
    carry a lesson."""
    resource_id: int | None
    resource_name: str
    day: date
    start: datetime
    end: datetime
    instance_id: int | None = None
    """The existing instance it clashes with (none for a holiday)."""
    lesson_title: str | None = None
    message: str = ""
    kind: str = "clash"
    """``clash`` (the resource already has the lesson ``instance_id``), ``internal`` (the booking holds it twice
    itself), ``bells`` (a receiving school's bells do not cover the slot), ``holiday``, ``term`` or ``race``."""
    school_name: str | None = None
    """The classroom's school (classroom names repeat across schools)."""
    role: str | None = None
    """What the resource is in the existing lesson: ``main`` (主讲教室 / 主讲教师), ``receiving`` (接收教室) or
    ``assistant`` (助教)."""
    teacher_name: str | None = None
    """The existing lesson's teacher."""
    series_id: int | None = None
    """The existing lesson's series."""
    period_from: int | None = None
    period_to: int | None = None
    """The existing lesson's periods (the main school's numbering)."""
    week: int | None = None
    """Teaching week of ``day`` in its term."""

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["day"] = self.day.isoformat()
        d["start"] = self.start.strftime("%H:%M")
        d["end"] = self.end.strftime("%H:%M")
        return d

    def who(self) -> str:
        """The resource in words, its role and (for a classroom) its school: ``接收教室“R1-1”（石桥村小）``."""
        if self.resource == "classroom":
            noun = f"{_ROLE_ZH.get(self.role or '', '')}教室"
            school = f"（{self.school_name}）" if self.school_name else ""
            return f"{noun}“{self.resource_name or f'#{self.resource_id}'}”{school}"
        if self.resource == "teacher":
            role = "（助教）" if self.role == "assistant" else ""
            return f"教师“{self.resource_name or f'#{self.resource_id}'}”{role}"
        return ""

    def what(self) -> str:
        """What is wrong, without the date: ``已有课程《英语》（李老师）``."""
        if self.kind == "clash":
            title = f"已有课程《{self.lesson_title}》" if self.lesson_title else "已被占用"
            teacher = f"（{self.teacher_name}）" if self.teacher_name and self.teacher_name != self.resource_name else ""
            return f"{title}{teacher}"
        if self.kind == "internal":
            return "在本次排课中被重复安排"
        return self.message


def _ranges(numbers: list[int]) -> str:
    """``[1, 2, 3, 5, 7, 8]`` → ``1–3、5、7–8``."""
    out: list[str] = []
    nums = sorted(set(numbers))
    start = prev = nums[0]
    for n in [*nums[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        out.append(str(start) if start == prev else f"{start}–{prev}")
        if n is not None:
            start = prev = n
    return "、".join(out)


@dataclass
class ConflictGroup:
    """The clashes of one weekly pattern: one resource, one existing series, one weekday and time, many dates."""

    items: list[ConflictItem]

    @property
    def first(self) -> ConflictItem:
        return self.items[0]

    def when(self) -> str:
        f = self.first
        dates = sorted({i.day for i in self.items})
        period = ""
        if f.period_from is not None:
            period = f"第{f.period_from}节 " if f.period_from == f.period_to else f"第{f.period_from}–{f.period_to}节 "
        hours = f"{f.start:%H:%M}–{f.end:%H:%M}"
        if len(dates) == 1:
            return f"{dates[0]:%Y-%m-%d}（周{_WEEKDAY_ZH[dates[0].isoweekday()]}）{period}{hours}"
        weeks = [i.week for i in self.items]
        span = (f"第{_ranges([w for w in weeks if w is not None])}周" if all(w is not None for w in weeks)
                else "、".join(f"{d:%m-%d}" for d in dates))
        return f"每周{_WEEKDAY_ZH[dates[0].isoweekday()]} {period}{hours}，{span}，共{len(dates)}次"

    def message(self) -> str:
        f = self.first
        if f.kind in ("clash", "internal"):
            return f"{self.when()}：{f.who()}{f.what()}"
        if len(self.items) == 1:
            return f.message
        return f"{self.when()}：{f.what()}"

    def as_dict(self) -> dict[str, Any]:
        f = self.first
        days = sorted({i.day for i in self.items})
        return {
            "kind": f.kind, "resource": f.resource, "resource_id": f.resource_id, "resource_name": f.resource_name,
            "school_name": f.school_name, "role": f.role, "weekday": days[0].isoweekday(),
            "period_from": f.period_from, "period_to": f.period_to,
            "start": f.start.strftime("%H:%M"), "end": f.end.strftime("%H:%M"),
            "weeks": sorted({i.week for i in self.items if i.week is not None}),
            "dates": [d.isoformat() for d in days], "count": len(self.items),
            "series_id": f.series_id, "lesson_title": f.lesson_title, "teacher_name": f.teacher_name,
            "instance_ids": [i.instance_id for i in self.items if i.instance_id is not None],
            "message": self.message(),
        }


def group_conflicts(items: list[ConflictItem]) -> list[ConflictGroup]:
    """Clashes grouped by pattern (resource, existing series, weekday, time), in order of their first date."""
    groups: dict[tuple[Any, ...], ConflictGroup] = {}
    for i in sorted(items, key=lambda i: (i.start, i.resource, i.resource_id or 0)):
        key = (i.kind, i.resource, i.resource_id, i.series_id, i.role, i.day.isoweekday(), i.start.time(),
               i.end.time(), i.period_from, i.period_to, i.what())
        groups.setdefault(key, ConflictGroup([])).items.append(i)
    return list(groups.values())


def describe_groups(groups: list[ConflictGroup], shown: int = 3) -> str:
    head = "；".join(g.message() for g in groups[:shown])
    more = f"；另有 {len(groups) - shown} 组冲突" if len(groups) > shown else ""
    return f"{head}{more}"


class Conflict(SchedulerError):
    """The booking would double-book a resource or land on a holiday (HTTP 409)."""

    code = "conflict"

    def __init__(self, items: list[ConflictItem], *, field: str = "periods") -> None:
        self.items = items
        self.groups = group_conflicts(items)
        super().__init__(f"排课冲突，共 {len(items)} 处：{describe_groups(self.groups)}", field=field)

    def payload(self) -> dict[str, Any]:
        return {**super().payload(), "conflicts": [i.as_dict() for i in self.items],
                "conflict_groups": [g.as_dict() for g in self.groups]}


class BellsMismatch(Invalid):
    """A receiving school's bells do not cover the lesson's periods (HTTP 422, listed as conflict items too)."""

    def __init__(self, message: str, items: list[ConflictItem]) -> None:
        super().__init__(message, field="receivers")
        self.items = items
        self.groups = group_conflicts(items)

    def payload(self) -> dict[str, Any]:
        return {**super().payload(), "conflicts": [i.as_dict() for i in self.items],
                "conflict_groups": [g.as_dict() for g in self.groups]}
