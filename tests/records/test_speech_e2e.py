"""Classroom insight end to end: scripted speech from the main classroom and a receiving classroom through
the real SFU, and the S-T analysis the teaching record computes from it.

Both microphones are aiortc tracks that send a tone while their script says the classroom speaks and a
low room noise (about -60 dBov, as a classroom microphone hears an empty room) otherwise; aiortc puts the
RFC 6464 level on every packet as browsers do.  The SFU counts the levels per packet (no decoding), judges
every second, and the lesson's ``speech`` events give the record's S-T samples every 3 s.  Checked against
the script: at least 95 % of the 21 samples right (the script's changes lie midway between samples), Rt and
Ch as the script's within that, and the seconds each classroom spoke.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from typing import Any

from sqlalchemy import select

from scheduler.records_models import AttendanceRecord, TeachingRecord

from tests.media.sfu_harness import Lesson, db_url, lesson, loopback_clients, media_workers, settings  # noqa: F401
from tests.media.sfu_helpers import ToneTrack
from tests.records.test_recording_e2e import close_room
from tests.utils.wait import until, wait_until

INTERVAL_S = 3
SCRIPT_S = 63.0
TEACHER = [(0.0, 10.5), (16.5, 25.5), (34.5, 46.5), (52.5, 65.0)]
CLASSROOM = [(10.5, 16.5), (25.5, 34.5), (46.5, 52.5)]
"""Seconds from the start when each speaks: changes midway between the 3 s samples."""


class ScriptedVoice(ToneTrack):
    """A classroom microphone: a tone while ``script`` says it speaks (from ``t0``), room noise otherwise."""

    def __init__(self, script: list[tuple[float, float]], hz: float, t0: list[float]) -> None:
        super().__init__(hz)
        self.script, self.t0 = script, t0
        self._noise = random.Random(7)

    def samples(self) -> list[int]:
        at = time.monotonic() - self.t0[0] if self.t0 else -1.0
        if any(a <= at < b for a, b in self.script):
            return super().samples()
        return [self._noise.randint(-40, 40) for _ in range(self.SAMPLES)]


def expected_codes() -> str:
    out = ""
    for k in range(int(SCRIPT_S // INTERVAL_S)):
        at = (k + 1) * INTERVAL_S - 1e-6
        out += "T" if any(a <= at < b for a, b in TEACHER) else "S"
    return out


def test_the_record_codes_the_lesson_as_the_script_spoke(lesson: Lesson, app: Any,  # noqa: F811
                                                         session_factory: Any) -> None:
    w, http, auth, lid = lesson.world, lesson.http, lesson.auth, lesson.lid
    t0: list[float] = []
    loops: list[asyncio.AbstractEventLoop] = []
    app.state.bus.subscribe("media", lambda topic, event: loops.append(asyncio.get_running_loop()))

    async def scenario() -> None:
        main = await lesson.join(w.teacher)
        rural = await lesson.join(w.terminal_recv)
        await rural.publish({"microphone": ScriptedVoice(CLASSROOM, 660.0, t0)})
        t0.append(time.monotonic())  # the lesson's actual start is the main classroom's first publish
        await main.publish({"microphone": ScriptedVoice(TEACHER, 440.0, t0)})
        await asyncio.sleep(SCRIPT_S + 1.0 - (time.monotonic() - t0[0]))
        await main.close()  # the main classroom stops: the lesson's span ends, the turn under way is written
        await rural.close()

    lesson.play(scenario)

    def record() -> dict[str, Any] | None:
        r = http.get(f"/api/v1/records/lessons/{lid}", params={"st_interval_s": INTERVAL_S}, headers=auth(w.urban_admin))
        assert r.status_code == 200, r.text
        body = r.json()
        speakers = (body.get("insight") or {}).get("speakers") or []
        return body if body["actual_end"] and any(s["spoken_s"] > 0 for s in speakers) else None

    body = asyncio.run(until("the record with the speech", record, 15))
    insight = body["insight"]
    want = expected_codes()
    got = insight["codes"]
    right = sum(a == b for a, b in zip(got, want, strict=False))
    print(f"S-T from scripted speech: got {got}, script {want}: {right}/{len(want)} samples right; "
          f"Rt {insight['rt']} Ch {insight['ch']} ({insight['lesson_type_zh']})")
    assert len(got) == len(want) and right >= math.ceil(0.95 * len(want)), (got, want)
    assert abs(insight["rt"] - want.count("T") / len(want)) <= 1 / len(want) + 1e-9
    runs = 1 + sum(1 for a, b in zip(want, want[1:], strict=False) if a != b)
    assert abs(insight["ch"] - (runs - 1) / len(want)) <= 2 / len(want) + 1e-9
    assert insight["measured"] and insight["student_samples"] >= want.count("S") - 1
    [room] = [s for s in insight["speakers"] if s["role"] == "receiving" and s["classroom_id"] == w.recv_room.id]
    assert abs(room["spoken_s"] - 21.0) <= 3.0 and room["turns"] == 3, room
    assert abs(insight["teacher_s"] - 42.0) <= 4.0, insight["teacher_s"]

    # the room closes: the stored teaching record keeps the analysis, the reports read it from there
    wait_until("the server's event loop", lambda: loops, 10, interval=0.2)
    close_room(app, loops[-1], lid)

    def stored() -> Any:
        with session_factory() as s:
            row = s.get(TeachingRecord, lid)
            if row is None or row.st_rt is None:
                return None
            rooms = {a.classroom_id: (a.spoken_s, a.speech_turns) for a in
                     s.scalars(select(AttendanceRecord).where(AttendanceRecord.instance_id == lid))}
            return row.st_rt, row.st_ch, row.st_type, row.receivers_spoke, rooms

    rt, ch, kind, spoke, rooms = wait_until("the stored record", stored, 20, interval=0.2)
    # (stored with the literature's 30 s samples: at 30 s the classroom speaks, at 60 s the teacher)
    assert (rt, ch, kind) == (0.5, 0.5, "dialogue")
    assert spoke == 1 and rooms[w.recv_room.id][1] == 3 and abs(rooms[w.recv_room.id][0] - 21.0) <= 3.0, rooms
