"""One live lesson's room: who is in it and the classroom controls, without media.

Plain classes, no FastAPI and no I/O: a ``Participant`` carries a ``deliver``
callback that the WebSocket endpoint (``signaling.endpoint``) turns into frames;
``deliver(None)`` would be meaningless, so closing is asked for with
``Participant.close(code)``.  Every method runs on the event loop of the
process, one call at a time, so no locking is needed.

What is here: join (snapshot + deltas, observers never listed), replace a
user's older session, leave, chat, raise hand, on stage, mute, mute all,
link-quality forwarding, ping.

Media plugs in through ``RoomMedia`` (one object per room, made by the
registry's ``media_factory``): the room calls its hooks after it has updated
its own state and sent its own messages.  Without a media module the room
uses ``NullMedia``: ``offer``, ``answer``, ``ice_candidate``, ``publish``,
``unpublish`` and ``update_subscriptions`` are answered with ``error``
``MEDIA_UNAVAILABLE`` ("媒体服务尚未启用"), after the role check.

Sessions outlive sockets: a ``Participant`` is a session.  It stamps ``seq`` on
what it is sent and keeps the last ``REPLAY_BUFFER`` messages (``signaling.replay``;
not ``joined``, which no resume needs), whether a socket is attached or not.  A socket that drops without ``leave`` only detaches the
participant (``Room.disconnect``): the others see nothing, and after
``RESUME_GRACE_S`` without ``Room.resume`` it is removed with reason ``timeout``.

Several nodes: a room lives in one process, on the node that owns it
(``server.core.placement``); a socket that reaches another node is sent there
(``redirect``) by the endpoint before it joins, so there is one copy of the room.
What must outlive the node is a ``RoomSnapshot`` (by user: sessions do not move),
handed to ``on_change`` after every change of it; a room opened from one
(``restore``) gives each user its part back when it joins.  ``move_out`` ends the
room here without ending the lesson (its clients join its next node).

What is NOT here yet (honestly): rate limiting of chat and raise hand.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from signaling.messages import (
    Ack,
    Answer,
    Chat,
    ChatLine,
    ChatMessage,
    ClientMessage,
    Error,
    ErrorCode,
    HandRaised,
    IceCandidate,
    IceServer,
    Join,
    Joined,
    Leave,
    LeaveReason,
    LessonRole,
    LinkQuality,
    LinkQualityReport,
    LinkQualityUpdate,
    MediaRestart,
    Mute,
    MuteAll,
    Muted,
    Offer,
    OnStageChanged,
    ParticipantInfo,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantUpdated,
    Ping,
    Pong,
    Publication,
    Publish,
    RaiseHand,
    Resumed,
    RoomUpdated,
    ServerLeave,
    SetMuted,
    SetOnStage,
    TrackSource,
    Unpublish,
    UpdateSubscriptions,
    allowed,
)
from signaling.messages import RoomState as RoomStateInfo
from signaling.replay import ReplayBuffer

log = logging.getLogger(__name__)

PING_INTERVAL_S = 15
PING_TIMEOUT_S = 45
RESUME_GRACE_S: float = 30
"""How long a session whose socket dropped (without ``leave``) waits for a resume (``joined.resume_grace_s``)."""
REPLAY_BUFFER = 500
RECENT_CHAT = 50
"""The chat lines a room keeps (``joined.recent_chat``, and its snapshot)."""
"""The last messages of a session kept for a resume; a ``last_seq`` older than them gets a fresh ``joined``."""

MEDIA_UNAVAILABLE = ErrorCode.internal
"""The code for media messages while there is no SFU: the request is fine, the server cannot apply it."""
MEDIA_UNAVAILABLE_ZH = "媒体服务尚未启用，暂不支持音视频协商"
NOT_ALLOWED_ZH = "您在本课堂中的角色不能执行此操作"

_MEDIA = (Offer, Answer, IceCandidate, Publish, Unpublish, UpdateSubscriptions, MediaRestart)

# WebSocket close codes (4000-4999 are the application's)
CLOSE_NORMAL = 1000
CLOSE_PROTOCOL = 4000
"""No ``join`` in time, or the first message was not a usable ``join``."""
CLOSE_AUTH = 4001
"""Token forged, malformed, expired or for another lesson."""
CLOSE_NOT_ALLOWED = 4003
CLOSE_ROOM_NOT_OPEN = 4004
"""The room is not open (yet) or already closed."""
CLOSE_TIMEOUT = 4008
"""No message within ``ping_timeout_s``, or the client does not read its messages."""
CLOSE_REPLACED = 4009
CLOSE_REDIRECT = 4010
"""The lesson's room lives on another node: the ``redirect`` message before it names that node's socket."""
CLOSE_TOO_MANY = 4029
"""Too many sockets from the client's address that have not joined, or new ones too fast: retry later."""
CLOSE_INTERNAL = 1011

_CLOSE_FOR_LEAVE = {
    LeaveReason.client_left: CLOSE_NORMAL,
    LeaveReason.room_closed: CLOSE_NORMAL,
    LeaveReason.kicked: CLOSE_NOT_ALLOWED,
    LeaveReason.server_shutdown: 1001,
    LeaveReason.replaced: CLOSE_REPLACED,
    LeaveReason.timeout: CLOSE_TIMEOUT,
}


clock: Callable[[], float] = time.monotonic
"""The clock of the resume grace (a test may replace it); the grace timer itself runs on the event loop's."""


def now_ms() -> int:
    return int(time.time() * 1000)


def new_session_id() -> str:
    return "s_" + uuid.uuid4().hex[:20]


class RoomClosedError(Exception):
    """Joining a room that has closed."""


class State(Enum):
    OPEN = "open"
    CLOSED = "closed"


