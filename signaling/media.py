"""The SFU behind a lesson room: signaling's side of the media plane.

``LessonMedia`` implements the room's ``RoomMedia`` hooks.  It decides *what*
flows (who may publish which source, who receives what, which classroom is on
stage, which track is muted by the teacher) and asks the lesson's media worker,
by id-only requests over the worker channel, to make it so.  The worker decides
*how* (transports, producers, consumers, RTP).

Roles, enforced here and not only by the page:

- main classroom: publishes camera, microphone, screen; may receive anything;
- receiving classroom: publishes camera + microphone (listen-only: nothing);
  receives the main classroom's tracks and the on-stage slot;
- home student: receives like a receiving classroom; publishes only while on stage
  (its producers are paused the moment it leaves the stage);
- observer: receives only, never listed, never publishes; the lowest simulcast layer unless its
  subscription names a higher ``layer`` (the patrol's full view of one lesson asks ``high``, its
  wall of many stays ``low``): the named layer is then the highest it gets.

Dynacast: a simulcast camera's layers that no subscription can get are paused at the publisher
(``layers_wanted``, sent whenever the set changes): a classroom watched only by the patrol wall
sends its low layer alone.  The main classroom's camera sends all of them while its lesson is
recorded.

The on-stage slot is the pseudo participant ``"stage"`` in a subscription: its
consumers are re-pointed to whoever is on stage, so a receiving classroom's
"stage" tile switches without renegotiation and without a decoding glitch.

Requests for one room run one after the other (a small queue), so an ``offer``
and the ``update_subscriptions`` that follows it are applied in the order sent.

Media that comes back by itself:

- the lesson's worker died (``worker_died`` from the pool): every participant is sent
  ``media_restart`` at once (its connections are gone), the router is made again on whichever
  worker is up (the replacement, or another), every subscriber gets a fresh ``offer`` on a new
  connection and every publisher publishes again; a recorded lesson goes on in new files of the
  same recording.  The gap (death → every connection that had been up is up again) goes to the
  session event log (``media_gap``), which the teaching record shows;
- a connection the worker sees end (ICE failed, consent expired, DTLS closed: the transport's
  state ``failed``/``closed`` without signaling having closed it) is closed and rebuilt the same
  way, for that participant and that connection only;
- a client whose connection failed (or stayed disconnected) sends ``media_restart`` itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from media.channel import ChannelError
from signaling.messages import (
    Answer,
    ClientMessage,
    ErrorCode,
    IceCandidate,
    LayersWanted,
    LessonRole,
    LinkQualityReport,
    MediaRestart,
    MediaRestartReason,
    Offer,
    PeerTarget,
    Publication,
    Publish,
    ServerAnswer,
    ServerMediaRestart,
    ServerOffer,
    Subscription,
    TrackSource,
    Unpublish,
    UpdateSubscriptions,
    VideoLayer,
    allowed,
)

if TYPE_CHECKING:
    from media.pool import WorkerPool
    from signaling.room import Participant, Room, RoomSnapshot

log = logging.getLogger(__name__)

STAGE = "stage"
"""The on-stage slot in a subscription's ``participant_id``."""
KIND = {TrackSource.camera: "video", TrackSource.screen: "video", TrackSource.microphone: "audio"}
LAYER_INDEX = {VideoLayer.low: 0, VideoLayer.medium: 1, VideoLayer.high: 2}
RECORDED_SOURCES = ("camera", "screen", "microphone")
"""The main classroom's tracks a recorded lesson keeps."""
MEDIA_TOPIC = "media"
"""Bus topic of link-quality samples (for the online-teaching records)."""

_ERRORS = {"bad_sdp": ErrorCode.bad_sdp, "bad_candidate": ErrorCode.bad_candidate, "not_allowed": ErrorCode.not_allowed,
           "seats_full": ErrorCode.seats_full}
SEATS_FULL_ZH = "本节课的实时观看席位已满：有人离开后自动为你接通画面和声音，举手和聊天照常可用"
_REFUSED = {ErrorCode.bad_sdp: "SDP 无法应用，请重新协商", ErrorCode.bad_candidate: "ICE 候选地址无法使用",
            ErrorCode.seats_full: SEATS_FULL_ZH}
"""The zh-CN text of a refused media request by code; any other: the media service is unavailable."""

WORKER_WAIT_S = 20.0
"""How long a lesson whose worker died waits for a worker to take its media again."""
WORKER_POLL_S = 0.05
GAP_WAIT_S = 30.0
"""A media gap ends when every connection that was up before is up again, or after this long."""
RESTART_INTERVAL_S = 2.0
"""A client may ask to rebuild one of its connections (``media_restart``) at most this often."""
TARGET_DIRECTION = {PeerTarget.publisher: "send", PeerTarget.subscriber: "recv"}
DIRECTION_TARGET = {"send": PeerTarget.publisher, "recv": PeerTarget.subscriber}
ENDED_STATES = ("failed", "closed")
"""Transport states that mean a connection is over unless signaling closed it itself."""
ENDED_GRACE_S = 0.3
"""A connection that ended is rebuilt after this long, unless its participant left meanwhile."""


@dataclass(frozen=True)
class _Sfu:
    """The event log's subject of an event of the lesson's media as a whole (not of one participant)."""

    participant_id: str = "sfu"
    user_id: int | None = None
    classroom_id: int | None = None
    role: str = "sfu"


@dataclass
class _Gap:
    """The lesson's media is down for everyone since ``started`` (``time.monotonic``)."""

    reason: str
    started: float
    waiting: set[tuple[str, str]] = field(default_factory=set)
    """(participant id, direction) of the connections that were up and are not yet again."""
    users: set[int] = field(default_factory=set)
    """After the room moved from another node: the users it had whose subscriber connection is not up here yet."""
    timer: asyncio.TimerHandle | None = None


@dataclass
class _Turn:
    """A participant speaking (``media.speech``) since ``started`` (``time.monotonic``)."""

    subject: Participant
    started: float


TURN_CHUNK_S = 30.0
"""A turn longer than this is written in pieces (a crash loses at most the piece under way)."""
SPEECH_LAG_S = 1.0
"""The worker judges a second once it has passed: a turn began, or ended, this long before it is told."""


@dataclass
class _Job:
    fn: Callable[[], Awaitable[None]]
    p: Participant | None = None
    rid: str | None = None
    negotiation: bool = False
    """Applies an SDP or candidate of a connection: meaningless once the worker that had it died."""


