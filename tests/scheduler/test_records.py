"""scheduler.records: the teaching record computed from a scripted event log, to the second."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from scheduler import records
from scheduler.models import InstanceStatus, LessonInstance
from scheduler.records_models import AttendanceRecord, RecordStatus, SessionEvent, TeachingRecord
from tests.server.api.routes.test_lessons import book


def _first_lesson(session: Any, client: Any, world: Any, auth: Any, **kw: Any) -> LessonInstance:
    sid = book(client, world, auth, **kw)
    return session.scalars(select(LessonInstance).where(LessonInstance.series_id == sid)
                           .order_by(LessonInstance.starts_at)).first()


class Log:
    """Writes events at offsets (seconds) from the lesson's scheduled start."""

    def __init__(self, session: Any, inst: LessonInstance) -> None:
        self.session, self.inst = session, inst

    def __call__(self, t: float, kind: str, pid: str, role: str, *, user_id: int | None = None,
                 classroom_id: int | None = None, **data: Any) -> None:
        self.session.add(SessionEvent(instance_id=self.inst.id, at=self.inst.starts_at + timedelta(seconds=t),
                                      kind=kind, participant_id=pid, user_id=user_id, classroom_id=classroom_id,
                                      role=role, data=data or None))
        self.session.flush()


def test_a_lesson_started_late_with_a_dropped_classroom_and_a_stage_turn(session, client, world, auth) -> None:
    inst = _first_lesson(session, client, world, auth)
    minutes = (inst.ends_at - inst.starts_at).total_seconds() / 60
    log = Log(session, inst)
    main, recv = world.main_room.id, world.recv_room.id
    log(-120, "join", "m1", "main", user_id=world.teacher.id, classroom_id=main)
    log(420, "publish", "m1", "main", user_id=world.teacher.id, classroom_id=main, source="camera")  # 7 min late
    log(425, "publish", "m1", "main", user_id=world.teacher.id, classroom_id=main, source="microphone")
    log(60, "join", "r1", "receiving", user_id=world.terminal_recv.id, classroom_id=recv)
    log(600, "disconnect", "r1", "receiving", user_id=world.terminal_recv.id, classroom_id=recv)
    log(630, "resume", "r1", "receiving", user_id=world.terminal_recv.id, classroom_id=recv)
    log(900, "stage_on", "r1", "receiving", user_id=world.terminal_recv.id, classroom_id=recv)
    log(990, "stage_off", "r1", "receiving", user_id=world.terminal_recv.id, classroom_id=recv)
    # the assistant's laptop joins for the same classroom at the same time: counted once
    log(700, "join", "r2", "receiving", user_id=world.assistant.id, classroom_id=recv)
    log(800, "leave", "r2", "receiving", user_id=world.assistant.id, classroom_id=recv, reason="client_left")
    log(1500, "leave", "r1", "receiving", user_id=world.terminal_recv.id, classroom_id=recv, reason="client_left")
    for i, (loss, rtt) in enumerate([(0.0, 40), (0.01, 50), (0.2, 60), (0.0, 900), (0.0, 45)]):
        log(100 + 5 * i, "link_quality", "r1", "receiving", user_id=world.terminal_recv.id, classroom_id=recv,
            loss=loss, rtt_ms=rtt, jitter_ms=3, bitrate_kbps=900)
    log(400, "join", "obs", "observer", user_id=world.researcher_a.id)  # patrol is not attendance
    log(2400, "unpublish", "m1", "main", user_id=world.teacher.id, classroom_id=main, source="camera")
    log(2410, "unpublish", "m1", "main", user_id=world.teacher.id, classroom_id=main, source="microphone")
    log(2420, "leave", "m1", "main", user_id=world.teacher.id, classroom_id=main, reason="client_left")
    inst.room_closed_at = inst.ends_at + timedelta(minutes=10)

    rec = records.compute(session, inst.id, now=inst.ends_at + timedelta(hours=1))
    assert rec.actual_start == inst.starts_at + timedelta(seconds=420)
    assert rec.actual_end == inst.starts_at + timedelta(seconds=2410)
    assert rec.duration_s == 1990
    assert rec.late_s == 420 and rec.on_time is False  # the grace is 5 minutes
    assert rec.status is (RecordStatus.held if 1990 >= 0.8 * minutes * 60 else RecordStatus.partly_held)
    by_role = {(a.role, a.classroom_id): a for a in rec.attendance}
    assert set(by_role) == {("main", main), ("receiving", recv)}
    r = by_role[("receiving", recv)]
    assert r.expected and r.first_join == inst.starts_at + timedelta(seconds=60)
    assert r.present_s == (600 - 60) + (1500 - 630)  # the assistant's overlap counts once
    assert r.disconnects == 1 and r.stage_count == 1 and r.stage_s == 90
    assert r.link_samples == 5 and r.loss_p50 == 0.0 and r.loss_p95 == 0.2
    assert r.rtt_p50_ms == 50 and r.rtt_p95_ms == 900
    assert r.poor_link_s == 10  # two poor samples, 5 s each
    assert rec.expected_receivers == 1 and rec.attended_receivers == 1

    records.store(session, rec, now=inst.ends_at)
    records.store(session, rec, now=inst.ends_at)  # recomputing replaces, never duplicates
    session.flush()
    assert session.get(TeachingRecord, inst.id).duration_s == 1990
    assert session.scalar(select(AttendanceRecord.present_s).where(
        AttendanceRecord.instance_id == inst.id, AttendanceRecord.role == "receiving")) == 1410
    assert len(session.scalars(select(AttendanceRecord).where(AttendanceRecord.instance_id == inst.id)).all()) == 2


