"""The lesson WebSocket is served before the app's middleware stack (``server.main.SanKe``,
``signaling.endpoint.lesson_socket_id``): an open socket keeps none of the stack's layers alive (they were
about 20 coroutines, closures and exit stacks per socket, for the garbage collector to scan at thousands
of sockets), and the socket keeps every check of its own: a good token joins, a bad one is refused with
``error`` and 4001, an address over its limit with 4029 (``test_ws_limits``), a frame too big with 1009
(``test_ws_limits``: in the served process).  A lesson id that is not a number still goes through the
stack, which refuses it as it always did."""

from __future__ import annotations

import asyncio
import gc
import json
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import connect

from signaling.endpoint import lesson_socket_id
from tests.signaling.test_endpoint import join_msg, join_token, open_lesson
from tests.utils.live import live_server


def test_which_sockets_the_front_takes() -> None:
    def ws(path: str, root: str = "") -> dict[str, Any]:
        return {"type": "websocket", "path": path, "root_path": root}

    assert lesson_socket_id(ws("/api/v1/lessons/12/ws")) == 12
    assert lesson_socket_id(ws("/api/v1/lessons/007/ws")) == 7  # as FastAPI's int parameter reads it
    assert lesson_socket_id(ws("/sanke/api/v1/lessons/5/ws", "/sanke")) == 5
    for other in ("/api/v1/lessons/abc/ws", "/api/v1/lessons/-1/ws", "/api/v1/lessons/12/ws/", "/api/v1/lessons//ws",
                  "/api/v1/lessons/12/wss", "/x/api/v1/lessons/12/ws"):
        assert lesson_socket_id(ws(other)) is None, other
    assert lesson_socket_id({"type": "http", "path": "/api/v1/lessons/12/ws"}) is None


def _stack_coroutines() -> int:
    """Coroutines alive whose code is FastAPI's or Starlette's (the middleware stack and the routing)."""
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o).__name__ == "coroutine"
               and ("/starlette/" in o.cr_code.co_filename or "/fastapi/" in o.cr_code.co_filename))


def test_the_lesson_socket_is_served_before_the_middleware_stack(app, world, auth, session_factory) -> None:
    with live_server(app) as base, httpx.Client(base_url=base, timeout=20) as http:
        lid = open_lesson(http, world, auth, session_factory)
        tokens = [join_token(http, auth, user, lid) for user in (world.teacher, world.terminal_recv)]
        stack = app.middleware_stack
        assert stack is not None  # built by the HTTP requests above
        through_stack: list[str] = []

        async def recording(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "websocket":
                through_stack.append(scope["path"])
            await stack(scope, receive, send)

        app.middleware_stack = recording
        url = base.replace("http://", "ws://") + f"/api/v1/lessons/{lid}/ws"

        async def joined(token: str) -> Any:
            ws = await connect(url, open_timeout=20)
            await ws.send(json.dumps(join_msg(token)))
            assert json.loads(await asyncio.wait_for(ws.recv(), 20))["type"] == "joined"
            return ws

        async def scenario() -> None:
            before = _stack_coroutines()
            main = await joined(tokens[0])
            recv = await joined(tokens[1])
            # the two sockets keep none of the stack's coroutines (about 16 each through it)
            assert _stack_coroutines() - before < 4, _stack_coroutines() - before
            # and they work: a chat line, a ping
            await main.send(json.dumps({"type": "chat", "request_id": "c", "text": "同学们好"}))
            while (m := json.loads(await asyncio.wait_for(recv.recv(), 20)))["type"] != "chat":
                pass
            assert m["text"] == "同学们好"
            await recv.send(json.dumps({"type": "ping", "request_id": "p", "ts": 1}))
            while (m := json.loads(await asyncio.wait_for(recv.recv(), 20)))["type"] != "pong":
                pass
            assert m["request_id"] == "p"

            # a bad token: error, then 4001, as before
            bad = await connect(url, open_timeout=20)
            await bad.send(json.dumps(join_msg("not-a-token")))
            err = json.loads(await asyncio.wait_for(bad.recv(), 20))
            assert (err["type"], err["code"], err["request_id"]) == ("error", "token_invalid", "j1")
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(bad.recv(), 20)
            assert bad.close_code == 4001

            # a token of another lesson's socket path: refused the same way
            other = await connect(base.replace("http://", "ws://") + f"/api/v1/lessons/{lid + 1000}/ws",
                                  open_timeout=20)
            await other.send(json.dumps(join_msg(tokens[0])))
            assert json.loads(await asyncio.wait_for(other.recv(), 20))["code"] == "token_invalid"
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(other.recv(), 20)
            assert other.close_code == 4001
            assert through_stack == []

            # not a number: through the stack, which refuses it (FastAPI's validation of the path)
            with pytest.raises((websockets.InvalidStatus, websockets.ConnectionClosed)):
                nan = await connect(base.replace("http://", "ws://") + "/api/v1/lessons/abc/ws", open_timeout=20)
                await asyncio.wait_for(nan.recv(), 20)
            assert through_stack == ["/api/v1/lessons/abc/ws"]

            for ws in (main, recv):
                await ws.close()

        asyncio.run(asyncio.wait_for(scenario(), 90))
