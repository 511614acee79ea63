"""Every signaling message of a live lesson, as pydantic models.

The client (classroom terminal, home student, observer) and the server talk
JSON over one WebSocket.  ``ClientMessage`` is what a client may send and
``ServerMessage`` is what the server may send; both are unions keyed on
``type``.  ``docs/protocol.md`` tells the flows and shows one example per
message; ``tests/signaling/test_messages.py`` parses every example with these
unions, so the doc cannot drift from the code.

Envelope: every message has ``type``; a client may add ``request_id`` and the
server echoes it on the reply (``ack``, ``error``, ``answer``, ``pong``); every
server message carries ``seq``, increasing by one per session (not per socket:
it goes on across a resume), which a client hands back in ``join.last_seq`` to
resume.

Compatibility: a ``type`` name is never reused.  A retired message keeps its
model, marked deprecated in its docstring, until ``PROTOCOL_VERSION`` moves on.

This module is pure data: no asyncio, no I/O.  ``parse_client_message`` turns
a frame into a message or raises ``ProtocolError``; ``allowed`` says whether a
lesson role may send a message right now.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from media.candidate import MAX_CHARS as CANDIDATE_MAX_CHARS
from media.candidate import Candidate

PROTOCOL_VERSION = 1
"""Bumped on any change a client of the previous version could not follow."""

MAX_FRAME_BYTES = 64 * 1024
"""A client frame larger than this is refused with ``too_large`` before parsing."""

MAX_SDP_CHARS = 100_000
MAX_CHAT_CHARS = 500


# --------------------------------------------------------------------------- enums


class LessonRole(StrEnum):
    """The role fixed by the join token (``server.core.security.JoinClaims.lesson_role``)."""

    main = "main"
    """The main classroom (主讲课堂): teacher or substitute, or the main classroom's terminal."""
    receiving = "receiving"
    """A receiving classroom (接收课堂): its terminal or its assistant teacher."""
    student = "student"
    """A home student or an attending teacher (名校网络课堂 / 名师课堂)."""
    observer = "observer"
    """A researcher on patrol (巡课): receives only, is never listed to others."""


class TrackSource(StrEnum):
    camera = "camera"
    microphone = "microphone"
    screen = "screen"
    """Shared screen / courseware (同屏展示); only the main classroom publishes it."""


class VideoLayer(StrEnum):
    """A simulcast layer, lowest to highest."""

    low = "low"
    medium = "medium"
    high = "high"


class PeerTarget(StrEnum):
    """Which of the client's two peer connections an ICE candidate belongs to.

    The client *offers* on its ``publisher`` connection (its own camera, microphone,
    screen); the server *offers* on the ``subscriber`` connection (everything the
    client receives).  One side offers per connection, so offers never collide.
    """

    publisher = "publisher"
    subscriber = "subscriber"


class ErrorCode(StrEnum):
    bad_message = "bad_message"
    """Not JSON, not an object, or a field is missing, extra, of the wrong type or out of bounds."""
    unknown_type = "unknown_type"
    """``type`` names no client message of this protocol version."""
    unsupported_version = "unsupported_version"
    """``join.protocol_version`` is not the server's; the client must upgrade."""
    too_large = "too_large"
    """The frame is larger than 64 KiB."""
    not_joined = "not_joined"
    """Anything but ``join`` sent before the server answered ``joined``."""
    not_allowed = "not_allowed"
    """The lesson role may not do this now (e.g. an observer publishing)."""
    unknown_participant = "unknown_participant"
    """The message names a participant who is not in the room."""
    token_invalid = "token_invalid"
    """The join token is forged, malformed or for another lesson."""
    token_expired = "token_expired"
    """The join token expired; ask the API for a new one."""
    room_not_open = "room_not_open"
    """The lesson's room is not open yet (it opens a few minutes before the start)."""
    room_closed = "room_closed"
    """The lesson's room has closed."""
    bad_sdp = "bad_sdp"
    """The SDP could not be applied."""
    bad_candidate = "bad_candidate"
    """An ``ice_candidate`` that is malformed: a field missing or of the wrong type, or a candidate line that
    is not RFC 8839 grammar (``media.candidate``)."""
    seats_full = "seats_full"
    """A home student of a streamed 名校网络课堂 gets no WebRTC seat: every media worker of the node is full.
    Sent once, without ``request_id``; the student's subscriptions are kept and connected as soon as a seat is
    free (an ``offer`` then arrives).  Hand raising and chat work meanwhile."""
    rate_limited = "rate_limited"
    """Too many messages (chat, raise hand, ...) in a short time."""
    internal = "internal"
    """A server fault; the message was not applied."""


class LeaveReason(StrEnum):
    client_left = "client_left"
    """The participant sent ``leave`` or closed the page."""
    room_closed = "room_closed"
    """The lesson's room closed (its end plus the grace period passed)."""
    kicked = "kicked"
    """Removed by the main classroom or an administrator."""
    server_shutdown = "server_shutdown"
    """The server is stopping; the client may join again (another node may take it)."""
    replaced = "replaced"
    """The same user joined the same lesson from another connection."""
    timeout = "timeout"
    """No ping within the timeout and no resume within the grace period."""


