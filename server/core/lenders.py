"""Which other nodes lend their media workers, as the registry says: this node's pool uses them.

A node that lends its workers (``SANKE_MEDIA_REMOTE_LISTEN``) advertises itself in its registry entry
(``server.core.nodes.NodeInfo.lends``: the address the others reach, and its free consumers, every
heartbeat).  With Redis and a cluster secret, :class:`LenderDirectory` reads the registry every
heartbeat interval: each lending node but this one is added to the media pool
(``media.pool.WorkerPool.add_remote``, once) and its free consumers noted
(``WorkerPool.set_lender_free``), which is what a big lesson's owner places subscribers by
(``signaling.media.LessonMedia._place``: the lender with the most headroom); a lender gone from the
registry is dropped while it is out of reach (``WorkerPool.remove_remote``).  Lenders listed in
``SANKE_MEDIA_REMOTE_WORKERS`` stay as configured.

Must not: connect to anything itself (the pool does), or place anything.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Self

from server.core.tasks import cancel_and_wait

if TYPE_CHECKING:
    from media.pool import WorkerPool
    from server.core.nodes import NodeRegistry

log = logging.getLogger(__name__)


class LenderDirectory:
    """Keeps the pool's other nodes as the registry lists the lenders.  An async context manager."""

    def __init__(self, registry: NodeRegistry, pool: WorkerPool, secret: bytes, *,
                 static: set[str] | None = None) -> None:
        self.registry = registry
        self.pool = pool
        self.secret = secret
        self.static = set(static or ())
        self.found: set[str] = set()
        """Addresses added because the registry listed them."""
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> None:
        """One pass over the registry (an unreachable Redis changes nothing)."""
        try:
            nodes = await self.registry.nodes()
        except ConnectionError:
            return
        seen: set[str] = set()
        for node in nodes:
            if node.node_id == self.registry.node_id or node.lends is None:
                continue
            address = str(node.lends["address"])
            seen.add(address)
            if address not in self.pool.remote_addresses():
                try:
                    self.pool.add_remote(address, self.secret)
                except ValueError as exc:
                    log.warning("lenders: node %s advertises a bad address %r: %s", node.node_id, address, exc)
                    continue
                self.found.add(address)
                log.info("lenders: node %s lends its workers at %s", node.node_id, address)
            self.pool.set_lender_free(address, int(node.lends["free_consumers"]))
        for address in sorted(self.found - seen - self.static):
            if self.pool.remove_remote(address):
                self.found.discard(address)
                log.info("lenders: %s is gone from the registry", address)

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:  # the next pass tries again
                log.exception("lenders: reading the registry failed")
            await asyncio.sleep(self.registry.interval)

    async def __aenter__(self) -> Self:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sanke-lenders")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await cancel_and_wait(self._task)
        self._task = None
