"""LoadMeter: what one media worker carries and has done, for the node's load report and ``/metrics``.

A read (:meth:`LoadMeter.read`, the worker's ``worker.load`` request) walks the worker's routers
once and returns plain data: how many routers, transports, producers and consumers live now, the
worst loss fraction seen up and down, the worker process's CPU time, and counters that only ever
grow for the life of the worker: RTP packets and bytes forwarded to subscribers, packets received
from publishers, packets lost on the way in (as the SFU counts them from sequence numbers) and on
the way out (as subscribers report them in RTCP receiver reports).

The live objects' own counters start again with every transport and consumer; the meter keeps, per
transport, what it saw last and adds only what grew, so a consumer or transport that goes away does
not make a total shrink (what it did after the last read and before it closed is counted when the
worker reads the meter just before closing it; see :class:`media.worker.Worker`).

Must not: run per packet (it reads counters the forwarding path keeps anyway), allocate per packet,
or compute rates (the node does, from two reads and the time between them).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from media.router import Router
    from media.transport import WebRtcTransport

COUNTERS = ("forwarded_packets", "forwarded_bytes", "received_packets", "lost_up", "lost_down")
"""The counters of a read, in this order; each only grows during a worker's life."""


def _transport_counters(transport: WebRtcTransport) -> tuple[int, int, int, int, int]:
    """This transport's own counters now (they may shrink when a consumer goes away)."""
    packets = octets = received = lost_up = lost_down = 0
    if transport.direction == "send":
        for s in transport.streams():
            if s.ssrc is None:
                continue
            received += s.stats.received
            lost_up += max(0, s.stats.lost)
    else:
        for c in transport.consumers.values():
            packets += c.sent_packets
            octets += c.sent_octets
            lost_down += max(0, c.stats.cumulative_lost)
    return packets, octets, received, lost_up, lost_down


class LoadMeter:
    """Monotonic totals over the routers of one worker (one per :class:`media.worker.Worker`)."""

    def __init__(self) -> None:
        self.totals = [0] * len(COUNTERS)
        self._last: dict[int, tuple[int, int, int, int, int]] = {}
        """Per live transport (by ``id()``; the object is kept in ``_alive`` so the id stays its own):
        the counters it had at the previous read."""
        self._alive: dict[int, WebRtcTransport] = {}

    def _account(self, transport: WebRtcTransport) -> None:
        key = id(transport)
        now = _transport_counters(transport)
        before = self._last.get(key)
        for i, value in enumerate(now):
            grown = value - (before[i] if before is not None else 0)
            if grown > 0:
                self.totals[i] += grown
        self._last[key] = now
        self._alive[key] = transport

    def retire(self, transports: Iterable[WebRtcTransport]) -> None:
        """Count what these transports did since the last read and forget them (they are closing)."""
        for transport in list(transports):
            self._account(transport)
            self._last.pop(id(transport), None)
            self._alive.pop(id(transport), None)

    def read(self, routers: Iterable[Router]) -> dict[str, Any]:
        """The worker's load now (see the module docstring for the fields)."""
        counts = {"routers": 0, "transports": 0, "producers": 0, "consumers": 0}
        loss_up = loss_down = 0.0
        seen: set[int] = set()
        for router in list(routers):
            counts["routers"] += 1
            counts["transports"] += len(router.transports)
            counts["producers"] += len(router.producers)
            counts["consumers"] += len(router.consumers)
            for transport in list(router.transports.values()):
                self._account(transport)
                seen.add(id(transport))
                if transport.direction == "send":
                    for s in transport.streams():
                        loss_up = max(loss_up, s.stats.loss_fraction)
                else:
                    for c in transport.consumers.values():
                        loss_down = max(loss_down, c.stats.loss_fraction)
        for key in [k for k in self._last if k not in seen]:  # closed without being retired
            del self._last[key]
            self._alive.pop(key, None)
        return {
            "pid": os.getpid(),
            "cpu_s": time.process_time(),
            **counts,
            **dict(zip(COUNTERS, self.totals)),
            "loss_up": round(min(1.0, loss_up), 4),
            "loss_down": round(min(1.0, loss_down), 4),
        }