Deliver = Callable[[Any], None]
"""Takes a server message stamped with its ``seq`` (a copy made for this session)."""
DeliverStamped = Callable[[Any, int], None]
"""Takes a server message as every session got it (not to be changed) and this session's ``seq`` for it."""
CloseFn = Callable[[int], None]
"""Asks the connection to close with this WebSocket code after the queued messages."""


def _noop_close(code: int) -> None:
    return None


@dataclass(eq=False)
class Participant:
    participant_id: str
    user_id: int
    display_name: str
    role: LessonRole
    classroom_id: int | None
    listen_only: bool
    deliver: Deliver
    close: CloseFn = _noop_close
    deliver_stamped: DeliverStamped | None = None
    """Set by a socket that writes ``seq`` itself (``signaling.endpoint.Connection``): it is given the
    message every session shares and this session's ``seq``, instead of ``deliver`` a stamped copy."""
    on_stage: bool = False
    hand_raised: bool = False
    muted_by_teacher: set[TrackSource] = field(default_factory=set)
    self_muted: set[TrackSource] = field(default_factory=set)
    """Sources muted on the participant's side: by itself, and also by the teacher or mute all."""
    publications: dict[TrackSource, Publication] = field(default_factory=dict)
    """What the participant publishes now, kept by the media module (``RoomMedia``)."""
    # --- the session (outlives its sockets)
    seq: int = 0
    """The ``seq`` of the last message stamped for this session."""
    sent: ReplayBuffer = field(default_factory=lambda: ReplayBuffer(REPLAY_BUFFER))
    """The last messages and their ``seq``, for a resume's replay (``signaling.replay``).  The message is
    the one object a broadcast gives every session (stamped only on its way to a socket), so a full
    buffer costs two deque slots per message, not a copy (~1 KiB each) nor a pair (an object the
    garbage collector scans): 500 of them for each of thousands of sessions."""
    connected: bool = True
    """A socket is attached; while not, messages are only kept in ``sent``."""
    link: int = 0
    """Which socket is attached: +1 on every resume, so a stale socket cannot detach its successor."""
    disconnected_at: float | None = None
    """``clock()`` when the socket dropped."""
    grace_timer: asyncio.TimerHandle | None = None
    logged_sources: frozenset[TrackSource] = frozenset()
    """The publications the event log last heard of (``publish``/``unpublish`` are logged as differences)."""

    @property
    def observer(self) -> bool:
        return self.role is LessonRole.observer

    def effective_muted(self, source: TrackSource) -> bool:
        """Whether ``source`` is muted now: muted by the participant itself (mute all mutes it there too)
        or by the main classroom."""
        return source in self.self_muted or source in self.muted_by_teacher

    def info(self) -> ParticipantInfo:
        """What others see; a publication's ``muted`` is the effective mute of its source."""
        name = (self.display_name or "").strip()[:64] or f"用户{self.user_id}"
        publications = [
            pub if pub.muted == self.effective_muted(src) else pub.model_copy(
                update={"muted": self.effective_muted(src)})
            for src, pub in sorted(self.publications.items(), key=lambda kv: kv[0].value)
        ]
        return ParticipantInfo(
            participant_id=self.participant_id, user_id=self.user_id, display_name=name, role=self.role,
            classroom_id=self.classroom_id, listen_only=self.listen_only, publications=publications,
            muted_by_teacher=sorted(self.muted_by_teacher, key=lambda s: s.value),
            hand_raised=self.hand_raised, on_stage=self.on_stage,
        )

    def _deliver(self, msg: Any, seq: int) -> None:
        """``msg`` stamped with ``seq`` to the socket, if one is attached."""
        if not self.connected:
            return
        try:
            if self.deliver_stamped is not None:
                self.deliver_stamped(msg, seq)
            else:
                self.deliver(msg.model_copy(update={"seq": seq}))
        except Exception:
            log.exception("deliver failed for %s", self.participant_id)

    def send(self, msg: Any) -> None:
        """Stamp the next ``seq``, keep the message for a replay, and deliver it if a socket is attached.

        ``msg`` itself is kept, not changed: a broadcast passes one object to every session.
        Never raises: one broken connection cannot break the room."""
        self.seq += 1
        self.sent.append(self.seq, msg)
        self._deliver(msg, self.seq)

    def send_once(self, msg: Any) -> None:
        """A message no resume needs (``joined``: a client that resumes has had it, it names the session):
        it takes the next ``seq`` and goes to the socket, but is not kept, so it is freed once framed (a
        ``joined`` lists everyone in the room: kept, it was most of what a session held), and a resume
        from before it is not a resume."""
        self.seq += 1
        self.sent.skip(self.seq)
        self._deliver(msg, self.seq)

    def send_to_socket(self, msg: Any) -> None:
        """A message about this socket only (``resumed``, a ``leave`` that does not end the session):
        it takes the next ``seq`` but is never replayed."""
        self.seq += 1
        self._deliver(msg, self.seq)

    def can_replay(self, last_seq: int) -> bool:
        """Every message after ``last_seq`` is still kept."""
        return self.sent.can_replay(last_seq, self.seq)

    def replay(self, last_seq: int) -> list[tuple[int, Any]]:
        """The kept messages after ``last_seq``, as ``(seq, message)``."""
        return self.sent.after(last_seq)

    def close_socket(self, code: int) -> None:
        if not self.connected:
            return
        try:
            self.close(code)
        except Exception:
            log.exception("close failed for %s", self.participant_id)


