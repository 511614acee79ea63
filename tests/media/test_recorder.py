"""The recorder: RTP packets of aiortc's own encoders → frames → WebM / MP4 files, without re-encoding.

Packets are fed to a real ``ProducerStream`` (the SFU's hot loop) with a fake
publisher transport that counts PLIs, so frame assembly, loss handling,
timestamps and muxing are tested without a socket.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import random
import struct
from pathlib import Path
from typing import Any

import av
import pytest
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from media.depacketize import h264_nal_units, vp8_size
from media.producer import Producer
from media.recorder import FrameAssembler, RoomRecorder
from tests.media.sfu_helpers import BLUE, GREEN, RED, ColorTrack, close_to, mean_rgb

CODECS = {
    "video/VP8": RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96),
    "video/H264": RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=102,
                                        parameters={"packetization-mode": "1", "profile-level-id": "42e01f"}),
    "audio/opus": RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111),
}


class FakeTransport:
    def __init__(self) -> None:
        self.plis: list[int] = []

    def send_pli(self, ssrc: int) -> None:
        self.plis.append(ssrc)

    def nack_due(self, now: float) -> None:
        """A gap opened: the real transport sends the stream's NACKs (``media/transport.py``)."""


def producer(mime: str, source: str, transport: FakeTransport, ssrc: int) -> Producer:
    codec = CODECS[mime]
    return Producer(f"p1:{source}", transport, kind=mime.split("/")[0], mid="0", source=source,  # type: ignore[arg-type]
                    mime=mime, clock_rate=codec.clockRate, payload_type=codec.payloadType, rtx_payload_type=None,
                    extmap={}, layers=[(None, ssrc)])


