"""Transport-wide congestion control feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01), wire format.

A sender that negotiated the header extension ``URI_TRANSPORT_CC`` numbers every RTP packet
of a transport (all SSRCs, retransmissions included) with one 16-bit transport-wide
sequence number; the receiver answers with RTCP RTPFB FMT=15 packets that say, for a range
of those numbers, which arrived and when (``TransportFeedback``).  The sender matches them
with its own send times and feeds a send-side bandwidth estimator.

This module is plain data: ``parse(bytes)`` (raises ``ValueError`` on anything malformed,
never another exception) and ``TransportFeedback.serialize()``.  It knows nothing about
sockets, transports, send histories or estimators.

Layout (after the 4-byte RTCP header, V=2 FMT=15 PT=205)::

    sender SSRC (32) | media SSRC (32)
    base sequence number (16) | packet status count (16)
    reference time (24, signed, 64 ms units) | feedback packet count (8)
    packet chunks (16 bits each), then receive deltas (8 or 16 bits each), zero padding to 32 bits

Chunks: run length ``0 SS LLLLLLLLLLLLL`` (13-bit run of one 2-bit symbol), one-bit status
vector ``1 0`` + 14 symbols (0 = not received, 1 = received, small delta), two-bit status
vector ``1 1`` + 7 symbols (00 not received, 01 small delta: 8 bits unsigned, 10 large or
negative delta: 16 bits signed; 11 is reserved).  Deltas are in 250 µs units; the first one
is relative to the reference time, each next one to the previous received packet.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

URI_TRANSPORT_CC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
RTCP_RTPFB = 205
FMT_TRANSPORT_CC = 15
DELTA_US = 250
"""One receive-delta tick."""
REFERENCE_US = 64_000
"""One reference-time tick."""

NOT_RECEIVED = 0
SMALL_DELTA = 1
LARGE_DELTA = 2

_MAX_RUN = 0x1FFF
_ONE_BIT_CAPACITY = 14
_TWO_BIT_CAPACITY = 7
_HEADER = struct.Struct(">BBHIIHHI")
"""V/P/FMT, PT, length, sender SSRC, media SSRC, base seq, status count, reference time << 8 | fb count."""
MAX_STATUS_COUNT = 0xFFFF


def _symbol(delta: int | None) -> int:
    if delta is None:
        return NOT_RECEIVED
    if 0 <= delta <= 0xFF:
        return SMALL_DELTA
    return LARGE_DELTA


@dataclass(frozen=True)
class TransportFeedback:
    """One feedback packet: ``deltas[i]`` is for sequence number ``base_seq + i`` (mod 2**16).

    ``None`` = not received, else the arrival delta in 250 µs ticks (from the reference time
    for the first received packet, from the previous received packet after that; a large or
    negative delta must fit a signed 16-bit field).
    """

    sender_ssrc: int
    media_ssrc: int
    base_seq: int
    reference_time: int
    """Signed 24-bit, in 64 ms units."""
    fb_count: int
    deltas: tuple[int | None, ...]

    def __post_init__(self) -> None:
        if not 0 <= self.base_seq <= 0xFFFF:
            raise ValueError("base sequence number must fit 16 bits")
        if not -(1 << 23) <= self.reference_time < (1 << 23):
            raise ValueError("reference time must fit a signed 24-bit field")
        if not 0 <= self.fb_count <= 0xFF:
            raise ValueError("feedback packet count must fit 8 bits")
        if len(self.deltas) > MAX_STATUS_COUNT:
            raise ValueError("too many packet statuses")
        for d in self.deltas:
            if d is not None and not -0x8000 <= d <= 0x7FFF:
                raise ValueError("receive delta must fit a signed 16-bit field")

    @property
    def status_count(self) -> int:
        return len(self.deltas)

    def arrivals_us(self) -> Iterator[tuple[int, int | None]]:
        """``(sequence number, arrival time in µs on the receiver's clock, or None if lost)``."""
        t = self.reference_time * REFERENCE_US
        for i, d in enumerate(self.deltas):
            seq = (self.base_seq + i) & 0xFFFF
            if d is None:
                yield seq, None
            else:
                t += d * DELTA_US
                yield seq, t

    def serialize(self) -> bytes:
        """The RTCP packet (header included, padded to 32 bits with the P bit set when padded)."""
        symbols = [_symbol(d) for d in self.deltas]
        chunks = _encode_chunks(symbols)
        body = bytearray()
        for chunk in chunks:
            body += chunk.to_bytes(2, "big")
        for d, s in zip(self.deltas, symbols, strict=True):
            if s == SMALL_DELTA:
                body.append(d)  # type: ignore[arg-type]
            elif s == LARGE_DELTA:
                body += (d & 0xFFFF).to_bytes(2, "big")  # type: ignore[operator]
        pad = (-(len(body) + 20)) % 4
        first = 0x80 | FMT_TRANSPORT_CC
        if pad:
            body += bytes(pad - 1) + bytes([pad])
            first |= 0x20
        length_words = (20 + len(body)) // 4 - 1
        header = _HEADER.pack(first, RTCP_RTPFB, length_words, self.sender_ssrc, self.media_ssrc,
                              self.base_seq, len(self.deltas),
                              ((self.reference_time & 0xFFFFFF) << 8) | self.fb_count)
        return header + bytes(body)


def _encode_chunks(symbols: Sequence[int]) -> list[int]:
    """Greedy chunking (as libwebrtc does): a chunk fills until no encoding can take one more
    symbol; a full chunk of one symbol is a run, else a one-bit vector of 14 (no large delta),
    else a two-bit vector of the first 7 (the rest stays for the next chunk)."""
    chunks: list[int] = []
    pending: list[int] = []
    for s in symbols:
        if not _can_add(pending, s):
            _emit_full(pending, chunks)
        pending.append(s)
    if pending:
        if all(x == pending[0] for x in pending):
            chunks.append(_run_chunk(pending[0], len(pending)))
        elif len(pending) <= _TWO_BIT_CAPACITY:
            chunks.append(_two_bit_chunk(pending))
        else:
            chunks.append(_one_bit_chunk(pending))
    return chunks


def _can_add(pending: list[int], s: int) -> bool:
    n = len(pending)
    if n < _TWO_BIT_CAPACITY:
        return True
    if n < _ONE_BIT_CAPACITY and s != LARGE_DELTA and LARGE_DELTA not in pending:
        return True
    return n < _MAX_RUN and all(x == s for x in pending)


def _emit_full(pending: list[int], chunks: list[int]) -> None:
    if all(x == pending[0] for x in pending):
        chunks.append(_run_chunk(pending[0], len(pending)))
        pending.clear()
    elif len(pending) == _ONE_BIT_CAPACITY and LARGE_DELTA not in pending:
        chunks.append(_one_bit_chunk(pending))
        pending.clear()
    else:
        chunks.append(_two_bit_chunk(pending[:_TWO_BIT_CAPACITY]))
        del pending[:_TWO_BIT_CAPACITY]


def _run_chunk(symbol: int, length: int) -> int:
    return (symbol << 13) | length


def _one_bit_chunk(symbols: Sequence[int]) -> int:
    chunk = 0x8000
    for i, s in enumerate(symbols):
        chunk |= s << (13 - i)
    return chunk


def _two_bit_chunk(symbols: Sequence[int]) -> int:
    chunk = 0xC000
    for i, s in enumerate(symbols):
        chunk |= s << (12 - 2 * i)
    return chunk


def parse(data: bytes | bytearray | memoryview) -> TransportFeedback:
    """One RTPFB FMT=15 packet (exactly ``data``, as its length field says); ``ValueError`` if malformed."""
    data = bytes(data)
    n = len(data)
    if n < 20:
        raise ValueError("transport-cc feedback shorter than 20 bytes")
    first, pt, length_words, sender, media, base, count, ref_fb = _HEADER.unpack_from(data)
    if first >> 6 != 2:
        raise ValueError("RTCP version is not 2")
    if pt != RTCP_RTPFB or first & 0x1F != FMT_TRANSPORT_CC:
        raise ValueError("not a transport-cc feedback packet")
    if (length_words + 1) * 4 != n:
        raise ValueError("transport-cc feedback length does not match its header")
    end = n
    if first & 0x20:
        pad = data[-1]
        if pad == 0 or pad > n - 20:
            raise ValueError("transport-cc feedback padding is invalid")
        end -= pad
    reference = ref_fb >> 8
    if reference & 0x800000:
        reference -= 1 << 24
    symbols: list[int] = []
    pos = 20
    while len(symbols) < count:
        if pos + 2 > end:
            raise ValueError("transport-cc feedback: packet chunks truncated")
        chunk = (data[pos] << 8) | data[pos + 1]
        pos += 2
        left = count - len(symbols)
        if not chunk & 0x8000:
            symbol = (chunk >> 13) & 0x3
            run = chunk & _MAX_RUN
            if symbol == 3:
                raise ValueError("transport-cc feedback: reserved status symbol")
            if run == 0:
                raise ValueError("transport-cc feedback: empty run")
            symbols.extend([symbol] * min(run, left))
        elif not chunk & 0x4000:
            for i in range(min(_ONE_BIT_CAPACITY, left)):
                symbols.append((chunk >> (13 - i)) & 1)
        else:
            for i in range(min(_TWO_BIT_CAPACITY, left)):
                symbol = (chunk >> (12 - 2 * i)) & 0x3
                if symbol == 3:
                    raise ValueError("transport-cc feedback: reserved status symbol")
                symbols.append(symbol)
    deltas: list[int | None] = []
    for symbol in symbols:
        if symbol == NOT_RECEIVED:
            deltas.append(None)
        elif symbol == SMALL_DELTA:
            if pos + 1 > end:
                raise ValueError("transport-cc feedback: receive deltas truncated")
            deltas.append(data[pos])
            pos += 1
        else:
            if pos + 2 > end:
                raise ValueError("transport-cc feedback: receive deltas truncated")
            d = (data[pos] << 8) | data[pos + 1]
            deltas.append(d - 0x10000 if d & 0x8000 else d)
            pos += 2
    if end - pos > 3:
        raise ValueError("transport-cc feedback has trailing bytes")
    return TransportFeedback(sender_ssrc=sender, media_ssrc=media, base_seq=base, reference_time=reference,
                             fb_count=ref_fb & 0xFF, deltas=tuple(deltas))


def feedback_packets(compound: bytes | bytearray | memoryview) -> list[bytes]:
    """The RTPFB FMT=15 packets of a compound RTCP datagram (each exactly as long as its header says).

    Walks the compound by the length fields only; stops at the first malformed header (what
    came before is returned).  ``parse`` judges each packet's content.
    """
    out: list[bytes] = []
    pos = 0
    n = len(compound)
    while pos + 4 <= n:
        first = compound[pos]
        if first >> 6 != 2:
            break
        length = (((compound[pos + 2] << 8) | compound[pos + 3]) + 1) * 4
        if pos + length > n:
            break
        if compound[pos + 1] == RTCP_RTPFB and first & 0x1F == FMT_TRANSPORT_CC:
            out.append(bytes(compound[pos:pos + length]))
        pos += length
    return out


def build_feedback(sender_ssrc: int, media_ssrc: int, base_seq: int, arrivals_us: Sequence[int | None],
                   fb_count: int) -> TransportFeedback:
    """A feedback for ``base_seq + i`` arrived at ``arrivals_us[i]`` (receiver clock, µs; None = lost).

    The reference time is the first arrival rounded down to 64 ms; deltas are rounded to 250 µs
    against the running rounded time, so rounding errors do not add up.  Arrivals must be
    close enough that every delta fits 16 bits (±8.19 s), else ``ValueError``; at least one
    packet must have arrived.
    """
    first = next((a for a in arrivals_us if a is not None), None)
    if first is None:
        raise ValueError("a feedback needs at least one received packet")
    reference = first // REFERENCE_US
    t_ticks = reference * (REFERENCE_US // DELTA_US)
    deltas: list[int | None] = []
    for a in arrivals_us:
        if a is None:
            deltas.append(None)
            continue
        ticks = a // DELTA_US
        deltas.append(ticks - t_ticks)
        t_ticks = ticks
    reference = ((reference + (1 << 23)) % (1 << 24)) - (1 << 23)
    return TransportFeedback(sender_ssrc=sender_ssrc, media_ssrc=media_ssrc, base_seq=base_seq & 0xFFFF,
                             reference_time=reference, fb_count=fb_count & 0xFF, deltas=tuple(deltas))
