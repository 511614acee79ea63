"""RED (RFC 2198) audio payloads: what they carry and how to build one.

A RED payload is a list of block headers followed by the blocks' data::

    redundant block header (4 bytes): F=1 | block PT (7) | timestamp offset (14) | block length (10)
    ...
    primary block header   (1 byte):  F=0 | block PT (7)
    redundant data ..., primary data

Browsers send Opus in RED with the previous one or two Opus payloads repeated
(oldest first), so a receiver that lost packet N finds N's payload in N+1.
The primary block runs to the end of the payload; a redundant block's timestamp
is the RTP packet's timestamp minus its offset.

This module is the wire format only (plain data, ``parse(bytes)``): the SFU's
forwarding of RED (``media.redforward``) uses the allocation-free helpers
:func:`primary_offset`, :func:`block_count` and :func:`set_block_payload_type`
per packet.  Malformed payloads raise :class:`ValueError`, nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

MAX_TS_OFFSET = (1 << 14) - 1
"""Largest timestamp offset a redundant block header can carry."""
MAX_BLOCK_LENGTH = (1 << 10) - 1
"""Largest redundant block a header can describe."""


@dataclass
class RedBlock:
    """One redundant block: an earlier payload, ``ts_offset`` RTP ticks before the packet's timestamp."""

    payload_type: int
    ts_offset: int
    data: bytes


@dataclass
class RedPayload:
    """A parsed RED payload: the primary block and the redundant ones, oldest first."""

    payload_type: int
    """The primary block's payload type (the Opus payload type)."""
    primary: bytes
    redundant: list[RedBlock] = field(default_factory=list)


def _headers_end(data: bytes | bytearray | memoryview) -> tuple[int, int, int]:
    """(offset of the first data block, number of redundant blocks, their total length); ``ValueError``."""
    n = len(data)
    pos = 0
    blocks = 0
    total = 0
    while True:
        if pos >= n:
            raise ValueError("RED payload ends inside its block headers")
        b0 = data[pos]
        if not b0 & 0x80:
            pos += 1
            break
        if pos + 4 > n:
            raise ValueError("truncated RED block header")
        total += ((data[pos + 2] & 0x03) << 8) | data[pos + 3]
        blocks += 1
        pos += 4
    if pos + total > n:
        raise ValueError("RED block lengths exceed the payload")
    return pos, blocks, total


def primary_offset(data: bytes | bytearray | memoryview) -> int:
    """Where the primary block's data starts in a RED payload; ``ValueError`` if malformed."""
    pos, _, total = _headers_end(data)
    return pos + total


def block_count(data: bytes | bytearray | memoryview) -> int:
    """Number of redundant blocks; ``ValueError`` if malformed."""
    return _headers_end(data)[1]


def redundant_block(data: bytes | bytearray | memoryview, index: int) -> tuple[int, int, int, int]:
    """Redundant block ``index`` (0 = oldest) as (payload type, ts offset, data start, data end).

    ``data`` must have passed :func:`primary_offset` (or :func:`parse`); ``IndexError`` is never
    raised: an index out of range is a ``ValueError``.
    """
    pos, blocks, _ = _headers_end(data)
    if not 0 <= index < blocks:
        raise ValueError("no such RED block")
    start = pos
    for i in range(index):
        h = 4 * i
        start += ((data[h + 2] & 0x03) << 8) | data[h + 3]
    h = 4 * index
    length = ((data[h + 2] & 0x03) << 8) | data[h + 3]
    ts_offset = (data[h + 1] << 6) | (data[h + 2] >> 2)
    return data[h] & 0x7F, ts_offset, start, start + length


def set_block_payload_type(buf: bytearray, start: int, payload_type: int) -> None:
    """Rewrite every block's payload type of the RED payload at ``buf[start:]`` in place.

    The SFU forwards a publisher's RED to a subscriber whose Opus payload type differs.
    ``buf`` must hold a well-formed payload (checked by :func:`primary_offset` first).
    """
    pos = start
    pt = payload_type & 0x7F
    while True:
        b0 = buf[pos]
        buf[pos] = (b0 & 0x80) | pt
        if not b0 & 0x80:
            return
        pos += 4


def parse(data: bytes | bytearray | memoryview) -> RedPayload:
    """A RED payload as plain data; ``ValueError`` if malformed."""
    pos, blocks, total = _headers_end(data)
    redundant: list[RedBlock] = []
    start = pos
    for i in range(blocks):
        h = 4 * i
        length = ((data[h + 2] & 0x03) << 8) | data[h + 3]
        ts_offset = (data[h + 1] << 6) | (data[h + 2] >> 2)
        redundant.append(RedBlock(data[h] & 0x7F, ts_offset, bytes(data[start:start + length])))
        start += length
    return RedPayload(data[pos - 1] & 0x7F, bytes(data[pos + total:]), redundant)


def build(payload_type: int, primary: bytes | bytearray | memoryview,
          redundant: Sequence[tuple[int, int, bytes | bytearray | memoryview]] = ()) -> bytes:
    """A RED payload: ``redundant`` as (payload type, ts offset, data), oldest first, then ``primary``.

    ``ValueError`` if a payload type, offset or length does not fit its field.
    """
    if not 0 <= payload_type <= 127:
        raise ValueError("payload type out of range")
    out = bytearray()
    for pt, ts_offset, data in redundant:
        if not 0 <= pt <= 127:
            raise ValueError("payload type out of range")
        if not 0 <= ts_offset <= MAX_TS_OFFSET:
            raise ValueError("RED timestamp offset out of range")
        if len(data) > MAX_BLOCK_LENGTH:
            raise ValueError("RED block too long")
        out += bytes((0x80 | pt, (ts_offset >> 6) & 0xFF, ((ts_offset & 0x3F) << 2) | (len(data) >> 8),
                      len(data) & 0xFF))
    out.append(payload_type)
    for _, _, data in redundant:
        out += data
    out += primary
    return bytes(out)


def to_bytes(payload: RedPayload) -> bytes:
    """The wire form of a parsed payload (``build`` of its fields)."""
    return build(payload.payload_type, payload.primary,
                 [(b.payload_type, b.ts_offset, b.data) for b in payload.redundant])
