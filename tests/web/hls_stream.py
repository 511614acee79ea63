"""A live LL-HLS stream for the browser tests, written the way the media worker writes a lesson's
(the file layout of issue 14: ``main.m3u8``, ``screen.m3u8``, ``camera/``, ``screen/``, ``audio/``, each
rendition with ``index.m3u8``, ``init.mp4``, parts ``s<MSN>.<P>.m4s`` and segments ``s<MSN>.m4s``).

The media is real: H.264 (libx264, baseline, a keyframe every 2 s) and AAC (a 440 Hz tone), encoded
with PyAV into fragmented MP4 (a fragment every ~0.33 s: a part; the parts from one keyframe to the
next: a segment). Each picture carries its own time: a row of 16 black-or-white blocks across its
top is the frame's number since the stream's ``epoch`` (``frame_code``), so a page can read which
instant a <video> shows; a bar moves across the rest. ``LiveStream`` writes the parts into a folder
at the pace they were recorded (a thread; playlists replaced atomically, with
``EXT-X-PROGRAM-DATE-TIME`` from ``epoch``; playlists by the egress's own ``media.hls_playlist``), as a publisher would, until
``stop()`` or ``end()`` (``#EXT-X-ENDLIST``).
"""

from __future__ import annotations

import io
import math
import os
import struct
from array import array
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path

import av

from media.hls_playlist import MediaPlaylist, Segment, Variant, multivariant, write_atomic
from media.hls_playlist import Part as PlaylistPart

FPS = 24
WIDTH, HEIGHT = 320, 180
GOP_S = 2
PART_US = 333_333
BITS = 16
BLOCK = WIDTH // (BITS + 4)  # 16 px blocks, two blocks of margin each side
"""The time code: ``BITS`` blocks of ``BLOCK`` px, from x = 2 * BLOCK, in the top ``BLOCK`` rows."""


@dataclass
class Part:
    data: bytes
    start: float  # seconds since the rendition's first frame
    duration: float
    independent: bool


@dataclass
class Rendition:
    name: str
    init: bytes
    parts: list[Part]
    codecs: str
    segments: list[list[int]] = field(default_factory=list)  # part indices of each segment

    def __post_init__(self) -> None:
        seg: list[int] = []
        for i, p in enumerate(self.parts):
            boundary = p.independent if self.name != "audio" else p.start >= GOP_S * (len(self.segments) + 1) - 1e-6
            if seg and boundary:
                self.segments.append(seg)
                seg = []
            seg.append(i)
        # the last, possibly short, group is never a whole segment (its parts are still published)
        self.where = [(msn, k) for msn, g in enumerate(self.segments) for k in range(len(g))]
        self.where += [(len(self.segments), k) for k in range(len(self.parts) - len(self.where))]


def _boxes(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[bytes, int, int]]:
    """(type, offset, size) of the boxes in data[start:end]."""
    out, pos, end = [], start, len(data) if end is None else end
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8:pos + 16])[0]
        elif size == 0:
            size = end - pos
        out.append((kind, pos, size))
        pos += size
    return out


def _find(data: bytes, off: int, size: int, kind: bytes) -> tuple[int, int]:
    for k, o, s in _boxes(data, off + 8, off + size):
        if k == kind:
            return o, s
    raise KeyError(kind)


def _fragments(mp4: bytes) -> tuple[bytes, list[tuple[bytes, int]], int]:
    """The initialisation segment, each fragment (moof + mdat) with its tfdt, and the timescale."""
    top = _boxes(mp4)
    init = b"".join(mp4[o:o + s] for k, o, s in top if k in (b"ftyp", b"moov"))
    moov = next((o, s) for k, o, s in top if k == b"moov")
    trak = _find(mp4, *moov, b"trak")
    mdia = _find(mp4, *trak, b"mdia")
    mdhd_off, _ = _find(mp4, *mdia, b"mdhd")
    version = mp4[mdhd_off + 8]
    timescale = struct.unpack(">I", mp4[mdhd_off + (28 if version else 20):][:4])[0]
    frags: list[tuple[bytes, int]] = []
    for i, (kind, off, size) in enumerate(top):
        if kind != b"moof":
            continue
        traf = _find(mp4, off, size, b"traf")
        tfdt_off, _ = _find(mp4, *traf, b"tfdt")
        v = mp4[tfdt_off + 8]
        tfdt = struct.unpack(">Q" if v else ">I", mp4[tfdt_off + 12:tfdt_off + (20 if v else 16)])[0]
        mdat = top[i + 1]
        assert mdat[0] == b"mdat"
        frags.append((mp4[off:mdat[1] + mdat[2]], tfdt))
    return init, frags, timescale


