"""How SanKe is put on uvicorn: the one place that builds its ``uvicorn.Config``.

Every way SanKe is started — ``sanke serve`` (and the demo), the tests' live servers, the
benchmarks — goes through ``uvicorn_config`` so the options that protect the server hold
everywhere: the WebSocket layer refuses a frame larger than the signaling protocol's
``MAX_FRAME_BYTES`` as soon as its header is read (close 1009, "message too big"), before
anything of it is buffered; uvicorn's own default would buffer up to 16 MiB of an unauthenticated
socket's frame (and decompress as much) before the application could look at it.

The event loop is uvloop, as in the media workers (``media/eventloop.py``): every wake-up of the
server's loop (a signaling message, a socket's ping) runs in C instead of asyncio's Python loop.

SIGTERM: ``serve(..., on_term=...)`` runs ``on_term()`` (the node registry's drain: the node is marked
draining where the other nodes see it) before uvicorn begins to shut down; a second SIGTERM, or
SIGINT, stops at once.

Must not: build the app (``server.main.create_app``) or read settings; callers pass both in.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.main import STARTUP_FAILURE

from signaling.messages import MAX_FRAME_BYTES

log = logging.getLogger(__name__)

WS_MAX_SIZE = MAX_FRAME_BYTES
"""The largest WebSocket message uvicorn takes (after permessage-deflate), in bytes."""


def uvicorn_config(app: Any, *, host: str, port: int, log_level: str = "info", **options: Any) -> uvicorn.Config:
    """uvicorn's configuration for ``app`` on ``host:port``; ``options`` are more ``uvicorn.Config``
    arguments (``lifespan``, ...) but not the WebSocket limits, which are SanKe's."""
    if "ws_max_size" in options or "ws" in options:
        raise ValueError("the WebSocket protocol and its limits are set by server.serving")
    if "loop" in options:
        raise ValueError("the event loop is set by server.serving")
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, ws="websockets-sansio",
                          ws_max_size=WS_MAX_SIZE, loop="uvloop", **options)


class _Server(uvicorn.Server):
    """uvicorn's server, with ``on_term`` awaited between a SIGTERM and the shutdown it starts."""

    def __init__(self, config: uvicorn.Config, on_term: Callable[[], Awaitable[None]] | None) -> None:
        super().__init__(config)
        self._on_term = on_term
        self._loop: asyncio.AbstractEventLoop | None = None
        self._terming = False

    async def serve(self, sockets: Any = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM or self._on_term is None or self._terming or self._loop is None:
            super().handle_exit(sig, frame)
            return
        self._terming = True
        self._loop.call_soon_threadsafe(self._start_term, sig)

    def _start_term(self, sig: int) -> None:
        assert self._on_term is not None
        task = asyncio.ensure_future(self._on_term())

        def done(t: asyncio.Future[None]) -> None:
            if not t.cancelled() and t.exception() is not None:
                log.error("SIGTERM hook failed: %r", t.exception())
            super(_Server, self).handle_exit(sig, None)

        task.add_done_callback(done)


def serve(app: Any, *, host: str, port: int, log_level: str = "info",
          on_term: Callable[[], Awaitable[None]] | None = None, **options: Any) -> None:
    """Run ``app`` until stopped (SIGINT/SIGTERM), like ``uvicorn.run``: exit status 3 if it could not
    start (the port is taken, ...).  ``on_term``: awaited on SIGTERM before the shutdown begins."""
    server = _Server(uvicorn_config(app, host=host, port=port, log_level=log_level, **options), on_term)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    if not server.started:
        sys.exit(STARTUP_FAILURE)
