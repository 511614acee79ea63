"""How much of a media node a lesson's room is expected to take: its weight, in consumers.

A consumer is one subscriber receiving one track — the unit a media worker's capacity is given in
(``SANKE_NODE_WORKER_CONSUMERS``).  Placement (``server.core.placement``) compares this weight with a
node's free consumers, so a 名校网络课堂 with hundreds of subscribers weighs what it will cost and a
专递课堂 of two classrooms weighs little.

The rule: the main classroom publishes camera, screen and microphone to everyone else in the lesson;
each receiving classroom publishes camera and microphone to the main classroom; with more than one
receiving classroom, the one on stage (上台) is seen and heard by everyone.  Home students and observers
only receive.  The audience is the series' receiving classrooms and enrolled participants; a kind whose
audience is not booked one by one (a 名校网络课堂 is watched by whole schools) counts at least its
kind's expected audience.

Must not: query the database or read any node's load; it is a pure function of what the lesson books
(:func:`lesson_weight` only follows a loaded lesson's series).
"""

from __future__ import annotations

from scheduler.models import LessonInstance, LessonKind

MAIN_TRACKS = 3
"""Camera, screen and microphone of the main classroom."""
RECEIVER_TRACKS = 2
"""Camera and microphone of an interactive receiving classroom."""
EXPECTED_AUDIENCE: dict[LessonKind, int] = {
    LessonKind.dedicated: 1,
    LessonKind.master: 10,
    LessonKind.famous_school: 100,
}
"""Receivers a lesson of this kind has at least (whoever watches without being booked one by one)."""


def room_weight(kind: LessonKind, receivers: int, students: int) -> int:
    """Expected consumers of a lesson with ``receivers`` receiving classrooms (interactive or
    listening) and ``students`` enrolled home students, at least 1."""
    if receivers < 0 or students < 0:
        raise ValueError("negative audience")
    audience = max(receivers + students, EXPECTED_AUDIENCE.get(kind, 1))
    stage = RECEIVER_TRACKS * audience if receivers > 1 else 0
    return max(1, MAIN_TRACKS * audience + RECEIVER_TRACKS * receivers + stage)


def lesson_weight(inst: LessonInstance) -> int:
    """:func:`room_weight` of a lesson, from what its series books."""
    series = inst.series
    return room_weight(series.kind, len(series.receivers), len(series.participants))
