"""Two ``sanke serve`` nodes on one PostgreSQL deliver the webhook outbox: each event by one node, and a
node killed (SIGKILL) in the middle of a delivery loses nothing.

The nodes are real child processes (``tests/utils/sanke_proc.py``) sharing a database cloned from the
session's migrated template; the receiver is a loopback HTTP server in this process that holds one
request open while the test kills the node that sent it.  Each node sends one delivery at a time
(``SANKE_WEBHOOK_BATCH=1``), so the held one is the only delivery in flight on the killed node; its lease
(``SANKE_WEBHOOK_LEASE_SECONDS=8``) lapses and the other node sends it again.  The events come from real
state changes: lessons opened and closed by the scheduler's lifecycle ``tick`` run in this process.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from scheduler import lifecycle, webhooks
from scheduler.models import LessonInstance
from scheduler.webhooks_models import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEvent
from server.core.db import make_engine, make_session_factory, session_scope
from tests.conftest import TEST_SECRET, TODAY
from tests.server.test_webhooks import GRACE, LEAD, booked
from tests.utils.factory import World, token_for
from tests.utils.live import free_port
from tests.utils.sanke_proc import REPO, Served, child_env, clock_hook, served
from tests.utils.wait import wait_until
from tests.utils.webhook_receiver import Receiver

pytestmark = pytest.mark.postgres

LEASE_S = 8
"""The held request must still be open when the test kills its node: the timeout (one second less) leaves
room for a loaded machine."""


@pytest.fixture
def shared_db(pg_server: Any) -> Iterator[str]:
    name = f"sanke_hooks_{os.getpid()}_{time.monotonic_ns()}"
    with psycopg.connect(f"host=127.0.0.1 port={pg_server.port} user=postgres dbname=postgres", autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}" TEMPLATE sanke_template')
    yield pg_server.url(name)
    with psycopg.connect(f"host=127.0.0.1 port={pg_server.port} user=postgres dbname=postgres", autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def node(stack: ExitStack, tmp: Path, name: str, db: str) -> Served:
    port = free_port()
    env = child_env(clock_hook(tmp / "hook"), TODAY, SANKE_DATABASE_URL=db, SANKE_NODE_ID=name,
                    SANKE_DATA_DIR=str(tmp / name), SANKE_SECRET_KEY=TEST_SECRET, SANKE_MEDIA_WORKERS="0",
                    SANKE_WEBHOOK_POLL_SECONDS="0.1", SANKE_WEBHOOK_BATCH="1",
                    SANKE_WEBHOOK_TIMEOUT_SECONDS=str(LEASE_S - 1), SANKE_WEBHOOK_LEASE_SECONDS=str(LEASE_S),
                    SANKE_WEBHOOK_BACKOFF_BASE_SECONDS="0.2", SANKE_WEBHOOK_BACKOFF_CAP_SECONDS="1")
    # this checkout's code, whichever virtualenv runs the tests (the clock hook imports scheduler first)
    env["PYTHONPATH"] += os.pathsep + str(REPO)
    command = [sys.executable, "-m", "server.cli", "serve", "--port", str(port)]
    return stack.enter_context(served(command, env, port, tmp / f"{name}.log", start_timeout=120))


def open_and_close(factory: sessionmaker[Session], lessons: list[LessonInstance]) -> None:
    """Run the lifecycle as the clock reaches each lesson: the previous lesson's room closes (missed), the
    next one's opens: two events per pass, each pass one transaction."""
    for inst in lessons:
        with session_scope(factory) as s:
            lifecycle.tick(s, inst.starts_at - LEAD, lead=LEAD, grace=GRACE)
    with session_scope(factory) as s:
        lifecycle.tick(s, lessons[-1].ends_at + GRACE, lead=LEAD, grace=GRACE)


def deliveries(factory: sessionmaker[Session]) -> list[WebhookDelivery]:
    with factory() as s:
        return list(s.scalars(select(WebhookDelivery)))