class MediaRestartReason(StrEnum):
    """Why the server rebuilt connections of a client (``media_restart``)."""

    worker_restarted = "worker_restarted"
    """The media process of the lesson died; the lesson's media runs again on a new one."""
    connection_lost = "connection_lost"
    """The server saw this connection end: ICE failed, consent expired (RFC 7675) or DTLS closed."""


class LinkQuality(StrEnum):
    """The server's summary of a link-quality report, for the main classroom's grid."""

    excellent = "excellent"
    good = "good"
    poor = "poor"
    lost = "lost"


# --------------------------------------------------------------------------- shared field types

RequestId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
"""Chosen by the client, echoed by the server's reply."""
ParticipantId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
"""A participant's id within one room (a session id, not the user id)."""
SessionId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
DbId = Annotated[int, Field(ge=1)]
"""A database id (user, lesson instance, classroom)."""
Sdp = Annotated[str, StringConstraints(min_length=1, max_length=MAX_SDP_CHARS)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=128)]
EpochMs = Annotated[int, Field(ge=0, le=2**53)]
"""Milliseconds since the Unix epoch."""
ChatText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_CHAT_CHARS)]


class _ClientBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    request_id: RequestId | None = None


class _ServerBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    seq: int = Field(0, ge=0)
    """Stamped by the session (before ``joined``: by the socket): 1 for the first message, then +1.
    Never 0 on the wire."""
    request_id: RequestId | None = None
    """The ``request_id`` of the client message this replies to, if any."""


_last_framed: tuple[Any, str] = (None, "")
"""The message ``wire_frame`` serialised last and its JSON without ``seq`` (one tuple: read at once)."""


def wire_frame(msg: _ServerBase, seq: int) -> str:
    """The text frame of server message ``msg`` stamped with ``seq`` (``msg.seq`` is not read).

    A broadcast hands one message object to every session in turn, so the body of the message framed
    last is kept and only ``seq`` is written for the next socket: the message is serialised once, not
    once per recipient."""
    global _last_framed
    last = _last_framed
    if last[0] is msg:
        body = last[1]
    else:
        body = msg.model_dump_json(exclude={"seq"})
        _last_framed = (msg, body)
    return '{"seq":' + str(seq) + "," + body[1:]


class _Part(BaseModel):
    """A nested value: strict like the messages."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# --------------------------------------------------------------------------- nested values


class SimulcastLayer(_Part):
    layer: VideoLayer
    rid: Annotated[str, StringConstraints(min_length=1, max_length=16, pattern=r"^[A-Za-z0-9_-]+$")]
    width: int = Field(ge=16, le=7680)
    height: int = Field(ge=16, le=4320)
    max_bitrate_kbps: int = Field(ge=16, le=50_000)


class Subscription(_Part):
    participant_id: ParticipantId
    source: TrackSource
    layer: VideoLayer | None = None
    """Preferred simulcast layer; ``null`` lets the server choose. Ignored for audio."""


class Publication(_Part):
    source: TrackSource
    track_id: ShortText
    muted: bool = False
    layers: list[VideoLayer] = Field(default_factory=list, max_length=3)


class ParticipantInfo(_Part):
    participant_id: ParticipantId
    user_id: DbId
    display_name: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    role: LessonRole
    classroom_id: DbId | None = None
    listen_only: bool = False
    """A listen-only receiving classroom (仅听课) publishes nothing."""
    publications: list[Publication] = Field(default_factory=list, max_length=3)
    muted_by_teacher: list[TrackSource] = Field(default_factory=list, max_length=3)
    """Sources the main classroom muted; the participant cannot unmute them itself."""
    hand_raised: bool = False
    on_stage: bool = False


class RoomState(_Part):
    instance_id: DbId
    live: bool
    """The main classroom has started the lesson."""
    on_stage: ParticipantId | None = None
    muted_all: bool = False
    hands_raised: list[ParticipantId] = Field(default_factory=list, max_length=1000)
    """The raise-hand queue, oldest first."""
    stream_refused: dict[Literal["camera", "screen", "microphone"], Annotated[str, StringConstraints(max_length=200)]] = \
        Field(default_factory=dict)
    """名校网络课堂: the main classroom's sources its HLS stream cannot carry (e.g. a VP8 camera), with why
    (zh-CN), for the teacher's page; home students watch by WebRTC then."""


class ChatLine(_Part):
    """A chat line kept by the room (``joined.recent_chat``)."""

    from_participant_id: ParticipantId
    from_name: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    text: ChatText
    ts: EpochMs


