"""Lesson instances: listings, one-lesson changes (调课/顺延/停课/代课), join tokens, start."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Annotated

import anyio
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler import bookings, clock, lifecycle
from scheduler.access import require_instance
from scheduler.joining import seat_for
from scheduler.models import (
    Classroom,
    InstanceStatus,
    LessonInstance,
    LessonKind,
    ReceiverMode,
    School,
    SeriesReceiver,
    User,
)
from scheduler.queries import list_instances
from server.api.common import InstanceFilterDep, room_owner
from server.api.deps import CurrentUser, ScopeDep, SessionDep, SettingsDep
from server.api.errors import ApiError
from server.api.times import Timestamp
from server.core.security import JoinClaims, create_join_token

router = APIRouter(prefix="/lessons", tags=["lessons"])


class ReceiverBrief(BaseModel):
    classroom_id: int
    classroom_name: str
    school_name: str
    mode: ReceiverMode
    assistant_id: int | None = None
    """The teacher assisting in this receiving classroom (助教), if any."""


class LessonOut(BaseModel):
    id: int
    series_id: int
    title: str
    kind: LessonKind
    subject: str
    grade: str
    day: date
    starts_at: Timestamp
    ends_at: Timestamp
    period_from: int
    period_to: int
    status: InstanceStatus
    main_classroom_id: int
    main_classroom_name: str
    main_school_name: str
    main_school_id: int | None = None
    teacher_id: int
    teacher_name: str
    substitute: bool
    rescheduled_from_id: int | None
    cancel_reason: str | None
    room_open: bool
    room_opened_at: Timestamp | None
    started_at: Timestamp | None
    room_closed_at: Timestamp | None
    receivers: list[ReceiverBrief]
    stream_from: int | None = None
    """名校网络课堂: home students not on stage watch the HLS stream while more than this many are in the
    lesson (0: always; null: never, WebRTC only)."""


class LessonPage(BaseModel):
    data: list[LessonOut]
    count: int


def lesson_rows(session: Session, rows: Sequence[LessonInstance]) -> list[LessonOut]:
    """Serialize instances with names loaded in bulk (three queries, whatever the page size)."""
    series_ids = {r.series_id for r in rows}
    receivers: dict[int, list[SeriesReceiver]] = {}
    if series_ids:
        for rec in session.scalars(select(SeriesReceiver).where(SeriesReceiver.series_id.in_(series_ids))):
            receivers.setdefault(rec.series_id, []).append(rec)
    room_ids = {r.main_classroom_id for r in rows} | {x.classroom_id for v in receivers.values() for x in v}
    rooms: dict[int, tuple[str, str]] = {}
    school_of: dict[int, int] = {}
    if room_ids:
        for cid, cname, sname, sid in session.execute(
            select(Classroom.id, Classroom.name, School.name, School.id).join(School, School.id == Classroom.school_id)
            .where(Classroom.id.in_(room_ids))
        ):
            rooms[cid] = (cname, sname)
            school_of[cid] = sid
    teacher_ids = {r.teacher_id for r in rows}
    names = dict(session.execute(select(User.id, User.display_name).where(User.id.in_(teacher_ids))).all()) \
        if teacher_ids else {}
    out = []
    for r in rows:
        s = r.series
        main = rooms.get(r.main_classroom_id, ("", ""))
        out.append(LessonOut(
            id=r.id, series_id=r.series_id, title=s.title, kind=s.kind, subject=s.subject, grade=s.grade,
            day=r.day, starts_at=r.starts_at, ends_at=r.ends_at, period_from=r.period_from, period_to=r.period_to,
            status=r.status, main_classroom_id=r.main_classroom_id, main_classroom_name=main[0],
            main_school_name=main[1], main_school_id=school_of.get(r.main_classroom_id),
            teacher_id=r.teacher_id, teacher_name=names.get(r.teacher_id, ""),
            substitute=r.substitute, rescheduled_from_id=r.rescheduled_from_id, cancel_reason=r.cancel_reason,
            room_open=lifecycle.room_is_open(r), room_opened_at=r.room_opened_at, started_at=r.started_at,
            room_closed_at=r.room_closed_at,
            receivers=[ReceiverBrief(classroom_id=x.classroom_id, classroom_name=rooms.get(x.classroom_id, ("", ""))[0],
                                     school_name=rooms.get(x.classroom_id, ("", ""))[1], mode=x.mode,
                                     assistant_id=x.assistant_id)
                       for x in receivers.get(r.series_id, [])],
            stream_from=s.stream_from,
        ))
    return out


@router.get("", response_model=LessonPage)
def list_lessons(
    session: SessionDep,
    scope: ScopeDep,
    f: InstanceFilterDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> LessonPage:
    rows, total = list_instances(session, scope, f, offset=offset, limit=limit)
    return LessonPage(data=lesson_rows(session, rows), count=total)


@router.get("/{instance_id}", response_model=LessonOut)
def get_lesson(instance_id: int, session: SessionDep, scope: ScopeDep) -> LessonOut:
    return lesson_rows(session, [require_instance(session, scope, instance_id)])[0]


class RescheduleIn(BaseModel):
    day: date
    period_from: int | None = Field(default=None, ge=1, le=20)
    period_to: int | None = Field(default=None, ge=1, le=20)
    reason: str = Field(min_length=1, max_length=500)


class ReasonIn(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


class SubstituteIn(BaseModel):
    teacher_id: int
    reason: str = Field(min_length=1, max_length=500)


@router.post("/{instance_id}/reschedule", response_model=LessonOut)
def reschedule(instance_id: int, body: RescheduleIn, session: SessionDep, user: CurrentUser,
               scope: ScopeDep) -> LessonOut:
    require_instance(session, scope, instance_id)
    new = bookings.reschedule_instance(session, instance_id, day=body.day, period_from=body.period_from,
                                       period_to=body.period_to, actor=user, scope=scope, reason=body.reason)
    return lesson_rows(session, [new])[0]


@router.post("/{instance_id}/postpone", response_model=LessonOut)
def postpone(instance_id: int, body: ReasonIn, session: SessionDep, user: CurrentUser, scope: ScopeDep) -> LessonOut:
    require_instance(session, scope, instance_id)
    new = bookings.postpone_instance(session, instance_id, actor=user, scope=scope, reason=body.reason)
    return lesson_rows(session, [new])[0]


@router.post("/{instance_id}/cancel", response_model=LessonOut)
def cancel(instance_id: int, body: ReasonIn, session: SessionDep, user: CurrentUser, scope: ScopeDep) -> LessonOut:
    require_instance(session, scope, instance_id)
    inst = bookings.cancel_instance(session, instance_id, actor=user, scope=scope, reason=body.reason)
    return lesson_rows(session, [inst])[0]


@router.post("/{instance_id}/substitute", response_model=LessonOut)
def substitute(instance_id: int, body: SubstituteIn, session: SessionDep, user: CurrentUser,
               scope: ScopeDep) -> LessonOut:
    require_instance(session, scope, instance_id)
    inst = bookings.substitute_instance(session, instance_id, teacher_id=body.teacher_id, actor=user, scope=scope,
                                        reason=body.reason)
    return lesson_rows(session, [inst])[0]


class JoinTokenOut(BaseModel):
    token: str
    lesson_role: str
    """``main``, ``receiving``, ``student`` or ``observer``."""
    classroom_id: int | None
    instance_id: int
    expires_at: int
    room_open: bool
    starts_at: Timestamp
    room_opens_at: Timestamp
    ws_url: str | None = None
    """The signaling WebSocket of the node that owns the lesson's room (several nodes); None: the
    server this answer came from (one node)."""
    node_id: str | None = None
    """That node's id (several nodes)."""
    lease_lapses_in_ms: int | None = None
    """Set when the owner's lease is overdue for renewal (its node killed, frozen or cut off): it lapses in
    this many milliseconds unless renewed, and the room is placed anew at the next request after that.
    A client that cannot reach ``ws_url`` asks again then, not sooner (until then the answer is the same)."""


