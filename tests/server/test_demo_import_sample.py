"""The sample timetable offered on the import page passes its own dry run on the demo data."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from server.core.config import Settings
from server.demo import PASSWORD
from tests.server.test_demo import _load


@pytest.fixture(scope="module")
def demo_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from server.main import create_app

    settings = Settings(data_dir=tmp_path_factory.mktemp("demo-sample"), secret_key="x" * 32)
    _load(settings)
    with TestClient(create_app(settings, migrate=False, run_lifecycle=False)) as client:
        yield client


def login(client: TestClient, username: str) -> dict[str, str]:
    r = client.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


@pytest.mark.parametrize("username", ["admin", "sadmin01"])
def test_the_import_pages_sample_dry_runs_clean_on_the_demo(demo_client: TestClient, username: str) -> None:
    headers = login(demo_client, username)
    r = demo_client.get("/api/v1/timetable/import/sample.csv", headers=headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert len(rows) == 1, r.text
    me = demo_client.get("/api/v1/auth/me", headers=headers).json()
    if me.get("school_id"):  # a school admin's sample is their own school's lesson
        school = demo_client.get(f"/api/v1/schools/{me['school_id']}", headers=headers).json()
        assert rows[0]["主讲教室"].startswith(school["name"] + "/")
    report = demo_client.post("/api/v1/timetable/import", params={"dry_run": "true"}, headers=headers,
                              files={"file": ("课表示例.csv", r.content, "text/csv")}).json()
    assert report["errors"] == [] and report["ok"] is True
    assert report["rows_total"] == report["rows_ok"] == 1
