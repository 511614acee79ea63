"""The door of the signaling WebSocket: how many sockets one client address may open and hold
before they have joined.

A socket that has not joined yet is anyone's: it costs the server a task, a buffer and a
``join`` check, and the token has not been read.  ``AddressGate`` bounds that per client address
(an IPv6 address counts by its /64, which one host usually owns whole): at most ``max_unjoined``
sockets at once that have not joined, and new sockets at a sustained ``per_minute`` with bursts of
as many (a token bucket, so a school behind one NAT address can reconnect all its classrooms at
once).  ``signaling.endpoint`` asks it before reading anything and closes a refused socket with
``CLOSE_TOO_MANY``; a joined socket no longer counts.

Must not: read frames, know about tokens or rooms, or do I/O.  Memory stays bounded: an address
with nothing pending and a full bucket is forgotten.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass

_FORGET_EVERY = 256
"""Forget idle addresses after this many new sockets."""


def address_key(host: str | None) -> str:
    """What one client is: its IPv4 address, the /64 of its IPv6 address, else the text itself."""
    if not host:
        return "?"
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


@dataclass
class _Address:
    unjoined: int
    tokens: float
    at: float


class Slot:
    """One admitted socket's place among its address's unjoined ones; ``release`` when it joined or ended."""

    def __init__(self, gate: AddressGate, key: str) -> None:
        self._gate, self._key = gate, key
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._gate._release(self._key)


class AddressGate:
    def __init__(self, max_unjoined: int, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        if max_unjoined < 1 or per_minute < 1:
            raise ValueError("the gate needs at least one socket and one per minute")
        self.max_unjoined = max_unjoined
        self.burst = float(per_minute)
        self.rate = per_minute / 60.0
        self._clock = clock
        self._addresses: dict[str, _Address] = {}
        self._admitted = 0
        self._refused = 0
        self._reported_at: float | None = None

    def enter(self, host: str | None) -> Slot | str:
        """A ``Slot`` for a new socket from ``host``, or why not: ``"too_many"`` (unjoined sockets) or
        ``"too_fast"`` (new sockets)."""
        now = self._clock()
        key = address_key(host)
        entry = self._addresses.get(key)
        if entry is None:
            entry = self._addresses[key] = _Address(unjoined=0, tokens=self.burst, at=now)
        else:
            entry.tokens = min(self.burst, entry.tokens + (now - entry.at) * self.rate)
            entry.at = now
        if entry.unjoined >= self.max_unjoined:
            self._refused += 1
            return "too_many"
        if entry.tokens < 1.0:
            self._refused += 1
            return "too_fast"
        entry.tokens -= 1.0
        entry.unjoined += 1
        self._admitted += 1
        if self._admitted % _FORGET_EVERY == 0:
            self._forget_idle(now)
        return Slot(self, key)

    def refusals_to_report(self, every_s: float) -> int:
        """How many sockets were refused since the last report, if one is due (``every_s`` after it), else 0:
        what a log line says without one line per refused socket."""
        now = self._clock()
        if not self._refused or (self._reported_at is not None and now - self._reported_at < every_s):
            return 0
        count, self._refused, self._reported_at = self._refused, 0, now
        return count

    def unjoined(self, host: str | None) -> int:
        entry = self._addresses.get(address_key(host))
        return entry.unjoined if entry is not None else 0

    def __len__(self) -> int:
        return len(self._addresses)

    def _release(self, key: str) -> None:
        entry = self._addresses.get(key)
        if entry is not None and entry.unjoined > 0:
            entry.unjoined -= 1

    def _forget_idle(self, now: float) -> None:
        idle = [key for key, e in self._addresses.items()
                if e.unjoined == 0 and e.tokens + (now - e.at) * self.rate >= self.burst]
        for key in idle:
            del self._addresses[key]
