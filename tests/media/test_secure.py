"""The cluster channel's secure stream (``media.secure``) and what a node offering its workers refuses
(``media.remote``): in one process, on 127.0.0.1."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from media import secure
from media.channel import Channel, ChannelError
from media.remote import RemoteWorkerServer

SECRET = b"cluster-secret-0123456789"


async def _server(handler: Any) -> tuple[asyncio.AbstractServer, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_the_right_secret_talks_both_ways_and_a_wrong_one_is_refused() -> None:
    async def main() -> None:
        outcomes: list[Any] = []

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                r, w = await secure.accept(reader, writer, SECRET)
            except (secure.SecureError, asyncio.IncompleteReadError) as exc:
                outcomes.append(type(exc).__name__)
                writer.close()
                return
            data = await r.readexactly(5)
            w.write(data[::-1] * 1000)
            await w.drain()
            outcomes.append("served")

        server, port = await _server(serve)
        r, w = await secure.connect("127.0.0.1", port, SECRET)
        w.write(b"hello")
        await w.drain()
        assert await r.readexactly(5000) == b"olleh" * 1000
        with pytest.raises((secure.SecureError, asyncio.IncompleteReadError, ConnectionError)):
            await secure.connect("127.0.0.1", port, b"another-secret-0123456789")
        # a peer that speaks plain bytes gets nothing either
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.0\r\n\r\n" + bytes(64))
        await writer.drain()
        answer = await reader.read()  # the server's hello, then it hangs up
        assert answer[:4] == b"SKC1" and len(answer) == 36
        writer.close()
        for _ in range(100):
            if len(outcomes) >= 3:
                break
            await asyncio.sleep(0.02)
        assert outcomes[0] == "served" and outcomes[1] == "SecureError" and outcomes[2] == "SecureError", outcomes
        server.close()

    asyncio.run(main())


def test_a_tampered_record_closes_the_stream() -> None:
    async def main() -> None:
        got: list[Any] = []

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            r, _ = await secure.accept(reader, writer, SECRET)
            try:
                got.append(await r.readexactly(3))
                got.append(await r.readexactly(3))
            except secure.SecureError as exc:
                got.append(str(exc))

        server, port = await _server(serve)
        r, w = await secure.connect("127.0.0.1", port, SECRET)
        w.write(b"one")
        raw = w._writer  # the TCP stream under it: a record whose last byte an attacker flipped
        sealed = w._aead.encrypt(w._counter.to_bytes(12, "big"), b"two", w._label)
        raw.write(len(sealed).to_bytes(4, "big") + sealed[:-1] + bytes([sealed[-1] ^ 1]))
        await raw.drain()
        for _ in range(100):
            if len(got) >= 2:
                break
            await asyncio.sleep(0.02)
        assert got == [b"one", "a record failed authentication"], got
        server.close()

    asyncio.run(main())


class _Pool:
    """The node's pool as the offering side sees it: one router of its own lesson."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []

    def add_listener(self, fn: Any) -> Any:
        return lambda: None

    def hosts(self, router_id: str) -> bool:
        return router_id == "lesson-7"

    async def request(self, router_id: str, method: str, params: dict[str, Any], timeout: float = 10.0) -> dict:
        self.requests.append((router_id, method))
        return {"host": params.get("host")} if method == "pipe.create" else {}

    def release(self, router_id: str) -> None:
        pass


def test_another_node_may_use_only_the_routers_it_made() -> None:
    async def main() -> None:
        pool = _Pool()
        offer = RemoteWorkerServer(pool, SECRET, "127.0.0.9")  # type: ignore[arg-type]
        _, port = await offer.start("127.0.0.1", 0)
        r, w = await secure.connect("127.0.0.1", port, SECRET)
        channel = Channel(r, w, name="test")  # type: ignore[arg-type]
        channel.start()
        for method, params in (("worker.load", {}), ("router.dump", {"router_id": "lesson-7"}),
                               ("router.create", {"router_id": "lesson-7"}),
                               ("transport.close", {"router_id": "lesson-8@100", "transport_id": "t"})):
            with pytest.raises(ChannelError):
                await channel.request(method, params)
        await channel.request("router.create", {"router_id": "lesson-8@100"})
        # a pipe end binds on the offering node's own pipe address, whatever was asked
        made = await channel.request("pipe.create", {"router_id": "lesson-8@100", "pipe_id": "p", "host": "0.0.0.0"})
        assert made == {"host": "127.0.0.9"}
        await channel.close()
        for _ in range(100):  # the connection gone, its router is closed
            if ("lesson-8@100", "router.close") in pool.requests:
                break
            await asyncio.sleep(0.02)
        assert pool.requests == [("lesson-8@100", "router.create"), ("lesson-8@100", "pipe.create"),
                                 ("lesson-8@100", "router.close")], pool.requests
        await offer.close()

    asyncio.run(main())
