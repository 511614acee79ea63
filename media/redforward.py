"""Turning one producer stream's audio into the form each subscriber negotiated: RED or plain Opus.

A publisher sends Opus either plain or inside RED (RFC 2198, ``media.red``),
and each subscriber negotiated one of the two.  A subscriber that negotiated
what the publisher sends gets the packets as they are (``ProducerStream``
passes them on); for the others one object per producer stream converts each
packet once, whatever the number of subscribers in that form:

* ``RedUnwrapper`` (RED in, plain Opus out: aiortc clients, the recorder)
  hands out the primary block as an Opus packet with the RED packet's header.
  When packets are missing before it and the RED packet carries them as
  redundancy, it first hands out those, rebuilt: sequence number N, timestamp
  the packet's minus the block's offset, no marker.  The newest blocks are the
  packets just before (a browser repeats its last one or two payloads).  A
  late original of a packet already rebuilt is dropped.
* ``RedWrapper`` (plain Opus in, RED out) keeps the last two payloads and
  sends each packet as RED with them as redundant blocks, when they are the
  two packets just before it and their offsets and sizes fit RED's fields.
  Chained after a ``RedUnwrapper`` it *deepens* a browser's RED (Chromium
  repeats one payload) to two for a subscriber on a very lossy link: with one
  copy a fifth of packets lost conceals ~4 % of the audio (both lost), with
  two ~0.8 %.
* ``RedDepth`` decides, per subscriber, when its RED is deepened: from the
  loss its receiver reports show, with hysteresis (two copies cost another
  Opus stream's bitrate, ~32 kbit/s, which a link that loses little should
  not pay), and never on a full path (a cap: the loss is its queue
  overflowing, which another copy only feeds).

Packet-level only: nothing is decoded.  Malformed RED raises ``ValueError``
(the stream drops the packet); no logging.
"""

from __future__ import annotations

from media.red import MAX_BLOCK_LENGTH, MAX_TS_OFFSET, block_count, primary_offset, redundant_block
from media.rtp import payload_range

REDUNDANCY = 2
DEEP_LOSS = 0.08
"""A subscriber whose receiver reports show at least this loss gets RED with two copies..."""
SHALLOW_LOSS = 0.03
SHALLOW_AFTER_S = 10.0
"""...until its loss has stayed below ``SHALLOW_LOSS`` this long."""
"""Previous payloads a wrapped RED packet repeats (browsers repeat one or two)."""
_RECOVERED_RING = 8


class RedUnwrapper:
    """RED → plain Opus for one producer stream, rebuilding lost packets from the redundancy."""

    __slots__ = ("_ring", "_ring_pos", "highest", "highest_ts", "opus_pt", "out", "recovered")

    def __init__(self, opus_pt: int) -> None:
        self.opus_pt = opus_pt
        self.highest = -1
        """Highest sequence number handed out (-1: none yet)."""
        self.highest_ts = 0
        self.out: list[tuple[bytes, int, int]] = []
        """The packets of the last :meth:`unwrap` call as (packet, seq, ts), oldest first (reused)."""
        self.recovered = 0
        """Packets rebuilt from redundancy so far."""
        self._ring = [-1] * _RECOVERED_RING
        self._ring_pos = 0

    def unwrap(self, plain: bytes) -> list[tuple[bytes, int, int]]:
        """The plain Opus packets that ``plain`` (a RED packet) stands for; ``ValueError`` if malformed."""
        out = self.out
        out.clear()
        start, end = payload_range(plain)
        payload = memoryview(plain)[start:end]
        off = primary_offset(payload)
        seq = (plain[2] << 8) | plain[3]
        ts = int.from_bytes(plain[4:8], "big")
        highest = self.highest
        if highest >= 0:
            ahead = (seq - highest) & 0xFFFF
            if ahead == 0 or ahead >= 0x8000:  # a duplicate, or late
                if seq in self._ring:
                    return out  # already rebuilt from a later packet's redundancy
                out.append((self._packet(plain, start, start + off, end, seq, ts, False), seq, ts))
                return out
            missing = ahead - 1
            if missing:
                self._recover(plain, payload, start, seq, ts, missing)
        out.append((self._packet(plain, start, start + off, end, seq, ts, False), seq, ts))
        self.highest = seq
        self.highest_ts = ts
        return out

    def _recover(self, plain: bytes, payload: memoryview, start: int, seq: int, ts: int, missing: int) -> None:
        out = self.out
        blocks = block_count(payload)
        take = min(missing, blocks, REDUNDANCY)
        first_out = len(out)
        for k in range(1, take + 1):  # the newest block is the packet just before
            pt, ts_offset, b_start, b_end = redundant_block(payload, blocks - k)
            rec_ts = (ts - ts_offset) & 0xFFFFFFFF
            after_last = (rec_ts - self.highest_ts) & 0xFFFFFFFF
            if pt != self.opus_pt or ts_offset == 0 or after_last == 0 or after_last >= 0x80000000:
                break
            rec_seq = (seq - k) & 0xFFFF
            pkt = self._packet(plain, start, start + b_start, start + b_end, rec_seq, rec_ts, True)
            out.insert(first_out, (pkt, rec_seq, rec_ts))
            self._ring[self._ring_pos] = rec_seq
            self._ring_pos = (self._ring_pos + 1) % _RECOVERED_RING
            self.recovered += 1

    def _packet(self, plain: bytes, header_end: int, data_start: int, data_end: int,
                seq: int, ts: int, rebuilt: bool) -> bytes:
        """The RTP header ``plain[:header_end]`` (no padding) followed by ``plain[data_start:data_end]``."""
        buf = bytearray(plain[:header_end])
        buf += plain[data_start:data_end]
        buf[0] &= 0xDF  # no padding
        buf[1] = (buf[1] & 0x80) | self.opus_pt
        if rebuilt:
            buf[1] &= 0x7F  # no marker
            buf[2] = seq >> 8
            buf[3] = seq & 0xFF
            buf[4:8] = ts.to_bytes(4, "big")
        return bytes(buf)


