"""/webhooks: subscriptions of the bureau's other systems to lesson events, and the delivery log.

System admins only (an admin with no school and no region): they register a receiver's URL and the
events it wants, get its signing secret once, disable it, read every delivery and its attempts, retry
a failed one, and send a test ``ping``.  The rules live in ``scheduler.webhooks``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from scheduler import webhooks
from scheduler.webhooks_models import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEvent, WebhookSubscription
from server.api.common import PageDep
from server.api.deps import AdminScope, SessionDep
from server.api.times import Timestamp

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


class EventTypeOut(BaseModel):
    type: str
    name: str


class SubscriptionIn(BaseModel):
    name: str = Field(max_length=100, description="订阅名称，如“市教育局数据中心”")
    url: str = Field(max_length=500, description="接收地址（http:// 或 https://）")
    event_types: list[str] = Field(max_length=len(webhooks.EVENT_TYPES), description="订阅的事件类型")


class SubscriptionOut(BaseModel):
    id: int
    name: str
    url: str
    event_types: list[str]
    active: bool
    created_by: int | None
    created_at: Timestamp


class SubscriptionCreated(SubscriptionOut):
    secret: str
    """The signing secret, shown only in this answer."""


class SubscriptionPatch(BaseModel):
    active: bool


class SubscriptionsOut(BaseModel):
    data: list[SubscriptionOut]
    count: int


class DeliveryOut(BaseModel):
    id: int
    event_id: str
    event_type: str
    occurred_at: Timestamp
    subscription_id: int
    subscription_name: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: Timestamp | None
    """When a waiting delivery is tried next (null unless ``pending``)."""
    last_attempt_at: Timestamp | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: Timestamp | None
    created_at: Timestamp


class AttemptOut(BaseModel):
    id: int
    node: str
    started_at: Timestamp
    finished_at: Timestamp | None
    status_code: int | None
    error: str | None
    ok: bool


class DeliveryDetail(DeliveryOut):
    attempts_log: list[AttemptOut]
    body: str
    """The request body every attempt sends."""


class DeliveriesOut(BaseModel):
    data: list[DeliveryOut]
    count: int


def _sub_out(s: WebhookSubscription) -> SubscriptionOut:
    return SubscriptionOut(id=s.id, name=s.name, url=s.url, event_types=list(s.event_types or []), active=s.active,
                           created_by=s.created_by, created_at=s.created_at)


def _delivery_out(d: WebhookDelivery, e: WebhookEvent, s: WebhookSubscription) -> DeliveryOut:
    return DeliveryOut(id=d.id, event_id=e.uid, event_type=e.type, occurred_at=e.occurred_at, subscription_id=s.id,
                       subscription_name=s.name, status=d.status, attempts=d.attempts,
                       next_attempt_at=d.next_attempt_at if d.status is DeliveryStatus.pending else None,
                       last_attempt_at=d.last_attempt_at, last_status_code=d.last_status_code,
                       last_error=d.last_error, delivered_at=d.delivered_at, created_at=d.created_at)


def _attempt_out(a: WebhookAttempt) -> AttemptOut:
    return AttemptOut(id=a.id, node=a.node, started_at=a.started_at, finished_at=a.finished_at,
                      status_code=a.status_code, error=a.error, ok=a.ok)


def _detail(session: SessionDep, scope: AdminScope, delivery_id: int) -> DeliveryDetail:
    d, attempts = webhooks.attempts_of(session, scope, delivery_id)
    e = session.get(WebhookEvent, d.event_id)
    s = session.get(WebhookSubscription, d.subscription_id)
    assert e is not None and s is not None
    return DeliveryDetail(**_delivery_out(d, e, s).model_dump(), attempts_log=[_attempt_out(a) for a in attempts],
                          body=webhooks.body_of(e).decode())


def _kick(request: Request) -> None:
    worker = getattr(request.app.state, "webhooks", None)
    if worker is not None:
        worker.kick()


@router.get("/event-types", response_model=list[EventTypeOut])
def event_types(scope: AdminScope) -> list[EventTypeOut]:
    """The event types a subscription may ask for, with their names."""
    webhooks.require_system_admin(scope)
    return [EventTypeOut(type=t, name=n) for t, n in webhooks.EVENT_TYPES.items()]


@router.get("", response_model=SubscriptionsOut)
def list_subscriptions(session: SessionDep, scope: AdminScope) -> SubscriptionsOut:
    rows = webhooks.subscriptions(session, scope)
    return SubscriptionsOut(data=[_sub_out(s) for s in rows], count=len(rows))


@router.post("", response_model=SubscriptionCreated, status_code=201)
def create_subscription(body: SubscriptionIn, session: SessionDep, scope: AdminScope) -> SubscriptionCreated:
    """Register a receiver. The answer carries its signing secret, which is never shown again."""
    s = webhooks.create_subscription(session, scope, name=body.name, url=body.url, event_types=body.event_types,
                                     now=webhooks.wallclock())
    return SubscriptionCreated(**_sub_out(s).model_dump(), secret=s.secret)


@router.patch("/{subscription_id}", response_model=SubscriptionOut)
def update_subscription(subscription_id: int, body: SubscriptionPatch, session: SessionDep,
                        scope: AdminScope) -> SubscriptionOut:
    """Disable (``active: false``) or enable a subscription."""
    return _sub_out(webhooks.set_active(session, scope, subscription_id, body.active))


@router.post("/{subscription_id}/ping", response_model=DeliveryOut, status_code=202)
def ping(subscription_id: int, request: Request, session: SessionDep, scope: AdminScope) -> DeliveryOut:
    """Send a ``ping`` event to this subscription; its delivery shows in the log."""
    d = webhooks.ping(session, scope, subscription_id)
    e = session.get(WebhookEvent, d.event_id)
    s = session.get(WebhookSubscription, d.subscription_id)
    assert e is not None and s is not None
    out = _delivery_out(d, e, s)
    session.commit()  # due before the worker looks
    _kick(request)
    return out


@router.get("/deliveries", response_model=DeliveriesOut)
def list_deliveries(session: SessionDep, scope: AdminScope, page: PageDep,
                    status: DeliveryStatus | None = None,
                    event_type: Annotated[str | None, Query(max_length=40)] = None,
                    subscription_id: int | None = None) -> DeliveriesOut:
    """The delivery log, newest first."""
    rows, total = webhooks.deliveries(session, scope, webhooks.LogFilter(status, event_type, subscription_id),
                                      offset=page.offset, limit=page.limit)
    return DeliveriesOut(data=[_delivery_out(d, e, s) for d, e, s in rows], count=total)


@router.get("/deliveries/{delivery_id}", response_model=DeliveryDetail)
def get_delivery(delivery_id: int, session: SessionDep, scope: AdminScope) -> DeliveryDetail:
    """One delivery with every attempt (which node, when, the answer) and the body it sends."""
    return _detail(session, scope, delivery_id)


@router.post("/deliveries/{delivery_id}/retry", response_model=DeliveryOut)
def retry(delivery_id: int, request: Request, session: SessionDep, scope: AdminScope) -> DeliveryOut:
    """Send a failed delivery again (a fresh set of attempts)."""
    d = webhooks.retry(session, scope, delivery_id, now=webhooks.wallclock())
    e = session.get(WebhookEvent, d.event_id)
    s = session.get(WebhookSubscription, d.subscription_id)
    assert e is not None and s is not None
    out = _delivery_out(d, e, s)
    session.commit()
    _kick(request)
    return out

