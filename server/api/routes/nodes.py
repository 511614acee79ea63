"""The cluster's nodes as the node registry sees them (system admins only): ``GET /nodes``.

Each node with its URL, media addresses, load per media worker, rooms, participants, capacity,
whether it is draining or takes new rooms, and how long ago its last heartbeat was
(``server.core.nodes``).  Read-only: nothing here places, drains or stops a node.
"""

from __future__ import annotations

from datetime import datetime, timezone

from fastapi import APIRouter, Request
from pydantic import BaseModel

from server.api.deps import AdminScope
from server.api.errors import ApiError
from server.api.times import Timestamp

router = APIRouter(prefix="/nodes", tags=["nodes"])


class WorkerLoadOut(BaseModel):
    index: int
    pid: int
    cpu: float
    """CPU time per wall-clock second over the last second or more (1.0: one core)."""
    packets_per_s: float
    """RTP packets forwarded to subscribers per second."""
    routers: int
    transports: int
    producers: int
    consumers: int


class NodeOut(BaseModel):
    node_id: str
    url: str
    media_addresses: list[str]
    started_at: Timestamp
    this_node: bool
    """The node that answered this request."""
    draining: bool
    accepting_rooms: bool
    heartbeat_age_s: float
    rooms: int
    participants: int
    capacity_workers: int
    capacity_consumers_per_worker: int
    capacity_max_rooms: int | None
    workers: list[WorkerLoadOut]


class NodesOut(BaseModel):
    clustered: bool
    """The nodes share a Redis registry (``SANKE_REDIS_URL``); false: this node alone."""
    data: list[NodeOut]


@router.get("", response_model=NodesOut)
async def list_nodes(request: Request, scope: AdminScope) -> NodesOut:
    """Every live node (with Redis: every node whose heartbeat has not lapsed)."""
    if not scope.everywhere:
        raise ApiError(403, "forbidden", "只有系统管理员可以查看服务器节点")
    registry = request.app.state.nodes
    try:
        nodes = await registry.nodes()
    except ConnectionError as exc:
        raise ApiError(503, "registry_unavailable", "无法读取节点列表：Redis 暂时无法连接") from exc
    return NodesOut(clustered=registry.clustered, data=[NodeOut(
        node_id=n.node_id, url=n.url, media_addresses=n.media_addresses,
        started_at=datetime.fromtimestamp(n.started_at, timezone.utc),
        this_node=n.node_id == registry.node_id, draining=n.draining, accepting_rooms=n.accepting_rooms,
        heartbeat_age_s=n.heartbeat_age_s, rooms=n.rooms, participants=n.participants,
        capacity_workers=int(n.capacity.get("workers") or 0),
        capacity_consumers_per_worker=int(n.capacity.get("consumers_per_worker") or 0),
        capacity_max_rooms=n.capacity.get("max_rooms"),
        workers=[WorkerLoadOut(**{k: w.get(k, 0) for k in WorkerLoadOut.model_fields}) for w in n.workers],
    ) for n in nodes])
