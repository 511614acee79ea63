"""Bandwidth probes: RTP padding-only packets on a consumer's RTX stream, paced at a bitrate.

Before a consumer goes up a simulcast layer, or while its video is paused on a
weak link, the link gate (``media.bwe``) asks for padding at some bitrate for a
short while, to see whether the receiver's bandwidth estimate stays healthy.
This module builds those packets the way libwebrtc does (RFC 3550 padding bit
set, the whole payload padding, the last byte its length; sent on the RTX SSRC
so the receiver counts them for its estimate and then drops them, RFC 4588) and
paces them.  It owns no socket and no clock: :class:`Pacer` says how many
packets are due, the consumer sends them.
"""

from __future__ import annotations

import struct

PADDING_BYTES = 224
"""Padding per packet (libwebrtc's maximum for a padding-only packet); with the header ~250 bytes."""
_HEADER = struct.Struct(">BBHII")
_AST_EXT = struct.Struct(">HHB3s")  # 0xBEDE, one word, id/len, 3-byte abs-send-time
_AST_SCALE = float(1 << 18)


def padding_packet(pt: int, seq: int, ts: int, ssrc: int, *, ast_id: int = 0, now_s: float = 0.0,
                   padding: int = PADDING_BYTES) -> bytes:
    """A padding-only RTP packet: no payload, ``padding`` bytes of padding (the last one = ``padding``).

    With ``ast_id`` (1..14) it carries abs-send-time = ``now_s``, so a receive-side
    estimator (REMB) measures it like the media.
    """
    if not 1 <= padding <= 255:
        raise ValueError("RTP padding is 1..255 bytes")
    if not 0 <= pt <= 127:
        raise ValueError("payload type out of range")
    first = 0xA0  # V=2, P=1
    ext = b""
    if ast_id:
        if not 1 <= ast_id <= 14:
            raise ValueError("one-byte header extension id out of range")
        first |= 0x10  # X
        v = int(now_s * _AST_SCALE) & 0xFFFFFF
        ext = _AST_EXT.pack(0xBEDE, 1, (ast_id << 4) | 2, v.to_bytes(3, "big"))
    head = _HEADER.pack(first, pt & 0x7F, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc & 0xFFFFFFFF)
    return head + ext + bytes(padding - 1) + bytes((padding,))


class Pacer:
    """Spreads ``bps`` of padding packets evenly until ``until_s`` (a token bucket of at most 20 ms)."""

    def __init__(self, bps: int, until_s: float, now_s: float, packet_bytes: int) -> None:
        if packet_bytes <= 0:
            raise ValueError("packet size must be positive")
        self.bps = max(0, bps)
        self.until_s = until_s
        self.packet_bytes = packet_bytes
        self._last = now_s
        self._credit = 0.0
        self.sent_packets = 0

    def active(self, now_s: float) -> bool:
        return self.bps > 0 and now_s < self.until_s

    def due(self, now_s: float) -> int:
        """How many padding packets to send now (0 once the probe is over)."""
        end = min(now_s, self.until_s)
        elapsed = max(0.0, min(end - self._last, 0.02))
        self._last = max(self._last, end)
        self._credit += self.bps / 8.0 * elapsed
        n = int(self._credit // self.packet_bytes)
        self._credit -= n * self.packet_bytes
        self.sent_packets += n
        return n
