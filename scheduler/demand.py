"""需求订单: rural schools post what lessons they need, urban schools offer to give them.

The flow:

1. An admin of a rural school posts an order (``create_order``): subject,
   grade, term, optionally the receiving classroom and preferred slots in the
   *rural* school's bells, and a note.
2. Urban schools respond (``make_offer``): a teacher, a main classroom and a
   weekday with periods in the *urban* school's bells.  An admin of the urban
   school may offer any of its teachers; a teacher of an urban school may
   offer only themselves.
3. An admin of the rural school accepts one offer (``accept_offer``).  In one
   unit of work this reuses or creates the pairing (城乡结对) of the two schools
   for the term and subject, books the dedicated series for the whole term
   through ``bookings.book_agreed_series`` (every booking rule applies:
   bells, holidays, conflicts), marks the offer accepted and the others
   declined, and marks the order matched.  If booking fails, nothing changes
   and the ``Conflict`` / ``Invalid`` propagates.
4. The rural admin may decline single offers (``decline_offer``) or withdraw
   the order (``close_order``) while it is open.

Who sees the board (``list_orders``, ``get_order``): staff only (admins,
teachers, researchers; terminals and students are refused).  A viewer sees
the orders of rural schools in the region subtree of *their city*: the city
that contains their school, or for a researcher or bureau admin without a
school, the city that contains their region.  A viewer whose region is a
province (or has no city above it) sees that region's subtree.  A system
admin sees everything.  The city is the unit because urban teachers answer
rural needs across district lines.

Who sees offers (``list_offers``): whoever can see the rural school's own
data (its admins and teachers, researchers and admins of its region) sees
every offer; anyone else sees only their own school's offers, so competing
urban schools do not read each other's.

Every change is written to the audit trail under entity ``demand_order``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, func, select, true
from sqlalchemy.orm import Session

from scheduler import audit, clock
from scheduler.access import Scope, region_path_for, require_school_admin, school_visible
from scheduler.bookings import ReceiverSpec, SeriesSpec, book_agreed_series
from scheduler.errors import Forbidden, Invalid, InvalidState, NotFound
from scheduler.models import (
    Classroom,
    DemandOffer,
    DemandOrder,
    DemandStatus,
    LessonInstance,
    LessonKind,
    LessonSeries,
    OfferStatus,
    Pairing,
    Region,
    RegionLevel,
    Role,
    School,
    SchoolKind,
    Term,
    User,
)
from scheduler.periods import scheme_for, span
from scheduler.terms import load_calendar

ENTITY = "demand_order"
_STAFF = (Role.admin, Role.teacher, Role.researcher)
_STATUS_ZH = {DemandStatus.open: "待响应", DemandStatus.matched: "已匹配", DemandStatus.closed: "已关闭"}
_OFFER_STATUS_ZH = {OfferStatus.offered: "待处理", OfferStatus.accepted: "已接受", OfferStatus.declined: "已谢绝"}


@dataclass(frozen=True)
class PreferredSlot:
    """A slot the rural school would like, in its own bells."""

    weekday: int
    """ISO weekday, 1 = Monday."""
    period: int


@dataclass(frozen=True)
class OrderFilter:
    status: DemandStatus | None = None
    subject: str | None = None
    grade: str | None = None
    term_id: int | None = None
    region_id: int | None = None
    """Orders of rural schools in this region's subtree."""
    rural_school_id: int | None = None


@dataclass(frozen=True)
class OfferView:
    """An offer with the names a person reads."""

    offer: DemandOffer
    urban_school_name: str
    teacher_name: str
    main_classroom_name: str


@dataclass(frozen=True)
class OrderView:
    """An order with the names a person reads and how many offers it has."""

    order: DemandOrder
    rural_school_name: str
    receiving_classroom_name: str | None
    term_name: str
    offer_count: int
    offers: list[OfferView] = field(default_factory=list)
    """Filled by ``get_order`` only: the offers the viewer may see."""


