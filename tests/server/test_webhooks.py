"""Webhooks: events written with the change that causes them, delivered at least once, signed, logged.

The delivery worker runs inside the test app (``run_webhooks=True``) against a loopback receiver
(``tests/utils/webhook_receiver.py``); the back-off is scaled down (``SANKE_WEBHOOK_BACKOFF_BASE_SECONDS``
0.1 s instead of 5 s) so that a receiver down for what would be minutes is down for seconds here.
Every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from scheduler import bookings, lifecycle, records, recordings, webhooks
from scheduler.access import scope_of
from scheduler.models import LessonInstance, LessonKind, LessonSeries
from scheduler.webhooks_models import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEvent
from server.core.config import Settings
from server.core.db import session_scope
from tests.conftest import TEST_SECRET
from tests.utils.factory import World
from tests.utils.wait import wait_until
from tests.utils.webhook_receiver import Receiver

LEAD, GRACE = timedelta(minutes=10), timedelta(minutes=10)
ALL_TYPES = sorted(webhooks.EVENT_TYPES)


@pytest.fixture
def hook_settings(tmp_path: Any, db_url: str) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=db_url, secret_key=TEST_SECRET,
                    webhook_poll_seconds=0.05, webhook_timeout_seconds=2, webhook_lease_seconds=5,
                    webhook_backoff_base_seconds=0.1, webhook_backoff_cap_seconds=0.5, webhook_max_attempts=100,
                    metrics_token="metrics-token-for-tests")


def hook_client(settings: Settings) -> TestClient:
    from server.main import create_app

    return TestClient(create_app(settings, migrate=False, run_lifecycle=False, run_webhooks=True))


def booked(session: Session, w: World, weeks: int = 2) -> list[LessonInstance]:
    admin = session.merge(w.urban_admin)
    spec = bookings.SeriesSpec(kind=LessonKind.dedicated, title="数学", subject="数学", grade="三年级",
                               term_id=w.term.id, main_classroom_id=w.main_room.id, main_teacher_id=w.teacher.id,
                               weekday=1, period_from=1, period_to=1, week_from=2, week_to=1 + weeks,
                               receivers=(bookings.ReceiverSpec(w.recv_room.id),))
    s = bookings.create_series(session, spec, actor=admin, scope=scope_of(session, admin))
    session.commit()
    return list(session.scalars(select(LessonInstance).where(LessonInstance.series_id == s.id)
                                .order_by(LessonInstance.starts_at)))


def subscribe(client: TestClient, auth: Any, w: World, url: str, types: list[str] = ALL_TYPES) -> dict[str, Any]:
    r = client.post("/api/v1/webhooks", json={"name": "市教育局数据中心", "url": url, "event_types": types},
                    headers=auth(w.sysadmin))
    assert r.status_code == 201, r.text
    return dict(r.json())


def a_morning(factory: sessionmaker[Session], client: TestClient, auth: Any, w: World) -> dict[str, int]:
    """Real state changes of two lessons, through the scheduler's own functions and the API:
    one opened, started, ended, recorded, its teaching record stored and evaluated; one missed."""
    with factory() as s:
        first, second = booked(s, w)
        first_id, second_id = first.id, second.id
        s.get(LessonSeries, first.series_id).recording = True
        s.commit()
    with session_scope(factory) as s:
        first = s.get(LessonInstance, first_id)
        assert [e.type for e in lifecycle.tick(s, first.starts_at - LEAD, lead=LEAD, grace=GRACE)] == ["room_opened"]
    with session_scope(factory) as s:
        first = s.get(LessonInstance, first_id)
        lifecycle.mark_started(s, first_id, first.starts_at + timedelta(minutes=1))
        rec = recordings.begin(s, first_id, now=first.starts_at + timedelta(minutes=1), node="test")
        assert rec is not None
        rec_id = rec.id
    with session_scope(factory) as s:
        first = s.get(LessonInstance, first_id)
        lifecycle.mark_ended(s, first_id, first.ends_at)
        records.refresh(s, first_id, now=first.ends_at)
        summary = {"duration_s": 2340.0, "files": [{"name": "camera-0.webm", "source": "camera", "kind": "video",
                                                    "codec": "vp8", "start_s": 0.0, "duration_s": 2340.0,
                                                    "size": 123456}]}
        recordings.finish(s, rec_id, summary, now=first.ends_at)
    with session_scope(factory) as s:  # a second node computing the same record: the same event, not a new one
        first = s.get(LessonInstance, first_id)
        records.refresh(s, first_id, now=first.ends_at + timedelta(seconds=3))
    r = client.put(f"/api/v1/patrol/lessons/{first_id}/evaluation", json={"mode": "replay", "comment": "板书清楚"},
                   headers=auth(w.researcher_a))
    assert r.status_code == 200, r.text
    with session_scope(factory) as s:  # the server was down through the whole second lesson: closed as missed
        second = s.get(LessonInstance, second_id)
        assert [e.status for e in lifecycle.tick(s, second.ends_at + GRACE, lead=LEAD, grace=GRACE)] == ["missed"]
    return {"first": first_id, "second": second_id, "recording": rec_id}


EXPECTED = Counter({"room.opened": 1, "lesson.live": 1, "lesson.ended": 2, "teaching_record.ready": 1,
                    "recording.ready": 1, "evaluation.submitted": 1})


def statuses(factory: sessionmaker[Session]) -> list[WebhookDelivery]:
    with factory() as s:
        return list(s.scalars(select(WebhookDelivery)))


def test_a_receiver_down_then_failing_then_up_gets_every_event_once_with_valid_signatures(
        hook_settings: Settings, world: World, session_factory: sessionmaker[Session], auth: Any) -> None:
    rx = Receiver()  # nothing listens on its port yet: every attempt is refused
    with hook_client(hook_settings) as client:
        secret = subscribe(client, auth, world, rx.url)["secret"]
        ids = a_morning(session_factory, client, auth, world)
        with session_factory() as s:
            events = list(s.scalars(select(WebhookEvent)))
        assert Counter(e.type for e in events) == EXPECTED
        # down: attempts fail with "connection refused", and back off
        wait_until("three refused attempts of every delivery",
                 lambda: all(d.attempts >= 3 and "无法连接" in (d.last_error or "") for d in statuses(session_factory))
                 and len(statuses(session_factory)) == len(events), timeout=30)
        assert rx.all() == []
        # up but failing: 500s are failures too
        rx.mode = "error"
        rx.up()
        wait_until("two 500 answers for every event",
                 lambda: all(n >= 2 for n in Counter(r.headers["sanke-event-id"] for r in rx.all()).values())
                 and len({r.headers["sanke-event-id"] for r in rx.all()}) == len(events), timeout=30)
        assert rx.answered_ok() == []
        assert all(d.status is not DeliveryStatus.delivered for d in statuses(session_factory))
        # healthy again: everything arrives
        rx.mode = "ok"
        wait_until("every delivery delivered",
                 lambda: all(d.status is DeliveryStatus.delivered for d in statuses(session_factory)), timeout=30)
        log = client.get("/api/v1/webhooks/deliveries", params={"status": "delivered", "limit": 50},
                         headers=auth(world.sysadmin)).json()
        assert log["count"] == len(events)
        detail = client.get(f"/api/v1/webhooks/deliveries/{log['data'][0]['id']}", headers=auth(world.sysadmin)).json()

        def attempts_counted() -> dict[str, float]:
            scraped = client.get("/metrics", headers={"Authorization": "Bearer metrics-token-for-tests"}).text
            return {s.labels["outcome"]: s.value for f in text_string_to_metric_families(scraped)
                    if f.name == "sanke_webhook_attempts" for s in f.samples if s.name.endswith("_total")}

        counted = wait_until("/metrics counting every delivery",  # counted right after each commit
                             lambda: (c := attempts_counted())["delivered"] == len(events) and c, timeout=10)
    rx.down()  # the app (and its worker) stopped first: nothing more can arrive
    ok = rx.answered_ok()
    per_event = Counter(r.headers["sanke-event-id"] for r in ok)
    assert set(per_event) == {e.uid for e in events}
    assert set(per_event.values()) == {1}, per_event  # once each
    by_uid = {e.uid: e for e in events}
    for r in ok:
        webhooks.verify(secret, r.body, r.headers["sanke-timestamp"], r.headers["sanke-signature"], now=r.at)
        assert abs(int(r.headers["sanke-timestamp"]) - r.at) < 5
        body = json.loads(r.body)
        assert body["id"] == r.headers["sanke-event-id"] and body["type"] == r.headers["sanke-event-type"]
        assert body["type"] == by_uid[body["id"]].type
        assert datetime.fromisoformat(body["occurred_at"]).utcoffset() == timedelta(hours=8)
        assert r.headers["content-type"].startswith("application/json")
    ended = sorted((json.loads(r.body)["data"]["instance_id"], json.loads(r.body)["data"]["status"])
                   for r in ok if r.headers["sanke-event-type"] == "lesson.ended")
    assert ended == sorted([(ids["first"], "held"), (ids["second"], "missed")])
    ready = next(json.loads(r.body)["data"] for r in ok if r.headers["sanke-event-type"] == "recording.ready")
    assert ready["recording_id"] == ids["recording"] and ready["status"] == "ready"
    with session_factory() as s:
        made = list(s.scalars(select(WebhookAttempt)))
    assert counted["delivered"] == len(events) and counted["lost"] == 0
    assert counted["failed"] == len(made) - len(events) > 0  # every failed attempt of the log
    # the log: refused while the receiver was down, then 500, then delivered, in order (an attempt while it was
    # down may also time out on a loaded machine: no answer either way)
    def kind(a: dict[str, Any]) -> Any:
        if a["status_code"] is not None:
            return a["status_code"]
        return "refused" if "无法连接" in (a["error"] or "") else "no answer"
    kinds = [kind(a) for a in detail["attempts_log"]]
    errors = [a["error"] for a in detail["attempts_log"]]
    assert kinds[-1] == 200 and 500 in kinds, (kinds, errors)
    down = kinds[:kinds.index(500)]
    assert "refused" in down and set(down) <= {"refused", "no answer"}, (kinds, errors)
    assert "refused" not in kinds[kinds.index(500):], (kinds, errors)
    assert detail["attempts_log"][-1]["ok"] and detail["status"] == "delivered"
    assert json.loads(detail["body"])["id"] == detail["event_id"]


def test_a_delivery_that_keeps_failing_is_marked_failed_and_an_admin_retry_delivers_it(
        hook_settings: Settings, world: World, auth: Any) -> None:
    rx = Receiver(mode="error").up()
    settings = hook_settings.model_copy(update={"webhook_max_attempts": 3})
    try:
        with hook_client(settings) as client:
            sub = subscribe(client, auth, world, rx.url)
            r = client.post(f"/api/v1/webhooks/{sub['id']}/ping", headers=auth(world.sysadmin))
            assert r.status_code == 202, r.text
            delivery = r.json()
            assert delivery["event_type"] == "ping" and delivery["status"] == "pending"

            def state() -> dict[str, Any]:
                return dict(client.get(f"/api/v1/webhooks/deliveries/{delivery['id']}",
                                       headers=auth(world.sysadmin)).json())

            failed = wait_until("the delivery to fail", lambda: (d := state())["status"] == "failed" and d, timeout=30)
            assert failed["attempts"] == 3 and failed["last_status_code"] == 500
            assert "内部错误" in failed["last_error"]
            assert len(rx.all()) == 3
            r = client.post(f"/api/v1/webhooks/deliveries/{delivery['id']}/retry", headers=auth(world.sysadmin))
            assert r.status_code == 200 and r.json()["status"] == "pending"
            assert client.post(f"/api/v1/webhooks/deliveries/{delivery['id']}/retry",
                               headers=auth(world.sysadmin)).status_code == 409  # not failed (any more)
            rx.mode = "ok"
            done = wait_until("the retried delivery", lambda: (d := state())["status"] == "delivered" and d, timeout=30)
            assert [a["status_code"] for a in done["attempts_log"]][-1] == 200
            assert len(done["attempts_log"]) >= 4
    finally:
        rx.down()
    assert [r.headers["sanke-event-id"] for r in rx.answered_ok()] == [delivery["event_id"]]


# ------------------------------------------------------------------------------ the outbox's rules

def _sysadmin_scope(session: Session, w: World):  # type: ignore[no-untyped-def]
    return scope_of(session, session.merge(w.sysadmin))


def test_events_are_written_only_for_subscribers_once_per_change_and_with_the_change(
        session: Session, world: World) -> None:
    first, _ = booked(session, world)
    lifecycle.tick(session, first.starts_at - LEAD, lead=LEAD, grace=GRACE)  # nobody subscribed yet
    session.commit()
    assert session.scalar(select(func.count()).select_from(WebhookEvent)) == 0
    scope = _sysadmin_scope(session, world)
    live_only = webhooks.create_subscription(session, scope, name="直播大屏", url="http://127.0.0.1:9/live",
                                             event_types=["lesson.live"], now=webhooks.wallclock())
    off = webhooks.create_subscription(session, scope, name="停用的", url="https://127.0.0.1:9/x",
                                       event_types=["lesson.live"], now=webhooks.wallclock())
    webhooks.set_active(session, scope, off.id, False)
    session.commit()
    lifecycle.mark_started(session, first.id, first.starts_at)
    session.rollback()  # the change did not happen: neither did its event
    assert session.scalar(select(func.count()).select_from(WebhookEvent)) == 0
    lifecycle.mark_started(session, first.id, first.starts_at)
    session.commit()
    rows = session.execute(select(WebhookEvent.type, WebhookDelivery.subscription_id)
                           .join(WebhookDelivery, WebhookDelivery.event_id == WebhookEvent.id)).all()
    assert rows == [("lesson.live", live_only.id)]
    # the same change reported again (another node): no second event
    inst = session.get(LessonInstance, first.id)
    assert webhooks.lesson_event(session, inst, "lesson_live", first.starts_at) is None
    session.commit()
    assert session.scalar(select(func.count()).select_from(WebhookEvent)) == 1


def test_a_claim_whose_lease_lapsed_is_taken_over_and_the_first_node_cannot_finish_it(
        session: Session, world: World) -> None:
    scope = _sysadmin_scope(session, world)
    sub = webhooks.create_subscription(session, scope, name="数据中心", url="http://127.0.0.1:9/h",
                                       event_types=ALL_TYPES, now=webhooks.wallclock())
    delivery = webhooks.ping(session, scope, sub.id)
    session.commit()
    t0 = webhooks.wallclock()
    lease = timedelta(seconds=30)
    [a] = webhooks.claim(session, node="n1", now=t0, lease=lease, limit=10, max_attempts=5)
    session.commit()
    assert webhooks.claim(session, node="n2", now=t0 + timedelta(seconds=29), lease=lease, limit=10,
                          max_attempts=5) == []  # still leased
    [b] = webhooks.claim(session, node="n2", now=t0 + timedelta(seconds=31), lease=lease, limit=10, max_attempts=5)
    session.commit()
    assert (a.delivery_id, b.delivery_id, b.attempt) == (delivery.id, delivery.id, 2) and a.body == b.body
    kw = dict(max_attempts=5, backoff_base_s=1, backoff_cap_s=10)
    assert webhooks.complete(session, a, ok=True, status_code=200, error=None, now=t0 + timedelta(seconds=32),
                             **kw) is None  # lost: n2 holds it now
    assert webhooks.complete(session, b, ok=True, status_code=200, error=None, now=t0 + timedelta(seconds=33),
                             **kw) is DeliveryStatus.delivered
    session.commit()
    log = list(session.scalars(select(WebhookAttempt).order_by(WebhookAttempt.id)))
    assert [(x.node, x.ok) for x in log] == [("n1", True), ("n2", True)]


def test_a_stopping_node_hands_back_what_it_claimed_and_it_is_due_again_at_once(
        session: Session, world: World) -> None:
    scope = _sysadmin_scope(session, world)
    sub = webhooks.create_subscription(session, scope, name="数据中心", url="http://127.0.0.1:9/h",
                                       event_types=ALL_TYPES, now=webhooks.wallclock())
    webhooks.ping(session, scope, sub.id)
    session.commit()
    t0 = webhooks.wallclock()
    [c] = webhooks.claim(session, node="n1", now=t0, lease=timedelta(seconds=60), limit=10, max_attempts=5)
    session.commit()
    webhooks.release(session, c, now=t0 + timedelta(seconds=1))
    session.commit()
    [again] = webhooks.claim(session, node="n2", now=t0 + timedelta(seconds=1), lease=timedelta(seconds=60),
                             limit=10, max_attempts=5)
    assert again.delivery_id == c.delivery_id and again.attempt == 2
    session.commit()
    first = session.scalars(select(WebhookAttempt).order_by(WebhookAttempt.id)).first()
    assert first is not None and first.node == "n1" and "交还" in (first.error or "")


def test_a_failed_attempt_waits_longer_each_time_up_to_the_cap() -> None:
    rng = random.Random(7)
    waits = [webhooks.backoff(n, base_s=5, cap_s=3600, rng=rng) for n in range(1, 16)]
    for n, w in enumerate(waits, start=1):
        exp = min(3600, 5 * 2 ** (n - 1))
        assert exp * 0.5 <= w <= exp
    assert max(waits) <= 3600 and waits[-1] >= 1800


def test_several_nodes_claiming_at_once_share_the_due_deliveries_without_overlap(
        session_factory: sessionmaker[Session], world: World, db_url: str) -> None:
    with session_scope(session_factory) as s:
        scope = _sysadmin_scope(s, world)
        sub = webhooks.create_subscription(s, scope, name="数据中心", url="http://127.0.0.1:9/h",
                                           event_types=ALL_TYPES, now=webhooks.wallclock())
        for _ in range(10):
            webhooks.ping(s, scope, sub.id)
    now = webhooks.wallclock()
    one, two = session_factory(), session_factory()
    try:
        a = webhooks.claim(one, node="n1", now=now, lease=timedelta(seconds=30), limit=6, max_attempts=5)
        if db_url.startswith("sqlite"):  # one writer at a time: the first claim commits before the second
            one.commit()
        b = webhooks.claim(two, node="n2", now=now, lease=timedelta(seconds=30), limit=6, max_attempts=5)
        one.commit()
        two.commit()
    finally:
        one.close()
        two.close()
    assert len(a) == 6 and len(b) == 4  # the rows the first holds locked are skipped, not waited for
    assert not {c.delivery_id for c in a} & {c.delivery_id for c in b}


# ------------------------------------------------------------------------------ signatures

def test_a_signature_verifies_only_for_the_same_secret_body_and_a_fresh_timestamp() -> None:
    body = json.dumps({"id": "evt_1", "type": "lesson.live"}).encode()
    now = 1_790_000_000
    sig = webhooks.sign("whsec_abc", now, body)
    assert sig.startswith("v1=") and len(sig) == 3 + 64
    webhooks.verify("whsec_abc", body, str(now), sig, now=now + 10)
    webhooks.verify("whsec_abc", body, str(now), "v1=" + "0" * 64 + "," + sig, now=now)  # one of several
    with pytest.raises(ValueError, match="mismatch"):
        webhooks.verify("whsec_abc", body.replace(b"live", b"dead"), str(now), sig, now=now)  # tampered body
    with pytest.raises(ValueError, match="mismatch"):
        webhooks.verify("whsec_other", body, str(now), sig, now=now)
    with pytest.raises(ValueError, match="mismatch"):
        webhooks.verify("whsec_abc", body, str(now + 1), webhooks.sign("whsec_abc", now, body), now=now)
    with pytest.raises(ValueError, match="tolerance"):
        webhooks.verify("whsec_abc", body, str(now), sig, now=now + 301)  # an old request replayed
    with pytest.raises(ValueError, match="tolerance"):
        webhooks.verify("whsec_abc", body, str(now), sig, now=now - 301)
    with pytest.raises(ValueError):
        webhooks.verify("whsec_abc", body, "yesterday", sig, now=now)
    with pytest.raises(ValueError):
        webhooks.verify("whsec_abc", body, str(now), "", now=now)


# ------------------------------------------------------------------------------ who may

def test_only_a_system_admin_manages_webhooks(client: TestClient, world: World, auth: Any) -> None:
    body = {"name": "数据中心", "url": "http://127.0.0.1:9/h", "event_types": ["lesson.live"]}
    r = client.post("/api/v1/webhooks", json=body, headers=auth(world.sysadmin))
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["secret"].startswith("whsec_") and len(created["secret"]) > 40
    sub_id = created["id"]
    for user in (world.teacher, world.researcher_a, world.researcher_city, world.student, world.terminal_main,
                 world.urban_admin, world.city_admin):
        h = auth(user)
        calls = [client.get("/api/v1/webhooks", headers=h), client.post("/api/v1/webhooks", json=body, headers=h),
                 client.patch(f"/api/v1/webhooks/{sub_id}", json={"active": False}, headers=h),
                 client.post(f"/api/v1/webhooks/{sub_id}/ping", headers=h),
                 client.get("/api/v1/webhooks/deliveries", headers=h),
                 client.get("/api/v1/webhooks/event-types", headers=h)]
        assert [c.status_code for c in calls] == [403] * len(calls), (user.username, [c.text for c in calls])
    listed = client.get("/api/v1/webhooks", headers=auth(world.sysadmin)).json()
    assert listed["count"] == 1 and "secret" not in listed["data"][0]  # shown once, at creation
    r = client.patch(f"/api/v1/webhooks/{sub_id}", json={"active": False}, headers=auth(world.sysadmin))
    assert r.status_code == 200 and r.json()["active"] is False
    r = client.post(f"/api/v1/webhooks/{sub_id}/ping", headers=auth(world.sysadmin))
    assert r.status_code == 409 and "已停用" in r.json()["message"]
    assert client.get("/api/v1/webhooks").status_code == 401


@pytest.mark.parametrize("url, message", [
    ("ftp://127.0.0.1/h", "须以 http:// 或 https:// 开头"),
    ("127.0.0.1:8000/h", "须以 http:// 或 https:// 开头"),
    ("http:///h", "缺少主机名"),
    ("http://user:pw@127.0.0.1/h", "不能包含用户名或密码"),
    ("http://127.0.0.1:99999/h", "格式不正确"),
    ("", "请填写接收地址"),
])
def test_a_bad_url_is_refused_in_words(client: TestClient, world: World, auth: Any, url: str, message: str) -> None:
    r = client.post("/api/v1/webhooks", json={"name": "数据中心", "url": url, "event_types": ["lesson.live"]},
                    headers=auth(world.sysadmin))
    assert r.status_code == 422 and message in r.json()["message"], r.text


def test_unknown_or_no_event_types_are_refused(client: TestClient, world: World, auth: Any) -> None:
    for types, message in ((["lesson.exploded"], "未知的事件类型"), ([], "至少选择一种事件"), (["ping"], "未知的事件类型")):
        r = client.post("/api/v1/webhooks", json={"name": "x", "url": "http://127.0.0.1:9/h", "event_types": types},
                        headers=auth(world.sysadmin))
        assert r.status_code == 422 and message in r.json()["message"], r.text