@router.post("/{instance_id}/join-token", response_model=JoinTokenOut)
def join_token(instance_id: int, request: Request, session: SessionDep, user: CurrentUser,
               settings: SettingsDep) -> JoinTokenOut:
    """A short-lived token binding the caller to this lesson in their lesson role.

    Only people booked into the lesson, and researchers of its region (as
    silent observers), get one.  With several nodes, once the lesson's room is open, it is placed
    now if it has no owner yet (``server.core.placement``) and ``ws_url`` names the owner's socket.
    """
    inst = session.get(LessonInstance, instance_id)
    if inst is None:
        raise ApiError(404, "not_found", f"课次 #{instance_id} 不存在")
    seat = seat_for(session, user, inst)
    ws_url = node_id = lapses_in_ms = None
    placed = room_owner(request, inst)
    if placed is not None:
        ws_url, node_id, lapses_in_ms = placed.ws_url(inst.id), placed.node_id, placed.lapses_in_ms
    expires = int(time.time()) + settings.join_token_seconds
    token = create_join_token(JoinClaims(user.id, inst.id, seat.lesson_role, seat.classroom_id, expires,
                                         user.token_version), settings.effective_secret_key())
    return JoinTokenOut(token=token, lesson_role=seat.lesson_role, classroom_id=seat.classroom_id,
                        instance_id=inst.id, expires_at=expires, room_open=lifecycle.room_is_open(inst),
                        starts_at=inst.starts_at,
                        room_opens_at=inst.starts_at - timedelta(minutes=settings.room_open_lead_minutes),
                        ws_url=ws_url, node_id=node_id, lease_lapses_in_ms=lapses_in_ms)


@router.post("/{instance_id}/start", response_model=LessonOut)
def start(instance_id: int, request: Request, session: SessionDep, user: CurrentUser) -> LessonOut:
    """The main classroom starts the lesson: it goes live (the first main publish does the same)."""
    inst = session.get(LessonInstance, instance_id)
    if inst is None:
        raise ApiError(404, "not_found", f"课次 #{instance_id} 不存在")
    if seat_for(session, user, inst).lesson_role != "main":
        raise ApiError(403, "forbidden", "只有主讲教师或主讲教室可以开始上课")
    event = lifecycle.mark_started(session, instance_id, clock.now())
    session.commit()  # durable before anyone hears of it
    if event is not None:
        # sync handlers run in a worker thread: hand the publish to the event loop
        anyio.from_thread.run(request.app.state.bus.publish, lifecycle.TOPIC, event.as_dict())
    return lesson_rows(session, [inst])[0]


@router.post("/{instance_id}/end", response_model=LessonOut)
def end(instance_id: int, request: Request, session: SessionDep, user: CurrentUser) -> LessonOut:
    """The main classroom ends the lesson (下课): the room closes now and everyone gets ``leave``
    ``room_closed``; the teaching record is computed from what happened."""
    inst = session.get(LessonInstance, instance_id)
    if inst is None:
        raise ApiError(404, "not_found", f"课次 #{instance_id} 不存在")
    if seat_for(session, user, inst).lesson_role != "main":
        raise ApiError(403, "forbidden", "只有主讲教师或主讲教室可以下课")
    event = lifecycle.mark_ended(session, instance_id, clock.now())
    session.commit()  # durable before anyone hears of it
    if event is not None:
        anyio.from_thread.run(request.app.state.bus.publish, lifecycle.TOPIC, event.as_dict())
    return lesson_rows(session, [inst])[0]
