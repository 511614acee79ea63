"""The FastAPI application: API under /api/v1, health, and the web client.

One ``lifespan`` enters the pieces in order (database, bus, session event log,
crash recovery, media workers, recordings, node registry, webhook worker, lifecycle task) through an
``AsyncExitStack`` and leaves them in reverse order.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text
from starlette.types import Receive, Scope, Send

from server import apidocs
from server.api import errors
from server.api.int_bounds import refuse_oversized_integers
from server.api.main import api_router
from server.api.routes import hls
from signaling import handover
from signaling.endpoint import attach as attach_rooms
from signaling.endpoint import lesson_socket_id, serve_lesson_socket
from signaling.endpoint import router as signaling_router
from scheduler import placement_models
from server.core.bus import make_bus
from server.core.config import Settings, get_settings
from server.core.db import make_engine, make_session_factory
from server.core.eventlog import EventLog
from server.core.hls_reload import Watchers
from server.core.lenders import LenderDirectory
from server.core.lifecycle_task import LifecycleTask
from server.core.loopwatch import LoopWatch
from server.core import gcpolicy, metrics
from server.core.migrate import upgrade
from server.core.nodeload import NodeLoad
from server.core.nodes import NodeRegistry
from server.core.placement import Placement
from server.core.recordkeeper import RecordKeeper
from server.core.recovery import Recovery
from server.core.webhooks import WebhookWorker
from server.jobs.recording import RecordingService
from media.pool import WorkerPool
from media.worker_process import DEFAULT_WORKER_CLASS
from scheduler.lifecycle import TOPIC as LESSON_TOPIC
from signaling.media import MEDIA_TOPIC, MediaService
from signaling.roomstore import RoomStateKeeper

log = logging.getLogger(__name__)
WEB_DIR = Path(__file__).resolve().parent.parent / "web"


async def _cluster_media(stack: AsyncExitStack, settings: Settings, media: WorkerPool) -> None:
    """Offer this node's media workers to the cluster, and use the other nodes' (``media.remote``)."""
    if settings.cluster_secret is None:
        return
    secret = settings.cluster_secret.get_secret_value().encode()
    if settings.media_remote_listen:
        from media.remote import RemoteWorkerServer, split_address

        offer = RemoteWorkerServer(media, secret, settings.media_pipe_host)
        await offer.start(*split_address(settings.media_remote_listen))
        stack.push_async_callback(offer.close)
    for address in (settings.media_remote_workers or "").split(","):
        if address.strip():
            media.add_remote(address.strip(), secret)


def _operation_id(route: APIRoute) -> str:
    tag = route.tags[0] if route.tags else "root"
    return f"{tag}-{route.name}"


class SanKe(FastAPI):
    """The app: FastAPI, with the lesson WebSocket served before the middleware stack
    (``signaling.endpoint.lesson_socket_id``), so that thousands of open sockets do not each keep the
    stack's layers alive.  Everything else goes through the stack."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        instance_id = lesson_socket_id(scope)
        if instance_id is None:
            await super().__call__(scope, receive, send)
            return
        if self.root_path:
            scope["root_path"] = self.root_path
        scope["app"] = self
        await serve_lesson_socket(scope, receive, send, instance_id)


