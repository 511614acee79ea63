"""S-T analysis (S-T 分析) of a lesson and who spoke how much, from its ``speech`` events.

The SFU receives every classroom's microphone as its own track and marks, second by second, which of
them is speaking (``media.speech``, from the RFC 6464 levels the browsers send; no audio is decoded or
kept); signaling writes each participant's turns to the session event log as ``speech`` events
(``{"s": seconds, "ago": seconds}``).  From those:

* **Turns** per participant: the pieces of one turn (a long turn is written in 30 s pieces) and turns
  less than ``MERGE_S`` apart are one turn.
* **S-T samples**: every ``interval_s`` (30 s as the literature samples; 3 s for a Flanders-style
  timeline) from the lesson's actual start, the instant at the end of each interval is coded **T** when
  the main classroom (the teacher) is speaking then, else **S** (a receiving classroom or an on-stage
  student speaking, or the class working in silence: everything that is not the teacher, as S-T analysis
  codes it).  ``spoken_s`` counts the S samples at which a receiving classroom or a student actually spoke.
* **Rt** = N_T / N, **Ch** = (g − 1) / N with g the number of runs of one code; the lesson type:
  练习型 (practice) when Rt ≤ 0.3, 讲授型 (lecture) when Rt ≥ 0.7, 对话型 (dialogue) when Ch ≥ 0.4, else
  混合型 (mixed).
* **Speakers**: per receiving classroom and per home student: seconds spoken, turns, times on stage,
  hands raised.

Pure functions of the events; no database, no clock.  The teaching record (``scheduler.records``) calls
``analyse`` with the lesson's span.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from scheduler.records_models import EventKind, SessionEvent

DEFAULT_INTERVAL_S = 30
MERGE_S = 1.0
"""Turns of one participant closer than this are one turn (a breath, a one-second dip in the level)."""
LESSON_TYPES = {"practice": "练习型", "lecture": "讲授型", "dialogue": "对话型", "mixed": "混合型"}


@dataclass
class Speaker:
    """A receiving classroom (``classroom_id``) or a home student (``user_id``) and how it took part."""

    role: str
    classroom_id: int | None
    user_id: int | None
    spoken_s: float = 0.0
    turns: int = 0
    stage_count: int = 0
    hands: int = 0


@dataclass
class Insight:
    interval_s: int
    codes: str
    """One letter per sample, ``T`` or ``S``."""
    rt: float | None
    ch: float | None
    lesson_type: str | None
    """``practice``, ``lecture``, ``dialogue`` or ``mixed`` (None without samples)."""
    teacher_s: float
    """Seconds the main classroom spoke."""
    student_samples: int
    """S samples at which a receiving classroom or a student was actually speaking."""
    speakers: list[Speaker] = field(default_factory=list)
    measured: bool = False
    """Whether any speech was measured at all (browsers that send no audio levels leave it False)."""

    @property
    def lesson_type_zh(self) -> str | None:
        return LESSON_TYPES.get(self.lesson_type or "")


def turns_of(events: list[SessionEvent]) -> dict[str, list[tuple[datetime, datetime]]]:
    """Per participant (session id): its turns of speech, merged, in order."""
    pieces: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for e in events:
        if e.kind is not EventKind.speech:
            continue
        data = e.data or {}
        seconds, ago = data.get("s"), data.get("ago", 0.0)
        if not isinstance(seconds, int | float) or not isinstance(ago, int | float) or seconds <= 0:
            continue
        end = e.at - timedelta(seconds=float(ago))
        pieces[e.participant_id].append((end - timedelta(seconds=float(seconds)), end))
    merged: dict[str, list[tuple[datetime, datetime]]] = {}
    for pid, spans in pieces.items():
        spans.sort()
        out: list[tuple[datetime, datetime]] = []
        for a, b in spans:
            if out and (a - out[-1][1]).total_seconds() <= MERGE_S:
                out[-1] = (out[-1][0], max(out[-1][1], b))
            else:
                out.append((a, b))
        merged[pid] = out
    return merged


def _speaking(turns: list[tuple[datetime, datetime]], at: datetime) -> bool:
    return any(a <= at < b for a, b in turns)


def lesson_type(rt: float, ch: float) -> str:
    if rt <= 0.3:
        return "practice"
    if rt >= 0.7:
        return "lecture"
    if ch >= 0.4:
        return "dialogue"
    return "mixed"


def analyse(events: list[SessionEvent], start: datetime | None, end: datetime | None, *,
            interval_s: int = DEFAULT_INTERVAL_S) -> Insight:
    """The S-T analysis of the lesson held from ``start`` to ``end`` (its main classroom's publishing), and
    its speakers, from its events (all of them: speech, stage and hand events are read)."""
    turns = turns_of(events)
    role_of = {e.participant_id: e.role for e in events}
    teacher = [t for pid, ts in turns.items() if role_of.get(pid) == "main" for t in ts]
    others = [t for pid, ts in turns.items() if role_of.get(pid) in ("receiving", "student") for t in ts]
    codes = ""
    spoken = 0
    if start is not None and end is not None and interval_s > 0:
        n = int((end - start).total_seconds() // interval_s)
        for k in range(n):
            at = start + timedelta(seconds=(k + 1) * interval_s) - timedelta(microseconds=1)
            if _speaking(teacher, at):
                codes += "T"
            else:
                codes += "S"
                spoken += _speaking(others, at)
    rt = ch = None
    kind = None
    if codes:
        runs = 1 + sum(1 for a, b in zip(codes, codes[1:], strict=False) if a != b)
        rt = round(codes.count("T") / len(codes), 3)
        ch = round((runs - 1) / len(codes), 3)
        kind = lesson_type(rt, ch)

    speakers: dict[tuple[str, int | None], Speaker] = {}
    for e in events:
        if e.role == "receiving" and e.classroom_id is not None:
            key: tuple[str, int | None] = ("receiving", e.classroom_id)
            sp = speakers.setdefault(key, Speaker("receiving", e.classroom_id, None))
        elif e.role == "student":
            key = ("student", e.user_id)
            sp = speakers.setdefault(key, Speaker("student", None, e.user_id))
        else:
            continue
        if e.kind is EventKind.stage_on:
            sp.stage_count += 1
        elif e.kind is EventKind.hand_raise:
            sp.hands += 1
    first: dict[str, SessionEvent] = {}
    for e in events:
        first.setdefault(e.participant_id, e)
    by_unit: dict[tuple[str, int | None], list[tuple[datetime, datetime]]] = defaultdict(list)
    for pid, ts in turns.items():
        ev = first[pid]
        if ev.role == "receiving" and ev.classroom_id is not None:
            by_unit[("receiving", ev.classroom_id)].extend(ts)
        elif ev.role == "student":
            by_unit[("student", ev.user_id)].extend(ts)
    for key, ts in by_unit.items():
        sp = speakers.setdefault(key, Speaker(key[0], key[1] if key[0] == "receiving" else None,
                                              key[1] if key[0] == "student" else None))
        ts.sort()
        merged: list[tuple[datetime, datetime]] = []
        for a, b in ts:  # one classroom's sessions (a reload) count once
            if merged and (a - merged[-1][1]).total_seconds() <= MERGE_S:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        sp.turns = len(merged)
        sp.spoken_s = round(sum((b - a).total_seconds() for a, b in merged), 1)
    return Insight(interval_s=interval_s, codes=codes, rt=rt, ch=ch, lesson_type=kind,
                   teacher_s=round(sum((b - a).total_seconds() for a, b in teacher), 1), student_samples=spoken,
                   speakers=sorted(speakers.values(), key=lambda s: (s.role, s.classroom_id or 0, s.user_id or 0)),
                   measured=bool(turns))


def as_dict(insight: Insight) -> dict[str, Any]:
    return {
        "interval_s": insight.interval_s, "codes": insight.codes, "rt": insight.rt, "ch": insight.ch,
        "lesson_type": insight.lesson_type, "lesson_type_zh": insight.lesson_type_zh,
        "teacher_s": insight.teacher_s, "student_samples": insight.student_samples, "measured": insight.measured,
        "speakers": [vars(s) for s in insight.speakers],
    }
