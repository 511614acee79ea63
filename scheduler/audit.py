"""The audit trail: every change to a series or an instance, who made it, when and why."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from scheduler import clock

from scheduler.models import AuditEntry


def record(
    session: Session,
    *,
    actor_id: int | None,
    entity: str,
    entity_id: int,
    action: str,
    reason: str = "",
    details: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEntry:
    entry = AuditEntry(
        at=at or clock.now(), actor_id=actor_id, entity=entity, entity_id=entity_id,
        action=action, reason=reason or "", details=details or {},
    )
    session.add(entry)
    return entry
