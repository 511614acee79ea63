"""The admin page of webhooks in a real browser (fixtures: ``tests/web/conftest.py``): a system admin
registers a loopback receiver, keeps the secret shown once, sends a test ping and sees it delivered in
the log; the receiver got it signed with that secret.  The app here runs its webhook worker."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from scheduler import webhooks
from server.core.config import Settings
from tests.utils.webhook_receiver import Receiver


@pytest.fixture
def app(settings: Settings):  # type: ignore[no-untyped-def]
    from server.main import create_app

    fast = settings.model_copy(update={"webhook_poll_seconds": 0.1, "webhook_backoff_base_seconds": 0.2,
                                       "webhook_backoff_cap_seconds": 1.0})
    return create_app(fast, migrate=False, run_lifecycle=False, run_webhooks=True)


def test_a_system_admin_registers_a_receiver_and_sees_a_ping_delivered(open_page: Any, web_server: Any,
                                                                       screenshot: Any) -> None:
    rx = Receiver().up()
    try:
        page = open_page(web_server.world.sysadmin, "/admin/webhooks.html")
        page.get_by_role("button", name="新建订阅").click()
        page.fill("#f-name", "市教育局数据中心")
        page.fill("#f-url", rx.url)
        page.uncheck("[name='ev:evaluation.submitted']")
        page.get_by_role("button", name="创建").click()
        secret = page.wait_for_selector("#new-secret").inner_text().strip()
        assert secret.startswith("whsec_")
        screenshot(page, "webhook-secret")
        page.get_by_role("button", name="我已保存").click()
        row = page.wait_for_selector("#subscriptions tr[data-subscription]")
        assert rx.url in row.inner_text() and "评课提交" not in row.inner_text() and "课程结束" in row.inner_text()
        page.get_by_role("button", name="发送测试").click()
        page.wait_for_selector("#deliveries tr[data-delivery]")
        deadline = time.monotonic() + 20
        while not page.query_selector("#deliveries tr[data-status='delivered']"):
            assert time.monotonic() < deadline, page.inner_text("#deliveries")
            page.click("#refresh-log")
            page.wait_for_timeout(200)
        text = page.inner_text("#deliveries tr[data-status='delivered']")
        assert "测试" in text and "已送达" in text and "HTTP 200" in text
        page.click("#deliveries tr[data-status='delivered'] >> text=详情")
        dialog = page.wait_for_selector("dialog[open]")
        assert "成功" in dialog.inner_text() and "HTTP 200" in dialog.inner_text()
        screenshot(page, "webhook-log")
    finally:
        rx.down()
    [got] = rx.answered_ok()
    webhooks.verify(secret, got.body, got.headers["sanke-timestamp"], got.headers["sanke-signature"], now=got.at)
    assert json.loads(got.body)["type"] == "ping"


def test_a_school_admin_is_told_the_page_is_for_system_admins(open_page: Any, web_server: Any) -> None:
    page = open_page(web_server.world.urban_admin, "/admin/webhooks.html", allow_console=(r"403",))
    assert "只有系统管理员" in page.wait_for_selector("[role=alert]").inner_text()
    assert page.query_selector("a[href='/admin/webhooks.html']") is None  # not in a school admin's menu
