"""A webhook receiver on 127.0.0.1 for tests: it can be down (nothing listening: connection refused),
answer 500, answer 200, or hold a request open until the test lets it go.

Every request that arrived is kept (``requests``): when it came, its headers and body, and what it was
answered (``None`` while held, or when the sender went away before the answer).
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    at: float
    """``time.time()`` when it arrived."""
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int | None = None


@dataclass
class Receiver:
    port: int = field(default_factory=free_port)
    mode: str = "ok"
    """``ok`` (200), ``error`` (500) or ``hold`` (keep the request open until ``release``)."""
    hold_next: bool = False
    """Hold the next request that arrives (whatever the mode), answer the others by the mode."""
    requests: list[Received] = field(default_factory=list)
    held: Received | None = None
    """The request held open (``hold`` mode or ``hold_next``)."""
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _released: threading.Event = field(default_factory=threading.Event)
    _held: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def up(self) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                item = Received(time.time(), self.path, {k.lower(): v for k, v in self.headers.items()},
                                self.rfile.read(length))
                with receiver._lock:
                    receiver.requests.append(item)
                    mode = receiver.mode
                    if receiver.hold_next:
                        receiver.hold_next, mode = False, "hold"
                        receiver.held = item
                if mode == "hold":
                    receiver._held.set()
                    receiver._released.wait(60)
                    mode = "ok"
                code = 200 if mode == "ok" else 500
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "text/plain; charset=utf-8")
                    payload = "好".encode() if code == 200 else "内部错误".encode()
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    item.answered = code
                except OSError:  # the sender went away (a killed node)
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            allow_reuse_address = True
            daemon_threads = True

        self._server = Server(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def down(self) -> None:
        """Stop listening: new connections are refused."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def wait_held(self, timeout: float) -> bool:
        return self._held.wait(timeout)

    def release(self) -> None:
        self._released.set()

    def answered_ok(self) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.answered is not None and 200 <= r.answered < 300]

    def all(self) -> list[Received]:
        with self._lock:
            return list(self.requests)
