"""Recording (录播) of a lesson's forwarded tracks, muxed into files without re-encoding.

A ``RoomRecorder`` belongs to one Router.  It is told which producers to record
(the main classroom's camera, screen and microphone, by producer id) and follows
their lifecycle like a consumer does: a producer that appears is recorded, a
producer that goes ends its file, a producer that comes back (publisher
reconnected) starts the next file of that source.

The forwarding path pays one Python call per packet of a recorded stream and
nothing for the others: ``ProducerStream.recorder`` is None unless a
``TrackWriter`` is attached, and the writer's hook only appends the packet to a
deque.  Everything else runs on the recorder's own thread:

1. **Frames from packets.** ``FrameAssembler`` orders a video stream's packets by
   (unwrapped) sequence number and hands out a frame when every packet from the
   previous frame's end to a marker bit is there.  A gap that is not filled
   within ``REORDER_PACKETS`` is a loss: the writer drops frames until the next
   keyframe and asks the publisher for one (PLI, through the event loop and the
   stream's own throttle).  Audio: one Opus packet per RTP packet.
2. **Start on a keyframe.** A video file starts with a keyframe; the recorder
   asks for one as soon as it attaches.
3. **Time from RTP.** A packet's pts is its RTP timestamp (unwrapped) minus the
   file's first one, in the stream's clock (90 kHz video, 48 kHz Opus); the
   file's offset in the recording (``start_s``) is the arrival time of its first
   frame after the first frame of any file, so the files of one recording line
   up on one time axis.
4. **Mux without decoding.** PyAV muxes the encoded frames: VP8 and Opus into
   WebM, H.264 (Annex B, its SPS/PPS as the track's configuration) into
   fragmented MP4 (an empty ``moov``, then a fragment at least every
   ``CLUSTER_MS``; the ``mfra`` index written at the end lets a browser seek).
   The encoder a stream is declared with is opened for its parameters only and
   is never fed.

5. **A crash loses at most half a second.** WebM clusters and MP4 fragments are
   closed every ``CLUSTER_MS`` and written out at once (an MP4 with its index
   at the end would be unreadable without it), and every file opened is noted in
   ``INDEX_NAME`` in the folder (its name, source and the wall-clock time of its
   first frame), so files cut by ``kill -9`` can be finalized and placed on the
   recording's time axis on the next start (``media.salvage``).

6. **The live stream is the same pipeline.** A recording started with ``hls``
   (a 名校网络课堂) also hands every frame of the H.264 camera and screen and of
   the Opus microphone to ``media.hls.HlsEgress`` in ``hls/`` of the folder: the
   LL-HLS stream while the lesson is live, kept with the recording when it ends.
   A simulcast video's lower layers get writers of their own that write no
   file, only their variant of the stream (``<source>-<rid>``).
   A VP8 camera or screen gets no stream: the reason is in the summary's
   ``hls.refused`` and in the ``hls_refused`` event (``on_event``).

``stop()`` ends every file and answers the summary the signaling side stores
(``files``: source, name, codec, start_s, duration_s, size, frames, width,
height; ``duration_s``; ``size``; with ``hls``: ``hls`` = ``HlsEgress.finish()``).
"""

from __future__ import annotations

import asyncio
import fractions
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av

from media.codecs import is_keyframe
from media.hls import AudioTrack, HlsEgress, VideoTrack, h264_size
from media.depacketize import (
    depacketize,
    h264_parameter_sets,
    marker,
    payload,
    seq_of,
    ts_of,
    vp8_size,
)

if TYPE_CHECKING:
    from media.producer import Producer, ProducerStream

log = logging.getLogger(__name__)

RECORDED_SOURCES = ("camera", "screen", "microphone")
CONTAINERS = {"video/vp8": ("webm", "webm"), "video/h264": ("mp4", "mp4"), "audio/opus": ("webm", "webm")}
"""Lower-case MIME type → (PyAV format, file extension)."""
ENCODER_NAMES = {"video/vp8": "libvpx", "video/h264": "libx264", "audio/opus": "libopus"}
REORDER_PACKETS = 40
"""A sequence gap not filled after this many newer packets is a loss…"""
REORDER_S = 0.15
"""…or when the packets waiting behind it arrived this long ago."""
MAX_PENDING = 2048
DRAIN_INTERVAL_S = 0.04
KEYFRAME_ASK_INTERVAL_S = 1.0
CLUSTER_MS = 500
"""A WebM cluster or an MP4 fragment spans at most this long: a killed process loses at most its last one."""
INDEX_NAME = "index.jsonl"
"""One JSON line per file opened: ``name, source, kind, codec, wall`` (``time.time()`` of its first frame)."""


