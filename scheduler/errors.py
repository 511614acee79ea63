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


@dataclass(frozen=True)
class ConflictItem:
    """One clash: which resource, with which existing lesson, when."""

    resource: str
    """``teacher``, ``classroom`` or ``holiday``."""
    resource_id: int | None
    resource_name: str
    day: date
    start: datetime
    end: datetime
    instance_id: int | None = None
    """The existing instance it clashes with (none for a holiday)."""
    lesson_title: str | None = None
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["day"] = self.day.isoformat()
        d["start"] = self.start.strftime("%H:%M")
        d["end"] = self.end.strftime("%H:%M")
        return d


class Conflict(SchedulerError):
    """The booking would double-book a resource or land on a holiday (HTTP 409)."""

    code = "conflict"

    def __init__(self, items: list[ConflictItem]) -> None:
        self.items = items
        head = "；".join(i.message for i in items[:3])
        more = f"；另有 {len(items) - 3} 处冲突" if len(items) > 3 else ""
        super().__init__(f"排课冲突，共 {len(items)} 处：{head}{more}", field="periods")

    def payload(self) -> dict[str, Any]:
        return {**super().payload(), "conflicts": [i.as_dict() for i in self.items]}
