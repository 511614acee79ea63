"""LL-HLS playlists (RFC 8216bis) as plain data and their text.

Owns the model of a media playlist (segments with their parts, program date
time, discontinuities, the live window) and of a multivariant playlist, their
rendering and the atomic replacement of a playlist file.  It never touches
media bytes, clocks or RTP (``media.hls`` decides what a segment holds and when
it ends).  Every URI it writes is relative to the playlist.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

VERSION = 9


@dataclass
class Part:
    uri: str
    duration: float
    independent: bool


@dataclass
class Segment:
    msn: int
    uri: str
    init: str
    """The URI of the initialisation segment its samples need (``EXT-X-MAP``)."""
    program_date_time: float
    """Wall-clock time (Unix seconds) of its first sample."""
    discontinuity: bool = False
    parts: list[Part] = field(default_factory=list)
    duration: float = 0.0
    """Set when the segment is complete."""


@dataclass
class MediaPlaylist:
    target_duration: int
    part_target: float
    window: int
    """Complete segments listed while live (older ones stay on disk, out of the playlist)."""
    part_segments: int = 2
    """Complete segments that still list their parts (besides the one being written)."""
    segments: list[Segment] = field(default_factory=list)
    """Every segment of the stream, the last one possibly incomplete (``duration`` 0)."""
    preload_hint: str | None = None
    ended: bool = False

    @property
    def complete(self) -> list[Segment]:
        return [s for s in self.segments if s.duration > 0]

    def render(self, *, full: bool = False) -> str:
        """The playlist text; ``full``: every complete segment, no parts (``EVENT`` while live, ``VOD`` once ended:
        the recording of the stream, and what a rendition restarted in the same folder goes on from)."""
        done = self.complete
        current = None if full or self.ended else next((s for s in self.segments if s.duration == 0), None)
        listed = done if full else done[-self.window:]
        first = listed[0] if listed else current
        lines = ["#EXTM3U", f"#EXT-X-VERSION:{VERSION}", f"#EXT-X-TARGETDURATION:{self.target_duration}"]
        if full:
            lines.append(f"#EXT-X-PLAYLIST-TYPE:{'VOD' if self.ended else 'EVENT'}")
        else:
            lines += [f"#EXT-X-PART-INF:PART-TARGET={self.part_target:.5f}",
                      "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,"
                      f"PART-HOLD-BACK={math.ceil(3 * self.part_target * 1000) / 1000:.3f}"]
        msn = first.msn if first is not None else 0
        lines.append(f"#EXT-X-MEDIA-SEQUENCE:{msn}")
        gone = [s for s in self.segments if s.msn < msn]
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{sum(s.discontinuity for s in gone)}")
        shown = listed + ([current] if current is not None else [])
        with_parts = {s.msn for s in done[-self.part_segments:]} if not full else set()
        init = None
        for i, seg in enumerate(shown):
            if seg.discontinuity and i > 0:
                lines.append("#EXT-X-DISCONTINUITY")
            if seg.init != init:
                lines.append(f'#EXT-X-MAP:URI="{seg.init}"')
                init = seg.init
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_iso(seg.program_date_time)}")
            if seg is current or seg.msn in with_parts:
                for part in seg.parts:
                    lines.append(f'#EXT-X-PART:DURATION={part.duration:.5f},URI="{part.uri}"'
                                 + (",INDEPENDENT=YES" if part.independent else ""))
            if seg is not current:
                lines += [f"#EXTINF:{seg.duration:.5f},", seg.uri]
        if self.preload_hint and not self.ended and not full:
            lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{self.preload_hint}"')
        if self.ended:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"


def segments_of(text: str) -> list[Segment]:
    """The complete segments of a playlist this module rendered (``render(full=True)``)."""
    segments: list[Segment] = []
    init, pdt, duration, discontinuity = "", 0.0, 0.0, False
    for line in text.splitlines():
        if line == "#EXT-X-DISCONTINUITY":
            discontinuity = True
        elif line.startswith("#EXT-X-MAP:URI="):
            init = line.split('"')[1]
        elif line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            pdt = datetime.fromisoformat(line.split(":", 1)[1].replace("Z", "+00:00")).timestamp()
        elif line.startswith("#EXTINF:"):
            duration = float(line[8:].split(",")[0])
        elif line and not line.startswith("#"):
            segments.append(Segment(int(line[1:].split(".")[0]), line, init, pdt, discontinuity, duration=duration))
            discontinuity = False
    return segments


@dataclass
class Variant:
    uri: str
    bandwidth: int
    codecs: str
    width: int
    height: int
    audio: bool = False
    """Plays with the audio rendition (``GROUP-ID="audio"``)."""


def variants_of(text: str) -> list[Variant]:
    """The variants of a multivariant playlist this module rendered (``multivariant``)."""
    variants: list[Variant] = []
    info: dict[str, str] | None = None
    for line in text.splitlines():
        if line.startswith("#EXT-X-STREAM-INF:"):
            info = {k: v.strip('"') for k, v in _ATTR.findall(line.split(":", 1)[1])}
        elif line and not line.startswith("#") and info is not None:
            width, _, height = info.get("RESOLUTION", "0x0").partition("x")
            codecs = ",".join(c for c in info.get("CODECS", "").split(",") if not c.startswith("mp4a."))
            variants.append(Variant(line, int(info.get("BANDWIDTH", "0")), codecs, int(width), int(height),
                                    audio="AUDIO" in info))
            info = None
    return variants


_ATTR = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')


def multivariant(variants: list[Variant], audio_uri: str | None) -> str:
    """A multivariant playlist: the variants, and the audio rendition they share (``audio_uri``) if any."""
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{VERSION}"]
    if audio_uri is not None:
        lines.append(f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio",NAME="课堂",LANGUAGE="zh",DEFAULT=YES,'
                     f'AUTOSELECT=YES,CHANNELS="1",URI="{audio_uri}"')
    for v in variants:
        audio = audio_uri is not None and v.audio
        codecs = v.codecs + (",mp4a.40.2" if audio else "")
        lines.append(f'#EXT-X-STREAM-INF:BANDWIDTH={v.bandwidth},CODECS="{codecs}",'
                     f"RESOLUTION={v.width}x{v.height}" + (',AUDIO="audio"' if audio else ""))
        lines.append(v.uri)
    return "\n".join(lines) + "\n"


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def write_atomic(path: Path, data: str | bytes) -> None:
    """Replace ``path`` at once: a reader sees the old file or the new one, never a part of one (the
    temporary file is hidden and keeps the suffix)."""
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)
