"""The event loop a media worker process runs on, and how its UDP sockets are read in bursts.

A worker wakes for every packet burst a publisher sends (a video frame, an audio packet: a few
hundred times a second for one lesson). With asyncio's own selector loop each wake-up runs the
loop's Python (``_run_once``, the selector, the transport's ``_read_ready``, a ``Handle``) with
cold caches: measured on the 2-core test machine, a bare asyncio loop receiving 200 datagrams a
second spent about 135 µs of CPU per datagram, uvloop (libuv, in C) about 50 µs, a blocking
``recv`` about 21 µs. In a small lesson that wake-up, not forwarding, is most of what a worker
costs, so the worker process runs on uvloop (:func:`run`).

Code in ``media/`` must still work on asyncio's loop (a worker can run inside the server's
process, as tests do). The one difference it sees is how a socket is drained: asyncio's UDP
transport reads one datagram per wake-up, so the transports read the rest of a burst
themselves through the socket (:func:`burst_reader`); libuv already reads up to 32 datagrams
per wake-up and gives no socket to read from (its ``get_extra_info("socket")`` is a stand-in
that only has ``fileno``, ``getsockname`` and the like), so there :func:`burst_reader` gives
None. This module only chooses and runs the loop; it must not know about SRTP or transports.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import uvloop


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` to completion on a new uvloop event loop (the worker process's whole life)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


def burst_reader(udp: asyncio.BaseTransport) -> Callable[[int], tuple[bytes, Any]] | None:
    """``recvfrom`` of the socket under the datagram transport ``udp`` when the loop reads one
    datagram per wake-up (asyncio's selector loop), for the rest of a burst; None on a loop that
    reads bursts itself (uvloop). The socket is non-blocking: a drained one raises
    ``BlockingIOError``."""
    sock = udp.get_extra_info("socket")
    raw = getattr(sock, "_sock", sock)  # asyncio's TransportSocket wraps the real socket
    return raw.recvfrom if isinstance(raw, socket.socket) else None


def raw_socket(udp: asyncio.BaseTransport) -> Any:
    """The socket (or, on uvloop, its stand-in) under ``udp``: for ``fileno`` and ``getsockname``."""
    sock = udp.get_extra_info("socket")
    return getattr(sock, "_sock", sock)
