"""Patrol rules: rubric totals, visits opened, heartbeated, left and closed by the stale rule,
evaluations live and on replay, who edits and who reads, teacher replies, invitations."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from scheduler import bookings, lifecycle, patrol
from scheduler.access import scope_of
from scheduler.errors import Forbidden, Invalid, InvalidState
from scheduler.models import InstanceStatus, LessonInstance, LessonKind, Role
from scheduler.patrol_models import EvaluationMode, RubricItem, VisitEnd
from tests.utils.factory import add_user

LEAD, GRACE = timedelta(minutes=10), timedelta(minutes=10)


def booked(session, w, weeks=2):
    admin = session.merge(w.urban_admin)
    spec = bookings.SeriesSpec(kind=LessonKind.dedicated, title="数学", subject="数学", grade="三年级",
                               term_id=w.term.id, main_classroom_id=w.main_room.id, main_teacher_id=w.teacher.id,
                               weekday=1, period_from=1, period_to=1, week_from=2, week_to=1 + weeks,
                               receivers=(bookings.ReceiverSpec(w.recv_room.id),))
    s = bookings.create_series(session, spec, actor=admin, scope=scope_of(session, admin))
    session.commit()
    return session.scalars(select(LessonInstance).where(LessonInstance.series_id == s.id)
                           .order_by(LessonInstance.starts_at)).all()


def live(session, inst):
    lifecycle.tick(session, inst.starts_at - LEAD, lead=LEAD, grace=GRACE)
    lifecycle.mark_started(session, inst.id, inst.starts_at)
    session.flush()
    return inst.starts_at


def u(session, user):
    return session.merge(user)


def sc(session, user):
    return scope_of(session, u(session, user))


def rubric(session, w, region=None):
    admin = u(session, w.city_admin)
    return patrol.create_rubric(session, scope_of(session, admin), region_id=(region or w.city).id, name="课堂评价表",
                                items=[patrol.ItemSpec("教学目标", 10, 1), patrol.ItemSpec("互动效果", 20, 3)],
                                now=datetime(2026, 9, 1))


def test_total_is_the_weighted_share_of_the_maximum_on_100():
    items = [RubricItem(id=1, max_score=10, weight=1), RubricItem(id=2, max_score=20, weight=3)]
    assert patrol.total_score(items, {"1": 10, "2": 20}) == 100.0
    assert patrol.total_score(items, {"1": 5, "2": 10}) == 50.0
    assert patrol.total_score(items, {"1": 0, "2": 20}) == 75.0
    assert patrol.total_score(items, {"1": 10}) is None  # an item unscored: no total yet


def test_rubrics_are_defined_by_admins_of_the_region(session, world):
    t = rubric(session, world)
    assert [i.name for i in t.items] == ["教学目标", "互动效果"]
    with pytest.raises(Forbidden):  # a school admin defines no regional rubric
        patrol.create_rubric(session, sc(session, world.urban_admin), region_id=world.district_a.id, name="x",
                             items=[patrol.ItemSpec("a", 5)], now=datetime(2026, 9, 1))
    with pytest.raises(Forbidden):  # a researcher neither
        patrol.create_rubric(session, sc(session, world.researcher_a), region_id=world.district_a.id, name="x",
                             items=[patrol.ItemSpec("a", 5)], now=datetime(2026, 9, 1))
    district_admin = add_user(session, "da", Role.admin, region=world.district_a)
    with pytest.raises(Forbidden):  # a district admin not for the city
        patrol.create_rubric(session, scope_of(session, district_admin), region_id=world.city.id, name="x",
                             items=[patrol.ItemSpec("a", 5)], now=datetime(2026, 9, 1))
    with pytest.raises(Invalid):
        patrol.create_rubric(session, sc(session, world.city_admin), region_id=world.city.id, name="x",
                             items=[patrol.ItemSpec("a", 5), patrol.ItemSpec("a", 5)], now=datetime(2026, 9, 1))
    # a researcher of district A sees the city's rubric (it applies there), one of district B too
    assert [r.id for r in patrol.list_rubrics(session, sc(session, world.researcher_a))] == [t.id]
    own = patrol.create_rubric(session, scope_of(session, district_admin), region_id=world.district_a.id,
                               name="东区表", items=[patrol.ItemSpec("a", 5)], now=datetime(2026, 9, 1))
    assert {r.id for r in patrol.list_rubrics(session, sc(session, world.researcher_b))} == {t.id}
    assert {r.id for r in patrol.list_rubrics(session, sc(session, world.researcher_a))} == {t.id, own.id}


def test_a_visit_opens_on_watching_and_closes_on_leave(session, world):
    inst = booked(session, world)[0]
    researcher = u(session, world.researcher_a)
    with pytest.raises(InvalidState):  # the room is not open yet
        patrol.start_visit(session, researcher, inst.id, inst.starts_at - timedelta(hours=1))
    t0 = live(session, inst)
    visit = patrol.start_visit(session, researcher, inst.id, t0)
    assert patrol.start_visit(session, researcher, inst.id, t0 + timedelta(seconds=5)).id == visit.id  # reload
    patrol.heartbeat(session, researcher, visit.id, t0 + timedelta(seconds=30))
    patrol.end_visit(session, researcher, visit.id, t0 + timedelta(minutes=12))
    assert (visit.end_reason, visit.duration_seconds) == (VisitEnd.left, 720)
    patrol.end_visit(session, researcher, visit.id, t0 + timedelta(minutes=20))  # again: nothing changes
    assert visit.duration_seconds == 720
    with pytest.raises(InvalidState):
        patrol.heartbeat(session, researcher, visit.id, t0 + timedelta(minutes=13))
    with pytest.raises(Forbidden):  # another district's researcher has no seat
        patrol.start_visit(session, u(session, world.researcher_b), inst.id, t0)
    with pytest.raises(Forbidden):  # a teacher does not patrol
        patrol.start_visit(session, u(session, world.teacher2), inst.id, t0)
    with pytest.raises(Forbidden):  # and nobody ends someone else's visit
        patrol.end_visit(session, u(session, world.researcher_city), visit.id, t0)


def test_a_visit_left_open_is_closed_at_its_last_heartbeat(session, world):
    inst = booked(session, world)[0]
    t0 = live(session, inst)
    visit = patrol.start_visit(session, u(session, world.researcher_a), inst.id, t0)
    patrol.heartbeat(session, u(session, world.researcher_a), visit.id, t0 + timedelta(seconds=60))
    assert patrol.close_stale_visits(session, t0 + timedelta(seconds=60) + patrol.VISIT_TIMEOUT) == 0
    assert patrol.close_stale_visits(session, t0 + timedelta(seconds=61) + patrol.VISIT_TIMEOUT) == 1
    assert (visit.ended_at, visit.end_reason, visit.duration_seconds) == (t0 + timedelta(seconds=60),
                                                                          VisitEnd.timeout, 60)
    # a visit still heartbeating when the room closes ends with the room
    other = patrol.start_visit(session, u(session, world.researcher_city), inst.id, t0 + timedelta(minutes=30))
    other.last_seen_at = inst.ends_at + GRACE
    lifecycle.tick(session, inst.ends_at + GRACE, lead=LEAD, grace=GRACE)
    assert patrol.close_stale_visits(session, inst.ends_at + GRACE) == 1
    assert other.end_reason is VisitEnd.room_closed and other.ended_at == inst.ends_at + GRACE


def test_live_evaluation_needs_a_visit_replay_needs_a_held_lesson(session, world, tmp_path: Path):
    first, second = booked(session, world)
    t = rubric(session, world)
    researcher = u(session, world.researcher_a)
    scope = sc(session, world.researcher_a)
    t0 = live(session, first)
    with pytest.raises(InvalidState):
        patrol.save_evaluation(session, researcher, scope, first.id, mode=EvaluationMode.live, template_id=None,
                               scores={}, comment="", now=t0)
    with pytest.raises(InvalidState):  # not held yet
        patrol.save_evaluation(session, researcher, scope, second.id, mode=EvaluationMode.replay,
                               template_id=None, scores={}, comment="", now=t0)
    patrol.start_visit(session, researcher, first.id, t0)
    a, b = (str(i.id) for i in t.items)
    e = patrol.save_evaluation(session, researcher, scope, first.id, mode=EvaluationMode.live, template_id=t.id,
                               scores={a: 8, b: 15}, comment="互动充分", now=t0 + timedelta(minutes=5))
    assert e.total_score == round((8 / 10 * 1 + 15 / 20 * 3) / 4 * 100, 1)
    with pytest.raises(Invalid):
        patrol.save_evaluation(session, researcher, scope, first.id, mode=EvaluationMode.live, template_id=t.id,
                               scores={a: 11}, comment=None, now=t0)
    with pytest.raises(Invalid):
        patrol.save_evaluation(session, researcher, scope, first.id, mode=EvaluationMode.live, template_id=t.id,
                               scores={"999": 1}, comment=None, now=t0)
    note = patrol.add_note(session, researcher, e.id, text="学生分组讨论", now=t0 + timedelta(minutes=7))
    assert note.lesson_offset_seconds == 420
    # only its evaluator edits it; another researcher neither edits nor reads it
    city = u(session, world.researcher_city)
    with pytest.raises(Forbidden):
        patrol.add_note(session, city, e.id, text="x", now=t0)
    with pytest.raises(Forbidden):
        patrol.require_readable_evaluation(session, city, sc(session, world.researcher_city), e.id)
    # admins in scope and the lesson's teacher read it; an admin of another school does not
    for reader in (world.city_admin, world.urban_admin, world.teacher):
        patrol.require_readable_evaluation(session, u(session, reader), sc(session, reader), e.id)
    with pytest.raises(Forbidden):
        patrol.require_readable_evaluation(session, u(session, world.admin_b), sc(session, world.admin_b), e.id)
    # the teacher replies; nobody else does
    patrol.reply(session, u(session, world.teacher), e.id, text="谢谢指导", now=t0 + timedelta(hours=1))
    with pytest.raises(Forbidden):
        patrol.reply(session, researcher, e.id, text="x", now=t0)
    assert [r.text for r in e.replies] == ["谢谢指导"]
    # held: 评课 on replay, no visit needed
    lifecycle.tick(session, first.ends_at + GRACE, lead=LEAD, grace=GRACE)
    assert first.status is InstanceStatus.held
    r = patrol.save_evaluation(session, city, sc(session, world.researcher_city), first.id,
                               mode=EvaluationMode.replay, template_id=None, scores={}, comment="回放评课",
                               now=first.ends_at + timedelta(hours=2))
    assert r.mode is EvaluationMode.replay
    assert patrol.add_note(session, city, r.id, text="12 分钟处提问", now=first.ends_at,
                           lesson_offset_seconds=720).lesson_offset_seconds == 720
    mine, _ = patrol.readable_evaluations(session, city, sc(session, world.researcher_city))
    assert [x.id for x in mine] == [r.id]
    _, n = patrol.readable_evaluations(session, u(session, world.city_admin), sc(session, world.city_admin))
    assert n == 2
    _, n = patrol.readable_evaluations(session, u(session, world.teacher), sc(session, world.teacher))
    assert n == 2


def test_invited_evaluators_evaluate_and_the_teacher_never_evaluates_themselves(session, world):
    first, _ = booked(session, world)
    live(session, first)
    lifecycle.tick(session, first.ends_at + GRACE, lead=LEAD, grace=GRACE)
    researcher_b = u(session, world.researcher_b)
    with pytest.raises(Forbidden):
        patrol.save_evaluation(session, researcher_b, sc(session, world.researcher_b), first.id,
                               mode=EvaluationMode.replay, template_id=None, scores={}, comment="", now=first.ends_at)
    with pytest.raises(Forbidden):  # researcher B does not see the lesson: cannot invite
        patrol.invite(session, researcher_b, sc(session, world.researcher_b), first.id,
                      invitee_id=world.teacher2.id, now=first.ends_at)
    with pytest.raises(Forbidden):  # teachers do not invite
        patrol.invite(session, u(session, world.teacher2), sc(session, world.teacher2), first.id,
                      invitee_id=world.researcher_b.id, now=first.ends_at)
    scope = sc(session, world.researcher_a)
    researcher_a = u(session, world.researcher_a)
    patrol.invite(session, researcher_a, scope, first.id, invitee_id=world.researcher_b.id, now=first.ends_at)
    patrol.invite(session, u(session, world.city_admin), sc(session, world.city_admin), first.id,
                  invitee_id=world.teacher_b.id, now=first.ends_at)
    with pytest.raises(Invalid):
        patrol.invite(session, researcher_a, scope, first.id, invitee_id=world.teacher.id, now=first.ends_at)
    with pytest.raises(Invalid):
        patrol.invite(session, researcher_a, scope, first.id, invitee_id=world.student.id, now=first.ends_at)
    with pytest.raises(InvalidState):
        patrol.invite(session, researcher_a, scope, first.id, invitee_id=world.researcher_b.id, now=first.ends_at)
    for invitee in (world.researcher_b, world.teacher_b):
        patrol.save_evaluation(session, u(session, invitee), sc(session, invitee), first.id,
                               mode=EvaluationMode.replay, template_id=None, scores={}, comment="好",
                               now=first.ends_at)
    with pytest.raises(Forbidden):
        patrol.save_evaluation(session, u(session, world.teacher), sc(session, world.teacher), first.id,
                               mode=EvaluationMode.replay, template_id=None, scores={}, comment="", now=first.ends_at)
    assert len(patrol.list_invitations(session, researcher_a, scope, instance_id=first.id)) == 2
    assert len(patrol.list_invitations(session, researcher_b, sc(session, world.researcher_b))) == 1


def test_a_rubric_in_use_keeps_its_items(session, world):
    first, _ = booked(session, world)
    t = rubric(session, world)
    t0 = live(session, first)
    researcher = u(session, world.researcher_a)
    patrol.start_visit(session, researcher, first.id, t0)
    patrol.save_evaluation(session, researcher, sc(session, world.researcher_a), first.id, mode=EvaluationMode.live,
                           template_id=t.id, scores={}, comment="", now=t0)
    admin_scope = sc(session, world.city_admin)
    with pytest.raises(InvalidState):
        patrol.update_rubric(session, admin_scope, t.id, items=[patrol.ItemSpec("新", 5)])
    patrol.update_rubric(session, admin_scope, t.id, active=False, name="旧表")
    assert patrol.list_rubrics(session, sc(session, world.researcher_a)) == []
    with pytest.raises(Forbidden):
        patrol.update_rubric(session, sc(session, world.admin_b), t.id, active=True)


def test_snapshots_are_kept_in_the_evaluation_and_limited(session, world, tmp_path: Path):
    first, _ = booked(session, world)
    t0 = live(session, first)
    researcher = u(session, world.researcher_a)
    scope = sc(session, world.researcher_a)
    patrol.start_visit(session, researcher, first.id, t0)
    jpeg = b"\xff\xd8" + b"\x00" * 100 + b"\xff\xd9"
    snap = patrol.add_snapshot(session, researcher, scope, first.id, jpeg=jpeg, width=160, height=120,
                               data_dir=tmp_path, now=t0 + timedelta(minutes=3))
    assert snap.lesson_offset_seconds == 180 and (tmp_path / snap.path).read_bytes() == jpeg
    with pytest.raises(Invalid):
        patrol.add_snapshot(session, researcher, scope, first.id, jpeg=b"GIF89a", width=1, height=1,
                            data_dir=tmp_path, now=t0)
    with pytest.raises(Invalid):
        patrol.add_snapshot(session, researcher, scope, first.id, jpeg=b"\xff\xd8" + b"0" * patrol.MAX_SNAPSHOT_BYTES,
                            width=1, height=1, data_dir=tmp_path, now=t0)
    _, path = patrol.readable_snapshot(session, u(session, world.teacher), sc(session, world.teacher), snap.id,
                                       tmp_path)
    assert path.read_bytes() == jpeg
    with pytest.raises(Forbidden):
        patrol.readable_snapshot(session, u(session, world.researcher_city), sc(session, world.researcher_city),
                                 snap.id, tmp_path)


def test_the_wall_lists_live_lessons_in_region_with_filters(session, world):
    first, _ = booked(session, world)
    live(session, first)
    chosen, everything = patrol.live_lessons(session, sc(session, world.researcher_a), patrol.LiveFilter())
    assert [i.id for i in chosen] == [first.id] == [i.id for i in everything]
    assert patrol.live_lessons(session, sc(session, world.researcher_b), patrol.LiveFilter())[0] == []
    for f in (patrol.LiveFilter(subject="语文"), patrol.LiveFilter(grade="五年级"),
              patrol.LiveFilter(kind=LessonKind.master), patrol.LiveFilter(school_id=world.urban_b.id)):
        assert patrol.live_lessons(session, sc(session, world.researcher_a), f)[0] == []
    for f in (patrol.LiveFilter(subject="数学", grade="三年级", kind=LessonKind.dedicated),
              patrol.LiveFilter(school_id=world.rural.id)):  # a receiving school finds it too
        assert [i.id for i in patrol.live_lessons(session, sc(session, world.researcher_a), f)[0]] == [first.id]
    with pytest.raises(Forbidden):
        patrol.live_lessons(session, sc(session, world.teacher), patrol.LiveFilter())


def test_an_invited_evaluator_watches_live_as_a_silent_observer(session, world):
    from scheduler.joining import seat_for

    first, _ = booked(session, world)
    t0 = live(session, first)
    researcher_b, teacher_b = u(session, world.researcher_b), u(session, world.teacher_b)
    for outsider in (researcher_b, teacher_b):
        with pytest.raises(Forbidden):
            seat_for(session, outsider, first)
    for invitee in (world.researcher_b, world.teacher_b):
        patrol.invite(session, u(session, world.researcher_a), sc(session, world.researcher_a), first.id,
                      invitee_id=invitee.id, now=t0)
    for invitee in (researcher_b, teacher_b):
        assert seat_for(session, invitee, first).lesson_role == "observer"
        visit = patrol.start_visit(session, invitee, first.id, t0)
        e = patrol.save_evaluation(session, invitee, scope_of(session, invitee), first.id, mode=EvaluationMode.live,
                                   template_id=None, scores={}, comment="受邀评课", now=t0)
        assert visit.researcher_id == invitee.id and e.mode is EvaluationMode.live
    assert seat_for(session, u(session, world.teacher), first).lesson_role == "main"  # unchanged for the teacher
