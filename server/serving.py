"""How SanKe is put on uvicorn: the one place that builds its ``uvicorn.Config``.

Every way SanKe is started — ``sanke serve`` (and the demo), the tests' live servers, the
benchmarks — goes through ``uvicorn_config`` so the options that protect the server hold
everywhere: the WebSocket layer refuses a frame larger than the signaling protocol's
``MAX_FRAME_BYTES`` as soon as its header is read (close 1009, "message too big"), before
anything of it is buffered; uvicorn's own default would buffer up to 16 MiB of an unauthenticated
socket's frame (and decompress as much) before the application could look at it.

Must not: build the app (``server.main.create_app``) or read settings; callers pass both in.
"""

from __future__ import annotations

import sys
from typing import Any

import uvicorn
from uvicorn.main import STARTUP_FAILURE

from signaling.messages import MAX_FRAME_BYTES

WS_MAX_SIZE = MAX_FRAME_BYTES
"""The largest WebSocket message uvicorn takes (after permessage-deflate), in bytes."""


def uvicorn_config(app: Any, *, host: str, port: int, log_level: str = "info", **options: Any) -> uvicorn.Config:
    """uvicorn's configuration for ``app`` on ``host:port``; ``options`` are more ``uvicorn.Config``
    arguments (``lifespan``, ...) but not the WebSocket limits, which are SanKe's."""
    if "ws_max_size" in options or "ws" in options:
        raise ValueError("the WebSocket protocol and its limits are set by server.serving")
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, ws="websockets-sansio",
                          ws_max_size=WS_MAX_SIZE, **options)


def serve(app: Any, *, host: str, port: int, log_level: str = "info", **options: Any) -> None:
    """Run ``app`` until stopped (SIGINT/SIGTERM), like ``uvicorn.run``: exit status 3 if it could not
    start (the port is taken, ...)."""
    server = uvicorn.Server(uvicorn_config(app, host=host, port=port, log_level=log_level, **options))
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    if not server.started:
        sys.exit(STARTUP_FAILURE)
