"""Database engine and sessions.

SQLite (the embedded default) gets foreign keys, WAL and ``BEGIN IMMEDIATE``
transactions: writers queue on the database lock instead of failing halfway
with "database is locked" when they upgrade from a read.  PostgreSQL needs
nothing special here; its exclusion constraint does the hard work.
"""

from __future__ import annotations

import sqlite3
import time

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str, *, echo: bool = False) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            # WAL is a property of the database file, kept across connections: switch only once.
            # (Asking again while another connection writes can fail at once with "database is
            # locked": SQLite does not wait for that lock.)
            for _ in range(100):  # a first connection racing another one for the switch: wait, retry
                try:
                    if str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                        cur.execute("PRAGMA journal_mode=WAL")
                    break
                except sqlite3.OperationalError:
                    time.sleep(0.05)
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # type: ignore[no-untyped-def]
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # JIT compilation pays off for long analytic scans, not for SanKe's short
    # indexed queries, where PostgreSQL's cost estimates switched it on and it
    # added 40-110 ms per query (bench/scheduler.py).
    connect_args = {"options": "-c jit=off"} if url.startswith("postgresql") else {}
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20,
                         connect_args=connect_args)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A unit of work: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