def _quality(r: LinkQualityReport) -> LinkQuality:
    if r.loss >= 0.3 or (r.bitrate_kbps == 0 and r.rtt_ms == 0):
        return LinkQuality.lost
    if r.loss >= 0.05 or r.rtt_ms >= 400 or r.jitter_ms >= 100:
        return LinkQuality.poor
    if r.loss >= 0.01 or r.rtt_ms >= 150 or r.jitter_ms >= 30:
        return LinkQuality.good
    return LinkQuality.excellent


class RoomMedia(Protocol):
    """What a media module (the SFU) implements to plug into a room; one object per room.

    The room calls the hooks on the event loop, one call at a time, after it has
    updated its own state and sent its own messages.  A hook may call back into
    the room's public helpers (``updated``, ``error``, ``ack``, ``listed``,
    ``participants``, ``on_stage``) and send to a participant with ``p.send``.
    An exception in ``on_message`` is answered with ``error`` ``internal`` by the
    endpoint; an exception in any other hook is logged and the room goes on.
    """

    def on_message(self, room: Room, p: Participant, msg: ClientMessage) -> None:
        """A media message (``offer``, ``answer``, ``ice_candidate``, ``publish``, ``unpublish``,
        ``update_subscriptions``) of ``p``, already allowed by the role check. Replies are the hook's."""

    def on_joined(self, room: Room, p: Participant) -> None:
        """``p`` joined (after ``joined`` and ``participant_joined`` were sent)."""

    def on_left(self, room: Room, p: Participant) -> None:
        """``p`` is gone for good (left, replaced, kicked, timed out after the resume grace); not on close."""

    def on_resumed(self, room: Room, p: Participant, keep_media: bool) -> None:
        """``p`` resumed its session on a new socket (after ``resumed`` and the replay).

        ``keep_media``: the client kept its peer connections; otherwise it makes new
        ones and publishes again, and the server restores its subscriptions on them."""

    def on_stage_changed(self, room: Room, previous: Participant | None, current: Participant | None) -> None:
        """The stage changed from ``previous`` to ``current`` (either may be ``None``)."""

    def on_mute_changed(self, room: Room, p: Participant, source: TrackSource, muted: bool) -> None:
        """``p.effective_muted(source)`` changed to ``muted`` (by itself, the main classroom or mute all)."""

    def on_closed(self, room: Room) -> None:
        """The room closed; every participant has been sent away (no ``on_left`` for them)."""


class Journal(Protocol):
    """Where a room writes what happens in it (``server.core.eventlog.EventLog``): the session event log."""

    def record(self, instance_id: int, kind: str, subject: Participant,
               data: dict[str, Any] | None = None) -> None: ...

    def chat(self, instance_id: int, subject: Participant, text: str) -> None: ...


class NullMedia:
    """No SFU: media messages are refused with ``error`` ``MEDIA_UNAVAILABLE``; the other hooks do nothing."""

    def on_message(self, room: Room, p: Participant, msg: ClientMessage) -> None:
        room.error(p, MEDIA_UNAVAILABLE, MEDIA_UNAVAILABLE_ZH, msg.request_id)

    def on_joined(self, room: Room, p: Participant) -> None:
        return None

    def on_left(self, room: Room, p: Participant) -> None:
        return None

    def on_resumed(self, room: Room, p: Participant, keep_media: bool) -> None:
        return None

    def on_stage_changed(self, room: Room, previous: Participant | None, current: Participant | None) -> None:
        return None

    def on_mute_changed(self, room: Room, p: Participant, source: TrackSource, muted: bool) -> None:
        return None

    def on_closed(self, room: Room) -> None:
        return None


