"""Byte-level RTP helpers for the SFU's forwarding fast path.

The SFU forwards packets it does not decode: it only needs to find the payload,
find or renumber a few header extensions, stamp abs-send-time and rewrite
payload type / sequence number / timestamp / SSRC.  Parsing every packet into an
:class:`aiortc.rtp.RtpPacket` (a Python object, a ``HeaderExtensions``
dataclass, a payload copy) and serialising it again costs far more than the
forwarding itself, so these functions work on the raw ``bytes``/``bytearray``
in place and allocate nothing but ints on the per-packet paths.

Layout (RFC 3550 §5.1, RFC 8285 §4):

* fixed header, 12 bytes: V(2) P X CC(4) | M PT(7) | seq(16) | ts(32) | ssrc(32)
* CC × 4 bytes of CSRC
* if X: profile(16) | length in 32-bit words(16) | extension elements
  (one-byte profile ``0xBEDE``: ``id(4) len-1(4) data``; two-byte profile
  ``0x100X``: ``id(8) len(8) data``; 0x00 bytes are padding)
* payload, then if P: padding whose last byte is the padding count.

Malformed packets raise :class:`ValueError` — never ``IndexError`` or
``struct.error`` — so the caller has a single exception to drop a packet on.
"""

from __future__ import annotations

import struct

from media._fastpath import ffi, lib

ONE_BYTE_PROFILE = 0xBEDE
"""RFC 8285 one-byte header extension profile."""
TWO_BYTE_PROFILE = 0x1000
"""RFC 8285 two-byte header extension profile (``0x100X``; the low 4 bits are app bits)."""

URI_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
URI_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
URI_RID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
URI_REPAIRED_RID = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
URI_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
URI_TOFFSET = "urn:ietf:params:rtp-hdrext:toffset"

RTP_HEADER_LENGTH = 12

_SEQ_TS_SSRC = struct.Struct(">HII")
_SEQ = struct.Struct(">H")

_ext_find = lib.sk_ext_find
_ext_remap = lib.sk_ext_remap
_from_buffer = ffi.from_buffer

_ABS_SEND_TIME_SCALE = 1 << 18
"""abs-send-time is 6.18 fixed point seconds: 2**18 units per second."""


def _ext_block(pkt: bytes | bytearray | memoryview) -> tuple[int, int, int]:
    """(profile, start of the element data, end of the extension block); profile 0 if X is clear.

    Called once per packet at most (never per subscriber), so returning a tuple is fine.
    """
    n = len(pkt)
    if n < RTP_HEADER_LENGTH:
        raise ValueError("RTP packet shorter than 12 bytes")
    b0 = pkt[0]
    if b0 >> 6 != 2:
        raise ValueError("RTP version is not 2")
    pos = RTP_HEADER_LENGTH + 4 * (b0 & 0x0F)
    if not b0 & 0x10:
        if n < pos:
            raise ValueError("RTP packet has truncated CSRC list")
        return 0, pos, pos
    if n < pos + 4:
        raise ValueError("RTP packet has truncated extension header")
    end = pos + 4 + 4 * ((pkt[pos + 2] << 8) | pkt[pos + 3])
    if n < end:
        raise ValueError("RTP packet has truncated extension block")
    return (pkt[pos] << 8) | pkt[pos + 1], pos + 4, end


def header_size(pkt: bytes | bytearray | memoryview) -> int:
    """Bytes before the payload: 12 + 4·CC, plus 4 + 4·length when the X bit is set."""
    n = len(pkt)
    if n < RTP_HEADER_LENGTH:
        raise ValueError("RTP packet shorter than 12 bytes")
    b0 = pkt[0]
    if b0 >> 6 != 2:
        raise ValueError("RTP version is not 2")
    pos = RTP_HEADER_LENGTH + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        if n < pos + 4:
            raise ValueError("RTP packet has truncated extension header")
        pos += 4 + 4 * ((pkt[pos + 2] << 8) | pkt[pos + 3])
    if n < pos:
        raise ValueError("RTP packet header is truncated")
    return pos


