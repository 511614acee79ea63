"""The whole path from booking to room: the lifecycle task opens the room, the main classroom
joins over the WebSocket and starts the lesson, and closing the room disconnects everyone."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from starlette.websockets import WebSocketDisconnect

from scheduler.models import InstanceStatus, LessonInstance
from server.api.times import to_local
from server.core.lifecycle_task import LifecycleTask
from tests.server.api.routes.test_lessons import book, lessons
from tests.signaling.test_endpoint import join_msg, join_token, recv, recv_until


def test_lifecycle_opens_the_room_and_its_close_ends_every_session(client, app, world, auth, session_factory,
                                                                    monkeypatch):
    book(client, world, auth)
    first = lessons(client, world.urban_admin, auth, limit=1)["data"][0]
    lid = first["id"]
    starts, ends = (to_local(datetime.fromisoformat(first[k])) for k in ("starts_at", "ends_at"))  # booked wall clock
    task = LifecycleTask(app.state.session_factory, app.state.bus, app.state.settings)
    now = {"t": starts - timedelta(minutes=30)}
    monkeypatch.setattr("scheduler.clock.now", lambda: now["t"])

    token = join_token(client, auth, world.teacher, lid)
    with client.websocket_connect(f"/api/v1/lessons/{lid}/ws") as ws:  # too early: not open yet
        ws.send_json(join_msg(token))
        assert recv(ws)["code"] == "room_not_open"

    now["t"] = starts - timedelta(minutes=9)  # within the 10-minute lead
    assert [e.type for e in client.portal.call(task.run_once)] == ["room_opened"]
    with client.websocket_connect(f"/api/v1/lessons/{lid}/ws") as main, \
            client.websocket_connect(f"/api/v1/lessons/{lid}/ws") as recv_room:
        main.send_json(join_msg(join_token(client, auth, world.teacher, lid)))
        assert recv_until(main, "joined")["participant"]["role"] == "main"
        recv_room.send_json(join_msg(join_token(client, auth, world.terminal_recv, lid)))
        recv_until(recv_room, "joined")
        assert recv_until(main, "participant_joined")["participant"]["role"] == "receiving"

        now["t"] = starts + timedelta(minutes=1)
        r = client.post(f"/api/v1/lessons/{lid}/start", headers=auth(world.teacher))
        assert r.status_code == 200 and r.json()["status"] == "live"
        assert recv_until(recv_room, "room_updated")["room"]["live"] is True

        now["t"] = ends + timedelta(minutes=10)  # end + grace
        assert [e.status for e in client.portal.call(task.run_once)] == ["held"]
        for ws in (main, recv_room):
            assert recv_until(ws, "leave")["reason"] == "room_closed"
            with pytest.raises(WebSocketDisconnect):
                recv(ws)
    with session_factory() as s:
        inst = s.get(LessonInstance, lid)
        assert inst.status is InstanceStatus.held and inst.room_closed_at is not None


def test_joined_hands_browsers_the_configured_ice_servers(client, app, world, auth, session_factory):
    from media.ice import IcePolicy
    from tests.signaling.test_endpoint import open_lesson

    app.state.ice_policy = IcePolicy.from_strings(
        "stun:stun.example.org:3478,turn:sanke:secret@turn.example.org:3478?transport=udp", None, None, None)
    lid = open_lesson(client, world, auth, session_factory)
    with client.websocket_connect(f"/api/v1/lessons/{lid}/ws") as ws:
        ws.send_json(join_msg(join_token(client, auth, world.teacher, lid)))
        servers = recv_until(ws, "joined")["ice_servers"]
    assert servers[0]["urls"] == ["stun:stun.example.org:3478"]
    assert servers[1]["username"] == "sanke" and servers[1]["credential"] == "secret"


def test_bad_ice_setting_fails_at_start(tmp_path):
    from server.core.config import Settings
    from server.main import create_app

    with pytest.raises(ValueError, match="SANKE_ICE_ALLOWED_NETWORKS"):
        create_app(Settings(data_dir=tmp_path, ice_allowed_networks="loopback"))
