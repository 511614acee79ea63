"""LL-HLS egress of a lesson: the recorder's frames → CMAF renditions (fMP4 parts and segments) and playlists.

``HlsEgress`` owns a lesson's ``hls/`` folder (inside its recording folder, see
docs/architecture.md) and writes, as frames arrive:

- a ``Rendition`` per track (``camera``, ``screen``, ``audio``; ``camera-<rid>`` for
  a lower simulcast layer): ``init.mp4``,
  parts ``s<MSN>.<P>.m4s`` of ~``PART_TARGET_S`` and segments ``s<MSN>.m4s`` of
  ~``SEGMENT_TARGET_S`` (a video segment starts at the first keyframe after the
  target; the recorder asks the publisher for that keyframe when the target is
  reached, so a segment lasts the target plus the time a PLI takes), and
  its media playlist ``index.m3u8`` (``media.hls_playlist``);
- ``main.m3u8`` (camera + audio) and ``screen.m3u8`` (screen + audio), a
  simulcast source's layers as variants.

It is fed by ``media.recorder.TrackWriter`` (one pipeline: the recorder's frame
assembly, keyframe waits and RTP timing serve the recording and the stream) on
the recorder's thread.  Video is never decoded or encoded (one decode of a
keyframe reads the picture size); the main classroom's Opus is decoded and
encoded once to AAC (``OpusToAac``), the only encode.  Time inside a rendition is
the RTP time of its frames, continued across the publisher's reconnects (a
discontinuity); ``EXT-X-PROGRAM-DATE-TIME`` is the wall-clock time of a
segment's first frame from the publisher's RTP↔NTP mapping (its last sender
report's RTP time and arrival), or from the arrival of the first frame before any
sender report, so camera, screen and audio share one clock.

It never touches sockets, the event loop or the forwarding path, and knows
nothing of lessons (the recorder tells it which tracks to write).
"""

from __future__ import annotations

import fractions
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av

from media.cmaf import VIDEO_TIMESCALE, Sample, avc_codec_string, avc_config, chunk, init_segment
from media.depacketize import h264_nal_units
from media.hls_playlist import MediaPlaylist, Part, Segment, Variant, multivariant, segments_of, variants_of, write_atomic

log = logging.getLogger(__name__)

SEGMENT_TARGET_S = 2.0
PART_TARGET_S = 0.334
"""``PART-TARGET``: a part is closed before it would pass this (10 frames at 30 fps, 15 AAC frames)."""
TARGET_DURATION = 3
"""``EXT-X-TARGETDURATION``: every segment rounds to at most this."""
MAX_SEGMENT_S = 3.4
"""A video segment is cut here even without a keyframe (a publisher that ignores PLIs)."""
GAP_S = {"audio": 0.5, "video": 1.1}
"""Samples this far apart (a paused track, a long loss) end the segment: the next one is a discontinuity, so
no part or segment stretches over the gap.  Video allows 1 s: a still shared screen comes at ~1 frame/s
(each such frame is then a part of its own, longer than ``PART_TARGET_S``: nothing shorter exists without
re-encoding)."""
MEDIA_PLAYLIST = "index.m3u8"
"""A rendition's live media playlist (``vod.m3u8`` beside it lists every segment)."""
WINDOW_SEGMENTS = 6
"""Complete segments a live playlist lists (~12 s); every segment stays on disk for the recording."""
AAC_RATE = 48000
AAC_BITRATE = 64000
AAC_FRAME = 1024
VIDEO_SOURCES = ("camera", "screen")
VIDEO_REFUSED = "主讲课堂发送的是 {codec} 视频，HLS 直播只能直接转发 H.264：本节课不提供 HLS 直播，观众请用 WebRTC 观看"
"""The reason a video source gets no stream (``HlsEgress.refused``), for the teacher's page."""
_ASSUMED_BANDWIDTH = {"video": 2_000_000, "audio": 100_000}
"""``BANDWIDTH`` until a complete segment measured it."""


