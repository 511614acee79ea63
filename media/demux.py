"""The door of every ICE socket: which datagrams aioice and aiortc may see at all.

Anyone who can reach a media port can send it anything.  aiortc reads the first byte of
whatever aioice queues and ends the DTLS transport on an empty datagram; aioice's STUN parser
raises ``struct.error`` on some malformed attributes.  This module decides, before either
sees a datagram, whether it goes on:

* demultiplexing by the first byte (RFC 7983 section 7): 0-3 STUN, 20-63 DTLS,
  128-191 RTP/RTCP; anything else (empty, ZRTP, TURN channel framing, which the SFU's
  own sockets never carry) is dropped;
* a STUN message needs a whole header, the magic cookie and a length that matches the
  datagram (RFC 8489 section 5).  It is accepted from any address: ICE authenticates
  requests (MESSAGE-INTEGRITY with our password) and matches responses by transaction,
  and an authenticated check from a new address is how ICE learns a peer-reflexive
  address (RFC 8445 section 7.3.1.3), and how consent is checked (RFC 7675);
* DTLS (at least a 13-byte record header) and RTP/RTCP (at least a 12-byte header)
  come only from the remote address of the pair ICE selected, on that pair's socket;
  before a pair is selected, only from the remote address of a pair ICE is checking.

Drops are counted per ICE connection (:func:`dropped`); nothing is logged per datagram.
This module must not parse beyond the header bytes it names, allocate or log on the
accepted path, or know about address policies (:mod:`media.ice`) or SRTP
(:mod:`media.transport`).
"""

from __future__ import annotations

from typing import Any

PASS = 0
MALFORMED = 1
"""Empty, too short for its kind, not a kind the SFU speaks, or a STUN message that does not parse."""
FOREIGN = 2
"""DTLS or RTP/RTCP from an address that is not ICE's selected (or, before one is, a checked) pair."""
OUTSIDE = 3
"""From an address outside the allowed networks (:class:`media.ice.IcePolicy`)."""

STUN_HEADER = 20
DTLS_RECORD_HEADER = 13
RTP_HEADER = 12

_COUNTS = "_sanke_dropped"


def admit(protocol: Any, data: bytes, addr: tuple[Any, ...]) -> int:
    """``PASS`` if ``data`` from ``addr`` on aioice's ``protocol`` may go on, else why not.

    ``protocol`` is an ``aioice.ice.StunProtocol``: its ``receiver`` is the ICE connection
    whose selected pair (``_nominated``) decides who may send DTLS and media."""
    n = len(data)
    if n == 0:
        return MALFORMED
    first = data[0]
    if first < 4:
        if (n < STUN_HEADER or data[4] != 0x21 or data[5] != 0x12 or data[6] != 0xA4 or data[7] != 0x42
                or (data[2] << 8 | data[3]) != n - STUN_HEADER or n & 3):
            return MALFORMED
        return PASS
    if 19 < first < 64:
        if n < DTLS_RECORD_HEADER:
            return MALFORMED
    elif 127 < first < 192:
        if n < RTP_HEADER:
            return MALFORMED
    else:
        return MALFORMED
    connection = protocol.receiver
    pair = connection._nominated.get(protocol.local_candidate.component)
    if pair is not None:
        remote = pair.remote_candidate
        if pair.protocol is protocol and addr[1] == remote.port and addr[0] == remote._network_host:
            return PASS
        return FOREIGN
    for pair in connection._check_list:  # (ICE still checking: a handful of pairs)
        remote = pair.remote_candidate
        if pair.protocol is protocol and addr[1] == remote.port and addr[0] == remote._network_host:
            return PASS
    return FOREIGN


def count(connection: Any, reason: int) -> None:
    """Note one datagram dropped for ``reason`` on an ICE connection."""
    counts = getattr(connection, _COUNTS, None)
    if counts is None:
        counts = [0, 0, 0, 0]
        setattr(connection, _COUNTS, counts)
    counts[reason] += 1


def dropped(connection: Any) -> dict[str, int]:
    """What the door dropped on an ICE connection so far, by reason."""
    counts = getattr(connection, _COUNTS, None) or [0, 0, 0, 0]
    return {"malformed": counts[MALFORMED], "foreign": counts[FOREIGN], "outside": counts[OUTSIDE]}


__all__ = ("FOREIGN", "MALFORMED", "OUTSIDE", "PASS", "admit", "count", "dropped")
