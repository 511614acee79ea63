"""/records/lessons/{id} and /reports/lessons/{id} name every attendance row by id and school: classroom
names repeat across schools (every village school has its 九年级(1)班 接收教室), so a name alone would pair a
row with another school's classroom and blame the wrong school for an absence."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from scheduler import records
from scheduler.models import Classroom, InstanceStatus, LessonInstance, LessonKind, LessonSeries, SeriesReceiver, SeriesStatus
from scheduler.records_models import SessionEvent
from tests.server.api.routes.helpers import API

SAME_NAME = "九年级(1)班 接收教室"
STARTS = datetime(2026, 9, 4, 10, 0)
"""A Friday before the web tests' clock (2026-09-07 07:55): the lesson is over and its record stored."""


@dataclass
class SameNames:
    lesson_id: int
    present_room: int
    """东区石桥村小's 九年级(1)班 接收教室: came, 10:00:30–10:40."""
    absent_room: int
    """西区山口村小's 九年级(1)班 接收教室: booked, never came."""


def build_same_names(session: Any, w: Any) -> SameNames:
    """A held dedicated lesson whose two receiving classrooms, at two schools, have one name; one is absent."""
    present, absent = session.get(Classroom, w.recv_room.id), session.get(Classroom, w.recv_room_b.id)
    present.name = absent.name = SAME_NAME
    series = LessonSeries(kind=LessonKind.dedicated, title="九年级英语", subject="英语", grade="九年级",
                          term_id=w.term.id, main_classroom_id=w.main_room.id, main_teacher_id=w.teacher.id,
                          weekday=STARTS.isoweekday(), period_from=3, period_to=3, status=SeriesStatus.approved,
                          created_by_id=w.sysadmin.id, created_at=datetime(2026, 8, 20))
    session.add(series)
    session.flush()
    session.add_all([SeriesReceiver(series_id=series.id, classroom_id=present.id),
                     SeriesReceiver(series_id=series.id, classroom_id=absent.id)])
    inst = LessonInstance(series_id=series.id, day=STARTS.date(), starts_at=STARTS,
                          ends_at=STARTS + timedelta(minutes=40), period_from=3, period_to=3,
                          status=InstanceStatus.held, main_classroom_id=w.main_room.id, teacher_id=w.teacher.id,
                          room_opened_at=STARTS - timedelta(minutes=10), started_at=STARTS,
                          room_closed_at=STARTS + timedelta(minutes=50))
    session.add(inst)
    session.flush()

    def ev(sec: int, kind: str, pid: str, role: str, uid: int, cid: int, **data: Any) -> None:
        session.add(SessionEvent(instance_id=inst.id, at=STARTS + timedelta(seconds=sec), kind=kind, participant_id=pid,
                                 user_id=uid, classroom_id=cid, role=role, data=data or None))

    ev(-60, "join", "m1", "main", w.terminal_main.id, w.main_room.id)
    ev(0, "publish", "m1", "main", w.terminal_main.id, w.main_room.id, source="camera")
    ev(30, "join", "r1", "receiving", w.terminal_recv.id, present.id)
    ev(2400, "leave", "r1", "receiving", w.terminal_recv.id, present.id, reason="client_left")
    ev(2400, "unpublish", "m1", "main", w.terminal_main.id, w.main_room.id, source="camera")
    ev(2410, "leave", "m1", "main", w.terminal_main.id, w.main_room.id, reason="client_left")
    session.flush()
    records.refresh(session, inst.id, now=inst.room_closed_at)
    session.commit()
    return SameNames(inst.id, present.id, absent.id)


def test_rows_of_classrooms_with_one_name_carry_their_own_ids_and_schools(client, session, world, auth) -> None:
    sn = build_same_names(session, world)

    r = client.get(f"{API}/records/lessons/{sn.lesson_id}", headers=auth(world.sysadmin))
    assert r.status_code == 200, r.text
    rows = {a["classroom_id"]: a for a in r.json()["attendance"] if a["role"] == "receiving"}
    assert set(rows) == {sn.present_room, sn.absent_room}
    came, absent = rows[sn.present_room], rows[sn.absent_room]
    assert came["classroom_name"] == absent["classroom_name"] == SAME_NAME
    assert (came["school_id"], came["school_name"]) == (world.rural.id, "东区石桥村小")
    assert came["present_s"] == 2370 and came["first_join"] == "2026-09-04T10:00:30+08:00"
    assert (absent["school_id"], absent["school_name"]) == (world.rural_b.id, "西区山口村小")
    assert absent["expected"] and absent["present_s"] == 0 and absent["first_join"] is None
    main = next(a for a in r.json()["attendance"] if a["role"] == "main")
    assert main["school_name"] == "东区实验小学"
    assert r.json()["expected_receivers"] == 2 and r.json()["attended_receivers"] == 1

    r = client.get(f"{API}/reports/lessons/{sn.lesson_id}", headers=auth(world.sysadmin))
    assert r.status_code == 200, r.text
    lines = {a["classroom_id"]: a for a in r.json()["attendance"] if a["role"] == "receiving"}
    assert set(lines) == {sn.present_room, sn.absent_room}
    assert lines[sn.present_room]["school"] == "东区石桥村小" and len(lines[sn.present_room]["sessions"]) == 1
    assert lines[sn.absent_room]["school"] == "西区山口村小" and lines[sn.absent_room]["sessions"] == []
    assert lines[sn.absent_room]["present_s"] == 0


def test_a_lesson_names_its_main_school_by_id(client, session, world, auth) -> None:
    """The timetable's 代课 dialog lists the teachers of the lesson's main school, found by id (not by name)."""
    sn = build_same_names(session, world)
    r = client.get(f"{API}/lessons/{sn.lesson_id}", headers=auth(world.sysadmin))
    assert r.status_code == 200, r.text
    assert r.json()["main_school_id"] == world.urban.id and r.json()["main_school_name"] == "东区实验小学"
