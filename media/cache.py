"""Recently sent packets by sequence number, to answer NACKs with retransmissions.

A receiver that misses a packet sends a generic NACK (RFC 4585 §6.2.1); the SFU
answers it from this cache instead of forwarding the NACK to the publisher,
which saves one round trip over what is usually the worse link.

How long to keep packets: a NACK arrives at the earliest one receiver RTT after
the packet was sent, plus the receiver's NACK scheduling delay (it waits for
reordering, then repeats the NACK about once per RTT).  Rural classroom links
over 4G/satellite see RTTs of 300-800 ms, so a retransmission must still be
possible a second or more after sending; the default ``max_age_s`` of 3 s
covers two or three NACK rounds.  Older packets are useless anyway: the
receiver's jitter buffer has given up on them and asks for a keyframe instead.

Why a power-of-two ring: the slot is ``seq & mask`` — one AND, no modulo, no
dict, no per-packet allocation — and because 65536 is a multiple of the size,
sequence-number wrap-around keeps consecutive packets in consecutive slots.
2048 slots hold about 3 s of a 2.5 Mbit/s video stream (≈ 250 packets/s).

The ring is C memory (``sk_cache`` in ``media/fastpath.c``): a producer stream's in-order
receive path stores packets in it without Python.  The slots index an arena, a ring of bytes
(1 MiB by default: 3 s of 2.8 Mbit/s), so a slot costs its packet's bytes, not a full MTU; a
packet whose bytes were written over is no longer answered, whatever its age.
"""

from __future__ import annotations

from media._fastpath import ffi, lib

_put = lib.sk_cache_put
_get = lib.sk_cache_get
_buffer = ffi.buffer

DEFAULT_ARENA = 1 << 20
RECV_MAX = 4096
"""The longest packet kept (``SK_RECV_MAX``)."""


class PacketCache:
    """A ring of the last ``size`` packets of one stream, indexed by RTP sequence number.

    A slot is valid only if it still holds the asked sequence number (not one
    ``size`` packets older or newer), is not older than ``max_age_s`` and its bytes
    are still in the arena (``arena`` bytes, the newest kept).
    """

    __slots__ = ("_arena", "_out", "_slots", "c", "max_age_s", "size")

    def __init__(self, size: int = 2048, max_age_s: float = 3.0, arena: int = DEFAULT_ARENA) -> None:
        if size < 1 or size > 65536:
            raise ValueError("PacketCache size must be in 1..65536")
        if arena < RECV_MAX:
            raise ValueError(f"PacketCache arena must hold {RECV_MAX} bytes at least")
        self.size: int = 1 << (size - 1).bit_length()
        self.max_age_s: float = max_age_s
        self._slots = ffi.new("sk_cache_slot[]", self.size)
        self._arena = ffi.new("uint8_t[]", arena)
        self._out = ffi.new("uint8_t[]", RECV_MAX)
        self.c = ffi.new("sk_cache *")
        """The C ring (the receive path in C puts packets here)."""
        lib.sk_cache_init(self.c, self._slots, self.size, self._arena, arena, max_age_s)

    def put(self, seq: int, pkt: bytes | bytearray, now_s: float) -> None:
        """Store ``pkt`` sent (or received) at ``now_s`` under ``seq`` (0..65535)."""
        _put(self.c, seq, pkt, len(pkt), now_s)

    def get(self, seq: int, now_s: float) -> bytes | None:
        """The packet with ``seq`` if it is still cached and not older than ``max_age_s``."""
        n = _get(self.c, seq, now_s, self._out)
        return _buffer(self._out, n)[:] if n >= 0 else None

    def clear(self) -> None:
        """Forget every packet (new source, or the SSRC changed)."""
        lib.sk_cache_clear(self.c)
