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
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
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
    Offer,
    PeerTarget,
    Publication,
    Publish,
    ServerAnswer,
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
    from signaling.room import Participant, Room

log = logging.getLogger(__name__)

STAGE = "stage"
"""The on-stage slot in a subscription's ``participant_id``."""
KIND = {TrackSource.camera: "video", TrackSource.screen: "video", TrackSource.microphone: "audio"}
LAYER_INDEX = {VideoLayer.low: 0, VideoLayer.medium: 1, VideoLayer.high: 2}
RECORDED_SOURCES = ("camera", "screen", "microphone")
"""The main classroom's tracks a recorded lesson keeps."""
MEDIA_TOPIC = "media"
"""Bus topic of link-quality samples (for the online-teaching records)."""

_ERRORS = {"bad_sdp": ErrorCode.bad_sdp, "bad_candidate": ErrorCode.bad_candidate, "not_allowed": ErrorCode.not_allowed}
_REFUSED = {ErrorCode.bad_sdp: "SDP 无法应用，请重新协商", ErrorCode.bad_candidate: "ICE 候选地址无法使用"}
"""The zh-CN text of a refused media request by code; any other: the media service is unavailable."""


def producer_id(participant_id: str, source: TrackSource | str) -> str:
    return f"{participant_id}:{TrackSource(source).value}"


class LessonMedia:
    """The media of one room (one Router on one worker)."""

    def __init__(self, instance_id: int, service: MediaService) -> None:
        self.instance_id = instance_id
        self.router_id = f"lesson-{instance_id}"
        self.service = service
        self.room: Room | None = None
        self._queue: deque[tuple[Callable[[], Awaitable[None]], Participant | None, str | None]] = deque()
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
        """``{id, directory}`` once the lesson's recording started (``MediaService.recordings``)."""
        self._not_recorded = False

    # ------------------------------------------------------------------ running requests in order

    def _enqueue(self, fn: Callable[[], Awaitable[None]], p: Participant | None = None, rid: str | None = None) -> None:
        if self.closed:
            return
        self._queue.append((fn, p, rid))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while self._queue:
            fn, p, rid = self._queue.popleft()
            try:
                await fn()
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

    async def _request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if not self._router_created:
            await self.service.pool.request(self.router_id, "router.create", {"router_id": self.router_id})
            self._router_created = True
        return await self.service.pool.request(self.router_id, method, {"router_id": self.router_id, **params})

    async def _transport(self, p: Participant, direction: str) -> str:
        own = self.transports.setdefault(p.participant_id, {})
        tid = own.get(direction)
        if tid is None:
            self._transport_seq += 1
            tid = f"{p.participant_id}-{direction}-{self._transport_seq}"
            await self._request("transport.create", {"transport_id": tid, "participant_id": p.participant_id,
                                                     "direction": direction})
            own[direction] = tid
            self.service.transport_owner[tid] = (self, p.participant_id)
        return tid

    async def _close_transports(self, pid: str) -> None:
        for tid in (self.transports.pop(pid, None) or {}).values():
            self.service.transport_owner.pop(tid, None)
            try:
                await self._request("transport.close", {"transport_id": tid})
            except ChannelError:
                pass

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
            self._enqueue(lambda: self._publish(p, msg.sdp, rid), p, rid)
        elif isinstance(msg, Answer):
            self._enqueue(lambda: self._answer(p, msg.sdp, rid), p, rid)
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
            self._enqueue(lambda: self._candidate(p, target, msg), p, rid)

    def on_joined(self, room: Room, p: Participant) -> None:
        self.room = room

    def on_left(self, room: Room, p: Participant) -> None:
        self.room = room
        pid = p.participant_id
        self.announced.pop(pid, None)
        self.subscriptions.pop(pid, None)
        self.samples.pop(pid, None)

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

        async def close() -> None:
            self.closed = True
            await self._stop_recording()
            for pid in list(self.transports):
                for tid in self.transports.pop(pid).values():
                    self.service.transport_owner.pop(tid, None)
            if self._router_created:
                try:
                    await self.service.pool.request(self.router_id, "router.close", {"router_id": self.router_id})
                except ChannelError:
                    pass
            self.service.pool.release(self.router_id)
            self.service.rooms.pop(self.router_id, None)

        self._queue.append((close, None, None))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.get_running_loop().create_task(self._drain())

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
        result = await self._request("transport.publish", {"transport_id": tid, "sdp": sdp,
                                                           "publications": publications})
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
        await self._request("transport.add_candidate", {"transport_id": tid, "candidate": msg.candidate,
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
        tid = await self._transport(p, "recv")
        result = await self._request("transport.set_consumers", {"transport_id": tid, "consumers": specs})
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
        result = await self._request("transport.answer", {"transport_id": tid, "sdp": sdp})
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
            await self._request("router.record", {"directory": self.recording["directory"], "producer_ids": ids})
        except Exception:
            log.exception("lesson %s: starting the recording failed", self.instance_id)

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

    def __init__(self, pool: WorkerPool, bus: Any | None = None) -> None:
        self.pool = pool
        self.bus = bus
        self.rooms: dict[str, LessonMedia] = {}
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
        elif event == "worker_died":
            for router_id in data.get("routers", []):
                media = self.rooms.get(router_id)
                if media is not None:
                    log.error("lesson %s: its media worker died; media restarts on rejoin", media.instance_id)
                    media._router_created = False

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
        task = asyncio.get_running_loop().create_task(self.bus.publish(MEDIA_TOPIC, event))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def close(self) -> None:
        self._unsubscribe()