@dataclass
class RoomSnapshot:
    """What of a room must outlive its node (a failover or a drain opens it again on another one):
    plain data, keyed by user id, since sessions do not move.  ``to_json``/``parse``."""

    live: bool = False
    muted_all: bool = False
    on_stage: int | None = None
    """The user on stage."""
    hands: list[int] = field(default_factory=list)
    """Users with a raised hand, oldest first."""
    users: dict[int, dict[str, list[str]]] = field(default_factory=dict)
    """user id → ``muted_by_teacher``, ``self_muted`` (source names), of everyone in the room."""
    chat: list[dict[str, Any]] = field(default_factory=list)
    """The last ``RECENT_CHAT`` lines (``ChatLine`` fields)."""
    node: str | None = None
    """The node that wrote it."""
    down_s: float = 0.0
    """(Not stored) how long the room had been gone when it was read back: its previous node's last sign
    of life until now."""
    reason: str = "node_failover"
    """Why the room moved: ``node_failover`` (its node died or lost Redis) or ``node_drain``."""

    def to_json(self) -> str:
        return json.dumps({"live": self.live, "muted_all": self.muted_all, "on_stage": self.on_stage,
                           "hands": self.hands, "users": {str(k): v for k, v in self.users.items()},
                           "chat": self.chat, "node": self.node, "reason": self.reason}, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def parse(cls, raw: bytes | str) -> "RoomSnapshot":
        """A snapshot read back; ``ValueError`` for anything that is not one."""
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not an object")
            users = {int(k): {"muted_by_teacher": [TrackSource(x).value for x in v.get("muted_by_teacher", [])],
                              "self_muted": [TrackSource(x).value for x in v.get("self_muted", [])]}
                     for k, v in dict(data.get("users") or {}).items()}
            chat = [ChatLine.model_validate(c).model_dump() for c in list(data.get("chat") or [])][-RECENT_CHAT:]
            on_stage = data.get("on_stage")
            return cls(live=bool(data.get("live")), muted_all=bool(data.get("muted_all")),
                       on_stage=None if on_stage is None else int(on_stage),
                       hands=[int(h) for h in data.get("hands") or []], users=users, chat=chat,
                       node=None if data.get("node") is None else str(data["node"]),
                       reason="node_drain" if data.get("reason") == "node_drain" else "node_failover")
        except (TypeError, ValueError, AttributeError, UnicodeDecodeError) as exc:
            raise ValueError(f"room snapshot: {exc}") from None


MediaFactory = Callable[[int], RoomMedia]
"""Makes the media of a room, given the lesson instance id."""


class Room:
    def __init__(self, instance_id: int, media: RoomMedia | None = None, journal: Journal | None = None) -> None:
        self.instance_id = instance_id
        self.media: RoomMedia = media if media is not None else NullMedia()
        self.journal = journal
        self.state = State.OPEN
        self.live = False
        self.participants: dict[str, Participant] = {}
        self.on_stage: str | None = None
        self.muted_all = False
        self.hands: list[str] = []
        """The raise-hand queue, oldest first."""
        self.chat_lines: deque[ChatLine] = deque(maxlen=RECENT_CHAT)
        self.on_change: Callable[[Room], None] | None = None
        """Called after every change of what ``snapshot`` holds (the registry's keeper saves it)."""
        self.restored: RoomSnapshot | None = None
        """The snapshot this room was opened from; each user's part is applied when that user joins."""
        self._stream_refusals: dict[tuple[str, str], str] = {}
        """(main participant id, source) → why the HLS stream cannot carry that publication (zh-CN)."""

    # ------------------------------------------------------------------ state

    def _set_state(self, state: State) -> None:
        """The one place the room's state changes; CLOSED is final."""
        if self.state is State.CLOSED:
            return
        self.state = state

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    def room_state(self) -> RoomStateInfo:
        return RoomStateInfo(instance_id=self.instance_id, live=self.live, on_stage=self.on_stage,
                             muted_all=self.muted_all, hands_raised=list(self.hands),
                             stream_refused=self.stream_refusals())

    def stream_refused(self, source: str, reason: str) -> None:
        """The HLS stream cannot carry this source of the main classroom (told by the media side): every
        page learns it with the room state, for as long as that publication lasts."""
        main = next((q for q in self.participants.values()
                     if q.role is LessonRole.main and source in {s.value for s in q.publications}), None)
        if main is None or self.closed or self._stream_refusals.get((main.participant_id, source)) == reason:
            return
        self._stream_refusals[(main.participant_id, source)] = reason
        self._broadcast(RoomUpdated(room=self.room_state()))

    def stream_refusals(self) -> dict[str, str]:
        """Source → the zh-CN reason the stream cannot carry it, for the main classroom's current publications."""
        self._drop_stale_refusals()
        return {source: reason for (_, source), reason in self._stream_refusals.items()}

    def _drop_stale_refusals(self) -> bool:
        """Forget the refusals whose publication is gone (its publisher left or stopped it); True if any."""
        stale = [(pid, source) for pid, source in self._stream_refusals
                 if pid not in self.participants
                 or source not in {s.value for s in self.participants[pid].publications}]
        for key in stale:
            del self._stream_refusals[key]
        return bool(stale)

    def _changed(self) -> None:
        if self.on_change is None or self.closed:
            return
        try:
            self.on_change(self)
        except Exception:
            log.exception("room %s: saving its state failed", self.instance_id)

    def snapshot(self) -> RoomSnapshot:
        """What must survive this node, by user."""
        by_pid = self.participants
        users = {p.user_id: {"muted_by_teacher": sorted(s.value for s in p.muted_by_teacher),
                             "self_muted": sorted(s.value for s in p.self_muted)}
                 for p in by_pid.values()}
        hands = [by_pid[h].user_id for h in self.hands if h in by_pid]
        on_stage = by_pid[self.on_stage].user_id if self.on_stage in by_pid else None
        pending = self.restored
        if pending is not None:  # users not back yet since the room moved keep what they had
            for user_id, state in pending.users.items():
                users.setdefault(user_id, state)
            hands += [u for u in pending.hands if u in pending.users and u not in hands]
            if on_stage is None and pending.on_stage in pending.users:
                on_stage = pending.on_stage
        return RoomSnapshot(live=self.live, muted_all=self.muted_all, on_stage=on_stage, hands=hands, users=users,
                            chat=[c.model_dump() for c in self.chat_lines])

    def restore(self, snap: RoomSnapshot) -> None:
        """A room opened again from ``snap`` (its node is gone): the room-wide state now, each user's
        mutes, stage and hand when that user joins."""
        self.live = snap.live
        self.muted_all = snap.muted_all
        self.chat_lines.extend(ChatLine.model_validate(c) for c in snap.chat)
        self.restored = snap
        hook = getattr(self.media, "on_restored", None)  # optional: a media module may count the gap
        if hook is not None:
            try:
                hook(self, snap)
            except Exception:
                log.exception("media hook on_restored failed in room %s", self.instance_id)

    def _apply_restored(self, p: Participant) -> tuple[bool, bool]:
        """Give ``p`` back what its user had before the room moved; answers (on stage again, hand up again)."""
        snap = self.restored
        if snap is None or p.user_id not in snap.users:
            return False, False
        state = snap.users.pop(p.user_id)
        p.muted_by_teacher = {TrackSource(x) for x in state.get("muted_by_teacher", [])}
        p.self_muted = {TrackSource(x) for x in state.get("self_muted", [])} | p.muted_by_teacher
        staged = snap.on_stage == p.user_id and self.on_stage is None
        if staged:
            snap.on_stage = None
            self.on_stage, p.on_stage = p.participant_id, True
        raised = p.user_id in snap.hands and not p.on_stage
        if raised:  # back in its place in the queue: after those of earlier hands who are back already
            order = snap.hands
            user_of = {q.participant_id: q.user_id for q in self.participants.values()}
            mine = order.index(p.user_id)
            at = sum(1 for h in self.hands if user_of.get(h) in order and order.index(user_of[h]) < mine)
            self.hands.insert(at, p.participant_id)
            p.hand_raised = True
        return staged, raised

    def listed(self) -> list[Participant]:
        """The participants others may know about (everyone but observers)."""
        return [p for p in self.participants.values() if not p.observer]

    def _hook(self, name: str, *args: Any) -> None:
        """Call a media hook; its failure is logged, the room goes on."""
        try:
            getattr(self.media, name)(self, *args)
        except Exception:
            log.exception("media hook %s failed in room %s", name, self.instance_id)

    def _log(self, kind: str, p: Participant, data: dict[str, Any] | None = None) -> None:
        """Write an event to the journal; its failure is logged, the room goes on."""
        if self.journal is None:
            return
        try:
            self.journal.record(self.instance_id, kind, p, data)
        except Exception:
            log.exception("journal failed in room %s", self.instance_id)

    def _log_publications(self, p: Participant) -> None:
        now = frozenset(p.publications)
        if now == p.logged_sources:
            return
        for src in sorted(now - p.logged_sources, key=lambda s: s.value):
            self._log("publish", p, {"source": src.value})
        for src in sorted(p.logged_sources - now, key=lambda s: s.value):
            self._log("unpublish", p, {"source": src.value})
        p.logged_sources = now

    @staticmethod
    def _mute_snapshot(ps: Sequence[Participant]) -> dict[tuple[str, TrackSource], bool]:
        return {(q.participant_id, src): q.effective_muted(src) for q in ps for src in TrackSource}

    def _mute_changes(self, ps: Sequence[Participant], before: dict[tuple[str, TrackSource], bool]) -> None:
        """``on_mute_changed`` for every source of ``ps`` whose effective mute differs from ``before``."""
        for q in ps:
            for src in TrackSource:
                now = q.effective_muted(src)
                if before.get((q.participant_id, src)) != now:
                    self._log("mute" if now else "unmute", q, {"source": src.value})
                    self._hook("on_mute_changed", q, src, now)

    def _broadcast(self, msg: Any, *, exclude: Participant | None = None) -> None:
        for p in list(self.participants.values()):
            if p is not exclude:
                p.send(msg)

    def _about(self, subject: Participant, msg: Any, *, exclude: Participant | None = None) -> None:
        """A delta about ``subject``: nobody hears about an observer."""
        if subject.observer:
            return
        self._broadcast(msg, exclude=exclude)

    def _to_mains(self, msg: Any, *, also: Participant | None = None) -> None:
        for p in list(self.participants.values()):
            if p.role is LessonRole.main or p is also:
                p.send(msg)

    # ------------------------------------------------------------------ join / leave

    def join(self, p: Participant, request_id: str | None = None, ice_servers: Sequence[IceServer] = ()) -> None:
        """Add ``p``: ``joined`` to it, ``participant_joined`` to the others (not for an observer).

        An older session of the same user gets ``leave`` ``replaced`` first.
        """
        if self.closed:
            raise RoomClosedError(self.instance_id)
        for old in [q for q in self.participants.values() if q.user_id == p.user_id]:
            self.remove(old, LeaveReason.replaced, notify_self=True)
        self.participants[p.participant_id] = p
        staged, raised = self._apply_restored(p)
        others = [q.info() for q in self.listed() if q is not p]
        p.send_once(Joined(
            request_id=request_id, session_id=p.participant_id, participant=p.info(), participants=others,
            room=self.room_state(), ice_servers=list(ice_servers), ping_interval_s=PING_INTERVAL_S,
            ping_timeout_s=PING_TIMEOUT_S, resume_grace_s=math.ceil(RESUME_GRACE_S), server_time=now_ms(),
            recent_chat=list(self.chat_lines),
        ))
        self._about(p, ParticipantJoined(participant=p.info()), exclude=p)
        self._log("join", p)
        self._hook("on_joined", p)
        if staged:  # back on stage where the room was before it moved
            self._broadcast(OnStageChanged(participant_id=p.participant_id), exclude=p)
            self._log("stage_on", p)
            self._hook("on_stage_changed", None, p)
        if raised:
            self._to_mains(HandRaised(participant_id=p.participant_id, raised=True, queue=list(self.hands)))
            self._log("hand_raise", p)
        self._changed()

    def remove(self, p: Participant, reason: LeaveReason, *, notify_self: bool = False) -> None:
        """Take ``p`` out (idempotent; does nothing for a session already replaced).

        ``notify_self`` sends it ``leave`` with the reason and asks its connection to close.
        """
        if self.participants.get(p.participant_id) is not p:
            return
        del self.participants[p.participant_id]
        self._cancel_grace(p)
        if notify_self:
            p.send(ServerLeave(reason=reason))
            p.close_socket(_CLOSE_FOR_LEAVE.get(reason, CLOSE_NORMAL))
        if p.participant_id in self.hands:
            self.hands.remove(p.participant_id)
            p.hand_raised = False
            self._to_mains(HandRaised(participant_id=p.participant_id, raised=False, queue=list(self.hands)))
        stepped_down = self.on_stage == p.participant_id
        if stepped_down:
            self.on_stage = None
            p.on_stage = False
            self._broadcast(OnStageChanged(participant_id=None))
            self._log("stage_off", p)
        self._about(p, ParticipantLeft(participant_id=p.participant_id, reason=reason))
        if self._drop_stale_refusals():
            self._broadcast(RoomUpdated(room=self.room_state()))
        self._log("leave", p, {"reason": reason.value})
        if stepped_down:
            self._hook("on_stage_changed", p, None)
        self._hook("on_left", p)
        self._changed()

    def close(self, reason: LeaveReason = LeaveReason.room_closed) -> None:
        """Everyone gets ``leave`` with ``reason`` and their connections close; nobody can join after."""
        self._set_state(State.CLOSED)
        for p in list(self.participants.values()):
            self._cancel_grace(p)
            p.send(ServerLeave(reason=reason))
            p.close_socket(_CLOSE_FOR_LEAVE.get(reason, CLOSE_NORMAL))
            self._log("leave", p, {"reason": reason.value})
        self.participants.clear()
        self.hands.clear()
        self.on_stage = None
        self._hook("on_closed")

    def move_out(self) -> None:
        """This node no longer owns the room (its lease went to another node or may have lapsed): every
        socket is closed with 4010 so that its client fetches a new join token, which names the room's
        next owner, and joins there.  Nobody is told anybody left (the lesson goes on elsewhere); the
        room is closed here and its media released."""
        self._set_state(State.CLOSED)
        for p in list(self.participants.values()):
            self._cancel_grace(p)
            p.close_socket(CLOSE_REDIRECT)
            if p.connected:
                self._log("disconnect", p)
        self.participants.clear()
        self.hands.clear()
        self.on_stage = None
        self._hook("on_closed")

    # ------------------------------------------------------------------ dropped sockets and resume

    def disconnect(self, p: Participant, link: int, notify: LeaveReason | None = None) -> None:
        """The socket ``link`` of ``p`` dropped without ``leave``: keep the session ``RESUME_GRACE_S``.

        Nothing happens if ``p`` has left or resumed on another socket meanwhile.  ``notify``
        sends that socket a ``leave`` with this reason (not replayed) and closes it.  The others
        see nothing until the grace period ends; then ``p`` is removed with reason ``timeout``.
        """
        if self.participants.get(p.participant_id) is not p or p.link != link or not p.connected:
            return
        if notify is not None:
            p.send_to_socket(ServerLeave(reason=notify))
            p.close_socket(_CLOSE_FOR_LEAVE.get(notify, CLOSE_NORMAL))
        p.connected = False
        p.disconnected_at = clock()
        self._log("disconnect", p)
        if RESUME_GRACE_S <= 0:
            self.remove(p, LeaveReason.timeout)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a unit test): expired lazily, at the next resume
            return
        p.grace_timer = loop.call_later(RESUME_GRACE_S, self._expire, p, link)

    def _expire(self, p: Participant, link: int) -> None:
        p.grace_timer = None
        if self.participants.get(p.participant_id) is p and p.link == link and not p.connected:
            self.remove(p, LeaveReason.timeout)

    @staticmethod
    def _cancel_grace(p: Participant) -> None:
        if p.grace_timer is not None:
            p.grace_timer.cancel()
            p.grace_timer = None

    def resume(self, session_id: str, last_seq: int, user_id: int, role: LessonRole, deliver: Deliver,
               close: CloseFn, *, request_id: str | None = None, keep_media: bool = False,
               ice_servers: Sequence[IceServer] | None = None,
               deliver_stamped: DeliverStamped | None = None) -> Participant | None:
        """Attach a new socket to the session ``session_id``; ``None`` if it cannot be resumed.

        It can if the session is in the room, belongs to ``user_id`` with ``role``, has not
        outlived its grace period and still keeps every message after ``last_seq``.  The new
        socket gets ``resumed`` (with ``ice_servers``, fresh TURN credentials, when given) and then
        those messages with their original ``seq``; an old socket of the session still open gets
        ``leave`` ``replaced`` and is closed.
        """
        if self.closed:
            raise RoomClosedError(self.instance_id)
        p = self.participants.get(session_id)
        if p is None or p.user_id != user_id or p.role is not role:
            return None
        if (not p.connected and p.disconnected_at is not None
                and clock() - p.disconnected_at >= RESUME_GRACE_S):
            self.remove(p, LeaveReason.timeout)
            return None
        if not p.can_replay(last_seq):
            return None
        if p.connected:  # the old socket is still open: it is replaced
            p.send_to_socket(ServerLeave(reason=LeaveReason.replaced))
            p.close_socket(_CLOSE_FOR_LEAVE[LeaveReason.replaced])
        self._cancel_grace(p)
        p.link += 1
        p.deliver, p.close, p.deliver_stamped = deliver, close, deliver_stamped
        p.connected, p.disconnected_at = True, None
        self._log("resume", p)
        p.send_to_socket(Resumed(request_id=request_id, session_id=p.participant_id, last_seq=last_seq,
                                 ice_servers=None if ice_servers is None else list(ice_servers),
                                 recent_chat=list(self.chat_lines)))
        for seq, msg in p.replay(last_seq):
            p._deliver(msg, seq)
        self._hook("on_resumed", p, keep_media)
        return p

    def set_live(self) -> None:
        if self.live or self.closed:
            return
        self.live = True
        self._broadcast(RoomUpdated(room=self.room_state()))
        self._changed()

    # ------------------------------------------------------------------ messages

    def handle(self, p: Participant, msg: ClientMessage) -> None:
        """Apply one message of a joined participant; refusals are answered with ``error``."""
        if self.participants.get(p.participant_id) is not p:
            return  # replaced or left meanwhile
        rid = msg.request_id
        if isinstance(msg, Join):
            self.error(p, ErrorCode.not_allowed, "您已加入本课堂，无需重复加入", rid)
            return
        code = allowed(p.role, msg, p.on_stage, p.listen_only)
        if code is not None:
            self.error(p, code, NOT_ALLOWED_ZH, rid)
            return
        if isinstance(msg, _MEDIA):
            self.media.on_message(self, p, msg)  # raises → the endpoint answers error internal
            return
        if isinstance(msg, Ping):
            # about this socket only (a resumed socket has no ping waiting): never replayed, so not kept;
            # kept, every session held one per ping_interval_s until its buffer filled (~180 objects a
            # session in a 45-minute lesson, all scanned by every full collection)
            p.send_to_socket(Pong(request_id=rid, ts=msg.ts, server_time=now_ms()))
        elif isinstance(msg, Chat):
            line = ChatLine(from_participant_id=p.participant_id, from_name=p.info().display_name, text=msg.text,
                            ts=now_ms())
            self.chat_lines.append(line)
            self._broadcast(ChatMessage(**line.model_dump()))
            self._changed()
            self.ack(p, rid)  # the sender's client waits for it to clear its input
            if self.journal is not None:
                try:
                    self.journal.chat(self.instance_id, p, msg.text)
                except Exception:
                    log.exception("journal failed in room %s", self.instance_id)
        elif isinstance(msg, RaiseHand):
            self._raise_hand(p, msg.raised)
            self.ack(p, rid)
        elif isinstance(msg, SetOnStage):
            if self._set_on_stage(p, msg.participant_id, rid):
                self.ack(p, rid)
        elif isinstance(msg, Mute):
            if self._mute(p, msg, rid):
                self.ack(p, rid)
        elif isinstance(msg, MuteAll):
            self._mute_all(p, msg.muted)
            self.ack(p, rid)
        elif isinstance(msg, SetMuted):
            self._set_muted(p, msg, rid)
        elif isinstance(msg, LinkQualityReport):
            self._link_quality(p, msg)
            return
        elif isinstance(msg, Leave):
            self.remove(p, LeaveReason.client_left, notify_self=True)
            return
        else:  # pragma: no cover - every ClientMessage is handled above
            self.error(p, ErrorCode.unknown_type, "暂不支持该消息", rid)
            return
        if not isinstance(msg, Ping):  # chat, hand, stage, mutes: what a snapshot holds
            self._changed()

    def error(self, p: Participant, code: ErrorCode, message: str, request_id: str | None) -> None:
        """Send ``p`` an ``error`` (``message`` in zh-CN, for people)."""
        p.send(Error(code=code, message=message, request_id=request_id))

    def ack(self, p: Participant, request_id: str | None) -> None:
        """Send ``p`` an ``ack`` for ``request_id`` (nothing without one)."""
        if request_id is not None:
            p.send(Ack(request_id=request_id))

    def updated(self, subject: Participant, *, exclude: Participant | None = None) -> None:
        """``participant_updated`` about ``subject`` to everyone (nothing for an observer); publications
        that came or went since the last update are written to the journal."""
        self._log_publications(subject)
        self._about(subject, ParticipantUpdated(participant=subject.info()), exclude=exclude)
        if self._drop_stale_refusals():
            self._broadcast(RoomUpdated(room=self.room_state()))

    def _raise_hand(self, p: Participant, raised: bool) -> None:
        if raised == (p.participant_id in self.hands):
            p.hand_raised = raised
            return
        if raised:
            self.hands.append(p.participant_id)
        else:
            self.hands.remove(p.participant_id)
        p.hand_raised = raised
        self._log("hand_raise" if raised else "hand_lower", p)
        self._to_mains(HandRaised(participant_id=p.participant_id, raised=raised, queue=list(self.hands)), also=p)
        self.updated(p)

    def _target(self, by: Participant, pid: str, rid: str | None) -> Participant | None:
        target = self.participants.get(pid)
        if target is None or target.observer:
            self.error(by, ErrorCode.unknown_participant, "该参与者不在课堂中", rid)
            return None
        return target

    def _set_on_stage(self, by: Participant, pid: str | None, rid: str | None) -> bool:
        target = None
        if pid is not None:
            target = self._target(by, pid, rid)
            if target is None:
                return False
            if target.role not in (LessonRole.receiving, LessonRole.student):
                self.error(by, ErrorCode.not_allowed, "只能请接收课堂或学生上台", rid)
                return False
        if self.on_stage == pid:
            return True
        previous = self.participants.get(self.on_stage) if self.on_stage else None
        self.on_stage = pid
        self._broadcast(OnStageChanged(participant_id=pid))
        if previous is not None:
            previous.on_stage = False
            self._log("stage_off", previous)
            self.updated(previous)
        if target is not None:
            target.on_stage = True
            self._log("stage_on", target)
            if target.participant_id in self.hands:  # going on stage lowers the hand
                self.hands.remove(target.participant_id)
                target.hand_raised = False
                self._log("hand_lower", target)
                self._to_mains(HandRaised(participant_id=target.participant_id, raised=False,
                                          queue=list(self.hands)), also=target)
            self.updated(target)
        self._hook("on_stage_changed", previous, target)
        return True

    def _mute(self, by: Participant, msg: Mute, rid: str | None) -> bool:
        target = self._target(by, msg.participant_id, rid)
        if target is None:
            return False
        before = self._mute_snapshot([target])
        if msg.muted:
            target.muted_by_teacher.add(msg.source)
            target.self_muted.add(msg.source)
        else:
            target.muted_by_teacher.discard(msg.source)
        target.send(Muted(source=msg.source, muted=msg.muted, by=by.participant_id))
        self.updated(target)  # the target too: its own muted_by_teacher (docs/protocol.md, flow 5)
        self._mute_changes([target], before)
        return True

    def _mute_all(self, by: Participant, muted: bool) -> None:
        if self.muted_all == muted:
            return
        self.muted_all = muted
        self._broadcast(RoomUpdated(room=self.room_state()))
        if muted:
            concerned = [q for q in self.listed() if q.role is not LessonRole.main]
            before = self._mute_snapshot(concerned)
            for q in concerned:
                q.self_muted.add(TrackSource.microphone)
                q.send(Muted(source=TrackSource.microphone, muted=True, by=by.participant_id))
            for q in concerned:  # a published microphone now shows muted
                if not before[(q.participant_id, TrackSource.microphone)] and TrackSource.microphone in q.publications:
                    self.updated(q)
            self._mute_changes(concerned, before)

    def _set_muted(self, p: Participant, msg: SetMuted, rid: str | None) -> None:
        before = self._mute_snapshot([p])
        if not msg.muted:
            if msg.source in p.muted_by_teacher:
                self.error(p, ErrorCode.not_allowed, "主讲教师已将您静音，暂不能自行取消", rid)
                return
            if (msg.source is TrackSource.microphone and self.muted_all and not p.on_stage
                    and p.role is not LessonRole.main):
                self.error(p, ErrorCode.not_allowed, "全体静音中，暂不能打开麦克风", rid)
                return
            p.self_muted.discard(msg.source)
        else:
            p.self_muted.add(msg.source)
        self.ack(p, rid)
        if before[(p.participant_id, msg.source)] != p.effective_muted(msg.source):
            if msg.source in p.publications:  # the publication's muted flag shows it to the others
                self.updated(p)
            self._mute_changes([p], before)

    def _link_quality(self, p: Participant, r: LinkQualityReport) -> None:
        update = LinkQualityUpdate(participant_id=p.participant_id, quality=_quality(r), loss=r.loss,
                                   rtt_ms=r.rtt_ms, jitter_ms=r.jitter_ms, bitrate_kbps=r.bitrate_kbps)
        for q in list(self.participants.values()):
            if q is not p and (q.role is LessonRole.main or q.observer):
                q.send(update)