def _unwrap(value: int, last: int | None, bits: int) -> int:
    """``value`` (mod 2**bits) as the extended number closest to ``last``."""
    if last is None:
        return value
    span = 1 << bits
    delta = (value - last) & (span - 1)
    if delta >= span >> 1:
        delta -= span
    return last + delta


class FrameAssembler:
    """The complete frames of one video stream, in order, from its packets in any order."""

    def __init__(self, starts_keyframe: Callable[[bytes], bool] | None = None) -> None:
        self.starts_keyframe = starts_keyframe
        """Whether a packet begins a keyframe: the first frame is taken from there."""
        self.pending: dict[int, bytes] = {}
        self.arrival: dict[int, float] = {}
        self.next_seq: int | None = None
        """Extended sequence number the next frame starts at (None: not yet on a frame boundary)."""
        self.highest: int | None = None
        self.lost = 0
        """Losses detected (each one makes the writer wait for a keyframe)."""

    def push(self, pkt: bytes, now: float = 0.0) -> tuple[list[list[bytes]], bool]:
        """Add a packet; answer the frames completed by it (each a list of packets) and whether a loss was
        found before them."""
        seq = _unwrap(seq_of(pkt), self.highest, 16)
        if self.highest is None or seq > self.highest:
            self.highest = seq
        if self.next_seq is None:
            if self.starts_keyframe is not None and self.starts_keyframe(pkt):
                self.next_seq = seq
            elif marker(pkt):
                self.next_seq = seq + 1  # the frame after this one starts on a boundary
                return [], False
            else:
                return [], False
        if seq < self.next_seq:
            return [], False  # late, its frame was given up
        self.pending[seq] = pkt
        self.arrival[seq] = now
        frames: list[list[bytes]] = []
        lost = False
        while True:
            frame = self._take()
            if frame is not None:
                frames.append(frame)
                continue
            if self.pending and (self.highest - self.next_seq >= REORDER_PACKETS or len(self.pending) > MAX_PENDING
                                 or now - min(self.arrival.values()) >= REORDER_S):
                self._skip()
                lost = True
                continue
            return frames, lost

    def _take(self) -> list[bytes] | None:
        assert self.next_seq is not None
        s = self.next_seq
        packets: list[bytes] = []
        while s in self.pending:
            p = self.pending[s]
            if packets and ts_of(p) != ts_of(packets[0]):
                return None  # the frame before ended without a marker: resolved as a loss by _skip
            packets.append(p)
            if marker(p):
                for k in range(self.next_seq, s + 1):
                    del self.pending[k]
                    del self.arrival[k]
                self.next_seq = s + 1
                return packets
            s += 1
        return None

    def _skip(self) -> None:
        """Give up the frame at ``next_seq``: resume after the first marker bit beyond it."""
        self.lost += 1
        assert self.next_seq is not None
        markers = sorted(s for s, p in self.pending.items() if s >= self.next_seq and marker(p))
        cut = markers[0] if markers else max(self.pending)
        for s in [s for s in self.pending if s <= cut]:
            del self.pending[s]
            del self.arrival[s]
        self.next_seq = cut + 1


