"""A Producer: one incoming track (camera, microphone or screen) of a publisher.

A video producer has one ``ProducerStream`` per simulcast layer (one when the
publisher does not simulcast); each stream is an SSRC with its own receive
statistics, NACK cache and list of attached consumers.  ``ProducerStream.receive``
is the SFU's hot loop: it runs once per incoming packet and calls
the C fan-out (``sk_fanout`` in ``media/fastpath.c``) once per group of attached
consumers that share header-extension ids.  It allocates nothing but what it
must keep (the packet in the cache) and never logs.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from media._fastpath import ffi, lib
from media.cache import PacketCache
from media.codecs import is_keyframe
from media.nack_generator import CACHE_ONLY, DROP, SCHEDULE, NackGenerator
from media.red import primary_offset, set_block_payload_type
from media.redforward import RedUnwrapper, RedWrapper
from media.rtp import (
    add_extension,
    find_extension,
    header_size,
    payload_range,
    remap_extension_ids,
    rtx_unwrap,
    write_abs_send_time,
)
from media.rtpstats import ReceiveStats

if TYPE_CHECKING:
    from media.consumer import Consumer
    from media.transport import WebRtcTransport

_SEQ_TS = struct.Struct(">HI")
fanout = lib.sk_fanout
from_buffer = ffi.from_buffer

AUDIO_CACHE_SIZE = 256
"""Opus sends 50 packets a second: 256 hold the cache's 3 s."""
def twcc_room(pkt: bytearray, twcc_id: int) -> tuple[bytearray, int]:
    """``pkt`` with room for the transport-wide sequence number that C writes per subscriber
    (the element found, or appended once per packet and group), and its offset (-1: none)."""
    try:
        offset = find_extension(pkt, twcc_id)
        if offset < 0:
            pkt, offset = add_extension(pkt, twcc_id, 2)
    except ValueError:
        return pkt, -1
    return pkt, offset


KEYFRAME_REQUEST_INTERVAL_S = 0.3
"""At most one PLI per stream in this interval, however many consumers ask: a
publisher that gets a PLI per subscriber would send nothing but keyframes."""


