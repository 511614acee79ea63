"""Instants and bell times on the wire: one convention (``server/api/times.py``), in every response."""

from __future__ import annotations

import types
import typing
from datetime import datetime, time, timezone
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from pydantic import BaseModel, PlainSerializer, TypeAdapter, ValidationError

from scheduler import clock
from server.api.times import Timestamp, WallTime, format_instant, format_wall_time
from server.core.config import Settings

INSTANT = TypeAdapter(Timestamp)
BELL = TypeAdapter(WallTime)


def test_an_instant_carries_the_timetable_zones_offset() -> None:
    assert INSTANT.dump_json(datetime(2026, 9, 7, 8, 0)) == b'"2026-09-07T08:00:00+08:00"'
    assert INSTANT.dump_json(datetime(2026, 9, 7, 8, 0, 3, 250_999)) == b'"2026-09-07T08:00:03.250+08:00"'
    assert INSTANT.dump_json(datetime(2026, 9, 7, 0, 0, tzinfo=timezone.utc)) == b'"2026-09-07T08:00:00+08:00"'
    # what a client sends with any offset is stored as the timetable's wall clock
    assert INSTANT.validate_python("2026-09-07T00:00:00Z") == datetime(2026, 9, 7, 8, 0)
    assert INSTANT.validate_python("2026-09-07T08:00:00") == datetime(2026, 9, 7, 8, 0)


def test_the_offset_follows_the_configured_zone_and_its_summer_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock, "_zone", clock.zone())
    clock.configure("Europe/Berlin")
    assert format_instant(datetime(2026, 1, 5, 8, 0)) == "2026-01-05T08:00:00+01:00"
    assert format_instant(datetime(2026, 7, 6, 8, 0)) == "2026-07-06T08:00:00+02:00"


def test_a_bell_time_is_the_schools_wall_clock_without_a_zone() -> None:
    assert BELL.dump_json(BELL.validate_python("08:00")) == b'"08:00:00"'
    assert format_wall_time(time(7, 55)) == "07:55:00"
    with pytest.raises(ValidationError):
        BELL.validate_python("08:00:00+08:00")


def _time_fields(tp: object, metadata: list[object], where: str, seen: set[type]) -> typing.Iterator[tuple[str, bool]]:
    """Every field of ``tp`` typed ``datetime``/``time``, and whether it goes through the shared serializer."""
    if typing.get_origin(tp) is typing.Annotated:
        inner, *extra = typing.get_args(tp)
        yield from _time_fields(inner, [*metadata, *extra], where, seen)
    elif tp in (datetime, time):
        yield where, any(isinstance(m, PlainSerializer) and m.func in (format_instant, format_wall_time)
                         for m in metadata)
    elif isinstance(tp, type) and issubclass(tp, BaseModel):
        if tp in seen:
            return
        seen.add(tp)
        for name, field in tp.model_fields.items():
            yield from _time_fields(field.annotation, list(field.metadata), f"{tp.__name__}.{name}", seen)
    elif typing.get_origin(tp) in (list, dict, tuple, set, typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            yield from _time_fields(arg, [], where, seen)


def _api_routes(routes: typing.Iterable[object]) -> typing.Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        else:  # an included router (FastAPI keeps the original under ``original_router``) or a mount
            yield from _api_routes(getattr(getattr(route, "original_router", route), "routes", []))


def test_no_response_declares_a_bare_datetime_or_time(tmp_path: Path) -> None:
    """A new field typed plain ``datetime`` would answer without an offset against its ``date-time``."""
    from server.main import create_app

    app = create_app(Settings(data_dir=tmp_path, secret_key="x" * 32), migrate=False, run_lifecycle=False)
    models = [r.response_model for r in _api_routes(app.routes) if r.response_model is not None]
    assert len(models) > 50
    seen: set[type] = set()
    fields = dict(f for m in models for f in _time_fields(m, [], getattr(m, "__name__", str(m)), seen))
    assert len(fields) > 30 and "LessonOut.starts_at" in fields and "PeriodBody.start_time" in fields, fields
    bare = sorted(where for where, shared in fields.items() if not shared)
    assert not bare, f"use server.api.times.Timestamp / WallTime for: {bare}"
