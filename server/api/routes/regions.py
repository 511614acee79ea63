"""/regions: the province > city > district tree.

Every signed-in user may read the tree (pickers need it); creating and
renaming are for an admin whose region covers the place, or a system admin.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from scheduler import directory
from scheduler.models import Region, RegionLevel
from server.api.deps import CurrentUser, ScopeDep, SessionDep

router = APIRouter(prefix="/regions", tags=["regions"])


class RegionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    level: RegionLevel
    parent_id: int | None
    path: str
    """Ids from the root, e.g. ``/1/4/``: a region covers every region whose path starts with its own."""


class RegionsPublic(BaseModel):
    data: list[RegionPublic]
    count: int


class RegionCreate(BaseModel):
    name: str
    level: RegionLevel
    parent_id: int | None = None
    """Empty only for a top-level region (system admins)."""


class RegionUpdate(BaseModel):
    name: str


@router.get("", response_model=RegionsPublic)
def list_regions(session: SessionDep, _user: CurrentUser, parent_id: int | None = None,
                 within_id: int | None = None) -> RegionsPublic:
    """Regions in tree order; ``parent_id``: direct children only; ``within_id``: that region's subtree."""
    rows = session.scalars(directory.region_query(session, parent_id=parent_id, within_id=within_id)).all()
    return RegionsPublic(data=[RegionPublic.model_validate(r) for r in rows], count=len(rows))


@router.get("/{region_id}", response_model=RegionPublic)
def get_region(region_id: int, session: SessionDep, _user: CurrentUser) -> Region:
    return directory.get_region(session, region_id)


@router.post("", response_model=RegionPublic, status_code=201)
def create_region(body: RegionCreate, session: SessionDep, scope: ScopeDep) -> Region:
    return directory.create_region(session=session, scope=scope, name=body.name, level=body.level,
                                   parent_id=body.parent_id)


@router.patch("/{region_id}", response_model=RegionPublic)
def update_region(region_id: int, body: RegionUpdate, session: SessionDep, scope: ScopeDep) -> Region:
    return directory.rename_region(session=session, scope=scope, region_id=region_id, name=body.name)
