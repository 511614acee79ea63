"""The signaling messages: the doc's examples parse, bad frames give the right error code,
nothing but ``ProtocolError`` ever escapes the parser, and the role rules hold."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from signaling.messages import (
    Error,
    CLIENT_TYPES,
    MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    SERVER_TYPES,
    Chat,
    ErrorCode,
    IceCandidate,
    Join,
    LessonRole,
    Mute,
    MuteAll,
    Offer,
    PeerTarget,
    Ping,
    ProtocolError,
    Publish,
    RaiseHand,
    SetMuted,
    SetOnStage,
    TrackSource,
    Unpublish,
    UpdateSubscriptions,
    allowed,
    client_adapter,
    parse_client_message,
    server_adapter,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
_HEADING = re.compile(r"^### `(?P<type>[a-z_]+)` \((?P<dir>client → server|server → client)")


def _examples() -> list[tuple[str, str, str]]:
    """(type, direction, JSON body) of the first ```json block under each message heading."""
    found: list[tuple[str, str, str]] = []
    heading: re.Match[str] | None = None
    body: list[str] | None = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if body is not None:
            if line == "```":
                assert heading is not None
                found.append((heading["type"], heading["dir"], "\n".join(body)))
                heading, body = None, None
            else:
                body.append(line)
        elif line.startswith("### "):
            heading = _HEADING.match(line)
        elif line == "```json" and heading is not None:
            body = []
    return found


EXAMPLES = _examples()