@dataclass(frozen=True)
class Acceptance:
    """What accepting an offer did."""

    order: DemandOrder
    offer: DemandOffer
    series: LessonSeries
    pairing: Pairing
    pairing_created: bool
    instances: int
    declined_offer_ids: list[int]


# ---------------------------------------------------------------- who sees the board


def _require_staff(scope: Scope) -> None:
    if scope.role not in _STAFF:
        raise Forbidden("当前角色不能查看需求订单")


def board_path(session: Session, scope: Scope) -> str | None:
    """Region subtree whose rural schools' orders the viewer sees; None means everywhere."""
    _require_staff(scope)
    if scope.everywhere:
        return None
    anchor: Region | None = None
    if scope.school_id is not None:
        school = session.get(School, scope.school_id)
        anchor = session.get(Region, school.region_id) if school else None
    elif scope.region_path is not None:
        anchor_id = int(scope.region_path.strip("/").split("/")[-1])
        anchor = session.get(Region, anchor_id)
    if anchor is None:
        raise Forbidden("账号未关联学校或区域，无法查看需求订单")
    if anchor.level is RegionLevel.province:
        return anchor.path
    ancestor_ids = [int(x) for x in anchor.path.strip("/").split("/") if x]
    city = session.scalar(select(Region).where(Region.id.in_(ancestor_ids), Region.level == RegionLevel.city))
    return city.path if city is not None else anchor.path


def _board_clause(session: Session, scope: Scope) -> ColumnElement[bool]:
    """WHERE clause over ``Region`` (joined through the order's rural school)."""
    path = board_path(session, scope)
    return true() if path is None else Region.path.startswith(path)


def _require_order(session: Session, order_id: int, *, for_update: bool = False) -> DemandOrder:
    if for_update:
        # Serializes two admins accepting offers of one order (PostgreSQL); SQLite's
        # BEGIN IMMEDIATE already serializes writers.
        order = session.get(DemandOrder, order_id, with_for_update=True, populate_existing=True)
    else:
        order = session.get(DemandOrder, order_id)
    if order is None:
        raise NotFound(f"需求订单 #{order_id} 不存在")
    return order


def _require_visible(session: Session, scope: Scope, order: DemandOrder) -> School:
    path = board_path(session, scope)
    school = session.get(School, order.rural_school_id)
    assert school is not None
    if path is not None:
        region = session.get(Region, school.region_id)
        if region is None or not region.path.startswith(path):
            raise Forbidden("该需求订单不在您所在城市的范围内")
    return school


def _require_offer(session: Session, order: DemandOrder, offer_id: int) -> DemandOffer:
    offer = session.get(DemandOffer, offer_id)
    if offer is None or offer.order_id != order.id:
        raise NotFound(f"需求订单 #{order.id} 没有响应 #{offer_id}")
    return offer


def _require_open(order: DemandOrder, doing: str) -> None:
    if order.status is not DemandStatus.open:
        raise InvalidState(f"需求订单 #{order.id} 状态为“{_STATUS_ZH[order.status]}”，不能{doing}")


# ---------------------------------------------------------------- orders


def _check_slots(session: Session, school_id: int, term_id: int,
                 slots: Sequence[PreferredSlot]) -> list[dict[str, int]]:
    out: list[dict[str, int]] = []
    if not slots:
        return out
    periods = {p.number for p in scheme_for(session, school_id, term_id).periods}
    for s in slots:
        if not 1 <= s.weekday <= 7:
            raise Invalid("期望时段的星期应为 1（周一）到 7（周日）")
        if s.period not in periods:
            raise Invalid(f"本校作息时间中没有第 {s.period} 节，请检查期望时段")
        d = {"weekday": s.weekday, "period": s.period}
        if d not in out:
            out.append(d)
    return out


