"""The record of which node owned a lesson's room, and when (PostgreSQL, for the records).

Live ownership is a lease in Redis (``server.core.placement``); this table only remembers it: one
row per placement, written by the node that placed the room, ``released_at`` set by the owner when
the room ends.  A room placed again after its owner was lost gets a new row, so the rows of a lesson
are its history of owners.  Migration ``server/migrations/versions/0011_room_placement.py``.

Must not: decide ownership (Redis's lease does) or be read on a join.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Integer, String, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from scheduler.models import Base


class RoomPlacement(Base):
    __tablename__ = "room_placement"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("lesson_instance.id", ondelete="CASCADE"), index=True)
    node_id: Mapped[str] = mapped_column(String(100))
    """The owner (``SANKE_NODE_ID``)."""
    placed_by: Mapped[str] = mapped_column(String(100))
    """The node that chose the owner (the one a join-token request reached)."""
    weight: Mapped[int] = mapped_column(Integer)
    """Expected consumers when placed (``scheduler.room_weight``)."""
    placed_at: Mapped[datetime] = mapped_column(DateTime)
    released_at: Mapped[datetime | None] = mapped_column(DateTime)


def record_placement(session: Session, instance_id: int, node_id: str, placed_by: str, weight: int,
                     now: datetime) -> None:
    """A new owner of the lesson's room (the caller commits)."""
    session.add(RoomPlacement(instance_id=instance_id, node_id=node_id, placed_by=placed_by, weight=weight,
                              placed_at=now))


def record_release(session: Session, instance_id: int, node_id: str, now: datetime) -> None:
    """The owner released the room (the caller commits)."""
    session.execute(update(RoomPlacement).where(RoomPlacement.instance_id == instance_id,
                                                RoomPlacement.node_id == node_id,
                                                RoomPlacement.released_at.is_(None)).values(released_at=now))


def owners(session: Session, instance_id: int) -> list[RoomPlacement]:
    """The lesson's owners, oldest first."""
    return list(session.scalars(select(RoomPlacement).where(RoomPlacement.instance_id == instance_id)
                                .order_by(RoomPlacement.id)))


def recorder(session_factory: Any, this_node: str) -> Callable[[str, int, str, int, datetime], None]:
    """``record(kind, lesson, node, weight, now)`` for ``server.core.placement``: ``placed`` adds a row
    (placed by ``this_node``), ``released`` closes the owner's open row (sync)."""

    def record(kind: str, instance_id: int, node_id: str, weight: int, now: datetime) -> None:
        with session_factory() as session:
            if kind == "placed":
                record_placement(session, instance_id, node_id, this_node, weight, now)
            else:
                record_release(session, instance_id, node_id, now)
            session.commit()

    return record