def _reject(raw: str | bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_client_message(raw)
    return info.value


def _frame(**fields: object) -> str:
    return json.dumps(fields, ensure_ascii=False)


# --------------------------------------------------------------------------- the doc


def test_the_doc_has_an_example_under_every_message_heading() -> None:
    headings = re.findall(r"^### `[a-z_]+` \((?:client|server)", DOC.read_text(encoding="utf-8"), re.MULTILINE)
    assert len(EXAMPLES) == len(headings) > 30


@pytest.mark.parametrize(("type_", "direction", "body"), EXAMPLES, ids=[f"{d[0]}-{t}" for t, d, _ in EXAMPLES])
def test_every_doc_example_parses_with_the_union_of_its_direction(type_: str, direction: str, body: str) -> None:
    if direction == "client → server":
        msg = parse_client_message(body)
        assert msg.type == type_
    else:
        msg = server_adapter.validate_json(body)
        assert msg.type == type_
        assert msg.seq >= 1, "a server message on the wire always carries its seq"


def test_every_message_type_of_the_unions_is_in_the_doc() -> None:
    client = {t for t, d, _ in EXAMPLES if d == "client → server"}
    server = {t for t, d, _ in EXAMPLES if d == "server → client"}
    assert client == CLIENT_TYPES
    assert server == SERVER_TYPES


def test_server_messages_round_trip_through_json() -> None:
    for type_, direction, body in EXAMPLES:
        if direction == "server → client":
            msg = server_adapter.validate_json(body)
            assert server_adapter.validate_json(server_adapter.dump_json(msg)) == msg, type_


# --------------------------------------------------------------------------- parse errors


def test_invalid_json_is_a_bad_message() -> None:
    assert _reject('{"type": "ping", ').code is ErrorCode.bad_message
    assert _reject(b"\xff\xfe{}").code is ErrorCode.bad_message


def test_nan_is_not_json() -> None:
    err = _reject('{"type": "link_quality", "loss": NaN, "rtt_ms": 1, "jitter_ms": 1, "bitrate_kbps": 1}')
    assert err.code is ErrorCode.bad_message


def test_an_array_is_not_a_message() -> None:
    assert _reject('[{"type": "ping", "ts": 1}]').code is ErrorCode.bad_message


def test_a_message_without_type_is_a_bad_message() -> None:
    assert _reject('{"ts": 1}').code is ErrorCode.bad_message
    assert _reject('{"type": 3}').code is ErrorCode.bad_message


def test_an_unknown_type_is_unknown_type_and_keeps_the_request_id() -> None:
    err = _reject(_frame(type="teleport", request_id="r1"))
    assert err.code is ErrorCode.unknown_type
    assert err.request_id == "r1"


def test_a_server_only_type_is_unknown_from_a_client() -> None:
    assert _reject(_frame(type="joined")).code is ErrorCode.unknown_type


def test_a_missing_field_is_a_bad_message_naming_the_field() -> None:
    err = _reject(_frame(type="mute", participant_id="p1", source="microphone", request_id="r2"))
    assert err.code is ErrorCode.bad_message
    assert "muted" in err.message_zh
    assert err.request_id == "r2"


def test_an_extra_field_is_a_bad_message() -> None:
    assert _reject(_frame(type="ping", ts=1, role="main")).code is ErrorCode.bad_message
    assert _reject(_frame(type="update_subscriptions", subscriptions=[
        {"participant_id": "p1", "source": "camera", "priority": 9}])).code is ErrorCode.bad_message


def test_chat_is_bounded_and_not_blank() -> None:
    assert _reject(_frame(type="chat", text="字" * 501)).code is ErrorCode.bad_message
    assert _reject(_frame(type="chat", text="  \n\t\u3000 ")).code is ErrorCode.bad_message
    assert _reject(_frame(type="chat", text="")).code is ErrorCode.bad_message
    msg = parse_client_message(_frame(type="chat", text="  好的  "))
    assert isinstance(msg, Chat) and msg.text == "好的"
    assert parse_client_message(_frame(type="chat", text="字" * 500)).text == "字" * 500


def test_sdp_is_bounded() -> None:
    # 100 000 characters of SDP never fit in a 64 KiB frame, so the model's bound is checked directly
    sdp = "v=0\r\n" + "a=x\r\n" * 20_000
    assert len(sdp) > 100_000
    with pytest.raises(ValidationError):
        client_adapter.validate_python({"type": "offer", "sdp": sdp})
    assert _reject(_frame(type="offer", sdp="")).code is ErrorCode.bad_message
    assert _reject(_frame(type="answer", sdp=None)).code is ErrorCode.bad_message


def test_an_oversized_frame_is_too_large() -> None:
    big = _frame(type="chat", text="x" * MAX_FRAME_BYTES)
    assert _reject(big).code is ErrorCode.too_large
    assert _reject(big.encode()).code is ErrorCode.too_large


def test_a_frame_under_the_limit_in_characters_but_over_it_in_bytes_is_too_large() -> None:
    raw = _frame(type="chat", text="字" * 30_000)  # 30 000 characters, 90 000 bytes
    assert len(raw) < MAX_FRAME_BYTES < len(raw.encode())
    assert _reject(raw).code is ErrorCode.too_large


def test_another_protocol_version_is_unsupported() -> None:
    err = _reject(_frame(type="join", protocol_version=PROTOCOL_VERSION + 1, token="t", request_id="r1"))
    assert err.code is ErrorCode.unsupported_version
    assert err.request_id == "r1"
    # a newer client's join may carry fields this version does not know: still unsupported_version
    err = _reject(_frame(type="join", protocol_version=PROTOCOL_VERSION + 1, token="t", device="tv"))
    assert err.code is ErrorCode.unsupported_version


def test_a_huge_protocol_version_gets_a_short_message() -> None:
    # found by the fuzzer: a 2,417-digit version made an error message longer than the model allows
    frame = '{"type": "join", "protocol_version": -' + "9" * 2417 + ', "token": "t"}'
    with pytest.raises(ProtocolError) as exc:
        parse_client_message(frame)
    assert exc.value.code is ErrorCode.unsupported_version
    Error(code=exc.value.code, message=exc.value.message_zh)  # fits the error message's limit


def test_the_current_protocol_version_joins() -> None:
    msg = parse_client_message(_frame(type="join", protocol_version=PROTOCOL_VERSION, token="t"))
    assert isinstance(msg, Join) and msg.resume_session_id is None


def test_resume_needs_both_session_and_last_seq() -> None:
    err = _reject(_frame(type="join", protocol_version=PROTOCOL_VERSION, token="t", resume_session_id="s1"))
    assert err.code is ErrorCode.bad_message


def test_link_quality_is_bounded() -> None:
    ok = {"type": "link_quality", "loss": 0.1, "rtt_ms": 80, "jitter_ms": 5, "bitrate_kbps": 900}
    parse_client_message(json.dumps(ok))
    for field, value in [("loss", 1.5), ("loss", -0.1), ("rtt_ms", -1), ("rtt_ms", 10**9), ("bitrate_kbps", -5)]:
        assert _reject(json.dumps({**ok, field: value})).code is ErrorCode.bad_message, field


def test_a_microphone_has_no_simulcast_layers() -> None:
    layer = {"layer": "low", "rid": "q", "width": 320, "height": 180, "max_bitrate_kbps": 150}
    err = _reject(_frame(type="publish", source="microphone", track_id="m", simulcast=[layer]))
    assert err.code is ErrorCode.bad_message


def test_null_candidate_ends_the_candidates() -> None:
    msg = parse_client_message(_frame(type="ice_candidate", target="subscriber", candidate=None))
    assert isinstance(msg, IceCandidate) and msg.candidate is None


# --------------------------------------------------------------------------- nothing else escapes

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
field_names = st.sampled_from(["type", "request_id", "protocol_version", "token", "sdp", "text", "source",
                               "muted", "participant_id", "subscriptions", "candidate", "target", "ts",
                               "loss", "rtt_ms", "simulcast", "last_seq", "resume_session_id"])
message_like = st.fixed_dictionaries(
    {"type": st.sampled_from(sorted(CLIENT_TYPES | SERVER_TYPES | {"", "x"}))},
    optional={"request_id": json_values},
).flatmap(lambda base: st.dictionaries(field_names, json_values, max_size=6).map(lambda extra: {**extra, **base}))


def _parse_or_protocol_error(raw: str | bytes) -> None:
    try:
        msg = parse_client_message(raw)
    except ProtocolError as err:
        assert isinstance(err.code, ErrorCode) and err.message_zh
        return
    assert isinstance(msg, BaseModel) and msg.type in CLIENT_TYPES


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_arbitrary_text_and_bytes_only_parse_or_raise_protocol_error(raw: str | bytes) -> None:
    _parse_or_protocol_error(raw)


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values, message_like))
def test_arbitrary_json_values_only_parse_or_raise_protocol_error(value: object) -> None:
    _parse_or_protocol_error(json.dumps(value))


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 5000))
def test_deep_nesting_only_raises_protocol_error(depth: int) -> None:
    _parse_or_protocol_error('{"type": "chat", "text": ' + "[" * depth + "]" * depth + "}")


