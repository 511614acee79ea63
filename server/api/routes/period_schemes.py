"""/period-schemes: a school's bell schedule (作息时间) and its numbered periods (节次).

Staff in scope read them; the school's admin (or an admin over its region)
writes them.  Sending ``periods`` replaces all of a scheme's periods; lessons
already booked keep the times they were booked with.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from scheduler import directory
from scheduler.models import PeriodScheme
from server.api.common import changes
from server.api.deps import ScopeDep, SessionDep, StaffScope
from server.api.times import WallTime

router = APIRouter(prefix="/period-schemes", tags=["period-schemes"])


class PeriodBody(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    number: int
    start_time: WallTime
    end_time: WallTime


class SchemePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    school_id: int
    term_id: int | None
    """Empty for the school's standing scheme."""
    name: str
    periods: list[PeriodBody]


class SchemesPublic(BaseModel):
    data: list[SchemePublic]
    count: int


class SchemeCreate(BaseModel):
    school_id: int
    name: str = ""
    term_id: int | None = None
    periods: list[PeriodBody]


class SchemeUpdate(BaseModel):
    name: str | None = None
    term_id: int | None = None
    periods: list[PeriodBody] | None = None


def _specs(periods: list[PeriodBody]) -> list[directory.PeriodSpec]:
    return [directory.PeriodSpec(p.number, p.start_time, p.end_time) for p in periods]


@router.get("", response_model=SchemesPublic)
def list_schemes(session: SessionDep, scope: StaffScope, school_id: int | None = None) -> SchemesPublic:
    rows = session.scalars(directory.scheme_query(session, scope, school_id=school_id)).all()
    return SchemesPublic(data=[SchemePublic.model_validate(s) for s in rows], count=len(rows))


@router.get("/{scheme_id}", response_model=SchemePublic)
def get_scheme(scheme_id: int, session: SessionDep, scope: StaffScope) -> PeriodScheme:
    return directory.require_scheme(session, scope, scheme_id)


@router.post("", response_model=SchemePublic, status_code=201)
def create_scheme(body: SchemeCreate, session: SessionDep, scope: ScopeDep) -> PeriodScheme:
    return directory.create_scheme(session=session, scope=scope, school_id=body.school_id, name=body.name,
                                   term_id=body.term_id, periods=_specs(body.periods))


@router.patch("/{scheme_id}", response_model=SchemePublic)
def update_scheme(scheme_id: int, body: SchemeUpdate, session: SessionDep, scope: ScopeDep) -> PeriodScheme:
    fields = changes(body, nullable=("term_id",))
    if "periods" in fields:
        fields["periods"] = _specs(body.periods or [])
    return directory.update_scheme(session=session, scope=scope, scheme_id=scheme_id, **fields)