def _check_receiving(session: Session, school: School, classroom_id: int) -> Classroom:
    room = session.get(Classroom, classroom_id)
    if room is None:
        raise NotFound(f"接收教室 #{classroom_id} 不存在")
    if room.school_id != school.id:
        raise Invalid(f"接收教室“{room.name}”不属于{school.name}")
    return room


def create_order(
    session: Session, *, rural_school_id: int, term_id: int, subject: str, grade: str,
    receiving_classroom_id: int | None = None, preferred_slots: Sequence[PreferredSlot] = (), note: str = "",
    actor: User, scope: Scope,
) -> DemandOrder:
    """Post a rural school's need. Only an admin who manages that school may."""
    school = require_school_admin(session, scope, rural_school_id)
    if school.kind is not SchoolKind.rural:
        raise Invalid(f"“{school.name}”不是农村学校，只有农村学校可以发布需求订单")
    if session.get(Term, term_id) is None:
        raise NotFound(f"学期 #{term_id} 不存在")
    subject, grade = subject.strip(), grade.strip()
    if not subject or not grade:
        raise Invalid("请填写学科和年级")
    if receiving_classroom_id is not None:
        _check_receiving(session, school, receiving_classroom_id)
    order = DemandOrder(
        rural_school_id=school.id, receiving_classroom_id=receiving_classroom_id, term_id=term_id,
        subject=subject, grade=grade, preferred_slots=_check_slots(session, school.id, term_id, preferred_slots),
        note=note.strip(), status=DemandStatus.open, created_by_id=actor.id, created_at=clock.now(),
    )
    session.add(order)
    session.flush()
    audit.record(session, actor_id=actor.id, entity=ENTITY, entity_id=order.id, action="create",
                 details={"school_id": school.id, "subject": subject, "grade": grade, "term_id": term_id})
    return order


def _views(session: Session, orders: Sequence[DemandOrder]) -> list[OrderView]:
    if not orders:
        return []
    school_ids = {o.rural_school_id for o in orders}
    room_ids = {o.receiving_classroom_id for o in orders if o.receiving_classroom_id is not None}
    term_ids = {o.term_id for o in orders}
    schools = dict(session.execute(select(School.id, School.name).where(School.id.in_(school_ids))).all())
    rooms = dict(session.execute(select(Classroom.id, Classroom.name).where(Classroom.id.in_(room_ids))).all()) \
        if room_ids else {}
    terms = dict(session.execute(select(Term.id, Term.name).where(Term.id.in_(term_ids))).all())
    counts = dict(session.execute(
        select(DemandOffer.order_id, func.count()).where(DemandOffer.order_id.in_([o.id for o in orders]))
        .group_by(DemandOffer.order_id)).all())
    return [
        OrderView(o, schools.get(o.rural_school_id, ""),
                  rooms.get(o.receiving_classroom_id) if o.receiving_classroom_id is not None else None,
                  terms.get(o.term_id, ""), int(counts.get(o.id, 0)))
        for o in orders
    ]


def list_orders(
    session: Session, *, scope: Scope, f: OrderFilter = OrderFilter(), offset: int = 0, limit: int = 100,
) -> tuple[list[OrderView], int]:
    """One page of the board, newest first, and the total count."""
    stmt = (
        select(DemandOrder)
        .join(School, School.id == DemandOrder.rural_school_id)
        .join(Region, Region.id == School.region_id)
        .where(_board_clause(session, scope))
    )
    if f.status is not None:
        stmt = stmt.where(DemandOrder.status == f.status)
    if f.subject:
        stmt = stmt.where(DemandOrder.subject == f.subject.strip())
    if f.grade:
        stmt = stmt.where(DemandOrder.grade == f.grade.strip())
    if f.term_id is not None:
        stmt = stmt.where(DemandOrder.term_id == f.term_id)
    if f.region_id is not None:
        stmt = stmt.where(Region.path.startswith(region_path_for(session, f.region_id)))
    if f.rural_school_id is not None:
        stmt = stmt.where(DemandOrder.rural_school_id == f.rural_school_id)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.scalars(stmt.order_by(DemandOrder.created_at.desc(), DemandOrder.id.desc())
                           .offset(offset).limit(limit)).all()
    return _views(session, rows), int(total)


