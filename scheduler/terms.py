"""Term calendars: weeks, holidays, make-up days and which dates a weekly series meets.

Pure functions over a ``TermCalendar`` value object, so the expansion rules are
tested without a database.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.errors import Invalid, NotFound
from scheduler.models import DayKind, Term, WeekPattern


@dataclass(frozen=True)
class TermCalendar:
    start: date
    end: date
    holidays: frozenset[date] = field(default_factory=frozenset)
    makeup: dict[date, int] = field(default_factory=dict)
    """Make-up day -> ISO weekday whose timetable it runs (e.g. a Saturday running Friday's)."""

    @property
    def first_monday(self) -> date:
        return self.start - timedelta(days=self.start.weekday())

    @property
    def weeks(self) -> int:
        return week_of(self, self.end)

    def contains(self, day: date) -> bool:
        return self.start <= day <= self.end


def calendar_of(term: Term) -> TermCalendar:
    holidays = frozenset(d.day for d in term.days if d.kind is DayKind.holiday)
    makeup = {d.day: int(d.follows_weekday) for d in term.days if d.kind is DayKind.makeup and d.follows_weekday}
    return TermCalendar(term.start_date, term.end_date, holidays, makeup)


def load_calendar(session: Session, term_id: int) -> tuple[Term, TermCalendar]:
    term = session.get(Term, term_id)
    if term is None:
        raise NotFound(f"学期 #{term_id} 不存在", field="term")
    return term, calendar_of(term)


def week_of(cal: TermCalendar, day: date) -> int:
    """Teaching week number; week 1 is the Monday-based week holding the term's first day."""
    return (day - cal.first_monday).days // 7 + 1


def timetable_weekday(cal: TermCalendar, day: date) -> int | None:
    """Whose weekday's timetable runs on ``day``: None on a holiday or outside the term."""
    if not cal.contains(day) or day in cal.holidays:
        return None
    return cal.makeup.get(day, day.isoweekday())


def week_matches(pattern: WeekPattern, week: int) -> bool:
    if pattern is WeekPattern.odd:
        return week % 2 == 1
    if pattern is WeekPattern.even:
        return week % 2 == 0
    return True


def meeting_days(
    cal: TermCalendar,
    weekday: int,
    week_from: int = 1,
    week_to: int = 99,
    pattern: WeekPattern = WeekPattern.every,
    after: date | None = None,
    skip: Collection[int] = (),
) -> list[date]:
    """Every date in the term on which a series on ``weekday`` meets.

    A holiday drops its date; a make-up day runs the timetable of the weekday
    it follows, in its own teaching week.
    """
    if not 1 <= weekday <= 7:
        raise Invalid("星期应为 1（周一）到 7（周日）", field="weekday")
    if week_to < week_from:
        raise Invalid("结束周不能早于开始周", field="weeks")
    days: list[date] = []
    day = cal.start if after is None else max(cal.start, after + timedelta(days=1))
    while day <= cal.end:
        wd = timetable_weekday(cal, day)
        week = week_of(cal, day)
        if wd == weekday and week_from <= week <= week_to and week_matches(pattern, week) and week not in skip:
            days.append(day)
        day += timedelta(days=1)
    return days


def current_term(session: Session, today: date) -> Term | None:
    """The term holding ``today`` (the first created when several do), else the one that ended last."""
    current = session.scalars(select(Term).where(Term.start_date <= today, Term.end_date >= today)
                              .order_by(Term.id)).first()
    return current or session.scalars(select(Term).order_by(Term.end_date.desc(), Term.id)).first()