def frame_code(n: int) -> bytes:
    """One pixel row (RGB) of the time code of frame ``n``: its number in ``BITS`` blocks (white = 1),
    most significant first; the top ``BLOCK`` rows of the picture are this row."""
    row = bytearray(b"\x28\x28\x28" * WIDTH)
    for b in range(BITS):
        on = (n >> (BITS - 1 - b)) & 1
        x = (2 + b) * BLOCK
        row[x * 3:(x + BLOCK) * 3] = (b"\xff\xff\xff" if on else b"\x00\x00\x00") * BLOCK
    return bytes(row)


def _picture(n: int, tint: tuple[int, int, int]) -> av.VideoFrame:
    plain = bytes(tint) * WIDTH
    x = (n * 6) % (WIDTH - 24)
    bar = bytearray(plain)
    bar[x * 3:(x + 24) * 3] = b"\xfa\xdc\x28" * 24
    rows = [frame_code(n)] * BLOCK + [plain] * BLOCK + [bytes(bar)] * (HEIGHT - 2 * BLOCK)
    frame = av.VideoFrame(WIDTH, HEIGHT, "rgb24")
    plane = frame.planes[0]
    pad = b"\x00" * (plane.line_size - WIDTH * 3)
    plane.update(b"".join(r + pad for r in rows))
    return frame


