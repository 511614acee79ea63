"""The signaling WebSocket of a live lesson: ``/api/v1/lessons/{instance_id}/ws``.

Media messages go to the room's ``RoomMedia`` (``signaling.room``): the one
made by ``app.state.media_factory(instance_id)`` if the app has a factory,
else ``NullMedia``, which answers them with an ``error``.

Wiring (done by the app, not here)::

    from signaling.endpoint import attach, router as signaling_router
    app.include_router(signaling_router)   # the route carries its full path
    attach(app)                             # app.state.rooms, subscribed to the "lesson" bus topic
    app.state.media_factory = make_media    # optional, before or after attach: Callable[[int], RoomMedia]

and, in the app's ``__call__`` (``server.main.SanKe``), a socket whose ``lesson_socket_id`` is not None goes
to ``serve_lesson_socket`` before the middleware stack: the same handler (``lesson_ws``), without the
stack's layers living as long as the socket.

Per connection: a reader task (frames → ``Room.handle``) and a writer task (the frames
that could not be written at once, when the socket's buffer was full, and the close;
``Connection``); when either ends the other is cancelled.  Before
anything is read, the client address must pass ``signaling.gate.AddressGate``
(``app.state.signaling_gate``: unjoined sockets and new sockets per address), else
the socket is closed with 4029.  The first message must be a ``join`` within
``JOIN_TIMEOUT_S``; a refused join gets ``error`` and the socket is closed with one
of the close codes of ``signaling.room`` (4000 protocol, 4001 token, 4003 not
allowed, 4004 room not open/closed).  A join token admits once: its id is remembered
(``scheduler.join_tokens``) with the session it created, and presented again it
only resumes that session; a token of a deactivated user, or one issued before
the user's ``token_version`` was bumped, is refused.  With several nodes, a ``join``
whose token is good but whose lesson's room another node owns (``server.core.placement``)
gets ``redirect`` with that node's socket and is closed with 4010, before its token is
used, so there is never a second copy of a room.  Frames larger than
``MAX_FRAME_BYTES`` are refused by the WebSocket layer before they are buffered
(``server.serving``: close 1009); the check here (``too_large``) is for servers
started otherwise.

``seq`` belongs to the session (``signaling.room.Participant``), which stamps and
keeps what it is sent; only the errors before ``joined`` are numbered by the
socket, and a fresh session goes on from there.  A socket that ends without
``leave`` (the client vanished, ``PING_TIMEOUT_S`` of silence, a client that does
not read) only detaches the session: ``Room.disconnect`` keeps it
``RESUME_GRACE_S`` for a ``join`` with ``resume_session_id`` (``Room.resume``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, FastAPI, WebSocket
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocketState

from media.ice import browser_ice_servers
from scheduler import join_tokens, records
from scheduler.directory import ACCOUNT_TOPIC
from scheduler.join_tokens import Claim
from scheduler.lifecycle import TOPIC, room_is_open
from scheduler.models import LessonInstance, ReceiverMode, SeriesReceiver, User
from scheduler.room_weight import lesson_weight
from server.core.config import Settings
from server.core.placement import NoNodeError
from server.core.security import JoinClaims, TokenError, decode_join_token
from signaling import annotation, quiz
from signaling.messages import (
    Error,
    ErrorCode,
    IceServer,
    Join,
    LeaveReason,
    LessonRole,
    ProtocolError,
    Redirect,
    parse_client_message,
    wire_frame,
)
from signaling.gate import AddressGate, Slot
from signaling.room import (
    CLOSE_AUTH,
    CLOSE_INTERNAL,
    CLOSE_NOT_ALLOWED,
    CLOSE_PROTOCOL,
    CLOSE_REDIRECT,
    CLOSE_ROOM_NOT_OPEN,
    CLOSE_TIMEOUT,
    CLOSE_TOO_MANY,
    PING_TIMEOUT_S,
    MediaFactory,
    NullMedia,
    Participant,
    Room,
    RoomClosedError,
    RoomMedia,
    RoomRegistry,
    RoomSnapshot,
    new_session_id,
)

log = logging.getLogger(__name__)

router = APIRouter()

JOIN_TIMEOUT_S = 10.0
REFUSALS_LOG_EVERY_S = 60.0
MAX_OUTBOX = 1000
"""Messages queued for a client that does not read; beyond it the connection is closed."""


def _media_factory(app: FastAPI) -> MediaFactory:
    """Each new room's media: ``app.state.media_factory`` when it is set (looked up when the room opens,
    so the media module may set it before or after ``attach``), else ``NullMedia``."""

    def make(instance_id: int) -> RoomMedia:
        factory = getattr(app.state, "media_factory", None)
        return factory(instance_id) if factory is not None else NullMedia()

    return make


def attach(app: FastAPI) -> RoomRegistry:
    """Create the registry, subscribe it to lifecycle and account events (a deactivated user's sessions
    end at once) and store it on ``app.state.rooms``; the address gate on ``app.state.signaling_gate``
    (from ``app.state.settings``).

    Its rooms write their events to ``app.state.eventlog`` when the app has one."""
    registry = RoomRegistry(_media_factory(app), journal=getattr(app.state, "eventlog", None))
    app.state.rooms = registry
    app.state.signaling_gate = _new_gate(app)
    unsubscribe = [app.state.bus.subscribe(TOPIC, registry.on_event),
                   app.state.bus.subscribe(ACCOUNT_TOPIC, registry.on_account_event)]

    def unsubscribe_all() -> None:
        for u in unsubscribe:
            u()

    app.state.rooms_unsubscribe = unsubscribe_all
    return registry


class _Close:
    def __init__(self, code: int) -> None:
        self.code = code


class _Failed:
    """Writing to the socket failed (it is gone): the writer ends the connection with ``exc``."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class _Unfinished:
    """A write that had to wait (the socket's buffer is full: flow control), to be finished by the writer
    before anything queued after it: the write's coroutine, stepped by hand once, and what it awaits."""

    def __init__(self, coro: Any, awaiting: Any) -> None:
        self.coro, self.awaiting = coro, awaiting

    async def finish(self) -> None:
        coro, awaiting = self.coro, self.awaiting
        while True:
            try:
                if awaiting is None:  # a bare yield: one turn of the loop
                    await asyncio.sleep(0)
                else:  # a future: what a task does with one its coroutine yields, then wait for it
                    awaiting._asyncio_future_blocking = False
                    await awaiting
            except BaseException as exc:  # cancelled: the write's coroutine hears it and cleans up
                try:
                    awaiting = coro.throw(exc)
                except StopIteration:
                    return
                continue
            try:
                awaiting = coro.send(None)
            except StopIteration:
                return


