"""/terms: 学期 with their holidays and make-up days (调休).

Anyone signed in reads terms; a bureau admin creates the terms of the regions
they cover and edits their days, a system admin also the global ones.
"""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict

from scheduler import directory
from scheduler.models import DayKind, Term
from server.api.deps import CurrentUser, ScopeDep, SessionDep

router = APIRouter(prefix="/terms", tags=["terms"])


class TermDayPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    day: date
    kind: DayKind
    follows_weekday: int | None
    """For a make-up day: ISO weekday (1 = Monday) whose timetable runs that day."""
    name: str


class TermPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    region_id: int | None
    """Empty for a global term."""
    start_date: date
    end_date: date


class TermDetail(TermPublic):
    days: list[TermDayPublic]


class TermsPublic(BaseModel):
    data: list[TermPublic]
    count: int


class TermCreate(BaseModel):
    name: str
    start_date: date
    end_date: date
    region_id: int | None = None


class TermDayCreate(BaseModel):
    day: date
    kind: DayKind
    follows_weekday: int | None = None
    """Required for a make-up day, 1–7; not allowed for a holiday."""
    name: str = ""


@router.get("", response_model=TermsPublic)
def list_terms(session: SessionDep, _user: CurrentUser, region_id: int | None = None) -> TermsPublic:
    """Newest first; ``region_id``: the terms that apply there (its own, its parents' and global ones)."""
    rows = session.scalars(directory.term_query(session, region_id=region_id)).all()
    return TermsPublic(data=[TermPublic.model_validate(t) for t in rows], count=len(rows))


@router.get("/{term_id}", response_model=TermDetail)
def get_term(term_id: int, session: SessionDep, _user: CurrentUser) -> Term:
    return directory.get_term(session, term_id)


@router.post("", response_model=TermDetail, status_code=201)
def create_term(body: TermCreate, session: SessionDep, scope: ScopeDep) -> Term:
    return directory.create_term(session=session, scope=scope, **body.model_dump())


class TermDayAdded(TermDayPublic):
    cancelled_lessons: list[int]
    """Lessons of that date cancelled by the holiday, or by the make-up day's other timetable."""
    added_lessons: list[int]
    """Lessons a make-up day added from the followed weekday's timetable."""
    not_added: list[dict]  # type: ignore[type-arg]
    """Lessons the make-up day could not add, with the conflict that stopped each."""


@router.post("/{term_id}/days", response_model=TermDayAdded, status_code=201)
def add_term_day(term_id: int, body: TermDayCreate, session: SessionDep, scope: ScopeDep) -> TermDayAdded:
    """Adds a holiday or a make-up day; lessons booked on that date follow it (see ``bookings.apply_term_day``)."""
    entry = directory.add_term_day(session=session, scope=scope, term_id=term_id, **body.model_dump())
    change = entry.change  # type: ignore[attr-defined]
    return TermDayAdded(**TermDayPublic.model_validate(entry).model_dump(), cancelled_lessons=change.cancelled,
                        added_lessons=change.added, not_added=[i.as_dict() for i in change.not_added])


@router.delete("/{term_id}/days/{day_id}", status_code=204)
def remove_term_day(term_id: int, day_id: int, session: SessionDep, scope: ScopeDep) -> Response:
    directory.remove_term_day(session=session, scope=scope, term_id=term_id, day_id=day_id)
    return Response(status_code=204)
