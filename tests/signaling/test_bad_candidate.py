"""Malformed ``ice_candidate`` messages over the lesson WebSocket, after the sender's offer: each is
answered ``error`` ``bad_candidate`` (its ``request_id`` echoed), leaves one log line without a
traceback and nothing at ERROR, and the socket, the sender's media and the lesson go on: a good
candidate is still taken, the viewer keeps decoding the teacher's frames.

aiortc clients against a server the test starts, its SFU in process, on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from media.candidate import Candidate
from media.router import Router, RouterError
from signaling.client import LessonClient, LessonError
from tests.media.sfu_harness import (  # noqa: F401 - fixtures: an SFU lesson on 127.0.0.1
    Lesson,
    db_url,
    lesson,
    loopback_clients,
    media_workers,
    settings,
)
from tests.media.sfu_helpers import RED, ColorTrack, close_to, frames
from tests.media.test_bad_sdp import POLICY, _publisher

GOOD = "candidate:2 1 udp 2122260223 127.0.0.1 54401 typ host"

BAD: dict[str, dict[str, Any]] = {
    # candidate strings aiortc's parser asserts on, or takes and fails on later
    "empty_fields": {"candidate": "candidate:", "sdp_mid": "0"},
    "one_word": {"candidate": "x", "sdp_mid": "0"},
    "short": {"candidate": "candidate:1 1 udp 2122260223 127.0.0.1", "sdp_mid": "0"},
    "no_type": {"candidate": "candidate:1 1 udp 2122260223 127.0.0.1 54400 typ", "sdp_mid": "0"},
    "port_not_a_number": {"candidate": "candidate:1 1 udp 2122260223 127.0.0.1 x typ host", "sdp_mid": "0"},
    "port_too_big": {"candidate": "candidate:1 1 udp 2122260223 127.0.0.1 99999999 typ host", "sdp_mid": "0"},
    "not_an_address": {"candidate": "candidate:1 1 udp 2122260223 ::zz 54400 typ host", "sdp_mid": "0"},
    "bad_transport": {"candidate": "candidate:1 1 sctp 2122260223 127.0.0.1 54400 typ host", "sdp_mid": "0"},
    "bad_type": {"candidate": "candidate:1 1 udp 2122260223 127.0.0.1 54400 typ martian", "sdp_mid": "0"},
    "dangling_raddr": {"candidate": "candidate:1 1 udp 1 127.0.0.1 54400 typ srflx raddr", "sdp_mid": "0"},
    "control_chars": {"candidate": "candidate:1 1 udp 1 127.0.0.1 54400 typ host\n\x00", "sdp_mid": "0"},
    # wrong types
    "candidate_number": {"candidate": 12345, "sdp_mid": "0"},
    "candidate_object": {"candidate": {"candidate": GOOD}, "sdp_mid": "0"},
    "mid_number": {"candidate": GOOD, "sdp_mid": 0},
    "index_text": {"candidate": GOOD, "sdp_mline_index": "zero"},
    "index_negative": {"candidate": GOOD, "sdp_mline_index": -1},
    "target_unknown": {"target": "both", "candidate": GOOD, "sdp_mid": "0"},
    # missing fields
    "no_candidate": {"sdp_mid": "0"},
    "no_target": {"target": None, "candidate": GOOD, "sdp_mid": "0"},
    "no_mid_nor_index": {"candidate": GOOD},
}


def test_the_bad_shapes_are_not_candidates() -> None:
    """The strict parser refuses each string above with ``ValueError`` and takes what browsers send."""
    for kind, fields in BAD.items():
        value = fields.get("candidate")
        if isinstance(value, str) and kind != "no_mid_nor_index" and value != GOOD:
            with pytest.raises(ValueError):
                Candidate.parse(value)
    chrome = ("candidate:842163049 1 udp 1677729535 203.0.113.7 46154 typ srflx raddr 0.0.0.0 rport 0 "
              "generation 0 ufrag sXy1 network-id 1 network-cost 10")
    c = Candidate.parse(chrome)
    assert (c.address, c.port, c.type, c.related_address, c.related_port) == ("203.0.113.7", 46154, "srflx",
                                                                               "0.0.0.0", 0)
    assert Candidate.parse("candidate:1 1 UDP 2122260223 4f2c8a1e-0b6d-4a3c-9d1f-2e7a5c9b8d10.local 5000 typ host")
    assert Candidate.parse("candidate:3 1 tcp 1518280447 ::1 9 typ host tcptype active").tcp_type == "active"


def test_the_worker_refuses_a_malformed_candidate_as_bad_candidate_not_a_crash(loopback_clients: None) -> None:
    """Behind the signaling check, the SFU's own path (``transport.add_candidate`` in a worker) refuses
    the same strings with ``bad_candidate``, and one outside the allowed networks with ``bad_sdp``."""

    async def scenario() -> None:
        router = Router("lesson-1", POLICY, lambda event, data: None)
        pc = await _publisher(router, "m", RED)
        try:
            for kind, fields in BAD.items():
                value = fields.get("candidate")
                if isinstance(value, str) and value != GOOD:
                    with pytest.raises(RouterError) as refused:
                        await router.add_candidate("m-send", value, "0", None)
                    assert refused.value.code == "bad_candidate", kind
            with pytest.raises(RouterError) as refused:
                await router.add_candidate("m-send", GOOD.replace("127.0.0.1", "192.168.1.20"), "0", None)
            assert refused.value.code == "bad_sdp"
            await router.add_candidate("m-send", GOOD, "0", None)
        finally:
            await pc.close()
            await router.close()

    asyncio.run(scenario())


def test_malformed_candidates_get_bad_candidate_one_log_line_and_the_lesson_goes_on(
        lesson: Lesson, caplog: pytest.LogCaptureFixture) -> None:
    w = lesson.world
    caplog.set_level(logging.INFO)

    async def scenario() -> None:
        main = await lesson.join(w.teacher)
        viewer = await lesson.join(w.terminal_recv)
        m = main.participant_id
        await main.publish({"camera": ColorTrack(RED)})  # the offer: the publisher connection is described
        await viewer.subscribe([{"participant_id": m, "source": "camera"}])
        await _still_red(viewer, m)
        caplog.clear()

        for kind, fields in BAD.items():
            msg = {"type": "ice_candidate", "target": "publisher", **fields}
            msg = {k: v for k, v in msg.items() if v is not None}
            with pytest.raises(LessonError) as refused:
                await main.request(msg)
            error = refused.value.reply
            assert error["code"] == "bad_candidate", (kind, error)
            assert error["message"].startswith("ICE 候选地址"), (kind, error)

        # the socket is open and the connection still takes a good candidate
        assert (await main.request({"type": "ice_candidate", "target": "publisher", "candidate": GOOD,
                                    "sdp_mid": "0"}))["type"] == "ack"
        await _still_red(viewer, m)  # the media never stopped

        refused_lines = [r for r in caplog.records if "bad_candidate" in r.getMessage()]
        assert len(refused_lines) == len(BAD), [r.getMessage() for r in refused_lines]
        for r in refused_lines:
            assert "\n" not in r.getMessage() and r.exc_info is None and r.levelno < logging.WARNING
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []

    lesson.play(scenario)


async def _still_red(client: LessonClient, main_id: str) -> None:
    seen = await frames(await client.track(main_id, "camera"), 10)
    assert all(close_to(rgb, RED) for rgb in seen[-5:]), seen
