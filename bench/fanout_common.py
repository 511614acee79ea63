"""Shared parts of the SFU fan-out benchmark (``python -m bench.fanout``).

* :func:`ensure_netns` / :func:`setup_netns`: the benchmark runs in a private network namespace
  (``unshare -n`` re-exec), ``lo`` up plus a veth pair with 127.0.0.2/8 on one end; every ICE
  candidate is 127.0.0.2 (see ``../shared/notes/janus-peer.md``).
* :func:`load_clip`: a pre-encoded 1280x720 VP8 (~1.5 Mbps, keyframe every 2.5 s) + Opus clip,
  :class:`ClipTrack` plays it back as ``av.Packet`` objects at real-time pace, so aiortc's sender
  only packetizes.
* :class:`SendLog`: publisher-side send time of every RTP packet, keyed by :func:`payload_key`
  (a hash of the RTP payload, which an SFU forwards unchanged).
* :class:`CountingSubscriber`: an aiortc peer connection whose decrypted RTP goes to a counter
  instead of the depacketizer/decoder; it sends its own receiver reports.
* :func:`process_cpu_seconds` / :func:`machine_busy`: CPU accounting from ``/proc``.
* :class:`Target`: what an SFU under test implements (Janus: ``bench/fanout_janus.py``).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import fractions
import ipaddress
import math
import os
import pickle
import random
import shutil
import subprocess
import sys
import time
import zlib
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import av
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError

RESULTS_DIR = Path(__file__).resolve().parent / "results"

NETNS_ENV = "SANKE_BENCH_NETNS"
BENCH_ADDRESS = "127.0.0.2"
VETH_NAME = "skb0"
VETH_PEER = "skb1"

CLIP_WIDTH = 1280
CLIP_HEIGHT = 720
CLIP_FPS = 30
CLIP_SECONDS = 10
CLIP_VIDEO_BITRATE = 1_500_000
CLIP_KEYFRAME_INTERVAL = 75  # frames: 2.5 s
CLIP_AUDIO_BITRATE = 48_000
AUDIO_RATE = 48_000
AUDIO_FRAME = 960  # 20 ms


# ---------------------------------------------------------------------- network namespace


def ice_policy():
    """SanKe's ICE policy for every aiortc peer of the bench: gather on 127.0.0.2, accept 127/8."""
    from media.ice import IcePolicy

    return IcePolicy(
        ice_servers=(),
        host_addresses=(BENCH_ADDRESS,),
        allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),),
    )


def apply_ice_policy() -> None:
    from media import ice

    ice.apply(ice_policy())


def rtc_configuration() -> RTCConfiguration:
    return RTCConfiguration(iceServers=[])


def in_bench_netns() -> bool:
    return os.environ.get(NETNS_ENV) == "1"


def ensure_netns(module: str, argv: Sequence[str]) -> None:
    """Re-exec ``python -m module argv`` under ``unshare -n`` unless already inside.

    Returns only inside the namespace (after :func:`setup_netns`); otherwise replaces the process.
    """
    if in_bench_netns():
        setup_netns()
        return
    if os.geteuid() != 0:
        raise SystemExit(
            "bench: needs root (unshare -n for a private network namespace)"
        )
    unshare = shutil.which("unshare")
    if unshare is None:
        raise SystemExit("bench: unshare(1) not found")
    env = dict(os.environ, **{NETNS_ENV: "1"})
    sys.stdout.flush()
    os.execve(unshare, [unshare, "-n", "--", sys.executable, "-m", module, *argv], env)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True)


def list_interfaces() -> list[str]:
    """Interfaces of this process's network namespace (``/proc/self/net/dev``; ``/sys/class/net``
    shows the namespace sysfs was mounted in)."""
    with open("/proc/self/net/dev") as f:
        return [line.split(":")[0].strip() for line in f.readlines()[2:] if ":" in line]


