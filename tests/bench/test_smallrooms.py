"""Pieces of ``bench.smallrooms`` that need neither root nor a network namespace: the rooms it books,
the subscriptions it makes, its loss and capacity figures."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from bench import smallrooms
from bench.fanout_sanke import SECRET
from bench.smallrooms import (
    STREAMS_PER_ROOM,
    Row,
    capacity,
    expected_streams,
    fill_row,
    join_tokens,
    prepare,
    rotated,
    stop_reason,
    subscriptions,
    summary,
)
from server.core.security import decode_join_token


def _row(rooms: int, worker: float, *, loss: float = 0.0, busy: float = 50.0, ok: int | None = None) -> Row:
    return Row(rooms=rooms, classrooms_ok=rooms * 4 if ok is None else ok, worker_cpu_pct=worker, loss_pct=loss,
               loss_pct_max=loss, machine_busy_pct=busy, bench_busy_pct=20.0, streams_ok=rooms * STREAMS_PER_ROOM)


def test_each_classroom_subscribes_as_its_page_does() -> None:
    main, receiving = "m", ["r1", "r2", "r3"]
    assert subscriptions("main", main, receiving) == [
        {"participant_id": pid, "source": s} for pid in receiving for s in ("camera", "microphone")]
    assert subscriptions("receiving", main, receiving) == [
        {"participant_id": "m", "source": s} for s in ("camera", "microphone", "screen")]
    assert (expected_streams("main"), expected_streams("receiving"), STREAMS_PER_ROOM) == (6, 3, 15)


def test_the_rooms_are_dedicated_lessons_with_a_seat_and_a_fresh_token_per_classroom(tmp_path: Path) -> None:
    from sqlalchemy import select

    from bench.fanout_sanke import _settings
    from scheduler.models import LessonInstance, LessonKind
    from server.core.db import make_engine, make_session_factory

    booked = prepare(tmp_path, 3)
    assert len(booked) == 3
    engine = make_engine(_settings(tmp_path).database_url)
    try:
        with make_session_factory(engine)() as s:
            lessons = {i.id: i for i in s.scalars(select(LessonInstance).where(
                LessonInstance.id.in_([b["lesson"] for b in booked])))}
            for room in booked:
                inst = lessons[room["lesson"]]
                assert inst.series.kind is LessonKind.dedicated and inst.series.recording is False
                assert inst.room_opened_at is not None
                roles = [seat[1] for seat in room["seats"]]
                assert roles == ["main", "receiving", "receiving", "receiving"]
                assert room["seats"][0][2] == inst.main_classroom_id
                assert sorted(seat[2] for seat in room["seats"][1:]) == sorted(
                    r.classroom_id for r in inst.series.receivers)
    finally:
        engine.dispose()
    # no classroom, teacher or terminal is shared between rooms (they all run in the same period)
    seats = [seat for room in booked for seat in room["seats"]]
    assert len({seat[0] for seat in seats}) == len({seat[2] for seat in seats}) == 12
    first = join_tokens(booked[0], int(time.time()) + 60)
    again = join_tokens(booked[0], int(time.time()) + 60)
    claims = [decode_join_token(t, SECRET) for t in first]
    assert [(c.user_id, c.instance_id, c.lesson_role, c.classroom_id) for c in claims] == [
        (uid, booked[0]["lesson"], role, cid) for uid, role, cid, _ in booked[0]["seats"]]
    assert {c.jti for c in claims}.isdisjoint({decode_join_token(t, SECRET).jti for t in again})


def test_loss_counts_sequence_gaps_per_connection_and_together() -> None:
    def stat(expected: int, received: int, *, error: str | None = None) -> dict:
        # one audio stream whose highest sequence number advanced by `expected` in a 2 s window
        return {"error": error, "t0": 0.0, "t1": 2.0,
                "start": {"packets": {"audio": 0}, "bytes": {"audio": 0}, "ssrcs": {1: (0, 99, 0, "audio")}},
                "end": {"packets": {"audio": received}, "bytes": {"audio": received * 100},
                        "ssrcs": {1: (received, 99 + expected, 0, "audio"), 2: (5, 5, 0, "other")}}}

    row = Row(rooms=1)
    fill_row(row, [stat(100, 100), stat(100, 96), stat(100, 0, error="nothing received")])
    assert row.loss_pct == pytest.approx(2.0)  # 4 of 200, the failed classroom apart
    assert row.loss_pct_mean == pytest.approx(2.0)
    assert row.loss_pct_max == pytest.approx(4.0)
    assert row.forwarded_pkts_per_s == pytest.approx(98.0)
    assert row.forwarded_kbps == pytest.approx(196 * 100 * 8 / 2 / 1000)
    assert row.streams_ok == 2  # RTX ("other") is not a stream of its own


def test_stepping_up_stops_at_one_percent_loss_a_saturated_machine_or_a_failed_join() -> None:
    assert stop_reason(_row(2, 10.0, loss=0.99, busy=90.0)) is None
    assert "loss" in stop_reason(_row(2, 10.0, loss=1.0))
    assert "saturated (91 % > 90 % busy, 20 % of it the bench's own)" in stop_reason(_row(2, 10.0, busy=91.0))
    assert "7/8" in stop_reason(_row(2, 10.0, ok=7))
    assert "loss" in stop_reason(_row(2, 10.0, loss=math.nan))


def test_capacity_is_measured_under_the_limits_and_extrapolated_along_the_worker_cpu_line() -> None:
    rows = [_row(1, 6.0), _row(2, 8.0), _row(4, 12.0), _row(6, 30.0, busy=95.0)]
    cap = capacity(rows)
    assert cap is not None
    assert cap.measured_rooms == 4  # the saturated step does not count
    assert cap.base_pct == pytest.approx(4.0)
    assert cap.per_room_pct == pytest.approx(2.0)
    assert cap.extrapolated_rooms == 48  # 4 + 2k <= 100
    lines = summary(rows, "at 6 room(s): machine saturated")
    assert lines[0].startswith("stopped stepping up: at 6")
    assert "measured: 4 room(s)" in lines[1] and "12.0 %" in lines[1] and "(20 % the bench's own)" in lines[1]
    assert "~48 rooms at 100 % of one core" in lines[2]
    # one step: a line through the origin
    one = capacity([_row(2, 10.0)])
    assert one is not None and (one.base_pct, one.per_room_pct, one.extrapolated_rooms) == (0.0, 5.0, 20)
    # a falling line (noise) falls back to the busiest step's ratio
    noisy = capacity([_row(1, 9.0), _row(2, 8.0)])
    assert noisy is not None and (noisy.per_room_pct, noisy.extrapolated_rooms) == (4.0, 25)
    assert capacity([_row(1, 5.0, loss=3.0)]) is None
    assert "no step met the limits" in summary([_row(1, 5.0, loss=3.0)], None)[-1]


def test_missing_streams_are_reported_not_hidden() -> None:
    row = _row(1, 5.0)
    row.streams_ok = STREAMS_PER_ROOM - 2
    assert stop_reason(row) is None
    assert any("2 of 15" in line for line in summary([row], None))


def test_rotated_clip_keeps_the_time_stamps_and_every_payload() -> None:
    packets = [(bytes([i]), i * 960) for i in range(5)]
    out = rotated(packets, 7)
    assert [pts for _, pts in out] == [pts for _, pts in packets]
    assert [p for p, _ in out] == [bytes([i]) for i in (2, 3, 4, 0, 1)]
    assert rotated([], 3) == []


def test_table_shows_a_step_and_its_streams() -> None:
    row = _row(2, 7.5)
    row.client_cpu_pct = [40.0, 41.0]
    text = smallrooms.format_table([row])
    assert "8/8" in text and "30/30" in text and "3.75" in text and "40/41" in text


def test_a_shared_machine_may_raise_the_busy_limit() -> None:
    rows = [_row(1, 5.0, busy=95.0), _row(2, 9.0, busy=97.0)]
    assert capacity(rows) is None
    cap = capacity(rows, busy_limit=100.0)
    assert cap is not None and cap.measured_rooms == 2 and cap.per_room_pct == pytest.approx(4.0)
    assert stop_reason(rows[1], 100.0) is None
    assert "machine <= 94 % busy" in summary(rows, None, 94.0)[-1]
