"""Booking a series and changing single lessons, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from scheduler import bookings
from scheduler.access import scope_of
from scheduler.errors import Conflict, Forbidden, Invalid
from scheduler.models import (
    AuditEntry, InstanceStatus, LessonInstance, LessonKind, Occupancy, ResourceType, SeriesStatus, WeekPattern,
)


def spec(w, **kw) -> bookings.SeriesSpec:
    base = dict(
        kind=LessonKind.dedicated, title="三年级数学", subject="数学", grade="三年级", term_id=w.term.id,
        main_classroom_id=w.main_room.id, main_teacher_id=w.teacher.id, weekday=1, period_from=1, period_to=1,
        receivers=(bookings.ReceiverSpec(w.recv_room.id, assistant_id=w.assistant.id),),
    )
    base.update(kw)
    return bookings.SeriesSpec(**base)


def book(session, w, actor=None, **kw):
    actor = session.merge(actor or w.urban_admin)
    return bookings.create_series(session, spec(w, **kw), actor=actor, scope=scope_of(session, actor))


def instances(session, series_id):
    return session.scalars(select(LessonInstance).where(LessonInstance.series_id == series_id)
                           .order_by(LessonInstance.day)).all()


def test_admin_booking_expands_every_monday_of_term_except_holidays(session, world):
    series = book(session, world)
    session.commit()
    days = [i.day for i in instances(session, series.id)]
    assert series.status is SeriesStatus.approved
    assert days[0] == date(2026, 9, 7)
    assert date(2026, 10, 5) not in days  # National Day holiday
    assert all(d.isoweekday() == 1 for d in days)
    assert len(days) == 19  # 20 Mondays from 7 Sept to 18 Jan, less 5 Oct
    first = instances(session, series.id)[0]
    assert (first.starts_at, first.ends_at) == (datetime(2026, 9, 7, 8, 0), datetime(2026, 9, 7, 8, 40))
    occ = session.scalar(select(func.count()).select_from(Occupancy).where(Occupancy.instance_id == first.id))
    assert occ == 4  # teacher, main room, receiving room, assistant


def test_makeup_saturday_runs_fridays_timetable(session, world):
    series = book(session, world, weekday=5)
    session.commit()
    assert date(2026, 10, 10) in [i.day for i in instances(session, series.id)]


def test_odd_weeks_only(session, world):
    series = book(session, world, week_pattern=WeekPattern.odd, week_from=1, week_to=6)
    session.commit()
    # week 1 is 31 Aug - 6 Sept (term starts Tue 1 Sept), so odd weeks' Mondays are 14 and 28 Sept
    assert [i.day for i in instances(session, series.id)] == [date(2026, 9, 14), date(2026, 9, 28)]


def test_teacher_double_booking_is_a_conflict_naming_teacher_and_lesson(session, world):
    book(session, world)
    session.commit()
    with pytest.raises(Conflict) as err:
        book(session, world, main_classroom_id=world.main_room2.id, title="三年级科学",
             receivers=(bookings.ReceiverSpec(world.recv_room2.id),))
    items = err.value.items
    assert {i.resource for i in items} == {"teacher"}
    assert items[0].resource_name == "王老师" and items[0].lesson_title == "三年级数学"
    assert items[0].message == "教师“王老师”在 2026-09-07 08:00–08:40 已有课程《三年级数学》"
    # one weekly clash is one sentence: the pattern, then the teaching weeks (week 6 is the National Day holiday)
    assert err.value.message == ("排课冲突，共 19 处：每周一 第1节 08:00–08:40，第2–5、7–21周，共19次："
                                 "教师“王老师”已有课程《三年级数学》")
    session.rollback()
    assert session.scalar(select(func.count()).select_from(LessonInstance)) == 19  # nothing half-booked


def test_receiving_classroom_double_booking_conflicts(session, world):
    book(session, world)
    session.commit()
    with pytest.raises(Conflict) as err:
        book(session, world, main_classroom_id=world.main_room2.id, main_teacher_id=world.teacher2.id,
             receivers=(bookings.ReceiverSpec(world.recv_room.id),))
    assert {(i.resource, i.resource_id) for i in err.value.items} == {("classroom", world.recv_room.id)}


def test_a_receiving_classroom_clash_names_its_school_role_and_the_lessons_teacher(session, world):
    book(session, world)
    # 西区山口村小 has a classroom of the same name: only the school tells them apart
    session.get(type(world.recv_room_b), world.recv_room_b.id).name = world.recv_room.name
    session.commit()
    with pytest.raises(Conflict) as err:
        book(session, world, main_classroom_id=world.main_room2.id, main_teacher_id=world.teacher2.id,
             title="三年级英语", receivers=(bookings.ReceiverSpec(world.recv_room.id),))
    (group,) = err.value.groups
    assert group.message() == ("每周一 第1节 08:00–08:40，第2–5、7–21周，共19次：接收教室“石桥村小 一年级教室”"
                               "（东区石桥村小）已有课程《三年级数学》（王老师）")
    assert len(group.items) == 19 and len(err.value.items) == 19
    assert err.value.items[0].message == ("接收教室“石桥村小 一年级教室”（东区石桥村小）在 2026-09-07 08:00–08:40 "
                                          "已有课程《三年级数学》（王老师）")
    assert "山口村小" not in err.value.message


def test_clashes_are_grouped_by_pattern_one_group_per_resource_and_time(session, world):
    book(session, world)
    book(session, world, weekday=3, period_from=2, period_to=2, week_from=2, week_to=4, title="三年级科学",
         main_teacher_id=world.teacher2.id, receivers=(bookings.ReceiverSpec(world.recv_room2.id),))
    session.commit()
    with pytest.raises(Conflict) as err:  # three Mondays: one group, not three sentences
        book(session, world, week_from=2, week_to=4, title="三年级美术", main_teacher_id=world.teacher2.id,
             receivers=(bookings.ReceiverSpec(world.recv_room2.id),))
    messages = [g.message() for g in err.value.groups]
    assert messages == [
        "每周一 第1节 08:00–08:40，第2–4周，共3次：主讲教室“实验小学 301 主讲教室”（东区实验小学）已有课程《三年级数学》（王老师）",
    ]
    session.rollback()
    with pytest.raises(Conflict) as err:
        book(session, world, weekday=3, period_from=2, period_to=2, week_from=3, week_to=3, title="三年级美术",
             main_classroom_id=world.main_room2.id, receivers=(bookings.ReceiverSpec(world.recv_room2.id),))
    assert [g.message() for g in err.value.groups] == [
        "2026-09-16（周三）第2节 08:50–09:30：接收教室“石桥村小 二年级教室”（东区石桥村小）已有课程《三年级科学》（李老师）",
    ]


def test_dedicated_needs_pairing_unless_admin_overrides_with_reason(session, world):
    with pytest.raises(Invalid, match="结对") as err:
        book(session, world, receivers=(bookings.ReceiverSpec(world.recv_room_b.id),))
    # the refusal names both schools and the subject
    assert err.value.message.startswith("主讲学校“东区实验小学”与接收学校“西区山口村小”之间没有“数学”学科的结对关系")
    session.rollback()
    s = book(session, world, actor=world.sysadmin, receivers=(bookings.ReceiverSpec(world.recv_room_b.id),),
             pairing_override_reason="区县统筹安排")
    session.commit()
    assert s.pairing_override_reason == "区县统筹安排"
    entry = session.scalar(select(AuditEntry).where(AuditEntry.entity == "series", AuditEntry.entity_id == s.id))
    assert entry.details["pairing_override"] is True and entry.reason == "区县统筹安排"


def test_bells_that_do_not_contain_the_main_slot_need_an_explicit_receiving_period(session, world):
    from scheduler.models import PeriodScheme
    scheme = session.scalar(select(PeriodScheme).where(PeriodScheme.school_id == world.rural.id))
    p1 = next(p for p in scheme.periods if p.number == 1)
    p1.start_time = p1.start_time.replace(hour=8, minute=5)  # rural bell now rings after the urban 08:00
    session.flush()
    with pytest.raises(Invalid, match="指定接收节次") as err:
        book(session, world)
    # also listed as a conflict item of its own kind, for clients that list conflicts
    (item,) = err.value.items
    assert (item.kind, item.resource, item.resource_id, item.school_name) == (
        "bells", "classroom", world.recv_room.id, "东区石桥村小")
    assert item.message == err.value.message
    assert "08:00–08:40" in item.message and "（东区石桥村小）指定接收节次" in item.message


def test_explicit_receiving_period_books_the_receivers_own_period(session, world):
    from scheduler.models import PeriodScheme
    scheme = session.scalar(select(PeriodScheme).where(PeriodScheme.school_id == world.rural.id))
    p1 = next(p for p in scheme.periods if p.number == 1)
    p1.start_time = p1.start_time.replace(hour=8, minute=5)
    session.flush()
    s = book(session, world, receivers=(bookings.ReceiverSpec(world.recv_room.id, receiving_period=1),))
    session.commit()
    first = instances(session, s.id)[0]
    row = session.scalar(select(Occupancy).where(Occupancy.instance_id == first.id,
                                                 Occupancy.resource_id == world.recv_room.id,
                                                 Occupancy.resource_type == ResourceType.classroom))
    assert (row.starts_at.time().isoformat(), row.ends_at.time().isoformat()) == ("08:00:00", "08:40:00")


def test_teacher_request_waits_for_approval_then_books(session, world):
    s = book(session, world, actor=world.teacher)
    session.commit()
    assert s.status is SeriesStatus.pending and instances(session, s.id) == []
    admin = session.merge(world.urban_admin)
    bookings.approve_series(session, s.id, actor=admin, scope=scope_of(session, admin))
    session.commit()
    assert s.status is SeriesStatus.approved and len(instances(session, s.id)) == 19


def test_admin_of_another_school_cannot_approve(session, world):
    s = book(session, world, actor=world.teacher)
    session.commit()
    other = session.merge(world.admin_b)
    with pytest.raises(Forbidden):
        bookings.approve_series(session, s.id, actor=other, scope=scope_of(session, other))


def test_reschedule_moves_lesson_and_links_it(session, world):
    s = book(session, world)
    session.commit()
    first = instances(session, s.id)[0]
    admin = session.merge(world.urban_admin)
    new = bookings.reschedule_instance(session, first.id, day=date(2026, 9, 8), period_from=2, actor=admin,
                                       scope=scope_of(session, admin), reason="教研活动")
    session.commit()
    assert new.rescheduled_from_id == first.id and new.starts_at == datetime(2026, 9, 8, 8, 50)
    assert first.status is InstanceStatus.cancelled
    # the old slot is free again: another series can take Monday 7 Sept period 1 for the same teacher
    assert session.scalar(select(func.count()).select_from(Occupancy).where(Occupancy.instance_id == first.id)) == 0


def test_reschedule_onto_a_holiday_is_refused(session, world):
    s = book(session, world)
    session.commit()
    first = instances(session, s.id)[0]
    admin = session.merge(world.urban_admin)
    with pytest.raises(Conflict) as err:
        bookings.reschedule_instance(session, first.id, day=date(2026, 10, 2), actor=admin,
                                     scope=scope_of(session, admin), reason="x")
    assert err.value.items[0].resource == "holiday"


def test_postpone_finds_next_free_slot(session, world):
    s = book(session, world, week_to=3)
    session.commit()
    first = instances(session, s.id)[0]
    admin = session.merge(world.urban_admin)
    new = bookings.postpone_instance(session, first.id, actor=admin, scope=scope_of(session, admin), reason="停电")
    session.commit()
    assert new.day == date(2026, 9, 21)  # 14 Sept holds the series' own lesson


def test_cancel_frees_the_slot_and_substitute_checks_the_new_teacher(session, world):
    s = book(session, world)
    other = book(session, world, main_classroom_id=world.main_room2.id, main_teacher_id=world.teacher2.id,
                 receivers=(bookings.ReceiverSpec(world.recv_room2.id),))
    session.commit()
    first = instances(session, s.id)[0]
    admin = session.merge(world.urban_admin)
    sc = scope_of(session, admin)
    with pytest.raises(Conflict):
        bookings.substitute_instance(session, first.id, teacher_id=world.teacher2.id, actor=admin, scope=sc,
                                     reason="病假")
    session.rollback()
    bookings.cancel_instance(session, instances(session, other.id)[0].id, actor=admin, scope=sc, reason="运动会")
    inst = bookings.substitute_instance(session, first.id, teacher_id=world.teacher2.id, actor=admin, scope=sc,
                                        reason="病假")
    session.commit()
    assert inst.teacher_id == world.teacher2.id and inst.substitute


def test_database_refuses_overlapping_occupancy_even_without_the_check(session, world):
    s = book(session, world)
    session.commit()
    first = instances(session, s.id)[0]
    session.add(Occupancy(instance_id=first.id, resource_type=ResourceType.teacher, resource_id=world.teacher.id,
                          starts_at=datetime(2026, 9, 7, 8, 30), ends_at=datetime(2026, 9, 7, 9, 0)))
    with pytest.raises(IntegrityError):
        session.flush()


def test_series_booked_mid_term_starts_today_not_in_the_past(session, world, monkeypatch):
    monkeypatch.setattr("scheduler.clock.now", lambda: datetime(2026, 11, 23, 10, 0))
    series = book(session, world)
    session.commit()
    days = [i.day for i in instances(session, series.id)]
    assert days[0] == date(2026, 11, 23) and len(days) == 9  # 23 Nov .. 18 Jan


def test_series_whose_weeks_are_all_past_is_refused(session, world, monkeypatch):
    monkeypatch.setattr("scheduler.clock.now", lambda: datetime(2026, 11, 23, 10, 0))
    with pytest.raises(Invalid, match="剩余时间内没有上课日") as err:
        book(session, world, week_from=1, week_to=4)
    assert err.value.field == "weeks"


def test_rescheduling_into_the_past_is_refused(session, world, monkeypatch):
    s = book(session, world)
    session.commit()
    last = instances(session, s.id)[-1]
    monkeypatch.setattr("scheduler.clock.now", lambda: datetime(2026, 11, 23, 10, 0))
    admin = session.merge(world.urban_admin)
    with pytest.raises(Invalid, match="已经过去"):
        bookings.reschedule_instance(session, last.id, day=date(2026, 11, 20), actor=admin,
                                     scope=scope_of(session, admin), reason="补课")
