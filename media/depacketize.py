"""Encoded frames out of RTP packets: the payload formats the SFU forwards, undone.

Shared by the patrol snapshot (``media.snapshot``: one keyframe out of the NACK
cache) and the recorder (``media.recorder``: every frame of a stream, muxed into
a file).  Plain functions over packet bytes, no asyncio, no sockets.

- VP8 (RFC 7741): the payload descriptor is removed; the rest of each packet
  is appended.
- H.264 (RFC 6184): single NAL units, STAP-A and FU-A become an Annex B byte
  stream (start codes before each NAL unit).
- Opus (RFC 7587): the RTP payload *is* the Opus packet.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiortc.codecs.h264 import H264PayloadDescriptor
from aiortc.codecs.vpx import VpxPayloadDescriptor

from media.rtp import header_size

VIDEO_DEPACKETIZERS = {"video/vp8": VpxPayloadDescriptor.parse, "video/h264": H264PayloadDescriptor.parse}


def payload(pkt: bytes) -> bytes:
    """The RTP payload without padding."""
    start = header_size(pkt)
    end = len(pkt)
    if pkt[0] & 0x20:  # P: the last byte counts the padding
        end -= pkt[-1]
    if end < start:
        raise ValueError("RTP padding longer than the payload")
    return pkt[start:end]


def seq_of(pkt: bytes) -> int:
    return int.from_bytes(pkt[2:4], "big")


def ts_of(pkt: bytes) -> int:
    return int.from_bytes(pkt[4:8], "big")


def marker(pkt: bytes) -> bool:
    return bool(pkt[1] & 0x80)


def depacketize(mime: str, packets: Sequence[bytes]) -> bytes:
    """The encoded frame carried by ``packets`` (VP8 bitstream, H.264 Annex B, or one Opus packet)."""
    m = mime.lower()
    if m == "audio/opus":
        return b"".join(payload(p) for p in packets)
    parse = VIDEO_DEPACKETIZERS.get(m)
    if parse is None:
        raise ValueError(f"no depacketizer for {mime}")
    out = bytearray()
    for pkt in packets:
        _, data = parse(payload(pkt))
        out += data
    return bytes(out)


def vp8_size(frame: bytes) -> tuple[int, int] | None:
    """Width and height from a VP8 keyframe header (RFC 6386 9.1), or None for an inter frame."""
    if len(frame) < 10 or frame[0] & 0x01 or frame[3:6] != b"\x9d\x01\x2a":
        return None
    return int.from_bytes(frame[6:8], "little") & 0x3FFF, int.from_bytes(frame[8:10], "little") & 0x3FFF


def h264_nal_units(annexb: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream (without start codes)."""
    units: list[bytes] = []
    start = -1
    i = annexb.find(b"\x00\x00\x01")  # (bytes.find: a frame of the live stream is scanned at C speed)
    while i >= 0:
        if start >= 0:
            end = i - 1 if i > 0 and annexb[i - 1] == 0 else i
            units.append(annexb[start:end])
        start = i + 3
        i = annexb.find(b"\x00\x00\x01", start)
    if start >= 0 and start < len(annexb):
        units.append(annexb[start:])
    return [u for u in units if u]


def h264_parameter_sets(annexb: bytes) -> bytes:
    """The SPS and PPS of an access unit, as Annex B (the decoder configuration of an MP4 track)."""
    return b"".join(b"\x00\x00\x00\x01" + u for u in h264_nal_units(annexb) if u[0] & 0x1F in (7, 8))
