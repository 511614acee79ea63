"""CPU of one LL-HLS stream in the media worker: the Opus→AAC transcode and the H.264 remux into CMAF.

A 720p30 H.264 clip (lavfi ``testsrc2``, libx264 baseline, no B-frames, a keyframe every 2 s as a
publisher answering the egress's PLIs sends them) and a 440 Hz Opus tone are encoded once, outside any
timing, and cut into RTP packets with aiortc's packetizers.  Then, in this process:

1. **components**: the whole clip through ``media.hls`` alone (``OpusToAac`` + the audio rendition,
   ``VideoTrack`` + the video rendition, files written to a temporary folder), timed with
   ``time.process_time``: CPU seconds per second of media = share of one core;
2. **in the worker's path, in real time**: the packets fed at their pace to a real ``ProducerStream``
   recorded by ``RoomRecorder`` with and without ``hls``; the recorder thread's CPU (``/proc``) and the
   whole process's (with the feeding loop) over the run, per second of media.  The difference is what the stream adds to the recording (frame assembly and the recording's
   own files are shared: one pipeline).

    nice -n 19 .venv/bin/python -m bench.hls_cpu [--seconds 20] [--bitrate 1500000]

Prints one line per figure.  Run it when the machine is quiet (nothing else CPU-heavy): the process's
CPU time does not count other processes, but they slow its caches and clock.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import os
import struct
import tempfile
import time
from pathlib import Path

import av
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.opus import OpusEncoder

from media.depacketize import depacketize, payload
from media.hls import HlsEgress
from media.producer import Producer
from media.recorder import FrameAssembler, RoomRecorder

FPS = 30
WIDTH, HEIGHT = 1280, 720


class _Transport:
    def send_pli(self, ssrc: int) -> None:
        """The clip has its keyframes already (every 2 s)."""

    def nack_due(self, now: float) -> None:
        """No loss on this path."""


def _rtp(seq: int, ts: int, body: bytes, mark: bool, pt: int, ssrc: int) -> bytes:
    return struct.pack(">BBHII", 0x80, (0x80 if mark else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + body


def encode(seconds: float, bitrate: int) -> tuple[list[tuple[float, bytes]], list[tuple[float, bytes]]]:
    """(media time, RTP packet) of the video and of the audio."""
    src = av.open(f"testsrc2=size={WIDTH}x{HEIGHT}:rate={FPS}:duration={seconds}", format="lavfi")
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    enc.time_base = fractions.Fraction(1, FPS)
    enc.framerate = fractions.Fraction(FPS, 1)
    enc.bit_rate = bitrate
    enc.gop_size = 2 * FPS
    enc.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline"}
    packer = H264Encoder()
    video: list[tuple[float, bytes]] = []
    seq = 0
    for i, frame in enumerate(src.decode(video=0)):
        frame.pts, frame.time_base = i, enc.time_base
        frame.pict_type = av.video.frame.PictureType.NONE
        for packet in enc.encode(frame):
            payloads, ts = packer.pack(packet)
            for j, p in enumerate(payloads):
                video.append((packet.pts / FPS, _rtp(seq, ts, p, j == len(payloads) - 1, 102, 1111)))
                seq += 1
    src.close()
    asrc = av.open(f"aevalsrc=exprs=0.3*sin(2*PI*440*t):s=48000:d={seconds}", format="lavfi")
    aenc = av.CodecContext.create("libopus", "w")
    aenc.sample_rate, aenc.layout, aenc.format, aenc.bit_rate = 48000, "stereo", "s16", 32000
    aenc.time_base = fractions.Fraction(1, 48000)
    resampler = av.AudioResampler(format="s16", layout="stereo", rate=48000, frame_size=960)
    opus = OpusEncoder()
    audio: list[tuple[float, bytes]] = []
    n = 0
    for frame in [*asrc.decode(audio=0), None]:
        for out in resampler.resample(frame):
            if out.samples != 960:
                continue
            out.pts, out.time_base = n, aenc.time_base
            n += 960
            for packet in aenc.encode(out):
                payloads, ts = opus.pack(packet)
                audio.append((packet.pts / 48000, _rtp(len(audio), ts, payloads[0], True, 111, 2222)))
    asrc.close()
    return video, audio


def components(video: list[tuple[float, bytes]], audio: list[tuple[float, bytes]], seconds: float) -> tuple[float, float]:
    """Share of a core of the video remux and of the audio transcode, through ``media.hls`` alone."""
    with tempfile.TemporaryDirectory() as tmp:
        egress = HlsEgress(Path(tmp))
        vtrack = egress.track("camera", "video/h264", lambda ts, now: 0.0)
        atrack = egress.track("microphone", "audio/opus", lambda ts, now: 0.0)
        assembler = FrameAssembler()
        frames = []
        for _, pkt in video:
            for packets in assembler.push(pkt)[0]:
                frames.append((depacketize("video/h264", packets), int.from_bytes(packets[0][4:8], "big")))
        t0 = time.process_time()
        for data, ts in frames:
            vtrack.frame(data, ts, data[4] & 0x1F in (5, 7), 0.0)
        t1 = time.process_time()
        for _, pkt in audio:
            atrack.frame(payload(pkt), int.from_bytes(pkt[4:8], "big"), True, 0.0)
        t2 = time.process_time()
        egress.finish()
    return (t1 - t0) / seconds, (t2 - t1) / seconds


def _thread_cpu(native_id: int) -> float:
    """CPU seconds (user + system) of one thread of this process, from /proc."""
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def in_real_time(video: list[tuple[float, bytes]], audio: list[tuple[float, bytes]],
                       hls: bool) -> tuple[float, float]:
    """The process's and the recorder thread's share of a core while the clip is recorded (and streamed, with
    ``hls``) at its pace."""
    transport = _Transport()
    cam = Producer("p:camera", transport, kind="video", mid="0", source="camera", mime="video/H264",  # type: ignore[arg-type]
                   clock_rate=90000, payload_type=102, rtx_payload_type=None, extmap={}, layers=[(None, 1111)])
    mic = Producer("p:microphone", transport, kind="audio", mid="1", source="microphone", mime="audio/opus",  # type: ignore[arg-type]
                   clock_rate=48000, payload_type=111, rtx_payload_type=None, extmap={}, layers=[(None, 2222)])
    packets = sorted([(t, 0, p) for t, p in video] + [(t, 1, p) for t, p in audio], key=lambda x: (x[0], x[1]))
    with tempfile.TemporaryDirectory() as tmp:
        recorder = RoomRecorder("bench", Path(tmp), asyncio.get_running_loop(), hls=hls)
        recorder.want([cam, mic])
        thread = recorder._thread.native_id
        assert thread is not None
        start = time.monotonic()
        c0 = time.process_time()
        t0 = _thread_cpu(thread)
        for t, kind, pkt in packets:
            delay = start + t - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            (cam if kind == 0 else mic).streams[0].receive(pkt, time.monotonic())
        await asyncio.sleep(0.1)  # the last packets drained
        thread_cpu = _thread_cpu(thread) - t0
        summary = await recorder.stop()
        cpu = time.process_time() - c0
        elapsed = time.monotonic() - start
    assert summary["files"], summary
    if hls:
        assert summary["hls"]["renditions"]["camera"]["segments"] > 0, summary["hls"]
    return cpu / elapsed, thread_cpu / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--bitrate", type=int, default=1_500_000)
    args = parser.parse_args()
    video, audio = encode(args.seconds, args.bitrate)
    vbps = sum(len(p) for _, p in video) * 8 / args.seconds
    print(f"clip: {WIDTH}x{HEIGHT} {FPS} fps H.264 {vbps / 1e6:.2f} Mbit/s (RTP), Opus 48 kHz, {args.seconds:.0f} s; "
          f"load average {os.getloadavg()[0]:.2f}")
    remux, transcode = components(video, audio, args.seconds)
    print(f"components: video remux to CMAF {100 * remux:.2f} % of a core, Opus->AAC {100 * transcode:.2f} %, "
          f"together {100 * (remux + transcode):.2f} %")
    plain, plain_thread = asyncio.run(in_real_time(video, audio, hls=False))
    streamed, streamed_thread = asyncio.run(in_real_time(video, audio, hls=True))
    print(f"real time, the recorder's thread: recording {100 * plain_thread:.2f} % of a core, recording + HLS "
          f"{100 * streamed_thread:.2f} %, HLS adds {100 * (streamed_thread - plain_thread):.2f} %")
    print(f"real time, whole process: recording {100 * plain:.2f} % of a core, recording + HLS {100 * streamed:.2f} %, "
          f"HLS adds {100 * (streamed - plain):.2f} %; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
