"""``/metrics``: this node for Prometheus, read from the live state when scraped.

One :class:`NodeCollector` per app, in a registry of its own (two apps in one process do not mix).
A scrape takes a fresh load sample (:class:`server.core.nodeload.NodeLoad`: one ``worker.load``
request per media worker, or the sample of the last half second) and reports

- rooms, participants by role, and the node's registry state (draining, accepting rooms, Redis);
- per media worker: routers, transports, producers, consumers, CPU seconds, forwarded packets and
  bytes, packets received from publishers, packets lost up (publisher → SFU, before repair) and
  down (as subscribers report), the worst current loss fraction each way;
- the session event log's backlog (rows waiting to be written) and the rows it had to drop;
- ``sanke_login_failures_total{reason}``: logins this node refused (the login route increments it);
- ``sanke_webhook_attempts_total{outcome}``: webhook POSTs this node made (``server.core.webhooks``
  increments it): ``delivered``, ``failed``, ``lost`` (its claim had lapsed);
- ``sanke_room_placements_total`` and ``sanke_failovers_total``: counters the placement and
  failover layers increment (:attr:`NodeCollector.placements`, :attr:`NodeCollector.failovers`);
  their labels are fixed here.

Who may scrape (:func:`allowed`): a caller on this machine talking to the node directly (loopback,
no proxy header), or anyone presenting ``Authorization: Bearer <SANKE_METRICS_TOKEN>``.  Anything
else gets 403: the node's load and lesson counts are not for the internet.

Must not: do work per packet or per event (everything is read at scrape time from counters the
media plane keeps anyway), or change any state it reads.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, disable_created_metrics, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from server.core.eventlog import EventLog
    from server.core.nodeload import LoadSample
    from server.core.nodes import NodeRegistry

log = logging.getLogger(__name__)

disable_created_metrics()  # no ``*_created`` series beside every counter: Prometheus does not need them

PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")
"""A request carrying one of these came through a proxy: its loopback address is the proxy's."""
ROLES = ("main", "receiving", "student", "observer")
PLACEMENT_RESULTS = ("here", "elsewhere", "refused")
"""``sanke_room_placements_total{result}``: the room opened on this node, was sent to another, or no
node could take it."""
FAILOVER_SIDES = ("taken_over", "lost")
LOGIN_FAILURES = ("bad_password", "unknown_user", "inactive", "throttled")
"""``sanke_login_failures_total{reason}``: why a login on this node was refused (throttled: too many
failures before, ``server.api.routes.auth``)."""
"""``sanke_failovers_total{side}``: rooms this node opened from another node's snapshot (after that node
died, lost Redis or drained), rooms it moved out (its lease lost, or drained)."""
WEBHOOK_OUTCOMES = ("delivered", "failed", "lost")
"""``sanke_webhook_attempts_total{outcome}``: webhook POSTs this node made: the receiver took it, it failed
(retried later or given up), or the node's claim had lapsed and another node had taken the delivery over."""


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def allowed(request: Request, token: str | None) -> bool:
    """May this request read ``/metrics``? (see the module docstring)"""
    if token:
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode()):
            return True
    client = request.client.host if request.client is not None else None
    return _is_loopback(client) and not any(h in request.headers for h in PROXY_HEADERS)