def producer_id(participant_id: str, source: TrackSource | str) -> str:
    return f"{participant_id}:{TrackSource(source).value}"


class LessonMedia:
    """The media of one room (one Router on one worker)."""

    def __init__(self, instance_id: int, service: MediaService) -> None:
        self.instance_id = instance_id
        self.router_id = f"lesson-{instance_id}"
        self.service = service
        self.room: Room | None = None
        self._queue: deque[_Job] = deque()
        self._runner: asyncio.Task[None] | None = None
        self._router_created = False
        self.closed = False
        self.announced: dict[str, dict[TrackSource, Publish]] = {}
        """Per participant: the tracks it announced with ``publish`` (applied at its next ``offer``)."""
        self.subscriptions: dict[str, list[Subscription]] = {}
        self.transports: dict[str, dict[str, str]] = {}
        """Per participant: direction (``send``/``recv``) → transport id."""
        self._transport_seq = 0
        self.samples: dict[str, dict[str, dict[str, Any]]] = {}
        """Per participant: direction → the last link sample from the worker."""
        self.layers_sent: dict[str, list[str]] = {}
        """Per producer id: the rids last sent to its publisher in ``layers_wanted`` (dynacast)."""
        self.recording: dict[str, Any] | None = None
        """``{id, directory, hls}`` once the lesson's recording started (``MediaService.recordings``); ``hls``:
        the recording is also the lesson's LL-HLS stream (``media.hls``, in ``directory``/hls)."""
        self.hls_refused: dict[str, str] = {}
        self.turns: dict[str, _Turn] = {}
        """Microphone producer id → the turn its participant is speaking (``on_speech``)."""
        self.seatless: set[str] = set()
        """Home students refused a WebRTC seat (``seats_full``) until one is free."""
        """Source → why the media worker streams it by no HLS (a VP8 camera or screen), zh-CN."""
        self._not_recorded = False
        self.gap: _Gap | None = None
        """Set while the lesson's media is down for everyone (its worker died)."""
        self._restarted_at: dict[tuple[str, str], float] = {}
        """(participant id, direction) → when the client last asked to rebuild that connection."""
        self.transport_router: dict[str, str] = {}
        """Transport id → the router it lives on (the lesson's own, or one of ``spans``)."""
        self.spans: dict[str, str] = {}
        """A lesson bigger than one worker: router id on another worker → the pipe id that feeds it
        from the lesson's own router (``media.pipe``)."""
        self.producer_ids: set[str] = set()
        """The producers on the lesson's own router (what every span gets piped)."""
        self._spanning: dict[str, asyncio.Future[None]] = {}
        """Spans being made (router id → done when made, or failed)."""

    # ------------------------------------------------------------------ running requests in order

    def _enqueue(self, fn: Callable[[], Awaitable[None]], p: Participant | None = None, rid: str | None = None,
                 *, negotiation: bool = False) -> None:
        if self.closed:
            return
        self._queue.append(_Job(fn, p, rid, negotiation))
        self._run()

    def _run(self) -> None:
        if self._runner is None or self._runner.done():
            self._runner = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while self._queue:
            job = self._queue.popleft()
            p, rid = job.p, job.rid
            try:
                await job.fn()
            except ChannelError as exc:
                log.info("lesson %s: media request refused: %s %s", self.instance_id, exc.code, exc)
                if p is not None and self.room is not None:
                    code = _ERRORS.get(exc.code, ErrorCode.internal)
                    message = _REFUSED.get(code, "媒体服务暂时不可用，请稍后重试")
                    self.room.error(p, code, message, rid)
            except Exception:
                log.exception("lesson %s: media request failed", self.instance_id)
                if p is not None and self.room is not None:
                    self.room.error(p, ErrorCode.internal, "媒体服务内部错误，操作未执行", rid)

    async def _request(self, method: str, params: dict[str, Any], router_id: str | None = None) -> dict[str, Any]:
        if not self._router_created:
            await self.service.pool.request(self.router_id, "router.create", {"router_id": self.router_id})
            self._router_created = True
        router_id = router_id or self.router_id
        return await self.service.pool.request(router_id, method, {"router_id": router_id, **params})

    async def _at(self, tid: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """A request about transport ``tid``, sent to the router it lives on."""
        return await self._request(method, {"transport_id": tid, **params}, self.transport_router.get(tid))

    async def _transport(self, p: Participant, direction: str) -> str:
        own = self.transports.setdefault(p.participant_id, {})
        tid = own.get(direction)
        if tid is None:
            self._transport_seq += 1
            tid = f"{p.participant_id}-{direction}-{self._transport_seq}"
            router_id = await self._place(p, tid) if direction == "recv" else self.router_id
            await self._request("transport.create", {"transport_id": tid, "participant_id": p.participant_id,
                                                     "direction": direction}, router_id)
            own[direction] = tid
            self.transport_router[tid] = router_id
            self.service.transport_owner[tid] = (self, p.participant_id)
        return tid

    async def _close_transport(self, tid: str) -> None:
        self.service.transport_owner.pop(tid, None)
        router_id = self.transport_router.pop(tid, None) or self.router_id
        self._note(router_id, tid, 0)
        try:
            await self._request("transport.close", {"transport_id": tid}, router_id)
        except ChannelError:
            pass

    async def _close_transports(self, pid: str) -> None:
        for direction, tid in (self.transports.pop(pid, None) or {}).items():
            await self._close_transport(tid)
            if direction == "send":
                await self._unpipe(pid)

    # ------------------------------------------------------------------ a lesson bigger than one worker

    async def _place(self, p: Participant, tid: str) -> str:
        """The router a new subscriber connection goes on: the lesson's own while its worker has headroom
        for the consumers (``MediaService.consumer_limit``), else a worker with headroom, this node's before
        another node's (``WorkerPool.add_remote``; theirs by what their node advertises free in the registry,
        ``WorkerPool.headroom``), preferring one that already serves the lesson (fed from the lesson's own
        router by a pipe), then the one with the most headroom. The consumers are counted on the chosen worker at once, so
        subscribers placed together (a recovery, a burst of joins) see each other."""
        pool = self.service.pool
        limit = self.service.consumer_limit
        if limit is None:
            return self.router_id
        home = pool.worker_for(self.router_id)
        workers = pool.live_workers()
        need = max(1, len(self._consumer_specs(p)))
        if home.consumer_count + need <= limit:
            home.consumers[(self.router_id, tid)] = need
            return self.router_id
        spanned = {self._span_index(r) for r in self.spans}

        def room_on(h: Any) -> int:
            # another node's workers: what that node advertised free (the registry) when it did, else one worker's
            advertised = pool.headroom(h)
            return limit - h.consumer_count if advertised is None else advertised

        fits = [h for h in workers if h is not home and room_on(h) >= need]
        if not fits and self._seats_capped(p):
            raise ChannelError("seats_full", SEATS_FULL_ZH)
        if len(workers) < 2:
            home.consumers[(self.router_id, tid)] = need
            return self.router_id
        if fits:  # this node's workers before another node's, one the lesson spans already before a new one,
            # then the one with the most headroom
            best = min(fits, key=lambda h: (h.remote is not None, h.index not in spanned, -room_on(h), h.index))
        else:  # every worker is full: the least loaded takes it (on a tie not the lesson's own: it takes the uplinks)
            best = min(workers, key=lambda h: (h.consumer_count, h is home, h.index))
        if best is home:
            home.consumers[(self.router_id, tid)] = need
            return self.router_id
        key = (f"{self.router_id}@{best.index}", tid)
        best.consumers[key] = need
        try:
            return await self._span(best.index)
        except BaseException:
            best.consumers.pop(key, None)
            raise

    def _seats_capped(self, p: Participant) -> bool:
        """The home students of a 名校网络课堂 whose live stream was refused (its main classroom sends VP8,
        ``stream_refused``) are an audience that should have watched the stream and now needs WebRTC seats: when
        every worker is full, such a student gets none (``seats_full``), so the node's forwarding stays within
        what its workers carry and the classrooms keep theirs.  Everyone else — the classrooms, observers, a
        student on stage, the students of any other lesson — is placed on the least loaded worker as always."""
        room = self.room
        return (p.role is LessonRole.student and room is not None and room.on_stage != p.participant_id
                and TrackSource.camera.value in room.stream_refusals())

    def _note(self, router_id: str, tid: str, count: int) -> None:
        """The worker of ``router_id`` carries ``count`` consumers on ``tid`` now (placement's headroom)."""
        if self.service.consumer_limit is not None:
            self.service.pool.note_consumers(router_id, tid, count)

    @staticmethod
    def _span_index(router_id: str) -> int:
        return int(router_id.rsplit("@", 1)[1])

    async def _span(self, index: int) -> str:
        """The lesson's router on worker ``index``, made and piped from the lesson's own router if new."""
        router_id = f"{self.router_id}@{index}"
        if router_id in self.spans:
            return router_id
        making = self._spanning.get(router_id)
        if making is not None:  # another subscriber's placement is making it: wait for that
            await asyncio.shield(making)
            if router_id not in self.spans:
                raise ChannelError("no_worker", f"the lesson's router on worker {index} could not be made")
            return router_id
        self._spanning[router_id] = asyncio.get_running_loop().create_future()
        try:
            await self._make_span(router_id, index)
        finally:
            future = self._spanning.pop(router_id)
            future.set_result(None)
        return router_id

    async def _make_span(self, router_id: str, index: int) -> None:
        pool = self.service.pool
        pool.place(router_id, index)
        self.service.rooms[router_id] = self
        pipe_id = f"pipe-{self.instance_id}-{index}"
        host = self.service.pipe_host
        try:
            await self._request("router.create", {}, router_id)
            here = await self._request("pipe.create", {"pipe_id": pipe_id, "host": host})
            there = await self._request("pipe.create", {"pipe_id": pipe_id, "host": host}, router_id)
            await self._request("pipe.connect", {"pipe_id": pipe_id, "host": there["host"], "port": there["port"],
                                                 "key": there["key"]})
            await self._request("pipe.connect", {"pipe_id": pipe_id, "host": here["host"], "port": here["port"],
                                                 "key": here["key"]}, router_id)
        except BaseException:
            pool.release(router_id)
            self.service.rooms.pop(router_id, None)
            raise
        self.spans[router_id] = pipe_id
        log.info("lesson %s: spans worker %d too (router %s, pipe %s)", self.instance_id, index, router_id, pipe_id)
        await self._pipe(sorted(self.producer_ids), [router_id])

    async def _pipe(self, producer_ids: list[str], routers: list[str] | None = None) -> None:
        """Pipe these producers of the lesson's own router to its other routers (all, or ``routers``)."""
        if not producer_ids:
            return
        for router_id in routers if routers is not None else list(self.spans):
            pipe_id = self.spans.get(router_id)
            if pipe_id is None:
                continue
            described = await self._request("pipe.consume", {"pipe_id": pipe_id, "producer_ids": producer_ids})
            if described.get("producers"):
                await self._request("pipe.produce", {"pipe_id": pipe_id, "producers": described["producers"]},
                                    router_id)

    async def _unpipe(self, pid: str) -> None:
        """``pid`` no longer publishes (its connection closed): its pipe producers go too."""
        gone = [x for x in self.producer_ids if x.split(":", 1)[0] == pid]
        if not gone:
            return
        self.producer_ids.difference_update(gone)
        for router_id, pipe_id in list(self.spans.items()):
            try:
                await self._request("pipe.close_producers", {"pipe_id": pipe_id, "producer_ids": gone})
                await self._request("pipe.close_producers", {"pipe_id": pipe_id, "producer_ids": gone}, router_id)
            except ChannelError:
                pass

    async def _close_spans(self) -> None:
        """Close the lesson's routers on other workers (the room closed, or its own worker died)."""
        pool = self.service.pool
        for router_id, pipe_id in list(self.spans.items()):
            del self.spans[router_id]
            for key in [t for t, r in self.transport_router.items() if r == router_id]:
                del self.transport_router[key]
            try:
                await pool.request(router_id, "router.close", {"router_id": router_id})
            except ChannelError:
                pass
            pool.release(router_id)
            self.service.rooms.pop(router_id, None)

    # ------------------------------------------------------------------ hooks

    def on_message(self, room: Room, p: Participant, msg: ClientMessage) -> None:
        self.room = room
        rid = msg.request_id
        if isinstance(msg, Publish):
            # a muted source may be published: its producer starts paused (see ``_publish``)
            self.announced.setdefault(p.participant_id, {})[msg.source] = msg
            room.ack(p, rid)
        elif isinstance(msg, Unpublish):
            self.announced.get(p.participant_id, {}).pop(msg.source, None)
            if p.publications.pop(msg.source, None) is not None:
                room.updated(p)
            pid = producer_id(p.participant_id, msg.source)
            self._enqueue(lambda: self._pause(pid, True), p, rid)
            room.ack(p, rid)
        elif isinstance(msg, Offer):
            self._enqueue(lambda: self._publish(p, msg.sdp, rid), p, rid, negotiation=True)
        elif isinstance(msg, Answer):
            self._enqueue(lambda: self._answer(p, msg.sdp, rid), p, rid, negotiation=True)
        elif isinstance(msg, MediaRestart):
            now = time.monotonic()
            directions = sorted({TARGET_DIRECTION[t] for t in msg.targets})
            if any(now - self._restarted_at.get((p.participant_id, d), -1e9) < RESTART_INTERVAL_S
                   for d in directions):
                room.error(p, ErrorCode.rate_limited, "媒体重连过于频繁，请稍后再试", rid)
                return
            for d in directions:
                self._restarted_at[(p.participant_id, d)] = now
            self._enqueue(lambda: self._rebuild(p, directions, None), p, rid)
            room.ack(p, rid)
        elif isinstance(msg, UpdateSubscriptions):
            refused = self._check_subscriptions(room, p, msg.subscriptions)
            if refused:
                room.error(p, ErrorCode.not_allowed, refused, rid)
                return
            self.subscriptions[p.participant_id] = list(msg.subscriptions)
            self._enqueue(lambda: self._sync_consumers(p), p, rid)
            room.ack(p, rid)
        elif isinstance(msg, IceCandidate):
            # The server's SDP carries all its candidates; a client that trickles sends its own here.
            if msg.candidate is None:
                room.ack(p, rid)
                return
            target = "send" if msg.target is PeerTarget.publisher else "recv"
            self._enqueue(lambda: self._candidate(p, target, msg), p, rid, negotiation=True)

    def on_joined(self, room: Room, p: Participant) -> None:
        self.room = room

    def on_restored(self, room: Room, snap: RoomSnapshot) -> None:
        """The room was opened here from the snapshot its previous node left (that node died, lost
        Redis or drained): the lesson's media have been down since that node's last sign of life
        (``snap.down_s`` ago) and are back when every user it had has a subscriber connection up
        here again (or after ``GAP_WAIT_S``): one ``media_gap`` in the event log."""
        self.room = room
        hooks = self.service.recordings
        if hooks is not None and snap.reason == "node_failover" and snap.node is not None:
            # the dead owner's recording of the lesson ends with what its files held; this node's follows
            self.service.background(hooks.take_over(self.instance_id, snap.node))
        if not snap.users:
            return
        gap = self.gap = _Gap(reason=snap.reason, started=time.monotonic() - max(0.0, snap.down_s),
                              users=set(snap.users))
        gap.timer = asyncio.get_running_loop().call_later(GAP_WAIT_S, self._end_gap)

    def on_left(self, room: Room, p: Participant) -> None:
        self.room = room
        pid = p.participant_id
        self.announced.pop(pid, None)
        self.subscriptions.pop(pid, None)
        self.samples.pop(pid, None)
        self.seatless.discard(pid)
        self._end_turns(pid)
        for key in [k for k in self._restarted_at if k[0] == pid]:
            del self._restarted_at[key]
        if self.gap is not None:  # nobody waits for the connections of someone who left
            self.gap.waiting = {w for w in self.gap.waiting if w[0] != pid}
            self.gap.users.discard(p.user_id)
            self._gap_check()

        async def left() -> None:
            await self._close_transports(pid)
            await self._sync_all()
            self._dynacast()

        self._enqueue(left)

    def on_resumed(self, room: Room, p: Participant, keep_media: bool) -> None:
        self.room = room
        if keep_media:
            return

        async def restart() -> None:
            # The page was reloaded: its peer connections are gone. New transports, the same
            # subscriptions (offered again at once); the client publishes again itself.
            await self._close_transports(p.participant_id)
            if p.publications:
                p.publications.clear()
                room.updated(p)
            await self._sync_consumers(p)

        self._enqueue(restart, p)

    def on_stage_changed(self, room: Room, previous: Participant | None, current: Participant | None) -> None:
        self.room = room

        async def stage() -> None:
            if previous is not None and previous.role is LessonRole.student:
                for source in (TrackSource.camera, TrackSource.microphone):
                    await self._pause(producer_id(previous.participant_id, source), True)
            if current is not None:
                for source in (TrackSource.camera, TrackSource.microphone):
                    await self._pause(producer_id(current.participant_id, source), current.effective_muted(source))
            await self._sync_all()

        self._enqueue(stage)

    def on_mute_changed(self, room: Room, p: Participant, source: TrackSource, muted: bool) -> None:
        self.room = room
        pid = producer_id(p.participant_id, source)
        self._enqueue(lambda: self._pause(pid, muted or not self._may_send(p, source)))

    def on_closed(self, room: Room) -> None:
        self.room = room
        self._end_turns()

        async def close() -> None:
            self.closed = True
            self._end_gap()
            await self._stop_recording()
            for pid in list(self.transports):
                for tid in self.transports.pop(pid).values():
                    self.service.transport_owner.pop(tid, None)
            await self._close_spans()
            if self._router_created:
                try:
                    await self.service.pool.request(self.router_id, "router.close", {"router_id": self.router_id})
                except ChannelError:
                    pass
            self.service.pool.release(self.router_id)
            self.service.rooms.pop(self.router_id, None)

        self._queue.append(_Job(close))
        self._run()

    # ------------------------------------------------------------------ media that comes back by itself

    def worker_lost(self, router_id: str | None = None) -> None:
        """The worker hosting this lesson died: its transports, producers and consumers are gone.

        Everyone is told at once (``media_restart``); the router is made again on a live worker
        and everyone's media renegotiated there (``_recover``), ahead of anything queued.
        A worker that hosted only one of the lesson's other routers (``spans``) costs only the
        subscriber connections placed there: they are placed and offered again."""
        if self.closed:
            return
        if router_id is not None and router_id in self.spans:
            self._span_lost(router_id)
            return
        room = self.room
        had = {pid: set(own) for pid, own in self.transports.items() if own}
        log.error("lesson %s: its media worker died; restoring the media of %d participant(s)",
                  self.instance_id, len(had))
        self._router_created = False
        for own in self.transports.values():
            for tid in own.values():
                self.service.transport_owner.pop(tid, None)
        self.transports.clear()
        self.transport_router.clear()
        self.producer_ids.clear()
        self.samples.clear()
        self.layers_sent.clear()
        # SDP and candidates queued for the dead connections are answered, not applied to new ones
        kept: deque[_Job] = deque()
        for job in self._queue:
            if job.negotiation:
                if job.p is not None and room is not None:
                    room.error(job.p, ErrorCode.internal, "媒体服务已重启，正在重新连接", job.rid)
            else:
                kept.append(job)
        self._queue = kept
        if self.gap is None:
            self.gap = _Gap(reason=MediaRestartReason.worker_restarted.value, started=time.monotonic())
        # the gap lasts until what carried media is back: subscriber connections, and the publisher
        # connections of those who published something
        for pid, dirs in had.items():
            q = room.participants.get(pid) if room is not None else None
            if q is None:
                continue
            if "recv" in dirs:
                self.gap.waiting.add((pid, "recv"))
            if "send" in dirs and q.publications:
                self.gap.waiting.add((pid, "send"))
        if self.gap.timer is None:
            self.gap.timer = asyncio.get_running_loop().call_later(GAP_WAIT_S, self._end_gap)
        if room is not None:
            for pid, dirs in had.items():
                q = room.participants.get(pid)
                if q is not None:
                    q.send(ServerMediaRestart(targets=[DIRECTION_TARGET[d] for d in sorted(dirs)],
                                              reason=MediaRestartReason.worker_restarted))
        self._queue.appendleft(_Job(self._recover))
        self._run()

    async def _recover(self) -> None:
        """Make the router again on a live worker; offer every subscriber its tracks on a new connection.
        (Publishers publish again themselves, told by ``media_restart``.)"""
        await self._close_spans()  # their pipes came from the dead router: placed and piped again as needed
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WORKER_WAIT_S
        while True:
            try:
                self.service.pool.worker_for(self.router_id)
                break
            except ChannelError:
                if loop.time() > deadline:
                    log.error("lesson %s: no media worker within %.0f s; its media stays down",
                              self.instance_id, WORKER_WAIT_S)
                    return
                await asyncio.sleep(WORKER_POLL_S)
        await self._request("router.dump", {})  # creates the router on its new worker
        room = self.room
        if room is not None:  # every subscriber's new connection at once (the worker serves them concurrently)
            await asyncio.gather(*(self._sync_consumers(q) for q in list(room.participants.values())
                                   if q.participant_id in self.subscriptions))

    def _span_lost(self, router_id: str) -> None:
        """One of the lesson's other routers died with its worker: its subscribers are placed again."""
        pipe_id = self.spans.pop(router_id)
        self.service.pool.release(router_id)
        self.service.rooms.pop(router_id, None)
        lost: list[str] = []
        for pid, own in list(self.transports.items()):
            tid = own.get("recv")
            if tid is not None and self.transport_router.get(tid) == router_id:
                del own["recv"]
                if not own:
                    del self.transports[pid]
                self.transport_router.pop(tid, None)
                self.service.transport_owner.pop(tid, None)
                self.samples.get(pid, {}).pop("recv", None)
                lost.append(pid)
        log.error("lesson %s: the worker of its router %s died; placing %d subscriber(s) again",
                  self.instance_id, router_id, len(lost))

        async def again() -> None:
            try:
                await self._request("pipe.close", {"pipe_id": pipe_id})
            except ChannelError:
                pass
            room = self.room
            for pid in lost:
                q = room.participants.get(pid) if room is not None else None
                if q is not None:
                    q.send(ServerMediaRestart(targets=[PeerTarget.subscriber],
                                              reason=MediaRestartReason.worker_restarted))
                    await self._sync_consumers(q)

        self._queue.appendleft(_Job(again))
        self._run()

    async def _rebuild(self, p: Participant, directions: list[str], reason: MediaRestartReason | None) -> None:
        """Close ``p``'s connections in ``directions`` and build them again: tell the client (``reason``:
        the server decided; None: the client asked), then offer its subscriptions on a new connection."""
        room = self.room
        if room is None or room.participants.get(p.participant_id) is not p:
            return
        for direction in directions:
            await self._drop(p, direction)
        if reason is not None:
            p.send(ServerMediaRestart(targets=[DIRECTION_TARGET[d] for d in directions], reason=reason))
        if "recv" in directions:
            await self._sync_consumers(p)

    def on_speech(self, speaking: list[str]) -> None:
        """The microphones speaking now (the lesson's router, each second it changed, ``media.speech``): each
        participant's turns go to the event log as ``speech`` events, ``data`` ``{"s": seconds, "ago":
        seconds}`` — the turn lasted ``s`` and ended ``ago`` before the event's time.  Only levels and times
        are kept, never audio."""
        room = self.room
        if room is None or self.closed:
            return
        now = time.monotonic()
        current = {pid for pid in speaking if pid.endswith(f":{TrackSource.microphone.value}")}
        for pid, turn in list(self.turns.items()):
            if pid not in current:
                self._end_turn(pid, now - SPEECH_LAG_S, SPEECH_LAG_S)
            elif now - turn.started >= TURN_CHUNK_S:  # a long turn: this piece now, the next goes on
                self._end_turn(pid, now, 0.0)
                self.turns[pid] = _Turn(turn.subject, now)
        for pid in current - set(self.turns):
            p = room.participants.get(pid.rsplit(":", 1)[0])
            if p is not None:
                self.turns[pid] = _Turn(p, now - SPEECH_LAG_S)

    def _end_turn(self, pid: str, ended: float, ago: float) -> None:
        turn = self.turns.pop(pid, None)
        journal = self.room.journal if self.room is not None else None
        seconds = round(ended - turn.started, 1) if turn is not None else 0.0
        if turn is None or journal is None or seconds <= 0:
            return
        try:
            journal.record(self.instance_id, "speech", turn.subject, {"s": seconds, "ago": round(ago, 1)})
        except Exception:
            log.exception("lesson %s: logging a turn of speech failed", self.instance_id)

    def _end_turns(self, participant_id: str | None = None) -> None:
        """End the turns under way (of one participant, or all: the room closes)."""
        now = time.monotonic()
        for pid, turn in list(self.turns.items()):
            if participant_id is None or turn.subject.participant_id == participant_id:
                self._end_turn(pid, now, 0.0)

    def on_offer(self, pid: str, offer: dict[str, Any]) -> None:
        """An offer the router made itself (a consumer negotiated with another codec than its producer sends,
        ``media.router.Router._recodec``): to the subscriber, if it is still here on that transport."""
        p = self.room.participants.get(pid) if self.room is not None and not self.closed else None
        if p is not None and self.transports.get(pid, {}).get("recv") == offer.get("transport_id"):
            self._send_offer(p, offer)

    def on_transport_state(self, pid: str, transport_id: str, state: str) -> None:
        """A transport's connection state (from its worker)."""
        own = self.transports.get(pid, {})
        direction = next((d for d, tid in own.items() if tid == transport_id), None)
        if direction is None or self.closed:
            return  # closed by us meanwhile (left, rebuilt): nothing to do
        if state == "connected":
            if self.gap is not None:
                self.gap.waiting.discard((pid, direction))
                p = self.room.participants.get(pid) if self.room is not None else None
                if p is not None and direction == "recv":
                    self.gap.users.discard(p.user_id)
                self._gap_check()
            return
        if state not in ENDED_STATES:
            return
        room = self.room
        p = room.participants.get(pid) if room is not None else None
        if p is None:
            return

        async def rebuild() -> None:
            if self.transports.get(pid, {}).get(direction) != transport_id or self.room is None \
                    or self.room.participants.get(pid) is not p:
                return  # rebuilt, closed or left meanwhile
            log.warning("lesson %s: %s's %s connection %s; rebuilding it", self.instance_id, pid, direction, state)
            if p.connected:
                await self._rebuild(p, [direction], MediaRestartReason.connection_lost)
            else:  # its socket is away too: its resume rebuilds what it needs
                await self._drop(p, direction)

        # a leaving client closes its connections just before its ``leave`` arrives: give it a moment
        asyncio.get_running_loop().call_later(ENDED_GRACE_S, self._enqueue, rebuild)

    async def _drop(self, p: Participant, direction: str) -> None:
        """Close ``p``'s connection in ``direction`` (if it has one) and forget it."""
        own = self.transports.get(p.participant_id, {})
        tid = own.pop(direction, None)
        if not own:
            self.transports.pop(p.participant_id, None)
        if tid is None:
            return
        self.samples.get(p.participant_id, {}).pop(direction, None)
        if direction == "send":
            for source in TrackSource:
                self.layers_sent.pop(producer_id(p.participant_id, source), None)
        await self._close_transport(tid)

    def _gap_check(self) -> None:
        gap = self.gap
        if gap is not None and not gap.waiting and not gap.users and self._router_created:
            self._end_gap()

    def _end_gap(self) -> None:
        """The gap is over (or given up on): write it to the session event log."""
        gap, self.gap = self.gap, None
        if gap is None:
            return
        if gap.timer is not None:
            gap.timer.cancel()
        seconds = round(time.monotonic() - gap.started, 1)
        restored = not gap.waiting and self._router_created
        log.warning("lesson %s: media back after %.1f s%s", self.instance_id, seconds,
                    "" if restored else f" (not restored: {sorted(gap.waiting)})")
        journal = self.room.journal if self.room is not None else None
        if journal is None:
            return
        try:
            journal.record(self.instance_id, "media_gap", _Sfu(),  # type: ignore[arg-type]
                           {"gap_s": seconds, "reason": gap.reason, "restored": restored})
        except Exception:
            log.exception("lesson %s: logging the media gap failed", self.instance_id)

    # ------------------------------------------------------------------ publishing

    def _may_send(self, p: Participant, source: TrackSource) -> bool:
        return allowed(p.role, Publish(source=source, track_id="x"), p.on_stage, p.listen_only) is None

    async def _publish(self, p: Participant, sdp: str, rid: str | None) -> None:
        if self.room is None or self.room.participants.get(p.participant_id) is not p:
            return
        tid = await self._transport(p, "send")
        announced = self.announced.get(p.participant_id, {})
        publications = [
            {"producer_id": producer_id(p.participant_id, source), "source": source.value, "mid": pub.mid,
             "track_id": pub.track_id,
             "simulcast": [layer.model_dump(mode="json") for layer in pub.simulcast or []]}
            for source, pub in announced.items()
            if self._may_send(p, source)  # a student who left the stage meanwhile sends nothing
        ]
        result = await self._at(tid, "transport.publish", {"sdp": sdp, "publications": publications})
        p.send(ServerAnswer(request_id=rid, sdp=result["sdp"]))
        now_published: dict[TrackSource, Publication] = {}
        for producer in result.get("producers", []):
            source = TrackSource(producer["source"])
            pub = announced.get(source)
            layers = [layer.layer for layer in pub.simulcast] if pub is not None and pub.simulcast else []
            now_published[source] = Publication(source=source, track_id=pub.track_id if pub else producer["mid"],
                                                muted=p.effective_muted(source), layers=layers)
            if p.effective_muted(source):
                await self._pause(producer["producer_id"], True)
        if now_published != p.publications:
            p.publications = now_published
            self.room.updated(p)
        for producer in result.get("producers", []):  # a new sender sends all its layers: tell it again
            self.layers_sent.pop(producer["producer_id"], None)
        published = [producer["producer_id"] for producer in result.get("producers", [])]
        self.producer_ids.update(published)
        await self._pipe(published)  # the lesson's other workers get them (again: a new publisher connection)
        if p.role is LessonRole.main and result.get("producers"):
            await self._record(result["producers"])
        self._dynacast()

    async def _pause(self, pid: str, paused: bool) -> None:
        if not self._router_created:
            return
        await self._request("producer.pause", {"producer_id": pid, "paused": paused})

    async def _candidate(self, p: Participant, direction: str, msg: IceCandidate) -> None:
        tid = self.transports.get(p.participant_id, {}).get(direction)
        if tid is None:
            raise ChannelError("bad_sdp", "the connection of this candidate has no description yet")
        await self._at(tid, "transport.add_candidate", {"candidate": msg.candidate,
                                                        "sdp_mid": msg.sdp_mid,
                                                        "sdp_mline_index": msg.sdp_mline_index})
        if self.room is not None:
            self.room.ack(p, msg.request_id)

    # ------------------------------------------------------------------ subscribing

    @staticmethod
    def _may_receive(room: Room, p: Participant, target: Participant) -> bool:
        """The main classroom and observers receive anyone; the others the main classroom, themselves
        and whoever is on stage."""
        return (p.role in (LessonRole.main, LessonRole.observer) or target is p
                or target.role is LessonRole.main or target.participant_id == room.on_stage)

    def _check_subscriptions(self, room: Room, p: Participant, subs: list[Subscription]) -> str | None:
        """A zh-CN refusal if ``p`` may not receive one of ``subs``, else None."""
        for sub in subs:
            target = room.participants.get(sub.participant_id) if sub.participant_id != STAGE else None
            if target is None or target.observer:
                continue  # the stage, or gone meanwhile: the subscription simply carries nothing
            if not self._may_receive(room, p, target):
                return "只能接收主讲课堂和上台课堂的音视频"
        return None

    @staticmethod
    def _observer_max_layer(sub: Subscription) -> int:
        """An observer gets the lowest layer unless it names one; the named one is its ceiling."""
        return LAYER_INDEX[sub.layer] if sub.layer is not None else 0


    def _consumer_specs(self, p: Participant) -> list[dict[str, Any]]:
        room = self.room
        specs: list[dict[str, Any]] = []
        seen: set[str] = set()
        for sub in self.subscriptions.get(p.participant_id, []):
            if sub.participant_id == STAGE:
                on_stage = room.on_stage if room is not None else None
                pid = producer_id(on_stage, sub.source) if on_stage and on_stage != p.participant_id else None
            else:
                target = room.participants.get(sub.participant_id) if room is not None else None
                if target is None or target.observer or not self._may_receive(room, p, target):
                    continue  # gone, or was on stage when subscribed and is not any more
                pid = producer_id(sub.participant_id, sub.source)
            consumer_id = f"{p.participant_id}~{sub.participant_id}~{sub.source.value}"
            if consumer_id in seen:
                continue
            seen.add(consumer_id)
            specs.append({
                "consumer_id": consumer_id, "producer_id": pid, "kind": KIND[sub.source],
                "max_layer": self._observer_max_layer(sub) if p.observer else None,
                "preferred_layer": LAYER_INDEX[sub.layer] if sub.layer is not None else None,
            })
        return specs

    async def _sync_consumers(self, p: Participant) -> None:
        if self.room is None or self.room.participants.get(p.participant_id) is not p:
            return
        specs = self._consumer_specs(p)
        if not specs and p.participant_id not in self.transports:
            return
        try:
            tid = await self._transport(p, "recv")
        except ChannelError as exc:
            if exc.code != "seats_full":
                raise
            # told once; tried again whenever the subscribers are synced (someone left: a seat may be free)
            if p.participant_id not in self.seatless and self.room is not None:
                self.seatless.add(p.participant_id)
                self.room.error(p, ErrorCode.seats_full, SEATS_FULL_ZH, None)
            return
        self.seatless.discard(p.participant_id)
        result = await self._at(tid, "transport.set_consumers", {"consumers": specs})
        self._note(self.transport_router.get(tid, self.router_id), tid, len(specs))
        if result.get("offer"):
            self._send_offer(p, result["offer"])
        self._dynacast()

    # ------------------------------------------------------------------ dynacast

    def _wanted_layers(self) -> dict[str, int]:
        """Per camera producer id: the highest layer index any subscription can get (absent: nobody)."""
        room = self.room
        wanted: dict[str, int] = {}
        if room is None:
            return wanted
        for q in room.participants.values():
            for sub in self.subscriptions.get(q.participant_id, []):
                if sub.source is not TrackSource.camera:
                    continue
                target = room.on_stage if sub.participant_id == STAGE else sub.participant_id
                if not target or target == q.participant_id:
                    continue  # the stage is empty, or it is q itself (it gets nothing of its own)
                top = self._observer_max_layer(sub) if q.observer else len(LAYER_INDEX) - 1
                pid = producer_id(target, TrackSource.camera)
                wanted[pid] = max(wanted.get(pid, 0), top)
        if self.recording is not None:  # the recording keeps the main classroom's best picture
            for q in room.participants.values():
                if q.role is LessonRole.main:
                    wanted[producer_id(q.participant_id, TrackSource.camera)] = len(LAYER_INDEX) - 1
        return wanted

    def _dynacast(self) -> None:
        """Tell each simulcast publisher which of its camera layers someone can receive (``layers_wanted``)."""
        room = self.room
        if room is None:
            return
        wanted = self._wanted_layers()
        for p in room.participants.values():
            pub = self.announced.get(p.participant_id, {}).get(TrackSource.camera)
            if pub is None or not pub.simulcast or TrackSource.camera not in p.publications:
                continue
            pid = producer_id(p.participant_id, TrackSource.camera)
            top = wanted.get(pid, 0)
            ordered = sorted(pub.simulcast, key=lambda layer: LAYER_INDEX[layer.layer])
            rids = [layer.rid for layer in ordered if LAYER_INDEX[layer.layer] <= top] or [ordered[0].rid]
            if self.layers_sent.get(pid) != rids:
                self.layers_sent[pid] = rids
                p.send(LayersWanted(source=TrackSource.camera, rids=rids))

    async def _sync_all(self) -> None:
        if self.room is None:
            return
        for q in list(self.room.participants.values()):
            if q.participant_id in self.subscriptions:
                await self._sync_consumers(q)

    async def _answer(self, p: Participant, sdp: str, rid: str | None) -> None:
        tid = self.transports.get(p.participant_id, {}).get("recv")
        if tid is None:
            raise ChannelError("bad_sdp", "no subscriber offer is waiting")
        result = await self._at(tid, "transport.answer", {"sdp": sdp})
        if self.room is not None:
            self.room.ack(p, rid)
        if result.get("offer"):
            self._send_offer(p, result["offer"])

    def _send_offer(self, p: Participant, offer: dict[str, Any]) -> None:
        tracks = []
        for t in offer.get("tracks", []):
            _, target, source = t["consumer_id"].split("~")
            tracks.append({"mid": t["mid"], "participant_id": target, "source": source})
        p.send(ServerOffer(sdp=offer["sdp"], tracks=tracks))

    # ------------------------------------------------------------------ recording (录播)

    async def _record(self, producers: list[dict[str, Any]]) -> None:
        """The main classroom published: start the lesson's recording (if it is recorded), or add its new
        tracks to it.  A failure here never fails the publish."""
        hooks = self.service.recordings
        if hooks is None or self._not_recorded:
            return
        try:
            if self.recording is None:
                self.recording = await hooks.begin(self.instance_id)
                if self.recording is None:
                    self._not_recorded = True
                    return
            ids = [pr["producer_id"] for pr in producers if pr.get("source") in RECORDED_SOURCES]
            await self._request("router.record", {"directory": self.recording["directory"], "producer_ids": ids,
                                                  "hls": bool(self.recording.get("hls"))})
        except Exception:
            log.exception("lesson %s: starting the recording failed", self.instance_id)

    def on_hls_refused(self, data: dict[str, Any]) -> None:
        """The worker cannot stream a source of the main classroom by HLS: noted, shown to every page in the
        room state (``stream_refused``: the teacher's page says why), and published on the bus topic
        ``media`` (``hls_refused``)."""
        source, reason = str(data.get("source")), str(data.get("reason"))
        self.hls_refused[source] = reason
        log.info("lesson %s: no HLS for %s: %s", self.instance_id, source, reason)
        if self.room is not None:
            self.room.stream_refused(source, reason)
        if self.service.bus is not None:
            self.service.background(self.service.bus.publish(MEDIA_TOPIC, {
                "type": "hls_refused", "instance_id": self.instance_id, "source": source,
                "codec": str(data.get("codec")), "reason": reason, "at": time.time()}))

    async def _stop_recording(self) -> None:
        recording, self.recording = self.recording, None
        hooks = self.service.recordings
        if recording is None or hooks is None:
            return
        summary: dict[str, Any] | None = None
        error = "媒体进程异常，录播中断"
        if self._router_created:
            try:
                summary = await self._request("router.record_stop", {}) or None
            except ChannelError as exc:
                error = f"录播未能正常结束：{exc}"
        await hooks.finish(int(recording["id"]), summary, error)

    # ------------------------------------------------------------------ patrol snapshots

    async def snapshot(self, source: TrackSource = TrackSource.camera) -> dict[str, Any]:
        """The newest keyframe of the main classroom's ``source`` (``producer.snapshot``), still encoded:
        ``{mime, layer, frame}`` with ``frame`` in base64. The caller decodes it (``media.snapshot``).
        Raises ``ChannelError`` (``not_found`` when the main classroom does not publish it)."""
        room = self.room
        mains = [p for p in (room.participants.values() if room is not None else ())
                 if p.role is LessonRole.main and source in p.publications]
        if not mains or not self._router_created:
            raise ChannelError("not_found", "the main classroom publishes no such track")
        return await self._request("producer.snapshot", {"producer_id": producer_id(mains[0].participant_id, source)})

    # ------------------------------------------------------------------ link quality

    def on_samples(self, samples: list[dict[str, Any]]) -> None:
        """Worker samples of this lesson's transports → the main classroom's grid and the records."""
        room = self.room
        if room is None:
            return
        touched: set[str] = set()
        for sample in samples:
            owner = self.service.transport_owner.get(sample.get("transport_id", ""))
            if owner is None or owner[0] is not self:
                continue
            self.samples.setdefault(owner[1], {})[sample["direction"]] = sample
            touched.add(owner[1])
        for pid in touched:
            p = room.participants.get(pid)
            if p is None or p.observer:  # a patrol is silent: nobody sees an observer's link
                continue
            both = self.samples.get(pid, {})
            up, down = both.get("send", {}), both.get("recv", {})
            report = LinkQualityReport(
                loss=max(float(up.get("loss", 0.0)), float(down.get("loss", 0.0))),
                rtt_ms=int(down.get("rtt_ms", 0)),
                jitter_ms=max(int(up.get("jitter_ms", 0)), int(down.get("jitter_ms", 0))),
                bitrate_kbps=int(up.get("bitrate_kbps", 0)) + int(down.get("bitrate_kbps", 0)),
            )
            room._link_quality(p, report)  # same grid update as a client report
            self.service.publish_sample(self.instance_id, p, report, up, down)


class MediaService:
    """The app's media plane: the worker pool, and the lessons' media by router id."""

    def __init__(self, pool: WorkerPool, bus: Any | None = None, *, consumer_limit: int | None = None,
                 pipe_host: str = "127.0.0.1") -> None:
        self.pool = pool
        self.bus = bus
        self.consumer_limit = consumer_limit
        """Consumers one worker takes before a lesson's further subscribers go to another worker (None: no
        limit, a lesson stays on one worker)."""
        self.pipe_host = pipe_host
        """The address pipes between this node's workers bind on."""
        self.rooms: dict[str, LessonMedia] = {}
        """Router id → its lesson (a lesson on several workers is here once per router)."""
        self.recordings: Any | None = None
        """``server.jobs.recording.RecordingService`` (``begin``/``finish``), or None: nothing is recorded."""
        self.transport_owner: dict[str, tuple[LessonMedia, str]] = {}
        self._unsubscribe = pool.add_listener(self._on_event)
        self._pending: set[asyncio.Task[None]] = set()

    def factory(self, instance_id: int) -> LessonMedia:
        media = LessonMedia(instance_id, self)
        self.rooms[media.router_id] = media
        return media

    def _on_event(self, worker_index: int, event: str, data: dict[str, Any]) -> None:
        if event == "stats":
            media = self.rooms.get(str(data.get("router_id")))
            if media is not None:
                media.on_samples(list(data.get("transports") or []))
        elif event == "transport_state":
            owner = self.transport_owner.get(str(data.get("transport_id")))
            if owner is not None:
                owner[0].on_transport_state(owner[1], str(data.get("transport_id")), str(data.get("state")))
        elif event == "speech":  # (the lesson's own router: its span routers' pipe producers are copies)
            media = self.rooms.get(str(data.get("router_id")))
            if media is not None and media.router_id == data.get("router_id"):
                media.on_speech([str(x) for x in data.get("speaking") or []])
        elif event == "offer":  # the router offers a subscriber a new m-line of its own accord
            owner = self.transport_owner.get(str(data.get("transport_id")))
            if owner is not None:
                owner[0].on_offer(owner[1], data)
        elif event == "hls_refused":
            media = self.rooms.get(str(data.get("router_id")))
            if media is not None:
                media.on_hls_refused(data)
        elif event == "worker_died":
            for router_id in data.get("routers", []):
                media = self.rooms.get(router_id)
                if media is not None:
                    media.worker_lost(router_id)

    def publish_sample(self, instance_id: int, p: Participant, report: LinkQualityReport,
                       up: dict[str, Any], down: dict[str, Any]) -> None:
        if self.bus is None:
            return
        event = {
                "type": "link_quality", "instance_id": instance_id, "participant_id": p.participant_id,
                "user_id": p.user_id, "classroom_id": p.classroom_id, "role": p.role.value,
                "loss": report.loss, "rtt_ms": report.rtt_ms, "jitter_ms": report.jitter_ms,
                "bitrate_kbps": report.bitrate_kbps, "up_kbps": int(up.get("bitrate_kbps", 0)),
                "down_kbps": int(down.get("bitrate_kbps", 0)), "at": time.time(),
        }
        self.background(self.bus.publish(MEDIA_TOPIC, event))

    def background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` on its own (a task kept until it is done)."""
        task = asyncio.get_running_loop().create_task(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def close(self) -> None:
        self._unsubscribe()