@pytest.mark.parametrize("published_s, expected", [(None, RecordStatus.missed), (600, RecordStatus.partly_held)])
def test_missed_and_partly_held(session, client, world, auth, published_s, expected) -> None:
    inst = _first_lesson(session, client, world, auth)
    log = Log(session, inst)
    log(0, "join", "m1", "main", user_id=world.teacher.id, classroom_id=world.main_room.id)
    if published_s is not None:
        log(30, "publish", "m1", "main", source="camera")
        log(30 + published_s, "unpublish", "m1", "main", source="camera")
    inst.room_closed_at = inst.ends_at
    rec = records.compute(session, inst.id, now=inst.ends_at)
    assert rec.status is expected
    assert rec.on_time is (None if published_s is None else True)
    recv = next(a for a in rec.attendance if a.role == "receiving")
    assert recv.expected and recv.present_s == 0 and rec.attended_receivers == 0  # booked, never came


def test_a_cancelled_lesson_is_recorded_as_cancelled(session, client, world, auth) -> None:
    inst = _first_lesson(session, client, world, auth)
    inst.status = InstanceStatus.cancelled
    assert records.compute(session, inst.id, now=datetime(2027, 1, 1)).status is RecordStatus.cancelled


def test_a_home_student_is_counted_by_user(session, client, world, auth) -> None:
    inst = _first_lesson(session, client, world, auth, kind="famous_school", participant_ids=[world.student.id])
    log = Log(session, inst)
    log(10, "join", "s1", "student", user_id=world.student.id)
    log(70, "leave", "s1", "student", user_id=world.student.id, reason="client_left")
    log(100, "join", "s2", "student", user_id=world.student.id)
    log(160, "leave", "s2", "student", user_id=world.student.id, reason="client_left")
    inst.room_closed_at = inst.ends_at
    rec = records.compute(session, inst.id, now=inst.ends_at)
    st = next(a for a in rec.attendance if a.role == "student")
    assert st.user_id == world.student.id and st.expected and st.present_s == 120


def test_stage_time_counts_only_while_the_classroom_is_present(session, client, world, auth) -> None:
    """On stage, the classroom's link drops: the room keeps it on stage through the resume grace (it resumes),
    and later, on stage again, it drops for good and comes back as a new session (the old one is replaced)."""
    inst = _first_lesson(session, client, world, auth)
    log = Log(session, inst)
    recv = dict(user_id=world.terminal_recv.id, classroom_id=world.recv_room.id)
    log(0, "join", "m1", "main", user_id=world.teacher.id, classroom_id=world.main_room.id)
    log(0, "publish", "m1", "main", source="camera")
    log(60, "join", "r1", "receiving", **recv)
    log(300, "stage_on", "r1", "receiving", **recv)
    log(400, "disconnect", "r1", "receiving", **recv)  # gone 50 s while still on stage
    log(450, "resume", "r1", "receiving", **recv)
    log(600, "stage_off", "r1", "receiving", **recv)
    log(700, "stage_on", "r1", "receiving", **recv)
    log(800, "disconnect", "r1", "receiving", **recv)  # did not resume: rejoined as a new session at 900
    log(900, "stage_off", "r1", "receiving", **recv)
    log(900, "leave", "r1", "receiving", reason="replaced", **recv)
    log(900, "join", "r2", "receiving", **recv)
    log(1000, "leave", "r2", "receiving", reason="client_left", **recv)
    log(1800, "unpublish", "m1", "main", source="camera")
    inst.room_closed_at = inst.ends_at

    rec = records.compute(session, inst.id, now=inst.ends_at)
    r = next(a for a in rec.attendance if a.role == "receiving")
    assert r.present_s == (400 - 60) + (800 - 450) + (1000 - 900) == 790
    assert r.stage_count == 2
    assert r.stage_s == (400 - 300) + (600 - 450) + (800 - 700) == 350  # not 300 + 200 = 500
    assert r.stage_s <= r.present_s
