"""The audit trail of a series or a lesson: who changed what, when and why."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import or_, select

from scheduler.access import require_instance
from scheduler.models import AuditEntry, LessonInstance, User
from server.api.deps import SessionDep, StaffScope
from server.api.routes.series import _get_visible

router = APIRouter(prefix="/audit", tags=["audit"])


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor_id: int | None
    actor_name: str | None
    entity: str
    entity_id: int
    action: str
    reason: str
    details: dict[str, Any]


@router.get("", response_model=list[AuditOut])
def audit_trail(entity: Literal["series", "instance"], entity_id: int, session: SessionDep,
                scope: StaffScope) -> list[AuditOut]:
    """For a series: its own entries and those of all its lessons. For a lesson: its entries."""
    if entity == "series":
        _get_visible(session, scope, entity_id)
        instance_ids = select(LessonInstance.id).where(LessonInstance.series_id == entity_id)
        where = or_((AuditEntry.entity == "series") & (AuditEntry.entity_id == entity_id),
                    (AuditEntry.entity == "instance") & AuditEntry.entity_id.in_(instance_ids))
    else:
        require_instance(session, scope, entity_id)
        where = (AuditEntry.entity == "instance") & (AuditEntry.entity_id == entity_id)
    rows = session.execute(
        select(AuditEntry, User.display_name).outerjoin(User, User.id == AuditEntry.actor_id)
        .where(where).order_by(AuditEntry.at, AuditEntry.id)
    ).all()
    return [AuditOut(id=a.id, at=a.at, actor_id=a.actor_id, actor_name=name, entity=a.entity, entity_id=a.entity_id,
                     action=a.action, reason=a.reason, details=a.details) for a, name in rows]