class Rendition:
    """One CMAF track in ``directory``: its init segment(s), parts, segments and media playlist."""

    def __init__(self, directory: Path, kind: str, timescale: int) -> None:
        self.directory = directory
        self.kind = kind
        self.timescale = timescale
        directory.mkdir(parents=True, exist_ok=True)
        self.playlist = MediaPlaylist(TARGET_DURATION, PART_TARGET_S, WINDOW_SEGMENTS)
        self.codecs = ""
        self.width = self.height = 0
        self.peak_bps = 0
        self._init: bytes | None = None
        self._init_uri = ""
        self._inits = 0
        self.published = False
        """Its media playlist has been written (it has a part): from then on the multivariant playlists list it,
        never before (a player sent to a media playlist that does not exist yet, or is empty, gives up)."""
        self._discontinuity = False
        self._await_sync = False
        """After a gap, video samples wait for a keyframe: a segment must start on one."""
        self._pending: list[tuple[bytes, int, bool]] = []
        """Samples of the part being filled: (data, ts, sync); a sample's duration is known at the next one."""
        self._part_start = 0
        self._seg_start = 0
        self._current: Segment | None = None
        self._current_bytes: list[bytes] = []
        self._msn = 0
        self._generation = ""
        """Put in the names of the files written after a resume (``.g<N>``), so no name a viewer or a cache
        may have fetched from the dead writer is written again with other bytes."""
        self._sequence = 0
        self._run_origin: int | None = None
        self._run_base = 0
        """Decode time of the run's first sample: decode time goes on across runs (reconnects)."""
        self._next_decode = 0
        self._last_duration = timescale // 30 if kind == "video" else AAC_FRAME
        self._resume()

    def _resume(self) -> None:
        """A rendition made again in a folder that has one (the worker died, the recording goes on in the same
        folder): its segments are kept, numbering goes on, and the next segment is a discontinuity."""
        vod = self.directory / "vod.m3u8"
        if not vod.exists():
            return
        self.playlist.segments = segments_of(vod.read_text(encoding="utf-8"))
        if self.playlist.segments:
            self._msn = self.playlist.segments[-1].msn + 1
            self._discontinuity = True
        self._inits = len(list(self.directory.glob("init*.mp4")))
        self._generation = f".g{self._inits + 1}"  # as the init this writer adds: unique to this resume
        self._next_decode = round(sum(s.duration for s in self.playlist.segments) * self.timescale)
        # the parts of the segment the dead worker was writing: never listed in vod.m3u8, never in a segment
        for stale in self.directory.glob(f"s{self._msn}.[0-9]*.m4s"):
            stale.unlink()

    def _name(self, msn: int, part: int | None = None) -> str:
        """``s<MSN>.m4s`` / ``s<MSN>.<part>.m4s`` (``s<MSN>.g<N>…`` after a resume)."""
        return f"s{msn}{self._generation}.m4s" if part is None else f"s{msn}{self._generation}.{part}.m4s"
    # -------------------------------------------------------------- runs

    def start_run(self, init: bytes, *, codecs: str, width: int = 0, height: int = 0) -> bool:
        """A new run of samples (a publisher's new stream, or new parameter sets): the segment being written
        ends and the next one starts with a discontinuity.  Answers whether the track's description changed."""
        self.end_run()
        if self.playlist.segments:
            self._discontinuity = True
        changed = (codecs, width, height) != (self.codecs, self.width, self.height)
        self.codecs, self.width, self.height = codecs, width, height
        if init != self._init:
            self._inits += 1
            self._init = init
            self._init_uri = "init.mp4" if self._inits == 1 else f"init-{self._inits}.mp4"
            write_atomic(self.directory / self._init_uri, init)
        self._run_origin = None
        self._run_base = self._next_decode
        return changed

    def end_run(self) -> None:
        """The run's samples are all there: its last part and segment are written."""
        self._close(self._end_of_pending())

    @property
    def running(self) -> bool:
        return self._init is not None

    def keyframe_due(self, ts: int) -> bool:
        """Whether a keyframe should be on its way: for the next segment, or to start again after a gap (video)."""
        if self._await_sync:
            return True
        return self._current is not None and ts - self._seg_start >= SEGMENT_TARGET_S * self.timescale

    # -------------------------------------------------------------- samples

    def add(self, data: bytes, ts: int, sync: bool, wall: float) -> None:
        """A sample at ``ts`` (the run's clock, increasing) captured at ``wall`` (Unix seconds)."""
        if self._init is None:
            raise RuntimeError("a rendition takes samples after start_run")
        if self._run_origin is None:
            self._run_origin = ts
        if self._pending and ts <= self._pending[-1][1]:
            return
        wrote = False
        if self._pending and ts - self._pending[-1][1] > GAP_S[self.kind] * self.timescale:
            self.end_run()
            self._discontinuity = True
            self._await_sync = self.kind == "video"
        if self._await_sync:
            if not sync:
                return  # a segment after a gap starts on a keyframe (asked for: ``keyframe_due``)
            self._await_sync = False
        if self._pending:
            step = ts - self._pending[-1][1]
            seg_len = ts - self._seg_start
            new_segment = ((sync or self.kind == "audio") and seg_len >= SEGMENT_TARGET_S * self.timescale) or (
                seg_len + step > MAX_SEGMENT_S * self.timescale)
            if new_segment or ts - self._part_start + step > PART_TARGET_S * self.timescale:
                self._close_part(ts)
                wrote = True
                if new_segment:
                    self._close_segment(ts)
            self._last_duration = step
        if self._current is None:
            self._current = Segment(self._msn, self._name(self._msn), self._init_uri, wall,
                                    discontinuity=self._discontinuity)
            self._discontinuity = False
            self._seg_start = ts
            self.playlist.segments.append(self._current)
        if not self._pending:
            self._part_start = ts
        self._pending.append((data, ts, sync))
        if wrote:
            self._write_playlist()

    def _decode_time(self, ts: int) -> int:
        assert self._run_origin is not None
        return self._run_base + ts - self._run_origin

    def _end_of_pending(self) -> int:
        return self._pending[-1][1] + self._last_duration if self._pending else 0

    def _close_part(self, end: int) -> None:
        assert self._current is not None
        pending, self._pending = self._pending, []
        samples = [Sample(data, (pending[i + 1][1] if i + 1 < len(pending) else end) - ts, sync)
                   for i, (data, ts, sync) in enumerate(pending)]
        self._sequence += 1
        body = chunk(self._sequence, self._decode_time(self._part_start), samples)
        uri = self._name(self._current.msn, len(self._current.parts))
        write_atomic(self.directory / uri, body)
        self._current.parts.append(Part(uri, (end - self._part_start) / self.timescale, pending[0][2]))
        self._current_bytes.append(body)
        self._next_decode = self._decode_time(end)

    def _close_segment(self, end: int) -> None:
        seg, self._current = self._current, None
        assert seg is not None
        body = b"".join(self._current_bytes)
        self._current_bytes = []
        write_atomic(self.directory / seg.uri, body)
        seg.duration = (end - self._seg_start) / self.timescale
        self.peak_bps = max(self.peak_bps, int(len(body) * 8 / max(seg.duration, 0.5)))
        self._msn += 1
        self._drop_old_parts()
        write_atomic(self.directory / "vod.m3u8", self.playlist.render(full=True))

    def _drop_old_parts(self) -> None:
        """Parts the live playlist no longer lists, one segment later (a client may still be fetching them): their
        segment holds the same bytes."""
        done = self.playlist.complete
        for seg in done[:-(self.playlist.part_segments + 1)]:
            for part in seg.parts:
                (self.directory / part.uri).unlink(missing_ok=True)
            seg.parts = []

    def _close(self, end: int) -> None:
        if self._pending:
            self._close_part(end)
        if self._current is not None:
            self._close_segment(end)
            self._write_playlist()

    def _write_playlist(self) -> None:
        self.published = True
        cur = self._current
        self.playlist.preload_hint = self._name(cur.msn, len(cur.parts)) if cur is not None else self._name(self._msn, 0)
        write_atomic(self.directory / MEDIA_PLAYLIST, self.playlist.render())

    def finish(self) -> dict[str, Any]:
        """End the stream: the last part and segment, ``EXT-X-ENDLIST`` (in ``vod.m3u8`` too, which lists every
        segment)."""
        self.end_run()
        self.playlist.ended = True
        write_atomic(self.directory / MEDIA_PLAYLIST, self.playlist.render())
        write_atomic(self.directory / "vod.m3u8", self.playlist.render(full=True))
        done = self.playlist.complete
        return {"segments": len(done), "duration_s": round(sum(s.duration for s in done), 3),
                "discontinuities": sum(s.discontinuity for s in done), "codecs": self.codecs}


