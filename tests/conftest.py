"""Shared fixtures.

Every database test runs twice: against SQLite and against a real PostgreSQL
server that this session starts on 127.0.0.1 and stops at the end.  Each test
gets a fresh database cloned from a migrated template (``CREATE DATABASE ...
TEMPLATE`` on PostgreSQL, a file copy on SQLite), so migrations run once per
engine and tests stay independent.

Set ``SANKE_TEST_REQUIRE_PG=1`` and ``SANKE_TEST_REQUIRE_REDIS=1`` (the
README's test command does) to turn a missing PostgreSQL or redis-server into
a failure instead of a skip; ``SANKE_TEST_REQUIRE_BROWSER=1`` does the same for
Chromium and Playwright (``tests/web/conftest.py``) and ``SANKE_TEST_REQUIRE_NETNS=1`` for
the weak-link lab's network namespaces (``tests/linklab/conftest.py``), and
``SANKE_HYPOTHESIS_PROFILE=ci`` makes the property tests draw the same examples
on every run.

The scheduler's clock (``scheduler.clock.now``) reads :data:`TODAY` for the whole
session, in module- and session-scoped fixtures too, so no test depends on the
day it runs; ``scripts/test.sh`` with ``SANKE_TEST_FAKETIME`` runs the suite with
the process's real clock moved to another day to show it.
"""

from __future__ import annotations

import itertools
from datetime import datetime
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as settings_profiles
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from server.core.config import Settings
from server.core.db import make_engine, make_session_factory
from server.core.migrate import upgrade
from tests.utils.factory import World, token_for

# Apps built in tests run their media worker in the test process: no worker processes
# (tests of the worker pool start their own). Set before any Settings is built.
os.environ.setdefault("SANKE_MEDIA_WORKERS", "0")

# Under scripts/test.sh (SANKE_HYPOTHESIS_PROFILE=ci) every property test explores the same examples
# each run: a submission passes or fails on its own merits, not on the draw. Otherwise hypothesis keeps
# searching (and its database remembers).
settings_profiles.register_profile("ci", derandomize=True, database=None, print_blob=True)
_PROFILE = os.environ.get("SANKE_HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "")
if _PROFILE:
    settings_profiles.load_profile(_PROFILE)



def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The browser tests last, in their order: Playwright's sync API keeps its event loop current in the
    main thread for as long as the session's browser lives, and ``asyncio.run`` refuses to start under it
    (``tests/web/test_failover_page.py tests/server/test_failover_nodes.py`` in one run failed so)."""
    items.sort(key=lambda item: "browser" in getattr(item, "fixturenames", ()))


_counter = itertools.count()
TEST_SECRET = "sanke-test-secret-key-0123456789abcdef"


TODAY = datetime(2026, 8, 24, 9, 0)
"""The tests' "now": the week before the factory's term (2026-09-01 .. 2027-01-22) starts, so
a whole term of lessons lies ahead. Tests about time move it themselves with monkeypatch."""


@pytest.fixture(scope="session", autouse=True)
def _before_term() -> Iterator[None]:
    """``scheduler.clock.now`` is :data:`TODAY` from the first fixture to the last: an autouse
    session fixture is set up before every module- or session-scoped one (the demo's, the
    servers'), and a test's own ``monkeypatch`` of the clock falls back to it afterwards."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("scheduler.clock.now", lambda: TODAY)
        yield


@pytest.fixture(scope="session")
def pg_server() -> Iterator[object]:
    from tests.utils.pgserver import PostgresServer

    try:
        server = PostgresServer().start()
    except Exception as exc:  # noqa: BLE001
        if os.environ.get("SANKE_TEST_REQUIRE_PG") == "1":
            raise
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    template = server.create_database("sanke_template")
    upgrade(template)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[object]:
    from tests.utils.redisserver import RedisServer

    try:
        server = RedisServer().start()
    except Exception as exc:  # noqa: BLE001
        if os.environ.get("SANKE_TEST_REQUIRE_REDIS") == "1":
            raise
        pytest.skip(f"Redis unavailable: {exc}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    """A fresh migrated SQLite database (a copy of the template).  Tests that are not about the database
    override ``db_url`` with it (``def db_url(sqlite_url): return sqlite_url``) and run once, on SQLite."""
    target = tmp_path / "sanke.db"
    shutil.copy(sqlite_template, target)
    return f"sqlite:///{target}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield request.getfixturevalue("sqlite_url")
        return
    server = request.getfixturevalue("pg_server")
    import psycopg

    name = f"sanke_t{os.getpid()}_{next(_counter)}"
    with psycopg.connect(f"host=127.0.0.1 port={server.port} user=postgres dbname=postgres", autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}" TEMPLATE sanke_template')
    yield server.url(name)
    with psycopg.connect(f"host=127.0.0.1 port={server.port} user=postgres dbname=postgres", autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    s = session_factory()
    yield s
    s.rollback()
    s.close()


@pytest.fixture
def world(session_factory: sessionmaker[Session]) -> World:
    with session_factory() as s:
        w = World.build(s)
        s.commit()
    return w


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=db_url, secret_key=TEST_SECRET)


@pytest.fixture
def app(settings: Settings):  # type: ignore[no-untyped-def]
    from server.main import create_app

    return create_app(settings, migrate=False, run_lifecycle=False)


@pytest.fixture
def client(app) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(app) as c:
        yield c


@pytest.fixture
def auth():  # type: ignore[no-untyped-def]
    """``auth(user)`` -> Authorization headers for that user."""

    def headers(user) -> dict[str, str]:  # type: ignore[no-untyped-def]
        return {"Authorization": f"Bearer {token_for(user, TEST_SECRET)}"}

    return headers