def payload_range(pkt: bytes | bytearray | memoryview) -> tuple[int, int]:
    """(start, end) of the payload with the padding (P bit) removed."""
    start = header_size(pkt)
    end = len(pkt)
    if pkt[0] & 0x20:
        pad = pkt[end - 1] if end > start else 0
        if pad == 0 or pad > end - start:
            raise ValueError("RTP padding length is invalid")
        end -= pad
    return start, end


def extension_offsets(pkt: bytes | bytearray | memoryview) -> dict[int, tuple[int, int]]:
    """Map element id → (offset of its data, data length); ``{}`` without extensions.

    Slow path (allocates a dict).  Unknown profiles give ``{}``.  In the one-byte
    profile, id 15 stops parsing (RFC 8285 §4.2).
    """
    profile, pos, end = _ext_block(pkt)
    out: dict[int, tuple[int, int]] = {}
    if profile == ONE_BYTE_PROFILE:
        while pos < end:
            b = pkt[pos]
            ext_id = b >> 4
            if ext_id == 0:  # padding byte
                pos += 1
                continue
            if ext_id == 15:
                break
            length = (b & 0x0F) + 1
            pos += 1
            if pos + length > end:
                raise ValueError("RTP one-byte header extension element is truncated")
            out[ext_id] = (pos, length)
            pos += length
    elif profile & 0xFFF0 == TWO_BYTE_PROFILE:
        while pos < end:
            ext_id = pkt[pos]
            if ext_id == 0:  # padding byte
                pos += 1
                continue
            if pos + 2 > end:
                raise ValueError("RTP two-byte header extension element is truncated")
            length = pkt[pos + 1]
            pos += 2
            if pos + length > end:
                raise ValueError("RTP two-byte header extension element is truncated")
            out[ext_id] = (pos, length)
            pos += length
    return out


def find_extension(pkt: bytes | bytearray | memoryview, ext_id: int) -> int:
    """Offset of the data of element ``ext_id``, or -1 when absent (once per packet, no dict).

    The C receive path's own function (``sk_ext_find`` in ``media/fastpath.c``)."""
    off = _ext_find(_from_buffer(pkt), len(pkt), ext_id)
    if off == -2:
        raise ValueError("RTP header or header extension block is truncated or malformed")
    return int(off)


def remap_extension_ids(buf: bytearray, table: bytes) -> None:
    """Replace, in place, each element id ``i`` by ``table[i]``.

    A consumer whose negotiated extension ids differ from the producer's renumbers
    the forwarded packet instead of rebuilding it.  ``table`` has 16 entries for
    the one-byte profile; a two-byte packet keeps ids beyond the table unchanged.
    The caller maps ids the consumer doesn't know to an id it did not negotiate
    (receivers ignore those).

    A mapped id of 0 (padding) — or 15 (stop) in the one-byte profile — would corrupt
    the block and raises :class:`ValueError`; the elements before it are already
    renumbered then, so the caller must drop the packet.  (The C receive path's own
    function: ``sk_ext_remap`` in ``media/fastpath.c``.)
    """
    if _ext_remap(_from_buffer(buf, require_writable=True), len(buf), _from_buffer(table), len(table)) < 0:
        raise ValueError("RTP header extension block is malformed, or an id maps to 0 or 15")


def write_abs_send_time(buf: bytearray, offset: int, now_s: float) -> None:
    """Write abs-send-time (24-bit 6.18 fixed-point seconds, wraps every 64 s) at ``offset``."""
    if offset < 0 or offset + 3 > len(buf):
        raise ValueError("abs-send-time offset outside the packet")
    v = int(now_s * _ABS_SEND_TIME_SCALE) & 0xFFFFFF
    buf[offset] = v >> 16
    buf[offset + 1] = (v >> 8) & 0xFF
    buf[offset + 2] = v & 0xFF


def rewrite_header(buf: bytearray, pt: int, seq: int, ts: int, ssrc: int) -> None:
    """Set payload type, sequence number, timestamp and SSRC in place; the marker bit is kept."""
    if len(buf) < RTP_HEADER_LENGTH:
        raise ValueError("RTP packet shorter than 12 bytes")
    buf[1] = (buf[1] & 0x80) | (pt & 0x7F)
    _SEQ_TS_SSRC.pack_into(buf, 2, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc & 0xFFFFFFFF)


