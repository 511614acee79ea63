"""The API docs page in Chromium with no way out of 127.0.0.1 (every host name is unresolvable):
as on a school's offline network, it renders SanKe's API from SanKe's own files."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit


def test_the_api_docs_render_offline_from_sanke_alone(web_server: Any, open_page: Any, js_poll: Any,
                                                     screenshot: Any) -> None:
    requested: list[str] = []
    failed: list[str] = []
    # a blank page first, so that no earlier page's request (its favicon) is cut off by the navigation
    page = open_page(None, "about:blank")
    page.on("request", lambda r: requested.append(r.url))
    page.on("requestfailed", lambda r: failed.append(f"{r.url} {r.failure}"))
    page.goto("/docs")
    title = js_poll(page, "document.querySelector('.swagger-ui .info .title')?.textContent", timeout=20)
    assert "SanKe 三课" in title
    js_poll(page, "document.querySelectorAll('.opblock-summary-path').length > 50", timeout=20)  # every route listed
    assert page.evaluate("document.querySelector('.swagger-ui .errors-wrapper') === null")
    assert not failed, failed
    hosts = {urlsplit(u).netloc for u in requested if not u.startswith(("data:", "blob:"))}
    assert hosts == {urlsplit(web_server.base).netloc}, hosts
    screenshot(page, "docs")
