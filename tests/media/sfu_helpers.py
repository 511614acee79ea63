"""Media for SFU tests: tracks that send a known picture and tone, and checks on what was decoded."""

from __future__ import annotations

import asyncio
import fractions
import math
import struct
import time
from typing import Any

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from aiortc.rtp import RTCP_PSFB_APP, RtcpPacket, RtcpPsfbPacket, pack_remb_fci, unpack_remb_fci
from media.rtp import payload_range

RED = (230, 30, 30)
GREEN = (30, 200, 30)
BLUE = (30, 30, 230)
WIDTH, HEIGHT = 160, 120


class ColorTrack(VideoStreamTrack):
    """A camera that films a wall of one colour (the test pattern), 30 fps."""

    def __init__(self, rgb: tuple[int, int, int]) -> None:
        super().__init__()
        frame = av.VideoFrame(WIDTH, HEIGHT, "rgb24")
        plane = frame.planes[0]
        plane.update(bytes(rgb) * (plane.line_size // 3 * HEIGHT))
        self._frame = frame.reformat(format="yuv420p")
        self.sent = 0
        self.first_at: float | None = None
        """``time.monotonic()`` when the first frame went to the encoder (a recording starts there)."""

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        if self.first_at is None:
            self.first_at = time.monotonic()
        frame = self._frame
        frame.pts = pts
        frame.time_base = time_base
        self.sent += 1
        return frame


class ToneTrack(AudioStreamTrack):
    """A microphone that hears a 440 Hz tone."""

    RATE = 48000
    SAMPLES = 960

    def __init__(self, hz: float = 440.0) -> None:
        super().__init__()
        self.hz = hz
        self._n = 0
        self._start: float | None = None
        self.first_at: float | None = None
        """``time.monotonic()`` when the first frame went to the encoder."""

    async def recv(self) -> av.AudioFrame:
        if self._start is None:
            self._start = self.first_at = time.monotonic()
        wait = self._start + self._n / self.RATE - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        samples = self.samples()
        frame = av.AudioFrame(format="s16", layout="mono", samples=self.SAMPLES)
        frame.planes[0].update(struct.pack(f"<{self.SAMPLES}h", *samples))
        frame.sample_rate = self.RATE
        frame.pts = self._n
        frame.time_base = fractions.Fraction(1, self.RATE)
        self._n += self.SAMPLES
        return frame

    def samples(self) -> list[int]:
        """The next frame's samples: the tone."""
        return [int(8000 * math.sin(2 * math.pi * self.hz * (self._n + i) / self.RATE)) for i in range(self.SAMPLES)]


def mean_rgb(frame: av.VideoFrame) -> tuple[int, int, int]:
    small = frame.reformat(width=16, height=12, format="rgb24")
    plane = small.planes[0]
    data = bytes(plane)
    r = g = b = n = 0
    for y in range(12):
        row = data[y * plane.line_size: y * plane.line_size + 48]
        for x in range(0, 48, 3):
            r += row[x]
            g += row[x + 1]
            b += row[x + 2]
            n += 1
    return r // n, g // n, b // n


def close_to(rgb: tuple[int, int, int], want: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(rgb, want, strict=True))


async def frames(track: MediaStreamTrack, count: int, timeout: float = 10.0) -> list[tuple[int, int, int]]:
    """The mean colour of the next ``count`` decoded frames."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        frame = await asyncio.wait_for(track.recv(), max(0.1, deadline - time.monotonic()))
        out.append(mean_rgb(frame))
    return out


async def tone(track: MediaStreamTrack, seconds: float = 1.0, timeout: float = 10.0) -> tuple[float, float]:
    """RMS level and dominant frequency (from zero crossings) of ``seconds`` of decoded audio."""
    pcm: list[int] = []
    rate = 48000
    deadline = time.monotonic() + timeout
    while len(pcm) < seconds * rate:
        frame = await asyncio.wait_for(track.recv(), max(0.1, deadline - time.monotonic()))
        rate = frame.sample_rate
        assert frame.format.name == "s16", frame.format.name  # aiortc's Opus decoder: packed s16
        channels = len(frame.layout.channels)
        raw = bytes(frame.planes[0])[: frame.samples * 2 * channels]
        pcm.extend(struct.unpack(f"<{len(raw) // 2}h", raw)[::channels])  # the first channel
    pcm = pcm[len(pcm) // 4:]  # skip the codec's start-up
    rms = math.sqrt(sum(s * s for s in pcm) / len(pcm))
    crossings = sum(1 for a, b in zip(pcm, pcm[1:], strict=False) if (a < 0) != (b < 0))
    return rms, crossings / 2 / (len(pcm) / rate)


def rtp_tap(pc: Any, *, drop_every: int = 0) -> dict[str, Any]:
    """Count (and optionally drop every n-th) incoming video RTP below aiortc's receiver of ``pc``.

    Returns live counters: ``packets``, ``dropped``, ``rtx`` (retransmissions received), ``padding``
    (padding-only RTX: bandwidth probes) and ``by_pt``; setting ``drop_every`` changes the loss.
    Dropping happens before aiortc sees the packet, as on a lossy link.  Setting ``remb_bps``
    makes ``pc`` behave like Chromium's receiver with that estimate: its own (rare) REMBs carry
    it instead, and one more REMB goes out every 200 ms; ``remb_growth`` (per second) lets it
    climb, as an estimator does on a link that is not congested; ``None`` stops all that.
    """
    counters: dict[str, Any] = {"packets": 0, "dropped": 0, "rtx": 0, "by_pt": {}, "video": 0, "audio": 0,
                                "padding": 0, "drop_every": drop_every, "remb_bps": None, "remb_growth": 1.0}
    dtls = pc.getTransceivers()[0].receiver.transport
    original = dtls._handle_rtp_data
    original_send = dtls._send_rtp

    async def send(data: bytes) -> None:
        bps = counters["remb_bps"]
        if bps is not None and len(data) > 1 and 192 <= data[1] <= 223:  # RTCP
            packets = RtcpPacket.parse(data)
            for packet in packets:
                if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
                    _, ssrcs = unpack_remb_fci(packet.fci)
                    packet.fci = pack_remb_fci(int(bps), ssrcs)
            data = b"".join(bytes(p) for p in packets)
        await original_send(data)

    async def remb_every_200_ms() -> None:
        while pc.connectionState not in ("closed", "failed"):
            await asyncio.sleep(0.2)
            bps = counters["remb_bps"]
            if bps is None:
                continue
            counters["remb_bps"] = bps = bps * counters["remb_growth"] ** 0.2
            remb = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=pack_remb_fci(int(bps), []))
            try:
                await original_send(bytes(remb))
            except ConnectionError:
                return

    dtls._send_rtp = send
    counters["task"] = asyncio.get_running_loop().create_task(remb_every_200_ms())
    rtx_pts: set[int] = set()
    video_pts: set[int] = set()
    for t in pc.getTransceivers():
        for codec in getattr(t, "_codecs", []):
            if codec.mimeType.lower() == "video/rtx":
                rtx_pts.add(codec.payloadType)
            elif codec.mimeType.lower().startswith("video/"):
                video_pts.add(codec.payloadType)

    async def handle(data: bytes, arrival_time_ms: int) -> None:
        pt = data[1] & 0x7F
        counters["packets"] += 1
        counters["by_pt"][pt] = counters["by_pt"].get(pt, 0) + 1
        if pt in rtx_pts:
            counters["rtx"] += 1
            start, end = payload_range(data)
            if start == end:
                counters["padding"] += 1
        elif pt in video_pts:
            counters["video"] += 1
            every = counters["drop_every"]  # may be changed while the tap runs
            if every and counters["video"] % every == 0:
                counters["dropped"] += 1
                return
        else:
            counters["audio"] += 1
        await original(data, arrival_time_ms)

    dtls._handle_rtp_data = handle
    return counters
