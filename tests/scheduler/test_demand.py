"""需求订单: posting, offering, accepting (pairing + booking), declining and closing, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from sqlalchemy import func, select

from scheduler import bookings, demand
from scheduler.access import scope_of
from scheduler.errors import Conflict, Forbidden, Invalid, InvalidState, NotFound
from scheduler.models import (
    AuditEntry,
    Classroom,
    DemandOffer,
    DemandOrder,
    DemandStatus,
    LessonInstance,
    LessonKind,
    LessonSeries,
    Occupancy,
    OfferStatus,
    Pairing,
    PeriodScheme,
    RegionLevel,
    ResourceType,
    Role,
    School,
    SchoolKind,
    SeriesStatus,
)
from tests.utils.factory import RURAL_BELLS, add_region, add_scheme, add_user


@pytest.fixture
def urban_b_room(session, world) -> Classroom:
    """The world has no classroom at 西区第一小学; offers from there need one."""
    room = Classroom(school_id=world.urban_b.id, name="西区一小 201 主讲教室", capacity=45)
    session.add(room)
    session.commit()
    return room


def as_(session, user):
    user = session.merge(user)
    return user, scope_of(session, user)


def post(session, w, actor=None, **kw) -> DemandOrder:
    actor, scope = as_(session, actor or w.rural_admin)
    base = dict(rural_school_id=w.rural.id, term_id=w.term.id, subject="英语", grade="四年级",
                receiving_classroom_id=w.recv_room.id, preferred_slots=[demand.PreferredSlot(2, 3)],
                note="四年级缺英语老师")
    base.update(kw)
    return demand.create_order(session, **base, actor=actor, scope=scope)  # type: ignore[arg-type]


def offer(session, order_id, actor, **kw) -> DemandOffer:
    actor, scope = as_(session, actor)
    return demand.make_offer(session, order_id, **kw, actor=actor, scope=scope)


def accept(session, w, order_id, offer_id, actor=None, **kw) -> demand.Acceptance:
    actor, scope = as_(session, actor or w.rural_admin)
    return demand.accept_offer(session, order_id, offer_id, **kw, actor=actor, scope=scope)


def offer_b(session, w, order_id, room, **kw) -> DemandOffer:
    """西区一小 offers 赵老师 on Tuesdays, period 3 (09:50–10:30 in urban bells)."""
    base = dict(teacher_id=w.teacher_b.id, main_classroom_id=room.id, weekday=2, period_from=3, period_to=3)
    base.update(kw)
    return offer(session, order_id, w.admin_b, **base)


def offer_a(session, w, order_id, **kw) -> DemandOffer:
    """王老师 of 东区实验小学 offers himself on Wednesdays, period 2."""
    base = dict(teacher_id=w.teacher.id, main_classroom_id=w.main_room.id, weekday=3, period_from=2, period_to=2)
    base.update(kw)
    return offer(session, order_id, w.teacher, **base)


def pairings_between(session, urban_id, rural_id) -> list[Pairing]:
    return list(session.scalars(select(Pairing).where(Pairing.urban_school_id == urban_id,
                                                      Pairing.rural_school_id == rural_id)).all())


def audit_actions(session, order_id) -> list[str]:
    return list(session.scalars(select(AuditEntry.action).where(AuditEntry.entity == "demand_order",
                                                                AuditEntry.entity_id == order_id)
                                .order_by(AuditEntry.id)).all())


# ---------------------------------------------------------------- accepting


def test_accepting_an_offer_pairs_the_schools_books_the_term_and_declines_the_others(session, world, urban_b_room):
    w = world
    order = post(session, w)
    chosen = offer_b(session, w, order.id, urban_b_room)
    other = offer_a(session, w, order.id)
    session.commit()
    assert pairings_between(session, w.urban_b.id, w.rural.id) == []

    result = accept(session, w, order.id, chosen.id)
    session.commit()

    assert result.pairing_created
    (pairing,) = pairings_between(session, w.urban_b.id, w.rural.id)
    assert pairing.active and pairing.term_id == w.term.id and pairing.subjects == ["英语"]
    series = session.get(LessonSeries, result.series.id)
    assert series.status is SeriesStatus.approved and series.kind is LessonKind.dedicated
    assert series.title == "四年级英语（西区第一小学 专递）"
    assert (series.main_teacher_id, series.main_classroom_id) == (w.teacher_b.id, urban_b_room.id)
    assert [r.classroom_id for r in series.receivers] == [w.recv_room.id]
    insts = session.scalars(select(LessonInstance).where(LessonInstance.series_id == series.id)
                            .order_by(LessonInstance.day)).all()
    # Every Tuesday from 1 Sept 2026 to 19 Jan 2027 (21) except the National Day holiday on 6 Oct.
    assert len(insts) == result.instances == 20
    assert date(2026, 10, 6) not in [i.day for i in insts]
    assert all(i.day.isoweekday() == 2 for i in insts)
    assert (insts[0].starts_at, insts[0].ends_at) == (datetime(2026, 9, 1, 9, 50), datetime(2026, 9, 1, 10, 30))
    held = session.scalars(select(Occupancy.resource_id).where(Occupancy.instance_id == insts[0].id,
                                                               Occupancy.resource_type == ResourceType.classroom))
    assert set(held) == {urban_b_room.id, w.recv_room.id}

    assert session.get(DemandOffer, chosen.id).status is OfferStatus.accepted
    assert session.get(DemandOffer, chosen.id).series_id == series.id
    assert session.get(DemandOffer, other.id).status is OfferStatus.declined
    assert result.declined_offer_ids == [other.id]
    assert session.get(DemandOrder, order.id).status is DemandStatus.matched

    assert audit_actions(session, order.id) == ["create", "offer", "offer", "accept"]
    entry = session.scalar(select(AuditEntry).where(AuditEntry.entity == "demand_order",
                                                    AuditEntry.action == "accept"))
    assert entry.details["series_id"] == series.id and entry.details["pairing_created"] is True
    assert session.scalar(select(func.count()).select_from(AuditEntry).where(
        AuditEntry.entity == "pairing", AuditEntry.entity_id == pairing.id, AuditEntry.action == "create")) == 1
    assert session.scalar(select(func.count()).select_from(AuditEntry).where(
        AuditEntry.entity == "series", AuditEntry.entity_id == series.id)) == 1


def test_an_active_matching_pairing_is_reused(session, world):
    w = world
    order = post(session, w)
    o = offer_a(session, w, order.id)
    result = accept(session, w, order.id, o.id)
    session.commit()
    assert not result.pairing_created and result.pairing.id == w.pairing.id
    assert len(pairings_between(session, w.urban.id, w.rural.id)) == 1


def test_a_pairing_for_another_subject_is_not_reused(session, world, urban_b_room):
    w = world  # 西区一小 and 山口村小 are paired for 数学 only
    rural_b_admin = add_user(session, "rural_b_admin", Role.admin, school=w.rural_b)
    session.commit()
    order = post(session, w, actor=rural_b_admin, rural_school_id=w.rural_b.id,
                 receiving_classroom_id=w.recv_room_b.id, preferred_slots=[])
    o = offer_b(session, w, order.id, urban_b_room)
    result = accept(session, w, order.id, o.id, actor=rural_b_admin)
    session.commit()
    assert result.pairing_created
    assert sorted(p.subjects[0] for p in pairings_between(session, w.urban_b.id, w.rural_b.id)) == ["数学", "英语"]


def test_a_conflicting_offer_is_refused_and_nothing_changes(session, world, urban_b_room):
    w = world
    admin, scope = as_(session, w.urban_admin)
    bookings.create_series(session, bookings.SeriesSpec(
        kind=LessonKind.dedicated, title="四年级数学", subject="数学", grade="四年级", term_id=w.term.id,
        main_classroom_id=w.main_room.id, main_teacher_id=w.teacher.id, weekday=2, period_from=3, period_to=3,
        receivers=(bookings.ReceiverSpec(w.recv_room.id),)), actor=admin, scope=scope)
    order = post(session, w)
    o = offer_b(session, w, order.id, urban_b_room)
    session.commit()

    with pytest.raises(Conflict) as err:
        accept(session, w, order.id, o.id)
    assert {(i.resource, i.resource_id) for i in err.value.items} == {("classroom", w.recv_room.id)}
    assert err.value.items[0].lesson_title == "四年级数学"
    # The savepoint took back the pairing made for this booking, even before the caller rolls back.
    assert pairings_between(session, w.urban_b.id, w.rural.id) == []
    session.commit()
    assert session.get(DemandOrder, order.id).status is DemandStatus.open
    assert session.get(DemandOffer, o.id).status is OfferStatus.offered
    assert session.get(DemandOffer, o.id).series_id is None
    assert session.scalar(select(func.count()).select_from(LessonSeries)) == 1
    assert audit_actions(session, order.id) == ["create", "offer"]


def test_bells_that_do_not_fit_are_invalid_and_nothing_changes(session, world, urban_b_room):
    w = world
    scheme = session.scalar(select(PeriodScheme).where(PeriodScheme.school_id == w.rural.id))
    p3 = next(p for p in scheme.periods if p.number == 3)
    p3.start_time = p3.start_time.replace(hour=9, minute=55)  # rural period 3 now starts after the urban 09:50
    order = post(session, w)
    o = offer_b(session, w, order.id, urban_b_room)
    session.commit()
    with pytest.raises(Invalid, match="铃声不一致"):
        accept(session, w, order.id, o.id)
    session.commit()
    assert session.get(DemandOrder, order.id).status is DemandStatus.open
    assert pairings_between(session, w.urban_b.id, w.rural.id) == []
    assert session.scalar(select(func.count()).select_from(LessonSeries)) == 0


def test_the_receiving_classroom_is_needed_at_acceptance_and_may_be_given_then(session, world):
    w = world
    order = post(session, w, receiving_classroom_id=None)
    o = offer_a(session, w, order.id)
    session.commit()
    with pytest.raises(Invalid, match="接收教室"):
        accept(session, w, order.id, o.id)
    with pytest.raises(Invalid, match="不属于"):
        accept(session, w, order.id, o.id, receiving_classroom_id=w.recv_room_b.id)
    result = accept(session, w, order.id, o.id, receiving_classroom_id=w.recv_room2.id)
    session.commit()
    assert session.get(DemandOrder, order.id).receiving_classroom_id == w.recv_room2.id
    assert [r.classroom_id for r in result.series.receivers] == [w.recv_room2.id]


def test_only_a_manager_of_the_rural_school_accepts(session, world):
    w = world
    order = post(session, w)
    o = offer_a(session, w, order.id)
    session.commit()
    for who in (w.admin_b, w.urban_admin, w.teacher, w.researcher_a):
        with pytest.raises(Forbidden):
            accept(session, w, order.id, o.id, actor=who)
    # The district's bureau admin manages the rural school too.
    assert accept(session, w, order.id, o.id, actor=w.city_admin).order.status is DemandStatus.matched


def test_an_order_is_matched_once(session, world, urban_b_room):
    w = world
    order = post(session, w)
    first, second = offer_a(session, w, order.id), offer_b(session, w, order.id, urban_b_room)
    accept(session, w, order.id, first.id)
    session.commit()
    with pytest.raises(InvalidState):
        accept(session, w, order.id, second.id)
    with pytest.raises(NotFound):
        accept(session, w, order.id, 99999)


# ---------------------------------------------------------------- posting and offering


def test_only_an_admin_of_a_rural_school_posts_orders(session, world):
    w = world
    with pytest.raises(Forbidden):
        post(session, w, actor=w.urban_admin)  # someone else's rural school
    with pytest.raises(Forbidden):
        post(session, w, actor=w.assistant)  # a teacher of the rural school
    with pytest.raises(Invalid, match="不是农村学校"):
        post(session, w, actor=w.admin_b, rural_school_id=w.urban_b.id, receiving_classroom_id=None)
    with pytest.raises(Invalid, match="不属于"):
        post(session, w, receiving_classroom_id=w.main_room.id)
    with pytest.raises(Invalid, match="第 9 节"):
        post(session, w, preferred_slots=[demand.PreferredSlot(2, 9)])
    order = post(session, w, preferred_slots=[demand.PreferredSlot(2, 3), demand.PreferredSlot(2, 3)])
    assert order.preferred_slots == [{"weekday": 2, "period": 3}] and order.status is DemandStatus.open


def test_offer_rules(session, world, urban_b_room):
    w = world
    order = post(session, w)
    session.commit()
    with pytest.raises(Invalid, match="不是西区第一小学的教师"):
        offer_b(session, w, order.id, urban_b_room, teacher_id=w.teacher.id)
    with pytest.raises(Invalid, match="不属于西区第一小学"):
        offer_b(session, w, order.id, w.main_room)
    with pytest.raises(Forbidden, match="本人"):
        offer_a(session, w, order.id, teacher_id=w.teacher2.id)
    with pytest.raises(Forbidden, match="城区学校"):
        offer(session, order.id, w.rural_admin, teacher_id=w.assistant.id, main_classroom_id=w.recv_room2.id,
              weekday=2, period_from=3)
    with pytest.raises(Forbidden):
        offer(session, order.id, w.student, teacher_id=w.teacher.id, main_classroom_id=w.main_room.id,
              weekday=2, period_from=3)
    with pytest.raises(Invalid, match="第 8 节"):
        offer_b(session, w, order.id, urban_b_room, period_from=7, period_to=8)
    first = offer_a(session, w, order.id)
    assert (first.urban_school_id, first.period_to) == (w.urban.id, 2)
    with pytest.raises(Invalid, match="重复"):
        offer_a(session, w, order.id, weekday=4)


def test_a_teacher_in_another_city_does_not_see_or_answer_the_order(session, world):
    w = world
    other_city = add_region(session, "远方市", RegionLevel.city)
    far = School(name="远方市第一小学", kind=SchoolKind.urban, region_id=other_city.id)
    session.add(far)
    session.flush()
    far_teacher = add_user(session, "far_teacher", Role.teacher, school=far)
    far_room = Classroom(school_id=far.id, name="远方 101", capacity=40)
    session.add(far_room)
    session.flush()
    order = post(session, w)
    session.commit()
    with pytest.raises(Forbidden):
        offer(session, order.id, far_teacher, teacher_id=far_teacher.id, main_classroom_id=far_room.id,
              weekday=2, period_from=3)
    _, scope = as_(session, far_teacher)
    assert demand.list_orders(session, scope=scope) == ([], 0)


# ---------------------------------------------------------------- the board


def test_staff_see_the_orders_of_their_city_and_filters_narrow_them(session, world):
    w = world
    rural_b_admin = add_user(session, "rural_b_admin", Role.admin, school=w.rural_b)
    other_city = add_region(session, "远方市", RegionLevel.city)
    far_rural = School(name="远方村小", kind=SchoolKind.rural, region_id=other_city.id)
    session.add(far_rural)
    session.flush()
    add_scheme(session, far_rural, RURAL_BELLS)
    far_admin = add_user(session, "far_admin", Role.admin, school=far_rural)
    a = post(session, w)
    b = post(session, w, actor=rural_b_admin, rural_school_id=w.rural_b.id, receiving_classroom_id=None,
             subject="数学", preferred_slots=[])
    far = post(session, w, actor=far_admin, rural_school_id=far_rural.id, receiving_classroom_id=None,
               preferred_slots=[])
    session.commit()

    def ids(user, **f):
        _, scope = as_(session, user)
        views, total = demand.list_orders(session, scope=scope, f=demand.OrderFilter(**f))
        assert total == len(views)
        return {v.order.id for v in views}

    city_orders = {a.id, b.id}
    # District A's teacher sees district B's rural needs too: the city is the unit.
    for viewer in (w.teacher, w.teacher_b, w.urban_admin, w.rural_admin, w.researcher_a, w.researcher_city,
                   w.city_admin):
        assert ids(viewer) == city_orders, viewer.username
    assert ids(far_admin) == {far.id}
    assert ids(w.sysadmin) == city_orders | {far.id}
    assert ids(w.teacher, region_id=w.district_b.id) == {b.id}
    assert ids(w.teacher, subject="英语") == {a.id}
    assert ids(w.teacher, status=DemandStatus.closed) == set()
    assert ids(w.teacher, rural_school_id=w.rural.id, term_id=w.term.id, grade="四年级") == {a.id}
    for who in (w.student, w.terminal_main):
        _, scope = as_(session, who)
        with pytest.raises(Forbidden):
            demand.list_orders(session, scope=scope)
        with pytest.raises(Forbidden):
            demand.get_order(session, a.id, scope=scope)
    _, scope = as_(session, w.teacher)
    page, total = demand.list_orders(session, scope=scope, offset=0, limit=1)
    assert total == 2 and len(page) == 1


def test_the_rural_side_sees_every_offer_and_each_urban_school_its_own(session, world, urban_b_room):
    w = world
    order = post(session, w)
    a = offer_a(session, w, order.id)
    b = offer_b(session, w, order.id, urban_b_room)
    session.commit()

    def seen(user):
        _, scope = as_(session, user)
        return [v.offer.id for v in demand.list_offers(session, order.id, scope=scope)]

    assert seen(w.rural_admin) == seen(w.assistant) == seen(w.researcher_a) == [a.id, b.id]
    assert seen(w.teacher2) == [a.id]
    assert seen(w.admin_b) == [b.id]
    assert seen(w.researcher_b) == []
    _, scope = as_(session, w.rural_admin)
    view = demand.get_order(session, order.id, scope=scope)
    assert view.offer_count == 2 and view.rural_school_name == "东区石桥村小"
    assert view.receiving_classroom_name == "石桥村小 一年级教室"
    assert [v.teacher_name for v in view.offers] == ["王老师", "赵老师"]


# ---------------------------------------------------------------- declining and closing


def test_declining_one_offer_keeps_the_order_open(session, world, urban_b_room):
    w = world
    order = post(session, w)
    a, b = offer_a(session, w, order.id), offer_b(session, w, order.id, urban_b_room)
    actor, scope = as_(session, w.admin_b)
    with pytest.raises(Forbidden):
        demand.decline_offer(session, order.id, a.id, actor=actor, scope=scope)
    actor, scope = as_(session, w.rural_admin)
    demand.decline_offer(session, order.id, a.id, reason="时间不合适", actor=actor, scope=scope)
    session.commit()
    assert session.get(DemandOffer, a.id).status is OfferStatus.declined
    assert session.get(DemandOrder, order.id).status is DemandStatus.open
    with pytest.raises(InvalidState):
        accept(session, w, order.id, a.id)
    assert accept(session, w, order.id, b.id).declined_offer_ids == []
    assert audit_actions(session, order.id)[-2:] == ["decline", "accept"]


def test_closing_withdraws_the_order_and_declines_pending_offers(session, world):
    w = world
    order = post(session, w)
    a = offer_a(session, w, order.id)
    actor, scope = as_(session, w.urban_admin)
    with pytest.raises(Forbidden):
        demand.close_order(session, order.id, actor=actor, scope=scope)
    actor, scope = as_(session, w.rural_admin)
    demand.close_order(session, order.id, reason="已由本校教师承担", actor=actor, scope=scope)
    session.commit()
    assert session.get(DemandOrder, order.id).status is DemandStatus.closed
    assert session.get(DemandOffer, a.id).status is OfferStatus.declined
    with pytest.raises(InvalidState):
        demand.close_order(session, order.id, actor=actor, scope=scope)
    with pytest.raises(InvalidState):
        offer_a(session, w, order.id, weekday=4)
    entry = session.scalar(select(AuditEntry).where(AuditEntry.entity == "demand_order",
                                                    AuditEntry.action == "close"))
    assert entry.reason == "已由本校教师承担" and entry.details == {"declined_offer_ids": [a.id]}
