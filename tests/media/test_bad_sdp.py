"""Malformed SDP reaching a Router: every kind is refused with ``bad_sdp`` and leaves nothing behind.

A publisher's offer and a subscriber's answer that are garbage, truncated, without m-lines, with
codecs the SFU cannot use, or with only candidates outside the allowed networks are refused; no
producer is created or lost, and the same connection then takes a good description and carries
media (checked on decoded frames). All peers are aiortc on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from media import ice
from media.ice import IcePolicy
from media.router import Router, RouterError
from tests.media.sfu_helpers import GREEN, RED, ColorTrack, ToneTrack, close_to, frames

POLICY = IcePolicy.from_strings(None, "127.0.0.1", "127.0.0.0/8", None)
EMPTY = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


@pytest.fixture(autouse=True)
def loopback_clients() -> Iterator[None]:
    ice.apply(POLICY)
    yield
    ice.reset()


def _wrong_codecs(sdp: str) -> str:
    """Every codec of the description renamed to one neither side implements."""
    out = []
    for line in sdp.split("\r\n"):
        if line.startswith("a=rtpmap:"):
            pt, _ = line[len("a=rtpmap:"):].split(" ", 1)
            line = f"a=rtpmap:{pt} {'SPEEX/8000' if 'opus' in line else 'H265/90000'}"
        out.append(line)
    return "\r\n".join(out)


def _lan_candidates(sdp: str) -> str:
    """The description's candidates moved to a LAN address (outside the allowed networks)."""
    return sdp.replace("127.0.0.1", "192.168.1.20")


def _truncated(sdp: str) -> str:
    return sdp[: len(sdp) // 2]


def _no_mlines(sdp: str) -> str:
    return EMPTY


BAD = {
    "garbage": lambda sdp: "hello, this is not SDP",
    "binary": lambda sdp: "\x00\x01\x02v=0\x7f" * 40,
    "truncated": _truncated,
    "no_mlines": _no_mlines,
    "wrong_codecs": _wrong_codecs,
    "lan_candidates": _lan_candidates,
}


def _pub(pid: str, source: str = "camera", mid: str = "0") -> dict[str, Any]:
    return {"producer_id": f"{pid}:{source}", "source": source, "mid": mid, "track_id": f"{pid}-{source}"}


async def _publisher(router: Router, pid: str, rgb: tuple[int, int, int]) -> RTCPeerConnection:
    """A client publishing a camera of colour ``rgb`` and a microphone through ``router``."""
    pc = RTCPeerConnection()
    pc.addTransceiver(ColorTrack(rgb), direction="sendonly")
    pc.addTransceiver(ToneTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    router.create_transport(f"{pid}-send", pid, "send")
    result = await router.publish(f"{pid}-send", pc.localDescription.sdp,
                                  [_pub(pid), _pub(pid, "microphone", "1")])
    assert {p["producer_id"] for p in result["producers"]} == {f"{pid}:camera", f"{pid}:microphone"}
    await pc.setRemoteDescription(RTCSessionDescription(result["sdp"], "answer"))
    return pc


async def _subscriber(router: Router, pid: str, target: str) -> tuple[RTCPeerConnection, dict[str, Any], str]:
    """A subscriber connection offered ``target``'s camera; returns it, the track it gets, and its good answer."""
    tid = f"{pid}-recv"
    router.create_transport(tid, pid, "recv")
    assert router.set_consumers(tid, [{"consumer_id": f"{pid}~{target}~camera", "producer_id": f"{target}:camera",
                                       "kind": "video"}])
    offer = await router.offer(tid)
    assert offer is not None
    pc = RTCPeerConnection()
    tracks: dict[str, Any] = {}
    pc.on("track", lambda track: tracks.setdefault("camera", track))
    await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    return pc, tracks, pc.localDescription.sdp


async def _colour(tracks: dict[str, Any], want: tuple[int, int, int]) -> None:
    for _ in range(100):
        if "camera" in tracks:
            break
        await asyncio.sleep(0.05)
    seen = await frames(tracks["camera"], 8, timeout=15)
    assert all(close_to(x, want) for x in seen[-4:]), seen


@pytest.mark.parametrize("kind", list(BAD))
def test_a_bad_offer_is_refused_and_the_transport_then_takes_a_good_one(kind: str) -> None:
    async def scenario() -> None:
        router = Router("lesson-1", POLICY, lambda event, data: None)
        main = await _publisher(router, "m", RED)
        viewer, seen, answer = await _subscriber(router, "v", "m")
        await router.answer("v-recv", answer)
        await _colour(seen, RED)

        pc = RTCPeerConnection()
        pc.addTransceiver(ColorTrack(GREEN), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        router.create_transport("r-send", "r", "send")
        with pytest.raises(RouterError) as refused:
            await router.publish("r-send", BAD[kind](pc.localDescription.sdp), [_pub("r")])
        assert refused.value.code == "bad_sdp" and refused.value.message
        assert set(router.producers) == {"m:camera", "m:microphone"}  # nothing made, nothing lost
        await _colour(seen, RED)  # the others go on as before

        # the same connection offers properly: its camera is published and can be watched
        result = await router.publish("r-send", pc.localDescription.sdp, [_pub("r")])
        assert [p["producer_id"] for p in result["producers"]] == ["r:camera"]
        await pc.setRemoteDescription(RTCSessionDescription(result["sdp"], "answer"))
        watcher, green, good = await _subscriber(router, "w", "r")
        await router.answer("w-recv", good)
        await _colour(green, GREEN)
        for peer in (main, viewer, pc, watcher):
            await peer.close()
        await router.close()

    asyncio.run(asyncio.wait_for(scenario(), 90))


def test_a_bad_answer_is_refused_and_a_corrected_answer_still_brings_the_media() -> None:
    async def scenario() -> None:
        router = Router("lesson-1", POLICY, lambda event, data: None)
        main = await _publisher(router, "m", RED)
        viewer, seen, good = await _subscriber(router, "v", "m")
        for kind, bad in BAD.items():
            with pytest.raises(RouterError) as refused:
                await router.answer("v-recv", bad(good))
            assert refused.value.code == "bad_sdp", kind
        assert set(router.producers) == {"m:camera", "m:microphone"}
        assert await router.answer("v-recv", good) is None  # the offer was still waiting for it
        await _colour(seen, RED)
        with pytest.raises(RouterError) as refused:  # answered: nothing waits any more
            await router.answer("v-recv", good)
        assert refused.value.code == "bad_sdp"
        await _colour(seen, RED)
        for peer in (main, viewer):
            await peer.close()
        await router.close()

    asyncio.run(asyncio.wait_for(scenario(), 90))


def test_descriptions_on_the_wrong_connection_are_refused() -> None:
    async def scenario() -> None:
        router = Router("lesson-1", POLICY, lambda event, data: None)
        main = await _publisher(router, "m", RED)
        router.create_transport("v-recv", "v", "recv")
        with pytest.raises(RouterError) as refused:  # an offer on a subscriber connection
            await router.publish("v-recv", main.localDescription.sdp, [_pub("v")])
        assert refused.value.code == "bad_sdp"
        with pytest.raises(RouterError) as refused:  # an answer nobody asked for
            await router.answer("v-recv", main.localDescription.sdp)
        assert refused.value.code == "bad_sdp"
        assert set(router.producers) == {"m:camera", "m:microphone"}
        await main.close()
        await router.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))