class ProducerStream:
    """One SSRC of a producer (one simulcast layer)."""

    __slots__ = (
        "cache",
        "consumers",
        "groups",
        "last_arrival",
        "last_pli",
        "last_ts",
        "layer",
        "nack",
        "producer",
        "recorder",
        "red_received",
        "rid",
        "sr_arrival",
        "sr_rtp",
        "ssrc",
        "stats",
        "unwrapper",
        "waiting",
        "wrapper",
    )

    def __init__(self, producer: Producer, layer: int, rid: str | None, ssrc: int | None) -> None:
        self.producer = producer
        self.layer = layer
        self.rid = rid
        self.ssrc = ssrc
        self.stats = ReceiveStats(ssrc or 0, producer.clock_rate)
        self.cache: PacketCache | None = PacketCache(AUDIO_CACHE_SIZE if producer.kind == "audio" else 2048)
        """Recent packets, to answer subscribers' NACKs (audio too, unless they get RED)."""
        self.consumers: list[Consumer] = []
        self.groups: list[tuple[bytes | None, Any, int, list[Consumer], int, int, int]] = []
        """``consumers`` grouped by header-extension id table, audio form and transport-cc id, as
        (table, C array of their sinks, count, the consumers, who own the sinks, their audio form — 0 plain
        Opus, 1 RED, 2 RED deepened to two copies (``RedDepth``) — their
        Opus payload type, the transport-cc id or 0): the header is renumbered once per table and packet, not once per consumer (all
        browsers of one kind share a table), and each group is one C call."""
        self.unwrapper: RedUnwrapper | None = None
        """RED → plain Opus (``media.redforward``), while a plain subscriber or the recorder takes a RED publisher."""
        self.wrapper: RedWrapper | None = None
        """Plain Opus → RED, while a subscriber that negotiated RED takes a plain publisher; or, after the
        unwrapper, a RED publisher's one copy → two, while a subscriber's RED is deepened."""
        self.red_received = 0
        """Packets that came as RED."""
        self.waiting = 0
        """Attached consumers waiting for a keyframe: only then is the payload inspected."""
        self.last_ts = 0
        self.last_arrival = 0.0
        self.sr_rtp = 0
        self.sr_arrival = 0.0
        self.last_pli = -1e9
        self.nack: NackGenerator | None = NackGenerator() if producer.kind == "video" else None
        """The publisher's losses on its uplink, NACKed by the transport (video: audio has RED)."""
        self.recorder: Callable[[bytes, float], None] | None = None
        """A recorder's hook (``media.recorder.TrackWriter.feed``: it only queues the packet), or None."""

    def receive(self, plain: bytes, now: float) -> None:
        """The hot loop: one decrypted packet of this stream → every attached consumer."""
        producer = self.producer
        if producer.paused:
            return
        pt = plain[1] & 0x7F
        red_in = pt == producer.red_payload_type
        nack = self.nack
        rtx = False
        if pt != producer.payload_type:
            if red_in:
                self.red_received += 1
            elif pt == producer.rtx_payload_type and nack is not None and self.ssrc is not None:
                try:
                    plain = rtx_unwrap(plain, producer.payload_type, self.ssrc)  # RFC 4588: the original packet
                except ValueError:
                    return  # a padding-only probe
                rtx = True
            else:
                return  # FEC, or RTX the SFU did not ask for
        seq, ts = _SEQ_TS.unpack_from(plain, 2)
        verdict = nack.update(seq, now, rtx) if nack is not None else 0
        if verdict:
            if verdict == DROP:
                return
            if verdict == SCHEDULE:
                producer.transport.nack_due(now)
        if rtx:
            self.stats.received += 1  # late: not a jitter sample
        else:
            self.stats.update(seq, ts, now, len(plain))
            self.last_ts = ts
            self.last_arrival = now
        cache = self.cache
        if cache is not None and not red_in:
            cache.put(seq, plain, now)
        recorder = self.recorder
        unwrapped = None
        if red_in and (recorder is not None or self.unwrapper is not None):
            unwrapper = self.unwrapper
            if unwrapper is None:
                unwrapper = self.unwrapper = RedUnwrapper(producer.payload_type)
            try:
                unwrapped = unwrapper.unwrap(plain)
            except ValueError:
                return
            if cache is not None:  # only plain subscribers NACK audio: they get these packets resent
                for pkt, seq_u, _ in unwrapped:
                    cache.put(seq_u, pkt, now)
        if recorder is not None:
            if unwrapped is None:
                recorder(plain, now)
            else:  # the recorder muxes plain Opus
                for pkt, _, _ in unwrapped:
                    recorder(pkt, now)
        if verdict == CACHE_ONLY:
            return
        keyframe = False
        if self.waiting:
            try:
                keyframe = is_keyframe(producer.mime, memoryview(plain)[header_size(plain):])
            except ValueError:
                return
        ast = producer.abs_send_time_id
        ast_offset = find_extension(plain, ast) if ast else -1
        wrapped = None
        deepened: list[tuple[bytes, int, int]] | None = None
        for table, sinks, count, _, red, opus_pt, twcc_id in self.groups:
            if red and not red_in:  # plain Opus → RED: converted once per packet, whatever the groups
                if wrapped is None:
                    try:
                        wrapped = self.wrapper.wrap(plain)  # type: ignore[union-attr]
                    except (ValueError, AttributeError):
                        continue
                self._send_converted(wrapped, seq, ts, table, ast_offset, sinks, count, opus_pt, now, twcc_id)
                continue
            if red_in and red != 1:  # RED → plain Opus, or RED deepened: from the unwrapped packets
                if unwrapped is None:
                    continue
                if red == 2:
                    if deepened is None:
                        deepened = self._deepen(unwrapped)
                    for pkt_d, seq_d, ts_d in deepened:
                        self._send_converted(pkt_d, seq_d, ts_d, table, ast_offset, sinks, count, opus_pt, now,
                                             twcc_id)
                    continue
                for pkt_u, seq_u, ts_u in unwrapped:
                    self._send_converted(pkt_u, seq_u, ts_u, table, ast_offset, sinks, count, -1, now, twcc_id)
                continue
            # the form the publisher sends: forwarded as it is
            pkt: bytes | bytearray = plain
            twcc_offset = -1
            if table is not None or ast_offset >= 0 or twcc_id or (red and opus_pt != producer.payload_type):
                pkt = bytearray(plain)
                if table is not None:
                    try:
                        remap_extension_ids(pkt, table)
                    except ValueError:
                        continue
                if ast_offset >= 0:  # the SFU's send time, for the subscribers' bandwidth estimate
                    write_abs_send_time(pkt, ast_offset, now)
                if red and opus_pt != producer.payload_type:  # the RED blocks name the subscriber's Opus
                    try:
                        start, end = payload_range(pkt)
                        primary_offset(memoryview(pkt)[start:end])
                    except ValueError:
                        continue
                    set_block_payload_type(pkt, start, opus_pt)
                if twcc_id:  # room for the transport-wide sequence number that C writes per subscriber
                    pkt, twcc_offset = twcc_room(pkt, twcc_id)
            released = fanout(sinks, count, from_buffer(pkt), len(pkt), seq, ts, keyframe, now, twcc_offset)
            if released:
                self.waiting -= released

    def _deepen(self, unwrapped: list[tuple[bytes, int, int]]) -> list[tuple[bytes, int, int]]:
        """The unwrapped Opus packets as RED with the two payloads before each (``RedWrapper``)."""
        wrapper = self.wrapper
        out: list[tuple[bytes, int, int]] = []
        if wrapper is None:
            return out
        for pkt, seq, ts in unwrapped:
            try:
                out.append((wrapper.wrap(pkt), seq, ts))
            except ValueError:
                continue
        return out

    def _send_converted(self, packet: bytes, seq: int, ts: int, table: bytes | None, ast_offset: int,
                        sinks: Any, count: int, opus_pt: int, now: float, twcc_id: int = 0) -> None:
        """One packet made by the RED wrapper/unwrapper (same header as the original) to one group."""
        pkt: bytes | bytearray = packet
        twcc_offset = -1
        if table is not None or ast_offset >= 0 or twcc_id or (opus_pt >= 0 and opus_pt != self.producer.payload_type):
            pkt = bytearray(packet)
            if table is not None:
                try:
                    remap_extension_ids(pkt, table)
                except ValueError:
                    return
            if ast_offset >= 0:
                write_abs_send_time(pkt, ast_offset, now)
            if opus_pt >= 0 and opus_pt != self.producer.payload_type:
                set_block_payload_type(pkt, header_size(pkt), opus_pt)
            if twcc_id:
                pkt, twcc_offset = twcc_room(pkt, twcc_id)
        fanout(sinks, count, from_buffer(pkt), len(pkt), seq, ts, False, now, twcc_offset)

    def on_sender_report(self, ntp_timestamp: int, rtp_timestamp: int, now: float) -> None:
        """Remember the publisher's NTP↔RTP mapping (consumers' SRs derive from it: lip sync)."""
        self.sr_rtp = rtp_timestamp
        self.sr_arrival = now
        self.stats.on_sender_report(ntp_timestamp, now)

    def rtp_now(self, now: float) -> int | None:
        """This stream's RTP clock at ``now``, from its last SR, else from its last packet."""
        rate = self.producer.clock_rate
        if self.sr_arrival:
            return (self.sr_rtp + int((now - self.sr_arrival) * rate)) & 0xFFFFFFFF
        if self.last_arrival:
            return (self.last_ts + int((now - self.last_arrival) * rate)) & 0xFFFFFFFF
        return None

    def request_keyframe(self, now: float) -> None:
        """Ask the publisher for a keyframe of this layer, unless that was asked less than 300 ms ago
        (the keyframe on its way serves every consumer that waits)."""
        if self.ssrc is None:
            return
        if now - self.last_pli < KEYFRAME_REQUEST_INTERVAL_S:
            return
        self.last_pli = now
        self.producer.transport.send_pli(self.ssrc)

    def attach(self, consumer: Consumer) -> None:
        if consumer not in self.consumers:
            self.consumers.append(consumer)
        self.regroup()

    def detach(self, consumer: Consumer) -> None:
        if consumer in self.consumers:
            self.consumers.remove(consumer)
        self.regroup()

    def regroup(self) -> None:
        """Rebuild ``groups`` (after a consumer came, went or renegotiated its extension ids)."""
        groups: dict[tuple[bytes | None, int, int, int], list[Consumer]] = {}
        for consumer in self.consumers:
            red = (2 if consumer.red_depth.deep else 1) if consumer.red and self.producer.kind == "audio" else 0
            key = (consumer.ext_table, red, consumer.opus_pt if red else -1, consumer.transport.writer.twcc_id)
            groups.setdefault(key, []).append(consumer)
        self.groups = [
            (table, ffi.new("sk_sink *[]", [c.sink for c in members]), len(members), members, red, opus_pt, twcc_id)
            for (table, red, opus_pt, twcc_id), members in groups.items()
        ]
        producer = self.producer
        if producer.kind == "audio":
            red_in = producer.red_payload_type is not None
            forms = {red for _, red, _, _ in groups}
            # a wrapper for a plain publisher's RED subscribers, or for deepening a RED publisher's
            wants_wrapper = 2 in forms or (not red_in and 1 in forms)
            wants_unwrapper = red_in and bool(forms & {0, 2})
            if not wants_wrapper:
                self.wrapper = None
            elif self.wrapper is None:
                self.wrapper = RedWrapper(producer.payload_type)
            if not wants_unwrapper:
                self.unwrapper = None
            elif self.unwrapper is None:
                self.unwrapper = RedUnwrapper(producer.payload_type)


