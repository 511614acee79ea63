"""/classrooms: the classroom terminals of a school.

Anyone signed in sees the classrooms of the schools in their scope; the
school's admin (or an admin over its region) creates and edits them.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from scheduler import directory
from scheduler.models import Classroom
from server.api.common import PageDep, changes
from server.api.deps import ScopeDep, SessionDep

router = APIRouter(prefix="/classrooms", tags=["classrooms"])


class ClassroomPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    school_id: int
    name: str
    capacity: int


class ClassroomsPublic(BaseModel):
    data: list[ClassroomPublic]
    count: int


class ClassroomCreate(BaseModel):
    school_id: int
    name: str
    capacity: int = 45


class ClassroomUpdate(BaseModel):
    name: str | None = None
    capacity: int | None = None


@router.get("", response_model=ClassroomsPublic)
def list_classrooms(session: SessionDep, scope: ScopeDep, page: PageDep,
                    school_id: int | None = None) -> ClassroomsPublic:
    stmt = directory.classroom_query(session, scope, school_id=school_id)
    rows, count = directory.paginate(session, stmt, offset=page.offset, limit=page.limit)
    return ClassroomsPublic(data=[ClassroomPublic.model_validate(c) for c in rows], count=count)


@router.get("/{classroom_id}", response_model=ClassroomPublic)
def get_classroom(classroom_id: int, session: SessionDep, scope: ScopeDep) -> Classroom:
    return directory.require_classroom(session, scope, classroom_id)


@router.post("", response_model=ClassroomPublic, status_code=201)
def create_classroom(body: ClassroomCreate, session: SessionDep, scope: ScopeDep) -> Classroom:
    return directory.create_classroom(session=session, scope=scope, school_id=body.school_id, name=body.name,
                                      capacity=body.capacity)


@router.patch("/{classroom_id}", response_model=ClassroomPublic)
def update_classroom(classroom_id: int, body: ClassroomUpdate, session: SessionDep, scope: ScopeDep) -> Classroom:
    return directory.update_classroom(session=session, scope=scope, classroom_id=classroom_id, **changes(body))