class TrackWriter:
    """One producer's stream → one file.  ``feed`` runs on the forwarding path; the rest on the recorder's thread."""

    def __init__(self, producer: Producer, stream: ProducerStream, path: Path | None, *,
                 ask_keyframe: Callable[[], None], hls: HlsEgress | None = None, rendition: str = "") -> None:
        self.producer_id = producer.producer_id
        self.source = producer.source
        self.kind = producer.kind
        self.mime = producer.mime.lower()
        self.codec = self.mime.split("/")[1]
        self.clock_rate = producer.clock_rate
        self.stream = stream
        self.path = path
        self._ask_keyframe = ask_keyframe
        self.queue: deque[tuple[bytes, float]] = deque()
        self.closing = False
        self.failed: str | None = None
        self._assembler = FrameAssembler(self._starts_keyframe) if self.kind == "video" else None
        self._container: Any = None
        self._av_stream: Any = None
        self._time_base = fractions.Fraction(1, self.clock_rate)
        self._need_keyframe = self.kind == "video"
        self._last_ask = -1e9
        self._last_ext_ts: int | None = None
        self._first_ts: int | None = None
        self._last_pts = -1
        self.first_arrival = 0.0
        self.frames = 0
        self.width = 0
        self.height = 0
        self.hls = hls
        """The lesson's stream, when this track is in it."""
        self.rendition = rendition or self.source
        """Its rendition in the stream: the source, or ``<source>-<rid>`` for a lower simulcast layer (which is
        streamed only: ``path`` None)."""
        self._hls_track: VideoTrack | AudioTrack | None = None
        self._wall_anchor: tuple[int, float] | None = None
        self.hls_error: str | None = None

    # -------------------------------------------------------------- forwarding path

    def feed(self, plain: bytes, now: float) -> None:
        """The hook on ``ProducerStream.receive``: queue the packet, nothing more."""
        self.queue.append((plain, now))

    # -------------------------------------------------------------- recorder thread

    def _starts_keyframe(self, pkt: bytes) -> bool:
        try:
            return is_keyframe(self.mime, payload(pkt))
        except ValueError:
            return False

    def drain(self) -> None:
        queue = self.queue
        while queue:
            plain, now = queue.popleft()
            if self.failed:
                continue
            try:
                self._packet(plain, now)
            except Exception as exc:  # a broken stream ends its own file, never the recording
                log.exception("recorder: %s failed", self.producer_id)
                self.failed = f"{type(exc).__name__}: {exc}"[:200]

    def _packet(self, plain: bytes, now: float) -> None:
        if self._assembler is None:
            self._frame([plain], now)
            return
        frames, lost = self._assembler.push(plain, now)
        if lost:
            self._need_keyframe = True
        for packets in frames:
            self._frame(packets, now)
        if self._need_keyframe:
            self.ask_keyframe(now)

    def ask_keyframe(self, now: float) -> None:
        if now - self._last_ask >= KEYFRAME_ASK_INTERVAL_S:
            self._last_ask = now
            self._ask_keyframe()

    def _frame(self, packets: list[bytes], now: float) -> None:
        if self.kind == "video":
            key = is_keyframe(self.mime, payload(packets[0])) or any(
                is_keyframe(self.mime, payload(p)) for p in packets[1:2])
            if self._need_keyframe:
                if not key:
                    return
                self._need_keyframe = False
        else:
            key = True
        data = depacketize(self.mime, packets)
        if not data:
            return
        ext = _unwrap(ts_of(packets[0]), self._last_ext_ts, 32)
        self._last_ext_ts = ext
        if self._first_ts is None:
            if self.path is not None:
                self._open(data, now)
            self._first_ts = ext
        pts = ext - self._first_ts
        if pts <= self._last_pts:
            return  # a duplicate or a frame from before the file began
        self._last_pts = pts
        if self._container is not None:
            packet = av.Packet(data)
            packet.pts = packet.dts = pts
            packet.time_base = self._time_base
            packet.stream = self._av_stream
            if key:
                packet.is_keyframe = True
            self._container.mux(packet)
        self.frames += 1
        if self.hls is not None:
            self._stream_frame(data, ext, key, now)

    def _stream_frame(self, data: bytes, ext: int, key: bool, now: float) -> None:
        """The frame to the live stream; a failure there ends the stream of this track, never its file."""
        assert self.hls is not None
        if self._wall_anchor is None:
            self._wall_anchor = (ext, now)
        try:
            if self._hls_track is None:
                self._hls_track = self.hls.track(self.rendition, self.mime, self._wall_of)
            if self._hls_track.frame(data, ext, key, now):
                self.ask_keyframe(now)
        except Exception as exc:
            log.exception("recorder: the stream of %s failed", self.producer_id)
            self.hls_error = f"{type(exc).__name__}: {exc}"[:200]
            self.hls = None

    def _wall_of(self, ext: int, now: float) -> float:
        """Wall-clock capture time of RTP time ``ext``: from the publisher's last sender report (its RTP time
        and arrival), else from the arrival of this writer's first frame (its anchor)."""
        assert self.hls is not None
        stream = self.stream
        sr_arrival, sr_rtp = stream.sr_arrival, stream.sr_rtp
        if sr_arrival:
            delta = ((ext - sr_rtp + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
            return sr_arrival + self.hls.wall_offset + delta / self.clock_rate
        assert self._wall_anchor is not None
        ts0, t0 = self._wall_anchor
        return t0 + self.hls.wall_offset + (ext - ts0) / self.clock_rate

    def _open(self, first: bytes, now: float) -> None:
        fmt, _ = CONTAINERS[self.mime]
        options = ({"movflags": "frag_keyframe+empty_moov+default_base_moof", "frag_duration": str(CLUSTER_MS * 1000),
                    "flush_packets": "1"} if fmt == "mp4"
                   else {"cluster_time_limit": str(CLUSTER_MS), "flush_packets": "1"})
        container = av.open(str(self.path), "w", format=fmt, options=options)
        try:
            if self.kind == "video":
                stream = container.add_stream(ENCODER_NAMES[self.mime], rate=30)
                width, height = self._size(first)
                stream.width, stream.height = width, height
                stream.pix_fmt = "yuv420p"
                self.width, self.height = width, height
                if self.mime == "video/h264":
                    stream.codec_context.options = {"preset": "ultrafast"}
                    stream.codec_context.open()  # for its parameters only; it never encodes
                    stream.codec_context.extradata = h264_parameter_sets(first) or None
            else:
                stream = container.add_stream(ENCODER_NAMES[self.mime], rate=self.clock_rate)
            stream.time_base = self._time_base
            container.start_encoding()
        except Exception:
            container.close()
            raise
        self._container = container
        self._av_stream = stream
        self.first_arrival = now
        with open(self.path.parent / INDEX_NAME, "a", encoding="utf-8") as index:
            index.write(json.dumps({"name": self.path.name, "source": self.source, "kind": self.kind,
                                    "codec": self.codec, "wall": round(time.time(), 3)}) + "\n")

    def _size(self, frame: bytes) -> tuple[int, int]:
        if self.mime == "video/vp8":
            size = vp8_size(frame)
            if size is None:
                raise ValueError("VP8 keyframe without a frame header")
            return size
        return h264_size(frame)

    def finish(self) -> dict[str, Any] | None:
        """Close the file; its summary, or None when nothing was written."""
        self.drain()
        if self._hls_track is not None:
            try:
                self._hls_track.end()
            except Exception:
                log.exception("recorder: ending the stream of %s failed", self.producer_id)
        container, self._container = self._container, None
        if container is None or self.path is None:
            return None
        try:
            container.close()
        except Exception:
            log.exception("recorder: closing %s failed", self.path)
        frame_s = 1 / 30 if self.kind == "video" else 0.02
        duration = max(0, self._last_pts) / self.clock_rate + frame_s
        return {
            "producer_id": self.producer_id, "source": self.source, "kind": self.kind, "codec": self.codec,
            "name": self.path.name, "first_arrival": self.first_arrival, "duration_s": round(duration, 3),
            "size": self.path.stat().st_size if self.path.exists() else 0, "frames": self.frames,
            "width": self.width, "height": self.height, "error": self.failed,
        } | ({"hls_error": self.hls_error} if self.hls_error else {})


class RoomRecorder:
    """The recording of one router's chosen producers into ``directory``."""

    def __init__(self, router_id: str, directory: Path, loop: asyncio.AbstractEventLoop, *, hls: bool = False,
                 on_event: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.router_id = router_id
        self.directory = directory
        self.loop = loop
        self.started_at = time.time()
        self.wanted: set[str] = set()
        self.writers: dict[str, TrackWriter] = {}
        """Producer id → the writer of its current file."""
        self._closing: list[TrackWriter] = []
        self.files: list[dict[str, Any]] = []
        self._segments: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"recorder-{router_id}", daemon=True)
        self.stopped = False
        self._hls_summary: dict[str, Any] = {}
        directory.mkdir(parents=True, exist_ok=True)
        self.hls = HlsEgress(directory / "hls") if hls else None
        """The lesson's LL-HLS stream (``media.hls``), fed by the writers."""
        self.on_event = on_event
        self._thread.start()

    # -------------------------------------------------------------- event loop side

    def want(self, producers: list[Producer]) -> None:
        for producer in producers:
            self.wanted.add(producer.producer_id)
            if producer.producer_id not in self.writers:
                self.producer_added(producer)

    def producer_added(self, producer: Producer) -> None:
        """Router hook: a producer was created (or re-created after a reconnect)."""
        if self.stopped or producer.producer_id not in self.wanted or producer.closed:
            return
        mime = producer.mime.lower()
        if mime not in CONTAINERS or producer.source not in RECORDED_SOURCES or not producer.streams:
            log.info("recorder %s: %s (%s) is not recorded", self.router_id, producer.producer_id, producer.mime)
            return
        self.producer_closed(producer)  # a writer of an older producer with this id ends its file
        stream = producer.streams[-1]  # the best simulcast layer
        n = self._segments.get(producer.source, 0)
        while True:  # a recording restarted in the same folder (its worker died) never overwrites a file
            n += 1
            path = self.directory / f"{producer.source}-{n}.{CONTAINERS[mime][1]}"
            if not path.exists():
                break
        self._segments[producer.source] = n
        hls = self.hls if self.hls is not None and self.hls.accepts(producer.source, mime) else None
        if self.hls is not None and producer.source in self.hls.refused and self.on_event is not None:
            self.on_event("hls_refused", {"source": producer.source, "codec": mime.split("/")[1],
                                          "reason": self.hls.refused[producer.source]})
        writers = {producer.producer_id: TrackWriter(producer, stream, path, hls=hls,
                                                     ask_keyframe=lambda s=stream: self._ask_keyframe(s))}
        if hls is not None and producer.kind == "video":  # lower simulcast layers: variants of the stream
            for layer in producer.streams[:-1]:
                writers[f"{producer.producer_id}~{layer.rid}"] = TrackWriter(
                    producer, layer, None, hls=hls, rendition=f"{producer.source}-{layer.rid}",
                    ask_keyframe=lambda s=layer: self._ask_keyframe(s))
        with self._lock:
            self.writers.update(writers)
        for writer in writers.values():
            writer.stream.recorder = writer.feed
            if producer.kind == "video":
                writer.stream.request_keyframe(time.monotonic())

    def producer_closed(self, producer: Producer) -> None:
        """Router hook: the producer goes; its file ends (and the stream of each of its layers)."""
        pid = producer.producer_id
        with self._lock:
            ended = [self.writers.pop(key) for key in list(self.writers) if key == pid or key.startswith(f"{pid}~")]
            for writer in ended:
                writer.closing = True
                self._closing.append(writer)
        for writer in ended:
            if writer.stream.recorder == writer.feed:
                writer.stream.recorder = None

    def _ask_keyframe(self, stream: ProducerStream) -> None:
        """From the recorder thread: a PLI, sent by the event loop (the stream throttles it)."""
        def ask() -> None:
            if not stream.producer.closed:
                stream.request_keyframe(time.monotonic())

        try:
            self.loop.call_soon_threadsafe(ask)
        except RuntimeError:  # the loop is closed: the recording is ending anyway
            pass

    async def stop(self) -> dict[str, Any]:
        """End every file; the recording's summary (idempotent)."""
        if not self.stopped:
            self.stopped = True
            with self._lock:
                for writer in self.writers.values():
                    writer.closing = True
                    if writer.stream.recorder == writer.feed:
                        writer.stream.recorder = None
                    self._closing.append(writer)
                self.writers.clear()
            self._stop.set()
            await asyncio.to_thread(self._thread.join)
            if self.hls is not None:
                try:
                    self._hls_summary = await asyncio.to_thread(self.hls.finish)
                except Exception as exc:
                    log.exception("recorder %s: ending the stream failed", self.router_id)
                    self._hls_summary = {"error": f"{type(exc).__name__}: {exc}"[:200]}
        return self.summary()

    def summary(self) -> dict[str, Any]:
        """Files on one time axis: ``start_s`` from the first packet written of any of them."""
        origin = min((f["first_arrival"] for f in self.files), default=0.0)
        files = [{k: v for k, v in f.items() if k != "first_arrival"} | {"start_s": round(f["first_arrival"] - origin, 3)}
                 for f in self.files]
        files.sort(key=lambda f: (f["start_s"], f["name"]))
        return {
            "directory": str(self.directory), "started_at": self.started_at, "files": files,
            "duration_s": round(max((f["start_s"] + f["duration_s"] for f in files), default=0.0), 3),
            "size": sum(f["size"] for f in files),
        } | ({"hls": self._hls_summary} if self.hls is not None else {})

    # -------------------------------------------------------------- recorder thread

    def _run(self) -> None:
        while True:
            stopping = self._stop.wait(DRAIN_INTERVAL_S)
            with self._lock:
                active = list(self.writers.values())
                closing, self._closing = self._closing, []
            for writer in active:
                writer.drain()
            for writer in closing:
                try:
                    info = writer.finish()
                except Exception:
                    log.exception("recorder: finishing %s failed", writer.path)
                    info = None
                if info is not None:
                    self.files.append(info)
            if stopping:
                with self._lock:
                    if not self._closing and not self.writers:
                        return
