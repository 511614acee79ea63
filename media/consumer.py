"""A Consumer: one outgoing track on a subscriber's transport.

A consumer is bound to a *producer id* (``"<participant>:<source>"``), not to a
producer object: when the publisher reconnects, or the on-stage slot moves to
another classroom, the same consumer is re-pointed and the subscriber's track
goes on with continuous sequence numbers and timestamps (``SeqTsRewriter``),
starting on a keyframe so the decoder never sees a frame that refers to a
picture from the previous source.

Per packet a consumer is only its C ``sk_sink`` (``media/fastpath.c``): the
rewriter state, the SSRC and payload type the subscriber negotiated, whether it
waits for a keyframe, and the transport's writer.  ``ProducerStream.receive``
hands a packet to all its consumers' sinks in one C call; this class is the
control side (binding, layers, NACK, reports), which runs far less often.

Repairing a subscriber's loss follows ``media/retransmit.py``: a NACKed packet is
resent from the producer stream's cache at most once per RTT of that subscriber,
stamped with the SFU's abs-send-time of the resend (the subscriber's delay-based
bandwidth estimate must see one clock), and a loss that the cache cannot repair
or that costs more than a keyframe, or a subscriber whose feedback resumes after
an outage, asks the publisher for a keyframe at once.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aiortc.rtp import RtcpSenderInfo, RtcpSrPacket

from media._fastpath import ffi, lib
from media.bwe import Probe, VideoGate
from media.probe import PADDING_BYTES, Pacer, padding_packet
from media.redforward import RedDepth
from media.producer import KEYFRAME_REQUEST_INTERVAL_S
from media.retransmit import KEYFRAME_CHEAPER_S, NACK_KEYFRAME_INTERVAL_S, ResendLog, resend_interval
from media.rewrite import SeqTsRewriter
from media.rtp import (
    URI_ABS_SEND_TIME,
    URI_MID,
    URI_REPAIRED_RID,
    URI_RID,
    find_extension,
    remap_extension_ids,
    rewrite_header,
    rtx_wrap,
    write_abs_send_time,
)
from media.rtpstats import SendStats

if TYPE_CHECKING:
    from media.producer import Producer, ProducerStream
    from media.srtp import SrtpWriter
    from media.transport import WebRtcTransport

_TS = struct.Struct(">I")

KEYFRAME_RETRY_S = 1.0
LIVE_LAYER_S = 0.5
"""A simulcast layer without a packet for this long is not started on (``_initial_layer``)."""
"""A consumer still waiting for its first keyframe asks again after this long (the PLI or the keyframe got lost)."""
_NEVER_MAP = (URI_MID, URI_RID, URI_REPAIRED_RID)
"""The publisher's MID/RID values name *its* m-line and layers; a subscriber must not see them
(it would demultiplex the packet onto the wrong track), so their ids are mapped to an id the
subscriber did not negotiate, which receivers ignore (RFC 8285)."""


def extension_table(producer_extmap: dict[str, int], consumer_extmap: dict[str, int],
                    reserved: set[int] = frozenset()) -> bytes | None:  # type: ignore[assignment]
    """The id rewrite table (one-byte profile) from a producer's ids to a consumer's, or None if identity.

    ``reserved``: every id negotiated on the subscriber's connection.  Under BUNDLE its
    m-lines share one id space (a receiver such as aiortc keeps one map), so the
    "unknown" id must be unknown to all of them, not only to this track's m-line.
    """
    used = set(consumer_extmap.values()) | set(reserved)
    unused = next((i for i in range(14, 0, -1) if i not in used), 14)
    table = bytearray(range(16))
    for uri, pid in producer_extmap.items():
        if not 1 <= pid <= 14:
            continue
        cid = consumer_extmap.get(uri)
        table[pid] = unused if (cid is None or uri in _NEVER_MAP) else cid
    return None if table == bytearray(range(16)) else bytes(table)


class Consumer:
    """One track sent to one subscriber."""

    def __init__(
        self,
        consumer_id: str,
        transport: WebRtcTransport,
        *,
        kind: str,
        producer_id: str | None,
        max_layer: int | None = None,
        preferred_layer: int | None = None,
    ) -> None:
        self.consumer_id = consumer_id
        self.transport = transport
        self.kind = kind
        self.producer_id = producer_id
        self.transceiver: object | None = None
        # negotiated (set by ``configure`` once the subscriber answered and DTLS is up)
        self.ready = False
        self.ssrc = 0
        self.rtx_ssrc = 0
        self.out_pt = 0
        self.rtx_pt: int | None = None
        self.red_pt: int | None = None
        """Audio: the subscriber negotiated RED (RFC 2198) with this payload type; it gets RED."""
        self.opus_pt = 0
        """The payload type of the codec itself (inside RED blocks when ``red``)."""
        self.clock_rate = 90000 if kind == "video" else 48000
        self.mime = ""
        self.extmap: dict[str, int] = {}
        self.ast_id = 0
        self.ext_table: bytes | None = None
        # forwarding state
        self.producer: Producer | None = None
        self.stream: ProducerStream | None = None
        self.sink = ffi.new("sk_sink *")
        """What the fan-out loop sees of this consumer (``sk_sink``)."""
        self.sink.writer = transport.writer.c
        self._one = ffi.new("sk_sink *[1]", [self.sink])
        self.rewriter = self._new_rewriter(self.clock_rate)
        self.wait_since = 0.0
        self.stats = SendStats(0, self.clock_rate)
        self.rtx_seq = 0
        self.resends = ResendLog()
        """When each outgoing sequence number was last resent (once per RTT at most)."""
        self.red_negotiated = False
        self.red_depth = RedDepth()
        """Audio with RED: whether this subscriber's link loses enough for two redundant copies."""
        """Audio: the subscriber gets RED (redundant Opus frames), so a lost packet is not resent."""
        self.retransmitted = 0
        self.rtx_suppressed = 0
        """NACKed packets not resent because they were resent less than one RTT ago (or too often)."""
        self.rtx_over_budget = 0
        """NACKed packets not resent because the subscriber's link had no room for them."""
        self.nack_misses = 0
        """NACKed packets the cache could not repair (too old, or from before a switch)."""
        self.nack_keyframes = 0
        """Keyframes asked for because a NACK could not be repaired, or a keyframe was cheaper."""
        self._nack_keyframe_at = -NACK_KEYFRAME_INTERVAL_S
        self.outage_keyframes = 0
        """Keyframes asked for because the subscriber's feedback resumed after an outage."""
        self.keyframe_requests = 0
        self.gate: VideoGate | None = None
        self.pacer: Pacer | None = None
        """The padding probe the gate asked for, while it runs (``media.probe``)."""
        self._probe: Probe | None = None
        self.probe_window: tuple[float, float] | None = None
        """(start, end) of the gate's last probe while its result is awaited (``media.transport`` measures it)."""
        self.probe_results: list[Any] = []
        """The transport's feedback about every packet it sent within ``probe_window``."""
        self.probe_covered = False
        """The feedback reached past ``probe_window``'s end: every packet of it is accounted for."""
        self.probe_packets = 0
        self.max_layer = max_layer
        self.preferred_layer = preferred_layer
        self.paused = False
        """Paused by the link gate (video only): audio of the same subscriber goes on."""
        self.closed = False

    def _new_rewriter(self, clock_rate: int) -> SeqTsRewriter:
        return SeqTsRewriter(clock_rate, c=ffi.addressof(self.sink[0], "rw"), owner=self.sink)

    @property
    def waiting(self) -> bool:
        """Waiting for the first keyframe of the stream it is attached to (nothing is sent until then)."""
        return bool(self.sink.waiting)

    @waiting.setter
    def waiting(self, value: bool) -> None:
        self.sink.waiting = 1 if value else 0

    @property
    def sent_packets(self) -> int:
        return int(self.sink.packets)

    @property
    def sent_octets(self) -> int:
        return int(self.sink.octets)

    # ------------------------------------------------------------------ negotiation

    @property
    def red(self) -> bool:
        """Audio sent as RED (redundant Opus): a lost packet is repaired by the next one, not by RTX."""
        return self.red_pt is not None

    def configure(self, *, ssrc: int, rtx_ssrc: int, payload_type: int, rtx_payload_type: int | None,
                  clock_rate: int, mime: str, extmap: dict[str, int], red_payload_type: int | None = None) -> None:
        """The subscriber's answer is applied: these are the values its decoder expects.

        ``red_payload_type``: audio only, the subscriber negotiated RED; packets go out with it."""
        if not self.ready or clock_rate != self.clock_rate:  # first answer, or another clock: start afresh
            self.rewriter = self._new_rewriter(clock_rate)
            self.stats = SendStats(ssrc, clock_rate)
        self.ssrc = ssrc
        self.sink.ssrc = ssrc
        self.red_pt = red_payload_type if self.kind == "audio" else None
        self.red_negotiated = self.red_pt is not None
        self.opus_pt = payload_type
        self.sink.pt = payload_type if self.red_pt is None else self.red_pt
        self.rtx_ssrc = rtx_ssrc
        self.out_pt = payload_type
        self.rtx_pt = rtx_payload_type
        self.clock_rate = clock_rate
        self.mime = mime
        self.extmap = dict(extmap)
        self.ast_id = extmap.get(URI_ABS_SEND_TIME, 0)
        self.ready = True
        if self.producer is not None:
            self.ext_table = extension_table(self.producer.extmap, self.extmap, self.transport.extension_ids)
            if self.stream is not None:
                self.stream.regroup()

    # ------------------------------------------------------------------ binding

    def bind(self, producer: Producer, now: float) -> None:
        """Start forwarding ``producer`` (a new source: wait for its keyframe, ask for one)."""
        if self.producer is producer and self.stream is not None:
            return
        self.unbind()
        self.producer = producer
        self.ext_table = extension_table(producer.extmap, self.extmap, self.transport.extension_ids)
        if self.kind == "video":
            self.gate = VideoGate([1] * len(producer.streams), now_s=now)
            self.gate.max_layer = self.max_layer
            layer = self._initial_layer(producer, now)
        else:
            layer = 0
        self.paused = False
        self._attach(producer.stream_for_layer(layer), now)

    def _initial_layer(self, producer: Producer, now: float) -> int:
        """The best layer allowed that is arriving now; the lowest when none is yet (a publisher that
        has just connected sends its low layer first and adds the others as its estimate grows: a
        subscriber waiting for a keyframe of the top one would wait seconds for a first picture)."""
        top = len(producer.streams) - 1
        layer = top if self.preferred_layer is None else min(self.preferred_layer, top)
        if self.max_layer is not None:
            layer = min(layer, self.max_layer)
        while layer > 0 and now - producer.streams[layer].last_arrival > LIVE_LAYER_S:
            layer -= 1
        return max(0, layer)

    def _attach(self, stream: ProducerStream, now: float) -> None:
        self.stream = stream
        if self.kind == "video":
            self.waiting = True
            self.wait_since = now
            stream.waiting += 1
            stream.attach(self)
            self.keyframe_requests += 1
            stream.request_keyframe(now)  # one PLI within 300 ms serves every consumer that waits
            if stream.last_pli != now:  # another consumer's, just before: its keyframe may have gone by already
                self._keyframe_soon(stream, stream.last_pli + KEYFRAME_REQUEST_INTERVAL_S - now)
        else:
            self.rewriter.mark_discontinuity()
            stream.attach(self)

    def _keyframe_soon(self, stream: ProducerStream, delay: float) -> None:
        """Ask ``stream`` for a keyframe again after ``delay`` (when the publisher may be asked again) if this
        consumer is still waiting for one: not only at the once-a-second retry of ``tick`` (after a failover
        every subscriber attaches within a moment, and one that came just after the keyframe went by waited
        a second or two more than the others)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # (no event loop: a test driving the consumer by hand; tick retries)
            return

        def again() -> None:
            if self.stream is stream and self.waiting and not self.closed:
                self.keyframe_requests += 1
                stream.request_keyframe(time.monotonic())

        loop.call_later(max(0.0, delay) + 0.001, again)

    def _detach(self) -> None:
        stream = self.stream
        if stream is None:
            return
        stream.detach(self)
        if self.waiting:
            stream.waiting -= 1
            self.waiting = False
        self.stream = None

    def unbind(self) -> None:
        """Stop forwarding (producer gone, or the slot moved); the consumer stays negotiated."""
        self._detach()
        self.producer = None
        self.gate = None

    def close(self) -> None:
        self.unbind()
        self.closed = True
        self.ready = False

    # ------------------------------------------------------------------ hot path

    def forward(self, plain: bytes | bytearray, seq: int, ts: int, keyframe: bool, now: float) -> None:
        """Forward one packet to this consumer alone (``ProducerStream.receive`` does all of a group at once).

        ``plain`` has this consumer's extension ids already (``ProducerStream.groups``)."""
        if lib.sk_fanout(self._one, 1, ffi.from_buffer(plain), len(plain), seq, ts, keyframe, now, -1):
            self.stream.waiting -= 1  # type: ignore[union-attr]

    # ------------------------------------------------------------------ feedback

    def on_keyframe_request(self, now: float) -> None:
        stream = self.stream
        if stream is not None:
            self.keyframe_requests += 1
            stream.request_keyframe(now)

    def on_nack(self, lost: list[int], now: float) -> None:
        """Repair what the subscriber lost: resend from the producer stream's cache (RTX when negotiated),
        each packet once per RTT at most; ask for a keyframe instead when that is the only or cheaper repair."""
        stream = self.stream
        writer = self.transport.writer
        cache = stream.cache if stream is not None else None
        if stream is None or cache is None or not writer.is_open or not lost:
            return
        if self.kind == "audio" and self.red_negotiated:
            return  # RED already carried the lost frame in the next packets
        rewriter = self.rewriter
        found: list[tuple[int, bytes]] = []
        size = 0
        lost_upstream = 0
        for out_seq in lost:
            src_seq = rewriter.to_source_seq(out_seq)
            pkt = cache.get(src_seq, now) if src_seq >= 0 else None
            if pkt is None:
                if stream.nack is not None and src_seq >= 0 and stream.nack.is_missing(src_seq):
                    lost_upstream += 1  # being repaired from the publisher: forwarded when it arrives
                    continue
                self.nack_misses += 1
                continue
            found.append((out_seq & 0xFFFF, pkt))
            size += len(pkt)
        if self.kind == "video":
            misses = len(lost) - len(found) - lost_upstream
            # Beyond the cache, the decoder cannot recover without a keyframe; past about a second of
            # the stream's bytes, a keyframe is the cheaper repair (and the frames are late anyway).
            too_big = size * 8 > stream.stats.bitrate_bps(now) * KEYFRAME_CHEAPER_S > 0
            if misses or too_big:
                if now - self._nack_keyframe_at >= NACK_KEYFRAME_INTERVAL_S:
                    self._nack_keyframe_at = now
                    self.nack_keyframes += 1
                    self.keyframe_requests += 1
                    stream.request_keyframe(now)
                if too_big or 2 * misses > len(lost):
                    return
        interval = resend_interval(self.stats.rtt_ms)
        for out_seq, pkt in found:
            if not self.resends.allow(out_seq, now, interval):
                self.rtx_suppressed += 1
                continue
            self._resend(out_seq, pkt, writer, now)

    def _resend(self, out_seq: int, pkt: bytes, writer: SrtpWriter, now: float) -> None:
        """Send cached ``pkt`` again as this subscriber's ``out_seq``, stamped with the SFU's send time now,
        if the link has room for it (``RetransmitBudget``)."""
        if not self.transport.rtx_budget.take(len(pkt) + 2, now):  # (+2: RTX's original sequence number)
            self.rtx_over_budget += 1
            return
        (ts,) = _TS.unpack_from(pkt, 4)
        buf = bytearray(pkt)
        rewrite_header(buf, self.out_pt, out_seq, (ts + self.rewriter.ts_offset) & 0xFFFFFFFF, self.ssrc)
        try:
            if self.ext_table is not None:
                remap_extension_ids(buf, self.ext_table)
            if self.ast_id:
                offset = find_extension(buf, self.ast_id)
                if offset >= 0:
                    write_abs_send_time(buf, offset, now)
            if self.rtx_pt is not None and self.rtx_ssrc:
                data = rtx_wrap(buf, self.rtx_pt, self.rtx_ssrc, self.rtx_seq)
                self.rtx_seq = (self.rtx_seq + 1) & 0xFFFF
            else:
                data = buf
        except ValueError:
            return  # the forwarded copy was dropped for the same reason
        writer.send_rtp(data)
        self.retransmitted += 1

    def on_outage(self, now: float) -> None:
        """The subscriber's feedback resumed after an outage: its decoder needs a keyframe, now."""
        stream = self.stream
        if stream is not None and self.kind == "video" and not self.waiting:
            self.outage_keyframes += 1
            self.keyframe_requests += 1
            stream.request_keyframe(now)

    def on_remb(self, bps: int, now: float) -> None:
        """The receiver's estimate for the whole connection (REMB; a send-side estimate comes the same way)."""
        if self.gate is not None:
            self.gate.on_estimate(bps, now)

    def on_path_loss(self, fraction: float, now: float) -> None:
        """The path's loss before repair, from the send-side estimator (see ``VideoGate.on_path_loss``)."""
        if self.gate is not None:
            self.gate.on_path_loss(fraction, now)

    def on_congestion(self, congested: bool, now: float) -> None:
        """The send-side estimator's verdict on this subscriber's path (see ``VideoGate.on_congestion``)."""
        if self.gate is not None:
            self.gate.on_congestion(congested, now)

    def on_probe_feedback(self, results: Sequence[Any], now: float) -> None:
        """The transport's feedback (``PacketResult``s) arrived: keep what was sent within the probe window."""
        window = self.probe_window
        if window is None:
            return
        start, end = window
        self.probe_results.extend(r for r in results if start <= r.send_time_s < end)
        if any(r.send_time_s >= end for r in results):
            self.probe_covered = True

    def cut_probe(self, now: float) -> None:
        """The gate found the running probe failing from its first feedback: stop the padding now; the
        probe's window ends here."""
        self.pacer = None
        self._probe = None
        if self.probe_window is not None:
            self.probe_window = (self.probe_window[0], min(self.probe_window[1], now))

    def on_receiver_report(self, report: object, now: float) -> None:
        self.stats.on_receiver_report(report, now)  # type: ignore[arg-type]
        if self.gate is not None:
            self.gate.on_loss(self.stats.loss_fraction, now)
        if not self.red_negotiated:
            return
        congested = self.transport.twcc_active(now) and self.transport.estimator.congested
        if self.red_depth.update(self.stats.loss_fraction, now, congested=congested) and self.stream is not None:
            self.stream.regroup()  # into the group of its new RED depth

    def sender_report(self, ntp: int, now: float) -> RtcpSrPacket | None:
        """An SR whose RTP time is the source's clock shifted like the packets (keeps lip sync)."""
        stream = self.stream
        packets = self.sink.packets
        if stream is None or packets == 0:
            return None
        rtp_now = stream.rtp_now(now)
        if rtp_now is None:
            return None
        self.stats.remember_sr((ntp >> 16) & 0xFFFFFFFF, now)
        return RtcpSrPacket(
            ssrc=self.ssrc,
            sender_info=RtcpSenderInfo(
                ntp_timestamp=ntp,
                rtp_timestamp=(rtp_now + self.rewriter.ts_offset) & 0xFFFFFFFF,
                packet_count=packets & 0xFFFFFFFF,
                octet_count=self.sink.octets & 0xFFFFFFFF,
            ),
        )

    # ------------------------------------------------------------------ periodic

    def tick(self, now: float) -> str | None:
        """Once a second: keyframe retries and the link gate. Returns a state change to report, if any."""
        if self.stream is not None and self.waiting and now - self.wait_since > KEYFRAME_RETRY_S:
            self.wait_since = now
            self.keyframe_requests += 1
            self.stream.request_keyframe(now)
        producer, gate = self.producer, self.gate
        if producer is None or gate is None or producer.closed:
            return None
        for i, bps in enumerate(producer.layer_bitrates(now)):
            gate.on_producer_bitrate(i, bps)
        target = gate.decide(now)
        self._start_probe(gate.probe, now)
        if target < 0:
            if not self.paused:
                self._detach()
                self.paused = True
                return "paused"
            return None
        if self.paused:
            self.paused = False
            self._attach(producer.stream_for_layer(target), now)
            return "resumed"
        if self.stream is not None and self.stream.layer != target and target < len(producer.streams):
            self._detach()
            self._attach(producer.stream_for_layer(target), now)
            return "layer"
        return None

    # ------------------------------------------------------------------ probing

    def _start_probe(self, probe: Probe | None, now: float) -> None:
        """Send the padding the gate asks for, on the RTX stream, paced by a 20 ms timer."""
        if probe is self._probe:
            return
        self._probe = probe
        if probe is not None:
            self.probe_window = (now, probe.until_s)
            self.probe_results = []
            self.probe_covered = False
        if probe is None or probe.bps <= 0 or not self.rtx_ssrc or self.rtx_pt is None:
            self.pacer = None  # no RTX negotiated: the probe only waits for the receiver's reaction
            return
        size = 12 + (8 if self.ast_id else 0) + PADDING_BYTES
        self.pacer = Pacer(probe.bps, probe.until_s, now, size)
        try:
            asyncio.get_running_loop().call_soon(self._pace)
        except RuntimeError:
            pass  # driven by hand (tests call ``pace`` themselves)

    def pace(self, now: float) -> bool:
        """Send the padding packets due now; True while the probe goes on."""
        pacer = self.pacer
        writer = self.transport.writer
        if pacer is None or self.closed or not writer.is_open or self.rtx_pt is None:
            return False
        for _ in range(pacer.due(now)):
            writer.send_rtp(padding_packet(self.rtx_pt, self.rtx_seq, self.rewriter.out_ts, self.rtx_ssrc,
                                           ast_id=self.ast_id, now_s=now))
            self.rtx_seq = (self.rtx_seq + 1) & 0xFFFF
            self.probe_packets += 1
        if pacer.active(now):
            return True
        self.pacer = None
        return False

    def _pace(self) -> None:
        if self.pace(time.monotonic()):
            asyncio.get_running_loop().call_later(0.02, self._pace)
