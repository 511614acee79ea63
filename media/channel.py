"""Channel: requests, responses and notifications between signaling and a media worker.

Modelled on mediasoup's Channel.  Each frame is a 4-byte big-endian length followed by that
many bytes of UTF-8 JSON (at most :data:`MAX_FRAME`).  Three kinds of messages:

* request      ``{"id": int, "method": str, "params": {...}}``
* response     ``{"id": int, "result": {...}}`` or
               ``{"id": int, "error": {"code": str, "message": str}}``
* notification ``{"event": str, "data": {...}}``

Both ends may send requests; ids are per direction.  A response resolves the pending request
with the same id.  Each incoming request runs the handler in its own task, so a slow request
does not hold up the others; responses can thus arrive out of order.

Ordering guarantee: a notification sent after a response is delivered to ``on_event`` only
after the code awaiting that response has resumed (events are handed over with
``loop.call_soon``, which runs after the awaiting task's wake-up already queued by the response).
So a caller that creates something and registers it right after ``await request(...)`` sees the
events about it.  (This holds for code awaiting :meth:`Channel.request` itself; wrapping the
call in ``asyncio.wait_for`` or a separate task adds loop hops and loses the guarantee.)

The same code serves a worker in a subprocess (over an inherited socket) and a worker in this
process (over a ``socket.socketpair()``, see :func:`open_socketpair_channels`).

Not thread-safe: call everything from the event loop the channel runs on.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import socket
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

MAX_FRAME = 4 * 1024 * 1024
"""Largest frame body in bytes (4 MiB). Bigger incoming frames close the channel."""

_HEADER = 4

Handler = Callable[[str, dict], Awaitable[dict]]
EventCallback = Callable[[str, dict], None]


class ChannelError(Exception):
    """A request refused by the other end (``code`` is machine-readable, ``message`` for humans)."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message


class ChannelClosed(ChannelError):
    """The channel closed before (or while) the request was answered."""

    def __init__(self, message: str = "channel closed") -> None:
        super().__init__("closed", message)


_ID_IN_BROKEN_REQUEST = re.compile(rb'^\s*\{\s*"id"\s*:\s*(\d{1,18})\s*,\s*"method"')


