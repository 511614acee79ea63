"""S-T analysis from speech events (scheduler.st_analysis): turns, samples, Rt, Ch, the lesson type."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from scheduler.records_models import EventKind, SessionEvent
from scheduler.st_analysis import analyse, lesson_type, turns_of

T0 = datetime(2026, 9, 7, 8, 0)


def ev(kind: EventKind, pid: str, role: str, at_s: float, data: dict[str, Any] | None = None, *,
       classroom: int | None = None, user: int | None = None) -> SessionEvent:
    return SessionEvent(instance_id=1, at=T0 + timedelta(seconds=at_s), kind=kind, participant_id=pid,
                        user_id=user, classroom_id=classroom, role=role, data=data)


def said(pid: str, role: str, start: float, end: float, *, ago: float = 1.0, **kw: Any) -> SessionEvent:
    """A turn from ``start`` to ``end`` (seconds), written ``ago`` after it ended, as signaling writes it."""
    return ev(EventKind.speech, pid, role, end + ago, {"s": end - start, "ago": ago}, **kw)


def test_turns_join_their_pieces_and_short_pauses() -> None:
    events = [said("t", "main", 0, 30, ago=0), said("t", "main", 30, 42), said("t", "main", 42.8, 50),
              said("t", "main", 55, 60), ev(EventKind.speech, "t", "main", 70, {"s": "x"})]
    assert [(round((a - T0).total_seconds(), 1), round((b - T0).total_seconds(), 1))
            for a, b in turns_of(events)["t"]] == [(0, 50), (55, 60)]


def test_samples_rt_ch_and_type_of_a_scripted_lesson() -> None:
    # teacher 0–95 s and 155–300 s, classroom 1 speaks 95–155 s; 30 s samples at 30, 60, …, 300
    events = [ev(EventKind.join, "t", "main", 0, classroom=1), ev(EventKind.join, "r", "receiving", 0, classroom=7),
              ev(EventKind.join, "s", "student", 0, user=9),
              said("t", "main", 0, 95, classroom=1), said("r", "receiving", 95, 155, classroom=7),
              said("t", "main", 155, 300, classroom=1),
              ev(EventKind.hand_raise, "r", "receiving", 90, classroom=7),
              ev(EventKind.stage_on, "s", "student", 200, user=9), ev(EventKind.hand_raise, "s", "student", 199, user=9)]
    got = analyse(events, T0, T0 + timedelta(seconds=305))
    assert got.codes == "TTTSSTTTTT"
    assert got.rt == 0.8 and got.ch == 0.2 and got.lesson_type == "lecture" and got.lesson_type_zh == "讲授型"
    assert got.student_samples == 2 and got.teacher_s == 240.0 and got.measured
    by = {(s.role, s.classroom_id or s.user_id): s for s in got.speakers}
    assert (by[("receiving", 7)].spoken_s, by[("receiving", 7)].turns, by[("receiving", 7)].hands) == (60.0, 1, 1)
    assert (by[("student", 9)].spoken_s, by[("student", 9)].stage_count, by[("student", 9)].hands) == (0.0, 1, 1)
    fine = analyse(events, T0, T0 + timedelta(seconds=305), interval_s=3)
    assert len(fine.codes) == 101 and fine.codes[31:51] == "S" * 20


def test_types_by_the_literature_and_nothing_measured() -> None:
    assert [lesson_type(0.2, 0.1), lesson_type(0.75, 0.45), lesson_type(0.5, 0.45), lesson_type(0.5, 0.2)] == [
        "practice", "lecture", "dialogue", "mixed"]
    quiet = analyse([ev(EventKind.join, "t", "main", 0)], T0, T0 + timedelta(seconds=90))
    assert quiet.codes == "SSS" and quiet.rt == 0.0 and not quiet.measured
    assert analyse([], None, None).codes == "" and analyse([], None, None).rt is None
