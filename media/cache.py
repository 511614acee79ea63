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
"""

from __future__ import annotations


class PacketCache:
    """A ring of the last ``size`` packets of one stream, indexed by RTP sequence number.

    A slot is valid only if it still holds the asked sequence number (not one
    ``size`` packets older or newer) and is not older than ``max_age_s``.
    """

    __slots__ = ("_mask", "_packets", "_seqs", "_times", "max_age_s", "size")

    def __init__(self, size: int = 2048, max_age_s: float = 3.0) -> None:
        if size < 1 or size > 65536:
            raise ValueError("PacketCache size must be in 1..65536")
        self.size: int = 1 << (size - 1).bit_length()
        self.max_age_s: float = max_age_s
        self._mask: int = self.size - 1
        self._seqs: list[int] = [-1] * self.size
        self._packets: list[bytes | None] = [None] * self.size
        self._times: list[float] = [0.0] * self.size

    def put(self, seq: int, pkt: bytes, now_s: float) -> None:
        """Store ``pkt`` sent (or received) at ``now_s`` under ``seq`` (0..65535)."""
        i = seq & self._mask
        self._seqs[i] = seq
        self._packets[i] = pkt
        self._times[i] = now_s

    def get(self, seq: int, now_s: float) -> bytes | None:
        """The packet with ``seq`` if it is still cached and not older than ``max_age_s``."""
        i = seq & self._mask
        if self._seqs[i] != seq or now_s - self._times[i] > self.max_age_s:
            return None
        return self._packets[i]

    def clear(self) -> None:
        """Forget every packet (new source, or the SSRC changed)."""
        size = self.size
        self._seqs[:] = [-1] * size
        self._packets[:] = [None] * size
        self._times[:] = [0.0] * size
