"""What the SFU must know about video payloads: where frames start and which are keyframes.

The SFU never decodes media, but it may only switch a consumer to another source
or simulcast layer at a keyframe (the receiver's decoder has no reference for
anything else), and it asks for one with PLI/FIR until it sees it.  Both
questions are answered from the first bytes of the RTP payload descriptor:

* VP8 (RFC 7741 §4.2-4.3): descriptor ``X R N S R PID``, optional extension
  bytes (I → 7- or 15-bit PictureID, L → TL0PICIDX, T/K → TID/KEYIDX), then the
  VP8 payload header whose P bit (inverse key frame flag) is 0 for key frames.
  Only the first packet of partition 0 (S=1, PID=0) carries that header.
* H.264 (RFC 6184 §5.6-5.8): NAL unit type in the low 5 bits of the first byte;
  single NAL (1-23), STAP-A (24) with 16-bit sizes, FU-A (28) with S/E bits in
  the FU header.  IDR slices (5) and SPS (7) mark a keyframe (browsers send
  SPS+PPS+IDR together).
* VP9 (draft-ietf-payload-vp9): descriptor ``I P L F B E V Z``; a frame that is
  not inter-predicted (P=0) starting in this packet (B=1) is a keyframe.

These run per packet in the forwarding path: no allocation, integer reads only.
Malformed payloads raise :class:`ValueError`.
"""

from __future__ import annotations

_VP8 = "video/vp8"
_H264 = "video/h264"
_VP9 = "video/vp9"

_NAL_IDR = 5
_NAL_SPS = 7
_NAL_STAP_A = 24
_NAL_FU_A = 28


def _vp8_header_offset(payload: bytes | memoryview) -> int:
    """Offset of the VP8 payload header after the payload descriptor."""
    n = len(payload)
    if n < 1:
        raise ValueError("empty VP8 payload")
    pos = 1
    if payload[0] & 0x80:  # X
        if n < 2:
            raise ValueError("truncated VP8 payload descriptor")
        x = payload[1]
        pos = 2
        if x & 0x80:  # I: PictureID, 15 bits when M is set
            if n <= pos:
                raise ValueError("truncated VP8 PictureID")
            pos += 2 if payload[pos] & 0x80 else 1
        if x & 0x40:  # L: TL0PICIDX
            pos += 1
        if x & 0x30:  # T or K: TID/Y/KEYIDX
            pos += 1
    if pos > n:
        raise ValueError("truncated VP8 payload descriptor")
    return pos


def _h264_has_key_nal(payload: bytes | memoryview) -> bool:
    n = len(payload)
    if n < 1:
        raise ValueError("empty H.264 payload")
    nal = payload[0] & 0x1F
    if nal == _NAL_IDR or nal == _NAL_SPS:
        return True
    if nal == _NAL_STAP_A:
        pos = 1
        while pos < n:
            if pos + 2 > n:
                raise ValueError("truncated H.264 STAP-A NAL size")
            size = (payload[pos] << 8) | payload[pos + 1]
            pos += 2
            if size == 0 or pos + size > n:
                raise ValueError("H.264 STAP-A NAL unit size is invalid")
            inner = payload[pos] & 0x1F
            if inner == _NAL_IDR or inner == _NAL_SPS:
                return True
            pos += size
        return False
    if nal == _NAL_FU_A:
        if n < 2:
            raise ValueError("truncated H.264 FU-A header")
        fu = payload[1]
        inner = fu & 0x1F
        return bool(fu & 0x80) and (inner == _NAL_IDR or inner == _NAL_SPS)
    return False


def is_keyframe(mime: str, payload: bytes | memoryview) -> bool:
    """True when this RTP payload starts a keyframe (a switching point).

    ``mime`` is compared case-insensitively ("video/VP8"); audio and unknown
    codecs give False.
    """
    m = mime.lower()
    if m == _VP8:
        if len(payload) < 1:
            raise ValueError("empty VP8 payload")
        b0 = payload[0]
        if not b0 & 0x10 or b0 & 0x07:  # S=1 and PID=0 only
            return False
        pos = _vp8_header_offset(payload)
        if pos >= len(payload):
            raise ValueError("VP8 payload has no payload header")
        return not payload[pos] & 0x01
    if m == _H264:
        return _h264_has_key_nal(payload)
    if m == _VP9:
        if len(payload) < 1:
            raise ValueError("empty VP9 payload")
        b0 = payload[0]
        return not b0 & 0x40 and bool(b0 & 0x08)
    return False


def is_frame_start(mime: str, payload: bytes | memoryview) -> bool:
    """True when this RTP payload begins a frame (H.264: begins a NAL unit).

    VP8: S=1 and PID=0; H.264: single NAL / aggregation packet, or a
    fragmentation unit with the S bit; VP9: B bit.  Audio packets are whole
    frames: True.  Other video codecs: False.
    """
    m = mime.lower()
    if m.startswith("audio/"):
        return True
    if len(payload) < 1:
        raise ValueError("empty video payload")
    if m == _VP8:
        b0 = payload[0]
        return bool(b0 & 0x10) and not b0 & 0x07
    if m == _H264:
        nal = payload[0] & 0x1F
        if 1 <= nal <= 27:  # single NAL, STAP-A/B, MTAP16/24
            return True
        if nal == _NAL_FU_A or nal == 29:  # FU-A / FU-B
            if len(payload) < 2:
                raise ValueError("truncated H.264 FU header")
            return bool(payload[1] & 0x80)
        return False
    if m == _VP9:
        return bool(payload[0] & 0x08)
    return False
