"""CMAF / fragmented-MP4 boxes (ISO/IEC 14496-12 and 23000-19): an initialisation segment and media chunks.

Owns the bytes only: ``init_segment`` answers the ``ftyp``+``moov`` of one track
(H.264 from its SPS/PPS, AAC from its AudioSpecificConfig) and ``chunk`` answers
one ``moof``+``mdat`` of samples already encoded.  It never encodes, decodes, cuts
segments, names files or writes to disk (``media.hls`` does), and it knows no RTP.

Written by hand rather than by PyAV's ``mp4`` muxer: the muxer has no call that
closes a fragment at a chosen frame (``av_write_frame(ctx, NULL)`` with
``frag_custom`` is not exposed), and a part must end exactly where the playlist
says.  Video samples are AVCC (4-byte lengths, parameter sets in ``avcC``); there
are no B-frames in WebRTC H.264, so decode time is presentation time.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

VIDEO_TIMESCALE = 90000
"""The RTP clock of video: samples keep their RTP timing."""
_MATRIX = struct.pack(">9I", 0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000)
_SYNC = 0x02000000
"""sample_depends_on = 2 (depends on no other sample)."""
_NON_SYNC = 0x01010000
"""sample_depends_on = 1, sample_is_non_sync_sample = 1."""


@dataclass(frozen=True)
class Sample:
    data: bytes
    duration: int
    """In the track's timescale."""
    sync: bool


def box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I", 8 + len(body)) + kind + body


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return box(kind, struct.pack(">I", (version << 24) | flags), *payload)


def avc_config(sps: bytes, pps: bytes) -> bytes:
    """The ``avcC`` record (ISO/IEC 14496-15 5.3.3.1) of one SPS and one PPS (NAL units without start codes)."""
    out = bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1]) + struct.pack(">H", len(sps)) + sps
    out += bytes([1]) + struct.pack(">H", len(pps)) + pps
    if sps[1] in (100, 110, 122, 144):  # High profiles: 4:2:0, 8 bits (what browsers send)
        out += bytes([0xFC | 1, 0xF8, 0xF8, 0])
    return out


def avc_codec_string(sps: bytes) -> str:
    """RFC 6381 ``avc1.PPCCLL`` for a playlist's ``CODECS``."""
    return f"avc1.{sps[1]:02x}{sps[2]:02x}{sps[3]:02x}"


def _descriptor(tag: int, body: bytes) -> bytes:
    n = len(body)
    return bytes([tag, 0x80 | (n >> 21) & 0x7F, 0x80 | (n >> 14) & 0x7F, 0x80 | (n >> 7) & 0x7F, n & 0x7F]) + body


def _esds(asc: bytes, bitrate: int) -> bytes:
    config = _descriptor(0x04, bytes([0x40, 0x15]) + b"\x00\x00\x00" + struct.pack(">II", bitrate, bitrate)
                         + _descriptor(0x05, asc))
    return full_box(b"esds", 0, 0, _descriptor(0x03, struct.pack(">HB", 1, 0) + config + _descriptor(0x06, b"\x02")))


def init_segment(*, kind: str, timescale: int, width: int = 0, height: int = 0, avcc: bytes = b"",
                 asc: bytes = b"", channels: int = 0, sample_rate: int = 0, bitrate: int = 0) -> bytes:
    """``ftyp`` + ``moov`` of one track (id 1): ``kind`` ``video`` (``avcc``, width, height) or ``audio``
    (AAC: ``asc``, channels, sample_rate)."""
    ftyp = box(b"ftyp", b"iso6", struct.pack(">I", 0), b"iso6cmfcmp41")
    mvhd = full_box(b"mvhd", 0, 0, struct.pack(">IIII", 0, 0, 1000, 0), struct.pack(">IH", 0x00010000, 0x0100),
                    bytes(10), _MATRIX, bytes(24), struct.pack(">I", 2))
    video = kind == "video"
    tkhd = full_box(b"tkhd", 0, 3, struct.pack(">IIIII", 0, 0, 1, 0, 0), bytes(8),
                    struct.pack(">HHHH", 0, 0, 0 if video else 0x0100, 0), _MATRIX,
                    struct.pack(">II", width << 16, height << 16))
    mdhd = full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, timescale, 0, 0x55C4, 0))
    hdlr = full_box(b"hdlr", 0, 0, struct.pack(">I", 0), b"vide" if video else b"soun", bytes(12),
                    b"SanKe video\0" if video else b"SanKe audio\0")
    if video:
        entry = box(b"avc1", bytes(6), struct.pack(">H", 1), bytes(16), struct.pack(">HH", width, height),
                    struct.pack(">IIIH", 0x00480000, 0x00480000, 0, 1), bytes(32), struct.pack(">Hh", 0x18, -1),
                    box(b"avcC", avcc))
        header = full_box(b"vmhd", 0, 1, bytes(8))
    else:
        entry = box(b"mp4a", bytes(6), struct.pack(">H", 1), bytes(8), struct.pack(">HHHH", channels, 16, 0, 0),
                    struct.pack(">I", sample_rate << 16), _esds(asc, bitrate))
        header = full_box(b"smhd", 0, 0, bytes(4))
    stbl = box(b"stbl", full_box(b"stsd", 0, 0, struct.pack(">I", 1), entry),
               full_box(b"stts", 0, 0, bytes(4)), full_box(b"stsc", 0, 0, bytes(4)),
               full_box(b"stsz", 0, 0, bytes(8)), full_box(b"stco", 0, 0, bytes(4)))
    dinf = box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1)))
    trak = box(b"trak", tkhd, box(b"mdia", mdhd, hdlr, box(b"minf", header, dinf, stbl)))
    mvex = box(b"mvex", full_box(b"trex", 0, 0, struct.pack(">IIIII", 1, 1, 0, 0, 0)))
    return ftyp + box(b"moov", mvhd, trak, mvex)


def chunk(sequence: int, decode_time: int, samples: list[Sample]) -> bytes:
    """One ``moof`` + ``mdat`` (a CMAF chunk) of ``samples``, the first decoded at ``decode_time``."""
    def moof(data_offset: int) -> bytes:
        trun = full_box(b"trun", 0, 0x000701, struct.pack(">Ii", len(samples), data_offset),
                        b"".join(struct.pack(">III", s.duration, len(s.data), _SYNC if s.sync else _NON_SYNC)
                                 for s in samples))
        traf = box(b"traf", full_box(b"tfhd", 0, 0x020000, struct.pack(">I", 1)),
                   full_box(b"tfdt", 1, 0, struct.pack(">Q", decode_time)), trun)
        return box(b"moof", full_box(b"mfhd", 0, 0, struct.pack(">I", sequence)), traf)

    size = len(moof(0))
    return moof(size + 8) + box(b"mdat", *(s.data for s in samples))