def setup_netns() -> None:
    """Inside a fresh namespace: ``lo`` up and a veth pair with 127.0.0.2/8 on one end."""
    interfaces = set(list_interfaces())
    if interfaces - {"lo", VETH_NAME, VETH_PEER}:
        raise SystemExit(
            f"bench: refusing to run: network interfaces {sorted(interfaces)} — not a private namespace"
        )
    _ip("link", "set", "lo", "up")
    if VETH_NAME not in interfaces:
        _ip("link", "add", VETH_NAME, "type", "veth", "peer", "name", VETH_PEER)
        _ip("addr", "add", f"{BENCH_ADDRESS}/8", "dev", VETH_NAME)
    _ip("link", "set", VETH_NAME, "up")
    _ip("link", "set", VETH_PEER, "up")


# ---------------------------------------------------------------------- the clip


@dataclass
class Clip:
    """Pre-encoded media: ``(payload, pts)`` lists in their codec time bases."""

    video: list[tuple[bytes, int]]  # time base 1/CLIP_FPS
    audio: list[tuple[bytes, int]]  # time base 1/AUDIO_RATE
    duration: float  # seconds; playback loops with this period
    video_keyframes: list[int] = field(default_factory=list)  # indices into ``video``

    video_time_base: ClassVar[fractions.Fraction] = fractions.Fraction(1, CLIP_FPS)
    audio_time_base: ClassVar[fractions.Fraction] = fractions.Fraction(1, AUDIO_RATE)

    def video_bitrate(self) -> float:
        return sum(len(p) for p, _ in self.video) * 8 / self.duration

    def audio_bitrate(self) -> float:
        return sum(len(p) for p, _ in self.audio) * 8 / self.duration


def vp8_is_keyframe(payload: bytes) -> bool:
    """VP8 frame tag: bit 0 of the first byte is 0 for a key frame."""
    return bool(payload) and (payload[0] & 1) == 0


def encode_clip(
    seconds: float = CLIP_SECONDS,
    width: int = CLIP_WIDTH,
    height: int = CLIP_HEIGHT,
    fps: int = CLIP_FPS,
    video_bitrate: int = CLIP_VIDEO_BITRATE,
    keyframe_interval: int = CLIP_KEYFRAME_INTERVAL,
) -> Clip:
    """Encode a moving test pattern (lavfi ``testsrc2``) with libvpx and a tone with libopus."""
    # video
    src = av.open(
        f"testsrc2=size={width}x{height}:rate={fps}:duration={seconds}", format="lavfi"
    )
    enc = av.CodecContext.create("libvpx", "w")
    enc.width = width
    enc.height = height
    enc.pix_fmt = "yuv420p"
    enc.framerate = fractions.Fraction(fps, 1)
    enc.time_base = fractions.Fraction(1, fps)
    enc.bit_rate = video_bitrate
    enc.gop_size = keyframe_interval
    enc.thread_count = 2
    rate = str(video_bitrate)
    enc.options = {
        "deadline": "realtime",
        "cpu-used": "8",
        "lag-in-frames": "0",
        "minrate": rate,
        "maxrate": rate,
        "bufsize": rate,
    }
    video: list[tuple[bytes, int]] = []
    try:
        for i, frame in enumerate(src.decode(video=0)):
            frame.pts = i
            frame.time_base = enc.time_base
            # lavfi marks every frame as I; left that way libvpx would make each a key frame
            frame.pict_type = av.video.frame.PictureType.NONE
            video.extend((bytes(p), int(p.pts)) for p in enc.encode(frame))
        video.extend((bytes(p), int(p.pts)) for p in enc.encode(None))
    finally:
        src.close()
    n_frames = len(video)

    # audio: a 440 Hz tone with a little noise, so consecutive Opus packets differ
    asrc = av.open(
        f"aevalsrc=exprs=0.3*sin(2*PI*440*t)+0.02*(random(0)-0.5):s={AUDIO_RATE}:d={seconds}",
        format="lavfi",
    )
    aenc = av.CodecContext.create("libopus", "w")
    aenc.sample_rate = AUDIO_RATE
    aenc.layout = "stereo"
    aenc.format = "s16"
    aenc.bit_rate = CLIP_AUDIO_BITRATE
    aenc.time_base = fractions.Fraction(1, AUDIO_RATE)
    resampler = av.AudioResampler(
        format="s16", layout="stereo", rate=AUDIO_RATE, frame_size=AUDIO_FRAME
    )
    audio: list[tuple[bytes, int]] = []
    samples = 0
    try:
        frames = list(asrc.decode(audio=0))
        for frame in [*frames, None]:
            for out in resampler.resample(frame):
                if out.samples != AUDIO_FRAME:
                    continue
                out.pts = samples
                out.time_base = aenc.time_base
                samples += out.samples
                audio.extend((bytes(p), int(p.pts)) for p in aenc.encode(out))
        audio.extend((bytes(p), int(p.pts)) for p in aenc.encode(None))
    finally:
        asrc.close()
    # Opus packets carry pre-skip in pts; start at 0
    if audio:
        base = audio[0][1]
        audio = [(p, pts - base) for p, pts in audio]
    duration = n_frames / fps
    audio = [(p, pts) for p, pts in audio if pts / AUDIO_RATE < duration]
    keyframes = [i for i, (p, _) in enumerate(video) if vp8_is_keyframe(p)]
    return Clip(video=video, audio=audio, duration=duration, video_keyframes=keyframes)