def test_huge_integers_and_lone_surrogates_are_bad_messages() -> None:
    assert _reject('{"type": "ping", "ts": ' + "9" * 5000 + "}").code is ErrorCode.bad_message
    assert _reject('{"type": "chat", "text": "\ud800"}').code is ErrorCode.bad_message
    assert _reject('{"type": "chat", "text": "a\\ud800"}').code is ErrorCode.bad_message  # escaped in JSON
    assert _reject("\ud800").code is ErrorCode.bad_message


# --------------------------------------------------------------------------- role rules

main, receiving, student, observer = (LessonRole.main, LessonRole.receiving, LessonRole.student,
                                      LessonRole.observer)
NO = ErrorCode.not_allowed


def _publish(source: TrackSource) -> Publish:
    return Publish(source=source, track_id="t")


@pytest.mark.parametrize("source", list(TrackSource))
def test_main_publishes_everything(source: TrackSource) -> None:
    assert allowed(main, _publish(source), on_stage=False, listen_only=False) is None


def test_nobody_but_main_publishes_the_screen() -> None:
    for role in (receiving, student, observer):
        assert allowed(role, _publish(TrackSource.screen), on_stage=True, listen_only=False) is NO, role


def test_receiving_publishes_camera_and_microphone_unless_listen_only() -> None:
    for source in (TrackSource.camera, TrackSource.microphone):
        assert allowed(receiving, _publish(source), on_stage=False, listen_only=False) is None
        assert allowed(receiving, _publish(source), on_stage=False, listen_only=True) is NO
    assert allowed(receiving, Offer(sdp="v=0"), on_stage=False, listen_only=True) is NO
    assert allowed(receiving, RaiseHand(raised=True), on_stage=False, listen_only=True) is NO
    assert allowed(receiving, RaiseHand(raised=True), on_stage=False, listen_only=False) is None


def test_a_student_publishes_only_while_on_stage() -> None:
    for source in (TrackSource.camera, TrackSource.microphone):
        assert allowed(student, _publish(source), on_stage=False, listen_only=False) is NO
        assert allowed(student, _publish(source), on_stage=True, listen_only=False) is None
    # it may still tear its tracks down after stepping off the stage
    assert allowed(student, Unpublish(source=TrackSource.camera), on_stage=False, listen_only=False) is None
    assert allowed(student, Offer(sdp="v=0"), on_stage=False, listen_only=False) is None


def test_an_observer_never_publishes_chats_or_raises_a_hand() -> None:
    for msg in (_publish(TrackSource.camera), _publish(TrackSource.microphone), Offer(sdp="v=0"),
                Unpublish(source=TrackSource.camera), SetMuted(source=TrackSource.microphone, muted=False),
                Chat(text="hi"), RaiseHand(raised=True),
                IceCandidate(target=PeerTarget.publisher, candidate=None)):
        assert allowed(observer, msg, on_stage=True, listen_only=False) is NO, msg.type


def test_an_observer_receives() -> None:
    for msg in (UpdateSubscriptions(subscriptions=[]), IceCandidate(target=PeerTarget.subscriber, candidate=None),
                Ping(ts=1), client_adapter.validate_python({"type": "answer", "sdp": "v=0"}),
                client_adapter.validate_python({"type": "link_quality", "loss": 0, "rtt_ms": 1, "jitter_ms": 1,
                                                "bitrate_kbps": 1}),
                client_adapter.validate_python({"type": "leave"})):
        assert allowed(observer, msg, on_stage=False, listen_only=False) is None, msg.type


def test_only_main_controls_the_stage_and_mutes() -> None:
    controls = (SetOnStage(participant_id="p1"), SetOnStage(participant_id=None),
                Mute(participant_id="p1", source=TrackSource.microphone, muted=True), MuteAll(muted=True))
    for msg in controls:
        assert allowed(main, msg, on_stage=False, listen_only=False) is None
        for role in (receiving, student, observer):
            assert allowed(role, msg, on_stage=True, listen_only=False) is NO, (role, msg.type)


def test_students_and_classrooms_chat_and_raise_hands_main_does_not_raise() -> None:
    for role in (main, receiving, student):
        assert allowed(role, Chat(text="hi"), on_stage=False, listen_only=False) is None
    assert allowed(student, RaiseHand(raised=True), on_stage=False, listen_only=False) is None
    assert allowed(main, RaiseHand(raised=True), on_stage=False, listen_only=False) is NO


def test_allowed_takes_the_role_as_its_token_string() -> None:
    assert allowed("observer", Chat(text="hi"), on_stage=False, listen_only=False) is NO  # type: ignore[arg-type]
