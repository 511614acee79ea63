"""The timetable's wall clock: naive local times in the configured zone."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

_zone = ZoneInfo("Asia/Shanghai")


def configure(zone_name: str) -> None:
    global _zone
    _zone = ZoneInfo(zone_name)


def now() -> datetime:
    """Local wall-clock time, naive, to the second (as lesson times are stored)."""
    return datetime.now(_zone).replace(tzinfo=None, microsecond=0)


def now_precise() -> datetime:
    """Local wall-clock time, naive, to the millisecond (for event logs)."""
    t = datetime.now(_zone).replace(tzinfo=None)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def zone() -> ZoneInfo:
    """The timetable's zone: stored times are wall-clock times there."""
    return _zone