class NodeCollector(Collector):
    """Everything ``/metrics`` shows, from the sample :meth:`refresh` took and the objects it reads."""

    def __init__(self, nodes: NodeRegistry, eventlog: EventLog | None, rooms: Any = None) -> None:
        self.nodes = nodes
        self.eventlog = eventlog
        self.registry = CollectorRegistry(auto_describe=False)
        self.placements = PromCounter("sanke_room_placements", "Rooms this node placed, by where they went.",
                                      ["result"], registry=self.registry)
        self.failovers = PromCounter("sanke_failovers", "Rooms moved between nodes (a node died, lost Redis or drained).",
                                     ["side"], registry=self.registry)
        self.login_failures = PromCounter("sanke_login_failures", "Refused logins on this node, by reason.",
                                          ["reason"], registry=self.registry)
        self.webhook_attempts = PromCounter("sanke_webhook_attempts", "Webhook POSTs this node made, by "
                                            "outcome.", ["outcome"], registry=self.registry)
        for reason in LOGIN_FAILURES:
            self.login_failures.labels(reason=reason)
        for outcome in WEBHOOK_OUTCOMES:
            self.webhook_attempts.labels(outcome=outcome)
        for result in PLACEMENT_RESULTS:
            self.placements.labels(result=result)
        for side in FAILOVER_SIDES:
            self.failovers.labels(side=side)
        self._sample: LoadSample | None = None
        self.registry.register(self)

    async def refresh(self) -> None:
        self._sample = await self.nodes.load.sample(max_age=0.5)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Any]:
        sample = self._sample
        node = self.nodes
        labels = ["node"]
        nid = [node.node_id]

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            g = GaugeMetricFamily(name, doc, labels=labels)
            g.add_metric(nid, value)
            return g

        yield gauge("sanke_node_draining", "1 while this node is draining (takes no new rooms).", node.draining)
        yield gauge("sanke_node_accepting_rooms", "1 when this node may take new rooms (not draining, registry "
                    "healthy).", node.accepting_rooms)
        yield gauge("sanke_node_registry_healthy", "1 when this node's heartbeat reaches the registry (always "
                    "without Redis).", node.healthy)
        c = CounterMetricFamily("sanke_node_heartbeats", "Heartbeats this node wrote to Redis since it started.",
                                labels=labels)
        c.add_metric(nid, node.heartbeats)
        yield c
        if sample is not None:
            yield gauge("sanke_rooms", "Lesson rooms open on this node.", sample.rooms)
            g = GaugeMetricFamily("sanke_participants", "Participants in this node's rooms, by role.",
                                  labels=["node", "role"])
            for role in sorted(set(ROLES) | set(sample.participants_by_role)):
                g.add_metric([node.node_id, role], sample.participants_by_role.get(role, 0))
            yield g
            yield from self._workers(sample)
        if self.eventlog is not None:
            yield gauge("sanke_eventlog_backlog", "Session events waiting to be written to the database.",
                        self.eventlog.pending)
            c = CounterMetricFamily("sanke_eventlog_dropped", "Session events dropped because the backlog "
                                    "was full.", labels=labels)
            c.add_metric(nid, self.eventlog.dropped)
            yield c
            c = CounterMetricFamily("sanke_eventlog_written", "Session events written to the database.",
                                    labels=labels)
            c.add_metric(nid, self.eventlog.written)
            yield c

    def _workers(self, sample: LoadSample) -> Iterator[Any]:
        labels = ["node", "worker"]
        nid = self.nodes.node_id
        gauges = {
            "routers": GaugeMetricFamily("sanke_worker_routers", "Lesson routers on a media worker.", labels=labels),
            "transports": GaugeMetricFamily("sanke_worker_transports", "WebRTC transports on a media worker.",
                                            labels=labels),
            "producers": GaugeMetricFamily("sanke_producers", "Tracks published to a media worker.", labels=labels),
            "consumers": GaugeMetricFamily("sanke_consumers", "Tracks a media worker forwards to subscribers "
                                           "(one per subscriber and track).", labels=labels),
            "cpu": GaugeMetricFamily("sanke_worker_cpu_ratio", "A media worker's CPU time per wall-clock second "
                                     "over the last second or more (1 = one core).", labels=labels),
            "loss_up": GaugeMetricFamily("sanke_loss_ratio_up", "Worst loss fraction of a published stream "
                                         "arriving at a media worker (last report interval).", labels=labels),
            "loss_down": GaugeMetricFamily("sanke_loss_ratio_down", "Worst loss fraction a subscriber of a media "
                                           "worker reported (last receiver report).", labels=labels),
        }
        counters = {
            "forwarded_packets": CounterMetricFamily("sanke_forwarded_packets", "RTP packets forwarded to "
                                                     "subscribers.", labels=labels),
            "forwarded_bytes": CounterMetricFamily("sanke_forwarded_bytes", "Bytes of RTP forwarded to "
                                                   "subscribers (as sent, SRTP included).", labels=labels),
            "received_packets": CounterMetricFamily("sanke_received_packets", "RTP packets received from "
                                                    "publishers.", labels=labels),
            "lost_up": CounterMetricFamily("sanke_lost_packets_up", "Packets lost between publishers and the "
                                           "SFU (sequence gaps, before retransmission repaired them).", labels=labels),
            "lost_down": CounterMetricFamily("sanke_lost_packets_down", "Packets subscribers reported lost "
                                             "(RTCP receiver reports).", labels=labels),
        }
        cpu_seconds = CounterMetricFamily("sanke_worker_cpu_seconds", "CPU time of a media worker's processes "
                                          "(the server's own with an in-process worker).", labels=labels)
        for w in sample.workers:
            key = [nid, str(w.index)]
            for name, family in gauges.items():
                family.add_metric(key, float(getattr(w, name)))
            for name, family in counters.items():
                family.add_metric(key, w.totals[name])
            cpu_seconds.add_metric(key, w.cpu_seconds)
        yield from gauges.values()
        yield from counters.values()
        yield cpu_seconds


def install(app: FastAPI, collector: NodeCollector, token: str | None) -> None:
    """``GET /metrics`` on ``app``, for the callers :func:`allowed` lets in."""

    @app.get("/metrics", tags=["health"], include_in_schema=False)
    async def metrics(request: Request) -> Response:
        if not allowed(request, token):
            return PlainTextResponse("forbidden: /metrics answers loopback callers or a bearer token\n", 403)
        await collector.refresh()
        return Response(collector.render(), media_type=CONTENT_TYPE_LATEST)
