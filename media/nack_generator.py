"""Receive-side NACK generation: which of a publisher's packets the SFU asks for again, and when.

A packet lost on a publisher's uplink is lost for every subscriber, and each of
them would ask the SFU for it, and the SFU, not having it, for a keyframe.  So
the SFU repairs the uplink first, as a receiver does (libwebrtc's NACK module,
mediasoup's ``NackGenerator``): :class:`NackGenerator` follows one incoming
stream (one SSRC, one simulcast layer) and

* tracks its highest sequence number (extended across the 16-bit wrap);
* on a gap records each missing sequence number (at most ``MAX_PENDING``; a gap
  of more than ``MAX_GAP`` packets, or more missing than that, asks for a
  keyframe instead and forgets them);
* removes an entry when its packet arrives late or unwrapped from RTX
  (``recovered``), and measures the publisher's RTT from the first NACK to the
  RTX that answers it (RFC 3550 reports cannot give it: a publisher only
  sends, so its SRs carry no report block about us);
* :meth:`due` lists the entries to NACK now: first after ``REORDER_WAIT_S``
  (a packet merely reordered arrives within it), then every
  ``max(RTT, MIN_RETRY_S)``, at most ``MAX_RETRIES`` times and for at most
  ``MAX_AGE_S`` (past that a keyframe is the cheaper repair; a subscriber's
  NACK that then misses the cache asks for it, ``media/consumer.py``);
* :func:`pack_nack` writes the RTCP generic NACK (RFC 4585 §6.2.1, PID/BLP);
* :func:`nack_round` gathers what is due on every stream of one transport (a
  client's or a pipe's) into one RTCP compound and says when to look again.

State is fixed-size (rings keyed by ``seq & mask``); :meth:`update` runs per
packet and allocates nothing on the in-order path.  This module only keeps state
and decides; the transport sends (``media/transport.py``) and the producer
stream feeds it (``media/producer.py``).  No logging.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any, Protocol

from media._fastpath import ffi

RING_SIZE = 2048
"""Slots of the missing-packet ring (a power of two, more than ``MAX_PENDING``)."""
MAX_PENDING = 1000
"""Missing packets tracked at most; beyond that a keyframe is asked for and the list cleared."""
MAX_GAP = 1000
"""A jump of more packets than this is not NACKed: a keyframe is asked for instead."""
REORDER_WAIT_S = 0.015
"""A missing packet is first NACKed this long after the gap was seen (reordering is not loss)."""
MIN_RETRY_S = 0.02
"""Floor of the interval between two NACKs of the same packet."""
DEFAULT_RTT_S = 0.1
"""The retry interval until an RTX has answered a NACK (the publisher's RTT is not known before)."""
MAX_RETRIES = 10
"""A packet is NACKed at most this many times."""
MAX_AGE_S = 1.0
"""A packet missing for longer is given up (the packet caches hold about a second; the frame is late anyway)."""
FORWARD_BEHIND = 100
"""A recovered packet more than this many sequence numbers behind the newest is cached but not
forwarded: the fan-out's rewriter (``SK_MAX_MISORDER`` in ``media/fastpath.c``) would take two
such packets in a row for a restarted source; subscribers that miss it get it on their NACK."""
MAX_NACK_ITEMS = 256
"""Sequence numbers NACKed per stream and tick at most (keeps one RTCP packet under the MTU)."""
RTT_SAMPLES = 8
"""The RTT is the smallest of the last few first-NACK-to-RTX times (a lost NACK or RTX only adds)."""

FORWARD = 0
"""``update``: forward the packet (in order, or nothing to do)."""
SCHEDULE = 1
"""``update``: forward it; a gap opened (or a keyframe is wanted), so NACKs are due soon."""
CACHE_ONLY = 2
"""``update``: a recovered packet too far behind to forward; keep it in the cache."""
DROP = 3
"""``update``: an RTX packet of something not missing (a duplicate answer, or a probe)."""

_EXT_BASE = 1 << 24
"""The first packet's extended sequence number is its own plus this (extended numbers stay positive)."""
_HEADER = struct.Struct(">BBHII")
_FCI = struct.Struct(">HH")
RTCP_RTPFB = 205
NACK_FMT = 1


class NackGenerator:
    """The missing packets of one incoming stream, and when each is NACKed."""

    __slots__ = (
        "_first",
        "_first_nack",
        "_h",
        "_last_nack",
        "_mask",
        "_oldest",
        "_rtt",
        "_rtt_next",
        "_seq",
        "_tries",
        "given_up",
        "keyframe_wanted",
        "keyframes",
        "nacks_sent",
        "next_due",
        "pending",
        "recovered",
        "rtt_s",
    )

    def __init__(self, size: int = RING_SIZE, highest: Any = None) -> None:
        if size <= MAX_PENDING or size > 32768 or size & (size - 1):
            raise ValueError("NackGenerator size must be a power of two above MAX_PENDING, at most 32768")
        self._mask = size - 1
        self._seq: list[int] = [-1] * size
        """Extended sequence number missing in each slot, or -1."""
        self._first: list[float] = [0.0] * size
        """When the gap was seen."""
        self._first_nack: list[float] = [0.0] * size
        self._last_nack: list[float] = [0.0] * size
        self._tries: list[int] = [0] * size
        self._h = ffi.new("int64_t *") if highest is None else highest
        """The newest extended sequence number, -1 before any: a C cell (``int64_t *``), the one a
        producer stream's in-order receive path in C advances (``sk_stream.nack_highest``)."""
        self._highest = -1
        self._oldest = 0
        """No missing entry has an extended sequence number below this."""
        self._rtt: list[float] = [0.0] * RTT_SAMPLES
        self._rtt_next = 0
        self.rtt_s: float | None = None
        """The publisher's round trip (first NACK → its RTX), None until measured."""
        self.pending = 0
        """Missing packets tracked now."""
        self.next_due = float("inf")
        """When :meth:`due` has something to NACK next (as of its last call; a new gap is sooner)."""
        self.keyframe_wanted = False
        """A gap was too large to NACK: the transport asks the publisher for a keyframe and clears this."""
        self.nacks_sent = 0
        """Sequence numbers NACKed (each retry counted)."""
        self.recovered = 0
        """Missing packets that arrived after all (late, or by RTX)."""
        self.given_up = 0
        """Missing packets NACKed ``MAX_RETRIES`` times or for ``MAX_AGE_S`` without arriving."""
        self.keyframes = 0
        """Keyframes asked for because a gap was too large to NACK."""

    @property
    def _highest(self) -> int:
        return int(self._h[0])

    @_highest.setter
    def _highest(self, value: int) -> None:
        self._h[0] = value

    @property
    def highest(self) -> int:
        """The newest sequence number seen (16 bits), -1 before any packet."""
        return self._highest & 0xFFFF if self._highest >= 0 else -1

    def update(self, seq: int, now: float, rtx: bool = False) -> int:
        """One packet with sequence number ``seq`` arrived (``rtx``: unwrapped from an RTX packet).

        Returns ``FORWARD``, ``SCHEDULE``, ``CACHE_ONLY`` or ``DROP`` (module constants)."""
        h = self._highest
        if h < 0:
            self._highest = self._oldest = seq + _EXT_BASE
            return FORWARD
        d = ((seq - h + 0x8000) & 0xFFFF) - 0x8000
        if d == 1:
            self._highest = h + 1
            return FORWARD
        if d > 0:
            ext = h + d
            self._highest = ext
            if d - 1 > MAX_GAP or self.pending + d - 1 > MAX_PENDING:
                self._clear(ext + 1)
                self.keyframe_wanted = True
                self.keyframes += 1
                return SCHEDULE
            seqs, first, tries, mask = self._seq, self._first, self._tries, self._mask
            for e in range(h + 1, ext):
                i = e & mask
                if seqs[i] >= 0:  # an entry a whole ring older: given up
                    self.pending -= 1
                    self.given_up += 1
                seqs[i] = e
                first[i] = now
                tries[i] = 0
            self.pending += d - 1
            if self._oldest < ext - mask:
                self._oldest = ext - mask
            if self.next_due > now + REORDER_WAIT_S:
                self.next_due = now + REORDER_WAIT_S
            return SCHEDULE
        if d == 0:
            return DROP if rtx else FORWARD
        if d < -self._mask and not rtx:  # far behind anything tracked: the source restarted
            self._clear(0)
            self._highest = self._oldest = seq + _EXT_BASE
            return FORWARD
        ext = h + d
        i = ext & self._mask
        if self._seq[i] != ext:
            return DROP if rtx else FORWARD
        self._seq[i] = -1
        self.pending -= 1
        self.recovered += 1
        if rtx and self._tries[i]:
            self._rtt[self._rtt_next] = max(now - self._first_nack[i], 1e-6)
            self._rtt_next = (self._rtt_next + 1) % RTT_SAMPLES
            self.rtt_s = min(r for r in self._rtt if r > 0.0)
        return CACHE_ONLY if -d > FORWARD_BEHIND else FORWARD

    def is_missing(self, seq: int) -> bool:
        """``seq`` (16 bits) is missing and still being asked for: it may yet arrive."""
        h = self._highest
        if h < 0 or not self.pending:
            return False
        ext = h + ((seq - h + 0x8000) & 0xFFFF) - 0x8000
        return self._seq[ext & self._mask] == ext

    def retry_interval(self) -> float:
        rtt = DEFAULT_RTT_S if self.rtt_s is None else self.rtt_s
        return rtt if rtt > MIN_RETRY_S else MIN_RETRY_S

    def due(self, now: float) -> list[int]:
        """The sequence numbers (16 bits, oldest first) to NACK now; each counts as one more try.

        Gives up the entries too old or tried too often, and sets ``next_due``."""
        self.next_due = float("inf")
        if not self.pending:
            return []
        out: list[int] = []
        interval = self.retry_interval()
        seqs, first, first_nack, last_nack, tries, mask = (
            self._seq, self._first, self._first_nack, self._last_nack, self._tries, self._mask)
        highest = self._highest
        start = self._oldest if self._oldest > highest - mask else highest - mask
        oldest = highest + 1
        next_due = float("inf")
        for e in range(start, highest):
            i = e & mask
            if seqs[i] != e:
                continue
            if now - first[i] > MAX_AGE_S or tries[i] >= MAX_RETRIES:
                seqs[i] = -1
                self.pending -= 1
                self.given_up += 1
                continue
            if oldest > e:
                oldest = e
            at = first[i] + REORDER_WAIT_S if tries[i] == 0 else last_nack[i] + interval
            if at <= now and len(out) < MAX_NACK_ITEMS:
                if tries[i] == 0:
                    first_nack[i] = now
                tries[i] += 1
                last_nack[i] = now
                out.append(e & 0xFFFF)
                at = now + interval
            if at < next_due:
                next_due = at
        self._oldest = oldest
        self.nacks_sent += len(out)
        self.next_due = next_due
        return out

    def _clear(self, oldest: int) -> None:
        if self.pending:
            self._seq[:] = [-1] * len(self._seq)
        self.pending = 0
        self._oldest = oldest

    def reset(self) -> None:
        """Forget the stream (its source restarted): nothing is missing, the next packet starts afresh."""
        self._clear(0)
        self._highest = -1
        self.keyframe_wanted = False


def pack_nack(sender_ssrc: int, media_ssrc: int, seqs: list[int]) -> bytes:
    """An RTCP generic NACK (RTPFB, FMT 1) for ``seqs``, 16-bit sequence numbers in stream order
    (they may wrap past 65535); each FCI is a PID and a bitmask of the 16 following."""
    if not seqs:
        raise ValueError("a NACK needs at least one sequence number")
    fci = bytearray()
    pid = seqs[0] & 0xFFFF
    blp = 0
    for s in seqs[1:]:
        d = (s - pid) & 0xFFFF
        if 1 <= d <= 16:
            blp |= 1 << (d - 1)
        else:
            fci += _FCI.pack(pid, blp)
            pid = s & 0xFFFF
            blp = 0
    fci += _FCI.pack(pid, blp)
    length = 2 + len(fci) // 4  # 32-bit words after the first, minus one
    return _HEADER.pack(0x80 | NACK_FMT, RTCP_RTPFB, length, sender_ssrc, media_ssrc) + bytes(fci)


class NackedStream(Protocol):
    """What :func:`nack_round` needs of an incoming stream (``media/producer.py``'s ``ProducerStream``)."""

    ssrc: int | None
    nack: NackGenerator | None

    def request_keyframe(self, now: float) -> None: ...


def nack_round(streams: Iterable[NackedStream], sender_ssrc: int, now: float) -> tuple[bytes, float]:
    """One transport's NACK round: the RTCP compound to send (``b""`` when nothing is due) with a
    NACK per stream that has packets due, and the time of the next round (``inf`` when nothing is
    pending). A stream whose gap was too large for NACKs asks its publisher for a keyframe here."""
    out: list[bytes] = []
    wake = float("inf")
    for stream in streams:
        nack = stream.nack
        if nack is None or stream.ssrc is None:
            continue
        if nack.keyframe_wanted:
            nack.keyframe_wanted = False
            stream.request_keyframe(now)
        lost = nack.due(now)
        if lost:
            out.append(pack_nack(sender_ssrc, stream.ssrc, lost))
        if nack.next_due < wake:
            wake = nack.next_due
    return b"".join(out), wake
