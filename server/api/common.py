"""Small pieces shared by the resource routers: paging, PATCH bodies, lesson listing filters, the node that
owns a lesson's room."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

import anyio
from fastapi import Depends, Query, Request
from pydantic import BaseModel

from scheduler.access import require_region, require_school
from scheduler import lifecycle
from scheduler.models import InstanceStatus, LessonInstance, LessonKind
from scheduler.queries import InstanceFilter
from scheduler.room_weight import lesson_weight
from server.api.deps import ScopeDep, SessionDep
from server.api.errors import ApiError
from server.core.placement import NoNodeError, Placed

MAX_LIMIT = 200


@dataclass(frozen=True)
class Page:
    offset: int
    limit: int


def _page(
    offset: Annotated[int, Query(ge=0, description="跳过的条数")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="每页条数")] = 50,
) -> Page:
    return Page(offset, limit)


PageDep = Annotated[Page, Depends(_page)]
"""``?offset=0&limit=50``; listings answer ``{data, count}`` with ``count`` over all pages."""


def changes(body: BaseModel, *, nullable: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields a PATCH body actually sent, as keyword arguments for a ``directory.update_*`` function.

    A ``null`` means "clear it" for the ``nullable`` fields and "leave it" for
    the others (their columns cannot be empty).
    """
    sent = body.model_dump(exclude_unset=True)
    return {k: v for k, v in sent.items() if v is not None or k in nullable}


def _instance_filter(
    session: SessionDep,
    scope: ScopeDep,
    date_from: date | None = None,
    date_to: date | None = None,
    region_id: int | None = None,
    school_id: int | None = None,
    classroom_id: int | None = None,
    teacher_id: int | None = None,
    kind: LessonKind | None = None,
    status: InstanceStatus | None = None,
    series_id: int | None = None,
    term_id: int | None = None,
) -> InstanceFilter:
    """The listing filters of lessons, shared by the lesson list and its exports.

    An explicit region or school outside the caller's scope is refused (403)
    rather than answered with an empty page.
    """
    if region_id is not None:
        require_region(session, scope, region_id)
    if school_id is not None:
        require_school(session, scope, school_id)
    return InstanceFilter(date_from=date_from, date_to=date_to, region_id=region_id, school_id=school_id,
                          classroom_id=classroom_id, teacher_id=teacher_id, kind=kind, status=status,
                          series_id=series_id, term_id=term_id)


InstanceFilterDep = Annotated[InstanceFilter, Depends(_instance_filter)]


def room_owner(request: Request, inst: LessonInstance) -> Placed | None:
    """With several nodes, the node that owns the lesson's open room (placed now if it has no owner yet,
    ``server.core.placement``): where its sockets and its stream are.  None with one node, or while the room
    is closed (no owner).  503 when no node takes it or the cluster's Redis does not answer.  For the sync
    handlers, which run in a worker thread (the placement runs on the event loop)."""
    placement = getattr(request.app.state, "placement", None)
    if placement is None or not placement.clustered or not lifecycle.room_is_open(inst):
        return None
    try:
        return anyio.from_thread.run(placement.place, inst.id, lesson_weight(inst))  # type: ignore[no-any-return]
    except NoNodeError:
        raise ApiError(503, "no_node", "暂无可接收课堂的服务节点，请稍后重试") from None
    except ConnectionError:
        raise ApiError(503, "cluster_unavailable", "集群协调服务暂不可用，请稍后重试") from None
