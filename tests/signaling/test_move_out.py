"""A room that leaves this node (its lease went to another node, or this node lost Redis long enough
that it may lapse): every socket is closed with 4010 and nobody hears that anybody left, the lesson is
not closed (it opens again on the next join), and the room's media are released."""

from __future__ import annotations

import pytest
from starlette.websockets import WebSocketDisconnect

from signaling.room import CLOSE_REDIRECT
from tests.signaling.test_endpoint import join_msg, join_token, open_lesson, recv, recv_until


def test_a_room_moved_out_closes_every_socket_with_4010_and_opens_again_on_the_next_join(
        client, app, world, auth, session_factory):
    lid = open_lesson(client, world, auth, session_factory)
    rooms = app.state.rooms
    with client.websocket_connect(f"/api/v1/lessons/{lid}/ws") as main, \
            client.websocket_connect(f"/api/v1/lessons/{lid}/ws") as classroom:
        main.send_json(join_msg(join_token(client, auth, world.teacher, lid)))
        recv_until(main, "joined")
        classroom.send_json(join_msg(join_token(client, auth, world.terminal_recv, lid)))
        recv_until(classroom, "joined")
        recv_until(main, "participant_joined")
        room = rooms.get(lid)
        assert client.portal.call(_move_out, rooms, lid) == [lid]
        for ws in (main, classroom):
            with pytest.raises(WebSocketDisconnect) as exc:
                m = recv(ws)  # nothing: no leave, no participant_left
                raise AssertionError(m)
            assert exc.value.code == CLOSE_REDIRECT
    assert rooms.get(lid) is None and room.closed and room.participants == {}
    assert client.portal.call(_move_out, rooms, lid) == []
    with client.websocket_connect(f"/api/v1/lessons/{lid}/ws") as again:  # not closed: it opens again
        again.send_json(join_msg(join_token(client, auth, world.teacher, lid)))
        joined = recv_until(again, "joined")
        assert joined["participants"] == [] and rooms.get(lid) is not room


async def _move_out(rooms, lid):  # type: ignore[no-untyped-def]
    return rooms.move_out([lid])
