"""A Producer: one incoming track (camera, microphone or screen) of a publisher.

A video producer has one ``ProducerStream`` per simulcast layer (one when the
publisher does not simulcast); each stream is an SSRC with its own receive
statistics, NACK cache and list of attached consumers.  ``ProducerStream.receive``
is the SFU's hot loop: it runs once per incoming packet.  The common case — the packet that
follows the newest one, nobody waiting for a keyframe, nothing to convert or record — is done
whole by one C call (``sk_stream_receive`` in ``media/fastpath.c``): statistics, the NACK
generator's newest number, the cache and the fan-out, once per group of attached consumers that
share header-extension ids.  The rest (gaps, RTX, RED conversion, the recorder, keyframe waits)
runs here in Python on the same C state, and each group's forwarding is the same C call
(``sk_stream_forward``).  Neither allocates nor logs.
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
    header_size,
    payload_range,
    rtx_unwrap,
)
from media.rtpstats import ReceiveStats

if TYPE_CHECKING:
    from media.consumer import Consumer
    from media.transport import WebRtcTransport

_SEQ_TS = struct.Struct(">HI")
_receive = lib.sk_stream_receive
_level_note = lib.sk_level_note
_forward = lib.sk_stream_forward
from_buffer = ffi.from_buffer
DEMUX_MAX = 32
"""``SK_DEMUX_MAX``: streams a transport's C table holds (the rest take Python's path)."""

AUDIO_CACHE_SIZE = 256
"""Opus sends 50 packets a second: 256 hold the cache's 3 s."""
AUDIO_CACHE_ARENA = 1 << 17
"""256 RED packets of up to 512 bytes."""
VIDEO_CACHE_ARENA = 1 << 20
"""3 s of 2.8 Mbit/s."""
KEYFRAME_REQUEST_INTERVAL_S = 0.3
"""At most one PLI per stream in this interval, however many consumers ask: a
publisher that gets a PLI per subscriber would send nothing but keyframes."""


