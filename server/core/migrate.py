"""Apply Alembic migrations from code (``sanke migrate``, ``sanke serve``, tests), and open the migrated
database for the one-off commands (``sanke create-admin``, ``sanke demo``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.orm import Session, sessionmaker

from server.core.config import Settings
from server.core.db import make_engine, make_session_factory

_HERE = Path(__file__).resolve().parent.parent


def alembic_config(url: str) -> Config:
    cfg = Config(str(_HERE / "alembic.ini"))
    cfg.set_main_option("script_location", str(_HERE / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str) -> None:
    command.upgrade(alembic_config(url), "head")


@contextmanager
def migrated_database(settings: Settings) -> Iterator[sessionmaker[Session]]:
    """The configured database, created if need be and brought to the latest schema, as a session factory
    whose engine is disposed on exit."""
    settings.ensure_data_dir()
    url = settings.effective_database_url
    upgrade(url)
    engine = make_engine(url)
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()
