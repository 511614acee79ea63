""""The last N days": one definition for every report window (the API's default and ``days``, the
dashboard's quick ranges, the demo's month)."""

from __future__ import annotations

from datetime import date

import pytest

from scheduler.errors import Invalid
from scheduler.record_reports import DEFAULT_DAYS, last_days


def test_the_last_n_days_are_today_and_the_days_before_it() -> None:
    assert last_days(7, date(2026, 9, 13)) == (date(2026, 9, 7), date(2026, 9, 13))
    assert last_days(1, date(2026, 9, 13)) == (date(2026, 9, 13), date(2026, 9, 13))
    first, last = last_days(DEFAULT_DAYS, date(2026, 10, 31))
    assert (first, last) == (date(2026, 10, 2), date(2026, 10, 31)) and (last - first).days + 1 == 30
    assert last_days(30, date(2027, 3, 1)) == (date(2027, 1, 31), date(2027, 3, 1))  # across February


def test_no_days_is_refused() -> None:
    with pytest.raises(Invalid):
        last_days(0, date(2026, 9, 13))
