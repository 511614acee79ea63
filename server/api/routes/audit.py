"""The audit trail of a series, a lesson or an account: who changed what, when and why.

An account's trail (admins, for the accounts they manage) holds the changes made to it and its
failed logins; ``entity_id=0`` is the failed logins under names that match no account (system
admins only)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import or_, select

from scheduler import directory
from scheduler.access import require_instance
from scheduler.errors import Forbidden
from scheduler.models import AuditEntry, LessonInstance, Role, User
from server.api.deps import SessionDep, StaffScope
from server.api.routes.series import _get_visible
from server.api.times import Timestamp

router = APIRouter(prefix="/audit", tags=["audit"])


class AuditOut(BaseModel):
    id: int
    at: Timestamp
    actor_id: int | None
    actor_name: str | None
    entity: str
    entity_id: int
    action: str
    reason: str
    details: dict[str, Any]


@router.get("", response_model=list[AuditOut])
def audit_trail(entity: Literal["series", "instance", "user"], entity_id: int, session: SessionDep,
                scope: StaffScope) -> list[AuditOut]:
    """For a series: its own entries and those of all its lessons. For a lesson: its entries.
    For an account (admins): its changes and failed logins."""
    if entity == "user":
        if entity_id == 0:  # failed logins under names that match no account
            if scope.role is not Role.admin or not scope.everywhere:
                raise Forbidden("只有系统管理员可以查看未知账号的登录记录")
        else:
            directory.require_user(session, scope, entity_id)
        where = (AuditEntry.entity == "user") & (AuditEntry.entity_id == entity_id)
    elif entity == "series":
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