def test_a_node_killed_mid_delivery_loses_no_event_and_no_other_event_is_sent_twice(
        shared_db: str, tmp_path: Path) -> None:
    engine = make_engine(shared_db)
    factory = make_session_factory(engine)
    with factory() as s:
        w = World.build(s)
        s.commit()
        lessons = booked(s, w, weeks=16)
    first_half, second_half = lessons[:6], lessons[6:]
    rx = Receiver().up()
    try:
        with ExitStack() as stack:
            nodes = {"n1": node(stack, tmp_path, "n1", shared_db), "n2": node(stack, tmp_path, "n2", shared_db)}
            headers = {"Authorization": f"Bearer {token_for(w.sysadmin, TEST_SECRET)}"}
            r = httpx.post(f"{nodes['n1'].base}/api/v1/webhooks", headers=headers, timeout=20,
                           json={"name": "市教育局数据中心", "url": rx.url, "event_types": sorted(webhooks.EVENT_TYPES)})
            assert r.status_code == 201, r.text
            secret = r.json()["secret"]

            # both nodes running, the receiver healthy: every event once
            open_and_close(factory, first_half)
            wait_until("the first events delivered",
                     lambda: all(d.status is DeliveryStatus.delivered for d in deliveries(factory)), timeout=60)
            assert Counter(Counter(r.headers["sanke-event-id"] for r in rx.all()).values()) == \
                {1: len(deliveries(factory))}

            # the receiver holds the next request open; the node that sent it is killed
            rx.hold_next = True
            open_and_close(factory, second_half)
            assert rx.wait_held(30), "no delivery arrived"
            held_id = rx.held.headers["sanke-event-id"]
            with factory() as s:
                holder = s.execute(select(WebhookDelivery.claimed_by, WebhookDelivery.status)
                                   .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
                                   .where(WebhookEvent.uid == held_id)).one()
            assert holder.status is DeliveryStatus.delivering, holder
            killed = holder.claimed_by
            os.killpg(nodes[killed].process.pid, signal.SIGKILL)
            nodes[killed].process.wait(timeout=10)
            rx.release()
            survivor = "n2" if killed == "n1" else "n1"
            wait_until("every event delivered by the surviving node",
                     lambda: all(d.status is DeliveryStatus.delivered for d in deliveries(factory)),
                     timeout=LEASE_S + 60)
            assert nodes[survivor].process.poll() is None
        # both nodes are stopped now: nothing more can arrive
    finally:
        rx.down()

    with factory() as s:
        events = {e.id: e for e in s.scalars(select(WebhookEvent))}
        attempts = list(s.scalars(select(WebhookAttempt).order_by(WebhookAttempt.id)))
        by_delivery = {d.id: d for d in s.scalars(select(WebhookDelivery))}
    engine.dispose()
    assert len(events) == 2 * len(lessons)  # each lesson opened and closed
    arrived = Counter(r.headers["sanke-event-id"] for r in rx.all())
    assert set(arrived) == {e.uid for e in events.values()}  # none lost
    assert {uid: n for uid, n in arrived.items() if n > 1} == {held_id: 2}  # the one in flight, twice
    for r in rx.all():
        webhooks.verify(secret, r.body, r.headers["sanke-timestamp"], r.headers["sanke-signature"], now=r.at)
    # the log: one attempt per delivery by one node, except the held one: cut on the killed node, then sent
    per_delivery: dict[int, list[WebhookAttempt]] = {}
    for a in attempts:
        per_delivery.setdefault(a.delivery_id, []).append(a)
    held_delivery = next(d for d in by_delivery.values() if events[d.event_id].uid == held_id)
    cut, resent = per_delivery.pop(held_delivery.id)
    assert (cut.node, cut.finished_at, cut.ok) == (killed, None, False) and "中途停止" in (cut.error or "")
    assert (resent.node, resent.ok) == (survivor, True)
    assert all(len(a) == 1 and a[0].ok for a in per_delivery.values())
    nodes_used = Counter(a[0].node for a in per_delivery.values())
    assert set(nodes_used) <= {"n1", "n2"}, nodes_used
