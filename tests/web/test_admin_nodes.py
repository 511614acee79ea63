"""The admin's 服务器节点 page in a real browser: two nodes on one Redis, both listed with their load;
one that stops disappears from the page (fixtures: ``tests/web/conftest.py``)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from server.core.config import Settings
from server.main import create_app
from tests.conftest import TEST_SECRET
from tests.utils.live import live_server


@pytest.fixture
def settings(tmp_path: Path, db_url: str, redis_server: Any) -> Settings:
    """The page's server is node ``web-a`` of a cluster on the test Redis."""
    return Settings(data_dir=tmp_path / "data", database_url=db_url, secret_key=TEST_SECRET,
                    ice_host_addresses="127.0.0.1", ice_allowed_networks="127.0.0.0/8", media_workers=0,
                    redis_url=redis_server.url, node_id="web-a", node_heartbeat_seconds=0.5)


def test_the_nodes_page_lists_both_nodes_with_their_load(open_page: Any, web_server: Any, js_poll: Any,
                                                          tmp_path: Path, sqlite_template: Path, redis_server: Any,
                                                          screenshot: Any) -> None:
    shutil.copy(sqlite_template, tmp_path / "b.db")
    other = create_app(Settings(data_dir=tmp_path / "b", database_url=f"sqlite:///{tmp_path / 'b.db'}",
                                secret_key=TEST_SECRET, ice_host_addresses="127.0.0.1",
                                ice_allowed_networks="127.0.0.0/8", media_workers=0, redis_url=redis_server.url,
                                node_id="web-b", public_url="https://b.example.cn", node_heartbeat_seconds=0.5),
                       migrate=False, run_lifecycle=False)
    w = web_server.world
    with live_server(other):
        page = open_page(w.sysadmin, "/admin/nodes.html")
        js_poll(page, "document.querySelectorAll('tr[data-node^=\"web-\"]').length === 2", timeout=15)
        a, b = page.locator("tr[data-node='web-a']"), page.locator("tr[data-node='web-b']")
        assert "本节点" in a.inner_text() and "本节点" not in b.inner_text()
        # the URL each node announces (node a's settings name no public URL: its listen address)
        assert "http://127.0.0.1:8000" in a.inner_text() and "https://b.example.cn" in b.inner_text()
        for row in (a, b):
            text = row.inner_text()
            assert "正常" in text and "工作进程 0：CPU" in text and "秒前" in text, text
        assert "集群共" in page.locator("#nodes-note").inner_text()
        screenshot(page, "nodes")
    # node b stopped (gone from Redis on its way out): the page's next refresh drops it
    js_poll(page, "document.querySelectorAll('tr[data-node^=\"web-\"]').length === 1", timeout=15)
    assert page.locator("tr[data-node='web-a']").count() == 1


def test_the_nodes_page_is_for_system_admins(open_page: Any, web_server: Any, js_poll: Any) -> None:
    page = open_page(web_server.world.urban_admin, "/admin/nodes.html", allow_console=("403",))
    js_poll(page, "document.querySelector('#nodes .alert-error') !== null")
    assert "只有系统管理员" in page.locator("#nodes").inner_text()