class ProducerStream:
    """One SSRC of a producer (one simulcast layer)."""

    __slots__ = (
        "_groups_c",
        "_recorder",
        "c",
        "cache",
        "consumers",
        "groups",
        "last_pli",
        "layer",
        "nack",
        "producer",
        "rid",
        "sr_arrival",
        "sr_rtp",
        "ssrc",
        "stats",
        "unwrapper",
        "wrapper",
    )

    def __init__(self, producer: Producer, layer: int, rid: str | None, ssrc: int | None) -> None:
        self.producer = producer
        self.layer = layer
        self.rid = rid
        self.ssrc = ssrc
        c = self.c = ffi.new("sk_stream *")
        """What the in-order receive path in C (``sk_stream_receive``) reads and updates."""
        c.pt = producer.payload_type
        c.red_pt = producer.red_payload_type if producer.red_payload_type is not None else -1
        c.ast_id = producer.abs_send_time_id
        c.level_id = producer.audio_level_id
        self.stats = ReceiveStats(ssrc or 0, producer.clock_rate, ffi.addressof(c, "stats"), c)
        self.cache: PacketCache | None = PacketCache(AUDIO_CACHE_SIZE if producer.kind == "audio" else 2048,
                                                     arena=AUDIO_CACHE_ARENA if producer.kind == "audio"
                                                     else VIDEO_CACHE_ARENA)
        """Recent packets, to answer subscribers' NACKs (audio too, unless they get RED)."""
        c.cache = self.cache.c
        self.consumers: list[Consumer] = []
        self.groups: list[tuple[int, Any, int, list[Consumer], int, int]] = []
        """``consumers`` grouped by header-extension id table, audio form and transport-cc id, as
        (the group's index in ``c.groups``, C array of their sinks, count, the consumers, who own the
        sinks, their audio form — 0 plain Opus, 1 RED, 2 RED deepened to two copies (``RedDepth``) —
        their Opus payload type): the header is renumbered once per table and packet, not once per
        consumer (all browsers of one kind share a table), and each group is one C call."""
        self.unwrapper: RedUnwrapper | None = None
        """RED → plain Opus (``media.redforward``), while a plain subscriber or the recorder takes a RED publisher."""
        self.wrapper: RedWrapper | None = None
        """Plain Opus → RED, while a subscriber that negotiated RED takes a plain publisher; or, after the
        unwrapper, a RED publisher's one copy → two, while a subscriber's RED is deepened."""
        self.sr_rtp = 0
        self.sr_arrival = 0.0
        self.last_pli = -1e9
        self.nack: NackGenerator | None = None
        """The publisher's losses on its uplink, NACKed by the transport (video: audio has RED)."""
        if producer.kind == "video":
            self.nack = NackGenerator(highest=ffi.addressof(c, "nack_highest"))
            c.has_nack = 1
        self._recorder: Callable[[bytes, float], None] | None = None
        self._groups_c: Any = None
        """The C array of the groups (``c.groups`` points into it)."""

    @property
    def recorder(self) -> Callable[[bytes, float], None] | None:
        """A recorder's hook (``media.recorder.TrackWriter.feed``: it only queues the packet), or None."""
        return self._recorder

    @recorder.setter
    def recorder(self, hook: Callable[[bytes, float], None] | None) -> None:
        self._recorder = hook
        self._judge_path()

    @property
    def waiting(self) -> int:
        """Attached consumers waiting for a keyframe: only then is the payload inspected."""
        return int(self.c.waiting)

    @waiting.setter
    def waiting(self, value: int) -> None:
        self.c.waiting = value

    @property
    def red_received(self) -> int:
        """Packets that came as RED."""
        return int(self.c.red_received)

    @property
    def last_ts(self) -> int:
        return int(self.c.last_ts)

    @property
    def last_arrival(self) -> float:
        return float(self.c.last_arrival)

    @property
    def fast_packets(self) -> int:
        """Packets the in-order receive path in C took whole (statistics, NACK state, cache, fan-out)."""
        return int(self.c.fast_packets)

    def _judge_path(self) -> None:
        """Whether every packet needs Python (``c.slow``): a recorder, RED converted for some
        subscriber, or a RED block renumbered."""
        pt = self.producer.payload_type
        self.c.slow = (self._recorder is not None or self.wrapper is not None or self.unwrapper is not None
                       or any(red and opus_pt != pt for _, _, _, _, red, opus_pt in self.groups))

    def receive(self, plain: bytes, now: float) -> None:
        """The hot loop: one decrypted packet of this stream → every attached consumer.

        The in-order case is done whole in C (``sk_stream_receive``); the rest here."""
        c = self.c
        if _receive(c, plain, len(plain), now):
            return
        producer = self.producer
        if producer.paused:
            return
        pt = plain[1] & 0x7F
        red_in = pt == producer.red_payload_type
        nack = self.nack
        rtx = False
        if pt != producer.payload_type:
            if red_in:
                c.red_received += 1
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
            c.last_ts = ts
            c.last_arrival = now
            if c.level_id:
                _level_note(c, plain, len(plain))
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
        wrapped = None
        deepened: list[tuple[bytes, int, int]] | None = None
        for gi, _, _, _, red, opus_pt in self.groups:
            if red and not red_in:  # plain Opus → RED: converted once per packet, whatever the groups
                if wrapped is None:
                    try:
                        wrapped = self.wrapper.wrap(plain)  # type: ignore[union-attr]
                    except (ValueError, AttributeError):
                        continue
                self._send_converted(gi, wrapped, seq, ts, opus_pt, now)
                continue
            if red_in and red != 1:  # RED → plain Opus, or RED deepened: from the unwrapped packets
                if unwrapped is None:
                    continue
                if red == 2:
                    if deepened is None:
                        deepened = self._deepen(unwrapped)
                    for pkt_d, seq_d, ts_d in deepened:
                        self._send_converted(gi, pkt_d, seq_d, ts_d, opus_pt, now)
                    continue
                for pkt_u, seq_u, ts_u in unwrapped:
                    self._send_converted(gi, pkt_u, seq_u, ts_u, -1, now)
                continue
            # the form the publisher sends: forwarded as it is
            pkt: bytes | bytearray = plain
            if red and opus_pt != producer.payload_type:  # the RED blocks name the subscriber's Opus
                pkt = bytearray(plain)
                try:
                    start, end = payload_range(pkt)
                    primary_offset(memoryview(pkt)[start:end])
                except ValueError:
                    continue
                set_block_payload_type(pkt, start, opus_pt)
            released = _forward(c, gi, from_buffer(pkt), len(pkt), seq, ts, keyframe, now)
            if released > 0:
                c.waiting -= released

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

    def _send_converted(self, gi: int, packet: bytes, seq: int, ts: int, opus_pt: int, now: float) -> None:
        """One packet made by the RED wrapper/unwrapper (same header as the original) to group ``gi``."""
        pkt: bytes | bytearray = packet
        if opus_pt >= 0 and opus_pt != self.producer.payload_type:
            pkt = bytearray(packet)
            set_block_payload_type(pkt, header_size(pkt), opus_pt)
        _forward(self.c, gi, from_buffer(pkt), len(pkt), seq, ts, False, now)

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
        c = self.c
        table_c = ffi.new("sk_group[]", max(1, len(groups)))
        self.groups = []
        for (table, red, opus_pt, twcc_id), members in groups.items():
            gi = len(self.groups)
            sinks = ffi.new("sk_sink *[]", [m.sink for m in members])
            self.groups.append((gi, sinks, len(members), members, red, opus_pt))
            g = table_c[gi]
            g.sinks = sinks
            g.count = len(members)
            g.remap = table is not None
            g.table = table if table is not None else bytes(16)
            g.twcc_id = twcc_id
        c.ngroups = 0  # (the old array may be freed below: C never sees it half-replaced)
        c.groups = table_c
        c.ngroups = len(self.groups)
        self._groups_c = table_c
        c.red_groups = any(red for _, _, _, _, red, _ in self.groups)
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
        self._judge_path()