class Channel:
    """One end of a channel over an asyncio stream pair."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        handler: Handler | None = None,
        on_event: EventCallback | None = None,
        on_close: Callable[[], None] | None = None,
        name: str = "channel",
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.handler = handler
        """Runs incoming requests; may be set after construction (before the first request)."""
        self.on_event = on_event
        """Receives incoming notifications; may be set after construction."""
        self.on_close = on_close
        """Called once (without arguments) when the channel has closed, for whatever reason."""
        self.name = name
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict]] = {}
        self._handlers: set[asyncio.Task[None]] = set()
        self._read_task: asyncio.Task[None] | None = None
        self._closed = False
        self._close_reason = "channel closed"

    # ------------------------------------------------------------------ public

    @property
    def closed(self) -> bool:
        return self._closed

    def start(self) -> None:
        """Start the read loop (once)."""
        if self._read_task is not None:
            return
        if self._closed:
            raise ChannelClosed(self._close_reason)
        self._read_task = asyncio.get_running_loop().create_task(self._read_loop(), name=f"{self.name}-read")

    async def request(self, method: str, params: dict, timeout: float = 10.0) -> dict:
        """Send a request and wait for its response.

        Raises :class:`ChannelError` for an error response, :class:`ChannelClosed` when the
        channel closes first, :class:`TimeoutError` after ``timeout`` seconds.
        """
        if self._closed:
            raise ChannelClosed(self._close_reason)
        request_id = next(self._ids)
        frame = _encode({"id": request_id, "method": method, "params": params})
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict] = loop.create_future()
        self._pending[request_id] = future
        # A timer rather than asyncio.wait_for: the caller must wake up directly from the
        # response (one loop hop), ahead of the notifications read after it.
        timer = loop.call_later(timeout, _expire, future, f"{method}: no response within {timeout} s")
        try:
            self._writer.write(frame)
            try:
                await self._writer.drain()
            except (ConnectionError, OSError) as exc:
                self._teardown(f"write failed: {exc}")
            return await future
        finally:
            timer.cancel()
            self._pending.pop(request_id, None)
            if not future.done():
                future.cancel()

    def notify(self, event: str, data: dict) -> None:
        """Send a notification (fire and forget; never blocks: the frame goes to the write buffer)."""
        if self._closed:
            log.debug("%s: notification %s dropped, channel closed", self.name, event)
            return
        self._writer.write(_encode({"event": event, "data": data}))

    async def close(self) -> None:
        """Close the channel: pending requests fail with :class:`ChannelClosed`. Idempotent."""
        self._teardown("channel closed")
        task = self._read_task
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                if asyncio.current_task() is not None and asyncio.current_task().cancelling():  # type: ignore[union-attr]
                    raise
        try:
            await self._writer.wait_closed()
        except (ConnectionError, OSError):
            pass

    # ------------------------------------------------------------------ internals

    def _teardown(self, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self._close_reason = reason
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ChannelClosed(reason))
        self._pending.clear()
        for task in list(self._handlers):
            task.cancel()
        try:
            self._writer.close()
        except RuntimeError:  # the loop is already closed
            pass
        if self.on_close is not None:
            try:
                self.on_close()
            except Exception:  # noqa: BLE001 - a callback must not break the close
                log.exception("%s: on_close callback failed", self.name)

    async def _read_loop(self) -> None:
        reason = "channel closed by the other end"
        try:
            while True:
                header = await self._reader.readexactly(_HEADER)
                size = int.from_bytes(header, "big")
                if size > MAX_FRAME:
                    reason = f"incoming frame of {size} bytes exceeds the {MAX_FRAME}-byte limit"
                    log.error("%s: %s; closing", self.name, reason)
                    break
                body = await self._reader.readexactly(size)
                self._dispatch(body)
        except asyncio.IncompleteReadError:
            pass
        except (ConnectionError, OSError) as exc:
            reason = f"connection lost: {exc}"
        except asyncio.CancelledError:
            self._teardown(self._close_reason)
            raise
        self._teardown(reason)

    def _dispatch(self, body: bytes) -> None:
        try:
            message = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            log.error("%s: malformed frame (not UTF-8 JSON): %r", self.name, body[:200])
            match = _ID_IN_BROKEN_REQUEST.match(body)
            if match:
                self._respond_error(int(match.group(1)), "bad_request", "malformed frame (not UTF-8 JSON)")
            return
        if not isinstance(message, dict):
            log.error("%s: malformed frame (not an object): %r", self.name, body[:200])
            return
        message_id = message.get("id")
        has_id = isinstance(message_id, int) and not isinstance(message_id, bool)
        if "method" in message:
            self._on_request(message, message_id if has_id else None)
        elif "event" in message:
            self._on_notification(message)
        elif "result" in message or "error" in message:
            self._on_response(message, message_id if has_id else None)
        else:
            log.error("%s: malformed frame (neither request, response nor notification): %r",
                      self.name, body[:200])
            if has_id:
                self._respond_error(message_id, "bad_request", "not a request, response or notification")

    def _on_request(self, message: dict, request_id: int | None) -> None:
        method = message.get("method")
        params = message.get("params", {})
        if request_id is None:
            log.error("%s: request without a valid id dropped: %r", self.name, message)
            return
        if not isinstance(method, str) or not method or not isinstance(params, dict):
            log.error("%s: malformed request %s", self.name, request_id)
            self._respond_error(request_id, "bad_request", "a request needs a method name and a params object")
            return
        if self.handler is None:
            self._respond_error(request_id, "unsupported", f"this end handles no requests ({method})")
            return
        task = asyncio.get_running_loop().create_task(
            self._run_handler(request_id, method, params), name=f"{self.name}-{method}-{request_id}")
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _run_handler(self, request_id: int, method: str, params: dict) -> None:
        handler = self.handler
        assert handler is not None
        try:
            result = await handler(method, params)
        except ChannelError as exc:
            self._respond_error(request_id, exc.code, exc.message)
            return
        except Exception as exc:  # noqa: BLE001 - report to the requester, keep the channel
            log.exception("%s: request %s %s failed", self.name, request_id, method)
            self._respond_error(request_id, "internal", f"{type(exc).__name__}: {exc}")
            return
        if result is None:
            result = {}
        if not isinstance(result, dict):
            log.error("%s: handler for %s returned %s, not a dict", self.name, method, type(result).__name__)
            self._respond_error(request_id, "internal", "handler returned a non-object result")
            return
        try:
            frame = _encode({"id": request_id, "result": result})
        except (TypeError, ValueError, ChannelError) as exc:
            log.error("%s: response to %s %s cannot be sent: %s", self.name, request_id, method, exc)
            code = exc.code if isinstance(exc, ChannelError) else "internal"
            self._respond_error(request_id, code, f"response cannot be sent: {exc}")
            return
        self._write(frame)

    def _on_response(self, message: dict, response_id: int | None) -> None:
        if response_id is None:
            log.error("%s: response without a valid id dropped: %r", self.name, message)
            return
        future = self._pending.pop(response_id, None)
        if future is None or future.done():
            log.warning("%s: response to unknown or expired request %s dropped", self.name, response_id)
            return
        if "error" in message:
            error = message["error"]
            if isinstance(error, dict) and isinstance(error.get("code"), str):
                future.set_exception(ChannelError(error["code"], str(error.get("message", ""))))
            else:
                log.error("%s: malformed error response to %s: %r", self.name, response_id, message)
                future.set_exception(ChannelError("bad_response", f"malformed error response: {error!r}"))
            return
        result = message["result"]
        if not isinstance(result, dict):
            log.error("%s: malformed response to %s: %r", self.name, response_id, message)
            future.set_exception(ChannelError("bad_response", "response result is not an object"))
            return
        future.set_result(result)

    def _on_notification(self, message: dict) -> None:
        event = message.get("event")
        data = message.get("data", {})
        if not isinstance(event, str) or not isinstance(data, dict):
            log.error("%s: malformed notification dropped: %r", self.name, message)
            return
        if self.on_event is None:
            log.debug("%s: notification %s without a listener", self.name, event)
            return
        # After any task woken by a response read just before (see the module docstring).
        asyncio.get_running_loop().call_soon(self._deliver, event, data)

    def _deliver(self, event: str, data: dict) -> None:
        callback = self.on_event
        if callback is None:
            return
        try:
            callback(event, data)
        except Exception:  # noqa: BLE001 - a listener must not kill the channel
            log.exception("%s: event listener failed for %s", self.name, event)

    def _respond_error(self, request_id: int, code: str, message: str) -> None:
        self._write(_encode({"id": request_id, "error": {"code": code, "message": message[:2000]}}))

    def _write(self, frame: bytes) -> None:
        if self._closed:
            return
        self._writer.write(frame)


def _expire(future: asyncio.Future[dict], message: str) -> None:
    if not future.done():
        future.set_exception(TimeoutError(message))


def _encode(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if len(body) > MAX_FRAME:
        raise ChannelError("frame_too_large", f"frame of {len(body)} bytes exceeds the {MAX_FRAME}-byte limit")
    return len(body).to_bytes(_HEADER, "big") + body


async def open_channel(sock: socket.socket, **kwargs: Any) -> Channel:
    """A (not yet started) Channel over a connected stream socket."""
    reader, writer = await asyncio.open_connection(sock=sock, limit=1024 * 1024)
    return Channel(reader, writer, **kwargs)


async def open_socketpair_channels(
    first: dict[str, Any] | None = None, second: dict[str, Any] | None = None
) -> tuple[Channel, Channel]:
    """Two connected (not yet started) Channels in this process over ``socket.socketpair()``.

    ``first`` and ``second`` are keyword arguments for each Channel (handler, on_event, ...).
    """
    a, b = socket.socketpair()
    return await open_channel(a, **(first or {})), await open_channel(b, **(second or {}))
