"""A Python client of the lesson protocol, on aiortc: for tests, benchmarks and headless terminals.

It speaks ``docs/protocol.md`` like the web client does: join with a token,
publish tracks on the *publisher* connection (the client offers), receive the
tracks it subscribed to on the *subscriber* connection (the server offers,
the client answers).  It always gives aiortc an explicit ICE configuration
(no public STUN default) and sends complete SDP (no trickle).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import websockets
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.exceptions import InvalidStateError

from media.ice import IcePolicy, filter_local_sdp, rtc_configuration

log = logging.getLogger(__name__)


class LessonError(Exception):
    """The server answered ``error``."""

    def __init__(self, message: dict[str, Any]) -> None:
        super().__init__(f"{message.get('code')}: {message.get('message')}")
        self.code = message.get("code")
        self.reply = message


class LessonClient:
    def __init__(self, base_url: str, instance_id: int, token: str, *, policy: IcePolicy,
                 on_message: Callable[[dict[str, Any]], None] | None = None,
                 publisher: RTCPeerConnection | None = None, subscriber: RTCPeerConnection | None = None) -> None:
        """``publisher``/``subscriber``: peer connections to use instead of new ones (a benchmark
        that hooks its own connections passes them)."""
        self.url = base_url.replace("http://", "ws://").replace("https://", "wss://").rstrip("/") \
            + f"/api/v1/lessons/{instance_id}/ws"
        self.token = token
        self.policy = policy
        self.on_message = on_message
        self.ws: Any = None
        self.joined: dict[str, Any] = {}
        self.participant_id = ""
        self.messages: list[dict[str, Any]] = []
        self.publisher: RTCPeerConnection | None = publisher
        self.subscriber: RTCPeerConnection | None = subscriber
        self.closing = False
        """``close()`` began: offers still in flight are not answered."""
        if subscriber is not None:
            subscriber.on("track", self._on_track)
        self.tracks: dict[tuple[str, str], MediaStreamTrack] = {}
        """(participant_id, source) → the received track (``"stage"`` for the on-stage slot)."""
        self.mids: dict[str, tuple[str, str]] = {}
        self._ids = itertools.count(1)
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._type_waiters: list[tuple[str, asyncio.Future[dict[str, Any]]]] = []
        self._track_waiters: dict[tuple[str, str], asyncio.Future[MediaStreamTrack]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.offers = 0
        self._pinger: asyncio.Task[None] | None = None
        self.last_seq = 0
        """The highest ``seq`` received: what a resume hands back."""

    # ------------------------------------------------------------------ connection

    async def connect(self, timeout: float = 10.0, *, resume: tuple[str, int] | None = None,
                      keep_media: bool = False) -> dict[str, Any]:
        """Join; with ``resume=(session_id, last_seq)`` resume that session (the reply is then
        ``resumed``, or ``joined`` if the server could not resume it)."""
        self.ws = await websockets.connect(self.url, max_size=2**20, open_timeout=timeout)
        join: dict[str, Any] = {"type": "join", "request_id": "join", "protocol_version": 1, "token": self.token}
        if resume is not None:
            join.update(resume_session_id=resume[0], last_seq=resume[1], keep_media=keep_media)
        await self.ws.send(json.dumps(join))
        reply = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        if reply.get("type") not in ("joined", "resumed"):
            raise LessonError(reply)
        self.last_seq = max(self.last_seq, int(reply.get("seq", 0)))
        self.joined = reply
        self.participant_id = reply["session_id"]
        self._reader = asyncio.get_running_loop().create_task(self._read())
        interval = float(reply.get("ping_interval_s") or self.joined.get("ping_interval_s") or 15)
        if self._pinger is None or self._pinger.done():
            self._pinger = asyncio.get_running_loop().create_task(self._ping(interval))
        return reply

    async def _ping(self, interval: float) -> None:
        """Keep the session alive: the server drops a socket that says nothing for ``ping_timeout_s``."""
        try:
            while True:
                await asyncio.sleep(interval)
                await self.send({"type": "ping", "ts": int(time.time() * 1000)})
        except (asyncio.CancelledError, websockets.ConnectionClosed):
            pass

    async def drop(self) -> None:
        """Vanish like a reloaded page: the socket closes without ``leave`` and the peer connections go."""
        if self._pinger is not None:
            self._pinger.cancel()
        for pc in (self.publisher, self.subscriber):
            if pc is not None:
                await pc.close()
        self.publisher = self.subscriber = None
        self.tracks.clear()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
        with contextlib.suppress(Exception):
            await self.ws.close()

    async def close(self) -> None:
        self.closing = True
        if self._pinger is not None:
            self._pinger.cancel()
        for pc in (self.publisher, self.subscriber):
            if pc is not None:
                await pc.close()
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.send(json.dumps({"type": "leave"}))
            with contextlib.suppress(Exception):
                await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
        for task in list(self._tasks):
            task.cancel()

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                msg = json.loads(frame)
                self.last_seq = max(self.last_seq, int(msg.get("seq", 0)))
                self.messages.append(msg)
                if self.on_message is not None:
                    self.on_message(msg)
                rid = msg.get("request_id")
                if rid is not None and rid in self._waiters and msg["type"] in ("ack", "error", "answer"):
                    fut = self._waiters.pop(rid)
                    if not fut.done():
                        fut.set_result(msg)
                for kind, fut in list(self._type_waiters):
                    if kind == msg["type"] and not fut.done():
                        fut.set_result(msg)
                        self._type_waiters.remove((kind, fut))
                if msg["type"] == "offer":
                    task = asyncio.get_running_loop().create_task(self._on_offer(msg))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
        except websockets.ConnectionClosed:
            pass

    async def send(self, msg: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(msg))

    async def request(self, msg: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """Send with a fresh ``request_id``; the ``ack``/``answer`` reply, or ``LessonError``."""
        rid = f"r{next(self._ids)}"
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[rid] = fut
        await self.send({**msg, "request_id": rid})
        reply = await asyncio.wait_for(fut, timeout)
        if reply["type"] == "error":
            raise LessonError(reply)
        return reply

    async def next_message(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._type_waiters.append((kind, fut))
        return await asyncio.wait_for(fut, timeout)

    # ------------------------------------------------------------------ publishing

    async def publish(self, tracks: dict[str, MediaStreamTrack], *, video_codec: str | None = None) -> dict[str, Any]:
        """Publish ``{source: track}`` (adds to what is already published) and wait for the answer.

        ``video_codec`` (e.g. ``"video/H264"``) restricts the video tracks to that codec."""
        if self.publisher is None:
            self.publisher = RTCPeerConnection(rtc_configuration(self.policy))
        added = {source: self.publisher.addTransceiver(track, direction="sendonly")
                 for source, track in tracks.items()}
        if video_codec is not None:
            prefs = [c for c in RTCRtpSender.getCapabilities("video").codecs
                     if c.mimeType.lower() in (video_codec.lower(), "video/rtx")]
            for transceiver in added.values():
                if transceiver.kind == "video":
                    transceiver.setCodecPreferences(prefs)
        return await self.negotiate_publisher(added)

    async def negotiate_publisher(self, transceivers: dict[str, Any]) -> dict[str, Any]:
        """Announce ``{source: transceiver}`` of the publisher connection and send its offer."""
        pc = self.publisher
        assert pc is not None
        offer = await pc.createOffer()
        await pc.setLocalDescription(offer)
        for source, transceiver in transceivers.items():
            await self.request({"type": "publish", "source": source, "track_id": transceiver.sender.track.id,
                                "mid": transceiver.mid})
        answer = await self.request({"type": "offer", "sdp": filter_local_sdp(pc.localDescription.sdp, self.policy)})
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        return answer

    # ------------------------------------------------------------------ subscribing

    async def subscribe(self, subscriptions: list[dict[str, Any]]) -> None:
        """Replace the subscription set, e.g. ``[{"participant_id": pid, "source": "camera"}]``."""
        await self.request({"type": "update_subscriptions", "subscriptions": subscriptions})

    async def _on_offer(self, msg: dict[str, Any]) -> None:
        if self.subscriber is None:
            self.subscriber = RTCPeerConnection(rtc_configuration(self.policy))
            self.subscriber.on("track", self._on_track)

        pc = self.subscriber
        if self.closing or pc.signalingState == "closed":
            return  # leaving: an offer that crossed our own close has nothing to apply to
        for t in msg.get("tracks", []):
            self.mids[t["mid"]] = (t["participant_id"], t["source"])
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=msg["sdp"], type="offer"))
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except InvalidStateError:
            # closed while this offer was being applied: leaving, nothing to answer (aiortc's
            # setRemoteDescription may set its signaling state again after close() set "closed")
            if self.closing or pc is not self.subscriber or pc.signalingState == "closed":
                return
            raise
        self.offers += 1
        await self.send({"type": "answer", "request_id": f"a{next(self._ids)}",
                         "sdp": filter_local_sdp(pc.localDescription.sdp, self.policy)})

    def _on_track(self, track: MediaStreamTrack) -> None:
        pc = self.subscriber
        mid = next((t.mid for t in pc.getTransceivers() if t.receiver.track is track), None) if pc else None
        key = self.mids.get(mid or "")
        if key is None:
            return
        self.tracks[key] = track
        fut = self._track_waiters.pop(key, None)
        if fut is not None and not fut.done():
            fut.set_result(track)

    async def track(self, participant_id: str, source: str, timeout: float = 10.0) -> MediaStreamTrack:
        key = (participant_id, source)
        if key in self.tracks:
            return self.tracks[key]
        fut = self._track_waiters.get(key)
        if fut is None:
            fut = self._track_waiters[key] = asyncio.get_running_loop().create_future()
        return await asyncio.wait_for(asyncio.shield(fut), timeout)