class SsrcTable(dict):  # type: ignore[type-arg]
    """A publisher transport's SSRC → ``ProducerStream`` (or a drop marker), mirrored into a C
    table (``c``, ``sk_demux``) that the transport's receive path in C looks streams up in.

    Changed only by ``[ssrc] = ``, ``del``, ``pop`` and ``clear`` (a few times per producer):
    each rebuilds the C table from the dict."""

    def __init__(self) -> None:
        super().__init__()
        self.c = ffi.new("sk_demux *")

    def _sync(self) -> None:
        c = self.c
        c.n = 0  # (a reader in C never sees a half-written table: n last)
        n = 0
        for ssrc, stream in self.items():
            if n == DEMUX_MAX:
                break
            if isinstance(stream, ProducerStream):
                c.ssrc[n] = ssrc
                c.stream[n] = stream.c
                n += 1
        c.n = n

    def __setitem__(self, ssrc: int, stream: Any) -> None:
        super().__setitem__(ssrc, stream)
        self._sync()

    def __delitem__(self, ssrc: int) -> None:
        super().__delitem__(ssrc)
        self._sync()

    def pop(self, *args: Any) -> Any:
        out = super().pop(*args)
        self._sync()
        return out

    def clear(self) -> None:
        super().clear()
        self._sync()


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
        from media.rtp import URI_ABS_SEND_TIME, URI_AUDIO_LEVEL

        self.abs_send_time_id = extmap.get(URI_ABS_SEND_TIME, 0)
        self.audio_level_id = extmap.get(URI_AUDIO_LEVEL, 0) if kind == "audio" else 0
        """RFC 6464 levels are counted per stream (``media.speech``) when the publisher sends them."""
        self.streams = [ProducerStream(self, i, rid, ssrc) for i, (rid, ssrc) in enumerate(layers)]
        self._paused = False
        self.closed = False
        self.created = time.monotonic()

    @property
    def paused(self) -> bool:
        """Muted by the main classroom: nothing is forwarded, whatever the client does."""
        return self._paused

    @paused.setter
    def paused(self, value: bool) -> None:
        self._paused = value
        for stream in self.streams:
            stream.c.paused = value

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
            stream.c.ngroups = 0  # before the arrays it points to go
            stream.groups = []
            if stream.cache is not None:
                stream.cache.clear()
