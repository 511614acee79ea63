"""需求订单: the board where rural schools post needs and urban schools offer lessons.

The rules (who posts, who offers, who sees what, what accepting books) live in
``scheduler.demand``; this module only maps HTTP to it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from scheduler import demand
from scheduler.errors import Invalid
from scheduler.models import DemandStatus, OfferStatus
from server.api.deps import CurrentUser, SessionDep, StaffScope
from server.api.times import Timestamp

router = APIRouter(prefix="/demand-orders", tags=["demand-orders"])


# ---------------------------------------------------------------- schemas


class PreferredSlotIn(BaseModel):
    weekday: int = Field(ge=1, le=7)
    """ISO weekday, 1 = Monday."""
    period: int = Field(ge=1, le=20)
    """Period number in the rural school's bells."""


class DemandOrderCreate(BaseModel):
    rural_school_id: int | None = None
    """Defaults to the caller's own school."""
    term_id: int
    subject: str = Field(min_length=1, max_length=50)
    grade: str = Field(min_length=1, max_length=50)
    receiving_classroom_id: int | None = None
    preferred_slots: list[PreferredSlotIn] = Field(default_factory=list, max_length=50)
    note: str = Field(default="", max_length=2000)


class DemandOfferCreate(BaseModel):
    teacher_id: int | None = None
    """Defaults to the caller when the caller is a teacher."""
    main_classroom_id: int
    weekday: int = Field(ge=1, le=7)
    period_from: int = Field(ge=1, le=20)
    """Periods in the urban school's bells."""
    period_to: int | None = Field(default=None, ge=1, le=20)
    """Defaults to ``period_from`` (a single period)."""
    note: str = Field(default="", max_length=2000)


class AcceptIn(BaseModel):
    receiving_classroom_id: int | None = None
    """Required when the order has none; otherwise replaces the order's."""


class ReasonIn(BaseModel):
    reason: str = Field(default="", max_length=500)


class DemandOfferPublic(BaseModel):
    id: int
    order_id: int
    urban_school_id: int
    urban_school_name: str
    teacher_id: int
    teacher_name: str
    main_classroom_id: int
    main_classroom_name: str
    weekday: int
    period_from: int
    period_to: int
    note: str
    status: OfferStatus
    series_id: int | None
    created_by_id: int
    created_at: Timestamp


class DemandOrderPublic(BaseModel):
    id: int
    rural_school_id: int
    rural_school_name: str
    receiving_classroom_id: int | None
    receiving_classroom_name: str | None
    term_id: int
    term_name: str
    subject: str
    grade: str
    preferred_slots: list[PreferredSlotIn]
    note: str
    status: DemandStatus
    offer_count: int
    created_by_id: int
    created_at: Timestamp


class DemandOrderDetail(DemandOrderPublic):
    offers: list[DemandOfferPublic]
    """The offers the caller may see: all for the rural school's side, else the caller's school's own."""


class DemandOrdersPage(BaseModel):
    data: list[DemandOrderPublic]
    count: int


class AcceptOut(BaseModel):
    order: DemandOrderDetail
    series_id: int
    pairing_id: int
    pairing_created: bool
    instances: int
    """Lessons booked for the term."""
    declined_offer_ids: list[int]


def _offer_out(v: demand.OfferView) -> DemandOfferPublic:
    o = v.offer
    return DemandOfferPublic(
        id=o.id, order_id=o.order_id, urban_school_id=o.urban_school_id, urban_school_name=v.urban_school_name,
        teacher_id=o.teacher_id, teacher_name=v.teacher_name, main_classroom_id=o.main_classroom_id,
        main_classroom_name=v.main_classroom_name, weekday=o.weekday, period_from=o.period_from,
        period_to=o.period_to, note=o.note, status=o.status, series_id=o.series_id, created_by_id=o.created_by_id,
        created_at=o.created_at,
    )


def _order_fields(v: demand.OrderView) -> dict[str, object]:
    o = v.order
    return dict(
        id=o.id, rural_school_id=o.rural_school_id, rural_school_name=v.rural_school_name,
        receiving_classroom_id=o.receiving_classroom_id, receiving_classroom_name=v.receiving_classroom_name,
        term_id=o.term_id, term_name=v.term_name, subject=o.subject, grade=o.grade,
        preferred_slots=[PreferredSlotIn(**s) for s in o.preferred_slots or []], note=o.note, status=o.status,
        offer_count=v.offer_count, created_by_id=o.created_by_id, created_at=o.created_at,
    )


def _detail(v: demand.OrderView) -> DemandOrderDetail:
    return DemandOrderDetail(**_order_fields(v), offers=[_offer_out(x) for x in v.offers])  # type: ignore[arg-type]