def get_order(session: Session, order_id: int, *, scope: Scope) -> OrderView:
    """One order with the offers the viewer may see."""
    order = _require_order(session, order_id)
    _require_visible(session, scope, order)
    (view,) = _views(session, [order])
    return OrderView(view.order, view.rural_school_name, view.receiving_classroom_name, view.term_name,
                     view.offer_count, list_offers(session, order.id, scope=scope))


def close_order(session: Session, order_id: int, *, reason: str = "", actor: User, scope: Scope) -> DemandOrder:
    """Withdraw an open order; its pending offers are declined."""
    order = _require_order(session, order_id, for_update=True)
    require_school_admin(session, scope, order.rural_school_id)
    _require_open(order, "关闭")
    declined = _decline_pending(session, order)
    order.status = DemandStatus.closed
    audit.record(session, actor_id=actor.id, entity=ENTITY, entity_id=order.id, action="close", reason=reason,
                 details={"declined_offer_ids": declined})
    return order


# ---------------------------------------------------------------- offers


def _offering_school(session: Session, actor: User, scope: Scope, room: Classroom) -> School:
    """The urban school an offer is made for, checked against who makes it."""
    if scope.role is Role.admin:
        school_id = actor.school_id if actor.school_id is not None else room.school_id
        school = require_school_admin(session, scope, school_id)
    elif scope.role is Role.teacher:
        if actor.school_id is None:
            raise Forbidden("教师账号未关联学校，不能响应需求订单")
        found = session.get(School, actor.school_id)
        assert found is not None
        school = found
    else:
        raise Forbidden("只有城区学校的管理员或教师可以响应需求订单")
    if school.kind is not SchoolKind.urban:
        raise Forbidden(f"“{school.name}”不是城区学校，只有城区学校可以响应需求订单")
    return school


def make_offer(
    session: Session, order_id: int, *, teacher_id: int, main_classroom_id: int, weekday: int,
    period_from: int, period_to: int | None = None, note: str = "", actor: User, scope: Scope,
) -> DemandOffer:
    """Offer a teacher, a main classroom and a weekly slot (in the urban school's bells) for an open order."""
    order = _require_order(session, order_id)
    _require_visible(session, scope, order)
    room = session.get(Classroom, main_classroom_id)
    if room is None:
        raise NotFound(f"主讲教室 #{main_classroom_id} 不存在")
    school = _offering_school(session, actor, scope, room)
    if scope.role is Role.teacher and teacher_id != actor.id:
        raise Forbidden("教师只能以本人名义响应需求订单，请联系本校管理员安排其他教师")
    _require_open(order, "响应")
    if room.school_id != school.id:
        raise Invalid(f"主讲教室“{room.name}”不属于{school.name}")
    teacher = session.get(User, teacher_id)
    if teacher is None or not teacher.is_active:
        raise NotFound(f"主讲教师 #{teacher_id} 不存在")
    if teacher.role is not Role.teacher:
        raise Invalid(f"“{teacher.display_name}”不是教师账号，不能作为主讲教师")
    if teacher.school_id != school.id:
        raise Invalid(f"“{teacher.display_name}”不是{school.name}的教师")
    if not 1 <= weekday <= 7:
        raise Invalid("星期应为 1（周一）到 7（周日）")
    period_to = period_from if period_to is None else period_to
    if period_to < period_from:
        raise Invalid("结束节次不能早于开始节次")
    span(scheme_for(session, school.id, order.term_id), period_from, period_to)  # the periods exist
    duplicate = session.scalar(select(DemandOffer.id).where(
        DemandOffer.order_id == order.id, DemandOffer.teacher_id == teacher_id,
        DemandOffer.status == OfferStatus.offered))
    if duplicate is not None:
        raise Invalid(f"“{teacher.display_name}”已对该需求订单提交过响应（#{duplicate}），请勿重复提交")
    offer = DemandOffer(
        order_id=order.id, urban_school_id=school.id, teacher_id=teacher_id, main_classroom_id=room.id,
        weekday=weekday, period_from=period_from, period_to=period_to, note=note.strip(),
        status=OfferStatus.offered, created_by_id=actor.id, created_at=clock.now(),
    )
    session.add(offer)
    session.flush()
    audit.record(session, actor_id=actor.id, entity=ENTITY, entity_id=order.id, action="offer",
                 details={"offer_id": offer.id, "school_id": school.id, "teacher_id": teacher_id,
                          "weekday": weekday, "period_from": period_from, "period_to": period_to})
    return offer


