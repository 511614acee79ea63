"""Checks on an LL-HLS folder written by ``media.hls``, for the HLS tests: playlists through the ``m3u8``
library, segments through PyAV."""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path
from typing import Any

import av
import m3u8

from media.hls import PART_TARGET_S, TARGET_DURATION
from tests.records.test_recording_e2e import tone_of


def playlist(path: Path) -> Any:
    """A media or multivariant playlist, parsed; every URI in it is relative."""
    text = path.read_text(encoding="utf-8")
    parsed = m3u8.loads(text)
    for line in text.splitlines():
        uri = line.split('URI="')[1].split('"')[0] if 'URI="' in line else (line if line and line[0] != "#" else None)
        assert uri is None or ("/" not in uri.split("/")[0] and ":" not in uri and not uri.startswith("/")), line
    return parsed


def check_media_playlist(pl: Any, *, live: bool) -> None:
    """Version, target duration, part target, server control, parts and segments within their targets."""
    assert pl.version >= 9 and pl.target_duration == TARGET_DURATION
    assert pl.is_endlist is not live
    if live:
        assert pl.part_inf.part_target == PART_TARGET_S
        assert pl.server_control.can_block_reload == "YES"
        assert pl.server_control.part_hold_back >= 3 * PART_TARGET_S
        assert pl.preload_hint is not None and pl.preload_hint.hint_type == "PART"
    for seg in pl.segments:
        assert seg.program_date_time is not None or not seg.uri, seg.uri  # (the library drops it for the one being written)
        for part in seg.parts:
            assert 0 < part.duration <= PART_TARGET_S, part.uri
        if seg.uri:  # complete
            assert round(seg.duration) <= TARGET_DURATION, (seg.uri, seg.duration)
            if seg.parts:
                assert abs(sum(p.duration for p in seg.parts) - seg.duration) < 0.002, seg.uri


def pdt(seg: Any) -> float:
    value: datetime = seg.program_date_time
    return value.timestamp()


def concat(folder: Path, names: list[str], init: str = "init.mp4") -> bytes:
    return (folder / init).read_bytes() + b"".join((folder / n).read_bytes() for n in names)


def decode_video(data: bytes) -> list[tuple[float, av.VideoFrame]]:
    with av.open(io.BytesIO(data)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        return [(float(f.time or 0.0), f) for f in container.decode(video=0)]


def aac_tone(data: bytes) -> tuple[str, int, float, float]:
    """Codec, sample rate, RMS and dominant frequency of the decoded sound."""
    with av.open(io.BytesIO(data)) as container:
        ctx = container.streams.audio[0].codec_context
        codec, rate = ctx.name, ctx.sample_rate
    return (codec, rate, *tone_of(data))
