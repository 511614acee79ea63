"""The webhook delivery worker: sends the outbox's due deliveries, signed, and records what happened.

Owns the loop each node runs (``WebhookWorker``, an async context manager entered by the app's lifespan):
every ``SANKE_WEBHOOK_POLL_SECONDS`` it claims up to ``SANKE_WEBHOOK_BATCH`` due deliveries under a lease
(``scheduler.webhooks.claim``, committed before anything is sent), POSTs each with its signature headers,
and records the outcome (``scheduler.webhooks.complete``: delivered, or the next attempt after a back-off,
or failed).  Delivery is at least once: a node killed mid-delivery leaves its claims to the others once
their lease lapses, and a receiver that answered but whose answer was lost gets the event again, with
the same ``SanKe-Event-Id``.  It must not decide what an event is or who gets it (``scheduler.webhooks``),
follow redirects, or use a proxy from the environment; database work runs on a thread, never on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from types import TracebackType
from typing import Any

import httpx
from sqlalchemy.orm import Session, sessionmaker

from scheduler import webhooks
from server.core.config import Settings
from server.core.db import session_scope
from server.core.tasks import cancel_and_wait

log = logging.getLogger(__name__)

USER_AGENT = "SanKe-Webhooks/1"
RESPONSE_EXCERPT = 200
"""Characters of a failed answer's body kept in the delivery log."""


def headers_for(c: webhooks.Claim, timestamp: int) -> dict[str, str]:
    """The headers of one attempt (the signature covers ``timestamp`` and the body)."""
    return {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": USER_AGENT,
        "SanKe-Event-Id": c.event_uid,
        "SanKe-Event-Type": c.event_type,
        "SanKe-Delivery-Attempt": str(c.attempt),
        "SanKe-Timestamp": str(timestamp),
        "SanKe-Signature": webhooks.sign(c.secret, timestamp, c.body),
    }


class WebhookWorker:
    def __init__(self, session_factory: sessionmaker[Session], settings: Settings) -> None:
        self._factory = session_factory
        self.node = settings.effective_node_id
        self.poll_s = settings.webhook_poll_seconds
        self.timeout_s = settings.webhook_timeout_seconds
        self.lease = timedelta(seconds=settings.webhook_lease_seconds)
        self.batch = settings.webhook_batch
        self.max_attempts = settings.webhook_max_attempts
        self.backoff_base_s = settings.webhook_backoff_base_seconds
        self.backoff_cap_s = settings.webhook_backoff_cap_seconds
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._held: dict[int, webhooks.Claim] = {}
        self._wake = asyncio.Event()
        self._running: asyncio.AbstractEventLoop | None = None
        self.attempts: Any = None
        """``/metrics``' counter of attempts by outcome (``server.core.metrics``), when the app has one."""

    def kick(self) -> None:
        """Look for due deliveries now rather than at the next poll (callable from any thread)."""
        if self._running is not None:
            self._running.call_soon_threadsafe(self._wake.set)

    # ------------------------------------------------------------------ one pass

    def _claim(self) -> list[webhooks.Claim]:
        with session_scope(self._factory) as session:
            return webhooks.claim(session, node=self.node, now=webhooks.wallclock(), lease=self.lease,
                                  limit=self.batch, max_attempts=self.max_attempts)

    def _complete(self, c: webhooks.Claim, ok: bool, status_code: int | None, error: str | None) -> None:
        with session_scope(self._factory) as session:
            status = webhooks.complete(session, c, ok=ok, status_code=status_code, error=error,
                                       now=webhooks.wallclock(), max_attempts=self.max_attempts,
                                       backoff_base_s=self.backoff_base_s, backoff_cap_s=self.backoff_cap_s)
        if self.attempts is not None:
            outcome = "lost" if status is None else "delivered" if ok else "failed"
            self.attempts.labels(outcome=outcome).inc()

    async def _post(self, c: webhooks.Claim) -> tuple[bool, int | None, str | None]:
        assert self._client is not None
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self._client.stream("POST", c.url, content=c.body,
                                               headers=headers_for(c, int(time.time()))) as r:
                    if 200 <= r.status_code < 300:
                        return True, r.status_code, None
                    excerpt = b""
                    async for chunk in r.aiter_bytes():
                        excerpt += chunk
                        if len(excerpt) >= RESPONSE_EXCERPT:
                            break
                    text = excerpt[:RESPONSE_EXCERPT].decode("utf-8", "replace").strip()
                    return False, r.status_code, f"HTTP {r.status_code}" + (f": {text}" if text else "")
        except TimeoutError:
            return False, None, f"超时（{self.timeout_s:g} 秒内没有应答）"
        except httpx.ConnectError as exc:
            return False, None, f"无法连接：{exc}"[:webhooks.MAX_ERROR_CHARS]
        except httpx.HTTPError as exc:
            return False, None, f"{type(exc).__name__}: {exc}"[:webhooks.MAX_ERROR_CHARS]

    async def _deliver(self, c: webhooks.Claim) -> None:
        self._held[c.delivery_id] = c  # until its outcome is recorded; a stop hands back what is held
        try:
            ok, status_code, error = await self._post(c)
            await asyncio.to_thread(self._complete, c, ok, status_code, error)
        except asyncio.CancelledError:
            raise
        except BaseException:
            self._held.pop(c.delivery_id, None)
            raise
        self._held.pop(c.delivery_id, None)

    async def run_once(self) -> int:
        """Claim what is due and send it; answers how many deliveries were claimed."""
        claims = await asyncio.to_thread(self._claim)
        results = await asyncio.gather(*(self._deliver(c) for c in claims), return_exceptions=True)
        for c, result in zip(claims, results):
            if isinstance(result, Exception):
                log.error("webhook delivery %s: recording its outcome failed: %r", c.delivery_id, result)
        return len(claims)

    async def _loop(self) -> None:
        while True:
            try:
                claimed = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database is away: the next pass retries
                log.exception("webhook pass failed")
                claimed = 0
            if claimed >= self.batch:
                continue  # more may be due
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            except TimeoutError:
                pass

    def _release(self, claims: list[webhooks.Claim]) -> None:
        with session_scope(self._factory) as session:
            for c in claims:
                webhooks.release(session, c, now=webhooks.wallclock())

    # ------------------------------------------------------------------ lifespan

    async def __aenter__(self) -> "WebhookWorker":
        self._client = httpx.AsyncClient(follow_redirects=False, trust_env=False,
                                         timeout=httpx.Timeout(self.timeout_s),
                                         limits=httpx.Limits(max_connections=max(10, self.batch)))
        self._running = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._loop(), name="sanke-webhooks")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        self._running = None
        held = list(self._held.values())
        self._held.clear()
        if held:  # sends cut by the stop: due again at once, for any node
            try:
                await asyncio.to_thread(self._release, held)
            except Exception:
                log.exception("webhooks: handing back %d claimed deliveries failed", len(held))
        if self._client is not None:
            await self._client.aclose()
            self._client = None
