"""SRTP protect-and-send without a Python object per packet.

``pylibsrtp.Session.protect`` copies the packet into its own buffer, protects
it and returns a new ``bytes``; the SFU would then have built a ``bytearray``
per subscriber to rewrite the header, and asyncio's ``sendto`` checks and
sometimes copies again.  Forwarding one packet to 20 subscribers would make 60
objects.  ``SrtpWriter`` keeps one C buffer per transport: the plain packet is
copied into it, the header is patched *in that buffer* (sequence number,
timestamp, SSRC, payload type, extension ids), libsrtp protects it in place and
the datagram socket sends a view of it.  The only per-packet allocation left is
the small memoryview slice handed to ``sendto``.

Everything runs on the worker's event loop thread, so one buffer per transport
is safe: it is fully used (copy, patch, protect, send) before the next packet.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

import pylibsrtp
from pylibsrtp._binding import ffi, lib

MAX_PACKET = 1500
SRTP_TRAILER = 148
"""libsrtp's maximum trailer (auth tag + MKI), as pylibsrtp reserves it."""

_HEADER = struct.Struct(">HII")
_protect = lib.srtp_protect
"""Sequence number, timestamp, SSRC: bytes 2..12 of every RTP header."""


class SrtpWriter:
    """Protects with one SRTP session and writes to one socket address."""

    __slots__ = ("_srtp", "_ctx", "_cdata", "_mv", "_len_p", "_sock", "_addr", "sent_packets", "sent_bytes",
                 "dropped")

    def __init__(self, session: pylibsrtp.Session, sock: socket.socket, addr: tuple[Any, ...]) -> None:
        self._srtp = session._srtp  # keeps the gc handle (and so the context) alive with us
        self._ctx = session._srtp[0]
        self._cdata = ffi.new("char[]", MAX_PACKET + SRTP_TRAILER)
        self._mv = memoryview(ffi.buffer(self._cdata))
        self._len_p = ffi.new("int *")
        self._sock = sock
        self._addr = addr
        self.sent_packets = 0
        self.sent_bytes = 0
        self.dropped = 0
        """Packets the socket refused (full send buffer): UDP semantics, counted, not retried."""

    @property
    def buffer(self) -> memoryview:
        """The packet being prepared: write the plain RTP at offset 0, patch it, then ``send_rtp(n)``."""
        return self._mv

    def load(self, plain: bytes | bytearray | memoryview) -> int:
        """Copy a plain packet into the buffer; returns its length (0 if it does not fit)."""
        n = len(plain)
        if n > MAX_PACKET:
            return 0
        self._mv[:n] = plain
        return n

    def patch(self, marker_pt: int, seq: int, ts: int, ssrc: int) -> None:
        """Rewrite byte 1 (marker + payload type) and sequence/timestamp/SSRC of the loaded packet."""
        mv = self._mv
        mv[1] = marker_pt
        _HEADER.pack_into(mv, 2, seq, ts, ssrc)

    def forward(self, plain: bytes | bytearray, marker_pt: int, seq: int, ts: int, ssrc: int) -> int:
        """The hot path in one call: load, patch the header, protect, send; returns the bytes sent (0: dropped)."""
        n = len(plain)
        if n > MAX_PACKET:
            return 0
        mv = self._mv
        mv[:n] = plain
        mv[1] = marker_pt
        _HEADER.pack_into(mv, 2, seq, ts, ssrc)
        len_p = self._len_p
        len_p[0] = n
        if _protect(self._ctx, self._cdata, len_p) != 0:
            self.dropped += 1
            return 0
        n = len_p[0]
        try:
            self._sock.sendto(mv[:n], self._addr)
        except OSError:  # BlockingIOError included: a full socket buffer drops, as UDP does
            self.dropped += 1
            return 0
        self.sent_packets += 1
        self.sent_bytes += n
        return n

    def send_rtp(self, n: int) -> None:
        """Protect the ``n`` bytes in the buffer as RTP and send them."""
        self._len_p[0] = n
        if _protect(self._ctx, self._cdata, self._len_p) != 0:
            self.dropped += 1
            return
        self._send(self._len_p[0])

    def send_rtcp(self, plain: bytes) -> None:
        """Protect a compound RTCP packet and send it (low rate: one copy is fine)."""
        n = self.load(plain)
        if n == 0:
            return
        self._len_p[0] = n
        if lib.srtp_protect_rtcp(self._srtp[0], self._cdata, self._len_p) != 0:
            self.dropped += 1
            return
        self._send(self._len_p[0])

    def send_plain_rtp(self, plain: bytes | bytearray) -> None:
        """Load, protect and send a packet that is already rewritten (retransmissions)."""
        n = self.load(plain)
        if n:
            self.send_rtp(n)

    def _send(self, n: int) -> None:
        try:
            self._sock.sendto(self._mv[:n], self._addr)
        except (BlockingIOError, InterruptedError):
            self.dropped += 1
            return
        except OSError:
            self.dropped += 1
            return
        self.sent_packets += 1
        self.sent_bytes += n