class IceServer(_Part):
    urls: list[Annotated[str, StringConstraints(min_length=1, max_length=256)]] = Field(min_length=1, max_length=8)
    username: Annotated[str, StringConstraints(max_length=256)] | None = None
    credential: Annotated[str, StringConstraints(max_length=256)] | None = None


class AnnotationTool(StrEnum):
    """A tool of the teacher's annotation over the shared screen (同屏批注)."""

    pen = "pen"
    highlighter = "highlighter"
    arrow = "arrow"
    """Two points: from, to."""
    text = "text"
    """One point: where the text starts (its top left)."""


Unit = Annotated[float, Field(ge=0.0, le=1.0)]
"""A coordinate over the shared screen's picture: 0 at its left (top), 1 at its right (bottom)."""


class Stroke(_Part):
    """One mark of the annotation, in the shared screen's own coordinates (so every page, whatever the size of
    its video, draws it at the same place of the picture)."""

    id: Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")]
    tool: AnnotationTool
    color: Annotated[str, StringConstraints(pattern=r"^#[0-9a-fA-F]{6}$")]
    width: float = Field(ge=0.001, le=0.05)
    """Line width as a share of the picture's width."""
    points: list[tuple[Unit, Unit]] = Field(min_length=1, max_length=2000)
    text: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None

    @model_validator(mode="after")
    def _shape(self) -> "Stroke":
        if self.tool is AnnotationTool.text and (self.text is None or len(self.points) != 1):
            raise ValueError("a text mark has one point and a text")
        if self.tool is AnnotationTool.arrow and len(self.points) != 2:
            raise ValueError("an arrow has two points")
        if self.tool is not AnnotationTool.text and self.text is not None:
            raise ValueError("only a text mark has a text")
        return self


class QuizKind(StrEnum):
    """The kind of a quick-quiz question (随堂测)."""

    single = "single"
    multiple = "multiple"
    true_false = "true_false"


class QuizQuestionDraft(_Part):
    """A question typed live on the teacher's page (``quiz_start.question``).  Only the types are checked
    here; the bounds (2 to 8 options, lengths, right options) are ``scheduler.quizzes.validate``'s, which
    answers a zh-CN ``error`` ``bad_message`` naming what is wrong."""

    kind: QuizKind
    text: Annotated[str, StringConstraints(max_length=2000)]
    options: list[Annotated[str, StringConstraints(max_length=500)]] = Field(default_factory=list, max_length=26)
    """Ignored for ``true_false`` (its options are 正确 and 错误)."""
    correct: list[int] = Field(default_factory=list, max_length=26)
    """Indexes of the right options; empty: a poll."""


class QuizQuestionInfo(_Part):
    """A question as the room shows it."""

    question_id: DbId
    kind: QuizKind
    text: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    options: list[Annotated[str, StringConstraints(min_length=1, max_length=100)]] = Field(min_length=2, max_length=8)
    correct: list[int] | None = Field(default=None, max_length=8)
    """The right options: to the main classroom and observers always, to those who answer once it closed
    (``null`` while it is open; ``[]`` for a poll)."""
    open: bool
    """Answers are taken."""


class QuizAnswerLine(_Part):
    """One answer in ``quiz_results``: of a receiving classroom (``classroom_id``) or a home student."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    role: Literal["receiving", "student"]
    user_id: DbId
    classroom_id: DbId | None = None
    choices: list[int] = Field(min_length=1, max_length=8)
    right: bool | None = None
    """``null`` for a poll."""
    ts: EpochMs
    """When the answer (its last change) was given."""


# --------------------------------------------------------------------------- client → server


class Join(_ClientBase):
    """Client → server, first message on a new socket: join the lesson the token names.

    With ``resume_session_id`` and ``last_seq`` it resumes an interrupted session
    within the grace period; the server answers ``resumed`` and replays every
    message after ``last_seq``, or, if it cannot, a fresh ``joined``.

    ``keep_media`` (only with a resume): ``true`` when the client still has its peer
    connections (only the WebSocket dropped); ``false`` (after a page reload) and the
    server restores the client's subscriptions on new connections and the client
    publishes again.
    """

    type: Literal["join"] = "join"
    protocol_version: int = Field(ge=1, le=1000)
    token: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    resume_session_id: SessionId | None = None
    last_seq: int | None = Field(None, ge=0, le=2**53)
    keep_media: bool = False

    @model_validator(mode="after")
    def _resume_needs_both(self) -> Join:
        if (self.resume_session_id is None) != (self.last_seq is None):
            raise ValueError("resume_session_id and last_seq go together")
        return self


class Offer(_ClientBase):
    """Client → server, on the publisher connection: after ``publish``/``unpublish``, the new SDP offer."""

    type: Literal["offer"] = "offer"
    sdp: Sdp


class Answer(_ClientBase):
    """Client → server, on the subscriber connection: the answer to the server's ``offer``."""

    type: Literal["answer"] = "answer"
    sdp: Sdp


