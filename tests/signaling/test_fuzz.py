"""Fuzzing the signaling WebSocket: thousands of malformed and hostile frames through the real
endpoint, each followed by a valid ``ping``; every frame gets its reply in order, the socket stays
open (a ``leave`` closes it as documented, and the fuzzer joins again), the room still works
afterwards and the server logs no error.  And the parser alone: whatever the input, it returns a
message or raises ``ProtocolError``, nothing else."""

from __future__ import annotations

import json
import logging
import random
from contextlib import ExitStack
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from starlette.websockets import WebSocketDisconnect

from media.candidate import Candidate
from signaling.messages import (
    CLIENT_TYPES,
    MAX_FRAME_BYTES,
    SERVER_TYPES,
    ErrorCode,
    IceCandidate,
    Join,
    Leave,
    LessonRole,
    ProtocolError,
    allowed,
    parse_client_message,
)
from tests.signaling.test_endpoint import (
    join_msg,
    join_token,
    open_lesson,
    recv,
    recv_until,
)
from tests.signaling.test_messages import EXAMPLES

# ----------------------------------------------------------------------------- frames

json_scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(10**40), max_value=10**40)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30))
json_values = st.recursive(
    json_scalars,
    lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=12), c, max_size=5),
    max_leaves=25,
)
FIELDS = ["type", "request_id", "protocol_version", "token", "sdp", "text", "source", "muted", "participant_id",
          "subscriptions", "candidate", "target", "ts", "loss", "rtt_ms", "jitter_ms", "bitrate_kbps", "raised",
          "simulcast", "last_seq", "resume_session_id", "keep_media", "track_id", "mid", "seq"]
request_ids = st.one_of(st.none(), st.text(min_size=1, max_size=64), st.text(min_size=65, max_size=80),
                        st.integers(), json_values)


@st.composite
def wrong_fields(draw: st.DrawFn) -> str:
    """A known type with random fields and values."""
    obj: dict[str, Any] = draw(st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6))
    obj["type"] = draw(st.sampled_from(sorted(CLIENT_TYPES | SERVER_TYPES | {"", "JOIN", "chat "})))
    rid = draw(request_ids)
    if rid is not None:
        obj["request_id"] = rid
    return json.dumps(obj, ensure_ascii=draw(st.booleans()))


def _huge(kind: str, digits: int) -> str:
    number = {"int": "9" * digits, "neg": "-" + "9" * digits, "exp": f"1e{digits}", "frac": "0." + "1" * digits}[kind]
    field = random.Random(digits).choice(["ts", "rtt_ms", "loss", "last_seq", "protocol_version"])
    kind_of = {"ts": "ping", "rtt_ms": "link_quality", "loss": "link_quality", "last_seq": "join",
               "protocol_version": "join"}[field]
    return f'{{"type": "{kind_of}", "request_id": "h", "{field}": {number}}}'


huge_numbers = st.builds(_huge, st.sampled_from(["int", "neg", "exp", "frac"]), st.integers(1, 20_000))
deep = st.builds(lambda d, o, c: '{"type": "chat", "text": ' + o * d + c * d + "}",
                 st.integers(1, 30_000), st.sampled_from(["[", '{"a":']), st.sampled_from(["]", "}"]))
deep_bare = st.builds(lambda d: "[" * d + "]" * d, st.integers(1, 30_000))
lone_surrogates = st.builds(lambda a, b: json.dumps({"type": "chat", "text": a}, ensure_ascii=False)[:-2] + b + '"}',
                            st.text(max_size=10), st.sampled_from(["\ud800", "\udfff", "\\ud800", "\\udc00x"]))
invalid_utf8 = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda s, cut: s.encode()[:cut] + b"\xff\xfe" + s.encode()[cut:],
              st.sampled_from(['{"type": "ping", "ts": 1}', '{"type": "chat", "text": "你好"}']), st.integers(0, 20)),
    st.just(b"\xc3\x28"), st.just(b"\xed\xa0\x80"), st.just(b"\xf8\x88\x80\x80\x80"),
)


