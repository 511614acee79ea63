"""智能排课: proposals, their ranking and their named exceptions, on SQLite and PostgreSQL.

The world (``tests.utils.factory``): the term starts on Tuesday 2026-09-01 (week 1 is the week of
Monday 08-31), 国庆节 runs 10-01..10-07 (Thursday of week 5 to Wednesday of week 6), Saturday
10-10 runs Friday's timetable, and the clock reads 2026-08-24.  Weeks 6–9 thus lose Monday,
Tuesday and Wednesday of week 6 to the holiday, while Thursday and Friday meet every week.
"""

from __future__ import annotations

from datetime import date, time

import pytest
from sqlalchemy import func, select

from scheduler import bookings, slots
from scheduler.access import scope_of
from scheduler.errors import Conflict, Forbidden, Invalid
from scheduler.models import Classroom, LessonInstance, LessonKind, SeriesStatus
from tests.utils.factory import add_scheme

# The rural school's bells for this term: its 4th period (10:45–11:30) no longer holds the urban
# 4th period (10:40–11:20), so the finder must never propose urban period 4.
RURAL_TERM_BELLS = [("07:55", "08:40"), ("08:45", "09:35"), ("09:45", "10:35"), ("10:45", "11:30"),
                    ("13:50", "14:40"), ("14:45", "15:35"), ("15:40", "16:20")]


def _spec(w, **kw) -> bookings.SeriesSpec:
    base = dict(kind=LessonKind.dedicated, title="三年级数学", subject="数学", grade="三年级", term_id=w.term.id,
                main_classroom_id=w.main_room.id, main_teacher_id=w.teacher.id, weekday=4, period_from=2,
                period_to=2, receivers=(bookings.ReceiverSpec(w.recv_room.id),))
    base.update(kw)
    return bookings.SeriesSpec(**base)


def _book(session, actor, spec):
    actor = session.merge(actor)
    return bookings.create_series(session, spec, actor=actor, scope=scope_of(session, actor))


@pytest.fixture
def busy(session, world):
    """王老师 teaches 三年级数学 in 302 on Thursday period 2 of week 7 only; 西区第一小学 holds the receiving
    classroom on Thursday period 2 of week 9 (a lesson the urban admin may not read)."""
    add_scheme(session, session.merge(world.rural), RURAL_TERM_BELLS, term=session.merge(world.term))
    _book(session, world.urban_admin, _spec(world, kind=LessonKind.master, main_classroom_id=world.main_room2.id,
                                            receivers=(), week_from=7, week_to=7))
    room_b = Classroom(school_id=world.urban_b.id, name="西区一小 201 主讲教室")
    session.add(room_b)
    session.flush()
    _book(session, world.admin_b, _spec(world, title="四年级科学", subject="科学", main_classroom_id=room_b.id,
                                        main_teacher_id=world.teacher_b.id, week_from=9, week_to=9,
                                        pairing_override_reason="临时借用"))
    session.commit()
    return world


def _find(session, w, actor=None, **kw):
    actor = session.merge(actor or w.urban_admin)
    args = dict(subject="数学", term_id=w.term.id, teacher_id=w.teacher.id, main_classroom_id=w.main_room.id,
                receiver_ids=[w.recv_room.id], week_from=6, week_to=9)
    args.update(kw)
    return slots.for_pairing(session, w.pairing.id, actor=actor, scope=scope_of(session, actor), **args)


def test_proposals_lie_inside_both_schools_bells_and_name_the_receiving_period(session, busy):
    found = _find(session, busy)
    assert found.week_from == 6 and found.week_to == 9
    assert {p.period_from for p in found.proposals} == {1, 2, 3, 5, 6, 7}  # urban 4 is outside rural bells
    assert found.candidates == len(found.proposals) == 5 * 6
    thu3 = next(p for p in found.proposals if (p.weekday, p.period_from) == (4, 3))
    assert (thu3.start, thu3.end) == (time(9, 50), time(10, 30))
    (r,) = thu3.receiving
    assert (r.classroom_id, r.period_from, r.start, r.end) == (busy.recv_room.id, 3, time(9, 45), time(10, 35))


