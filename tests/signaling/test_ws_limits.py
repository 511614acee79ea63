"""The lesson WebSocket under a flood of unauthenticated sockets.

- Frames too big: sockets that have not joined send a ``join`` frame just over ``MAX_FRAME_BYTES``,
  or one of 15 MiB (streamed, so the test itself holds none of it); each is closed with 1009 as
  soon as its header is read, the server process's memory (``VmRSS`` in ``/proc/<pid>/status``,
  sampled all along) does not grow by more than a few MiB, and a lesson going on meanwhile keeps
  working.  The server is a separate process (``tests.records.server_process``, started like
  ``sanke serve``), the sockets come from 40 loopback addresses.
- Too many sockets: one address may hold ``signaling_unjoined_per_address`` sockets that have not
  joined and open new ones at ``signaling_connects_per_address_per_minute``; beyond, a socket is
  closed with 4029 and a reason, while other addresses and joined sockets are not affected; a
  socket that does not join within the deadline is closed (4000) and frees its place.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import connect

from server.core.config import Settings
from server.serving import uvicorn_config
from signaling import endpoint
from signaling.client import LessonClient
from signaling.gate import AddressGate, address_key
from signaling.messages import MAX_FRAME_BYTES
from tests.records.killable import POLICY, Server, prepare
from tests.signaling.test_endpoint import join_msg, join_token, open_lesson
from tests.utils.live import live_server
from tests.utils.wait import until

MiB = 1024 * 1024
ATTACKERS = 40
"""Sockets (each from its own loopback address) sending a 15 MiB frame, as in the probe."""
RSS_GROWTH_LIMIT = 24 * MiB
"""What the attack may add to the server's resident memory (the probe saw +1,188 MiB before the limit)."""


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def _handshake(port: int, path: str, source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket opened by hand from ``source``: the test then writes frames as it likes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    status = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
    assert status.startswith(b"HTTP/1.1 101"), status[:200]
    return reader, writer


async def _close_code(reader: asyncio.StreamReader, timeout: float = 20) -> int | None:
    """The code of the server's close frame (None if the connection just ended)."""
    async def read() -> int | None:
        while True:
            head = await reader.readexactly(2)
            length = head[1] & 0x7F
            if length == 126:
                length = struct.unpack("!H", await reader.readexactly(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", await reader.readexactly(8))[0]
            payload = await reader.readexactly(length)
            if head[0] & 0x0F == 0x8:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None

    try:
        return await asyncio.wait_for(read(), timeout)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


async def _send_big_join(port: int, path: str, source: str, size: int) -> tuple[int | None, int]:
    """One text frame of ``size`` bytes (a ``join`` padded with spaces), streamed 64 KiB at a time until
    the server closes; returns the close code and how many bytes went out."""
    reader, writer = await _handshake(port, path, source)
    head = bytes([0x81, 0x80 | 127]) + struct.pack("!Q", size) + b"\0\0\0\0"  # FIN text, masked with 0000
    start = b'{"type": "join", "protocol_version": 1, "token": "x"'
    sent = 0
    code_task = asyncio.ensure_future(_close_code(reader))
    try:
        writer.write(head + start)
        sent = len(start)
        while sent < size and not code_task.done():
            piece = _SPACES[:size - sent - 1] or b"}"
            writer.write(piece)
            sent += len(piece)
            await writer.drain()
    except ConnectionError:
        pass
    code = await code_task
    writer.close()
    return code, sent


_SPACES = b" " * (64 * 1024)


def test_big_frames_are_refused_before_they_are_buffered(tmp_path: Path) -> None:
    info = prepare(tmp_path)
    server = Server(tmp_path, 0.5)
    server.start()
    try:
        assert server.proc is not None
        pid = server.proc.pid
        path = f"/api/v1/lessons/{info['lesson']}/ws"
        samples: list[int] = []

        async def scenario() -> None:
            main = LessonClient(server.base, info["lesson"], info["main"], policy=POLICY)
            recv = LessonClient(server.base, info["lesson"], info["recv"], policy=POLICY)
            await main.connect()
            await recv.connect()
            await _chat(main, recv, "开始")
            # warm up the code paths a refused socket takes, then take the baseline
            assert (await _send_big_join(server.port, path, "127.0.0.250", MAX_FRAME_BYTES + 1))[0] in (1009, None)
            baseline = _rss(pid)

            stop = asyncio.Event()

            async def sample() -> None:
                while not stop.is_set():
                    samples.append(_rss(pid))
                    await asyncio.sleep(0.02)

            sampler = asyncio.ensure_future(sample())
            just_over = [_send_big_join(server.port, path, f"127.0.1.{i}", MAX_FRAME_BYTES + 1) for i in range(1, 11)]
            huge = [_send_big_join(server.port, path, f"127.0.2.{i}", 15 * MiB) for i in range(1, ATTACKERS + 1)]
            results = await asyncio.gather(*just_over, *huge, _chat(main, recv, "攻击中"))
            stop.set()
            await sampler
            closed = results[:-1]
            small, big = closed[:len(just_over)], closed[len(just_over):]
            assert all(code in (1009, None) for code, _ in small), small
            # the server stopped reading at the header: no socket got to send its 15 MiB. (A socket still
            # writing when the server closes may be reset before it reads the 1009: the server's kernel
            # resets a connection closed with data unread, and how many of the 40 are reset first depends
            # on the scheduling of the moment — anything from a few to most of them.)
            assert all(code in (1009, None) for code, _ in big), big
            assert 1009 in [code for code, _ in closed], closed  # the close code the server sends is 1009
            assert max(sent for _, sent in big) < 15 * MiB, big
            growth = max(samples) - baseline
            print(f"big frames: {len(closed)} sockets closed with 1009; server RSS {baseline / MiB:.0f} MiB, "
                  f"at most +{growth / MiB:.1f} MiB during the attack")
            assert growth < RSS_GROWTH_LIMIT, growth / MiB

            # the lesson went on: both still hear each other, on the same sockets
            await _chat(main, recv, "还在")
            assert main.ws.close_code is None and recv.ws.close_code is None
            await main.close()
            await recv.close()

        asyncio.run(asyncio.wait_for(scenario(), 120))
    finally:
        server.stop(signal.SIGTERM)


async def _chat(a: LessonClient, b: LessonClient, text: str) -> None:
    heard = asyncio.ensure_future(b.next_message("chat", timeout=30))
    await a.send({"type": "chat", "text": text})
    assert (await heard)["text"] == text


# ----------------------------------------------------------------------------- too many sockets


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def gate(app: Any) -> Iterator[tuple[AddressGate, _Clock]]:
    clock = _Clock()
    app.state.signaling_gate = AddressGate(max_unjoined=3, per_minute=6, clock=clock)
    yield app.state.signaling_gate, clock


async def _refused(url: str, source: str) -> tuple[int | None, str]:
    ws = await connect(url, local_addr=(source, 0), open_timeout=20)
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 20)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


def test_unjoined_sockets_per_address_are_bounded(app, world, auth, session_factory, gate, monkeypatch) -> None:
    g, clock = gate
    monkeypatch.setattr(endpoint, "JOIN_TIMEOUT_S", 3.0)

    with live_server(app) as base, httpx.Client(base_url=base, timeout=20) as http:
        lid = open_lesson(http, world, auth, session_factory)
        token = join_token(http, auth, world.teacher, lid)
        url = base.replace("http://", "ws://") + f"/api/v1/lessons/{lid}/ws"

        async def scenario() -> None:
            first = [await connect(url, local_addr=("127.0.0.1", 0)) for _ in range(3)]
            await until("three unjoined sockets", lambda: g.unjoined("127.0.0.1") == 3, interval=0.02)
            # a fourth from the same address is refused with a clear code and reason ...
            code, reason = await _refused(url, "127.0.0.1")
            assert (code, reason) == (4029, "同一地址的连接过多，请稍后重试")
            # ... another address is not
            other = await connect(url, local_addr=("127.0.0.2", 0))
            await until("the other address's socket", lambda: g.unjoined("127.0.0.2") == 1, interval=0.02)
            # a socket that joins no longer counts: its address may open another
            await first[0].send(json.dumps(join_msg(token)))
            assert json.loads(await first[0].recv())["type"] == "joined"
            await until("the joined socket released", lambda: g.unjoined("127.0.0.1") == 2, interval=0.02)
            fifth = await connect(url, local_addr=("127.0.0.1", 0))
            await until("the fifth socket", lambda: g.unjoined("127.0.0.1") == 3, interval=0.02)
            # closed sockets free their places, but new ones come at most 6 a minute: two more, then no more
            for ws in (first[1], first[2], fifth):
                await ws.close()
            await until("closed sockets released", lambda: g.unjoined("127.0.0.1") == 0, interval=0.02)
            silent = [await connect(url, local_addr=("127.0.0.1", 0)) for _ in range(2)]
            await until("the sixth and seventh sockets", lambda: g.unjoined("127.0.0.1") == 2, interval=0.02)
            code, reason = await _refused(url, "127.0.0.1")
            assert (code, reason) == (4029, "同一地址的连接过多，请稍后重试")
            clock.now += 10.0  # a minute / 6 later: one more
            silent.append(await connect(url, local_addr=("127.0.0.1", 0)))
            await until("the eighth socket", lambda: g.unjoined("127.0.0.1") == 3, interval=0.02)
            # sockets that never join are closed at the deadline and free their places
            for ws in silent:
                with pytest.raises(websockets.ConnectionClosed):
                    while True:
                        await asyncio.wait_for(ws.recv(), 20)
                assert ws.close_code == 4000
            await until("the silent sockets released", lambda: g.unjoined("127.0.0.1") == 0, interval=0.02)
            # the joined socket was never disturbed
            await first[0].send(json.dumps({"type": "ping", "request_id": "p", "ts": 1}))
            while (reply := json.loads(await asyncio.wait_for(first[0].recv(), 20)))["type"] != "pong":
                pass
            assert reply["request_id"] == "p"
            for ws in (first[0], other):
                await ws.close()

        asyncio.run(asyncio.wait_for(scenario(), 90))


def test_the_gate_comes_from_the_settings_and_counts_ipv6_by_its_64(settings: Settings, app: Any) -> None:
    g = app.state.signaling_gate
    assert (g.max_unjoined, g.burst) == (settings.signaling_unjoined_per_address,
                                         settings.signaling_connects_per_address_per_minute)
    assert address_key("2001:db8:1:2:3:4:5:6") == address_key("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_key("192.0.2.7") != address_key("192.0.2.8")


def test_refusals_are_reported_once_a_minute_at_most() -> None:
    clock = _Clock()
    g = AddressGate(max_unjoined=1, per_minute=60, clock=clock)
    assert not isinstance(g.enter("192.0.2.1"), str)
    assert [g.enter("192.0.2.1") for _ in range(3)] == ["too_many"] * 3
    assert (g.refusals_to_report(60.0), g.refusals_to_report(60.0)) == (3, 0)
    g.enter("192.0.2.1")
    clock.now += 30
    assert g.refusals_to_report(60.0) == 0
    clock.now += 30
    assert g.refusals_to_report(60.0) == 1


def test_the_gate_forgets_idle_addresses() -> None:
    clock = _Clock()
    g = AddressGate(max_unjoined=2, per_minute=60, clock=clock)
    for i in range(2000):
        slot = g.enter(f"10.0.{i // 250}.{i % 250}")
        assert not isinstance(slot, str)
        slot.release()
        clock.now += 0.5
    assert len(g) < 300  # addresses idle for a minute are forgotten, the map stays small


def test_every_way_sanke_is_started_goes_through_server_serving() -> None:
    """``sanke serve``, the tests' servers and the benchmarks build uvicorn's configuration with
    ``server.serving.uvicorn_config``: nowhere else a ``uvicorn.run`` or ``uvicorn.Config`` without the limits."""
    import re

    root = Path(__file__).resolve().parents[2]
    raw = re.compile(r"uvicorn\.(run|Config)\(|from uvicorn import .*\b(run|Config)\b|uvicorn\.main\.run\(")
    offenders = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).as_posix()
        if rel.startswith((".venv/", "build/", "node_modules/")) or rel == "server/serving.py":
            continue
        if rel == "tests/signaling/test_ws_limits.py":
            continue
        if raw.search(path.read_text(encoding="utf-8", errors="replace")):
            offenders.append(rel)
    assert offenders == []
    config = uvicorn_config(object(), host="127.0.0.1", port=1)
    assert config.ws_max_size == MAX_FRAME_BYTES and config.ws == "websockets-sansio"
