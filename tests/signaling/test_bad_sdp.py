"""Malformed SDP sent over the lesson WebSocket: the sender gets one clear ``error`` (``bad_sdp``)
answering its ``request_id`` (an oversized frame closes its socket with 1009), and the lesson loses nothing:
the others keep seeing and hearing each other, the sender stays in the room and publishes
properly afterwards, and a subscriber that answered badly still gets its media.

aiortc clients against a server the test starts (its SFU in process, or in a worker process: the
refusal crosses the worker channel), on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
import websockets

from signaling.client import LessonClient, LessonError
from signaling.messages import MAX_FRAME_BYTES
from tests.media.sfu_harness import (  # noqa: F401 - fixtures: an SFU lesson on 127.0.0.1
    Lesson,
    db_url,
    lesson,
    loopback_clients,
    media_workers,
    settings,
)
from tests.media.sfu_helpers import GREEN, RED, ColorTrack, ToneTrack, close_to, frames, tone

SDP_REFUSED = "SDP 无法应用，请重新协商"


def _truncated_offer() -> str:
    return ("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
            "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 127.0.0.1\r\na=mid:0\r\na=sendonly\r\na=rtpmap:96 VP")


BAD_OFFERS = {
    "garbage": "hello, this is not SDP",
    "truncated": _truncated_offer(),
    "no_mlines": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n",
    "wrong_codecs": ("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
                     "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\n"
                     "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 127.0.0.1\r\na=mid:0\r\na=sendonly\r\n"
                     "a=rtcp-mux\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=setup:actpass\r\n"
                     "a=rtpmap:96 H265/90000\r\n"
                     "a=candidate:1 1 udp 2122260223 127.0.0.1 54400 typ host\r\n"),
}


async def _still_red(client: LessonClient, main_id: str) -> None:
    seen = await frames(await client.track(main_id, "camera"), 10)
    assert all(close_to(rgb, RED) for rgb in seen[-5:]), seen


@pytest.mark.parametrize("media_workers", [0, 1], ids=["in-process", "worker-process"])
def test_bad_offers_get_a_clear_error_and_the_lesson_loses_nothing(lesson: Lesson, media_workers: int) -> None:
    w = lesson.world

    async def scenario() -> None:
        main = await lesson.join(w.teacher)
        viewer = await lesson.join(w.terminal_recv)
        sender = await lesson.join(w.assistant)
        m = main.participant_id
        await main.publish({"camera": ColorTrack(RED), "microphone": ToneTrack()})
        await viewer.subscribe([{"participant_id": m, "source": "camera"},
                                {"participant_id": m, "source": "microphone"}])
        await _still_red(viewer, m)

        await sender.request({"type": "publish", "source": "camera", "track_id": "cam", "mid": "0"})
        for kind, sdp in BAD_OFFERS.items():
            rid = f"bad-{kind}"
            reply = asyncio.ensure_future(sender.next_message("error"))
            await sender.send({"type": "offer", "request_id": rid, "sdp": sdp})
            error = await reply
            assert (error["code"], error["request_id"], error["message"]) == ("bad_sdp", rid, SDP_REFUSED), kind
            await _still_red(viewer, m)  # the others are not disturbed

        # an empty SDP is a malformed message
        reply = asyncio.ensure_future(sender.next_message("error"))
        await sender.send({"type": "offer", "request_id": "empty", "sdp": ""})
        error = await reply
        assert (error["code"], error["request_id"]) == ("bad_message", "empty")

        # nobody saw the sender publish anything, nobody left, the lesson goes on
        ids = {p["participant_id"] for p in main.messages if p["type"] == "participant_left"}
        assert sender.participant_id not in ids
        published = [x for x in main.messages if x["type"] == "participant_updated"
                     and x["participant"]["participant_id"] == sender.participant_id
                     and x["participant"]["publications"]]
        assert published == []
        rms, hz = await tone(await viewer.track(m, "microphone"), 0.5)
        assert rms > 1000 and 400 < hz < 480, (rms, hz)
        assert (await sender.request({"type": "raise_hand", "raised": True}))["type"] == "ack"

        # the sender then publishes properly and is seen by the teacher
        await sender.publish({"camera": ColorTrack(GREEN)})
        await main.subscribe([{"participant_id": sender.participant_id, "source": "camera"}])
        seen = await frames(await main.track(sender.participant_id, "camera"), 10)
        assert all(close_to(rgb, GREEN) for rgb in seen[-5:]), seen
        await _still_red(viewer, m)

        # an offer larger than a frame may be: the WebSocket layer closes the socket (1009) before reading it,
        # and the others go on
        with contextlib.suppress(websockets.ConnectionClosed):
            await sender.send({"type": "offer", "request_id": "huge", "sdp": "v=0\r\n" + "a=x\r\n" * MAX_FRAME_BYTES})
        await asyncio.wait_for(sender.ws.wait_closed(), 20)
        assert sender.ws.close_code == 1009
        await _still_red(viewer, m)

    lesson.play(scenario)


def test_a_bad_answer_gets_a_clear_error_and_a_corrected_answer_brings_the_media(lesson: Lesson) -> None:
    w = lesson.world

    async def scenario() -> None:
        main = await lesson.join(w.teacher)
        viewer = await lesson.join(w.terminal_recv)
        m = main.participant_id
        await main.publish({"camera": ColorTrack(RED)})

        # an answer with no offer waiting
        with pytest.raises(LessonError) as refused:
            await viewer.request({"type": "answer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"})
        assert refused.value.code == "bad_sdp"

        # the viewer's client answers the server's offer with junk first, then with its real answer
        errors: list[dict[str, Any]] = []
        viewer.on_message = lambda msg: errors.append(msg) if msg["type"] == "error" else None
        send = viewer.send
        spoiled: list[str] = []

        async def spoil_first_answer(msg: dict[str, Any]) -> None:
            if msg["type"] == "answer" and not spoiled:
                spoiled.append(msg["request_id"])
                await send({**msg, "request_id": "junk", "sdp": msg["sdp"][: len(msg["sdp"]) // 3]})
            await send(msg)

        viewer.send = spoil_first_answer  # type: ignore[method-assign]
        await viewer.subscribe([{"participant_id": m, "source": "camera"}])
        await _still_red(viewer, m)
        assert spoiled and [(e["code"], e["request_id"], e["message"]) for e in errors] == [
            ("bad_sdp", "junk", SDP_REFUSED)]

    lesson.play(scenario)
