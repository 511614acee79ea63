"""A Python client of the lesson protocol, on aiortc: for tests, benchmarks and headless terminals.

It speaks ``docs/protocol.md`` like the web client does: join with a token,
publish tracks on the *publisher* connection (the client offers), receive the
tracks it subscribed to on the *subscriber* connection (the server offers,
the client answers).  It always gives aiortc an explicit ICE configuration
(no public STUN default) and sends complete SDP (no trickle).

Its peer connections use the STUN/TURN servers the server hands out (``joined.ice_servers``,
renewed by ``resumed.ice_servers``) after the policy's own, the reachable TURN server first
(:mod:`signaling.turn_pick`: aiortc uses one), so a client behind a firewall that lets out only
TCP is relayed like a browser.  When the server sends ``media_restart`` (its media worker died,
or it saw a connection end) the client closes those connections, keeps its local tracks,
publishes them again on a new publisher connection and answers the offer of the new subscriber
connection (flow 8) — as the browser pages do.  It does not watch its own connections' state
(a browser sends ``media_restart`` itself when one fails; this client does not).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import websockets
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.exceptions import InvalidStateError

from media.ice import IcePolicy, filter_local_sdp, rtc_configuration
from signaling import turn_pick

log = logging.getLogger(__name__)


class LessonError(Exception):
    """The server answered ``error``."""

    def __init__(self, message: dict[str, Any]) -> None:
        super().__init__(f"{message.get('code')}: {message.get('message')}")
        self.code = message.get("code")
        self.reply = message


REJOIN_DELAYS_S = (0.05, 0.2, 0.2, 0.2, 0.2, 0.3, 0.3, 0.5, 0.5, 1.0, 1.0, 2.0, 4.0)
"""Waits between attempts to join again after the socket dropped (then the last, until ``close``): short
at first, since a room whose node died is placed elsewhere within a lease (a few seconds)."""

LAPSE_MARGIN_S = 0.05
"""After a join-token answer's ``lease_lapses_in_ms`` (the owner named is overdue renewing its lease): a
failed attempt is followed by the next this long after the lease lapsed, when the room is placed anew."""

JoinAnswer = Callable[[], Awaitable[dict[str, Any]]]
"""Fetches a new join token: the join-token answer (``token``, ``ws_url``)."""


class LessonClient:
    def __init__(self, base_url: str, instance_id: int, token: str, *, policy: IcePolicy,
                 on_message: Callable[[dict[str, Any]], None] | None = None,
                 publisher: RTCPeerConnection | None = None, subscriber: RTCPeerConnection | None = None,
                 rejoin: JoinAnswer | None = None) -> None:
        """``publisher``/``subscriber``: peer connections to use instead of new ones (a benchmark
        that hooks its own connections passes them; after a ``media_restart`` new ones are made).
        ``rejoin``: when given, a socket that drops (the room's node died or handed the room on)
        is followed by itself, as the web pages do: a new token from ``rejoin()``, the node its
        answer names, the session resumed or joined afresh; then the local tracks are published
        again and the subscriptions asked for again, by user (sessions change when a room moves)."""
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
        self._type_waiters: list[tuple[str, Callable[[dict[str, Any]], bool] | None, asyncio.Future[dict[str, Any]]]] = []
        self._track_waiters: dict[tuple[str, str], asyncio.Future[MediaStreamTrack]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.offers = 0
        self._pinger: asyncio.Task[None] | None = None
        self.last_seq = 0
        """The highest ``seq`` received: what a resume hands back."""
        self.local: dict[str, MediaStreamTrack] = {}
        """source → the local track published (kept across a ``media_restart``, published again)."""
        self._codecs: dict[str, str | None] = {}
        self._publishing = asyncio.Lock()
        self._configuration: RTCConfiguration | None = None
        self.redirects: list[dict[str, Any]] = []
        """The ``redirect`` messages followed (at most one per ``connect``)."""
        self.restarts: list[dict[str, Any]] = []
        """The ``media_restart`` messages acted on (the connections they named were made again)."""
        self.rejoin = rejoin
        self.rejoins: list[dict[str, Any]] = []
        """Per rejoin after a dropped socket: ``dropped``/``joined`` (``time.monotonic``), ``attempts``,
        ``reply`` type (``resumed`` or ``joined``; the reply itself is ``joined``), ``node`` (the ws URL),
        ``first`` (the index in ``messages`` of the first message after it)."""
        self.roster: dict[str, dict[str, Any]] = {}
        """participant id → its ``ParticipantInfo`` as last heard (``joined`` and the deltas)."""
        self._wanted: list[dict[str, Any]] = []
        """The subscriptions asked for, by ``user_id`` (or the stage), to ask for again after a rejoin."""
        self._following: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ connection

    async def connect(self, timeout: float = 10.0, *, resume: tuple[str, int] | None = None,
                      keep_media: bool = False) -> dict[str, Any]:
        """Join; with ``resume=(session_id, last_seq)`` resume that session (the reply is then
        ``resumed``, or ``joined`` if the server could not resume it)."""
        join: dict[str, Any] = {"type": "join", "request_id": "join", "protocol_version": 1, "token": self.token}
        if resume is not None:
            join.update(resume_session_id=resume[0], last_seq=resume[1], keep_media=keep_media)
        for attempt in range(2):  # a redirect (the room lives on another node) is followed once
            self.ws = await websockets.connect(self.url, max_size=2**20, open_timeout=timeout)
            await self.ws.send(json.dumps(join))
            reply = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            if reply.get("type") != "redirect" or attempt:
                break
            self.redirects.append(reply)
            await self.ws.close()
            self.url = str(reply["ws_url"])
        if reply.get("type") not in ("joined", "resumed"):
            raise LessonError(reply)
        self.last_seq = max(self.last_seq, int(reply.get("seq", 0)))
        if reply.get("ice_servers") is None and self.joined.get("ice_servers") is not None:
            reply = {**reply, "ice_servers": self.joined["ice_servers"]}  # a resume without fresh ones
        self.joined = reply
        if reply.get("type") == "joined":
            self.roster = {p["participant_id"]: p for p in reply.get("participants") or []}
        self._configuration = None  # connections made from now on take the servers (and credentials) just given
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
        if self._following is not None and self._following is not asyncio.current_task():
            self._following.cancel()
            with contextlib.suppress(BaseException):
                await self._following
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
        for pc in (self.publisher, self.subscriber):  # made by a media restart while closing
            if pc is not None:
                await pc.close()

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                msg = json.loads(frame)
                self.last_seq = max(self.last_seq, int(msg.get("seq", 0)))
                self.messages.append(msg)
                self._track_roster(msg)
                if self.on_message is not None:
                    self.on_message(msg)
                rid = msg.get("request_id")
                if rid is not None and rid in self._waiters and msg["type"] in ("ack", "error", "answer"):
                    fut = self._waiters.pop(rid)
                    if not fut.done():
                        fut.set_result(msg)
                for waiter in list(self._type_waiters):
                    kind, where, fut = waiter
                    if not fut.done() and kind == msg["type"] and (where is None or where(msg)):
                        fut.set_result(msg)
                        self._type_waiters.remove(waiter)
                if msg["type"] == "offer":
                    self._spawn(self._on_offer(msg))
                elif msg["type"] == "media_restart":
                    self._on_media_restart(msg)
        except websockets.ConnectionClosed:
            pass
        left = self.messages[-1] if self.messages and self.messages[-1].get("type") == "leave" else None
        if left is not None and left.get("reason") != "timeout":
            return  # sent away (closed, kicked, replaced): nothing to follow
        if self.rejoin is not None and not self.closing and (self._following is None or self._following.done()):
            self._following = asyncio.get_running_loop().create_task(self._follow())

    def _track_roster(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "participant_joined" or kind == "participant_updated":
            info = msg.get("participant") or {}
            if "participant_id" in info:
                self.roster[info["participant_id"]] = info
                if kind == "participant_joined" and self._wanted and self.rejoins:
                    self._spawn(self._subscribe_wanted())  # someone back after the room moved
        elif kind == "participant_left":
            self.roster.pop(str(msg.get("participant_id")), None)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def ice_configuration(self) -> RTCConfiguration:
        """The configuration of the peer connections made now: the policy's servers, then the ones
        the server handed out, the reachable TURN server first (probed once per ``joined``/``resumed``)."""
        if self._configuration is None:
            servers = turn_pick.ice_servers(self.joined.get("ice_servers") or [],
                                            rtc_configuration(self.policy).iceServers or [])
            self._configuration = turn_pick.configuration(await turn_pick.reachable_first(servers))
        return self._configuration

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

    async def next_message(self, kind: str, timeout: float = 10.0, *,
                           where: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
        """The next message of type ``kind`` (that ``where`` accepts) received from now on.  One
        waiter sees every message until it matches: no message slips by between two awaits."""
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        waiter = (kind, where, fut)
        self._type_waiters.append(waiter)
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            if waiter in self._type_waiters:
                self._type_waiters.remove(waiter)

    # ------------------------------------------------------------------ publishing

    async def publish(self, tracks: dict[str, MediaStreamTrack], *, video_codec: str | None = None) -> dict[str, Any]:
        """Publish ``{source: track}`` (adds to what is already published) and wait for the answer.

        ``video_codec`` (e.g. ``"video/H264"``) restricts the video tracks to that codec."""
        self.local.update(tracks)
        self._codecs.update(dict.fromkeys(tracks, video_codec))
        async with self._publishing:
            return await self._add_tracks(tracks, video_codec)

    async def _add_tracks(self, tracks: dict[str, MediaStreamTrack], video_codec: str | None) -> dict[str, Any]:
        if self.publisher is None:
            self.publisher = RTCPeerConnection(await self.ice_configuration())
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
        self._wanted = [{**sub, "user_id": self.roster.get(sub["participant_id"], {}).get("user_id")}
                        for sub in subscriptions]
        await self.request({"type": "update_subscriptions", "subscriptions": subscriptions})

    async def _subscribe_wanted(self) -> None:
        """Ask again for the subscriptions wanted, for the users present now (by their new sessions)."""
        by_user = {p.get("user_id"): pid for pid, p in self.roster.items()}
        subs = []
        for want in self._wanted:
            sub = {k: v for k, v in want.items() if k != "user_id"}
            if want.get("user_id") is not None:
                if want["user_id"] not in by_user:
                    continue
                sub["participant_id"] = by_user[want["user_id"]]
            subs.append(sub)
        with contextlib.suppress(LessonError, asyncio.TimeoutError, websockets.ConnectionClosed):
            await self.request({"type": "update_subscriptions", "subscriptions": subs})

    # ------------------------------------------------------------------ following a room that moved

    async def _follow(self) -> None:
        """The socket dropped without ``leave``: join again (a new token names the room's node now),
        then publish again and subscribe again."""
        dropped = time.monotonic()
        if self._pinger is not None:
            self._pinger.cancel()
        old = [pc for pc in (self.publisher, self.subscriber) if pc is not None]
        if self.publisher is not None:  # aiortc stops the track of a sender whose connection closes
            for transceiver in self.publisher.getTransceivers():
                transceiver.sender.replaceTrack(None)
        self.publisher = self.subscriber = None
        self.tracks.clear()
        self.mids.clear()
        for pc in old:
            await pc.close()
        attempts = 0
        reply: dict[str, Any] | None = None
        assert self.rejoin is not None
        while not self.closing:
            attempts += 1
            lapses_at: float | None = None
            try:
                answer = await self.rejoin()
                if isinstance(answer.get("lease_lapses_in_ms"), int):  # the owner named may be dead
                    lapses_at = time.monotonic() + answer["lease_lapses_in_ms"] / 1000
                self.token = str(answer["token"])
                if answer.get("ws_url"):
                    self.url = str(answer["ws_url"])
                reply = await self.connect(5.0, resume=(self.participant_id, self.last_seq))
                first = len(self.messages)
                break
            except (OSError, asyncio.TimeoutError, websockets.WebSocketException, LessonError, KeyError,
                    ValueError) as exc:
                log.info("rejoin %s: attempt %d failed: %s", self.participant_id, attempts, exc)
            except Exception as exc:  # noqa: BLE001 - the token source's own errors (HTTP)
                log.info("rejoin %s: attempt %d failed: %r", self.participant_id, attempts, exc)
            if lapses_at is not None:  # its room is placed anew right after its lease lapsed: ask again then
                await asyncio.sleep(max(0.0, lapses_at - time.monotonic()) + LAPSE_MARGIN_S)
            else:
                await asyncio.sleep(REJOIN_DELAYS_S[min(attempts - 1, len(REJOIN_DELAYS_S) - 1)])
        if reply is None:
            return
        self.rejoins.append({"dropped": dropped, "joined": time.monotonic(), "attempts": attempts,
                             "reply": reply.get("type"), "node": self.url, "first": first})
        async with self._publishing:
            by_codec: dict[str | None, dict[str, MediaStreamTrack]] = {}
            for source, track in self.local.items():
                by_codec.setdefault(self._codecs.get(source), {})[source] = track
            try:
                for codec, tracks in by_codec.items():
                    await self._add_tracks(tracks, codec)
            except (LessonError, asyncio.TimeoutError, websockets.ConnectionClosed) as exc:
                log.warning("rejoin %s: publishing again failed: %s", self.participant_id, exc)
        if self._wanted:
            await self._subscribe_wanted()

    async def _on_offer(self, msg: dict[str, Any]) -> None:
        if self.subscriber is None:
            configuration = await self.ice_configuration()
            if self.subscriber is None:  # (another offer may have made it meanwhile)
                self.subscriber = RTCPeerConnection(configuration)
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

    # ------------------------------------------------------------------ media that comes back

    def _on_media_restart(self, msg: dict[str, Any]) -> None:
        """The server closed these connections (flow 8): let go of them now (an ``offer`` read after
        this message is for a new subscriber connection), then close them and publish again."""
        if self.closing:
            return
        targets = msg.get("targets") or []
        old: list[RTCPeerConnection] = []
        if "subscriber" in targets and self.subscriber is not None:
            old.append(self.subscriber)
            self.subscriber = None
            self.tracks.clear()
            self.mids.clear()
        republish = "publisher" in targets and self.publisher is not None
        if republish:
            assert self.publisher is not None
            for transceiver in self.publisher.getTransceivers():
                # aiortc stops the track of a sender whose connection closes: take ours off first
                transceiver.sender.replaceTrack(None)
            old.append(self.publisher)
            self.publisher = None
        self.restarts.append(msg)
        log.info("media_restart %s (%s): making %s again", self.participant_id, msg.get("reason"), targets)
        self._spawn(self._restart_media(old, republish))

    async def _restart_media(self, old: list[RTCPeerConnection], republish: bool) -> None:
        for pc in old:
            await pc.close()
        if not republish or self.closing:
            return
        async with self._publishing:
            if self.closing:
                return
            # (something published meanwhile is on the new connection already)
            sent = {t.sender.track for t in self.publisher.getTransceivers()} if self.publisher else set()
            by_codec: dict[str | None, dict[str, MediaStreamTrack]] = {}
            for source, track in self.local.items():
                if track in sent:
                    continue
                by_codec.setdefault(self._codecs.get(source), {})[source] = track
            try:
                for codec, tracks in by_codec.items():
                    await self._add_tracks(tracks, codec)
            except (LessonError, asyncio.TimeoutError, websockets.ConnectionClosed) as exc:
                log.warning("media_restart %s: publishing again failed: %s", self.participant_id, exc)

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