def rtp(seq: int, ts: int, payload: bytes, marker: bool, pt: int, ssrc: int) -> bytes:
    return struct.pack(">BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


class VideoSource:
    """A publisher's camera: colour frames through aiortc's encoder, as RTP packets."""

    def __init__(self, mime: str, ssrc: int = 1111, seq: int = 65000, ts: int = 4_294_000_000) -> None:
        self.mime = mime
        self.codec = CODECS[mime]
        self.encoder = get_encoder(self.codec)
        self.ssrc, self.seq, self.ts0 = ssrc, seq, ts
        self.n = 0

    def frame(self, rgb: tuple[int, int, int], *, key: bool = False) -> list[bytes]:
        picture = _picture(rgb)
        picture.pts = self.n * 3000  # 30 fps on the 90 kHz clock
        picture.time_base = fractions.Fraction(1, 90000)
        ts = self.ts0 + picture.pts  # RTP time wraps around 2**32 on the way
        self.n += 1
        payloads, _ = self.encoder.encode(picture, force_keyframe=key)
        out = []
        for i, p in enumerate(payloads):
            out.append(rtp(self.seq, ts, p, i == len(payloads) - 1, self.codec.payloadType, self.ssrc))
            self.seq += 1
        return out


def _picture(rgb: tuple[int, int, int]) -> av.VideoFrame:
    return ColorTrack(rgb)._frame  # a fresh picture of the test pattern


class ToneSource:
    """A publisher's microphone: 20 ms of a 440 Hz tone per Opus packet."""

    def __init__(self, ssrc: int = 2222) -> None:
        self.encoder = get_encoder(CODECS["audio/opus"])
        self.ssrc, self.seq, self.n = ssrc, 100, 0

    def packet(self) -> bytes:
        samples = [int(8000 * math.sin(2 * math.pi * 440 * (self.n + i) / 48000)) for i in range(960)]
        frame = av.AudioFrame(format="s16", layout="mono", samples=960)
        frame.planes[0].update(struct.pack("<960h", *samples))
        frame.sample_rate = 48000
        frame.pts = self.n
        frame.time_base = fractions.Fraction(1, 48000)
        self.n += 960
        payloads, ts = self.encoder.encode(frame)
        pkt = rtp(self.seq, ts, payloads[0], True, 111, self.ssrc)
        self.seq += 1
        return pkt


def decode_video(path: Path) -> list[tuple[float, tuple[int, int, int]]]:
    with av.open(str(path)) as container:
        return [(float(f.pts * f.time_base), mean_rgb(f)) for f in container.decode(video=0)]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.mark.parametrize(("mime", "ext"), [("video/VP8", "webm"), ("video/H264", "mp4")])
def test_a_camera_is_muxed_without_reencoding_from_its_first_keyframe(tmp_path: Path, mime: str, ext: str) -> None:
    async def main() -> dict[str, Any]:
        transport = FakeTransport()
        cam = producer(mime, "camera", transport, 1111)
        src = VideoSource(mime)
        for pkt in src.frame(RED, key=True) + src.frame(RED):  # before the recording: not in the file
            cam.streams[0].receive(pkt, 0.0)
        recorder = RoomRecorder("lesson-1", tmp_path / "rec", asyncio.get_running_loop())
        recorder.wanted.add(cam.producer_id)
        recorder.producer_added(cam)
        assert transport.plis == [1111]  # asked for a keyframe at once
        now = 10.0
        for i in range(60):  # 2 s: a delta frame first (skipped), then a keyframe, then green…blue
            rgb = GREEN if i < 30 else BLUE
            for pkt in src.frame(rgb, key=(i == 1)):
                cam.streams[0].receive(pkt, now)
            now += 1 / 30
            await asyncio.sleep(0)
        return await recorder.stop()

    summary = run(main())
    (info,) = summary["files"]
    assert info["name"] == f"camera-1.{ext}" and info["codec"] == mime.split("/")[1].lower()
    assert (info["width"], info["height"]) == (160, 120) and info["frames"] == 59
    assert abs(info["duration_s"] - 2.0) < 0.05, info
    seen = decode_video(tmp_path / "rec" / info["name"])
    assert len(seen) == 59
    assert seen[0][0] == 0.0 and abs(seen[-1][0] - 58 / 30) < 0.01  # pts from RTP time, across its wrap
    assert close_to(seen[0][1], GREEN) and close_to(seen[-1][1], BLUE), (seen[0], seen[-1])


def test_reordered_packets_are_put_back_in_order_and_a_loss_waits_for_the_next_keyframe(tmp_path: Path) -> None:
    async def main() -> tuple[dict[str, Any], FakeTransport]:
        transport = FakeTransport()
        cam = producer("video/VP8", "camera", transport, 1111)
        src = VideoSource("video/VP8")
        recorder = RoomRecorder("lesson-1", tmp_path, asyncio.get_running_loop())
        recorder.want([cam])
        recorder.wanted.add(cam.producer_id)
        now = 0.0
        rng = random.Random(5)
        for i in range(90):
            packets = src.frame(RED if i < 60 else GREEN, key=i in (0, 60))
            if i == 20:
                packets = packets[1:]  # a loss: frames 20…59 are not written
            rng.shuffle(packets)  # reordered within the frame
            for pkt in packets:
                cam.streams[0].receive(pkt, now)
            now += 1 / 30
            await asyncio.sleep(1 / 30)  # in real time: the loop sends the recorder's PLIs, throttled
        await asyncio.sleep(0.1)
        return await recorder.stop(), transport

    summary, transport = run(main())
    assert len(transport.plis) >= 2  # at the start and after the loss
    seen = decode_video(tmp_path / summary["files"][0]["name"])
    assert len(seen) == 20 + 30
    assert all(close_to(rgb, RED) for _, rgb in seen[:20]) and all(close_to(rgb, GREEN) for _, rgb in seen[20:])
    assert abs(seen[20][0] - 2.0) < 0.01  # the gap stays a gap in time


def test_a_tone_is_muxed_into_webm_and_files_line_up_by_arrival(tmp_path: Path) -> None:
    async def main() -> dict[str, Any]:
        transport = FakeTransport()
        mic = producer("audio/opus", "microphone", transport, 2222)
        cam = producer("video/VP8", "camera", transport, 1111)
        recorder = RoomRecorder("lesson-1", tmp_path, asyncio.get_running_loop())
        recorder.want([mic, cam])
        tone, video = ToneSource(), VideoSource("video/VP8")
        now = 100.0
        for i in range(100):  # 2 s of audio; the camera from 0.5 s on
            mic.streams[0].receive(tone.packet(), now)
            if i >= 25 and i % 2 == 0:
                for pkt in video.frame(RED, key=(i == 25 + 1 or i == 26)):
                    cam.streams[0].receive(pkt, now)
            now += 0.02
        await asyncio.sleep(0.1)
        return await recorder.stop()

    summary = run(main())
    files = {f["source"]: f for f in summary["files"]}
    assert files["microphone"]["name"] == "microphone-1.webm" and files["microphone"]["codec"] == "opus"
    assert abs(files["microphone"]["duration_s"] - 2.0) < 0.05
    assert abs(files["camera"]["start_s"] - 0.52) < 0.05
    assert abs(summary["duration_s"] - 2.0) < 0.1
    samples, peak = 0, 0.0
    resampler = av.AudioResampler(format="s16", layout="mono", rate=48000)
    with av.open(str(tmp_path / "microphone-1.webm")) as container:
        for f in container.decode(audio=0):
            samples += f.samples
            for r in resampler.resample(f):
                raw = bytes(r.planes[0])[: r.samples * 2]
                peak = max(peak, max(abs(x) for x in struct.unpack(f"<{len(raw) // 2}h", raw)))
    assert abs(samples / 48000 - 2.0) < 0.1
    assert peak > 3000  # a tone, not silence


def test_a_producer_that_comes_back_starts_the_next_file(tmp_path: Path) -> None:
    async def main() -> dict[str, Any]:
        transport = FakeTransport()
        recorder = RoomRecorder("lesson-1", tmp_path, asyncio.get_running_loop())
        recorder.wanted.add("p1:camera")
        for rgb in (RED, BLUE):
            cam = producer("video/VP8", "camera", transport, 1111)
            recorder.producer_added(cam)
            src = VideoSource("video/VP8")
            for i in range(10):
                for pkt in src.frame(rgb, key=i == 0):
                    cam.streams[0].receive(pkt, 0.0)
            recorder.producer_closed(cam)
            cam.close()
            assert cam.streams[0].recorder is None  # nothing left on the forwarding path
        return await recorder.stop()

    summary = run(main())
    assert [f["name"] for f in summary["files"]] == ["camera-1.webm", "camera-2.webm"]
    assert close_to(decode_video(tmp_path / "camera-2.webm")[0][1], BLUE)


def test_streams_without_a_recorder_carry_no_hook() -> None:
    cam = producer("video/VP8", "camera", FakeTransport(), 1111)
    assert cam.streams[0].recorder is None


def test_frame_assembler_waits_for_a_late_packet_then_gives_up() -> None:
    asm = FrameAssembler()
    src = VideoSource("video/VP8")
    first = src.frame(RED, key=True)
    assert asm.push(first[-1]) == ([], False)  # a marker: the next frame starts on a boundary
    frame = src.frame(RED)
    late, rest = frame[0], frame[1:]
    for pkt in rest:
        assert asm.push(pkt)[0] == []
    frames, lost = asm.push(late)
    assert len(frames) == 1 and not lost


def test_depacketize_helpers_read_sizes_and_nal_units() -> None:
    src = VideoSource("video/VP8")
    from media.depacketize import depacketize

    assert vp8_size(depacketize("video/VP8", src.frame(RED, key=True))) == (160, 120)
    assert h264_nal_units(b"\x00\x00\x00\x01\x67ab\x00\x00\x01\x68cd") == [b"\x67ab", b"\x68cd"]