class RoomRegistry:
    """The rooms of this process, by lesson instance id.

    ``on_event`` is the bus handler for topic ``lesson``: ``room_closed`` closes the
    room (everyone gets ``leave`` ``room_closed``), ``lesson_live`` marks it live
    (``room_updated``).  A closed instance id is remembered, so a join racing
    the close cannot reopen the room.
    """

    def __init__(self, media_factory: MediaFactory | None = None, journal: Journal | None = None) -> None:
        self.rooms: dict[int, Room] = {}
        self._closed: set[int] = set()
        self.media_factory = media_factory
        """Makes each new room's ``RoomMedia``; ``None``: ``NullMedia``."""
        self.journal = journal
        """The session event log every room writes to; ``None``: nothing is logged."""
        self.on_change: Callable[[Room], None] | None = None
        """Given to every room opened from now on (``Room.on_change``): the keeper of room snapshots."""
        self.on_moved: Callable[[str], None] | None = None
        """Told ``taken_over`` for a room opened here from another node's snapshot, ``lost`` for one moved out."""

    def get(self, instance_id: int) -> Room | None:
        return self.rooms.get(instance_id)

    def get_or_open(self, instance_id: int, restore: RoomSnapshot | None = None) -> Room:
        """The lesson's room here, opened now if it is not (from ``restore``, the snapshot its previous
        node left, when there is one)."""
        if instance_id in self._closed:
            raise RoomClosedError(instance_id)
        room = self.rooms.get(instance_id)
        if room is None:
            media = self.media_factory(instance_id) if self.media_factory is not None else None
            room = self.rooms[instance_id] = Room(instance_id, media, self.journal)
            if restore is not None:
                room.restore(restore)
                self._moved("taken_over")
            room.on_change = self.on_change
        return room

    def close(self, instance_id: int, reason: LeaveReason = LeaveReason.room_closed) -> None:
        self._closed.add(instance_id)
        room = self.rooms.pop(instance_id, None)
        if room is not None:
            room.close(reason)

    def move_out(self, instance_ids: list[int] | None = None) -> list[int]:
        """The rooms of ``instance_ids`` (None: every room here) leave this node (``Room.move_out``); the
        lessons may open again here later (they are not closed).  Answers the lessons moved out."""
        moved = []
        for instance_id in list(self.rooms) if instance_ids is None else instance_ids:
            room = self.rooms.pop(instance_id, None)
            if room is not None:
                room.move_out()
                moved.append(instance_id)
                self._moved("lost")
        return moved

    def _moved(self, side: str) -> None:
        if self.on_moved is not None:
            try:
                self.on_moved(side)
            except Exception:
                log.exception("rooms: counting a moved room failed")

    def on_event(self, topic: str, event: dict[str, Any]) -> None:
        try:
            kind = event.get("type")
            instance_id = int(event["instance_id"])
        except (AttributeError, KeyError, TypeError, ValueError):
            log.warning("rooms: ignored a malformed %s event", topic)
            return
        if kind == "room_closed":
            self.close(instance_id, LeaveReason.room_closed)
        elif kind == "lesson_live":
            room = self.rooms.get(instance_id)
            if room is not None:
                room.set_live()
        elif kind == "room_opened":
            self._closed.discard(instance_id)

    def on_account_event(self, topic: str, event: dict[str, Any]) -> None:
        """Bus handler for topic ``account``: ``user_deactivated`` ends that user's sessions in every
        room at once (``leave`` ``kicked``, socket closed; a session waiting for a resume too)."""
        try:
            kind = event.get("type")
            user_id = int(event["user_id"])
        except (AttributeError, KeyError, TypeError, ValueError):
            log.warning("rooms: ignored a malformed %s event", topic)
            return
        if kind != "user_deactivated":
            return
        for room in list(self.rooms.values()):
            for p in [q for q in room.participants.values() if q.user_id == user_id]:
                room.remove(p, LeaveReason.kicked, notify_self=True)