class Producer:
    """An incoming track; ``streams`` lowest layer first."""

    def __init__(
        self,
        producer_id: str,
        transport: WebRtcTransport,
        *,
        kind: str,
        mid: str,
        source: str,
        mime: str,
        clock_rate: int,
        payload_type: int,
        rtx_payload_type: int | None,
        extmap: dict[str, int],
        layers: list[tuple[str | None, int | None]],
        red_payload_type: int | None = None,
    ) -> None:
        self.producer_id = producer_id
        self.transport = transport
        self.kind = kind
        self.mid = mid
        self.source = source
        self.mime = mime
        self.clock_rate = clock_rate
        self.payload_type = payload_type
        self.rtx_payload_type = rtx_payload_type
        self.red_payload_type = red_payload_type
        """Audio: the publisher sends its Opus (``payload_type``) inside RED with this payload type."""
        self.extmap = dict(extmap)
        """Header extension URI → id, as this publisher sends them."""
        from media.rtp import URI_ABS_SEND_TIME

        self.abs_send_time_id = extmap.get(URI_ABS_SEND_TIME, 0)
        self.streams = [ProducerStream(self, i, rid, ssrc) for i, (rid, ssrc) in enumerate(layers)]
        self.paused = False
        """Muted by the main classroom: nothing is forwarded, whatever the client does."""
        self.closed = False
        self.created = time.monotonic()

    @property
    def simulcast(self) -> bool:
        return len(self.streams) > 1

    def stream_for_layer(self, layer: int) -> ProducerStream:
        return self.streams[max(0, min(layer, len(self.streams) - 1))]

    def layer_bitrates(self, now: float) -> list[int]:
        return [s.stats.bitrate_bps(now) for s in self.streams]

    def close(self) -> None:
        self.closed = True
        for stream in self.streams:
            stream.recorder = None
            stream.consumers.clear()
            stream.groups = []
            if stream.cache is not None:
                stream.cache.clear()