def list_offers(session: Session, order_id: int, *, scope: Scope) -> list[OfferView]:
    """Offers of an order the viewer may see, oldest first (see the module docstring)."""
    order = _require_order(session, order_id)
    school = _require_visible(session, scope, order)
    region = session.get(Region, school.region_id)
    stmt = select(DemandOffer).where(DemandOffer.order_id == order.id)
    if not school_visible(scope, school, region.path if region else ""):
        if scope.school_id is None:
            return []
        stmt = stmt.where(DemandOffer.urban_school_id == scope.school_id)
    return _offer_views(session, session.scalars(stmt.order_by(DemandOffer.created_at, DemandOffer.id)).all())


def describe_offer(session: Session, offer: DemandOffer) -> OfferView:
    """One offer with its names (no visibility check: for the caller who just changed it)."""
    (view,) = _offer_views(session, [offer])
    return view


def _offer_views(session: Session, offers: Sequence[DemandOffer]) -> list[OfferView]:
    if not offers:
        return []
    schools = dict(session.execute(select(School.id, School.name)
                                   .where(School.id.in_({o.urban_school_id for o in offers}))).all())
    teachers = dict(session.execute(select(User.id, User.display_name)
                                    .where(User.id.in_({o.teacher_id for o in offers}))).all())
    rooms = dict(session.execute(select(Classroom.id, Classroom.name)
                                 .where(Classroom.id.in_({o.main_classroom_id for o in offers}))).all())
    return [OfferView(o, schools.get(o.urban_school_id, ""), teachers.get(o.teacher_id, ""),
                      rooms.get(o.main_classroom_id, "")) for o in offers]


def _decline_pending(session: Session, order: DemandOrder, keep: int | None = None) -> list[int]:
    pending = session.scalars(select(DemandOffer).where(
        DemandOffer.order_id == order.id, DemandOffer.status == OfferStatus.offered)).all()
    declined = []
    for o in pending:
        if o.id != keep:
            o.status = OfferStatus.declined
            declined.append(o.id)
    return declined


def decline_offer(session: Session, order_id: int, offer_id: int, *, reason: str = "", actor: User,
                  scope: Scope) -> DemandOffer:
    """The rural admin says no to one offer; the order stays open for others."""
    order = _require_order(session, order_id, for_update=True)
    require_school_admin(session, scope, order.rural_school_id)
    offer = _require_offer(session, order, offer_id)
    _require_open(order, "处理响应")
    if offer.status is not OfferStatus.offered:
        raise InvalidState(f"响应 #{offer.id} 状态为“{_OFFER_STATUS_ZH[offer.status]}”，不能谢绝")
    offer.status = OfferStatus.declined
    audit.record(session, actor_id=actor.id, entity=ENTITY, entity_id=order.id, action="decline", reason=reason,
                 details={"offer_id": offer.id})
    return offer


# ---------------------------------------------------------------- accepting