def encode_video(name: str, first_frame: int, seconds: float, tint: tuple[int, int, int]) -> Rendition:
    """``seconds`` of H.264 whose first picture is frame ``first_frame`` of the stream's time code."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4",
                 options={"movflags": "empty_moov+default_base_moof+frag_keyframe", "frag_duration": str(PART_US)}) as out:
        st = out.add_stream("libx264", rate=FPS)
        st.width, st.height, st.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        st.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline",
                      "x264-params": f"keyint={FPS * GOP_S}:min-keyint={FPS * GOP_S}:scenecut=0"}
        st.codec_context.time_base = Fraction(1, FPS)
        for i in range(int(seconds * FPS)):
            frame = _picture(first_frame + i, tint)
            frame.pts = i
            frame.time_base = Fraction(1, FPS)
            for pkt in st.encode(frame):
                out.mux(pkt)
        for pkt in st.encode(None):
            out.mux(pkt)
    init, frags, timescale = _fragments(buf.getvalue())
    avcc = init.index(b"avcC")
    codecs = "avc1." + init[avcc + 5:avcc + 8].hex()
    return Rendition(name, init, _parts(frags, timescale, video=True), codecs)


def encode_audio(seconds: float, rate: int = 48000) -> Rendition:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4",
                 options={"movflags": "empty_moov+default_base_moof", "frag_duration": str(PART_US)}) as out:
        st = out.add_stream("aac", rate=rate)
        st.layout = "mono"
        n, size = 0, 1024
        while n < seconds * rate:
            frame = av.AudioFrame(format="fltp", layout="mono", samples=size)
            tone = array("f", (0.3 * math.sin(2 * math.pi * 440 * k / rate) for k in range(n, n + size))).tobytes()
            frame.planes[0].update(tone + b"\x00" * (frame.planes[0].buffer_size - len(tone)))
            frame.sample_rate, frame.pts, frame.time_base = rate, n, Fraction(1, rate)
            for pkt in st.encode(frame):
                out.mux(pkt)
            n += size
        for pkt in st.encode(None):
            out.mux(pkt)
    init, frags, timescale = _fragments(buf.getvalue())
    return Rendition("audio", init, _parts(frags, timescale, video=False), "mp4a.40.2")


def _parts(frags: list[tuple[bytes, int]], timescale: int, *, video: bool) -> list[Part]:
    parts = []
    for (data, tfdt), (_, after) in zip(frags, frags[1:], strict=False):  # the last one's length is unknown
        start = tfdt / timescale
        # frag_keyframe starts a fragment at every keyframe, and keyframes come every GOP_S exactly
        independent = not video or abs(start / GOP_S - round(start / GOP_S)) * GOP_S < 0.5 / FPS
        parts.append(Part(data, start, (after - tfdt) / timescale, independent))
    return parts


@dataclass
class _Live:
    rendition: Rendition
    epoch: datetime  # the instant of the rendition's first frame
    offset: float  # seconds after the stream's start when that frame was shot
    playlist: MediaPlaylist
    published: int = 0  # parts written


class LiveStream:
    """Camera (with audio) from the stream's start, the screen from ``screen_from`` seconds; written into
    ``folder`` in real time from ``start()`` on, with ``preroll`` seconds already there."""

    def __init__(self, folder: Path, epoch: datetime, *, seconds: float = 60, screen_from: float = 3.0,
                 preroll: float = 6.0) -> None:
        self.folder = folder
        self.epoch = epoch.astimezone(timezone.utc)
        self.preroll = preroll
        shift = round(screen_from * FPS) / FPS
        renditions = [(encode_video("camera", 0, seconds, (30, 60, 110)), 0.0), (encode_audio(seconds), 0.0),
                      (encode_video("screen", round(shift * FPS), seconds - shift, (20, 100, 60)), shift)]
        self.lives = [_Live(r, self.epoch + timedelta(seconds=offset), offset,
                            MediaPlaylist(target_duration=GOP_S, part_target=max(p.duration for p in r.parts), window=6))
                      for r, offset in renditions]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    def start(self) -> None:
        for live in self.lives:
            d = self.folder / live.rendition.name
            d.mkdir(parents=True, exist_ok=True)
            write_atomic(d / "init.mp4", live.rendition.init)
        self._t0 = time.monotonic() - self.preroll
        self._publish()
        write_atomic(self.folder / "main.m3u8", self._main())
        self._thread = threading.Thread(target=self._run, name="test-hls", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)

    def end(self) -> None:
        """The stream ends: every playlist gets ``#EXT-X-ENDLIST``."""
        self.stop()
        for live in self.lives:
            live.playlist.ended = True
            if live.published:
                write_atomic(self.folder / live.rendition.name / "index.m3u8", live.playlist.render())

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self._publish()

    def _publish(self) -> None:
        now = time.monotonic() - self._t0
        for live in self.lives:
            r = live.rendition
            before = live.published
            while live.published < len(r.parts):
                p = r.parts[live.published]
                if live.offset + p.start + p.duration > now:
                    break
                self._write_part(live, live.published)
                live.published += 1
            if live.published != before:
                if live.published < len(r.parts):
                    msn, k = r.where[live.published]
                    live.playlist.preload_hint = f"s{msn}.{k}.m4s"
                write_atomic(self.folder / r.name / "index.m3u8", live.playlist.render())
                if r.name == "screen" and before == 0:
                    write_atomic(self.folder / "screen.m3u8", self._screen())

    def _write_part(self, live: _Live, index: int) -> None:
        r = live.rendition
        msn, k = r.where[index]
        part = r.parts[index]
        d = self.folder / r.name
        write_atomic(d / f"s{msn}.{k}.m4s", part.data)
        if k == 0:
            live.playlist.segments.append(Segment(msn, f"s{msn}.m4s", "init.mp4",
                                                  (live.epoch + timedelta(seconds=part.start)).timestamp()))
        segment = live.playlist.segments[-1]
        segment.parts.append(PlaylistPart(f"s{msn}.{k}.m4s", part.duration, part.independent))
        seg = r.segments[msn] if msn < len(r.segments) else None
        if seg and index == seg[-1]:  # the segment's last part: the whole segment too
            write_atomic(d / f"s{msn}.m4s", b"".join(r.parts[i].data for i in seg))
            segment.duration = sum(r.parts[i].duration for i in seg)

    def _main(self) -> str:
        cam = self.lives[0].rendition
        return multivariant([Variant("camera/index.m3u8", 400_000, cam.codecs, WIDTH, HEIGHT, audio=True)],
                            "audio/index.m3u8")

    def _screen(self) -> str:
        scr = self.lives[2].rendition
        return multivariant([Variant("screen/index.m3u8", 300_000, scr.codecs, WIDTH, HEIGHT)], None)
