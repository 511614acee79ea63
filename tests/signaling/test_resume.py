"""Reconnect and resume (flow 7 of docs/protocol.md), through the real WebSocket: a dropped client
gets its place, hand, stage and missed messages back within the grace period; after it, or after
``leave``, or with someone else's token, it joins afresh."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.websockets import WebSocketDisconnect

from tests.server.api.routes.test_lessons import lessons
from tests.signaling.test_endpoint import (
    join_msg,
    join_token,
    open_lesson,
    quiet,
    recv,
    recv_until,
)


def resume_msg(token: str, session_id: str, last_seq: int, *, keep_media: bool = False,
               rid: str = "j2") -> dict[str, Any]:
    return {**join_msg(token, rid), "resume_session_id": session_id, "last_seq": last_seq, "keep_media": keep_media}


def _types(msgs: list[dict[str, Any]]) -> list[str]:
    return [m["type"] for m in msgs]


@pytest.fixture
def lesson(client, world, auth, session_factory) -> int:  # type: ignore[no-untyped-def]
    return open_lesson(client, world, auth, session_factory)


def test_drop_and_resume_within_the_grace(client, world, auth, lesson):
    url = f"/api/v1/lessons/{lesson}/ws"
    with client.websocket_connect(url) as mn:
        mn.send_json(join_msg(join_token(client, auth, world.teacher, lesson)))
        mid = recv(mn)["session_id"]
        with client.websocket_connect(url) as rv:
            rv.send_json(join_msg(join_token(client, auth, world.terminal_recv, lesson)))
            joined = recv(rv)
            rid = joined["session_id"]
            assert joined["resume_grace_s"] == 30
            rv.send_json({"type": "raise_hand", "request_id": "h1", "raised": True})
            last = recv_until(rv, "ack")
            assert last["request_id"] == "h1"
            last_seq = last["seq"]
            recv_until(mn, "hand_raised")
        # the socket dropped without leave: the main classroom sees nothing, its chat is kept for rv
        seen: list[dict[str, Any]] = []
        mn.send_json({"type": "chat", "text": "第一句"})
        mn.send_json({"type": "chat", "text": "第二句"})
        recv_until(mn, "chat", seen)
        recv_until(mn, "chat", seen)
        seen += quiet(mn, 0.3)
        assert "participant_left" not in _types(seen)

        with client.websocket_connect(url) as rv:
            rv.send_json(resume_msg(join_token(client, auth, world.terminal_recv, lesson), rid, last_seq,
                                    keep_media=True))
            resumed = recv(rv)
            assert resumed["type"] == "resumed", resumed
            assert (resumed["session_id"], resumed["last_seq"], resumed["request_id"]) == (rid, last_seq, "j2")
            # both chat lines, with the seq they had when they were sent to the session
            replay = [recv(rv), recv(rv)]
            assert [(m["type"], m["text"], m["seq"]) for m in replay] == [
                ("chat", "第一句", last_seq + 1), ("chat", "第二句", last_seq + 2)]
            assert resumed["seq"] == last_seq + 3  # the next seq of the session when it resumed

            # the place is kept: the hand is still up, the main classroom can bring it on stage
            mn.send_json({"type": "set_on_stage", "request_id": "s1", "participant_id": rid})
            assert recv_until(mn, "ack", seen)["request_id"] == "s1"
            m = recv_until(rv, "on_stage_changed")
            assert m["participant_id"] == rid and m["seq"] > resumed["seq"]
            assert recv_until(rv, "hand_raised")["raised"] is False  # going on stage lowers the raised hand

            # numbering goes on across the two sockets
            rv.send_json({"type": "ping", "request_id": "p", "ts": 1})
            pong = recv_until(rv, "pong")
            assert pong["seq"] > m["seq"]

            seen += quiet(mn, 0.3)
            assert "participant_left" not in _types(seen) and "participant_joined" not in _types(seen)

            # a newcomer sees rv on stage, as it was
            with client.websocket_connect(url) as ob:
                ob.send_json(join_msg(join_token(client, auth, world.researcher_a, lesson)))
                j = recv(ob)
                listed = {p["participant_id"]: p for p in j["participants"]}
                assert set(listed) == {mid, rid} and listed[rid]["on_stage"] is True
                assert j["room"]["on_stage"] == rid


def test_resume_keeps_a_raised_hand_and_seq_goes_on(client, world, auth, lesson):
    url = f"/api/v1/lessons/{lesson}/ws"
    with client.websocket_connect(url) as mn:
        mn.send_json(join_msg(join_token(client, auth, world.teacher, lesson)))
        recv(mn)
        with client.websocket_connect(url) as rv:
            rv.send_json(join_msg(join_token(client, auth, world.terminal_recv, lesson)))
            rid = recv(rv)["session_id"]
            rv.send_json({"type": "raise_hand", "request_id": "h", "raised": True})
            last_seq = recv_until(rv, "ack")["seq"]
        with client.websocket_connect(url) as rv:
            rv.send_json(resume_msg(join_token(client, auth, world.terminal_recv, lesson), rid, last_seq))
            assert recv(rv)["type"] == "resumed"
            quiet(rv)
            with client.websocket_connect(url) as ob:
                ob.send_json(join_msg(join_token(client, auth, world.researcher_a, lesson)))
                j = recv(ob)
                assert j["room"]["hands_raised"] == [rid]
                assert [p["hand_raised"] for p in j["participants"] if p["participant_id"] == rid] == [True]


def test_resume_after_the_grace_is_a_fresh_join(client, world, auth, lesson, monkeypatch):
    monkeypatch.setattr("signaling.room.RESUME_GRACE_S", 0.3)
    url = f"/api/v1/lessons/{lesson}/ws"
    with client.websocket_connect(url) as mn:
        mn.send_json(join_msg(join_token(client, auth, world.teacher, lesson)))
        recv(mn)
        with client.websocket_connect(url) as rv:
            rv.send_json(join_msg(join_token(client, auth, world.terminal_recv, lesson)))
            joined = recv(rv)
            rid, last_seq = joined["session_id"], joined["seq"]
            assert joined["resume_grace_s"] == 1  # advertised in whole seconds, rounded up
        recv_until(mn, "participant_joined")
        m = recv_until(mn, "participant_left")
        assert (m["participant_id"], m["reason"]) == (rid, "timeout")
        with client.websocket_connect(url) as rv:
            rv.send_json(resume_msg(join_token(client, auth, world.terminal_recv, lesson), rid, last_seq))
            j = recv(rv)
            assert j["type"] == "joined" and j["session_id"] != rid and j["request_id"] == "j2"
            assert recv_until(mn, "participant_joined")["participant"]["participant_id"] == j["session_id"]


def test_expiry_is_also_checked_at_the_resume(client, world, auth, lesson, monkeypatch):
    """The grace timer is not the only guard: a resume after the grace, by the clock, is refused."""
    url = f"/api/v1/lessons/{lesson}/ws"
    clock = {"t": 1000.0}
    monkeypatch.setattr("signaling.room.clock", lambda: clock["t"])
    with client.websocket_connect(url) as mn:
        mn.send_json(join_msg(join_token(client, auth, world.teacher, lesson)))
        recv(mn)
        with client.websocket_connect(url) as rv:
            rv.send_json(join_msg(join_token(client, auth, world.terminal_recv, lesson)))
            joined = recv(rv)
        recv_until(mn, "participant_joined")
        quiet(mn, 0.3)  # the drop is noticed
        clock["t"] += 31
        with client.websocket_connect(url) as rv:
            rv.send_json(resume_msg(join_token(client, auth, world.terminal_recv, lesson), joined["session_id"],
                                    joined["seq"]))
            assert recv(rv)["type"] == "joined"
        m = recv_until(mn, "participant_left")
        assert (m["participant_id"], m["reason"]) == (joined["session_id"], "timeout")


def test_another_users_token_does_not_resume_a_session(client, world, auth, lesson):
    url = f"/api/v1/lessons/{lesson}/ws"
    with client.websocket_connect(url) as mn:
        mn.send_json(join_msg(join_token(client, auth, world.teacher, lesson)))
        recv(mn)
        with client.websocket_connect(url) as rv:
            rv.send_json(join_msg(join_token(client, auth, world.terminal_recv, lesson)))
            joined = recv(rv)
        rid = joined["session_id"]
        recv_until(mn, "participant_joined")
        with client.websocket_connect(url) as thief:
            thief.send_json(resume_msg(join_token(client, auth, world.researcher_a, lesson), rid, joined["seq"]))
            j = recv(thief)
            assert j["type"] == "joined" and j["session_id"] != rid
            assert j["participant"]["role"] == "observer" and j["participant"]["user_id"] == world.researcher_a.id
        # the owner still resumes it
        with client.websocket_connect(url) as rv:
            rv.send_json(resume_msg(join_token(client, auth, world.terminal_recv, lesson), rid, joined["seq"]))
            assert recv(rv)["type"] == "resumed"
        assert "participant_left" not in _types(quiet(mn, 0.3))


def test_a_token_for_another_lesson_cannot_resume(client, world, auth, lesson):
    other = lessons(client, world.urban_admin, auth, limit=2)["data"][1]["id"]
    url = f"/api/v1/lessons/{lesson}/ws"
    with client.websocket_connect(url) as rv:
        rv.send_json(join_msg(join_token(client, auth, world.terminal_recv, lesson)))
        joined = recv(rv)
    with client.websocket_connect(url) as rv:
        rv.send_json(resume_msg(join_token(client, auth, world.terminal_recv, other), joined["session_id"],
                                joined["seq"]))
        m = recv(rv)
        assert (m["type"], m["code"]) == ("error", "token_invalid")
        with pytest.raises(WebSocketDisconnect) as exc:
            recv(rv)
        assert exc.value.code == 4001


def test_leave_then_resume_is_a_fresh_join(client, world, auth, lesson):
    url = f"/api/v1/lessons/{lesson}/ws"
    with client.websocket_connect(url) as mn:
        mn.send_json(join_msg(join_token(client, auth, world.teacher, lesson)))
        recv(mn)
        with client.websocket_connect(url) as rv:
            rv.send_json(join_msg(join_token(client, auth, world.terminal_recv, lesson)))
            joined = recv(rv)
            rv.send_json({"type": "leave"})
            last = recv_until(rv, "leave")
            assert last["reason"] == "client_left"
        m = recv_until(mn, "participant_left")
        assert (m["participant_id"], m["reason"]) == (joined["session_id"], "client_left")
        with client.websocket_connect(url) as rv:
            rv.send_json(resume_msg(join_token(client, auth, world.terminal_recv, lesson), joined["session_id"],
                                    last["seq"]))
            j = recv(rv)
            assert j["type"] == "joined" and j["session_id"] != joined["session_id"]


def test_resume_while_the_old_socket_is_open_replaces_it(client, world, auth, lesson):
    url = f"/api/v1/lessons/{lesson}/ws"
    with client.websocket_connect(url) as mn, client.websocket_connect(url) as old, \
            client.websocket_connect(url) as new:
        mn.send_json(join_msg(join_token(client, auth, world.teacher, lesson)))
        recv(mn)
        old.send_json(join_msg(join_token(client, auth, world.terminal_recv, lesson)))
        joined = recv(old)
        recv_until(mn, "participant_joined")
        new.send_json(resume_msg(join_token(client, auth, world.terminal_recv, lesson), joined["session_id"],
                                 joined["seq"]))
        assert recv(new)["type"] == "resumed"
        assert recv_until(old, "leave")["reason"] == "replaced"
        with pytest.raises(WebSocketDisconnect) as exc:
            recv(old)
        assert exc.value.code == 4009
        # the session lives on the new socket; the main classroom saw nothing
        mn.send_json({"type": "chat", "text": "还在吗"})
        assert recv_until(new, "chat")["text"] == "还在吗"
        assert "participant_left" not in _types(quiet(mn, 0.3))


def test_last_seq_older_than_the_buffer_is_a_fresh_join(client, world, auth, lesson, monkeypatch):
    monkeypatch.setattr("signaling.room.REPLAY_BUFFER", 3)
    url = f"/api/v1/lessons/{lesson}/ws"
    with client.websocket_connect(url) as mn:
        mn.send_json(join_msg(join_token(client, auth, world.teacher, lesson)))
        recv(mn)
        with client.websocket_connect(url) as rv:
            rv.send_json(join_msg(join_token(client, auth, world.terminal_recv, lesson)))
            joined = recv(rv)
        for i in range(5):
            mn.send_json({"type": "chat", "text": f"第{i}句"})
            recv_until(mn, "chat")
        with client.websocket_connect(url) as rv:
            rv.send_json(resume_msg(join_token(client, auth, world.terminal_recv, lesson), joined["session_id"],
                                    joined["seq"]))
            j = recv(rv)
            assert j["type"] == "joined" and j["session_id"] != joined["session_id"]
        m = recv_until(mn, "participant_left")
        assert (m["participant_id"], m["reason"]) == (joined["session_id"], "replaced")


def test_a_ping_timeout_keeps_the_session_for_a_resume(client, world, auth, lesson, monkeypatch):
    monkeypatch.setattr("signaling.endpoint.PING_TIMEOUT_S", 0.4)
    url = f"/api/v1/lessons/{lesson}/ws"
    with client.websocket_connect(url) as rv:
        rv.send_json(join_msg(join_token(client, auth, world.terminal_recv, lesson)))
        joined = recv(rv)
        m = recv(rv, 5)
        assert (m["type"], m["reason"]) == ("leave", "timeout")
        with pytest.raises(WebSocketDisconnect) as exc:
            recv(rv)
        assert exc.value.code == 4008
    with client.websocket_connect(url) as rv:
        rv.send_json(resume_msg(join_token(client, auth, world.terminal_recv, lesson), joined["session_id"], m["seq"]))
        resumed = recv(rv)
        assert resumed["type"] == "resumed" and resumed["seq"] == m["seq"] + 1
        assert quiet(rv) == []  # the socket's leave is not replayed


def test_the_media_hears_the_resume(client, app, world, auth, lesson):
    from tests.signaling.test_room_media import Recorder

    media = Recorder()
    app.state.media_factory = lambda instance_id: media
    url = f"/api/v1/lessons/{lesson}/ws"
    with client.websocket_connect(url) as rv:
        rv.send_json(join_msg(join_token(client, auth, world.terminal_recv, lesson)))
        joined = recv(rv)
    with client.websocket_connect(url) as rv:
        rv.send_json(resume_msg(join_token(client, auth, world.terminal_recv, lesson), joined["session_id"],
                                joined["seq"], keep_media=True))
        assert recv(rv)["type"] == "resumed"
        rv.send_json({"type": "leave"})
        recv_until(rv, "leave")
    sid = joined["session_id"]
    assert media.calls == [("joined", sid), ("resumed", sid, True), ("left", sid)]
