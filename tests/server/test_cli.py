"""The ``sanke`` command as an operator uses it: migrate, create-admin, demo, serve.

``migrate`` and ``create-admin`` run in this process (``server.cli.main``) on SQLite and on
PostgreSQL; ``demo`` and ``serve`` run as child processes whose timetable clock starts at a fixed
time (``tests/utils/sanke_proc.py``), ``serve`` on a free loopback port, stopped at the end.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import signal
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, inspect, select

from media.ice import IcePolicy
from scheduler.models import AuditEntry, Role, User
from server import cli
from server.core.config import Settings, get_settings
from server.demo import PASSWORD
from server.main import create_app
from tests.utils.live import free_port
from tests.utils.sanke_proc import DEMO_AT, SANKE, child_env, clock_hook, copy_data, demo_data, run_sanke, served

STRONG = "Qinghe#2026-jky"


@pytest.fixture
def sanke_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """``sanke`` in this process reads its settings from a clean environment (and not from a cache)."""
    for name in [k for k in os.environ if k.startswith("SANKE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SANKE_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _stdin(monkeypatch: pytest.MonkeyPatch, text: str, tty: bool = False) -> None:
    stream = io.StringIO(text)
    stream.isatty = lambda: tty  # type: ignore[method-assign]
    monkeypatch.setattr(sys, "stdin", stream)


# ---------------------------------------------------------------------------------------------- migrate

def test_migrate_creates_every_table_in_a_new_database(sanke_env, monkeypatch, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'new.db'}"
    monkeypatch.setenv("SANKE_DATABASE_URL", url)
    assert cli.main(["migrate"]) == 0
    assert "数据库已迁移到最新版本" in capsys.readouterr().out
    engine = create_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"user_account", "lesson_series", "lesson_instance", "occupancy", "alembic_version"} <= tables
    assert cli.main(["migrate"]) == 0  # again: nothing to do, no error


@pytest.mark.postgres
def test_migrate_creates_every_table_on_postgresql(sanke_env, monkeypatch, pg_server, capsys):
    url = pg_server.create_database("sanke_cli_migrate")
    monkeypatch.setenv("SANKE_DATABASE_URL", url)
    assert cli.main(["migrate"]) == 0
    engine = create_engine(url)
    try:
        assert {"user_account", "lesson_instance", "alembic_version"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------------------------- create-admin

def test_create_admin_makes_a_system_admin_who_can_sign_in_and_set_up_regions(sanke_env, monkeypatch, db_url,
                                                                               tmp_path, capsys):
    monkeypatch.setenv("SANKE_DATABASE_URL", db_url)
    _stdin(monkeypatch, STRONG + "\n")
    assert cli.main(["create-admin", "chief", "--name", "王主任", "--password-stdin"]) == 0
    assert "已创建系统管理员 chief（王主任）" in capsys.readouterr().out

    app = create_app(Settings(data_dir=tmp_path / "data", database_url=db_url), run_lifecycle=False)
    with TestClient(app) as client:
        assert client.post("/api/v1/auth/login", json={"username": "chief", "password": "wrong-password"}
                           ).status_code == 401
        r = client.post("/api/v1/auth/login", json={"username": "chief", "password": STRONG})
        assert r.status_code == 200, r.text
        me = r.json()["user"]
        assert (me["role"], me["school_id"], me["region_id"], me["display_name"]) == ("admin", None, None, "王主任")
        headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
        r = client.post("/api/v1/regions", json={"name": "示例省", "level": "province"}, headers=headers)
        assert r.status_code == 201, r.text  # only a system admin may create a top-level region
    with app.state.session_factory() as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.entity == "user", AuditEntry.action == "create")).one()
        assert entry.actor_id is None  # created by the command, not by a user
        failed = s.scalars(select(AuditEntry).where(AuditEntry.action == "login_failed")).one()
        assert (failed.entity_id, failed.details["reason"]) == (entry.entity_id, "bad_password")


def test_create_admin_asks_for_the_password_twice_at_a_terminal(sanke_env, monkeypatch, capsys):
    _stdin(monkeypatch, "", tty=True)
    answers = iter([STRONG, STRONG + "x"])
    monkeypatch.setattr(cli.getpass, "getpass", lambda prompt="": next(answers))
    assert cli.main(["create-admin", "chief"]) == 1
    assert "两次输入的密码不一致" in capsys.readouterr().err
    answers = iter([STRONG, STRONG])
    assert cli.main(["create-admin", "chief"]) == 0
    assert "已创建系统管理员 chief（chief）" in capsys.readouterr().out


@pytest.mark.parametrize(("password", "message"), [
    ("Ab1!xyz", "密码太短：管理员密码至少 10 位"),
    ("abcdefghijkl", "请至少使用大写字母、小写字母、数字、符号中的三类"),
    ("Sanke@2026", "公开的演示密码"),
    ("Chief-2026-abc", "不能包含用户名"),
])
def test_create_admin_refuses_a_weak_password_and_says_why(sanke_env, monkeypatch, capsys, password, message):
    _stdin(monkeypatch, password + "\n")
    assert cli.main(["create-admin", "chief", "--password-stdin"]) == 1
    err = capsys.readouterr().err
    assert "无法创建管理员" in err and message in err
    settings = get_settings()
    engine = create_engine(settings.effective_database_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(select(User.id)).first() is None
    finally:
        engine.dispose()


def test_create_admin_refuses_a_username_that_exists_and_keeps_its_password(sanke_env, monkeypatch, db_url,
                                                                             tmp_path, capsys):
    monkeypatch.setenv("SANKE_DATABASE_URL", db_url)
    _stdin(monkeypatch, STRONG + "\n")
    assert cli.main(["create-admin", "chief", "--password-stdin"]) == 0
    _stdin(monkeypatch, "Another#Pass-2026\n")
    assert cli.main(["create-admin", "chief", "--password-stdin"]) == 1
    assert "无法创建管理员：用户名“chief”已存在" in capsys.readouterr().err
    app = create_app(Settings(data_dir=tmp_path / "data", database_url=db_url), run_lifecycle=False)
    with TestClient(app) as client:
        assert client.post("/api/v1/auth/login", json={"username": "chief", "password": STRONG}).status_code == 200
    with app.state.session_factory() as s:
        assert s.scalars(select(User).where(User.role == Role.admin)).all()[0].username == "chief"


def test_create_admin_without_a_terminal_asks_for_password_stdin(sanke_env, monkeypatch, capsys):
    _stdin(monkeypatch, "")
    assert cli.main(["create-admin", "chief"]) == 1
    assert "--password-stdin" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- demo, serve

def _accounts(text: str) -> dict[str, str]:
    """username → its table row, from the printed demo accounts."""
    rows = {}
    for line in text.splitlines():
        m = re.match(r"^\s+\S+\s+([a-z_]+)\s+(\S+)\s", line)
        if m:
            rows[m.group(1)] = line
    return rows


def test_demo_loads_once_and_prints_the_accounts_every_time(tmp_path_factory, tmp_path):
    data, first = demo_data(tmp_path_factory.getbasetemp())
    assert "演示数据已载入" in first and f"演示账号（密码均为 {PASSWORD}）" in first
    rows = _accounts(first)
    assert {"admin", "teacher", "terminal_main", "terminal_recv", "researcher"} <= set(rows)
    assert PASSWORD in rows["teacher"]
    assert re.search(r"今天 \d\d:\d\d《[^》]+》（\d\d:\d\d 开放课堂）", rows["teacher"]), rows["teacher"]

    again = run_sanke(["demo"], child_env(clock_hook(tmp_path / "hook"), DEMO_AT,
                                          SANKE_DATA_DIR=str(copy_data(data, tmp_path / "data"))))
    assert again.returncode == 0, again.stderr
    assert "演示数据已经在了，不再重复载入" in again.stdout
    rows_again = _accounts(again.stdout)
    assert set(rows_again) == set(rows) and PASSWORD in again.stdout
    # the teacher's lesson of today, and when its room opens
    assert re.search(r"今天 (\d\d:\d\d)《[^》]+》（\d\d:\d\d 开放课堂）", rows_again["teacher"]), rows_again["teacher"]


def test_serve_with_demo_answers_prints_the_accounts_and_stops_cleanly(tmp_path_factory, tmp_path):
    data, _ = demo_data(tmp_path_factory.getbasetemp())
    port = free_port()
    env = child_env(clock_hook(tmp_path / "hook"), datetime(2026, 9, 7, 7, 30),
                    SANKE_DATA_DIR=str(copy_data(data, tmp_path / "data")), SANKE_MEDIA_WORKERS="1")
    with served([str(SANKE), "serve", "--demo", "--port", str(port)], env, port, tmp_path / "serve.log") as srv:
        health = httpx.get(f"{srv.base}/healthz").json()
        assert health["status"] == "ok" and health["database"] == "sqlite" and health["accepting_rooms"] is True
        assert "<title>" in httpx.get(f"{srv.base}/login.html").text
        assert httpx.get(f"{srv.base}/docs").status_code == 200
        r = httpx.post(f"{srv.base}/api/v1/auth/login", json={"username": "teacher", "password": PASSWORD})
        assert r.status_code == 200 and r.json()["user"]["role"] == "teacher"
        text = srv.text()
        assert f"http://127.0.0.1:{port}/" in text
        assert "演示账号" in text and "teacher" in text and PASSWORD in text
    # SIGTERM, as an init system stops it: a graceful stop (uvicorn re-raises the signal once done)
    assert srv.process.returncode in (0, -signal.SIGTERM), srv.text()[-3000:]
    assert "Application shutdown complete" in srv.text() and "stopped" in srv.text()


def test_serve_settings_take_the_listen_address_that_decides_the_media_addresses(sanke_env):
    args = argparse.Namespace(host=None, port=None)
    assert cli.serve_settings(args).ice_policy() == IcePolicy.loopback()
    everywhere = cli.serve_settings(argparse.Namespace(host="0.0.0.0", port=9000))
    assert (everywhere.host, everywhere.port) == ("0.0.0.0", 9000)
    assert everywhere.ice_policy() == IcePolicy()