class IceCandidate(_ClientBase):
    """Client → server, trickle ICE for one of the client's two connections.

    ``candidate: null`` means the client has gathered all its candidates.
    """

    type: Literal["ice_candidate"] = "ice_candidate"
    target: PeerTarget
    candidate: Annotated[str, StringConstraints(max_length=CANDIDATE_MAX_CHARS)] | None
    """An RFC 8839 candidate line (``candidate:...``, checked by ``media.candidate.Candidate.parse``);
    ``null`` or ``""`` ends the candidates."""
    sdp_mid: Annotated[str, StringConstraints(max_length=32)] | None = None
    sdp_mline_index: int | None = Field(None, ge=0, le=1023)

    @field_validator("candidate")
    @classmethod
    def _candidate_parses(cls, value: str | None) -> str | None:
        if value:
            Candidate.parse(value)  # ValueError: a validation error of this field
        return value

    @model_validator(mode="after")
    def _a_candidate_names_its_line(self) -> IceCandidate:
        if self.candidate and self.sdp_mid is None and self.sdp_mline_index is None:
            raise ValueError("a candidate needs sdp_mid or sdp_mline_index")
        return self


class Publish(_ClientBase):
    """Client → server, before the ``offer`` that adds the track: announce a camera, microphone or screen track.

    ``mid`` ties the announcement to the track's m-line in the offer.
    """

    type: Literal["publish"] = "publish"
    source: TrackSource
    track_id: ShortText
    mid: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = None
    simulcast: list[SimulcastLayer] | None = Field(None, min_length=1, max_length=3)

    @model_validator(mode="after")
    def _audio_has_no_layers(self) -> Publish:
        if self.source is TrackSource.microphone and self.simulcast:
            raise ValueError("a microphone track has no simulcast layers")
        return self


class Unpublish(_ClientBase):
    """Client → server: stop publishing one source (followed by an ``offer`` removing the track)."""

    type: Literal["unpublish"] = "unpublish"
    source: TrackSource


class UpdateSubscriptions(_ClientBase):
    """Client → server: the complete set of tracks the client wants now (replaces the previous set).

    The server answers ``ack`` and, if tracks change, sends an ``offer`` on the
    subscriber connection.
    """

    type: Literal["update_subscriptions"] = "update_subscriptions"
    subscriptions: list[Subscription] = Field(max_length=128)


class SetMuted(_ClientBase):
    """Client → server: mute or unmute one of the client's own tracks.

    Unmuting a source the main classroom muted (or while ``muted_all``) is refused with ``not_allowed``.
    """

    type: Literal["set_muted"] = "set_muted"
    source: TrackSource
    muted: bool


class SetOnStage(_ClientBase):
    """Main → server: bring a receiving classroom or student on stage (上台/连麦); ``null`` clears the stage."""

    type: Literal["set_on_stage"] = "set_on_stage"
    participant_id: ParticipantId | None


class Mute(_ClientBase):
    """Main → server: mute another participant's track; ``muted: false`` lets them unmute again themselves."""

    type: Literal["mute"] = "mute"
    participant_id: ParticipantId
    source: TrackSource
    muted: bool


class MuteAll(_ClientBase):
    """Main → server: mute (or release) every microphone but the main classroom's (全体静音)."""

    type: Literal["mute_all"] = "mute_all"
    muted: bool


class RaiseHand(_ClientBase):
    """Receiving classroom or student → server: raise (or lower) a hand (举手)."""

    type: Literal["raise_hand"] = "raise_hand"
    raised: bool


class Chat(_ClientBase):
    """Client → server: a chat line to the room; leading and trailing blanks are stripped."""

    type: Literal["chat"] = "chat"
    text: ChatText


class LinkQualityReport(_ClientBase):
    """Client → server, every few seconds: what the client measures on its connections."""

    type: Literal["link_quality"] = "link_quality"
    loss: float = Field(ge=0.0, le=1.0)
    """Fraction of packets lost, 0..1."""
    rtt_ms: int = Field(ge=0, le=60_000)
    jitter_ms: int = Field(ge=0, le=60_000)
    bitrate_kbps: int = Field(ge=0, le=1_000_000)


class QuizStart(_ClientBase):
    """Main → server: push a quick-quiz question (随堂测) to the room: a prepared one of the lesson
    (``question_id``, ``POST /lessons/{id}/quiz-questions``) or one typed live (``question``), not both.
    Refused while another question is open."""

    type: Literal["quiz_start"] = "quiz_start"
    question_id: DbId | None = None
    question: QuizQuestionDraft | None = None

    @model_validator(mode="after")
    def _one_question(self) -> "QuizStart":
        if (self.question_id is None) == (self.question is None):
            raise ValueError("exactly one of question_id and question")
        return self


class QuizAnswer(_ClientBase):
    """Receiving classroom or home student → server: answer the open question (one option, several for a
    multiple-choice one).  Answering again before it closes replaces the answer.  Acked once stored."""

    type: Literal["quiz_answer"] = "quiz_answer"
    question_id: DbId
    choices: list[int] = Field(min_length=1, max_length=26)