def rtx_wrap(pkt: bytes | bytearray, rtx_pt: int, rtx_ssrc: int, rtx_seq: int) -> bytes:
    """RFC 4588 §4 retransmission packet for ``pkt``.

    Same header (CSRCs, extensions, marker, timestamp), padding removed, payload
    type / sequence number / SSRC replaced; payload = original sequence number
    (2 bytes) + original payload.
    """
    start, end = payload_range(pkt)
    out = bytearray(start + 2 + (end - start))
    out[:start] = pkt[:start]
    out[0] &= 0xDF  # clear P
    out[start] = pkt[2]
    out[start + 1] = pkt[3]
    out[start + 2 :] = pkt[start:end]
    ts = (pkt[4] << 24) | (pkt[5] << 16) | (pkt[6] << 8) | pkt[7]
    rewrite_header(out, rtx_pt, rtx_seq, ts, rtx_ssrc)
    return bytes(out)


def rtx_unwrap(pkt: bytes | bytearray, pt: int, ssrc: int) -> bytes:
    """The original packet carried by an RFC 4588 retransmission packet.

    Raises :class:`ValueError` for an RTX packet without the 2-byte original
    sequence number (e.g. padding-only bandwidth probes).
    """
    start, end = payload_range(pkt)
    if end - start < 2:
        raise ValueError("RTX payload lacks the original sequence number")
    out = bytearray(start + (end - start - 2))
    out[:start] = pkt[:start]
    out[0] &= 0xDF
    out[start:] = pkt[start + 2 : end]
    seq = (pkt[start] << 8) | pkt[start + 1]
    ts = (pkt[4] << 24) | (pkt[5] << 16) | (pkt[6] << 8) | pkt[7]
    rewrite_header(out, pt, seq, ts, ssrc)
    return bytes(out)


def read_extension_str(pkt: bytes | bytearray | memoryview, ext_id: int) -> str | None:
    """Value of a string element (MID, RID, repaired RID) or None; slow path for stream discovery."""
    found = extension_offsets(pkt).get(ext_id)
    if found is None:
        return None
    off, length = found
    try:
        return bytes(pkt[off : off + length]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError("RTP header extension string is not UTF-8") from exc


def add_extension(pkt: bytes | bytearray, ext_id: int, length: int) -> tuple[bytearray, int]:
    """A copy of ``pkt`` with a zeroed element ``ext_id`` of ``length`` bytes, and the offset of its data.

    For a value the SFU writes per subscriber (the transport-wide sequence number) into packets
    that arrived without the element.  The element is appended at the end of the extension
    block (padding bytes may precede it, RFC 8285 §4.1), so offsets of the elements already
    there do not move; a packet without extensions gets a one-byte-profile block after its CSRCs.
    One-byte profile: ids 1..14, 1..16 bytes; two-byte profile: ids 1..255, 0..255 bytes.
    """
    profile, pos, end = _ext_block(pkt)
    if profile == 0 or profile == ONE_BYTE_PROFILE:
        if not 1 <= ext_id <= 14 or not 1 <= length <= 16:
            raise ValueError("one-byte header extension element needs id 1..14 and 1..16 bytes")
        element = bytes([(ext_id << 4) | (length - 1)]) + bytes(length)
    elif profile & 0xFFF0 == TWO_BYTE_PROFILE:
        if not 1 <= ext_id <= 255 or not 0 <= length <= 255:
            raise ValueError("two-byte header extension element needs id 1..255 and 0..255 bytes")
        element = bytes([ext_id, length]) + bytes(length)
    else:
        raise ValueError("unknown header extension profile")
    element += bytes(-len(element) % 4)
    if profile == 0:
        out = bytearray(pkt[:pos]) + ONE_BYTE_PROFILE.to_bytes(2, "big") + (len(element) // 4).to_bytes(2, "big")
        data = len(out) + 1
        out += element
        out += pkt[pos:]
        out[0] |= 0x10
        return out, data
    words = (end - pos + len(element)) // 4
    if words > 0xFFFF:
        raise ValueError("header extension block too long")
    out = bytearray(pkt[:end]) + element + pkt[end:]
    out[pos - 2] = words >> 8
    out[pos - 1] = words & 0xFF
    return out, end + (1 if profile == ONE_BYTE_PROFILE else 2)
