"""``server.core.gcpolicy``: ``sanke serve`` freezes what is alive once the node has started (full
collections, which pause the event loop, then never scan it), and only the serving process does."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from server.core import gcpolicy
from server.core.config import Settings
from server.main import create_app


def test_a_started_node_has_frozen_its_start_up_objects_and_undoes_it_when_it_stops(tmp_path: Path) -> None:
    assert gc.get_freeze_count() == 0
    before = gc.get_threshold()
    app = create_app(Settings(data_dir=tmp_path), run_lifecycle=False, settle_gc=True)
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        frozen = gc.get_freeze_count()
        assert frozen > 50_000, frozen  # modules, the app and its routes: never scanned again
        assert gc.isenabled()  # cycles left by closed sockets are still collected
        assert gc.get_threshold() == (before[0], gcpolicy.MIDDLE_THRESHOLD, gcpolicy.OLD_THRESHOLD)
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == before


def test_an_app_built_otherwise_freezes_nothing(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path), run_lifecycle=False)
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        assert gc.get_freeze_count() == 0 and gc.get_threshold()[2] != gcpolicy.OLD_THRESHOLD


def test_sanke_serve_builds_its_app_with_the_serving_gc_settings(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import server.main
    import server.serving
    from server import cli

    built: list[dict[str, Any]] = []
    real = server.main.create_app

    def spy(*args: Any, **kwargs: Any) -> Any:
        built.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setenv("SANKE_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(server.main, "create_app", spy)
    monkeypatch.setattr(server.serving, "serve", lambda *a, **k: None)  # built, not served
    cli.get_settings.cache_clear()
    try:
        assert cli.main(["serve", "--port", "18099"]) == 0
    finally:
        cli.get_settings.cache_clear()
    assert [k.get("settle_gc") for k in built] == [True]
