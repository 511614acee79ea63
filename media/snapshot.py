"""A snapshot of a video producer: its latest keyframe, taken from the NACK cache, decoded once.

Patrol (巡课) wants a picture of what a classroom's camera shows *now*, without
running a decoder per lesson.  The SFU already keeps the last seconds of every
video layer in ``ProducerStream.cache`` (for NACKs), so a snapshot is:

1. **in the media worker** (``capture``, the ``producer.snapshot`` request):
   find the newest complete keyframe in the cache of the best layer that is
   flowing — a run of packets with one RTP timestamp, no sequence gap, ending
   with the marker bit — or ask the publisher for one (PLI, throttled like any
   other) and wait for it; depacketize it (``media.depacketize``, shared with the
   recorder) and answer the encoded frame;
2. **in the caller's process** (``decode_jpeg``): decode that one frame with a
   fresh PyAV decoder and encode it as one JPEG.  The decoder lives for one
   frame; nothing decodes on the worker's forwarding loop.

The search is plain functions over packets (``find_keyframe``,
``depacketize``), tested without sockets.
"""

from __future__ import annotations

import asyncio
import base64
import fractions
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import av

from media.channel import ChannelError
from media.codecs import is_keyframe
from media.depacketize import depacketize
from media.depacketize import marker as _marker
from media.depacketize import payload as _payload
from media.depacketize import ts_of as _ts

if TYPE_CHECKING:
    from media.router import Router

DECODERS = {"video/vp8": "vp8", "video/h264": "h264"}
"""Codecs a snapshot can be made of (by lower-case MIME type)."""
CAPTURE_TIMEOUT_S = 3.0
"""How long ``capture`` waits for a keyframe it asked for."""
POLL_INTERVAL_S = 0.04
FRESH_S = 1.0
"""A layer whose last packet is older than this is not flowing (simulcast layer switched off)."""
MAX_FRAME_BYTES = 3 * 1024 * 1024


def find_keyframe(get: Callable[[int], bytes | None], highest_seq: int, mime: str,
                  window: int = 2048) -> list[bytes] | None:
    """The packets of the newest complete keyframe among the ``window`` packets up to ``highest_seq``.

    ``get(seq)`` answers a cached packet or None.  Complete: every packet of the
    frame's RTP timestamp from the first to the one with the marker bit, no gap.
    """
    seq = highest_seq & 0xFFFF
    for back in range(window):
        s = (seq - back) & 0xFFFF
        pkt = get(s)
        if pkt is None:
            continue
        try:
            if not is_keyframe(mime, _payload(pkt)):
                continue
        except ValueError:
            continue
        frame = _frame_at(get, s, pkt, highest_seq=seq)
        if frame is not None:
            return frame
    return None


def _frame_at(get: Callable[[int], bytes | None], s: int, pkt: bytes, *, highest_seq: int) -> list[bytes] | None:
    ts = _ts(pkt)
    first = s
    while True:  # back to the frame's first packet (an H.264 SPS may precede the IDR's first packet)
        prev = get((first - 1) & 0xFFFF)
        if prev is None or _ts(prev) != ts:
            break
        first = (first - 1) & 0xFFFF
        if first == s:
            return None
    packets: list[bytes] = []
    cur = first
    while True:
        p = get(cur)
        if p is None or _ts(p) != ts:
            return None  # a gap, or the next frame began without a marker: incomplete
        packets.append(p)
        if _marker(p):
            return packets
        if cur == highest_seq:
            return None  # the rest has not arrived yet
        cur = (cur + 1) & 0xFFFF


async def capture(router: Router, producer_id: str, *, timeout: float = CAPTURE_TIMEOUT_S) -> dict[str, Any]:
    """``producer.snapshot``: the newest keyframe of a video producer, encoded, as base64.

    Answers ``{mime, frame, layer, width_hint}``; errors are ``ChannelError``
    (``not_found``: no such producer; ``unsupported``: not VP8/H.264 video;
    ``paused``: muted; ``timeout``: no keyframe arrived).
    """
    producer = router.producers.get(producer_id)
    if producer is None or producer.closed:
        raise ChannelError("not_found", f"no producer {producer_id}")
    mime = producer.mime.lower()
    if producer.kind != "video" or mime not in DECODERS:
        raise ChannelError("unsupported", f"cannot snapshot {producer.kind} {producer.mime}")
    if producer.paused:
        raise ChannelError("paused", f"producer {producer_id} is paused")
    deadline = time.monotonic() + timeout
    asked = False
    while True:
        now = time.monotonic()
        flowing = [s for s in producer.streams
                   if s.cache is not None and s.stats.received and now - s.last_arrival < FRESH_S]
        for stream in reversed(flowing):  # the best layer first
            cache = stream.cache
            assert cache is not None
            packets = find_keyframe(lambda seq, c=cache, t=now: c.get(seq, t), stream.stats.extended_highest_seq, mime)
            if packets is not None:
                frame = depacketize(mime, packets)
                if len(frame) > MAX_FRAME_BYTES:
                    raise ChannelError("too_large", "keyframe too large for a snapshot")
                return {"mime": producer.mime, "layer": stream.layer, "frame": base64.b64encode(frame).decode()}
        if not asked and flowing:
            flowing[-1].request_keyframe(now)  # throttled per layer: never a PLI storm
            asked = True
        if now >= deadline:
            raise ChannelError("timeout", f"no keyframe of {producer_id} within {timeout:g} s")
        await asyncio.sleep(POLL_INTERVAL_S)


def decode_jpeg(mime: str, frame: bytes, *, max_width: int = 1920, quality: int = 4) -> tuple[bytes, int, int]:
    """Decode one encoded keyframe and encode it as a JPEG: ``(jpeg, width, height)``.

    A fresh decoder per call, fed one packet and flushed.  ``quality`` is the
    JPEG quantiser (2 best … 31 worst).  Raises ``ValueError`` when the frame
    does not decode.
    """
    name = DECODERS.get(mime.lower())
    if name is None:
        raise ValueError(f"cannot decode {mime}")
    decoder = av.CodecContext.create(name, "r")
    try:
        pictures = list(decoder.decode(av.Packet(frame)))
        pictures += list(decoder.decode(None))
    except av.FFmpegError as exc:
        raise ValueError(f"keyframe does not decode: {exc}") from None
    if not pictures:
        raise ValueError("keyframe decoded to no picture")
    picture = pictures[0]
    width, height = picture.width, picture.height
    if width > max_width:
        height = max(2, int(height * max_width / width) // 2 * 2)
        width = max_width
    picture = picture.reformat(width=width, height=height, format="yuvj420p")
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height = width, height
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = fractions.Fraction(1, 25)
    encoder.options = {"qmin": str(quality), "qmax": str(quality)}
    picture.pts = 0
    data = b"".join(bytes(p) for p in encoder.encode(picture)) + b"".join(bytes(p) for p in encoder.encode(None))
    if not data.startswith(b"\xff\xd8"):
        raise ValueError("JPEG encoder produced no image")
    return data, width, height
