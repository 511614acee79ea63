"""/schools and /schools/groups (教育集团).

Anyone signed in sees the schools of their own scope; a bureau admin whose
region covers the school (or a system admin) creates and edits schools and
education groups.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from scheduler import directory
from scheduler.access import require_school
from scheduler.models import EducationGroup, School, SchoolKind
from server.api.deps import ScopeDep, SessionDep, StaffScope
from server.api.common import PageDep, changes

router = APIRouter(prefix="/schools", tags=["schools"])


class SchoolPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    kind: SchoolKind
    region_id: int
    group_id: int | None


class SchoolsPublic(BaseModel):
    data: list[SchoolPublic]
    count: int
    """Schools matching the filters, over all pages."""


class SchoolCreate(BaseModel):
    name: str
    kind: SchoolKind
    region_id: int
    group_id: int | None = None


class SchoolUpdate(BaseModel):
    """Only the fields sent are changed; ``group_id: null`` takes the school out of its group."""

    name: str | None = None
    kind: SchoolKind | None = None
    region_id: int | None = None
    group_id: int | None = None


class GroupPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    region_id: int


class GroupsPublic(BaseModel):
    data: list[GroupPublic]
    count: int


class GroupCreate(BaseModel):
    name: str
    region_id: int
    """The region the group belongs to; its schools must lie in that region's subtree."""


@router.get("/groups", response_model=GroupsPublic)
def list_groups(session: SessionDep, scope: StaffScope) -> GroupsPublic:
    rows = session.scalars(directory.group_query(scope)).all()
    return GroupsPublic(data=[GroupPublic.model_validate(g) for g in rows], count=len(rows))


@router.post("/groups", response_model=GroupPublic, status_code=201)
def create_group(body: GroupCreate, session: SessionDep, scope: ScopeDep) -> EducationGroup:
    return directory.create_group(session=session, scope=scope, name=body.name, region_id=body.region_id)


@router.get("", response_model=SchoolsPublic)
def list_schools(session: SessionDep, scope: ScopeDep, page: PageDep, region_id: int | None = None,
                 kind: SchoolKind | None = None, group_id: int | None = None, q: str | None = None) -> SchoolsPublic:
    """Schools in the caller's scope. ``region_id`` covers its whole subtree; ``q`` matches part of the name."""
    stmt = directory.school_query(session, scope, region_id=region_id, kind=kind, group_id=group_id, q=q)
    rows, count = directory.paginate(session, stmt, offset=page.offset, limit=page.limit)
    return SchoolsPublic(data=[SchoolPublic.model_validate(s) for s in rows], count=count)


@router.get("/{school_id}", response_model=SchoolPublic)
def get_school(school_id: int, session: SessionDep, scope: ScopeDep) -> School:
    return require_school(session, scope, school_id)


@router.post("", response_model=SchoolPublic, status_code=201)
def create_school(body: SchoolCreate, session: SessionDep, scope: ScopeDep) -> School:
    return directory.create_school(session=session, scope=scope, name=body.name, kind=body.kind,
                                   region_id=body.region_id, group_id=body.group_id)


@router.patch("/{school_id}", response_model=SchoolPublic)
def update_school(school_id: int, body: SchoolUpdate, session: SessionDep, scope: ScopeDep) -> School:
    return directory.update_school(session=session, scope=scope, school_id=school_id,
                                   **changes(body, nullable=("group_id",)))