def create_app(settings: Settings | None = None, *, migrate: bool = True, run_lifecycle: bool = True,
               media_worker_class: str = DEFAULT_WORKER_CLASS, run_webhooks: bool | None = None,
               settle_gc: bool = False) -> FastAPI:
    """The app. ``run_lifecycle``/``run_webhooks``: run the lifecycle task and the webhook delivery worker
    (``run_webhooks`` follows ``run_lifecycle`` unless given: tests that build an app run neither unless asked).
    ``settle_gc``: the garbage collector's serving settings once started (``server.core.gcpolicy``; the
    node's own process only, ``sanke serve``: it freezes everything alive in the process)."""
    settings = settings or get_settings()
    settings.ensure_data_dir()
    settings.effective_secret_key()  # generate and store it before the first request
    ice_policy = settings.ice_policy()  # a bad ICE setting fails here, not at the first join
    for address in ice_policy.relay_outside_allowed_networks():
        log.warning("TURN server %s lies outside SANKE_ICE_ALLOWED_NETWORKS: media relayed through it will be "
                    "refused unless coturn's relay-ip is inside", address)
    url = settings.effective_database_url
    if migrate:
        upgrade(url)
    engine = make_engine(url)
    session_factory = make_session_factory(engine)
    bus = make_bus(settings.redis_url)
    # Workers start in the lifespan; the worker class is imported only then.
    media = WorkerPool(settings.effective_media_workers, settings.ice_strings(), worker_class=media_worker_class,
                       pin=settings.media_pin_workers, spare=settings.media_spare_worker)
    media_service = MediaService(media, bus, consumer_limit=settings.node_worker_consumers,
                                 pipe_host=settings.media_pipe_host)
    recording_service = RecordingService(session_factory, settings)
    media_service.recordings = recording_service
    eventlog = EventLog(session_factory, flush_interval_s=settings.event_flush_interval_seconds,
                        presence_interval_s=settings.presence_mark_interval_seconds, node=settings.effective_node_id)
    record_keeper = RecordKeeper(session_factory, eventlog,
                                 late_grace=timedelta(minutes=settings.record_late_grace_minutes))
    webhook_worker = WebhookWorker(session_factory, settings)
    recovery = Recovery(session_factory, eventlog, node=settings.effective_node_id, data_dir=settings.data_dir,
                        late_grace=record_keeper.late_grace)
    app_state: dict[str, object] = {}
    node_load = NodeLoad(media, lambda: app_state.get("rooms"))
    nodes = NodeRegistry(settings, node_load, redis=getattr(bus, "redis", None), bus=bus)
    collector = metrics.NodeCollector(nodes, eventlog)
    placement = Placement(nodes, lease_seconds=settings.room_lease_seconds, counter=collector.placements,
                          record=placement_models.recorder(session_factory, nodes.node_id))
    room_states = RoomStateKeeper(getattr(bus, "redis", None), node_id=nodes.node_id)
    hls_watchers = Watchers()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if settings.loop_watch_file is not None:  # opt-in: the loop's stalls and what ran in them
                await stack.enter_async_context(LoopWatch(settings.loop_watch_file,
                                                               census=settings.loop_watch_census))
            stack.callback(engine.dispose)
            stack.push_async_callback(hls_watchers.close)  # requests still waiting on a stream's playlist
            await stack.enter_async_context(bus)
            await stack.enter_async_context(eventlog)  # stops after everything that writes to it
            await stack.enter_async_context(recovery)  # what a crash left open, before any room opens or closes
            await media.start()  # a worker that does not come up, or a bad ICE setting, stops the start
            stack.push_async_callback(media.close)
            await _cluster_media(stack, settings, media)
            stack.callback(media_service.close)
            await stack.enter_async_context(recording_service)  # its compose jobs stop before the workers
            await stack.enter_async_context(nodes)  # registered once its workers are up; gone before they stop
            if nodes.clustered and settings.cluster_secret is not None:  # the lenders the registry lists
                await stack.enter_async_context(LenderDirectory(
                    nodes, media, settings.cluster_secret.get_secret_value().encode(),
                    static={a.strip() for a in (settings.media_remote_workers or "").split(",") if a.strip()}))
            await stack.enter_async_context(placement)  # renews the leases of the rooms placed here
            await stack.enter_async_context(room_states)  # writes the snapshots of the rooms here
            if run_lifecycle if run_webhooks is None else run_webhooks:
                await stack.enter_async_context(webhook_worker)  # sends the outbox's due deliveries
            if run_lifecycle:
                task = LifecycleTask(session_factory, bus, settings)
                await stack.enter_async_context(task)
            if settle_gc:  # started: what is alive now is never scanned again (full collections pause the loop)
                log.info("gc: %d objects alive after start-up frozen; thresholds %s", gcpolicy.settle(),
                         gc.get_threshold())
                stack.callback(gcpolicy.reset)
            yield

    app = SanKe(
        title="SanKe 三课",
        version="0.1.0",
        description="三个课堂：专递课堂、名师课堂、名校网络课堂 — 排课、课堂、巡课与记录",
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
        docs_url=None,  # served by server.apidocs from a packaged Swagger UI, not a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = session_factory
    app.state.bus = bus
    app.state.media = media
    app.state.media_factory = media_service.factory
    app.state.eventlog = eventlog
    app.state.record_keeper = record_keeper
    app.state.recovery = recovery
    app.state.recordings = recording_service
    app.state.webhooks = webhook_worker
    app.state.ice_policy = ice_policy
    app.state.nodes = nodes
    app.state.placement = placement
    app.state.room_states = room_states if room_states.clustered else None
    app.state.metrics = collector
    app.state.hls_watchers = hls_watchers
    webhook_worker.attempts = collector.webhook_attempts
    errors.install(app)
    # first of every route's dependencies: an integer parameter the database cannot hold is a 422
    app.include_router(api_router, prefix="/api/v1", dependencies=[Depends(refuse_oversized_integers)])
    # The lesson WebSocket (full path /api/v1/lessons/{id}/ws); before the web mount at "/",
    # which would otherwise catch the upgrade request.
    app.include_router(signaling_router)
    # A famous-school lesson's stream behind its signed prefix (/hls/<lesson>/<expires>/<sig>/...), at the
    # root so that nginx can serve the same paths from the files (docs/operations.md).
    app.include_router(hls.files_router)
    rooms = attach_rooms(app)
    app_state["rooms"] = rooms
    eventlog.is_local = lambda instance_id: rooms.get(instance_id) is not None
    bus.subscribe(MEDIA_TOPIC, eventlog.on_media_event)
    bus.subscribe(LESSON_TOPIC, record_keeper.on_lesson_event)  # after the rooms: their last leaves are logged
    bus.subscribe(LESSON_TOPIC, recording_service.on_lesson_event)  # after the record keeper: links its record
    bus.subscribe(LESSON_TOPIC, placement.on_event)  # a closed room's lease is given up
    placement.on_lost = rooms.move_out  # a lease lost (or perhaps lapsed): its room stops here
    rooms.on_moved = lambda side: collector.failovers.labels(side=side).inc()
    if room_states.clustered:
        rooms.on_change = room_states.changed  # what must survive this node, kept in Redis
        bus.subscribe(LESSON_TOPIC, room_states.on_event)  # a closed room's snapshot is deleted

    async def drain() -> None:
        """SIGTERM: no new rooms; lessons go on to their end, or move after SANKE_DRAIN_TIMEOUT_S."""
        await handover.drain(nodes, placement, rooms, room_states if room_states.clustered else None,
                             timeout_s=settings.drain_timeout_s)

    app.state.drain = drain

    @app.get("/healthz", tags=["health"])
    def healthz() -> JSONResponse:
        """200 while the database answers (``status`` ``ok``, or ``degraded`` when this node lost Redis:
        its lessons go on but it takes no new rooms); 503 when the database does not."""
        node = nodes.health()
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - report, don't crash
            return JSONResponse({"status": "error", "database": str(exc.__class__.__name__), **node}, 503)
        status = "ok" if nodes.healthy else "degraded"
        return JSONResponse({"status": status, "database": engine.dialect.name, **node})

    token = settings.metrics_token.get_secret_value() if settings.metrics_token is not None else None
    metrics.install(app, collector, token or None)

    apidocs.install(app)  # /docs; web/favicon.ico answers /favicon.ico through the web mount
    if WEB_DIR.is_dir():
        app.mount("/", StaticFiles(directory=WEB_DIR, html=True), name="web")
    return app