class RedWrapper:
    """Plain Opus → RED for one producer stream: each packet with the previous two payloads."""

    __slots__ = ("_history", "opus_pt")

    def __init__(self, opus_pt: int) -> None:
        self.opus_pt = opus_pt
        self._history: list[tuple[int, int, bytes]] = []
        """The last payloads as (seq, ts, payload), oldest first, at most ``REDUNDANCY``."""

    def wrap(self, plain: bytes) -> bytes:
        """``plain`` (an Opus packet) as a RED packet of the same header; ``ValueError`` if malformed."""
        start, end = payload_range(plain)
        seq = (plain[2] << 8) | plain[3]
        ts = int.from_bytes(plain[4:8], "big")
        buf = bytearray(plain[:start])
        buf[0] &= 0xDF  # no padding
        history = self._history
        pt = self.opus_pt
        usable = []
        for h_seq, h_ts, data in history:
            back = (seq - h_seq) & 0xFFFF
            ts_offset = (ts - h_ts) & 0xFFFFFFFF
            if 1 <= back <= REDUNDANCY and 0 < ts_offset <= MAX_TS_OFFSET and len(data) <= MAX_BLOCK_LENGTH:
                usable.append((ts_offset, data))
        for ts_offset, data in usable:
            n = len(data)
            buf += bytes((0x80 | pt, (ts_offset >> 6) & 0xFF, ((ts_offset & 0x3F) << 2) | (n >> 8), n & 0xFF))
        buf.append(pt)
        for _, data in usable:
            buf += data
        primary = plain[start:end]
        buf += primary
        ahead = (seq - history[-1][0]) & 0xFFFF if history else 1
        if 0 < ahead < 0x8000:  # keep the newest payloads (a late packet does not replace them)
            history.append((seq, ts, primary))
            if len(history) > REDUNDANCY:
                del history[0]
        return bytes(buf)


class RedDepth:
    """Whether one RED subscriber gets the publisher's RED as it is or deepened to two copies."""

    __slots__ = ("deep", "_low_since")

    def __init__(self) -> None:
        self.deep = False
        self._low_since: float | None = None

    def update(self, loss: float, now: float, *, congested: bool = False) -> bool:
        """A receiver report's loss fraction (before RED repaired anything) at ``now``, and whether the
        subscriber's path is full (``SendSideEstimator.congested``: a queue, not random loss); True when
        ``deep`` changed.  A full path is never deepened, and a deepened one goes back at once: under a cap
        the loss is the queue overflowing, and another copy only adds to it."""
        if not 0.0 <= loss <= 1.0:
            return False
        if congested:
            if self.deep:
                self.deep, self._low_since = False, None
                return True
            return False
        if not self.deep:
            if loss >= DEEP_LOSS:
                self.deep, self._low_since = True, None
                return True
            return False
        if loss >= SHALLOW_LOSS:
            self._low_since = None
            return False
        if self._low_since is None:
            self._low_since = now
        if now - self._low_since >= SHALLOW_AFTER_S:
            self.deep, self._low_since = False, None
            return True
        return False
