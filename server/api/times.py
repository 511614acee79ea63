"""How the API writes instants and times of day: the one convention of every response.

The database keeps naive wall-clock times in the timetable's zone (``scheduler.clock``).
On the wire an instant is RFC 3339 with that zone's offset, to the second, with
milliseconds only when the value has a fraction: ``2026-09-07T08:00:00+08:00``,
``2026-09-07T08:00:03.250+08:00``.  A browser anywhere reads it as the same instant,
and the first 19 characters are still the school's wall clock.  A bell time (a time
of day on the school's wall, no date, no zone) is ``HH:MM:SS`` and is declared as such,
not as RFC 3339 ``time``, which would need an offset a bell schedule does not have.

Response schemas use :data:`Timestamp` and :data:`WallTime` for every such field,
never bare ``datetime`` or ``time``. This module must not touch the database or
know about any resource.
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Annotated

from pydantic import AfterValidator, PlainSerializer, WithJsonSchema

from scheduler import clock

WALL_TIME_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$"


def to_local(value: datetime) -> datetime:
    """A naive wall-clock time in the timetable's zone (the stored form) of any datetime."""
    if value.tzinfo is None:
        return value
    return value.astimezone(clock.zone()).replace(tzinfo=None)


def format_instant(value: datetime) -> str:
    """RFC 3339 with the timetable zone's offset; a naive value is wall-clock time in that zone."""
    aware = value.replace(tzinfo=clock.zone()) if value.tzinfo is None else value.astimezone(clock.zone())
    return aware.isoformat(timespec="milliseconds" if aware.microsecond else "seconds")


def _naive_time(value: time) -> time:
    if value.tzinfo is not None:
        raise ValueError("作息时间是学校的钟点，不带时区，例如 08:00")
    return value


def format_wall_time(value: time) -> str:
    return value.isoformat(timespec="seconds")


Timestamp = Annotated[
    datetime,
    AfterValidator(to_local),
    PlainSerializer(format_instant, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time",
                    "description": "RFC 3339，带时区偏移（课表所在时区，如 +08:00）"}),
]
"""An instant: stored naive in the timetable's zone, answered with that zone's offset."""

WallTime = Annotated[
    time,
    AfterValidator(_naive_time),
    PlainSerializer(format_wall_time, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": WALL_TIME_PATTERN,
                    "description": "学校所在时区的钟点 HH:MM:SS（请求中也可为 HH:MM），不带时区"}),
]
"""A bell time: a time of day on the school's wall clock, without a zone."""
