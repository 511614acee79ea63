"""The browser harness itself: Chromium starts, pages load from the test's server, the clock and devices are fake."""

from __future__ import annotations

from typing import Any

from tests.web.conftest import NOW


def test_a_page_loads_with_the_servers_clock_and_a_fake_camera(open_page: Any, web_server: Any, screenshot: Any,
                                                               js_poll: Any) -> None:
    page = open_page(None, "/login.html")
    assert "三课" in page.title()
    assert page.evaluate("new Date().getFullYear() * 100 + new Date().getMonth() + 1") == NOW.year * 100 + NOW.month
    tracks = page.evaluate("""async () => {
        const s = await navigator.mediaDevices.getUserMedia({video: true, audio: true});
        const kinds = s.getTracks().map(t => t.kind + ':' + t.readyState).sort();
        s.getTracks().forEach(t => t.stop());
        return kinds; }""")
    assert tracks == ["audio:live", "video:live"]
    screenshot(page, "index")
