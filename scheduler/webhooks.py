"""Webhooks: who hears about lessons, the outbox their events wait in, and how a request is signed.

Owns the rules over ``scheduler.webhooks_models``: registering subscriptions (system admins only, the secret
generated here), writing an event and its deliveries **in the caller's transaction** (``emit``: the
scheduler's functions that change a lesson, a teaching record, a recording or an evaluation call it, so an
event exists exactly when its change was committed), claiming due deliveries under a lease (``claim``:
``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so of several nodes one sends each), recording an attempt's
outcome with exponential back-off and jitter (``complete``), the delivery log, and the signature scheme
(``sign`` / ``verify``).  It must not send anything over the network, commit, or know about HTTP
frameworks: ``server.core.webhooks`` does the sending.

The outbox's timing (next attempt, leases, the log) runs on :func:`wallclock`, the real time in the
timetable's zone, never on the timetable clock a test may pin: back-off and leases are real seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import random
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from scheduler import clock
from scheduler.access import Scope
from scheduler.errors import Forbidden, Invalid, InvalidState, NotFound
from scheduler.webhooks_models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscription,
)

EVENT_TYPES: dict[str, str] = {
    "room.opened": "课堂开放",
    "lesson.live": "开始上课",
    "lesson.ended": "课程结束",
    "teaching_record.ready": "教学记录生成",
    "recording.ready": "录播就绪",
    "evaluation.submitted": "评课提交",
}
"""The event types a subscription may ask for, with their zh-CN names."""

PING = "ping"
"""The test event an admin sends to one subscription (not subscribable)."""

SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_S = 300
MAX_ERROR_CHARS = 500


def wallclock() -> datetime:
    """Now, in the timetable's zone, naive, to the millisecond: the outbox's clock (real time)."""
    t = datetime.now(clock.zone()).replace(tzinfo=None)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def instant(value: datetime | None) -> str | None:
    """RFC 3339 with the timetable zone's offset (as the API writes instants)."""
    if value is None:
        return None
    aware = value.replace(tzinfo=clock.zone()) if value.tzinfo is None else value.astimezone(clock.zone())
    return aware.isoformat(timespec="milliseconds" if aware.microsecond else "seconds")


# ------------------------------------------------------------------------------------------ signing

def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """``v1=`` + hex HMAC-SHA256 with ``secret`` over ``f"{timestamp}."`` followed by the body's bytes."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


def verify(secret: str, body: bytes, timestamp: str, signature: str, *, now: float,
           tolerance_s: float = DEFAULT_TOLERANCE_S) -> None:
    """Check a request's ``SanKe-Signature`` and ``SanKe-Timestamp`` headers (what a receiver does).

    Raises ``ValueError`` for a missing or malformed header, a timestamp more than ``tolerance_s`` away from
    ``now`` (Unix seconds; a replayed request), or a signature that does not match the body.  The header may
    carry several comma-separated signatures (``v1=...,v1=...``); one match suffices."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        raise ValueError("malformed timestamp") from None
    if abs(now - ts) > tolerance_s:
        raise ValueError("timestamp outside the tolerance")
    expected = sign(secret, ts, body)
    offered = [s.strip() for s in (signature or "").split(",") if s.strip()]
    if not offered:
        raise ValueError("no signature")
    if not any(hmac.compare_digest(expected, s) for s in offered):
        raise ValueError("signature mismatch")


def body_of(event: WebhookEvent) -> bytes:
    """The request body of an event: the same bytes on every attempt (UTF-8 JSON, sorted keys)."""
    payload = {"id": event.uid, "type": event.type, "occurred_at": instant(event.occurred_at), "data": event.data}
    return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


# ------------------------------------------------------------------------------------------ subscriptions

def require_system_admin(scope: Scope) -> None:
    if not (scope.is_admin and scope.everywhere):
        raise Forbidden("只有系统管理员可以管理 Webhook 订阅")