class QuizClose(_ClientBase):
    """Main → server: close the open question; no more answers, the right options go to everyone."""

    type: Literal["quiz_close"] = "quiz_close"
    question_id: DbId


class Annotate(_ClientBase):
    """Main → server: annotate the shared screen (同屏批注): add a ``stroke``, ``undo`` the last one, or
    ``clear`` them all.  At most ``MAX_STROKES`` on the screen at once."""

    type: Literal["annotate"] = "annotate"
    action: Literal["stroke", "undo", "clear"]
    stroke: Stroke | None = None

    @model_validator(mode="after")
    def _stroke_when_drawing(self) -> "Annotate":
        if (self.action == "stroke") != (self.stroke is not None):
            raise ValueError("a stroke comes with action stroke, and only then")
        return self


class Ping(_ClientBase):
    """Client → server, every ``ping_interval_s``: keeps the session alive; the server answers ``pong``."""

    type: Literal["ping"] = "ping"
    ts: EpochMs
    """The client's clock, echoed in ``pong`` so the client can measure round trips."""


class MediaRestart(_ClientBase):
    """Client → server: the client dropped these peer connections (failed, or disconnected for seconds);
    the server closes their transports.  For ``subscriber`` it then sends a fresh ``offer`` on a new
    connection; for ``publisher`` the client publishes again (``publish`` + ``offer``)."""

    type: Literal["media_restart"] = "media_restart"
    targets: list[PeerTarget] = Field(min_length=1, max_length=2)


class Leave(_ClientBase):
    """Client → server: leave the lesson for good; the server closes the socket and does not keep the session."""

    type: Literal["leave"] = "leave"


# --------------------------------------------------------------------------- server → client


class Joined(_ServerBase):
    """Server → client, the reply to ``join``: the full room snapshot. Deltas follow.

    ``participants`` never lists observers (a patrol is silent).  The client
    pings every ``ping_interval_s``; after ``ping_timeout_s`` without one the
    server drops the socket and keeps the session ``resume_grace_s`` for a resume.
    """

    type: Literal["joined"] = "joined"
    protocol_version: int = PROTOCOL_VERSION
    session_id: SessionId
    participant: ParticipantInfo
    participants: list[ParticipantInfo] = Field(max_length=2000)
    room: RoomState
    ice_servers: list[IceServer] = Field(max_length=8)
    ping_interval_s: int = Field(ge=1, le=300)
    ping_timeout_s: int = Field(ge=1, le=600)
    resume_grace_s: int = Field(ge=0, le=600)
    server_time: EpochMs
    recent_chat: list[ChatLine] = Field(default_factory=list, max_length=50)
    """The room's last chat lines, oldest first (also those from before the room moved to this node)."""


class Resumed(_ServerBase):
    """Server → client, the reply to a resuming ``join``: the session is back.

    Every message after ``last_seq`` is replayed next, in order, with its original ``seq``.
    ``ice_servers`` replaces the ones of ``joined`` for new connections (TURN credentials are
    minted afresh: they expire).
    """

    type: Literal["resumed"] = "resumed"
    session_id: SessionId
    last_seq: int = Field(ge=0)
    ice_servers: list[IceServer] | None = Field(default=None, max_length=8)
    recent_chat: list[ChatLine] = Field(default_factory=list, max_length=50)
    """The room's last chat lines, as in ``joined`` (a reloaded page shows them again; lines it also gets
    replayed are the same lines)."""


class ParticipantJoined(_ServerBase):
    """Server → every listed participant and observers: someone (not an observer) joined."""

    type: Literal["participant_joined"] = "participant_joined"
    participant: ParticipantInfo


class ParticipantLeft(_ServerBase):
    """Server → everyone: a participant left (after its grace period, if it dropped)."""

    type: Literal["participant_left"] = "participant_left"
    participant_id: ParticipantId
    reason: LeaveReason


class ParticipantUpdated(_ServerBase):
    """Server → everyone: a participant's publications, mutes, hand or stage changed. Carries the whole new info."""

    type: Literal["participant_updated"] = "participant_updated"
    participant: ParticipantInfo


class RoomUpdated(_ServerBase):
    """Server → everyone: the room state changed (the lesson went live, mute all toggled)."""

    type: Literal["room_updated"] = "room_updated"
    room: RoomState


class OfferedTrack(_Part):
    """Which participant's source an m-line of the server's offer carries."""

    mid: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    participant_id: ParticipantId
    """A participant, or ``"stage"``: the on-stage slot, which follows whoever is on stage."""
    source: TrackSource


class ServerOffer(_ServerBase):
    """Server → client, on the subscriber connection: tracks to receive changed; the client replies ``answer``.

    ``tracks`` maps each sending m-line (by ``mid``) to the subscription it carries.
    """

    type: Literal["offer"] = "offer"
    sdp: Sdp
    tracks: list[OfferedTrack] = Field(default_factory=list, max_length=256)