class _JoinRefused(Exception):
    def __init__(self, code: ErrorCode, message: str, close_code: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.close_code = close_code


@dataclass(frozen=True)
class _Seat:
    display_name: str
    listen_only: bool
    claim: Claim
    """What ``scheduler.join_tokens`` knew of the token: first use, or the session it is bound to."""


class Connection:
    """One socket.  A frame is written at once, by whoever delivers it (``_write``), when nothing is
    queued before it and the socket takes it without waiting, which is the usual case; otherwise it is
    queued for the writer task, which writes the queue in order.

    Written at once, not by a writer task woken per message: a task that waits for each next message
    re-arms its wait (a future and a coroutine) every time, thousands of sockets' worth of those live
    about a second each, long enough to reach the garbage collector's oldest generation, and so bring
    full collections (pauses of the whole loop) on sooner; and a delivery costs no task switch.  The
    writer still waits, once, for the rare frame that has to queue."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.outbox: asyncio.Queue[Any] = asyncio.Queue()
        self.seq = 0
        self.closing = False
        self.closed = asyncio.Event()
        self._writing = False
        """The writer is writing a frame it took off the queue (nothing may overtake it)."""
        self._deadline = 0.0
        """When the frame ``receive`` waits for is due (``loop.time()``)."""
        self._alarm: asyncio.TimerHandle | None = None
        self._alarm_at = 0.0
        self._waiting: asyncio.Task[Any] | None = None
        """The task inside ``receive``, while it waits for a frame."""
        self._rang = False

    def deliver(self, msg: Any) -> None:
        """Send ``msg``; one without ``seq`` (an error before ``joined``) is numbered by the socket."""
        if self.closing:
            return
        if msg.seq == 0:
            self.seq += 1
            msg = msg.model_copy(update={"seq": self.seq})
        else:
            self.seq = max(self.seq, msg.seq)
        self._write(wire_frame(msg, msg.seq))

    def deliver_stamped(self, msg: Any, seq: int) -> None:
        """Send the frame of ``msg`` (shared by every session of a broadcast) with this session's ``seq``:
        serialised while the broadcast goes round, so it is serialised once for all its sockets."""
        if self.closing:
            return
        self.seq = max(self.seq, seq)
        self._write(wire_frame(msg, seq))

    def _write(self, frame: str) -> None:
        """``frame`` to the socket now if nothing is queued before it, else after what is queued."""
        if self._writing or not self.outbox.empty():
            if self.outbox.qsize() >= MAX_OUTBOX:
                log.warning("signaling: client does not read, closing")
                self.close(CLOSE_TIMEOUT)
                return
            self.outbox.put_nowait(frame)
            return
        coro = self.ws.send_text(frame)
        try:
            awaiting = coro.send(None)  # the write runs to its end here unless the socket's buffer is full
        except StopIteration:
            return
        except Exception as exc:  # the socket is gone: the writer ends the connection
            self.closing = True
            self.outbox.put_nowait(_Failed(exc))
            return
        self.outbox.put_nowait(_Unfinished(coro, awaiting))  # flow control: the writer finishes it first

    def close(self, code: int) -> None:
        """Close after the frames already queued."""
        if not self.closing:
            self.closing = True
            self.outbox.put_nowait(_Close(code))

    async def writer(self) -> None:
        """Writes what had to queue, in order; closes the socket when asked."""
        try:
            while True:
                item = await self.outbox.get()
                if isinstance(item, _Close):
                    if self.ws.application_state is WebSocketState.CONNECTED:
                        await self.ws.close(item.code)
                    return
                if isinstance(item, _Failed):
                    raise item.exc
                self._writing = True
                try:
                    if isinstance(item, _Unfinished):
                        await item.finish()
                    else:
                        await self.ws.send_text(item)
                finally:
                    self._writing = False
        finally:
            self.closed.set()

    async def finish(self, code: ErrorCode, message: str, close_code: int, request_id: str | None = None) -> None:
        """``error`` then close; returns when the writer has closed the socket."""
        self.deliver(Error(code=code, message=message, request_id=request_id))
        self.close(close_code)
        await self.closed.wait()

    async def receive(self, timeout: float) -> str | bytes | None:
        """The next frame, or None when the client disconnected; ``TimeoutError`` after ``timeout`` s.

        The deadline is a number that each call moves; one timer per socket (``_ring``) looks at it when it
        is due and is set again only then, for what is left: a frame costs no timer.  A socket gets a frame
        every few seconds (its pings) and waits for the next one seconds long, so a timer (or a task, a
        future and a callback, with ``wait_for``) made for each frame lives long enough to reach the
        garbage collector's old generation; thousands of sockets' worth of them made its collections (pauses
        of the whole loop) longer and more frequent.  Rung while the socket's task waits here, the timer
        cancels the wait, as ``asyncio.timeout`` would; not while it does anything else."""
        loop = asyncio.get_running_loop()
        self._deadline = deadline = loop.time() + timeout
        if self._alarm is None or self._alarm_at > deadline:
            if self._alarm is not None:
                self._alarm.cancel()
            self._alarm_at = deadline
            self._alarm = loop.call_at(deadline, self._ring)
        task = self._waiting = asyncio.current_task()
        cancelling = task.cancelling() if task is not None else 0
        try:
            message = await self.ws.receive()
        except asyncio.CancelledError:
            if self._rang and task is not None:
                self._rang = False
                if task.uncancel() <= cancelling:  # cancelled by the deadline only
                    raise TimeoutError from None
            raise
        finally:
            self._waiting = None
        if message["type"] == "websocket.disconnect":
            return None
        if message.get("text") is not None:
            return message["text"]
        return message.get("bytes") or b""

    def _ring(self) -> None:
        """The timer is due: set again for the deadline if a frame moved it, else end the wait."""
        self._alarm = None
        loop = asyncio.get_running_loop()
        if self._deadline > loop.time() + 0.001:  # a frame came meanwhile: what is left of the new deadline
            self._alarm_at = self._deadline
            self._alarm = loop.call_at(self._deadline, self._ring)
        elif self._waiting is not None and not self._rang:
            self._rang = True
            self._waiting.cancel()

    def stop_timer(self) -> None:
        """The socket is done: its timer goes."""
        if self._alarm is not None:
            self._alarm.cancel()
            self._alarm = None


def _open_instance(s: Any, instance_id: int) -> LessonInstance:
    """The lesson whose room is open now, or ``_JoinRefused`` saying why not."""
    inst = s.get(LessonInstance, instance_id)
    if inst is None:
        raise _JoinRefused(ErrorCode.token_invalid, "课次不存在", CLOSE_AUTH)
    if inst.room_closed_at is not None:
        raise _JoinRefused(ErrorCode.room_closed, "本节课的课堂已关闭", CLOSE_ROOM_NOT_OPEN)
    if not room_is_open(inst):
        raise _JoinRefused(ErrorCode.room_not_open, "课堂尚未开放，请在上课前几分钟再进入", CLOSE_ROOM_NOT_OPEN)
    return inst


def _seat(session_factory: Any, claims: JoinClaims, instance_id: int, session_id: str) -> _Seat:
    """Check the room and the user in the database and mark the token used by ``session_id``, the
    session the join is about to create or resume (sync; run in a thread)."""
    with session_factory() as s:
        inst = _open_instance(s, instance_id)
        user = s.get(User, claims.user_id)
        if user is None:
            raise _JoinRefused(ErrorCode.token_invalid, "入会凭证无效", CLOSE_AUTH)
        if not user.is_active:
            raise _JoinRefused(ErrorCode.token_invalid, "账号已停用", CLOSE_AUTH)
        if user.token_version != claims.token_version:  # password reset or deactivated since it was issued
            raise _JoinRefused(ErrorCode.token_invalid, "入会凭证已失效，请重新获取", CLOSE_AUTH)
        listen_only = False
        if claims.lesson_role == LessonRole.receiving.value and claims.classroom_id is not None:
            mode = s.scalar(select(SeriesReceiver.mode).where(SeriesReceiver.series_id == inst.series_id,
                                                              SeriesReceiver.classroom_id == claims.classroom_id))
            listen_only = mode is ReceiverMode.listen_only
        claim = join_tokens.claim(s, jti=claims.jti, user_id=user.id, session_id=session_id,
                                  expires_at=claims.expires_at, now=int(time.time()))
        s.commit()
        return _Seat(display_name=user.display_name, listen_only=listen_only, claim=claim)


def _bind(session_factory: Any, jti: str, session_id: str) -> None:
    """The token now belongs to ``session_id`` (sync; run in a thread)."""
    with session_factory() as s:
        join_tokens.bind(s, jti, session_id)
        s.commit()


@dataclass(frozen=True)
class _Admission:
    user_id: int
    role: LessonRole
    classroom_id: int | None
    seat: _Seat
    jti: str
    session_id: str
    """The id of the session a fresh join creates."""
    restore: RoomSnapshot | None = None
    """The snapshot the room's previous node left, when the room opens here with this join."""
    board: list[Stroke] | None = None
    """The shared screen's annotation as the lesson's log holds it, when the room opens here with this join."""


async def _admit(ws: WebSocket, instance_id: int, join: Join) -> _Admission:
    """Token, lesson, room; raises ``_JoinRefused``."""
    app = ws.app
    try:
        claims = decode_join_token(join.token, app.state.settings.effective_secret_key())
    except TokenError as exc:
        code = ErrorCode.token_expired if exc.code == "token_expired" else ErrorCode.token_invalid
        message = "入会凭证已过期，请重新获取" if code is ErrorCode.token_expired else "入会凭证无效"
        raise _JoinRefused(code, message, CLOSE_AUTH) from None
    if claims.instance_id != instance_id:
        raise _JoinRefused(ErrorCode.token_invalid, "入会凭证不属于本节课", CLOSE_AUTH)
    try:
        role = LessonRole(claims.lesson_role)
    except ValueError:
        raise _JoinRefused(ErrorCode.not_allowed, "入会凭证中的课堂角色无效", CLOSE_NOT_ALLOWED) from None
    await _owned_here(app, instance_id)  # before the token is used: the owner must still accept it
    fresh_id = new_session_id()
    # bound before anyone hears of the session: a client may drop and resume with the same token at once
    seat = await run_in_threadpool(_seat, app.state.session_factory, claims, instance_id,
                                   join.resume_session_id or fresh_id)
    if not seat.claim.first_use and join.resume_session_id != seat.claim.session_id:  # not its own session
        raise _JoinRefused(ErrorCode.token_invalid, "入会凭证已使用，请重新获取", CLOSE_AUTH)
    restore = board = None
    if _registry(ws).get(instance_id) is None:  # opening here: as its last node (or this one before) left it
        keeper = getattr(app.state, "room_states", None)
        if keeper is not None:
            restore = await keeper.load(instance_id)
        board = await run_in_threadpool(_logged_board, app.state.session_factory, instance_id)
    return _Admission(user_id=claims.user_id, role=role, classroom_id=claims.classroom_id, seat=seat,
                      jti=claims.jti, session_id=fresh_id, restore=restore, board=board)


def _logged_board(session_factory: Any, instance_id: int) -> list[Stroke]:
    """The annotation board the lesson's event log leaves (sync; run in a thread)."""
    with session_factory() as s:
        return annotation.replayed(change for _, change in records.annotation_log(s, instance_id))


class _Redirected(Exception):
    def __init__(self, ws_url: str, node_id: str) -> None:
        super().__init__(ws_url)
        self.ws_url = ws_url
        self.node_id = node_id


def _weight(session_factory: Any, instance_id: int) -> int:
    """The lesson's expected consumers, to place its room; a room that is not open is not placed
    (``_JoinRefused``, as ``_seat`` would refuse it) (sync; run in a thread)."""
    with session_factory() as s:
        inst = _open_instance(s, instance_id)
        return lesson_weight(inst)


async def _owned_here(app: FastAPI, instance_id: int) -> None:
    """With several nodes: the lesson's room is this node's (placed now if it has no live owner),
    else ``_Redirected`` to its owner."""
    placement = getattr(app.state, "placement", None)
    if placement is None or not placement.clustered:
        return
    try:
        placed = await placement.place(
            instance_id, lambda: run_in_threadpool(_weight, app.state.session_factory, instance_id))
    except NoNodeError:
        raise _JoinRefused(ErrorCode.internal, "暂无可接收课堂的服务节点，请稍后重试", CLOSE_INTERNAL) from None
    except ConnectionError:
        raise _JoinRefused(ErrorCode.internal, "集群协调服务暂不可用，请稍后重试", CLOSE_INTERNAL) from None
    if not placed.here:
        raise _Redirected(placed.ws_url(instance_id), placed.node_id)


def _enter(ws: WebSocket, conn: Connection, instance_id: int, join: Join, adm: _Admission) -> tuple[Room, Participant]:
    """Resume the session ``join`` names if it can be (same user, role and lesson, within the grace,
    its messages still kept), else join afresh.  A token used before may only resume its session."""
    room = _registry(ws).get_or_open(instance_id, adm.restore)
    if adm.board:
        annotation.seed(room, adm.board)
    if join.resume_session_id is not None and join.last_seq is not None:
        resumed = room.resume(join.resume_session_id, join.last_seq, adm.user_id, adm.role, conn.deliver,
                              conn.close, request_id=join.request_id, keep_media=join.keep_media,
                              ice_servers=_ice_servers(ws, adm.user_id), deliver_stamped=conn.deliver_stamped)
        if resumed is not None:
            return room, resumed
    if not adm.seat.claim.first_use:  # its session is gone (left, timed out): the token admits nobody
        raise _JoinRefused(ErrorCode.token_invalid, "入会凭证已使用，请重新获取", CLOSE_AUTH)
    participant = Participant(
        participant_id=adm.session_id, user_id=adm.user_id, display_name=adm.seat.display_name, role=adm.role,
        classroom_id=adm.classroom_id, listen_only=adm.seat.listen_only, deliver=conn.deliver, close=conn.close,
        deliver_stamped=conn.deliver_stamped, seq=conn.seq,  # the session's numbering goes on from the socket's errors before joined
    )
    room.join(participant, join.request_id, _ice_servers(ws, adm.user_id))
    return room, participant


def _ice_servers(ws: WebSocket, user_id: int) -> list[IceServer]:
    """The configured STUN/TURN servers as browsers take them (``joined``/``resumed`` ``ice_servers``):
    TURN credentials minted for ``user_id`` now, when the server mints them (``SANKE_TURN_SECRET``)."""
    policy = getattr(ws.app.state, "ice_policy", None)
    if policy is None:
        return []
    return [IceServer.model_validate(d) for d in browser_ice_servers(policy, user_id)]


def _new_gate(app: FastAPI) -> AddressGate:
    settings = getattr(app.state, "settings", None) or Settings()
    return AddressGate(settings.signaling_unjoined_per_address, settings.signaling_connects_per_address_per_minute)


def _gate(ws: WebSocket) -> AddressGate:
    gate = getattr(ws.app.state, "signaling_gate", None)
    if gate is None:  # not attached
        gate = ws.app.state.signaling_gate = _new_gate(ws.app)
    return gate


_TOO_MANY_REASON = "同一地址的连接过多，请稍后重试"


def _registry(ws: WebSocket) -> RoomRegistry:
    registry = getattr(ws.app.state, "rooms", None)
    if registry is None:  # not attached: rooms work, bus events do not reach them
        log.warning("signaling: attach(app) was not called; room_closed events will not close rooms")
        registry = ws.app.state.rooms = RoomRegistry(_media_factory(ws.app))
    return registry


async def _read(ws: WebSocket, conn: Connection, instance_id: int, state: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + JOIN_TIMEOUT_S
    # --- until joined
    while True:
        try:
            raw = await conn.receive(max(0.0, deadline - loop.time()))
        except TimeoutError:
            await conn.finish(ErrorCode.not_joined, "未在 10 秒内发送 join 消息", CLOSE_PROTOCOL)
            return
        if raw is None:
            return
        try:
            msg = parse_client_message(raw)
        except ProtocolError as exc:
            if exc.code is ErrorCode.unsupported_version:
                await conn.finish(exc.code, exc.message_zh, CLOSE_PROTOCOL, exc.request_id)
                return
            conn.deliver(Error(code=exc.code, message=exc.message_zh, request_id=exc.request_id))
            continue
        if not isinstance(msg, Join):
            conn.deliver(Error(code=ErrorCode.not_joined, message="请先发送 join 加入课堂", request_id=msg.request_id))
            continue
        try:
            admission = await _admit(ws, instance_id, msg)
            room, participant = _enter(ws, conn, instance_id, msg, admission)
        except _JoinRefused as exc:
            await conn.finish(exc.code, exc.message, exc.close_code, msg.request_id)
            return
        except _Redirected as exc:  # the room lives on another node: one copy of it, there
            conn.deliver(Redirect(ws_url=exc.ws_url, node_id=exc.node_id, request_id=msg.request_id))
            conn.close(CLOSE_REDIRECT)
            await conn.closed.wait()
            return
        except RoomClosedError:
            await conn.finish(ErrorCode.room_closed, "本节课的课堂已关闭", CLOSE_ROOM_NOT_OPEN, msg.request_id)
            return
        except Exception:  # the database is down, ...: tell the client, keep the server up
            log.exception("signaling: join to lesson %s failed", instance_id)
            await conn.finish(ErrorCode.internal, "服务器内部错误，请稍后重试", CLOSE_INTERNAL, msg.request_id)
            return
        link = participant.link
        state["room"], state["participant"], state["link"] = room, participant, link
        if admission.seat.claim.session_id != participant.participant_id:  # a resume fell back to a fresh join
            try:  # from now on the token can only resume this session
                await run_in_threadpool(_bind, ws.app.state.session_factory, admission.jti,
                                        participant.participant_id)
            except Exception:  # the token stays used and bound to nothing: it admits nobody again
                log.exception("signaling: binding a join token in lesson %s failed", instance_id)
        state["slot"].release()  # joined: no longer one of its address's unjoined sockets
        await quiz.send_current(ws.app.state.session_factory, room, participant)  # a reload gets it back
        annotation.send_current(room, participant)  # and what is drawn on the shared screen
        break
    # --- joined: every reply goes through the session, which numbers and keeps it
    while True:
        try:
            raw = await conn.receive(PING_TIMEOUT_S)
        except TimeoutError:  # silence: this socket is done, the session waits for a resume
            room.disconnect(participant, link, LeaveReason.timeout)
            await conn.closed.wait()
            return
        if raw is None or participant.link != link:  # gone, or resumed on another socket
            return
        try:
            msg = parse_client_message(raw)
        except ProtocolError as exc:  # one line, no traceback: the client's mistake, not the server's
            log.info("signaling: lesson %s, participant %s: frame refused, %s (request %r): %r",
                     instance_id, participant.participant_id, exc.code.value, exc.request_id, exc.message_zh)
            participant.send(Error(code=exc.code, message=exc.message_zh, request_id=exc.request_id))
            continue
        try:
            if isinstance(msg, quiz.QUIZ_MESSAGES):  # stored before it is acked: awaited here
                await quiz.handle(ws.app.state.session_factory, room, participant, msg)
            elif isinstance(msg, annotation.ANNOTATION_MESSAGES):
                annotation.handle(room, participant, msg)
            else:
                room.handle(participant, msg)
        except Exception:
            log.exception("signaling: %s failed in room %s", msg.type, instance_id)
            participant.send(Error(code=ErrorCode.internal, message="服务器内部错误，操作未执行",
                                   request_id=msg.request_id))
        if conn.closing:  # left, replaced or room closed: let the writer flush and close
            await conn.closed.wait()
            return


LESSON_SOCKET_PATH = re.compile(r"/api/v1/lessons/([0-9]+)/ws")
"""The lesson WebSocket's path with a lesson id of digits: what ``lesson_socket_id`` takes."""


def lesson_socket_id(scope: Scope) -> int | None:
    """The lesson of a WebSocket to ``/api/v1/lessons/{id}/ws`` whose id is digits, else None.

    The app (``server.main.SanKe``) serves such a socket by ``serve_lesson_socket`` before its middleware
    stack: the stack's layers (error and exception middleware, routing, the dependency solver's exit
    stacks: about 20 coroutines, closures and stacks) would otherwise live, waiting, as long as the socket,
    thousands of sockets' worth of objects for the garbage collector to scan, and wrap every frame sent.
    None of them does anything for this socket; every check of its own is in ``lesson_ws``.  Any other
    path (an id that is not a number: FastAPI's validation refuses it) goes through the stack to ``router``."""
    if scope["type"] != "websocket":
        return None
    path, root = scope["path"], scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    match = LESSON_SOCKET_PATH.fullmatch(path)
    return int(match[1]) if match is not None else None


async def serve_lesson_socket(scope: Scope, receive: Receive, send: Send, instance_id: int) -> None:
    """The lesson WebSocket as a bare ASGI app (``lesson_socket_id``); ``scope["app"]`` is the app."""
    scope["path_params"] = {"instance_id": instance_id}
    await lesson_ws(WebSocket(scope, receive=receive, send=send), instance_id)


@router.websocket("/api/v1/lessons/{instance_id}/ws")
async def lesson_ws(websocket: WebSocket, instance_id: int) -> None:
    address = websocket.client.host if websocket.client is not None else None
    slot = _gate(websocket).enter(address)
    await websocket.accept()
    if not isinstance(slot, Slot):  # accepted only to say why: a refused handshake tells a browser nothing
        refused = _gate(websocket).refusals_to_report(REFUSALS_LOG_EVERY_S)
        if refused:  # one line a minute at most, however many are refused
            log.warning("signaling: refused %d socket(s) before join (last: %s from %s); see "
                        "SANKE_SIGNALING_UNJOINED_PER_ADDRESS", refused, slot, address)
        with contextlib.suppress(Exception):
            await websocket.close(CLOSE_TOO_MANY, _TOO_MANY_REASON)
        return
    try:
        await _serve(websocket, instance_id, slot)
    finally:
        slot.release()


async def _serve(websocket: WebSocket, instance_id: int, slot: Slot) -> None:
    conn = Connection(websocket)
    state: dict[str, Any] = {"slot": slot}
    reader = asyncio.create_task(_read(websocket, conn, instance_id, state))
    writer = asyncio.create_task(conn.writer())
    try:
        done, pending = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                exc = task.exception()
                if not _is_disconnect(exc):
                    log.error("signaling connection failed", exc_info=exc)
    finally:
        for task in (reader, writer):  # also when this handler itself is cancelled (shutdown)
            task.cancel()
        conn.stop_timer()
        room: Room | None = state.get("room")
        participant: Participant | None = state.get("participant")
        if room is not None and participant is not None:
            try:  # no leave: keep the session for a resume (nothing if it left or moved to another socket)
                room.disconnect(participant, state["link"])
            except Exception:
                log.exception("signaling: detaching from room %s failed", instance_id)
        if websocket.application_state is WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):  # the client may be gone already
                await websocket.close(CLOSE_INTERNAL if not conn.closing else 1000)


def _is_disconnect(exc: BaseException) -> bool:
    from starlette.websockets import WebSocketDisconnect

    return isinstance(exc, (WebSocketDisconnect, RuntimeError, OSError))