# ---------------------------------------------------------------- routes


@router.get("", response_model=DemandOrdersPage)
def list_demand_orders(
    session: SessionDep,
    scope: StaffScope,
    status: DemandStatus | None = None,
    subject: str | None = None,
    grade: str | None = None,
    term_id: int | None = None,
    region_id: int | None = None,
    rural_school_id: int | None = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> DemandOrdersPage:
    """The board: orders of rural schools in the caller's city, newest first (``status=open`` for open needs)."""
    f = demand.OrderFilter(status=status, subject=subject, grade=grade, term_id=term_id, region_id=region_id,
                           rural_school_id=rural_school_id)
    views, total = demand.list_orders(session, scope=scope, f=f, offset=offset, limit=limit)
    return DemandOrdersPage(data=[DemandOrderPublic(**_order_fields(v)) for v in views],  # type: ignore[arg-type]
                            count=total)


@router.post("", response_model=DemandOrderDetail, status_code=201)
def create_demand_order(body: DemandOrderCreate, session: SessionDep, user: CurrentUser,
                        scope: StaffScope) -> DemandOrderDetail:
    """Post a need; only an admin of the rural school (or of its region) may."""
    school_id = body.rural_school_id if body.rural_school_id is not None else user.school_id
    if school_id is None:
        raise Invalid("请指定发布需求的农村学校")
    order = demand.create_order(
        session, rural_school_id=school_id, term_id=body.term_id, subject=body.subject, grade=body.grade,
        receiving_classroom_id=body.receiving_classroom_id,
        preferred_slots=[demand.PreferredSlot(s.weekday, s.period) for s in body.preferred_slots],
        note=body.note, actor=user, scope=scope,
    )
    return _detail(demand.get_order(session, order.id, scope=scope))


@router.get("/{order_id}", response_model=DemandOrderDetail)
def get_demand_order(order_id: int, session: SessionDep, scope: StaffScope) -> DemandOrderDetail:
    return _detail(demand.get_order(session, order_id, scope=scope))


@router.post("/{order_id}/offers", response_model=DemandOfferPublic, status_code=201)
def make_offer(order_id: int, body: DemandOfferCreate, session: SessionDep, user: CurrentUser,
               scope: StaffScope) -> DemandOfferPublic:
    """Offer a teacher, main classroom and weekly slot: an urban school's admin, or an urban teacher for themselves."""
    teacher_id = body.teacher_id if body.teacher_id is not None else user.id
    offer = demand.make_offer(
        session, order_id, teacher_id=teacher_id, main_classroom_id=body.main_classroom_id, weekday=body.weekday,
        period_from=body.period_from, period_to=body.period_to, note=body.note, actor=user, scope=scope,
    )
    return _offer_out(demand.describe_offer(session, offer))


@router.post("/{order_id}/offers/{offer_id}/accept", response_model=AcceptOut)
def accept_offer(order_id: int, offer_id: int, session: SessionDep, user: CurrentUser, scope: StaffScope,
                 body: AcceptIn | None = None) -> AcceptOut:
    """Accept an offer: pairs the schools if needed and books the dedicated series for the term.

    409 with ``conflicts`` when the slot is taken, 422 when the bells do not
    fit; in both cases nothing changes.
    """
    result = demand.accept_offer(session, order_id, offer_id,
                                 receiving_classroom_id=body.receiving_classroom_id if body else None,
                                 actor=user, scope=scope)
    return AcceptOut(order=_detail(demand.get_order(session, order_id, scope=scope)), series_id=result.series.id,
                     pairing_id=result.pairing.id, pairing_created=result.pairing_created,
                     instances=result.instances, declined_offer_ids=result.declined_offer_ids)


@router.post("/{order_id}/offers/{offer_id}/decline", response_model=DemandOfferPublic)
def decline_offer(order_id: int, offer_id: int, session: SessionDep, user: CurrentUser, scope: StaffScope,
                  body: ReasonIn | None = None) -> DemandOfferPublic:
    offer = demand.decline_offer(session, order_id, offer_id, reason=body.reason if body else "", actor=user,
                                 scope=scope)
    return _offer_out(demand.describe_offer(session, offer))


@router.post("/{order_id}/close", response_model=DemandOrderDetail)
def close_demand_order(order_id: int, session: SessionDep, user: CurrentUser, scope: StaffScope,
                       body: ReasonIn | None = None) -> DemandOrderDetail:
    """Withdraw an open order; pending offers are declined."""
    demand.close_order(session, order_id, reason=body.reason if body else "", actor=user, scope=scope)
    return _detail(demand.get_order(session, order_id, scope=scope))