def h264_size(annexb: bytes) -> tuple[int, int]:
    """Width and height of an H.264 keyframe (Annex B), decoded once."""
    decoder = av.CodecContext.create("h264", "r")
    pictures = list(decoder.decode(av.Packet(annexb))) + list(decoder.decode(None))
    if not pictures:
        raise ValueError("H.264 keyframe does not decode")
    return pictures[0].width, pictures[0].height


WallOf = Callable[[int, float], float]
"""(extended RTP timestamp, arrival time) → wall-clock capture time (Unix seconds)."""


class VideoTrack:
    """A recorded H.264 stream → a video ``Rendition``, without decoding (AVCC samples, ``avcC`` from its SPS/PPS)."""

    def __init__(self, egress: HlsEgress, rendition: Rendition, wall_of: WallOf) -> None:
        self.egress = egress
        self.rendition = rendition
        self.wall_of = wall_of
        self._config: tuple[bytes, bytes] | None = None
        self._started = False

    def frame(self, annexb: bytes, ts: int, key: bool, now: float) -> bool:
        """A frame (Annex B) with its extended RTP timestamp; answers whether a keyframe should be asked for."""
        units = h264_nal_units(annexb)
        sps = next((u for u in units if u[0] & 0x1F == 7), None)
        pps = next((u for u in units if u[0] & 0x1F == 8), None)
        if sps is not None and pps is not None and (sps, pps) != self._config:
            self._config = (sps, pps)
            width, height = h264_size(annexb)
            avcc = avc_config(sps, pps)
            init = init_segment(kind="video", timescale=VIDEO_TIMESCALE, width=width, height=height, avcc=avcc)
            if self.rendition.start_run(init, codecs=avc_codec_string(sps), width=width, height=height):
                self.egress.write_multivariant()
            self._started = True
        elif not self._started:
            return True  # a stream joins on a keyframe with its parameter sets
        data = b"".join(len(u).to_bytes(4, "big") + u for u in units if u[0] & 0x1F not in (7, 8, 9))
        if data:
            self.egress.add(self.rendition, data, ts, key, self.wall_of(ts, now))
        return self.rendition.keyframe_due(ts)

    def end(self) -> None:
        """The stream ended (its producer went): its last segment is complete."""
        if self._started:
            self.rendition.end_run()