class ServerAnswer(_ServerBase):
    """Server → client, on the publisher connection: the answer to the client's ``offer`` (echoes its ``request_id``)."""

    type: Literal["answer"] = "answer"
    sdp: Sdp


class ServerMediaRestart(_ServerBase):
    """Server → client: the server closed these peer connections of the client and rebuilds them.

    The client closes its own (keeping its local tracks), publishes again on a new ``publisher``
    connection, and answers the fresh ``offer`` that follows on a new ``subscriber`` connection.
    """

    type: Literal["media_restart"] = "media_restart"
    targets: list[PeerTarget] = Field(min_length=1, max_length=2)
    reason: MediaRestartReason


class ServerIceCandidate(_ServerBase):
    """Server → client: trickle ICE from the server; ``candidate: null`` ends the server's candidates."""

    type: Literal["ice_candidate"] = "ice_candidate"
    target: PeerTarget
    candidate: Annotated[str, StringConstraints(max_length=2048)] | None
    sdp_mid: Annotated[str, StringConstraints(max_length=32)] | None = None
    sdp_mline_index: int | None = Field(None, ge=0, le=1023)


class OnStageChanged(_ServerBase):
    """Server → everyone: who is on stage now (``null``: nobody)."""

    type: Literal["on_stage_changed"] = "on_stage_changed"
    participant_id: ParticipantId | None


class Muted(_ServerBase):
    """Server → the participant concerned: the main classroom muted (or released) one of your tracks."""

    type: Literal["muted"] = "muted"
    source: TrackSource
    muted: bool
    by: ParticipantId


class HandRaised(_ServerBase):
    """Server → the main classroom (and the participant itself): a hand went up or down; ``queue`` is the whole queue."""

    type: Literal["hand_raised"] = "hand_raised"
    participant_id: ParticipantId
    raised: bool
    queue: list[ParticipantId] = Field(max_length=1000)


class ChatMessage(_ServerBase):
    """Server → everyone: a chat line, stamped with the server's time."""

    type: Literal["chat"] = "chat"
    from_participant_id: ParticipantId
    from_name: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    text: ChatText
    ts: EpochMs


class LinkQualityUpdate(_ServerBase):
    """Server → the main classroom (and observers): one participant's link, for the grid indicator."""

    type: Literal["link_quality_update"] = "link_quality_update"
    participant_id: ParticipantId
    quality: LinkQuality
    loss: float = Field(ge=0.0, le=1.0)
    rtt_ms: int = Field(ge=0, le=60_000)
    jitter_ms: int = Field(ge=0, le=60_000)
    bitrate_kbps: int = Field(ge=0, le=1_000_000)


class Quiz(_ServerBase):
    """Server → each receiving classroom and home student: the quiz question now (pushed, closed) with the
    recipient's own answer; after ``joined`` or ``resumed`` too while one is open (a reloaded page gets its
    question and answer back)."""

    type: Literal["quiz"] = "quiz"
    question: QuizQuestionInfo
    my_choices: list[int] | None = Field(default=None, max_length=8)
    """What this classroom or student answered (``null``: not yet)."""


class QuizResults(_ServerBase):
    """Server → the main classroom and observers: the results of the question, after it is pushed, after
    each answer and when it closes; after ``joined`` or ``resumed`` too while one is open."""

    type: Literal["quiz_results"] = "quiz_results"
    question: QuizQuestionInfo
    counts: list[int] = Field(max_length=8)
    """Per option, the answers that picked it."""
    answered: int = Field(ge=0)
    correct_share: float | None = Field(default=None, ge=0.0, le=1.0)
    """Right answers over answers; ``null`` for a poll or before any answer."""
    answers: list[QuizAnswerLine] = Field(default_factory=list, max_length=1000)
    """Who answered what, in the order of their last answer: the last 1,000 (``answered`` counts them all;
    the teaching record keeps every one)."""


class Pong(_ServerBase):
    """Server → client, the reply to ``ping``: echoes ``ts`` and adds the server's clock."""

    type: Literal["pong"] = "pong"
    ts: EpochMs
    server_time: EpochMs


class Ack(_ServerBase):
    """Server → client: the request with this ``request_id`` was applied (for requests with no other reply)."""

    type: Literal["ack"] = "ack"
    request_id: RequestId


class Error(_ServerBase):
    """Server → client: a message was refused; the connection and the room go on.

    ``request_id`` is the refused message's, when it had a readable one.
    """

    type: Literal["error"] = "error"
    code: ErrorCode
    message: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    """For people, in zh-CN."""