def test_ranking_same_period_every_week_first_then_fewest_holidays_clashes_last(session, busy):
    found = _find(session, busy)
    keys = [(p.weekday, p.period_from) for p in found.proposals]
    # Thursday and Friday meet every week of 6–9 (Friday twice in week 6: Saturday 10-10 runs Friday)
    assert keys[:11] == [(4, 1), (4, 3), (4, 5), (4, 6), (4, 7), (5, 1), (5, 2), (5, 3), (5, 5), (5, 6), (5, 7)]
    assert [p.lessons for p in found.proposals[:6]] == [4, 4, 4, 4, 4, 5]
    assert all(not p.exceptions and p.bookable for p in found.proposals[:11])
    # then Monday to Wednesday, each losing week 6 to 国庆节
    assert keys[11:29] == [(d, n) for d in (1, 2, 3) for n in (1, 2, 3, 5, 6, 7)]
    mon1 = found.proposals[11]
    assert [(e.week, e.day, e.kind) for e in mon1.exceptions] == [(6, date(2026, 10, 5), "holiday")]
    assert mon1.exceptions[0].message == "第6周 10-05（周一） 国庆节放假，当天不上课"
    assert mon1.bookable and mon1.lessons == 3
    # last: Thursday period 2, in the way in two weeks
    last = found.proposals[-1]
    assert (last.weekday, last.period_from, last.clash_weeks, last.bookable) == (4, 2, 2, False)


def test_exceptions_name_the_week_and_what_is_in_the_way_as_the_caller_may_read_it(session, busy):
    last = _find(session, busy).proposals[-1]
    assert [(e.week, e.day, e.kind) for e in last.exceptions] == [(7, date(2026, 10, 15), "clash"),
                                                                  (9, date(2026, 10, 29), "clash")]
    assert last.exceptions[0].message == "第7周 10-15（周四）：教师“王老师”已有课程《三年级数学》"
    # another school's lesson in the receiving classroom: only that it is taken
    assert last.exceptions[1].message == "第9周 10-29（周四）：教室“石桥村小 一年级教室”（东区石桥村小）已被占用"
    (hidden,) = last.exceptions[1].items
    assert hidden.lesson_title is None and hidden.instance_id is None
    # the city admin sees both schools: the lesson and its teacher are named
    seen = _find(session, busy, actor=busy.city_admin).proposals[-1]
    assert seen.exceptions[1].message == ("第9周 10-29（周四）：接收教室“石桥村小 一年级教室”（东区石桥村小）"
                                          "已有课程《四年级科学》（赵老师）")


def test_booking_a_proposal_creates_the_series_and_the_same_slot_again_is_a_conflict(session, busy):
    best = _find(session, busy).proposals[0]
    spec = _spec(busy, weekday=best.weekday, period_from=best.period_from, period_to=best.period_to,
                 week_from=best.week_from, week_to=best.week_to)
    series = _book(session, busy.urban_admin, spec)
    session.commit()
    assert series.status is SeriesStatus.approved
    n = session.scalar(select(func.count()).select_from(LessonInstance).where(LessonInstance.series_id == series.id))
    assert n == best.lessons == 4
    with pytest.raises(Conflict):
        _book(session, busy.urban_admin, spec)
    session.rollback()
    again = next(p for p in _find(session, busy).proposals if (p.weekday, p.period_from) == (4, 1))
    assert again.clash_weeks == 4 and not again.bookable


def test_length_two_needs_both_periods_free_and_inside_both_bells(session, busy):
    keys = {(p.weekday, p.period_from, p.period_to) for p in _find(session, busy, length=2).proposals}
    assert (4, 1, 2) in keys and (4, 5, 6) in keys
    assert not any(pf in (3, 4) for _, pf, _ in keys)  # 3–4 and 4–5 reach into urban period 4
    assert (4, 7, 8) not in keys  # no 8th period


def test_who_may_look_for_slots_is_who_may_book(session, busy):
    with pytest.raises(Forbidden):
        _find(session, busy, actor=busy.researcher_a)
    with pytest.raises(Forbidden):
        _find(session, busy, actor=busy.admin_b)  # an admin of another school
    with pytest.raises(Forbidden):
        _find(session, busy, actor=busy.teacher2)  # a teacher, for someone else
    assert _find(session, busy, actor=busy.teacher).proposals  # a teacher, for themselves


def test_pairing_rules(session, busy):
    with pytest.raises(Invalid):
        _find(session, busy, receiver_ids=[busy.recv_room_b.id])  # not the pairing's rural school
    with pytest.raises(Invalid):
        _find(session, busy, week_from=9, week_to=6)
    assert slots.week_range("3-12") == (3, 12) and slots.week_range("") == (1, None)
    with pytest.raises(Invalid):
        slots.week_range("x")