def _pairing_for(session: Session, order: DemandOrder, offer: DemandOffer, receiving_id: int) -> Pairing | None:
    """An active pairing of the two schools that covers this term, subject and these classrooms."""
    rows = session.scalars(select(Pairing).where(
        Pairing.active.is_(True), Pairing.urban_school_id == offer.urban_school_id,
        Pairing.rural_school_id == order.rural_school_id).order_by(Pairing.id)).all()
    for p in rows:
        if ((p.term_id is None or p.term_id == order.term_id)
                and (not p.subjects or order.subject in p.subjects)
                and p.urban_classroom_id in (None, offer.main_classroom_id)
                and p.rural_classroom_id in (None, receiving_id)):
            return p
    return None


def series_title(order: DemandOrder, urban_school_name: str) -> str:
    return f"{order.grade}{order.subject}（{urban_school_name} 专递）"


def accept_offer(
    session: Session, order_id: int, offer_id: int, *, receiving_classroom_id: int | None = None,
    actor: User, scope: Scope,
) -> Acceptance:
    """Accept one offer: pairing, whole-term dedicated series, offer and order states, all or nothing.

    ``receiving_classroom_id`` overrides (or supplies) the order's receiving
    classroom.  A ``Conflict`` or ``Invalid`` from booking leaves every row as
    it was.
    """
    order = _require_order(session, order_id, for_update=True)
    rural = require_school_admin(session, scope, order.rural_school_id)
    offer = _require_offer(session, order, offer_id)
    _require_open(order, "接受响应")
    if offer.status is not OfferStatus.offered:
        raise InvalidState(f"响应 #{offer.id} 状态为“{_OFFER_STATUS_ZH[offer.status]}”，不能接受")
    receiving_id = receiving_classroom_id if receiving_classroom_id is not None else order.receiving_classroom_id
    if receiving_id is None:
        raise Invalid("该需求订单未指定接收教室，接受响应时请选择接收教室")
    _check_receiving(session, rural, receiving_id)
    urban = session.get(School, offer.urban_school_id)
    assert urban is not None
    _, calendar = load_calendar(session, order.term_id)
    spec = SeriesSpec(
        kind=LessonKind.dedicated, title=series_title(order, urban.name), subject=order.subject, grade=order.grade,
        term_id=order.term_id, main_classroom_id=offer.main_classroom_id, main_teacher_id=offer.teacher_id,
        weekday=offer.weekday, period_from=offer.period_from, period_to=offer.period_to,
        week_from=1, week_to=calendar.weeks, receivers=(ReceiverSpec(receiving_id),),
    )
    reason = f"需求订单 #{order.id} 接受 {urban.name} 的响应 #{offer.id}"
    with session.begin_nested():  # a failed booking also takes back a pairing made for it
        pairing = _pairing_for(session, order, offer, receiving_id)
        created = pairing is None
        if pairing is None:
            pairing = Pairing(urban_school_id=urban.id, rural_school_id=rural.id, subjects=[order.subject],
                              term_id=order.term_id, active=True)
            session.add(pairing)
            session.flush()
            audit.record(session, actor_id=actor.id, entity="pairing", entity_id=pairing.id, action="create",
                         reason=reason, details={"order_id": order.id})
        series = book_agreed_series(session, spec, actor=actor, reason=reason)
        session.flush()
    instances = session.scalar(select(func.count()).select_from(LessonInstance)
                               .where(LessonInstance.series_id == series.id)) or 0
    offer.status = OfferStatus.accepted
    offer.series_id = series.id
    declined = _decline_pending(session, order, keep=offer.id)
    order.receiving_classroom_id = receiving_id
    order.status = DemandStatus.matched
    audit.record(session, actor_id=actor.id, entity=ENTITY, entity_id=order.id, action="accept", reason=reason,
                 details={"offer_id": offer.id, "series_id": series.id, "pairing_id": pairing.id,
                          "pairing_created": created, "instances": int(instances),
                          "receiving_classroom_id": receiving_id, "declined_offer_ids": declined})
    session.flush()
    return Acceptance(order, offer, series, pairing, created, int(instances), declined)