class LayersWanted(_ServerBase):
    """Server → a publisher (dynacast): the simulcast layers of one of its tracks that someone receives.

    The client keeps exactly these ``rids`` sending (``RTCRtpSender.setParameters``, ``active``) and
    pauses the others, so a camera whose only viewers are thumbnails (the patrol wall) does not send
    its top layers over its uplink.  Sent after each change, and after each publish of the track;
    the lowest layer is always among them.
    """

    type: Literal["layers_wanted"] = "layers_wanted"
    source: TrackSource
    rids: list[Annotated[str, StringConstraints(min_length=1, max_length=16, pattern=r"^[A-Za-z0-9_-]+$")]] = Field(
        min_length=1, max_length=3)


class Redirect(_ServerBase):
    """Server → client, instead of ``joined``: the lesson's room lives on another node.  The socket is
    then closed with 4010; the client connects to ``ws_url`` and sends the same ``join`` (its token was
    not used)."""

    type: Literal["redirect"] = "redirect"
    ws_url: Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=r"^wss?://")]
    node_id: Annotated[str, StringConstraints(min_length=1, max_length=100)]


class RoomMoving(_ServerBase):
    """Server → client: this node is being taken out of service (drained) and the lesson moves to
    another node now.  The socket is closed with 4010 right after; the client fetches a new join
    token (its answer names the new node) and joins there, as after a failover.  ``message`` is the
    zh-CN text a page shows meanwhile."""

    type: Literal["room_moving"] = "room_moving"
    reason: Literal["node_drain"] = "node_drain"
    message: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class Annotation(_ServerBase):
    """Server → everyone: the annotation of the shared screen changed (``stroke`` added, the last one
    undone — ``stroke`` names it —, all cleared), or, after ``joined``, what is on the screen now
    (``state``, ``strokes``: it replaces whatever the page drew before it, so a stroke that arrived just
    before it is not drawn twice)."""

    type: Literal["annotation"] = "annotation"
    action: Literal["stroke", "undo", "clear", "state"]
    stroke: Stroke | None = None
    strokes: list[Stroke] = Field(default_factory=list, max_length=500)
    ts: EpochMs


class ServerLeave(_ServerBase):
    """Server → client, last message before the server closes the socket."""

    type: Literal["leave"] = "leave"
    reason: LeaveReason


# --------------------------------------------------------------------------- unions

ClientMessage = Annotated[
    Join | Offer | Answer | IceCandidate | Publish | Unpublish | UpdateSubscriptions | SetMuted
    | SetOnStage | Mute | MuteAll | RaiseHand | Chat | LinkQualityReport | Ping | Leave | MediaRestart
    | QuizStart | QuizAnswer | QuizClose | Annotate,
    Field(discriminator="type"),
]
ServerMessage = Annotated[
    Joined | Resumed | ParticipantJoined | ParticipantLeft | ParticipantUpdated | RoomUpdated
    | ServerOffer | ServerAnswer | ServerIceCandidate | OnStageChanged | Muted | HandRaised
    | ChatMessage | LinkQualityUpdate | Pong | Ack | Error | ServerLeave | LayersWanted | ServerMediaRestart
    | Redirect | RoomMoving | Quiz | QuizResults | Annotation,
    Field(discriminator="type"),
]

client_adapter: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
server_adapter: TypeAdapter[ServerMessage] = TypeAdapter(ServerMessage)


def _types(adapter_union: Any) -> frozenset[str]:
    members = adapter_union.__origin__.__args__  # Annotated[A | B | ..., ...] → A, B, ...
    return frozenset(m.model_fields["type"].default for m in members)


CLIENT_TYPES: frozenset[str] = _types(ClientMessage)
SERVER_TYPES: frozenset[str] = _types(ServerMessage)


# --------------------------------------------------------------------------- parsing


class ProtocolError(Exception):
    """A client frame that is not a valid ``ClientMessage``. The handler replies ``error`` and goes on."""

    def __init__(self, code: ErrorCode, message_zh: str, request_id: str | None = None) -> None:
        super().__init__(f"{code.value}: {message_zh}")
        self.code = code
        self.message_zh = message_zh
        self.request_id = request_id


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _request_id_of(obj: dict[str, Any]) -> str | None:
    rid = obj.get("request_id")
    return rid if isinstance(rid, str) and 0 < len(rid) <= 64 else None


def _field_path(loc: tuple[int | str, ...]) -> str:
    # the first element is the union tag (the message type); the rest is the field
    return ".".join(str(p) for p in loc[1:]) or "消息"