def _oversized(extra: int, binary: bool, wide: bool) -> str | bytes:
    char = "字" if wide else "x"  # 3 bytes or 1 in UTF-8
    raw = '{"type": "chat", "text": "' + char * (MAX_FRAME_BYTES // len(char.encode()) + extra) + '"}'
    return raw.encode() if binary else raw


oversized = st.builds(_oversized, st.integers(1, 100_000), st.booleans(), st.booleans())
# valid messages a receiving classroom may not send (and one it may, now and then)
wrong_role = st.sampled_from([
    {"type": "set_on_stage", "request_id": "w1", "participant_id": "p1"},
    {"type": "set_on_stage", "participant_id": None},
    {"type": "mute", "request_id": "w2", "participant_id": "p1", "source": "microphone", "muted": True},
    {"type": "mute_all", "request_id": "w3", "muted": True},
    {"type": "mute_all", "muted": False},
    {"type": "publish", "request_id": "w4", "source": "screen", "track_id": "s"},
]).map(json.dumps)
valid = st.sampled_from([
    {"type": "chat", "text": "fuzz"},
    {"type": "raise_hand", "request_id": "v1", "raised": True},
    {"type": "raise_hand", "raised": False},
    {"type": "set_muted", "request_id": "v2", "source": "microphone", "muted": True},
    {"type": "link_quality", "loss": 0.5, "rtt_ms": 1, "jitter_ms": 1, "bitrate_kbps": 1},
    {"type": "publish", "request_id": "v3", "source": "camera", "track_id": "c"},
    {"type": "update_subscriptions", "subscriptions": []},
    {"type": "join", "request_id": "v4", "protocol_version": 1, "token": "x"},
    {"type": "ping", "ts": 2**53},
    {"type": "leave", "request_id": "bye"},
]).map(json.dumps)
as_binary = st.one_of(wrong_fields(), valid, wrong_role).map(str.encode)

# ice_candidate: broken candidate lines (cut, fields swapped or out of range, garbage), wrong types, missing fields
_CANDIDATE = "candidate:1 1 udp 2122260223 127.0.0.1 54400 typ host generation 0"
candidate_lines = st.one_of(
    st.builds(lambda n: _CANDIDATE[:n], st.integers(0, len(_CANDIDATE))),
    st.builds(lambda i, v: " ".join(v if k == i else b for k, b in enumerate(_CANDIDATE.split(" "))),
              st.integers(0, 9), st.sampled_from(["", "x", "-1", "99999999", "4294967296", "::zz", "1.2.3.4.5",
                                                  "typ", "\u0000", "é", "999.1.1.1", "a..b", "-a.local"])),
    st.text(max_size=60), st.just("candidate:1 1 udp 1 127.0.0.1 54400 typ srflx raddr"),
)
candidate_fields = st.fixed_dictionaries({}, optional={
    "target": st.sampled_from(["publisher", "subscriber"]) | json_values,
    "candidate": candidate_lines | json_values,
    "sdp_mid": st.sampled_from(["0", "1"]) | json_values,
    "sdp_mline_index": st.integers(-2, 2) | json_values,
    "request_id": request_ids,
})
ice_candidates = candidate_fields.map(lambda f: json.dumps({"type": "ice_candidate", **f}))

frames = st.one_of(
    json_values.map(json.dumps), wrong_fields(), huge_numbers, deep, deep_bare, lone_surrogates, invalid_utf8,
    oversized, wrong_role, valid, as_binary, st.text(max_size=100), st.sampled_from(["", " ", "{", "null", "[]"]),
    ice_candidates,
)

# ----------------------------------------------------------------------------- the endpoint under fire


class _Fuzzer:
    """A receiving classroom's socket that sends frames, each followed by a ping, and checks the replies."""

    ROLE = LessonRole.receiving

    def __init__(self, client: Any, url: str, token: Callable[[], str], stack: ExitStack) -> None:
        # a fresh join token on every (re)connect, as the pages do: a token lives join_token_seconds,
        # and a loaded machine fuzzes for longer than that
        self.client, self.url, self.token, self.stack = client, url, token, stack
        self.frames = 0
        self.reconnects = 0
        self.n = 0
        self.connect()

    def connect(self) -> None:
        self.ws = self.stack.enter_context(self.client.websocket_connect(self.url))
        self.ws.send_json(join_msg(self.token()))
        joined = recv(self.ws)
        assert joined["type"] == "joined", joined
        self.seq = joined["seq"]
        self.session_id = joined["session_id"]

    def _next(self) -> dict[str, Any]:
        m = recv(self.ws)
        assert m["seq"] == self.seq + 1, (m, self.seq)  # in order, none lost
        self.seq = m["seq"]
        return m

    def send(self, frame: str | bytes) -> None:
        self.frames += 1
        self.n += 1
        ping_id = f"ping-{self.n}"
        (self.ws.send_bytes if isinstance(frame, bytes) else self.ws.send_text)(frame)
        self.ws.send_json({"type": "ping", "request_id": ping_id, "ts": self.n})
        try:
            expected = parse_client_message(frame)
        except ProtocolError as exc:
            m = self._next()
            assert (m["type"], m["code"], m.get("request_id")) == ("error", exc.code.value, exc.request_id), \
                (frame[:200], m)
            assert m["message"]
            self._pong(ping_id)
            return
        if isinstance(expected, Leave):  # documented: leave, then the server closes the socket
            m = self._next()
            assert (m["type"], m["reason"]) == ("leave", "client_left"), m
            with pytest.raises(WebSocketDisconnect) as exc:
                recv(self.ws)
            assert exc.value.code == 1000
            self.reconnects += 1
            self.connect()
            return
        if isinstance(expected, Join):  # already joined
            m = self._next()
            assert (m["type"], m["code"], m.get("request_id")) == ("error", "not_allowed", expected.request_id), m
            self._pong(ping_id)
            return
        code = allowed(self.ROLE, expected, on_stage=False, listen_only=False)
        if code is not None:
            m = self._next()
            assert (m["type"], m["code"], m.get("request_id")) == ("error", code.value, expected.request_id), m
            self._pong(ping_id)
            return
        # a valid message it may send: its own answer (or broadcasts, or nothing), then the pong
        self._pong(ping_id, allow_others=True)

    def _pong(self, ping_id: str, *, allow_others: bool = False) -> None:
        for _ in range(20):
            m = self._next()
            if m["type"] == "pong" and m.get("request_id") == ping_id:
                return
            assert allow_others, m
        raise AssertionError(f"no pong for {ping_id}")


def _drain(ws: Any) -> None:
    try:
        while True:
            recv(ws, 0.005)
    except TimeoutError:
        return


def test_thousands_of_hostile_frames(client, world, auth, session_factory, caplog):
    caplog.set_level(logging.ERROR)
    lid = open_lesson(client, world, auth, session_factory)
    url = f"/api/v1/lessons/{lid}/ws"
    with ExitStack() as stack:
        mn = stack.enter_context(client.websocket_connect(url))
        mn.send_json(join_msg(join_token(client, auth, world.teacher, lid)))
        assert recv(mn)["type"] == "joined"
        fuzzer = _Fuzzer(client, url, lambda: join_token(client, auth, world.terminal_recv, lid), stack)

        @settings(max_examples=120, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(st.lists(frames, min_size=15, max_size=25))
        def fire(batch: list[str | bytes]) -> None:
            for frame in batch:
                fuzzer.send(frame)
            # the main classroom hears the valid ones; keep its queue short, and ping as a real client does
            # (a socket silent for PING_TIMEOUT_S is closed, and a loaded machine takes that long to fuzz)
            mn.send_json({"type": "ping", "ts": 1})
            _drain(mn)

        fire()
        assert fuzzer.frames >= 2000, fuzzer.frames
        print(f"fuzz: {fuzzer.frames} frames, {fuzzer.reconnects} reconnects after leave")

        # the room still works: each hears the other's chat
        fuzzer.ws.send_json({"type": "chat", "text": "还在"})
        assert recv_until(mn, "chat", limit=2000)["text"] == "还在"
        mn.send_json({"type": "chat", "text": "收到"})
        assert recv_until(fuzzer.ws, "chat", limit=100)["text"] in ("还在", "收到")
        assert recv_until(fuzzer.ws, "chat", limit=100)["text"] == "收到"

    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


def test_an_observer_sending_what_it_may_not(client, world, auth, session_factory, caplog):
    """The wrong role, the other way round: an observer's chat, hand, publish, controls are refused."""
    caplog.set_level(logging.ERROR)
    lid = open_lesson(client, world, auth, session_factory)
    with client.websocket_connect(f"/api/v1/lessons/{lid}/ws") as ob:
        ob.send_json(join_msg(join_token(client, auth, world.researcher_a, lid)))
        seq = recv(ob)["seq"]
        refused = [
            {"type": "chat", "text": "巡课"}, {"type": "raise_hand", "raised": True},
            {"type": "publish", "source": "camera", "track_id": "c"}, {"type": "offer", "sdp": "v=0"},
            {"type": "unpublish", "source": "camera"}, {"type": "set_muted", "source": "camera", "muted": False},
            {"type": "ice_candidate", "target": "publisher", "candidate": None},
            {"type": "set_on_stage", "participant_id": None}, {"type": "mute_all", "muted": True},
            {"type": "mute", "participant_id": "x", "source": "camera", "muted": True},
        ]
        for i in range(30):
            msg = {**refused[i % len(refused)], "request_id": f"o{i}"}
            ob.send_json(msg)
            m = recv(ob)
            assert (m["type"], m["code"], m["request_id"], m["seq"]) == ("error", "not_allowed", f"o{i}", seq + 1)
            seq = m["seq"]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


# ----------------------------------------------------------------------------- the parser alone


def _only_protocol_error(raw: str | bytes) -> None:
    try:
        msg = parse_client_message(raw)
    except ProtocolError as err:
        assert isinstance(err.code, ErrorCode) and err.message_zh
        assert err.request_id is None or (isinstance(err.request_id, str) and 0 < len(err.request_id) <= 64)
        return
    assert isinstance(msg, BaseModel) and msg.type in CLIENT_TYPES


@settings(max_examples=400, deadline=None, database=None)
@given(frames)
def test_the_parser_only_raises_protocol_error_on_hostile_frames(raw: str | bytes) -> None:
    _only_protocol_error(raw)


CLIENT_EXAMPLES = [body for _, direction, body in EXAMPLES if direction == "client → server"]


@st.composite
def mutated_examples(draw: st.DrawFn) -> str | bytes:
    """A valid frame from the doc with a few characters flipped, inserted or cut."""
    raw = draw(st.sampled_from(CLIENT_EXAMPLES))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(raw)))
        op = draw(st.sampled_from(["insert", "delete", "replace", "truncate"]))
        piece = draw(st.text(min_size=1, max_size=3) | st.sampled_from(['"', "{", "}", "[", ",", ":", "\\", "\ud800"]))
        if op == "insert":
            raw = raw[:at] + piece + raw[at:]
        elif op == "delete":
            raw = raw[:at] + raw[at + 1:]
        elif op == "replace":
            raw = raw[:at] + piece + raw[at + len(piece):]
        else:
            raw = raw[:at]
    if draw(st.booleans()):
        return raw.encode("utf-8", "surrogatepass")
    return raw


@settings(max_examples=400, deadline=None, database=None)
@given(mutated_examples())
def test_mutated_valid_frames_parse_or_raise_protocol_error(raw: str | bytes) -> None:
    _only_protocol_error(raw)


@settings(max_examples=200, deadline=None, database=None)
@given(st.sampled_from(sorted(CLIENT_TYPES)), st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8))
def test_every_type_with_random_fields(kind: str, fields: dict[str, Any]) -> None:
    _only_protocol_error(json.dumps({**fields, "type": kind}))


@settings(max_examples=400, deadline=None, database=None)
@given(ice_candidates)
def test_a_malformed_ice_candidate_is_bad_candidate(raw: str) -> None:
    """Whatever is wrong with an ``ice_candidate`` (a field missing or of the wrong type, a line that is not a
    candidate), the answer is ``bad_candidate``; what passes carries a candidate line the SFU can parse."""
    try:
        msg = parse_client_message(raw)
    except ProtocolError as err:
        assert err.code is ErrorCode.bad_candidate, (raw, err)
        return
    assert isinstance(msg, IceCandidate)
    if msg.candidate:
        Candidate.parse(msg.candidate)
        assert msg.sdp_mid is not None or msg.sdp_mline_index is not None
