"""This node's media workers offered to the other nodes of the cluster, over an authenticated channel.

A lesson bigger than its node spreads onto a media worker of another node: its owner makes a router
there (``lesson-<id>@<index>``) and pipes the lesson's producers to it (``media.pipe``), exactly as
between two workers of one node. The owner reaches the other node's workers by the very worker
protocol of ``media.worker``, over a :class:`media.channel.Channel` that runs on
:mod:`media.secure` (authenticated and encrypted with ``SANKE_CLUSTER_SECRET``): a stream that
does not prove the secret is closed before a request is read.

:class:`RemoteWorkerServer` (``SANKE_MEDIA_REMOTE_LISTEN``) is the offering side: each connection
may make routers (``router.create``) and then send requests about those routers only (never about
this node's own lessons, never ``worker.*``); the local pool places them. ``pipe.create`` binds on
this node's own pipe address whatever the other node asked. Notifications of its routers go back
over the connection, a local worker death as ``worker_died`` with its routers; a connection that
closes takes its routers with it. The using side is :meth:`media.pool.WorkerPool.add_remote`.

Must not: answer anyone who has not proved the secret, or touch routers it did not make.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from media import secure
from media.channel import Channel, ChannelError

if TYPE_CHECKING:
    from media.pool import WorkerPool

log = logging.getLogger(__name__)

WORKER_DIED = "worker_died"


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``) → (host, port); raises ``ValueError``."""
    host, sep, port = address.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not host:port: {address!r}")
    return host.strip("[]"), int(port)


class _Peer:
    """One node using this node's workers (one connection)."""

    def __init__(self, server: RemoteWorkerServer, name: str) -> None:
        self.server = server
        self.name = name
        self.routers: set[str] = set()
        self.channel: Channel | None = None

    async def handle(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        router_id = params.get("router_id")
        if not isinstance(router_id, str) or not router_id or method.startswith("worker."):
            raise ChannelError("not_allowed", f"{method}: only requests about a router of this connection")
        pool = self.server.pool
        if method == "router.create":
            if router_id not in self.routers and pool.hosts(router_id):
                raise ChannelError("conflict", f"router {router_id} belongs to this node")
            self.routers.add(router_id)
        elif router_id not in self.routers:
            raise ChannelError("not_found", f"no router {router_id} of this connection")
        if method == "pipe.create":
            params = {**params, "host": self.server.pipe_host}
        result = await pool.request(router_id, method, params)
        if method == "router.close":
            self.routers.discard(router_id)
            pool.release(router_id)
        return result

    def on_event(self, event: str, data: dict[str, Any]) -> None:
        channel = self.channel
        if channel is None or channel.closed:
            return
        if event == WORKER_DIED:
            lost = [r for r in data.get("routers", []) if r in self.routers]
            if lost:
                self.routers.difference_update(lost)
                channel.notify(WORKER_DIED, {**data, "routers": lost})
        elif data.get("router_id") in self.routers:
            channel.notify(event, data)

    async def close_routers(self) -> None:
        pool = self.server.pool
        for router_id in list(self.routers):
            with contextlib.suppress(ChannelError, TimeoutError):
                await pool.request(router_id, "router.close", {"router_id": router_id})
            pool.release(router_id)
        self.routers.clear()


class RemoteWorkerServer:
    """Offers ``pool``'s workers to the nodes that know ``secret`` (see the module docstring)."""

    def __init__(self, pool: WorkerPool, secret: bytes, pipe_host: str) -> None:
        self.pool = pool
        self.secret = secret
        self.pipe_host = pipe_host
        self.peers: set[_Peer] = set()
        self.refused = 0
        """Connections closed because they did not prove the secret."""
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._unsubscribe = pool.add_listener(self._on_event)

    async def start(self, host: str, port: int) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._serve, host, port, limit=1024 * 1024)
        bound = self._server.sockets[0].getsockname()
        log.info("media: workers offered to the cluster on %s:%d", bound[0], bound[1])
        return bound[0], bound[1]

    def _on_event(self, index: int, event: str, data: dict[str, Any]) -> None:
        for peer in list(self.peers):
            peer.on_event(event, data)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        peer_address = writer.get_extra_info("peername")
        name = f"{peer_address[0]}:{peer_address[1]}" if peer_address else "?"
        try:
            try:
                sreader, swriter = await secure.accept(reader, writer, self.secret)
            except (secure.SecureError, OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                self.refused += 1
                log.warning("media: a cluster connection from %s refused: %s", name, type(exc).__name__)
                writer.close()
                return
            peer = _Peer(self, name)
            closed = asyncio.Event()
            channel = Channel(sreader, swriter, handler=peer.handle, on_close=closed.set,  # type: ignore[arg-type]
                              name=f"media-remote-peer-{name}")
            peer.channel = channel
            self.peers.add(peer)
            channel.start()
            log.info("media: node at %s uses this node's workers", name)
            try:
                await closed.wait()
            finally:
                self.peers.discard(peer)
                await peer.close_routers()
                await channel.close()
                log.info("media: node at %s left (its routers closed)", name)
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def close(self) -> None:
        self._unsubscribe()
        if self._server is not None:
            self._server.close()
        for peer in list(self.peers):
            if peer.channel is not None:
                await peer.channel.close()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 5)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()


async def connect(address: str, secret: bytes, *, on_event: Any, on_close: Any, name: str) -> Channel:
    """A started channel to the workers another node offers at ``address`` (``host:port``)."""
    host, port = split_address(address)
    reader, writer = await secure.connect(host, port, secret)
    channel = Channel(reader, writer, on_event=on_event, on_close=on_close, name=name)  # type: ignore[arg-type]
    channel.start()
    return channel