class OpusToAac:
    """Opus packets → AAC-LC frames (mono, 48 kHz, ``AAC_BITRATE``): the egress's only encode."""

    def __init__(self) -> None:
        self.decoder = av.CodecContext.create("opus", "r")
        self.decoder.sample_rate = AAC_RATE
        self.resampler = av.AudioResampler(format="fltp", layout="mono", rate=AAC_RATE, frame_size=AAC_FRAME)
        self.encoder = av.CodecContext.create("aac", "w")
        self.encoder.sample_rate = AAC_RATE
        self.encoder.layout = "mono"
        self.encoder.format = "fltp"
        self.encoder.bit_rate = AAC_BITRATE
        self.encoder.time_base = fractions.Fraction(1, AAC_RATE)
        self.encoder.open()
        self.config = bytes(self.encoder.extradata or b"")
        """The AudioSpecificConfig (``esds``)."""
        self._time_base = fractions.Fraction(1, AAC_RATE)

    def feed(self, opus: bytes, pts: int) -> list[tuple[bytes, int]]:
        """One Opus packet at ``pts`` (48 kHz) → the AAC frames done so far, with their pts."""
        packet = av.Packet(opus)
        packet.pts = pts
        packet.time_base = self._time_base
        out = []
        for frame in self.decoder.decode(packet):
            frame.pts = pts
            frame.time_base = self._time_base
            for resampled in self.resampler.resample(frame):
                for aac in self.encoder.encode(resampled):
                    out.append((bytes(aac), int(aac.pts)))
        return out