def check_url(url: str) -> str:
    """A subscription's URL: ``http``/``https`` with a host, no user name or password in it."""
    url = (url or "").strip()
    if not url:
        raise Invalid("请填写接收地址", field="url")
    if len(url) > 500:
        raise Invalid("接收地址不能超过 500 个字符", field="url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise Invalid("接收地址格式不正确", field="url") from None
    if parts.scheme not in ("http", "https"):
        raise Invalid("接收地址须以 http:// 或 https:// 开头", field="url")
    if not parts.hostname:
        raise Invalid("接收地址缺少主机名", field="url")
    if parts.username is not None or parts.password is not None:
        raise Invalid("接收地址中不能包含用户名或密码，请用签名密钥验证请求", field="url")
    if parts.fragment:
        raise Invalid("接收地址不能包含 # 片段", field="url")
    if port == 0:
        raise Invalid("接收地址的端口不正确", field="url")
    host = parts.hostname
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if any(c.isspace() for c in host) or ".." in host:
            raise Invalid("接收地址的主机名不正确", field="url") from None
    return url


def check_event_types(types: Iterable[str]) -> list[str]:
    chosen = sorted(set(types))
    if not chosen:
        raise Invalid("请至少选择一种事件", field="event_types")
    unknown = [t for t in chosen if t not in EVENT_TYPES]
    if unknown:
        raise Invalid(f"未知的事件类型：{'、'.join(unknown)}", field="event_types")
    return chosen


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def create_subscription(session: Session, scope: Scope, *, name: str, url: str, event_types: Sequence[str],
                        now: datetime) -> WebhookSubscription:
    """A new active subscription; its ``secret`` is readable on the returned row only (the caller shows it once)."""
    require_system_admin(scope)
    name = (name or "").strip()
    if not name:
        raise Invalid("请填写订阅名称", field="name")
    if len(name) > 100:
        raise Invalid("订阅名称不能超过 100 个字符", field="name")
    sub = WebhookSubscription(name=name, url=check_url(url), secret=new_secret(),
                              event_types=check_event_types(event_types), active=True, created_by=scope.user_id,
                              created_at=now)
    session.add(sub)
    session.flush()
    return sub


def require_subscription(session: Session, scope: Scope, subscription_id: int) -> WebhookSubscription:
    require_system_admin(scope)
    sub = session.get(WebhookSubscription, subscription_id)
    if sub is None:
        raise NotFound(f"Webhook 订阅 #{subscription_id} 不存在")
    return sub


def set_active(session: Session, scope: Scope, subscription_id: int, active: bool) -> WebhookSubscription:
    """Disable (or enable again) a subscription: a disabled one gets no new events and its waiting
    deliveries stay waiting until it is enabled again."""
    sub = require_subscription(session, scope, subscription_id)
    sub.active = active
    return sub


def subscriptions(session: Session, scope: Scope) -> list[WebhookSubscription]:
    require_system_admin(scope)
    return list(session.scalars(select(WebhookSubscription).order_by(WebhookSubscription.id)))


# ------------------------------------------------------------------------------------------ the outbox

def _uid() -> str:
    return "evt_" + secrets.token_hex(12)


def active_subscriptions(session: Session) -> list[WebhookSubscription]:
    """The active subscriptions (one query; a caller emitting many events passes them to each ``emit``)."""
    return list(session.scalars(select(WebhookSubscription).where(WebhookSubscription.active)))


def emit(session: Session, type_: str, data: dict[str, Any], *, key: str | None = None,
         occurred_at: datetime | None = None, only: WebhookSubscription | None = None,
         active: Sequence[WebhookSubscription] | None = None) -> WebhookEvent | None:
    """Write an event and one delivery per active subscription that wants it, in the caller's transaction.

    Nothing is written when no subscription wants it, or when an event with the same ``key`` exists (another
    node reported the same change).  ``only``: that one subscription (a ping).  ``active``: the active
    subscriptions, when the caller already read them (``active_subscriptions``)."""
    if only is not None:
        targets = [only]
    else:
        subs = active if active is not None else active_subscriptions(session)
        targets = [s for s in subs if type_ in (s.event_types or [])]
    if not targets:
        return None
    uid = _uid()
    now = wallclock()
    event = WebhookEvent(uid=uid, type=type_, key=key or uid, occurred_at=occurred_at or clock.now_precise(),
                         data=data)
    try:
        with session.begin_nested():
            session.add(event)
            session.flush()
            session.add_all(WebhookDelivery(event_id=event.id, subscription_id=s.id, status=DeliveryStatus.pending,
                                            attempts=0, next_attempt_at=now, created_at=now) for s in targets)
            session.flush()
    except IntegrityError:  # the same change, already reported
        return None
    return event


def lesson_data(inst: Any) -> dict[str, Any]:
    """What a lesson event says about its lesson (``scheduler.models.LessonInstance``)."""
    series = inst.series
    return {
        "instance_id": inst.id, "series_id": inst.series_id, "title": series.title if series is not None else None,
        "kind": series.kind.value if series is not None else None, "status": inst.status.value,
        "day": inst.day.isoformat(), "starts_at": instant(inst.starts_at), "ends_at": instant(inst.ends_at),
        "main_classroom_id": inst.main_classroom_id, "teacher_id": inst.teacher_id,
        "room_opened_at": instant(inst.room_opened_at), "started_at": instant(inst.started_at),
        "room_closed_at": instant(inst.room_closed_at),
    }


LESSON_EVENT_TYPES = {"room_opened": "room.opened", "lesson_live": "lesson.live", "room_closed": "lesson.ended"}
"""The lifecycle's event names (``scheduler.lifecycle.LessonEvent.type``) → webhook event types."""


def lesson_event(session: Session, inst: Any, lifecycle_type: str, at: datetime, *,
                 active: Sequence[WebhookSubscription] | None = None) -> WebhookEvent | None:
    type_ = LESSON_EVENT_TYPES[lifecycle_type]
    if active is not None and not any(type_ in (s.event_types or []) for s in active):
        return None
    return emit(session, type_, lesson_data(inst), key=f"{type_}:{inst.id}", occurred_at=at, active=active)


def record_ready(session: Session, row: Any, now: datetime) -> WebhookEvent | None:
    """A teaching record (``scheduler.records_models.TeachingRecord``) was stored; a recomputation with the
    same content (another node, a restart) is the same event, one with new content a new one."""
    data = {
        "instance_id": row.instance_id, "status": row.status.value if hasattr(row.status, "value") else row.status,
        "actual_start": instant(row.actual_start), "actual_end": instant(row.actual_end),
        "duration_s": row.duration_s, "late_s": row.late_s, "on_time": row.on_time,
        "expected_receivers": row.expected_receivers, "attended_receivers": row.attended_receivers,
        "uncertain_s": row.uncertain_s,
    }
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return emit(session, "teaching_record.ready", data, key=f"teaching_record.ready:{row.instance_id}:{digest}",
                occurred_at=now)


def recording_ready(session: Session, row: Any, now: datetime) -> WebhookEvent | None:
    """A recording (``scheduler.recordings_models.Recording``) became playable: ``ready``, or ``partial``
    after a crash."""
    data = {
        "recording_id": row.id, "instance_id": row.instance_id, "status": row.status.value,
        "started_at": instant(row.started_at), "ended_at": instant(row.ended_at), "duration_s": row.duration_s,
        "size_bytes": row.size_bytes, "codecs": row.codecs,
    }
    return emit(session, "recording.ready", data, key=f"recording.ready:{row.id}", occurred_at=now)


def evaluation_submitted(session: Session, evaluation: Any, now: datetime) -> WebhookEvent | None:
    """An evaluator saved their evaluation (rubric, scores, comment) of a lesson."""
    data = {
        "evaluation_id": evaluation.id, "instance_id": evaluation.instance_id,
        "evaluator_id": evaluation.evaluator_id, "mode": evaluation.mode.value,
        "template_id": evaluation.template_id, "total_score": evaluation.total_score,
        "complete": evaluation.total_score is not None, "updated_at": instant(evaluation.updated_at),
    }
    return emit(session, "evaluation.submitted", data, occurred_at=now)


def ping(session: Session, scope: Scope, subscription_id: int) -> WebhookDelivery:
    """A ``ping`` event to one active subscription (a disabled one sends nothing)."""
    sub = require_subscription(session, scope, subscription_id)
    if not sub.active:
        raise InvalidState("该订阅已停用，启用后才能发送测试")
    event = emit(session, PING, {"subscription_id": sub.id, "message": "SanKe webhook 测试"}, only=sub,
                 occurred_at=clock.now_precise())
    assert event is not None
    return session.scalars(select(WebhookDelivery).where(WebhookDelivery.event_id == event.id)).one()


# ------------------------------------------------------------------------------------------ delivering

@dataclass(frozen=True)
class Claim:
    """One delivery a node has claimed: what to send, and the token that lets it record the outcome."""
    delivery_id: int
    attempt_id: int
    token: str
    attempt: int
    url: str
    secret: str
    event_uid: str
    event_type: str
    body: bytes


def backoff(attempts: int, *, base_s: float, cap_s: float, rng: random.Random | None = None) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: ``base * 2^(attempts-1)`` up to
    ``cap``, times a random factor in [0.5, 1] (so receivers coming back are not hit by every node at once)."""
    exp = min(cap_s, base_s * (2 ** max(0, attempts - 1)))
    return exp * (rng or random).uniform(0.5, 1.0)


def _due(now: datetime):  # type: ignore[no-untyped-def]
    return or_(
        and_(WebhookDelivery.status == DeliveryStatus.pending, WebhookDelivery.next_attempt_at <= now),
        and_(WebhookDelivery.status == DeliveryStatus.delivering, WebhookDelivery.lease_until <= now),
    )


def claim(session: Session, *, node: str, now: datetime, lease: timedelta, limit: int,
          max_attempts: int) -> list[Claim]:
    """Claim up to ``limit`` due deliveries of active subscriptions for ``node`` until ``now + lease``.

    A delivery is due when it waits and its time has come, or when a node claimed it and its lease lapsed
    (that node stopped mid-delivery: its attempt stays in the log, unfinished).  Rows other nodes hold
    locked are skipped (PostgreSQL); the caller commits before sending anything."""
    rows = session.scalars(
        select(WebhookDelivery)
        .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
        .where(WebhookSubscription.active, _due(now))
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=WebhookDelivery)
    ).all()
    claims: list[Claim] = []
    for row in rows:
        if row.status is DeliveryStatus.delivering:  # a lapsed lease: its node stopped mid-delivery
            for a in session.scalars(select(WebhookAttempt).where(WebhookAttempt.delivery_id == row.id,
                                                                  WebhookAttempt.finished_at.is_(None))):
                a.error = "节点在发送中途停止，租约已过期"
            if row.attempts >= max_attempts:
                row.status = DeliveryStatus.failed
                row.last_error = "节点在发送中途停止，已达到最大尝试次数"
                row.lease_until = row.claim_token = None
                continue
        sub = session.get(WebhookSubscription, row.subscription_id)
        event = session.get(WebhookEvent, row.event_id)
        assert sub is not None and event is not None
        token = secrets.token_hex(16)
        row.status = DeliveryStatus.delivering
        row.claimed_by = node
        row.claim_token = token
        row.lease_until = now + lease
        row.attempts += 1
        row.last_attempt_at = now
        attempt = WebhookAttempt(delivery_id=row.id, node=node, started_at=now, ok=False)
        session.add(attempt)
        session.flush()
        claims.append(Claim(row.id, attempt.id, token, row.attempts, sub.url, sub.secret, event.uid, event.type,
                            body_of(event)))
    return claims


def complete(session: Session, c: Claim, *, ok: bool, status_code: int | None, error: str | None,
             now: datetime, max_attempts: int, backoff_base_s: float, backoff_cap_s: float,
             rng: random.Random | None = None) -> DeliveryStatus | None:
    """Record an attempt's outcome. Answers the delivery's new status, or None when the claim was lost
    (the lease lapsed and another node claimed it meanwhile: only the attempt is logged)."""
    error = error[:MAX_ERROR_CHARS] if error else None
    attempt = session.get(WebhookAttempt, c.attempt_id)
    if attempt is not None:
        attempt.finished_at = now
        attempt.status_code = status_code
        attempt.error = error
        attempt.ok = ok
    row = session.scalars(select(WebhookDelivery).where(WebhookDelivery.id == c.delivery_id)
                          .with_for_update()).one_or_none()
    if row is None or row.claim_token != c.token or row.status is not DeliveryStatus.delivering:
        return None
    row.lease_until = None
    row.claim_token = None
    row.last_status_code = status_code
    row.last_error = error
    if ok:
        row.status = DeliveryStatus.delivered
        row.delivered_at = now
    elif row.attempts >= max_attempts:
        row.status = DeliveryStatus.failed
    else:
        row.status = DeliveryStatus.pending
        row.next_attempt_at = now + timedelta(seconds=backoff(row.attempts, base_s=backoff_base_s,
                                                              cap_s=backoff_cap_s, rng=rng))
    return row.status


def next_due(session: Session) -> datetime | None:
    """When the earliest waiting delivery of an active subscription is due (for a worker's sleep)."""
    return session.scalar(
        select(func.min(WebhookDelivery.next_attempt_at))
        .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
        .where(WebhookSubscription.active, WebhookDelivery.status == DeliveryStatus.pending))


def retry(session: Session, scope: Scope, delivery_id: int, *, now: datetime) -> WebhookDelivery:
    """An admin sends a failed delivery again: it waits for its first attempt, with a fresh budget."""
    require_system_admin(scope)
    row = session.get(WebhookDelivery, delivery_id)
    if row is None:
        raise NotFound(f"投递记录 #{delivery_id} 不存在")
    if row.status is not DeliveryStatus.failed:
        raise InvalidState("只有投递失败的记录可以重试")
    row.status = DeliveryStatus.pending
    row.attempts = 0
    row.next_attempt_at = now
    return row


# ------------------------------------------------------------------------------------------ the log

@dataclass(frozen=True)
class LogFilter:
    status: DeliveryStatus | None = None
    event_type: str | None = None
    subscription_id: int | None = None


def deliveries(session: Session, scope: Scope, f: LogFilter, *, offset: int, limit: int
               ) -> tuple[list[tuple[WebhookDelivery, WebhookEvent, WebhookSubscription]], int]:
    """The delivery log, newest first, and how many rows match."""
    require_system_admin(scope)
    where = []
    if f.status is not None:
        where.append(WebhookDelivery.status == f.status)
    if f.event_type is not None:
        where.append(WebhookEvent.type == f.event_type)
    if f.subscription_id is not None:
        where.append(WebhookDelivery.subscription_id == f.subscription_id)
    base = (select(WebhookDelivery, WebhookEvent, WebhookSubscription)
            .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
            .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
            .where(*where))
    total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
    rows = session.execute(base.order_by(WebhookDelivery.id.desc()).offset(offset).limit(limit)).all()
    return [(d, e, s) for d, e, s in rows], int(total)


def attempts_of(session: Session, scope: Scope, delivery_id: int) -> tuple[WebhookDelivery, list[WebhookAttempt]]:
    require_system_admin(scope)
    row = session.get(WebhookDelivery, delivery_id)
    if row is None:
        raise NotFound(f"投递记录 #{delivery_id} 不存在")
    return row, list(session.scalars(select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery_id)
                                     .order_by(WebhookAttempt.id)))


def release(session: Session, c: Claim, *, now: datetime) -> None:
    """Hand back a claim a stopping node did not finish: due again at once, for any node."""
    attempt = session.get(WebhookAttempt, c.attempt_id)
    if attempt is not None and attempt.finished_at is None:
        attempt.finished_at = now
        attempt.error = "节点停止，投递已交还"
    row = session.get(WebhookDelivery, c.delivery_id)
    if row is not None and row.claim_token == c.token and row.status is DeliveryStatus.delivering:
        row.status = DeliveryStatus.pending
        row.next_attempt_at = now
        row.lease_until = row.claim_token = None
