"""The dashboard's quick ranges (近 7 天 / 近 30 天) are the server's "last N days" (fixtures: ``tests/web/conftest.py``).

The server's clock stands at Monday 2026-09-07 07:55, and so does the browser's until the test moves it:
a classroom PC's clock may be wrong, and the range must still be the one every report and export uses.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from scheduler.record_reports import DEFAULT_DAYS, last_days
from tests.scheduler.test_record_reports import ReportsWorld
from tests.web.conftest import NOW
from tests.web.test_records_pages import reports  # noqa: F401  (the stored records to count)


def _shown(page: Any, js_poll: Any, first: str, last: str) -> None:
    js_poll(page, f"""(() => {{ const f = document.getElementById('filters');
        return f.date_from.value === '{first}' && f.date_to.value === '{last}'
          && document.body.dataset.loaded === '1' && !document.body.dataset.loading; }})()""", timeout=20)


def test_the_quick_ranges_are_the_servers_last_days(open_page: Any, web_server: Any, js_poll: Any,
                                                    reports: ReportsWorld) -> None:  # noqa: F811
    admin = web_server.world.city_admin
    page = open_page(admin, "/records/")
    month = [d.isoformat() for d in last_days(DEFAULT_DAYS, NOW.date())]
    _shown(page, js_poll, *month)  # 2026-08-09 .. 2026-09-07: today and the 29 days before
    assert f"date_from={month[0]}&date_to={month[1]}" in page.url

    # the PC's clock says another week: the range stays the server's
    page.clock.set_system_time(datetime(2026, 9, 20, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai")))
    page.click("#filters [data-days='7']")
    week = [d.isoformat() for d in last_days(7, NOW.date())]
    _shown(page, js_poll, *week)  # 2026-09-01 .. 2026-09-07
    r = web_server.http.get("/api/v1/reports/lessons", params={"days": 7, "limit": 1},
                            headers=web_server.headers(admin))
    assert r.status_code == 200, r.text
    assert r.json()["count"] > 0
    js_poll(page, f"document.getElementById('lessons-note').textContent === '共 {r.json()['count']} 节'")
    assert f"date_from={week[0]}&date_to={week[1]}" in page.url

    page.click("#filters [data-days='30']")
    _shown(page, js_poll, *month)