class AudioTrack:
    """A recorded Opus stream → the ``audio`` rendition, through ``OpusToAac``."""

    def __init__(self, egress: HlsEgress, rendition: Rendition, wall_of: WallOf) -> None:
        self.egress = egress
        self.rendition = rendition
        self.wall_of = wall_of
        self.transcoder = OpusToAac()
        self._first_ts: int | None = None

    def frame(self, opus: bytes, ts: int, key: bool, now: float) -> bool:
        if self._first_ts is None:
            self._first_ts = ts
            init = init_segment(kind="audio", timescale=AAC_RATE, asc=self.transcoder.config, channels=1,
                                sample_rate=AAC_RATE, bitrate=AAC_BITRATE)
            if self.rendition.start_run(init, codecs="mp4a.40.2"):
                self.egress.write_multivariant()
        for data, pts in self.transcoder.feed(opus, ts - self._first_ts):
            self.egress.add(self.rendition, data, pts, True, self.wall_of(self._first_ts + pts, now))
        return False

    def end(self) -> None:
        if self._first_ts is not None:
            self.rendition.end_run()


class HlsEgress:
    """A lesson's ``hls/`` folder: one ``Rendition`` per source, the multivariant playlists, the refusals."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.renditions: dict[str, Rendition] = {}
        self.refused: dict[str, str] = {}
        """Source → why it has no stream (zh-CN, for the teacher's page)."""
        self.wall_offset = time.time() - time.monotonic()
        """Wall clock minus the monotonic clock the SFU stamps arrivals with (tests pin it)."""
        self._written: dict[str, str] = {}
        self._ended = False
        self._before = {v.uri.split("/")[0]: v for file in ("main.m3u8", "screen.m3u8")
                        if (directory / file).is_file()
                        for v in variants_of((directory / file).read_text(encoding="utf-8"))}
        """The variants a writer of this folder that died had listed (a rendition it began may never run again)."""

    def accepts(self, source: str, mime: str) -> bool:
        """Whether ``source`` sent as ``mime`` can be streamed; a refused video source is noted in ``refused``."""
        if source in VIDEO_SOURCES:
            if mime != "video/h264":
                self.refused[source] = VIDEO_REFUSED.format(codec=mime.split("/")[1].upper())
                return False
            self.refused.pop(source, None)
            return True
        return mime == "audio/opus"

    def track(self, rendition: str, mime: str, wall_of: WallOf) -> VideoTrack | AudioTrack:
        """The writer of the next run (a new producer: a discontinuity) of an accepted source's ``rendition``:
        the source, or ``<source>-<rid>`` for a lower simulcast layer (a variant of its own)."""
        if rendition.split("-")[0] in VIDEO_SOURCES:
            return VideoTrack(self, self._rendition(rendition, "video", VIDEO_TIMESCALE), wall_of)
        return AudioTrack(self, self._rendition("audio", "audio", AAC_RATE), wall_of)

    def add(self, rendition: Rendition, data: bytes, ts: int, sync: bool, wall: float) -> None:
        """A sample to ``rendition``; the multivariant playlists follow its first part and its measured bandwidth."""
        peak, published = rendition.peak_bps, rendition.published
        rendition.add(data, ts, sync, wall)
        if rendition.peak_bps != peak or rendition.published != published:
            self.write_multivariant()

    def _rendition(self, name: str, kind: str, timescale: int) -> Rendition:
        if name not in self.renditions:
            self.renditions[name] = Rendition(self.directory / name, kind, timescale)
        return self.renditions[name]

    def write_multivariant(self) -> None:
        """``main.m3u8`` (camera) and ``screen.m3u8`` (screen), both with the audio rendition when there is one; a
        simulcast source's lower layers are further variants (best first).  While live they list the renditions'
        ``index.m3u8``; once the stream ended (``finish``) their ``vod.m3u8``: the whole lesson, so the same
        link (and an origin serving the folder) serves it for replay.  A player already playing keeps the media
        playlist it loaded (a multivariant playlist is read once), which ends with ``EXT-X-ENDLIST``."""
        media = "vod.m3u8" if self._ended else MEDIA_PLAYLIST
        audio = self.renditions.get("audio")
        if not self._ended and audio is not None and audio.running and not audio.published:
            return  # the sound has begun: the pictures are listed with it, once it has its first part
        audio_uri = f"audio/{media}" if audio is not None and self._listed(audio) else None
        audio_bps = (audio.peak_bps or _ASSUMED_BANDWIDTH["audio"]) if audio_uri and audio is not None else 0
        for source, file in (("camera", "main.m3u8"), ("screen", "screen.m3u8")):
            best = self.renditions.get(source)
            if best is None or not self._listed(best):
                continue
            layers = sorted((r for name, r in self.renditions.items() if name.startswith(f"{source}-") and self._listed(r)),
                            key=lambda r: -r.width * r.height)
            variants = [Variant(f"{r.directory.name}/{media}", (r.peak_bps or _ASSUMED_BANDWIDTH["video"]) + audio_bps,
                                r.codecs, r.width, r.height, audio=True) for r in [best, *layers]]
            text = multivariant(variants, audio_uri)
            if self._written.get(file) != text:
                write_atomic(self.directory / file, text)
                self._written[file] = text

    def _listed(self, rendition: Rendition) -> bool:
        """Whether the multivariant playlists list ``rendition``: while live, when it runs and its media playlist
        is written; once ended, when it has a segment."""
        return bool(rendition.playlist.complete) if self._ended else rendition.running and rendition.published

    def _adopt(self) -> None:
        """The renditions a writer of this folder that died had begun and that did not run again (their source
        was not published again): ended too, so that every segment of the lesson is in a ``vod.m3u8`` with
        ``EXT-X-ENDLIST`` and the multivariant playlists list them; their description is the one the dead
        writer had listed."""
        for folder in sorted(self.directory.iterdir()):
            name = folder.name
            known = self.renditions.get(name)
            if (known is not None and known.running) or not (folder / "vod.m3u8").is_file():
                continue
            video = name.split("-")[0] in VIDEO_SOURCES
            before = self._before.get(name)
            if (video and before is None) or (not video and name != "audio"):
                continue  # a folder the multivariant playlists never listed
            # (or made again here, its source back without a picture it could start on)
            rendition = self._rendition(name, "video" if video else "audio", VIDEO_TIMESCALE if video else AAC_RATE)
            if before is not None:
                rendition.codecs, rendition.width, rendition.height = before.codecs, before.width, before.height
                rendition.peak_bps = before.bandwidth

    def finish(self) -> dict[str, Any]:
        """End every rendition (``EXT-X-ENDLIST``), those of a writer of this folder that died included; the
        multivariant playlists then list the whole stream (``vod.m3u8``); the summary the recording keeps
        (``hls``)."""
        self._adopt()
        renditions = {name: r.finish() for name, r in self.renditions.items() if r.running or r.playlist.segments}
        self._ended = True
        self.write_multivariant()
        return {"directory": self.directory.name, "renditions": renditions, "refused": dict(self.refused),
                "playlists": sorted(self._written)}
