"""Bell schedules (作息时间): which scheme a school uses and where a slot falls in it."""

from __future__ import annotations

from datetime import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.errors import Invalid
from scheduler.models import Period, PeriodScheme


def scheme_for(session: Session, school_id: int, term_id: int | None) -> PeriodScheme:
    """The school's scheme for this term, else its standing scheme."""
    schemes = session.scalars(
        select(PeriodScheme).where(PeriodScheme.school_id == school_id).order_by(PeriodScheme.id)
    ).all()
    for_term = [s for s in schemes if term_id is not None and s.term_id == term_id]
    standing = [s for s in schemes if s.term_id is None]
    chosen = (for_term or standing or [None])[-1]
    if chosen is None:
        raise Invalid(f"学校 #{school_id} 尚未设置作息时间（节次）", field="periods")
    return chosen


def span(scheme: PeriodScheme, period_from: int, period_to: int) -> tuple[time, time]:
    """Start of the first and end of the last period of ``period_from..period_to``."""
    by_number = {p.number: p for p in scheme.periods}
    missing = [n for n in range(period_from, period_to + 1) if n not in by_number]
    if period_to < period_from or missing:
        raise Invalid(f"作息时间“{scheme.name or scheme.id}”中没有第 {missing[0] if missing else period_from} 节",
                      field="periods")
    return by_number[period_from].start_time, by_number[period_to].end_time


def periods_in(scheme: PeriodScheme, period_from: int, period_to: int) -> list[Period]:
    by_number = {p.number: p for p in scheme.periods}
    return [by_number[n] for n in range(period_from, period_to + 1) if n in by_number]


def containing_period(scheme: PeriodScheme, start: time, end: time) -> Period | None:
    """The period of ``scheme`` that contains [start, end], if any."""
    for p in scheme.periods:
        if p.start_time <= start and end <= p.end_time:
            return p
    return None
