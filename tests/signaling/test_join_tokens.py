"""Join tokens that mean what they say (issue 12, item 11), through the real WebSocket.

A join token admits once: presented again it only resumes the session it created (a page whose
network dropped), never after ``leave`` and never as a second seat.  A token issued before the user
was deactivated or had the password reset is refused, and a user deactivated during a lesson is sent
away at once.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from tests.signaling.test_endpoint import join_msg, join_token, open_lesson, recv, recv_until, refused
from tests.signaling.test_resume import resume_msg


@pytest.fixture
def lesson(client, world, auth, session_factory) -> int:  # type: ignore[no-untyped-def]
    return open_lesson(client, world, auth, session_factory)


def _url(lesson: int) -> str:
    return f"/api/v1/lessons/{lesson}/ws"


def test_a_token_is_refused_after_leave(client, world, auth, lesson):
    token = join_token(client, auth, world.terminal_recv, lesson)
    with client.websocket_connect(_url(lesson)) as rv:
        rv.send_json(join_msg(token))
        assert recv(rv)["type"] == "joined"
        rv.send_json({"type": "leave"})
        assert recv_until(rv, "leave")["reason"] == "client_left"
    for _ in range(3):  # as the probe did: the leaked token must not take the seat again
        refused(client, lesson, join_msg(token), "token_invalid", 4001)
    # a fresh token from the API joins as usual
    with client.websocket_connect(_url(lesson)) as rv:
        rv.send_json(join_msg(join_token(client, auth, world.terminal_recv, lesson)))
        assert recv(rv)["type"] == "joined"


def test_a_copied_token_cannot_take_a_live_seat(client, world, auth, lesson):
    token = join_token(client, auth, world.terminal_recv, lesson)
    with client.websocket_connect(_url(lesson)) as rv:
        rv.send_json(join_msg(token))
        joined = recv(rv)
        # someone with a copy, with or without a made-up session id, gets nothing...
        refused(client, lesson, join_msg(token), "token_invalid", 4001)
        refused(client, lesson, resume_msg(token, "s-made-up", 0), "token_invalid", 4001)
        # ...and the classroom keeps its seat: nothing was replaced
        rv.send_json({"type": "ping", "request_id": "p", "ts": 1})
        assert recv_until(rv, "pong")["seq"] > joined["seq"]


def test_the_same_token_resumes_its_own_session_after_a_drop(client, world, auth, lesson):
    token = join_token(client, auth, world.terminal_recv, lesson)
    with client.websocket_connect(_url(lesson)) as rv:
        rv.send_json(join_msg(token))
        joined = recv(rv)
    with client.websocket_connect(_url(lesson)) as rv:  # the network came back before the token expired
        rv.send_json(resume_msg(token, joined["session_id"], joined["seq"]))
        resumed = recv(rv)
        assert (resumed["type"], resumed["session_id"]) == ("resumed", joined["session_id"])
    # a fresh token resumes it too, and the first token is then bound to the same session still
    with client.websocket_connect(_url(lesson)) as rv:
        rv.send_json(resume_msg(join_token(client, auth, world.terminal_recv, lesson), joined["session_id"],
                                resumed["seq"]))
        assert recv(rv)["type"] == "resumed"
        rv.send_json({"type": "leave"})
        assert recv_until(rv, "leave")["reason"] == "client_left"
    refused(client, lesson, resume_msg(token, joined["session_id"], resumed["seq"]), "token_invalid", 4001)


def test_a_token_issued_before_a_deactivation_or_password_reset_is_refused(client, world, auth, lesson):
    admin = auth(world.rural_admin)
    before_reset = join_token(client, auth, world.terminal_recv, lesson)
    r = client.patch(f"/api/v1/users/{world.terminal_recv.id}", json={"password": "New-password-9"}, headers=admin)
    assert r.status_code == 200, r.text
    refused(client, lesson, join_msg(before_reset), "token_invalid", 4001)

    before_deactivation = client.post(f"/api/v1/lessons/{lesson}/join-token", headers=auth_login(client, "term_recv",
                                                                                                 "New-password-9"))
    assert before_deactivation.status_code == 200, before_deactivation.text
    r = client.patch(f"/api/v1/users/{world.terminal_recv.id}", json={"is_active": False}, headers=admin)
    assert r.status_code == 200, r.text
    refused(client, lesson, join_msg(before_deactivation.json()["token"]), "token_invalid", 4001)


def auth_login(client: Any, username: str, password: str) -> dict[str, str]:
    r = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def test_a_deactivated_user_is_sent_away_at_once(client, world, auth, lesson):
    with client.websocket_connect(_url(lesson)) as mn:
        mn.send_json(join_msg(join_token(client, auth, world.teacher, lesson)))
        assert recv(mn)["type"] == "joined"
        with client.websocket_connect(_url(lesson)) as rv:
            rv.send_json(join_msg(join_token(client, auth, world.terminal_recv, lesson)))
            rid = recv(rv)["session_id"]
            recv_until(mn, "participant_joined")
            r = client.patch(f"/api/v1/users/{world.terminal_recv.id}", json={"is_active": False},
                             headers=auth(world.rural_admin))
            assert r.status_code == 200, r.text
            assert recv_until(rv, "leave")["reason"] == "kicked"
            with pytest.raises(WebSocketDisconnect) as exc:
                recv(rv)
            assert exc.value.code == 4003
        m = recv_until(mn, "participant_left")
        assert (m["participant_id"], m["reason"]) == (rid, "kicked")
        # the teacher's session goes on
        mn.send_json({"type": "ping", "request_id": "p", "ts": 1})
        assert recv_until(mn, "pong")["request_id"] == "p"


def test_two_nodes_share_used_tokens_and_deactivations(redis_server, tmp_path, db_url, world, auth, session_factory):
    """Two server processes on one database and one Redis: a token used on one node is refused on the
    other, and a deactivation made through one node's API sends the user away from the other's lesson."""
    from server.core.config import Settings
    from server.main import create_app
    from tests.conftest import TEST_SECRET

    def node(name: str) -> Any:
        return create_app(Settings(data_dir=tmp_path / name, database_url=db_url, secret_key=TEST_SECRET,
                                   redis_url=redis_server.url), migrate=False, run_lifecycle=False)

    with TestClient(node("a")) as a, TestClient(node("b")) as b:
        lesson = open_lesson(a, world, auth, session_factory)
        token = join_token(a, auth, world.terminal_recv, lesson)
        with b.websocket_connect(_url(lesson)) as rv:
            rv.send_json(join_msg(token))
            assert recv(rv)["type"] == "joined"
            refused(a, lesson, join_msg(token), "token_invalid", 4001)
            r = a.patch(f"/api/v1/users/{world.terminal_recv.id}", json={"is_active": False},
                        headers=auth(world.rural_admin))
            assert r.status_code == 200, r.text
            assert recv_until(rv, "leave")["reason"] == "kicked"
            with pytest.raises(WebSocketDisconnect) as exc:
                recv(rv)
            assert exc.value.code == 4003
