"""The signaling WebSocket: join checks, roster without observers, classroom controls, robustness, room close."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import anyio
import jwt
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from starlette.websockets import WebSocketDisconnect

from scheduler.models import LessonInstance
from signaling.messages import CLIENT_TYPES
from tests.conftest import TEST_SECRET
from tests.server.api.routes.test_lessons import book, lessons

# ----------------------------------------------------------------------------- helpers


@pytest.fixture
def wsc(app) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """The app as ``create_app`` builds it: the lesson WebSocket and its room registry are wired in."""
    with TestClient(app) as c:
        yield c


def recv(ws: Any, timeout: float = 5.0) -> dict[str, Any]:
    """The next server message; fails instead of hanging; raises WebSocketDisconnect on close."""

    async def _get() -> Any:
        with anyio.fail_after(timeout):
            return await ws._send_rx.receive()

    message = ws.portal.call(_get)
    ws._raise_on_close(message)
    return json.loads(message["text"])


def recv_until(ws: Any, kind: str, seen: list[dict[str, Any]] | None = None, limit: int = 50) -> dict[str, Any]:
    for _ in range(limit):
        m = recv(ws)
        if seen is not None:
            seen.append(m)
        if m["type"] == kind:
            return m
    raise AssertionError(f"no {kind} within {limit} messages")


def quiet(ws: Any, seconds: float = 0.2) -> list[dict[str, Any]]:
    """Whatever arrives within ``seconds`` (nothing, usually)."""
    out = []
    try:
        while True:
            out.append(recv(ws, seconds))
    except TimeoutError:
        return out


def open_lesson(wsc: TestClient, world: Any, auth: Any, session_factory: Any, *, opened: bool = True,
                **booking: Any) -> int:
    book(wsc, world, auth, **booking)
    lid = lessons(wsc, world.urban_admin, auth, limit=1)["data"][0]["id"]
    if opened:
        with session_factory() as s:
            s.get(LessonInstance, lid).room_opened_at = datetime(2026, 8, 24, 8, 55)
            s.commit()
    return lid


def join_token(wsc: TestClient, auth: Any, user: Any, lid: int) -> str:
    r = wsc.post(f"/api/v1/lessons/{lid}/join-token", headers=auth(user))
    assert r.status_code == 200, r.text
    return r.json()["token"]


def join_msg(token: str, rid: str = "j1") -> dict[str, Any]:
    return {"type": "join", "request_id": rid, "protocol_version": 1, "token": token}


def refused(wsc: TestClient, lid: int, first: dict[str, Any] | None, code: str, close_code: int) -> None:
    with wsc.websocket_connect(f"/api/v1/lessons/{lid}/ws") as ws:
        if first is not None:
            ws.send_json(first)
        m = recv(ws, 15)
        assert m["type"] == "error" and m["code"] == code, m
        assert m["seq"] == 1 and m["message"]
        with pytest.raises(WebSocketDisconnect) as exc:
            recv(ws)
        assert exc.value.code == close_code


# ----------------------------------------------------------------------------- join refused


def test_join_refusals(wsc, world, auth, session_factory):
    lid = open_lesson(wsc, world, auth, session_factory)
    other = lessons(wsc, world.urban_admin, auth, limit=2)["data"][1]["id"]
    good = join_token(wsc, auth, world.teacher, lid)
    forged = jwt.encode({"sub": str(world.teacher.id), "typ": "join", "lesson": lid, "lesson_role": "main",
                         "exp": int(time.time()) + 60}, "another-key-another-key-another-key-0123", "HS256")
    expired = jwt.encode({"sub": str(world.teacher.id), "typ": "join", "lesson": lid, "lesson_role": "main",
                          "exp": int(time.time()) - 5}, TEST_SECRET, "HS256")
    refused(wsc, lid, join_msg(forged), "token_invalid", 4001)
    refused(wsc, lid, join_msg(expired), "token_expired", 4001)
    refused(wsc, other, join_msg(good), "token_invalid", 4001)  # a token for another lesson
    refused(wsc, lid, {"type": "join", "protocol_version": 2, "token": good}, "unsupported_version", 4000)
    refused(wsc, other, join_msg(join_token(wsc, auth, world.teacher, other)), "room_not_open", 4004)


def test_no_join_is_refused_in_time(wsc, world, auth, session_factory, monkeypatch):
    # long enough that a loaded machine answers the ping before the timeout fires, short for a test
    monkeypatch.setattr("signaling.endpoint.JOIN_TIMEOUT_S", 2.0)
    lid = open_lesson(wsc, world, auth, session_factory)
    with wsc.websocket_connect(f"/api/v1/lessons/{lid}/ws") as ws:
        ws.send_json({"type": "ping", "request_id": "p", "ts": 1})
        m = recv(ws)
        assert (m["type"], m["code"], m["request_id"]) == ("error", "not_joined", "p")
        m = recv(ws)
        assert (m["type"], m["code"]) == ("error", "not_joined")
        with pytest.raises(WebSocketDisconnect) as exc:
            recv(ws)
        assert exc.value.code == 4000


def test_closed_room_refuses(wsc, world, auth, session_factory):
    lid = open_lesson(wsc, world, auth, session_factory)
    token = join_token(wsc, auth, world.teacher, lid)
    with session_factory() as s:
        s.get(LessonInstance, lid).room_closed_at = datetime(2026, 8, 24, 9, 0)
        s.commit()
    refused(wsc, lid, join_msg(token), "room_closed", 4004)


# ----------------------------------------------------------------------------- a lesson


def test_lesson_flow(wsc, app, world, auth, session_factory):
    app.state.media_factory = None  # the room without an SFU (NullMedia), whatever the app plugs in
    lid = open_lesson(wsc, world, auth, session_factory)
    url = f"/api/v1/lessons/{lid}/ws"
    t_main = join_token(wsc, auth, world.teacher, lid)
    t_recv = join_token(wsc, auth, world.terminal_recv, lid)
    t_obs = join_token(wsc, auth, world.researcher_a, lid)
    main_seen: list[dict[str, Any]] = []
    with wsc.websocket_connect(url) as rv, wsc.websocket_connect(url) as ob, wsc.websocket_connect(url) as mn:
        rv.send_json(join_msg(t_recv))
        j_rv = recv(rv)
        assert j_rv["type"] == "joined" and j_rv["request_id"] == "j1" and j_rv["seq"] == 1
        assert j_rv["participant"]["role"] == "receiving" and j_rv["participants"] == []
        assert j_rv["participant"]["display_name"] == "石桥一年级终端"
        rid = j_rv["session_id"]

        ob.send_json(join_msg(t_obs))
        j_ob = recv(ob)
        assert [p["participant_id"] for p in j_ob["participants"]] == [rid]
        oid = j_ob["session_id"]
        assert quiet(rv) == []  # nobody hears about the observer

        mn.send_json(join_msg(t_main))
        j_mn = recv(mn)
        main_seen.append(j_mn)
        assert [p["participant_id"] for p in j_mn["participants"]] == [rid]
        mid = j_mn["session_id"]
        assert recv(rv)["participant"]["participant_id"] == mid
        assert recv(ob)["participant"]["participant_id"] == mid

        # chat reaches all three, observers included
        rv.send_json({"type": "chat", "text": "  老师好  "})
        for ws in (rv, ob, mn):
            m = recv_until(ws, "chat", main_seen if ws is mn else None)
            assert (m["from_participant_id"], m["text"]) == (rid, "老师好")

        # raise hand reaches the main classroom
        rv.send_json({"type": "raise_hand", "raised": True})
        m = recv_until(mn, "hand_raised", main_seen)
        assert m["participant_id"] == rid and m["queue"] == [rid]

        # the observer may not chat nor publish
        ob.send_json({"type": "chat", "request_id": "c1", "text": "hi"})
        m = recv_until(ob, "error")
        assert (m["code"], m["request_id"]) == ("not_allowed", "c1")
        ob.send_json({"type": "publish", "request_id": "p1", "source": "camera", "track_id": "cam"})
        m = recv_until(ob, "error")
        assert (m["code"], m["request_id"]) == ("not_allowed", "p1")

        # no media module: refused, not crashed
        mn.send_json({"type": "publish", "request_id": "p2", "source": "camera", "track_id": "cam"})
        m = recv_until(mn, "error", main_seen)
        assert m["request_id"] == "p2" and "媒体" in m["message"]

        # on stage: everyone hears it, the hand goes down
        mn.send_json({"type": "set_on_stage", "request_id": "s1", "participant_id": rid})
        for ws in (rv, ob, mn):
            assert recv_until(ws, "on_stage_changed", main_seen if ws is mn else None)["participant_id"] == rid
        mn.send_json({"type": "set_on_stage", "request_id": "s2", "participant_id": oid})
        m = recv_until(mn, "error", main_seen)
        assert (m["code"], m["request_id"]) == ("unknown_participant", "s2")

        # a receiving classroom may not mute all
        rv.send_json({"type": "mute_all", "request_id": "m1", "muted": True})
        m = recv_until(rv, "error")
        assert (m["code"], m["request_id"]) == ("not_allowed", "m1")

        # mute: the target hears `muted`, others `participant_updated`
        quiet(ob)
        mn.send_json({"type": "mute", "participant_id": rid, "source": "microphone", "muted": True})
        m = recv_until(rv, "muted")
        assert (m["source"], m["muted"], m["by"]) == ("microphone", True, mid)
        m = recv_until(ob, "participant_updated")
        assert m["participant"]["muted_by_teacher"] == ["microphone"]
        rv.send_json({"type": "set_muted", "request_id": "u1", "source": "microphone", "muted": False})
        assert recv_until(rv, "error")["code"] == "not_allowed"

        mn.send_json({"type": "mute_all", "muted": True})
        assert recv_until(ob, "room_updated")["room"]["muted_all"] is True

        rv.send_json({"type": "link_quality", "loss": 0.1, "rtt_ms": 80, "jitter_ms": 5, "bitrate_kbps": 600})
        m = recv_until(mn, "link_quality_update", main_seen)
        assert (m["participant_id"], m["quality"]) == (rid, "poor")

        mn.send_json({"type": "ping", "request_id": "pp", "ts": 123})
        m = recv_until(mn, "pong", main_seen)
        assert (m["ts"], m["request_id"]) == (123, "pp")

        # the receiving classroom leaves
        rv.send_json({"type": "leave"})
        assert recv_until(rv, "leave")["reason"] == "client_left"
        m = recv_until(mn, "participant_left", main_seen)
        assert (m["participant_id"], m["reason"]) == (rid, "client_left")
        main_seen += quiet(mn)

        # seq increases by one per connection, and the main classroom never heard of the observer
        seqs = [m["seq"] for m in main_seen]
        assert seqs == list(range(1, len(seqs) + 1))
        assert oid not in json.dumps(main_seen)


def test_same_user_twice_replaces(wsc, world, auth, session_factory):
    lid = open_lesson(wsc, world, auth, session_factory)
    url = f"/api/v1/lessons/{lid}/ws"
    with wsc.websocket_connect(url) as mn, wsc.websocket_connect(url) as old, wsc.websocket_connect(url) as new:
        mn.send_json(join_msg(join_token(wsc, auth, world.teacher, lid)))
        recv(mn)
        old.send_json(join_msg(join_token(wsc, auth, world.terminal_recv, lid)))
        old_id = recv(old)["session_id"]
        recv_until(mn, "participant_joined")
        new.send_json(join_msg(join_token(wsc, auth, world.terminal_recv, lid)))
        j = recv(new)
        assert j["type"] == "joined" and [p["role"] for p in j["participants"]] == ["main"]
        assert recv_until(old, "leave")["reason"] == "replaced"
        with pytest.raises(WebSocketDisconnect) as exc:
            recv(old)
        assert exc.value.code == 4009
        m = recv_until(mn, "participant_left")
        assert (m["participant_id"], m["reason"]) == (old_id, "replaced")
        assert recv_until(mn, "participant_joined")["participant"]["participant_id"] == j["session_id"]


def test_listen_only_classroom_and_ping_timeout(wsc, world, auth, session_factory, monkeypatch):
    monkeypatch.setattr("signaling.endpoint.PING_TIMEOUT_S", 0.5)
    lid = open_lesson(wsc, world, auth, session_factory, receivers=[
        {"classroom_id": world.recv_room.id, "assistant_id": world.assistant.id, "mode": "listen_only"}])
    with wsc.websocket_connect(f"/api/v1/lessons/{lid}/ws") as rv:
        rv.send_json(join_msg(join_token(wsc, auth, world.terminal_recv, lid)))
        assert recv(rv)["participant"]["listen_only"] is True
        rv.send_json({"type": "raise_hand", "request_id": "h", "raised": True})
        assert recv(rv)["code"] == "not_allowed"
        rv.send_json({"type": "chat", "text": "能听到"})
        assert recv(rv)["type"] == "chat"
        # then silence: dropped with leave(timeout)
        m = recv(rv, 5)
        assert (m["type"], m["reason"]) == ("leave", "timeout")
        with pytest.raises(WebSocketDisconnect) as exc:
            recv(rv)
        assert exc.value.code == 4008


# ----------------------------------------------------------------------------- robustness

_MALFORMED: list[str | bytes] = [
    "", " ", "null", "[]", "1", '"join"', "{", "}", "{}", '{"type": 1}', '{"type": "nope"}',
    '{"type": "chat"}', '{"type": "chat", "text": ""}', '{"type": "chat", "text": "x", "extra": 1}',
    '{"type": "ping", "ts": -1}', '{"type": "ping", "ts": NaN}', '{"type": "link_quality", "loss": 2}',
    '{"type": "mute", "participant_id": "bad id!", "source": "camera", "muted": true}',
    '{"type": "raise_hand", "raised": "maybe"}', '{"type": "join", "protocol_version": 9, "token": "x"}',
    b"\xff\xfe\x00", b"\x80", "x" * 70_000, '{"type": "chat", "text": "' + "长" * 600 + '"}',
    "[" * 5000 + "]" * 5000, '{"type": "set_on_stage"}', '{"type": "publish", "source": "tv"}',
]
_TYPES = sorted(CLIENT_TYPES)


def test_malformed_frames_get_errors_and_the_room_goes_on(wsc, world, auth, session_factory):
    lid = open_lesson(wsc, world, auth, session_factory)
    url = f"/api/v1/lessons/{lid}/ws"
    with wsc.websocket_connect(url) as mn, wsc.websocket_connect(url) as rv:
        mn.send_json(join_msg(join_token(wsc, auth, world.teacher, lid)))
        recv(mn)
        rv.send_json(join_msg(join_token(wsc, auth, world.terminal_recv, lid)))
        recv(rv)
        recv_until(mn, "participant_joined")

        def bad(frame: str | bytes) -> None:
            (rv.send_bytes if isinstance(frame, bytes) else rv.send_text)(frame)
            m = recv(rv)
            assert m["type"] == "error" and m["message"], (frame, m)

        for i in range(160):
            bad(_MALFORMED[i % len(_MALFORMED)])

        @hsettings(max_examples=40, deadline=None, database=None, derandomize=True,
                   suppress_health_check=list(HealthCheck))
        @given(st.one_of(
            st.binary(max_size=300),
            st.text(max_size=300),
            st.fixed_dictionaries({"type": st.sampled_from(_TYPES), "not_a_field": st.integers()}).map(json.dumps),
            st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                         lambda c: st.lists(c, max_size=4), max_leaves=20).map(json.dumps),
        ))
        def fuzz(frame: str | bytes) -> None:
            bad(frame)

        fuzz()
        rv.send_json({"type": "chat", "text": "还在"})
        m = recv_until(mn, "chat")
        assert m["text"] == "还在"
        assert recv_until(rv, "chat")["text"] == "还在"


# ----------------------------------------------------------------------------- room closed


def test_room_closed_event_sends_everyone_away(wsc, app, world, auth, session_factory):
    lid = open_lesson(wsc, world, auth, session_factory)
    url = f"/api/v1/lessons/{lid}/ws"
    with wsc.websocket_connect(url) as mn, wsc.websocket_connect(url) as rv, wsc.websocket_connect(url) as ob:
        for ws, user in ((mn, world.teacher), (rv, world.terminal_recv), (ob, world.researcher_a)):
            ws.send_json(join_msg(join_token(wsc, auth, user, lid)))
            assert recv(ws)["type"] == "joined"
        wsc.portal.call(app.state.bus.publish, "lesson",
                        {"type": "room_closed", "instance_id": lid, "at": "2026-08-24T10:00:00", "status": "missed"})
        for ws in (mn, rv, ob):
            assert recv_until(ws, "leave")["reason"] == "room_closed"
            with pytest.raises(WebSocketDisconnect):
                recv(ws)
    # and nobody gets back in, even before the database says so
    refused(wsc, lid, join_msg(join_token(wsc, auth, world.teacher, lid)), "room_closed", 4004)


# ----------------------------------------------------------------------------- the room alone


def _member(pid: str, user_id: int, role: str, box: list[Any], *, deliver: Any = None) -> Any:
    from signaling.messages import LessonRole
    from signaling.room import Participant

    return Participant(participant_id=pid, user_id=user_id, display_name=f"u{user_id}", role=LessonRole(role),
                       classroom_id=None, listen_only=False, deliver=deliver or box.append)


def test_a_broken_connection_does_not_break_the_room():
    from signaling.messages import Chat
    from signaling.room import RoomRegistry

    def broken(msg: Any) -> None:
        raise OSError("gone")

    reg = RoomRegistry()
    room = reg.get_or_open(7)
    got_main: list[Any] = []
    got_obs: list[Any] = []
    main = _member("m", 1, "main", got_main)
    room.join(main)
    room.join(_member("b", 2, "receiving", [], deliver=broken))
    room.join(_member("o", 3, "observer", got_obs))
    room.handle(main, Chat(text="大家好"))
    assert [m.type for m in got_main] == ["joined", "participant_joined", "chat"]
    assert [m.type for m in got_obs] == ["joined", "chat"]
    reg.on_event("lesson", {"type": "lesson_live", "instance_id": 7})
    assert got_main[-1].type == "room_updated" and got_main[-1].room.live is True
    reg.on_event("lesson", {"type": "nonsense"})  # ignored, no crash
    reg.on_event("lesson", {"type": "room_closed", "instance_id": "7"})
    assert got_main[-1].type == "leave" and got_obs[-1].reason == "room_closed"
    assert reg.get(7) is None