def load_clip(cache_dir: Path | None = RESULTS_DIR) -> Clip:
    """The benchmark clip, encoded once and cached under ``bench/results/`` (git-ignored)."""
    name = (
        f"clip-{CLIP_WIDTH}x{CLIP_HEIGHT}-{CLIP_FPS}fps-vp8-{CLIP_VIDEO_BITRATE // 1000}k-"
        f"gop{CLIP_KEYFRAME_INTERVAL}-opus-{CLIP_SECONDS}s.pkl"
    )
    path = cache_dir / name if cache_dir is not None else None
    if path is not None and path.exists():
        try:
            with path.open("rb") as f:
                clip = pickle.load(f)
            if isinstance(clip, Clip):
                return clip
        except Exception:  # noqa: BLE001, S110 - a broken cache is re-encoded
            pass
    clip = encode_clip()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as f:
            pickle.dump(clip, f)
        tmp.replace(path)
    return clip


class ClipTrack(MediaStreamTrack):
    """Plays a pre-encoded packet list as ``av.Packet`` at real-time pace, looping.

    aiortc's ``RTCRtpSender`` packs ``av.Packet`` objects with the encoder's ``pack()`` (no
    encoding). Both tracks of a publisher share ``clock`` (a dict holding the start time) so
    audio and video stay aligned.
    """

    def __init__(
        self,
        kind: str,
        packets: list[tuple[bytes, int]],
        time_base: fractions.Fraction,
        duration: float,
        clock: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        self.kind = kind
        self._packets = packets
        self._time_base = time_base
        self._duration = duration
        self._period = round(duration / time_base)  # pts ticks per loop
        self._clock = clock if clock is not None else {}
        self._index = 0
        self.sent = 0

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        start = self._clock.setdefault("start", time.monotonic())
        loop, i = divmod(self._index, len(self._packets))
        self._index += 1
        data, pts = self._packets[i]
        pts += loop * self._period
        due = start + float(pts * self._time_base)
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        packet = av.Packet(data)
        packet.pts = pts
        packet.time_base = self._time_base
        self.sent += 1
        return packet


def clip_tracks(clip: Clip) -> tuple[ClipTrack, ClipTrack]:
    """(audio, video) tracks sharing one clock."""
    clock: dict[str, float] = {}
    audio = ClipTrack("audio", clip.audio, Clip.audio_time_base, clip.duration, clock)
    video = ClipTrack("video", clip.video, Clip.video_time_base, clip.duration, clock)
    return audio, video


# ---------------------------------------------------------------------- RTP helpers


def is_rtcp(data: bytes) -> bool:
    return len(data) >= 2 and 192 <= data[1] <= 223


def rtp_payload(data: bytes) -> bytes:
    """The payload of a plain (decrypted) RTP packet: after CSRCs and the header extension."""
    if len(data) < 12:
        return b""
    first = data[0]
    offset = 12 + 4 * (first & 0x0F)
    if first & 0x10:  # extension
        if len(data) < offset + 4:
            return b""
        offset += 4 + 4 * int.from_bytes(data[offset + 2 : offset + 4], "big")
    end = len(data)
    if first & 0x20 and end > offset:  # padding
        end -= data[-1]
    return data[offset:end] if end >= offset else b""


def payload_key(payload: bytes) -> int:
    """A key of an RTP payload that survives an SFU's header rewriting (SSRC, seq, timestamp, ext)."""
    return (len(payload) << 32) | zlib.crc32(payload)


class SendLog:
    """Send times (``time.monotonic()``) of the publisher's RTP packets, by :func:`payload_key`.

    :meth:`attach` wraps the publisher's DTLS transport ``_send_rtp`` (called by aiortc after
    packetization, before SRTP), so the time is taken when the packet leaves the sender.
    """

    def __init__(self) -> None:
        self.times: dict[int, list[float]] = {}
        self.packets = 0
        self.recording = True

    def record(self, key: int, t: float) -> None:
        if self.recording:
            self.times.setdefault(key, []).append(t)
            self.packets += 1

    def attach(self, pc: RTCPeerConnection) -> None:
        seen: set[int] = set()
        for sender in pc.getSenders():
            dtls = sender.transport
            if dtls is None or id(dtls) in seen:
                continue
            seen.add(id(dtls))
            if getattr(dtls, "_bench_send_log", None) is not None:
                continue
            original = dtls._send_rtp
            log = self

            async def _send_rtp(data: bytes, _original=original, _log=log) -> None:
                if not is_rtcp(data):
                    _log.record(payload_key(rtp_payload(data)), time.monotonic())
                await _original(data)

            dtls._send_rtp = _send_rtp
            dtls._bench_send_log = self

    def clear(self) -> None:
        self.times.clear()
        self.packets = 0

    def send_time(self, key: int, arrival: float) -> float | None:
        """The latest send time of ``key`` not after ``arrival`` (the clip loops, audio may repeat)."""
        times = self.times.get(key)
        if not times:
            return None
        if len(times) == 1:
            return times[0] if times[0] <= arrival else None
        i = bisect.bisect_right(times, arrival)
        return times[i - 1] if i else None

    def delays(self, arrivals: Iterable[tuple[int, float]]) -> tuple[list[float], int]:
        """Forwarding delays (s) for ``(key, arrival)`` records; and how many had no match."""
        out: list[float] = []
        unmatched = 0
        for key, arrival in arrivals:
            sent = self.send_time(key, arrival)
            if sent is None:
                unmatched += 1
            else:
                out.append(arrival - sent)
        return out, unmatched


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


# ---------------------------------------------------------------------- counting subscriber


class _SsrcStats:
    __slots__ = ("cycles", "first_seq", "kind", "last_seq", "max_ext", "received")

    def __init__(self, seq: int, kind: str) -> None:
        self.kind = kind
        self.first_seq = seq
        self.last_seq = seq
        self.cycles = 0
        self.max_ext = seq
        self.received = 0

    def update(self, seq: int) -> None:
        self.received += 1
        delta = (seq - self.last_seq) & 0xFFFF
        if delta < 0x8000:  # in order (or duplicate when 0)
            if seq < self.last_seq:
                self.cycles += 1 << 16
            self.last_seq = seq
            self.max_ext = self.cycles + seq


@dataclass
class SubscriberSnapshot:
    t: float
    packets: dict[str, int]
    bytes: dict[str, int]
    # per SSRC: (received, highest extended seq, first seq, kind)
    ssrcs: dict[int, tuple[int, int, int, str]]


class CountingSubscriber:
    """One subscriber: ``pc`` is an aiortc peer connection the target negotiates (receive only).

    Once its DTLS transport exists, :func:`install_counting_hooks` (called in each subscriber
    process) sends its decrypted RTP to :meth:`on_rtp` instead of aiortc's depacketizer. Arrival
    time is when the UDP datagram was read from the socket.
    """

    def __init__(self, index: int) -> None:
        self.index = index
        self.pc = RTCPeerConnection(rtc_configuration())
        self.join_started: float | None = None
        self.joined: float | None = None
        self.first_packet: float | None = None
        self.first_video: float | None = None
        self.packets = {"audio": 0, "video": 0, "other": 0}
        self.bytes = {"audio": 0, "video": 0, "other": 0}
        self.ssrcs: dict[int, _SsrcStats] = {}
        self.pt_kinds: dict[int, str] | None = None
        self.window: tuple[float, float] | None = None
        self.arrivals: list[tuple[int, float]] = []
        self.rtcp_ssrc = random.getrandbits(32)
        self._rr_task: asyncio.Task | None = None
        self.error: str | None = None
        self._transport = None

    # called by the transport hook
    def on_rtp(self, data: bytes, arrival: float) -> None:
        if self.pt_kinds is None:
            self.pt_kinds = _payload_kinds(self.pc)
        if self.first_packet is None:
            self.first_packet = arrival
        pt = data[1] & 0x7F
        kind = self.pt_kinds.get(pt, "other")
        if kind == "video" and self.first_video is None:
            self.first_video = arrival
        self.packets[kind] += 1
        self.bytes[kind] += len(data)
        ssrc = int.from_bytes(data[8:12], "big")
        seq = (data[2] << 8) | data[3]
        stats = self.ssrcs.get(ssrc)
        if stats is None:
            stats = self.ssrcs[ssrc] = _SsrcStats(seq, kind)
        stats.update(seq)
        window = self.window
        if window is not None and window[0] <= arrival < window[1]:
            self.arrivals.append((payload_key(rtp_payload(data)), arrival))

    def snapshot(self) -> SubscriberSnapshot:
        return SubscriberSnapshot(
            t=time.monotonic(),
            packets=dict(self.packets),
            bytes=dict(self.bytes),
            ssrcs={
                s: (st.received, st.max_ext, st.first_seq, st.kind)
                for s, st in self.ssrcs.items()
            },
        )

    def bind(self, transport: Any) -> None:
        """Remember the DTLS transport (for receiver reports) and start the RR loop."""
        self._transport = transport
        if self._rr_task is None:
            self._rr_task = asyncio.ensure_future(self._send_receiver_reports())

    async def _send_receiver_reports(self) -> None:
        """RTCP RR every ~1 s for each SSRC seen (aiortc's own RR loop sees no packets)."""
        from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket

        last: dict[int, tuple[int, int]] = {}
        try:
            while True:
                await asyncio.sleep(0.5 + random.random())
                transport = self._transport
                if transport is None or not self.ssrcs:
                    continue
                reports = []
                for ssrc, st in list(self.ssrcs.items()):
                    expected_total = st.max_ext - st.first_seq + 1
                    lost_total = max(0, expected_total - st.received)
                    prev_exp, prev_recv = last.get(ssrc, (0, 0))
                    exp_int = expected_total - prev_exp
                    recv_int = st.received - prev_recv
                    last[ssrc] = (expected_total, st.received)
                    fraction = 0
                    if exp_int > 0 and recv_int < exp_int:
                        fraction = min(255, ((exp_int - recv_int) << 8) // exp_int)
                    reports.append(
                        RtcpReceiverInfo(
                            ssrc=ssrc,
                            fraction_lost=fraction,
                            packets_lost=min(lost_total, 0x7FFFFF),
                            highest_sequence=st.max_ext & 0xFFFFFFFF,
                            jitter=0,
                            lsr=0,
                            dlsr=0,
                        )
                    )
                packet = RtcpRrPacket(ssrc=self.rtcp_ssrc, reports=reports[:31])
                with contextlib.suppress(ConnectionError):
                    await transport._send_rtp(bytes(packet))
        except asyncio.CancelledError:
            pass

    async def close(self) -> None:
        if self._rr_task is not None:
            self._rr_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rr_task
        await self.pc.close()


def _payload_kinds(pc: RTCPeerConnection) -> dict[int, str]:
    """RTP payload type -> "audio"/"video"/"other" (rtx, red, ...) from the negotiated codecs."""
    kinds: dict[int, str] = {}
    description = pc.remoteDescription or pc.localDescription
    if description is None:
        return kinds
    kind = None
    for line in description.sdp.splitlines():
        if line.startswith("m="):
            kind = line[2:].split()[0]
        elif line.startswith("a=rtpmap:") and kind in ("audio", "video"):
            pt_text, _, codec = line[len("a=rtpmap:") :].partition(" ")
            name = codec.split("/")[0].lower()
            kinds[int(pt_text)] = (
                kind if name in ("vp8", "vp9", "h264", "av1", "opus") else "other"
            )
    return kinds


_registry: list[CountingSubscriber] = []
_hooks_installed = False


def register_subscriber(sub: CountingSubscriber) -> None:
    _registry.append(sub)


def _find_subscriber(dtls: Any) -> CountingSubscriber | None:
    for sub in _registry:
        for transceiver in sub.pc.getTransceivers():
            if (
                transceiver.receiver.transport is dtls
                or transceiver.sender.transport is dtls
            ):
                return sub
    return None


def install_counting_hooks() -> None:
    """In a subscriber process: route decrypted RTP of every DTLS transport to its subscriber.

    Patches classes (the process hosts only counting subscribers):
    * asyncio's datagram transport ``_read_ready``: drain the socket with ``recvmsg`` and take the
      kernel's receive time stamp (``SO_TIMESTAMPNS``), so the subscriber process's own event-loop
      latency does not count as forwarding delay;
    * ``aioice.ice.Connection.data_received``/``recvfrom``: keep that stamp with each datagram
      and hand it over when aiortc takes the datagram from its queue;
    * ``RTCDtlsTransport._handle_rtp_data``: count instead of parsing and routing.
    """
    global _hooks_installed
    if _hooks_installed:
        return
    import asyncio.selector_events
    import socket
    import struct

    import aioice.ice
    from aiortc.rtcdtlstransport import RTCDtlsTransport

    original_recvfrom = aioice.ice.Connection.recvfrom
    so_timestamp = getattr(socket, "SO_TIMESTAMPNS", 35)
    # kernel stamps are CLOCK_REALTIME; the bench compares time.monotonic() across processes
    offset = time.time() - time.monotonic()
    rx = {"t": None}

    def _read_ready(self) -> None:
        if self._conn_lost:
            return
        sock = self._sock
        if not getattr(self, "_bench_ts", False):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, so_timestamp, 1)
            self._bench_ts = True
        for _ in range(64):
            try:
                data, ancdata, _flags, addr = sock.recvmsg(self.max_size, 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._protocol.error_received(exc)
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:  # noqa: BLE001 - as asyncio's own _read_ready
                self._fatal_error(exc, "Fatal read error on datagram transport")
                return
            t = None
            for level, kind, cdata in ancdata:
                if (
                    level == socket.SOL_SOCKET
                    and kind == so_timestamp
                    and len(cdata) >= 16
                ):
                    sec, nsec = struct.unpack("qq", cdata[:16])
                    t = sec + nsec * 1e-9 - offset
            rx["t"] = t
            try:
                self._protocol.datagram_received(data, addr)
            finally:
                rx["t"] = None
            if self._conn_lost:
                return

    def data_received(self, data: bytes, component: int) -> None:
        stamps = self.__dict__.get("_bench_stamps")
        if stamps is None:
            stamps = self._bench_stamps = deque()
        stamps.append(rx["t"] or time.monotonic())
        self._queue.put_nowait((data, component))

    async def recvfrom(self):
        result = await original_recvfrom(self)
        stamps = self.__dict__.get("_bench_stamps")
        self._bench_last = stamps.popleft() if stamps else time.monotonic()
        return result

    async def _handle_rtp_data(self, data: bytes, arrival_time_ms: int) -> None:
        sub = self.__dict__.get("_bench_sub")
        if sub is None:
            sub = _find_subscriber(self)
            if sub is None:
                return
            self._bench_sub = sub
            sub.bind(self)
        connection = getattr(self.transport, "_connection", None)
        arrival = getattr(connection, "_bench_last", None) or time.monotonic()
        sub.on_rtp(data, arrival)

    asyncio.selector_events._SelectorDatagramTransport._read_ready = _read_ready
    aioice.ice.Connection.data_received = data_received
    aioice.ice.Connection.recvfrom = recvfrom
    RTCDtlsTransport._handle_rtp_data = _handle_rtp_data
    _hooks_installed = True


# ---------------------------------------------------------------------- CPU accounting

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                text = f.read()
        except OSError:
            continue
        ppid = int(text.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def process_tree(pids: Iterable[int]) -> list[int]:
    """``pids`` and all their descendants."""
    children = _children_map()
    out: list[int] = []
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in out:
            continue
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def process_cpu_seconds(pids: Iterable[int], descendants: bool = True) -> float:
    """CPU time (s) of the processes (and their descendants unless told not to), all threads.

    Uses each thread's ``schedstat`` run time (nanoseconds, exact); falls back to the tick-based
    ``utime + stime`` of ``/proc/<pid>/stat``.
    """
    total = 0.0
    for pid in process_tree(pids) if descendants else list(pids):
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        ns = 0
        ok = True
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    ns += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                ok = False
                break
        if ok:
            total += ns / 1e9
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
        except OSError:
            continue
    return total


def process_stat_cpu_seconds(pids: Iterable[int]) -> float:
    """Tick-based ``utime + stime`` (``/proc/<pid>/stat``) of the processes and their descendants
    (for comparison with :func:`process_cpu_seconds`; bursty loads can fall between ticks)."""
    total = 0.0
    for pid in process_tree(pids):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
        except OSError:
            continue
    return total


def machine_times() -> tuple[float, float]:
    """(total, idle) jiffies of the whole machine from ``/proc/stat`` (idle includes iowait)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return float(sum(fields[:8])), float(idle)


def machine_busy(before: tuple[float, float], after: tuple[float, float]) -> float:
    """Busy fraction of all cores (0..1) between two :func:`machine_times` samples."""
    total = after[0] - before[0]
    idle = after[1] - before[1]
    return (total - idle) / total if total > 0 else math.nan


# ---------------------------------------------------------------------- the target interface


class Target(Protocol):
    """An SFU under test. The bench calls, in the main process:

    ``start()`` → ``publish(pc)`` → ``spec()`` → [subscriber processes: ``attach(spec)`` →
    ``subscribe(sub)`` × k → ``detach()``] → ``stop()``.
    """

    name: str

    async def start(self) -> None:
        """Start the SFU (its own process(es), so :meth:`pids` can be measured)."""

    async def publish(self, pc: RTCPeerConnection) -> None:
        """Negotiate the publisher ``pc`` (one sendonly audio + one sendonly VP8 video transceiver
        already added by the bench) with the SFU; return once the remote description is set."""

    def spec(self) -> dict[str, Any]:
        """Picklable data a subscriber process needs to reach the SFU and the published feed."""

    @classmethod
    def attach(cls, spec: dict[str, Any]) -> Target:
        """In a subscriber process: a client of the running SFU (no start/stop)."""

    async def subscribe(self, sub: CountingSubscriber) -> None:
        """Negotiate ``sub.pc`` (a fresh ``RTCPeerConnection(RTCConfiguration(iceServers=[]))``
        without transceivers) to receive the published audio+video; return once both local and
        remote descriptions are set (ICE/DTLS may still be connecting)."""

    async def detach(self) -> None:
        """In a subscriber process: end its signalling sessions."""

    def pids(self) -> list[int]:
        """SFU processes to measure (descendants and all threads are included)."""

    async def stop(self) -> None:
        """Stop the SFU; must also work after a failed start."""
