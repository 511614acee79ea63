"""The API docs and the favicon are served by SanKe itself: nothing is loaded from another host."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from fastapi.testclient import TestClient

from server.core.config import Settings
from server.main import create_app


def _app(tmp_path):  # type: ignore[no-untyped-def]
    return create_app(Settings(data_dir=tmp_path), run_lifecycle=False)


def test_the_api_docs_load_every_asset_from_sanke_and_none_from_a_cdn(tmp_path):
    with TestClient(_app(tmp_path)) as client:
        page = client.get("/docs")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        html = page.text
        refs = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert refs, html
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", html, re.I), html  # no other host at all
        scripts = [r for r in refs if r.endswith(".js")]
        styles = [r for r in refs if r.endswith(".css")]
        assert scripts and styles, refs
        for ref in refs:
            r = client.get(ref)
            assert r.status_code == 200, (ref, r.status_code)
            assert urlsplit(ref).netloc == ""
        js = client.get(scripts[0])
        assert "SwaggerUIBundle" in js.text and len(js.content) > 500_000  # the real Swagger UI, not a stub
        assert "swagger-ui" in client.get(styles[0]).text
        assert client.get("/openapi.json").json()["info"]["title"] == "SanKe 三课"  # what the page renders
        assert client.get("/docs/oauth2-redirect").status_code == 200


def test_redoc_is_not_offered_since_it_would_need_a_cdn(tmp_path):
    with TestClient(_app(tmp_path)) as client:
        assert client.get("/redoc").status_code == 404


def test_the_favicon_answers_on_every_page_s_default_request(tmp_path):
    with TestClient(_app(tmp_path)) as client:
        ico = client.get("/favicon.ico")
        assert ico.status_code == 200
        assert ico.content[:4] == b"\x00\x00\x01\x00"  # an ICO file
        assert int.from_bytes(ico.content[4:6], "little") >= 1
        svg = client.get("/assets/favicon.svg")
        assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
        assert "<svg" in svg.text
