"""A node that opens a room another node left (it died, lost Redis or drained) opens it as it was: the
snapshot in Redis is read before the first join, the room's state is there at once (live, recent chat)
and each user gets its part back when it joins with its new session (on stage, mutes, hand); the node
then keeps the snapshot itself, and counts the room as taken over."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from server.core.config import Settings
from server.main import create_app
from signaling.roomstore import KEY_PREFIX
from tests.conftest import TEST_SECRET
from tests.signaling.test_endpoint import join_msg, join_token, open_lesson, recv_until
from tests.utils.wait import wait_until


def test_a_room_left_by_another_node_opens_as_it_was(redis_server, tmp_path, db_url, world, auth,
                                                     session_factory) -> None:
    if db_url.startswith("sqlite"):
        pytest.skip("several nodes share a PostgreSQL database (docs/operations.md)")
    app = create_app(Settings(data_dir=tmp_path / "n", database_url=db_url, secret_key=TEST_SECRET,
                              redis_url=redis_server.url, node_id="node-b"), migrate=False, run_lifecycle=False)
    r = redis.Redis.from_url(redis_server.url)
    r.flushdb()
    with TestClient(app) as c:
        lid = open_lesson(c, world, auth, session_factory)
        now_s, now_us = r.time()
        r.set("sanke:node-seen:node-a", str(now_s * 1000 + now_us // 1000 - 2000))  # its last renewal, 2 s ago
        r.set(KEY_PREFIX + str(lid), json.dumps({
            "live": True, "muted_all": False, "on_stage": world.terminal_recv.id, "hands": [],
            "users": {str(world.teacher.id): {"muted_by_teacher": [], "self_muted": []},
                      str(world.terminal_recv.id): {"muted_by_teacher": ["microphone"], "self_muted": ["microphone"]}},
            "chat": [{"from_participant_id": "s_old", "from_name": "王老师", "text": "同学们好", "ts": 1}],
            "node": "node-a"}))
        with c.websocket_connect(f"/api/v1/lessons/{lid}/ws") as teacher:
            teacher.send_json(join_msg(join_token(c, auth, world.teacher, lid)))
            joined = recv_until(teacher, "joined")
            assert joined["room"]["live"] is True and joined["room"]["on_stage"] is None
            assert [x["text"] for x in joined["recent_chat"]] == ["同学们好"]
            with c.websocket_connect(f"/api/v1/lessons/{lid}/ws") as classroom:
                classroom.send_json(join_msg(join_token(c, auth, world.terminal_recv, lid)))
                mine = recv_until(classroom, "joined")
                pid = mine["session_id"]
                assert mine["participant"]["on_stage"] is True and mine["room"]["on_stage"] == pid
                assert mine["participant"]["muted_by_teacher"] == ["microphone"]
                assert recv_until(teacher, "on_stage_changed")["participant_id"] == pid
                # this node keeps the snapshot now
                raw = wait_until("the snapshot rewritten", lambda: (v := r.get(KEY_PREFIX + str(lid)))
                                 and json.loads(v)["node"] == "node-b" and v, 5)
                snap: dict[str, Any] = json.loads(raw)
                assert snap["on_stage"] == world.terminal_recv.id and snap["live"] is True
        assert app.state.metrics.failovers.labels(side="taken_over")._value.get() == 1.0
    r.close()
