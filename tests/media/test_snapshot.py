"""Snapshots: the newest complete keyframe found among cached RTP packets, decoded once to a JPEG.

Packets are made by aiortc's own VP8 and H.264 encoders (what a publisher sends), so the
search, the depacketizer and the decode are tested without a socket.
"""

from __future__ import annotations

import asyncio
import fractions
import io
import struct

import av
import httpx
import pytest
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from media.snapshot import decode_jpeg, depacketize, find_keyframe
from tests.media.sfu_harness import (  # noqa: F401 - fixtures of the SFU tests: a live lesson on 127.0.0.1
    Lesson,
    db_url,
    lesson,
    loopback_clients,
    media_workers,
    settings,
)
from tests.media.sfu_helpers import BLUE, GREEN, RED, ColorTrack, close_to, mean_rgb

CODECS = {
    "video/VP8": RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96),
    "video/H264": RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=102,
                                        parameters={"packetization-mode": "1", "profile-level-id": "42e01f"}),
}


def rtp(seq: int, ts: int, payload: bytes, marker: bool, pt: int = 96) -> bytes:
    return struct.pack(">BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts, 1234) + payload


class Stream:
    """An encoder's packets by sequence number, as the producer's cache holds them."""

    def __init__(self, mime: str, first_seq: int = 65500) -> None:
        self.mime = mime
        self.encoder = get_encoder(CODECS[mime])
        self.seq = first_seq
        self.packets: dict[int, bytes] = {}
        self.frames = 0

    def frame(self, rgb: tuple[int, int, int], *, key: bool) -> list[int]:
        picture = asyncio.run(ColorTrack(rgb).recv())
        picture.pts = self.frames * 3000  # 30 fps on the 90 kHz clock
        picture.time_base = fractions.Fraction(1, 90000)
        self.frames += 1
        payloads, ts = self.encoder.encode(picture, force_keyframe=key)
        seqs = []
        for i, payload in enumerate(payloads):
            s = self.seq & 0xFFFF
            self.packets[s] = rtp(s, ts, payload, i == len(payloads) - 1)
            seqs.append(s)
            self.seq += 1
        return seqs

    @property
    def highest(self) -> int:
        return (self.seq - 1) & 0xFFFF


def jpeg_rgb(jpeg: bytes) -> tuple[int, int, int]:
    with av.open(io.BytesIO(jpeg)) as container:
        return mean_rgb(next(container.decode(video=0)))


@pytest.mark.parametrize("mime", ["video/VP8", "video/H264"])
def test_the_newest_keyframe_decodes_to_the_colour_it_showed(mime: str) -> None:
    stream = Stream(mime)  # sequence numbers wrap around 65535 on the way
    stream.frame(RED, key=True)
    stream.frame(RED, key=False)
    stream.frame(GREEN, key=True)
    for _ in range(3):
        stream.frame(BLUE, key=False)  # delta frames after it are not a snapshot on their own
    packets = find_keyframe(stream.packets.get, stream.highest, mime)
    assert packets is not None
    jpeg, width, height = decode_jpeg(mime, depacketize(mime, packets))
    assert jpeg.startswith(b"\xff\xd8") and (width, height) == (160, 120)
    assert close_to(jpeg_rgb(jpeg), GREEN), jpeg_rgb(jpeg)


def test_an_incomplete_keyframe_is_skipped_for_an_older_complete_one() -> None:
    stream = Stream("video/VP8")
    stream.frame(RED, key=True)
    newest = stream.frame(GREEN, key=True)
    del stream.packets[newest[-1]]  # its last packet (the marker) was lost
    packets = find_keyframe(stream.packets.get, stream.highest, "video/VP8")
    assert packets is not None
    assert close_to(jpeg_rgb(decode_jpeg("video/VP8", depacketize("video/VP8", packets))[0]), RED)


def test_no_keyframe_in_the_cache_gives_none() -> None:
    stream = Stream("video/VP8")
    first = stream.frame(RED, key=True)
    stream.frame(RED, key=False)
    for s in first:
        del stream.packets[s]
    assert find_keyframe(stream.packets.get, stream.highest, "video/VP8") is None
    assert find_keyframe(lambda s: None, 10, "video/VP8") is None


def test_garbage_does_not_decode() -> None:
    with pytest.raises(ValueError):
        decode_jpeg("video/VP8", b"\x00" * 50)
    with pytest.raises(ValueError):
        decode_jpeg("audio/opus", b"\x00")


# ---------------------------------------------------------------------------- end to end, through the SFU


@pytest.mark.parametrize(("media_workers", "codec"), [(0, "video/VP8"), (1, "video/VP8"), (0, "video/H264")],
                         ids=["in-process-vp8", "worker-process-vp8", "in-process-h264"])
def test_a_patrol_snapshot_shows_what_the_main_camera_films(lesson: Lesson, media_workers: int,  # noqa: F811
                                                            codec: str) -> None:
    w, http, auth, lid = lesson.world, lesson.http, lesson.auth, lesson.lid

    def post(path: str, user) -> httpx.Response:  # type: ignore[no-untyped-def]
        return http.post(path, headers=auth(user))

    async def scenario() -> None:
        main = await lesson.join(w.teacher)
        await main.publish({"camera": ColorTrack(GREEN)}, video_codec=codec)
        assert (await asyncio.to_thread(post, f"/api/v1/lessons/{lid}/start", w.teacher)).status_code == 200
        await asyncio.sleep(3.5)  # the first keyframe has left the SFU's 3 s cache: the snapshot asks for one
        r = await asyncio.to_thread(post, f"/api/v1/patrol/lessons/{lid}/visits", w.researcher_a)
        assert r.status_code == 201, r.text
        r = await asyncio.to_thread(post, f"/api/v1/patrol/lessons/{lid}/snapshots", w.researcher_a)
        assert r.status_code == 201, r.text
        snap = r.json()
        assert (snap["width"], snap["height"]) == (160, 120)
        got = await asyncio.to_thread(http.get, snap["url"], headers=auth(w.teacher))
        assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"
        assert close_to(jpeg_rgb(got.content), GREEN), jpeg_rgb(got.content)
        # a second one comes straight from the cache (the keyframe asked for is in it now)
        r = await asyncio.to_thread(post, f"/api/v1/patrol/lessons/{lid}/snapshots", w.researcher_a)
        assert r.status_code == 201, r.text
        assert (await asyncio.to_thread(post, f"/api/v1/patrol/lessons/{lid}/snapshots",
                                        w.researcher_b)).status_code == 403

    lesson.play(scenario)
