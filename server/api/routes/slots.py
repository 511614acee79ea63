"""智能排课: the free common slots of a pairing or a demand order.

The rules (candidates inside both bells, conflicts, ranking, who may look) live in
``scheduler.slots``; this module only maps HTTP to it.  A proposal carries the body
that books it (``booking``: ``POST /series`` once a title and grade are added; for a
demand order also ``offer``: ``POST /demand-orders/{id}/offers``), so booking a
proposal goes through the one booking path with its checks and its 409.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from scheduler import slots
from scheduler.models import LessonKind
from server.api.deps import CurrentUser, SessionDep, StaffScope

router = APIRouter(tags=["slots"])


class ReceivingOut(BaseModel):
    classroom_id: int
    classroom_name: str
    school_name: str
    period_from: int
    period_to: int
    """The receiving school's own periods."""
    start: str
    end: str


class SlotExceptionOut(BaseModel):
    week: int
    day: str
    kind: str
    """``clash`` (something is in the way, see ``conflicts``) or ``holiday`` (no lesson that day)."""
    message: str
    conflicts: list[dict[str, Any]]


class ProposalOut(BaseModel):
    weekday: int
    period_from: int
    period_to: int
    """The main school's periods."""
    start: str
    end: str
    label: str
    week_from: int
    week_to: int
    lessons: int
    """Lessons a series booked on it would have now (holidays dropped, make-up days added)."""
    clash_weeks: int
    holiday_weeks: int
    bookable: bool
    """No clash: booking it as one weekly series passes the conflict check now."""
    skip_weeks: list[int]
    """The weeks with a clash; ``booking`` skips them (no lesson there)."""
    lessons_skipping: int
    """Lessons the series ``booking`` books would have (``lessons`` minus those of ``skip_weeks``)."""
    preferred: bool
    """One of the demand order's preferred slots."""
    receiving: list[ReceivingOut]
    exceptions: list[SlotExceptionOut]
    booking: dict[str, Any]
    """The body of ``POST /series`` that books it (around its clashes: ``skip_weeks``), without ``title`` and
    ``grade``."""
    offer: dict[str, Any] | None = None
    """For a demand order: the body of ``POST /demand-orders/{id}/offers`` that offers it."""


class FreeSlotsOut(BaseModel):
    week_from: int
    week_to: int
    candidates: int
    """Weekday and period runs inside both schools' bells that were checked."""
    count: int
    data: list[ProposalOut]


def _out(f: slots.SlotFinding, *, kind: LessonKind, order: bool = False) -> FreeSlotsOut:
    req = f.request
    data = []
    for p in f.proposals:
        booking = {"kind": kind.value, "subject": req.subject, "term_id": req.term_id,
                   "main_classroom_id": req.main_classroom_id, "main_teacher_id": req.teacher_id,
                   "weekday": p.weekday, "period_from": p.period_from, "period_to": p.period_to,
                   "week_from": p.week_from, "week_to": p.week_to, "skip_weeks": p.skip_weeks,
                   "receivers": [{"classroom_id": i} for i in req.receiver_ids]}
        offer = {"teacher_id": req.teacher_id, "main_classroom_id": req.main_classroom_id, "weekday": p.weekday,
                 "period_from": p.period_from, "period_to": p.period_to} if order else None
        data.append(ProposalOut(
            weekday=p.weekday, period_from=p.period_from, period_to=p.period_to, start=f"{p.start:%H:%M}",
            end=f"{p.end:%H:%M}", label=p.label(), week_from=p.week_from, week_to=p.week_to, lessons=p.lessons,
            clash_weeks=p.clash_weeks, holiday_weeks=p.holiday_weeks, bookable=p.bookable, preferred=p.preferred,
            skip_weeks=p.skip_weeks, lessons_skipping=p.lessons_skipping,
            receiving=[ReceivingOut(classroom_id=r.classroom_id, classroom_name=r.classroom_name,
                                    school_name=r.school_name, period_from=r.period_from, period_to=r.period_to,
                                    start=f"{r.start:%H:%M}", end=f"{r.end:%H:%M}") for r in p.receiving],
            exceptions=[SlotExceptionOut(week=e.week, day=e.day.isoformat(), kind=e.kind, message=e.message,
                                         conflicts=[i.as_dict() for i in e.items]) for e in p.exceptions],
            booking=booking, offer=offer))
    return FreeSlotsOut(week_from=f.week_from, week_to=f.week_to, candidates=f.candidates, count=len(data),
                        data=data)


Weeks = Annotated[str | None, Query(max_length=20, description="周次范围，如 3-12；缺省为整个学期")]
Length = Annotated[int, Query(ge=1, le=4, description="连续节数")]
Limit = Annotated[int, Query(ge=1, le=200)]


@router.get("/pairings/{pairing_id}/free-slots", response_model=FreeSlotsOut)
def pairing_free_slots(
    pairing_id: int, session: SessionDep, user: CurrentUser, scope: StaffScope,
    subject: Annotated[str, Query(min_length=1, max_length=50)],
    term_id: int,
    teacher_id: int,
    main_classroom_id: int | None = None,
    receiver_ids: Annotated[list[int], Query(max_length=50)] = [],  # noqa: B006 (FastAPI copies it)
    weeks: Weeks = None,
    length: Length = 1,
    limit: Limit = 50,
) -> FreeSlotsOut:
    """The pairing's free common slots, best first: who may book there may look (an admin of the main
    school or above; a teacher of it for themselves)."""
    week_from, week_to = slots.week_range(weeks)
    found = slots.for_pairing(session, pairing_id, subject=subject, term_id=term_id, teacher_id=teacher_id,
                              main_classroom_id=main_classroom_id, receiver_ids=receiver_ids,
                              week_from=week_from, week_to=week_to, length=length, actor=user, scope=scope,
                              limit=limit)
    return _out(found, kind=LessonKind.dedicated)


@router.get("/demand-orders/{order_id}/free-slots", response_model=FreeSlotsOut)
def order_free_slots(
    order_id: int, session: SessionDep, user: CurrentUser, scope: StaffScope,
    teacher_id: int,
    main_classroom_id: int,
    receiving_classroom_id: int | None = None,
    weeks: Weeks = None,
    length: Length = 1,
    limit: Limit = 50,
) -> FreeSlotsOut:
    """Free common slots for answering a demand order with this teacher and main classroom; the order's
    preferred slots first among equals."""
    week_from, week_to = slots.week_range(weeks)
    found = slots.for_order(session, order_id, teacher_id=teacher_id, main_classroom_id=main_classroom_id,
                            receiving_classroom_id=receiving_classroom_id, week_from=week_from, week_to=week_to,
                            length=length, actor=user, scope=scope, limit=limit)
    return _out(found, kind=LessonKind.dedicated, order=True)
