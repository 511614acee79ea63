"""/pairings: 城乡结对, standing links between an urban and a rural school (or classroom).

Staff see the pairings that involve a school in their scope; an admin who
manages either school creates, edits and deactivates them.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from scheduler import directory
from scheduler.access import require_school
from scheduler.models import Classroom, Pairing, School
from server.api.common import PageDep, changes
from server.api.deps import ScopeDep, SessionDep, StaffScope

router = APIRouter(prefix="/pairings", tags=["pairings"])


class PairingPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    urban_school_id: int
    rural_school_id: int
    urban_classroom_id: int | None
    rural_classroom_id: int | None
    subjects: list[str]
    """Subjects the pairing covers; empty means any subject."""
    term_id: int | None
    """The term it holds for; empty means a standing pairing."""
    active: bool


class PairingsPublic(BaseModel):
    data: list[PairingPublic]
    count: int


class PairingCreate(BaseModel):
    urban_school_id: int
    rural_school_id: int
    urban_classroom_id: int | None = None
    rural_classroom_id: int | None = None
    subjects: list[str] = []
    term_id: int | None = None


class PairingUpdate(BaseModel):
    """Only the fields sent are changed; ``null`` clears a classroom or the term."""

    urban_classroom_id: int | None = None
    rural_classroom_id: int | None = None
    subjects: list[str] | None = None
    term_id: int | None = None
    active: bool | None = None


@router.get("", response_model=PairingsPublic)
def list_pairings(session: SessionDep, scope: StaffScope, page: PageDep, term_id: int | None = None,
                  school_id: int | None = None, region_id: int | None = None,
                  active: bool | None = None) -> PairingsPublic:
    """``school_id`` matches either side; ``region_id`` a pairing with either school in that region's subtree."""
    stmt = directory.pairing_query(session, scope, term_id=term_id, school_id=school_id, region_id=region_id,
                                   active=active)
    rows, count = directory.paginate(session, stmt, offset=page.offset, limit=page.limit)
    return PairingsPublic(data=[PairingPublic.model_validate(p) for p in rows], count=count)


class PairedClassroom(BaseModel):
    classroom_id: int
    classroom_name: str
    school_id: int
    school_name: str
    pairing_id: int


class PairedClassroomsPublic(BaseModel):
    data: list[PairedClassroom]
    count: int


@router.get("/classrooms", response_model=PairedClassroomsPublic)
def paired_classrooms(school_id: int, session: SessionDep, scope: StaffScope) -> PairedClassroomsPublic:
    """The classrooms on the other side of the school's active pairings: what the booking dialog offers
    as receiving (or main) classrooms. A pairing that names the other side's classroom gives only that one.
    The school must be in the caller's scope; the paired schools need not be."""
    require_school(session, scope, school_id)
    seen: set[int] = set()
    out: list[PairedClassroom] = []
    for p in session.scalars(directory.pairing_query(session, scope, school_id=school_id, active=True)):
        urban_side = p.urban_school_id == school_id
        other_school = p.rural_school_id if urban_side else p.urban_school_id
        other_room = p.rural_classroom_id if urban_side else p.urban_classroom_id
        stmt = (select(Classroom.id, Classroom.name, School.id, School.name).join(School, School.id == Classroom.school_id)
                .where(Classroom.school_id == other_school).order_by(Classroom.id))
        if other_room is not None:
            stmt = stmt.where(Classroom.id == other_room)
        for cid, cname, sid, sname in session.execute(stmt):
            if cid not in seen:
                seen.add(cid)
                out.append(PairedClassroom(classroom_id=cid, classroom_name=cname, school_id=sid, school_name=sname,
                                           pairing_id=p.id))
    return PairedClassroomsPublic(data=out, count=len(out))


@router.get("/{pairing_id}", response_model=PairingPublic)
def get_pairing(pairing_id: int, session: SessionDep, scope: StaffScope) -> Pairing:
    return directory.require_pairing(session, scope, pairing_id)


@router.post("", response_model=PairingPublic, status_code=201)
def create_pairing(body: PairingCreate, session: SessionDep, scope: ScopeDep) -> Pairing:
    return directory.create_pairing(session=session, scope=scope, **body.model_dump())


@router.patch("/{pairing_id}", response_model=PairingPublic)
def update_pairing(pairing_id: int, body: PairingUpdate, session: SessionDep, scope: ScopeDep) -> Pairing:
    fields = changes(body, nullable=("urban_classroom_id", "rural_classroom_id", "term_id"))
    return directory.update_pairing(session=session, scope=scope, pairing_id=pairing_id, **fields)


@router.post("/{pairing_id}/deactivate", response_model=PairingPublic)
def deactivate_pairing(pairing_id: int, session: SessionDep, scope: ScopeDep) -> Pairing:
    """Ends the pairing; series already booked on it stay as they are."""
    return directory.update_pairing(session=session, scope=scope, pairing_id=pairing_id, active=False)
