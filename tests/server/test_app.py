"""The app as an operator meets it: settings, secret key, migrations on start, health, OpenAPI."""

from __future__ import annotations

import os
import socket
import stat

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import inspect

from server.core.config import Settings
from server.main import create_app


def test_secret_key_is_generated_once_stored_private_and_reused(tmp_path):
    s = Settings(data_dir=tmp_path)
    key = s.effective_secret_key()
    path = tmp_path / "secret_key"
    assert len(key) >= 48 and path.read_text() == key
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert Settings(data_dir=tmp_path).effective_secret_key() == key


@pytest.mark.parametrize("bad", ["changeme", "secret", "short"])
def test_placeholder_or_short_secret_is_refused(tmp_path, bad):
    with pytest.raises(ValidationError):
        Settings(data_dir=tmp_path, secret_key=bad)


def test_settings_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SANKE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SANKE_ROOM_OPEN_LEAD_MINUTES", "15")
    monkeypatch.setenv("SANKE_PORT", "9001")
    s = Settings()
    assert s.room_open_lead_minutes == 15 and s.port == 9001
    assert s.effective_database_url == f"sqlite:///{(tmp_path / 'sanke.db').resolve()}"


def test_app_migrates_a_new_database_on_start_and_reports_health(tmp_path):
    app = create_app(Settings(data_dir=tmp_path))  # lifecycle task on, as `sanke serve` runs it
    with TestClient(app) as client:
        r = client.get("/healthz")
        # alone (no Redis): the node registry is this process, and the node takes rooms
        assert r.json() == {"status": "ok", "database": "sqlite", "node_id": f"{socket.gethostname()}:8000",
                            "registry": "local", "redis": None, "draining": False, "accepting_rooms": True}
        spec = client.get("/openapi.json").json()
        assert "/api/v1/series" in spec["paths"] and "/api/v1/lessons/{instance_id}/join-token" in spec["paths"]
        r = client.get("/api/v1/nothing-here")
        assert r.status_code == 404 and r.json()["code"] == "http_404"
    tables = set(inspect(app.state.engine).get_table_names())
    assert {"lesson_series", "lesson_instance", "occupancy", "audit_entry", "alembic_version"} <= tables


def test_unreachable_redis_fails_at_start_not_at_the_first_event(tmp_path):
    from tests.utils.live import free_port

    app = create_app(Settings(data_dir=tmp_path, redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    with pytest.raises(Exception, match="(?i)connect"):
        with TestClient(app):
            pass
