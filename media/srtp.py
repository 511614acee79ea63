"""SRTP in C: protect-and-send for one subscriber transport, and unprotect for what a transport receives.

``pylibsrtp.Session.protect`` copies the packet into its own buffer, protects it
and returns a new ``bytes``; the SFU would then build a ``bytearray`` per
subscriber to rewrite the header, and asyncio's ``sendto`` checks and sometimes
copies again.  ``SrtpWriter`` owns one ``sk_writer`` (``media/fastpath.c``): the
transport's SRTP context, its socket and the remote address, and one buffer in
which a packet is copied, patched, protected in place by libsrtp and sent with
one ``sendto``.  Consumers point at this writer; ``media.consumer`` forwards a
packet to all of a stream's consumers in one C call.

A writer exists for the transport's whole life: it is *opened* when DTLS is up
(the SRTP context and the selected ICE pair's socket are known) and *closed* with
the transport, so the consumers' C pointers to it never dangle.  The Python
object keeps the libsrtp context alive while it is open, and sends on its own
duplicate of the socket's descriptor: if aioice closes the socket first, the
number cannot be reused under us by some other socket (a database connection,
say) that would then receive SRTP.

Everything runs on the worker's event-loop thread, so one buffer per transport
is safe: a packet is fully sent before the next one is prepared.

When the subscriber negotiated transport-cc (``twcc_id``), every RTP packet the writer sends
carries its next transport-wide sequence number, and ``sent_record`` finds the send time and
size of a number again when the subscriber's feedback arrives (``media/transportcc.py``).
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import pylibsrtp
from pylibsrtp._binding import ffi as srtp_ffi
from pylibsrtp._binding import lib as srtp_lib

from media._fastpath import ffi, lib
from media.rtp import add_extension, find_extension

MAX_PACKET = 1500
TWCC_RING = int(lib.SK_TWCC_RING)

lib.sk_init(*(int(srtp_ffi.cast("uintptr_t", srtp_ffi.addressof(srtp_lib, name)))
              for name in ("srtp_protect", "srtp_protect_rtcp", "srtp_unprotect", "srtp_unprotect_rtcp")))


class SrtpReader:
    """Unprotects what one transport receives with one SRTP session (``sk_reader``).

    ``unprotect``/``unprotect_rtcp`` give the plain packet as ``bytes``, or None when libsrtp
    refuses it (authentication, replay) or it is too long; refusals are counted in ``failed``.
    The hot path calls ``lib.sk_unprotect`` and ``ffi.unpack`` on ``c``/``buf`` itself
    (``media/transport.py``): two C calls, no Python frame. The reader keeps the libsrtp
    context alive while open."""

    __slots__ = ("c", "buf", "_srtp")

    def __init__(self) -> None:
        self.c = ffi.new("sk_reader *")
        self.buf = ffi.cast("char *", self.c.buf)
        """The plain packet after an unprotect (``ffi.unpack(buf, n)``)."""
        self._srtp: Any = None

    def open(self, session: pylibsrtp.Session) -> None:
        """Unprotect with ``session`` (an inbound one) from now on."""
        srtp = session._srtp  # keeps pylibsrtp's gc handle (and so the libsrtp context) alive with us
        self.c.srtp = int(srtp_ffi.cast("uintptr_t", srtp[0]))
        self._srtp = srtp

    def close(self) -> None:
        self.c.srtp = 0
        self._srtp = None

    @property
    def is_open(self) -> bool:
        return self._srtp is not None

    @property
    def failed(self) -> int:
        return int(self.c.failed)

    def unprotect(self, packet: bytes) -> bytes | None:
        n = lib.sk_unprotect(self.c, packet, len(packet), 0)
        return ffi.unpack(self.buf, n) if n > 0 else None

    def unprotect_rtcp(self, packet: bytes) -> bytes | None:
        n = lib.sk_unprotect(self.c, packet, len(packet), 1)
        return ffi.unpack(self.buf, n) if n > 0 else None


class SrtpWriter:
    """Protects with one SRTP session and writes to one socket address."""

    __slots__ = ("c", "_srtp", "_fd", "_twcc_id")

    def __init__(self) -> None:
        self.c = ffi.new("sk_writer *")
        """The C writer the transport's consumers send through (``sk_sink.writer``)."""
        self._srtp: Any = None
        self._fd = -1
        self._twcc_id = 0

    def open(self, session: pylibsrtp.Session, sock: socket.socket, addr: tuple[Any, ...]) -> None:
        """Send with ``session`` from ``sock`` to ``addr`` (host, port) from now on."""
        self.close()
        srtp = session._srtp  # keeps pylibsrtp's gc handle (and so the libsrtp context) alive with us
        ctx = int(srtp_ffi.cast("uintptr_t", srtp[0]))
        fd = os.dup(sock.fileno())
        if lib.sk_writer_open(self.c, ctx, fd, str(addr[0]).encode(), int(addr[1])) != 0:
            os.close(fd)
            raise ValueError(f"not an IP address: {addr[0]!r}")
        self._srtp = srtp
        self._fd = fd

    def close(self) -> None:
        """Stop sending (the transport is closing): consumers still attached send nothing."""
        lib.sk_writer_close(self.c)
        self._srtp = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)

    @property
    def is_open(self) -> bool:
        return self._srtp is not None

    @property
    def sent_packets(self) -> int:
        return int(self.c.sent_packets)

    @property
    def sent_bytes(self) -> int:
        return int(self.c.sent_bytes)

    @property
    def dropped(self) -> int:
        """Packets not sent: protect failed or the socket refused them (full buffer), as UDP drops."""
        return int(self.c.dropped)

    @property
    def twcc_id(self) -> int:
        """The transport-cc header extension id the subscriber negotiated (0: none, nothing is stamped)."""
        return self._twcc_id

    @twcc_id.setter
    def twcc_id(self, value: int) -> None:
        self._twcc_id = value
        self.c.twcc_on = 1 if value else 0

    def send_rtp(self, plain: bytes | bytearray, now: float | None = None) -> int:
        """Protect and send a plain RTP packet that is already rewritten (retransmissions, padding
        probes); bytes sent.

        With transport-cc on, the packet gets the next transport-wide sequence number (its
        element is added when missing); ``now`` (``time.monotonic()``, the fan-out's clock, by
        default) is the send time recorded for it."""
        offset = -1
        if self._twcc_id:
            if now is None:
                now = time.monotonic()
            try:
                offset = find_extension(plain, self._twcc_id)
                if offset < 0:
                    plain, offset = add_extension(plain, self._twcc_id, 2)
            except ValueError:
                offset = -1
        if len(plain) > MAX_PACKET:
            return 0
        return int(lib.sk_writer_send_rtp(self.c, ffi.from_buffer(plain), len(plain), offset, now or 0.0))

    def sent_record(self, seq: int, now: float) -> tuple[float, int] | None:
        """(send time, bytes) of transport-wide sequence number ``seq`` if it is still in the ring
        and was sent within the last 30 s of ``now`` (same clock as the send times)."""
        rec = self.c.twcc_ring[seq & (TWCC_RING - 1)]
        size = rec.size
        if not size or rec.seq != seq:
            return None
        now_us = int(now * 1e6)
        age_us = (now_us - rec.send_us) & 0xFFFFFFFF
        if age_us > 30_000_000:
            return None
        return (now_us - age_us) / 1e6, size

    def send_rtcp(self, plain: bytes) -> int:
        """Protect a compound RTCP packet and send it; bytes sent."""
        if len(plain) > MAX_PACKET:
            return 0
        return int(lib.sk_writer_send(self.c, ffi.from_buffer(plain), len(plain), 1))