def parse_client_message(raw: str | bytes) -> ClientMessage:
    """One WebSocket frame → a client message; raises ``ProtocolError`` and nothing else."""
    if len(raw) > MAX_FRAME_BYTES:
        raise ProtocolError(ErrorCode.too_large, "消息过大（上限 64 KiB）")
    if isinstance(raw, str):
        try:
            size = len(raw.encode("utf-8"))
        except UnicodeEncodeError:
            raise ProtocolError(ErrorCode.bad_message, "消息不是有效的 UTF-8 文本") from None
        if size > MAX_FRAME_BYTES:
            raise ProtocolError(ErrorCode.too_large, "消息过大（上限 64 KiB）")
        text = raw
    else:
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(ErrorCode.bad_message, "消息不是有效的 UTF-8 文本") from None
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise ProtocolError(ErrorCode.bad_message, "消息不是有效的 JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.bad_message, "消息必须是 JSON 对象")
    request_id = _request_id_of(obj)
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.bad_message, "消息缺少 type 字段", request_id)
    if kind not in CLIENT_TYPES:
        raise ProtocolError(ErrorCode.unknown_type, f"未知的消息类型：{kind[:40]}", request_id)
    if kind == "join":
        version = obj.get("protocol_version")
        if isinstance(version, int) and not isinstance(version, bool) and version != PROTOCOL_VERSION:
            raise ProtocolError(
                ErrorCode.unsupported_version,
                f"不支持的协议版本 {version if abs(version) < 10**9 else '（数值过大）'}，"
                f"服务器使用版本 {PROTOCOL_VERSION}，请升级客户端",
                request_id,
            )
    try:
        return client_adapter.validate_python(obj)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        field = _field_path(tuple(first["loc"]))[:80]
        if kind == "ice_candidate":
            raise ProtocolError(ErrorCode.bad_candidate, f"ICE 候选地址不合法：{field}", request_id) from None
        raise ProtocolError(ErrorCode.bad_message, f"消息字段不合法：{field}", request_id) from None


# --------------------------------------------------------------------------- role rules

_ANY_ROLE = (Join, Answer, UpdateSubscriptions, LinkQualityReport, Ping, Leave)


def _may_publish(role: LessonRole, source: TrackSource, on_stage: bool, listen_only: bool) -> bool:
    if role is LessonRole.main:
        return True
    if source is TrackSource.screen:
        return False
    if role is LessonRole.receiving:
        return not listen_only
    if role is LessonRole.student:
        return on_stage
    return False


def _has_publisher(role: LessonRole, listen_only: bool) -> bool:
    """Whether the role ever has a publisher connection (a student's exists while or after being on stage)."""
    if role is LessonRole.observer:
        return False
    return not (role is LessonRole.receiving and listen_only)


def allowed(role: LessonRole, msg: ClientMessage, on_stage: bool, listen_only: bool) -> ErrorCode | None:
    """``None`` if ``role`` may send ``msg`` now, else the error code to answer with.

    ``on_stage`` is whether this participant is on stage; ``listen_only`` whether it is a
    listen-only receiving classroom.  Checks that need the room (does the named
    participant exist, is the source muted by the teacher) belong to the room.

    - everyone: join, answer, update_subscriptions, link_quality, ping, leave, and ICE and ``media_restart``
      for the subscriber connection;
    - the main classroom: everything, and alone set_on_stage, mute, mute_all and publishing the screen;
    - a receiving classroom: camera and microphone, raise hand, chat; a listen-only one publishes nothing
      and does not raise its hand;
    - a home student: chat and raise hand; camera and microphone only while on stage
      (it may offer and unpublish at any time, to tear its tracks down after leaving the stage);
    - an observer: receives only; no publishing, chat or hand.

    The quick quiz: only the main classroom starts and closes a question (``quiz_start``, ``quiz_close``);
    receiving classrooms (listen-only ones too) and home students answer (``quiz_answer``); observers see
    the results only.  Only the main classroom annotates the shared screen (``annotate``).
    """
    role = LessonRole(role)
    if isinstance(msg, _ANY_ROLE):
        return None
    if isinstance(msg, IceCandidate):
        if msg.target is PeerTarget.subscriber or _has_publisher(role, listen_only):
            return None
        return ErrorCode.not_allowed
    if isinstance(msg, MediaRestart):
        if PeerTarget.publisher not in msg.targets or _has_publisher(role, listen_only):
            return None
        return ErrorCode.not_allowed
    if isinstance(msg, (SetOnStage, Mute, MuteAll)):
        return None if role is LessonRole.main else ErrorCode.not_allowed
    if isinstance(msg, Publish):
        return None if _may_publish(role, msg.source, on_stage, listen_only) else ErrorCode.not_allowed
    if isinstance(msg, (Offer, Unpublish, SetMuted)):
        return None if _has_publisher(role, listen_only) else ErrorCode.not_allowed
    if isinstance(msg, RaiseHand):
        if role is LessonRole.student or (role is LessonRole.receiving and not listen_only):
            return None
        return ErrorCode.not_allowed
    if isinstance(msg, Chat):
        return None if role is not LessonRole.observer else ErrorCode.not_allowed
    if isinstance(msg, (QuizStart, QuizClose)):
        return None if role is LessonRole.main else ErrorCode.not_allowed
    if isinstance(msg, QuizAnswer):
        return None if role in (LessonRole.receiving, LessonRole.student) else ErrorCode.not_allowed
    if isinstance(msg, Annotate):
        return None if role is LessonRole.main else ErrorCode.not_allowed
    return ErrorCode.not_allowed  # a message type added without a rule is refused, not let through
