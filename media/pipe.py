"""PipeTransport: one lesson's producers carried from the worker that receives them to another worker.

A lesson bigger than one worker (one core) has a router on each worker that serves some of its
subscribers; the publishers stay on the lesson's first router (the *origin*).  A pipe links the
origin router to one other router, in the spirit of mediasoup's ``PipeTransport`` /
``Router.pipeToRouter``: a plain UDP socket at each end (no ICE, no DTLS), SRTP both ways with
keys the node hands to the two ends over their worker channels, and nothing else accepted (a
datagram from any address but the other end's is dropped and counted).

Origin side (``consume``): for every layer of a piped producer a *pipe sink* joins the producer
stream's fan-out like a consumer, in passthrough mode (``sk_sink.passthrough``): the packet goes
as it came — sequence number, timestamp, payload type and header extensions untouched, RED as
RED — under an SSRC of the pipe's own, so the far end never depends on the publisher's SSRCs
(simulcast layers discovered later by RID, a publisher that reconnects).  Nothing is decoded or
re-encoded.  The far end's NACKs are answered from the origin stream's cache as RTX on the pipe
(an SSRC and sequence of its own, so SRTP's replay check is not fooled; a packet the origin is still
repairing from its publisher follows by itself when it comes); its PLI/FIR becomes a
keyframe request at the origin (the origin's 300 ms throttle applies); once a second each piped
layer gets a Sender Report carrying the publisher's RTP clock (the far end's consumers keep lip
sync).

Far side (``produce``): a *pipe producer* per piped producer, a :class:`media.producer.Producer`
with the same id whose transport is this pipe, so the far router's consumers bind to it as to any
producer (the on-stage slot switches between pipe producers the same way).  Its streams fill
their own NACK caches: the far worker's subscribers are repaired from there, and a gap on the
pipe itself is NACKed to the origin by the same ``NackGenerator`` a publisher's uplink gets.

Must not: talk signaling, open anything but its one socket, or log per packet.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
from typing import Any

import pylibsrtp
from aiortc.clock import current_ntp_time
from aiortc.rtp import (
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
)

from media._fastpath import ffi, lib
from media.eventloop import burst_reader, raw_socket
from media.nack_generator import MIN_RETRY_S, REORDER_WAIT_S, nack_round
from media.producer import Producer, ProducerStream, SsrcTable
from media.redforward import RedDepth
from media.rtp import rtx_wrap
from media.srtp import SrtpReader, SrtpWriter

_receive_rtp = lib.sk_receive_rtp
log = logging.getLogger(__name__)

KEY_BYTES = 30
"""SRTP master key (16) and salt (14) of AES_CM_128_HMAC_SHA1_80, one per direction."""
SR_INTERVAL_S = 1.0
RTCP_PSFB_FIR = 4
DRAIN_MAX = 64
RECV_SIZE = 4096


def new_key() -> str:
    """A fresh SRTP master key + salt, hex (what ``pipe.connect`` takes as the other end's key)."""
    return os.urandom(KEY_BYTES).hex()


def _session(key_hex: str, outbound: bool) -> pylibsrtp.Session:
    key = bytes.fromhex(key_hex)
    if len(key) != KEY_BYTES:
        raise ValueError(f"a pipe key is {KEY_BYTES} bytes")
    policy = pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND if outbound
                              else pylibsrtp.Policy.SSRC_ANY_INBOUND,
                              srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80)
    policy.allow_repeat_tx = True
    policy.window_size = 1024
    return pylibsrtp.Session(policy=policy)


def _free_pt(used: set[int]) -> int:
    return next(pt for pt in range(127, 95, -1) if pt not in used)


class PipeSink:
    """One layer of a piped producer, on the origin side: a passthrough sink in the stream's fan-out.

    It has the attributes ``ProducerStream.regroup`` reads of a consumer."""

    __slots__ = ("ext_table", "opus_pt", "red", "red_depth", "rtx_seq", "rtx_ssrc", "sink", "ssrc", "stream",
                 "transport")

    def __init__(self, transport: PipeTransport, stream: ProducerStream, ssrc: int, rtx_ssrc: int) -> None:
        producer = stream.producer
        self.transport = transport
        self.stream = stream
        self.ssrc = ssrc
        self.rtx_ssrc = rtx_ssrc
        self.rtx_seq = random.getrandbits(16)
        self.ext_table: bytes | None = None
        # the publisher's own audio form: RED stays RED, Opus stays Opus (no conversion for the pipe)
        self.red = producer.red_payload_type is not None
        self.red_depth = RedDepth()  # never deepened: the far end deepens for its own lossy subscribers
        self.opus_pt = producer.payload_type
        self.sink = ffi.new("sk_sink *")
        self.sink.writer = transport.writer.c
        self.sink.ssrc = ssrc
        self.sink.passthrough = 1

    @property
    def sent_packets(self) -> int:
        return int(self.sink.packets)


class _Out:
    """A producer piped out of the origin: its sinks (one per layer) and how the far end knows it."""

    __slots__ = ("description", "producer", "sinks")

    def __init__(self, producer: Producer, sinks: list[PipeSink], description: dict[str, Any]) -> None:
        self.producer = producer
        self.sinks = sinks
        self.description = description


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, pipe: PipeTransport) -> None:
        self.pipe = pipe

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.pipe._datagram(data, addr)


class PipeTransport:
    """One end of a pipe between two routers of one lesson (see the module docstring)."""

    def __init__(self, pipe_id: str, router_id: str, host: str) -> None:
        self.pipe_id = pipe_id
        self.router_id = router_id
        self.host = host
        self.key = new_key()
        """This end's sending key (hex); the other end receives with it."""
        self.writer = SrtpWriter()
        self.rtcp_ssrc = random.getrandbits(32) or 1
        self.closed = False
        self.remote: tuple[str, int] | None = None
        self.reader = SrtpReader()
        self._tx: pylibsrtp.Session | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._sock: Any = None  # the socket, or uvloop's stand-in (fileno, getsockname)
        self._recvfrom: Any = None
        # origin side
        self.out: dict[str, _Out] = {}
        self.out_ssrc: dict[int, PipeSink] = {}
        # far side
        self.producers: dict[str, Producer] = {}
        self.ssrc_table = SsrcTable()
        """SSRC → the far side's ``ProducerStream`` (mirrored into C for the receive path in C)."""
        self._nack_timer: asyncio.TimerHandle | None = None
        self._nack_at = 0.0
        self._sr_task: asyncio.Task[None] | None = None
        # counters
        self._received_py = 0
        self.foreign = 0
        """Datagrams from anywhere but the other end, dropped."""
        self.unknown_ssrc = 0
        self.retransmitted = 0
        self.nack_misses = 0
        self.keyframe_requests = 0
        self.dropped_on_purpose = 0
        self.drop_every = 0
        """Fault injection for tests (``pipe.drop``): every n-th video packet arriving here (not RTX) is dropped."""
        self._drop_count = 0

    # ------------------------------------------------------------------ set-up

    async def open(self) -> tuple[str, int]:
        """Bind the socket (port chosen by the system); returns (host, port)."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        udp, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), local_addr=(self.host, 0),
                                                     family=family)
        self._udp = udp  # type: ignore[assignment]
        self._sock = raw_socket(udp)
        self._recvfrom = burst_reader(udp)
        host, port = self._sock.getsockname()[:2]
        return host, port

    def connect(self, host: str, port: int, remote_key: str) -> None:
        """The other end's address and its sending key: SRTP both ways from now on."""
        if self._sock is None:
            raise ValueError("the pipe is not open")
        self._tx = _session(self.key, outbound=True)
        self.reader.open(_session(remote_key, outbound=False))
        self.remote = (host, int(port))
        self.writer.open(self._tx, self._sock, self.remote)
        if self._sr_task is None:
            self._sr_task = asyncio.get_running_loop().create_task(self._run_sr(), name=f"pipe-{self.pipe_id}-sr")

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for out in list(self.out.values()):
            self._detach(out)
        self.out.clear()
        self.out_ssrc.clear()
        for producer in self.producers.values():
            producer.close()
        self.producers.clear()
        self.ssrc_table.clear()
        if self._nack_timer is not None:
            self._nack_timer.cancel()
        if self._sr_task is not None:
            self._sr_task.cancel()
        self.writer.close()
        self.reader.close()
        if self._udp is not None:
            self._udp.close()

    @property
    def received(self) -> int:
        """RTP packets from the other end of known streams (by Python's path and by C's)."""
        return self._received_py + sum(s.fast_packets for p in self.producers.values() for s in p.streams)

    @property
    def srtp_errors(self) -> int:
        """Datagrams from the other end that SRTP refused (a stranger's, replays)."""
        return self.reader.failed

    # ------------------------------------------------------------------ origin side

    def consume(self, producer: Producer) -> dict[str, Any]:
        """Pipe ``producer`` out (again: a replaced producer gets new pipe SSRCs); returns what the far
        end's ``produce`` needs."""
        existing = self.out.get(producer.producer_id)
        if existing is not None:
            if existing.producer is producer and not producer.closed:
                return existing.description
            self._detach(existing)
        used = {producer.payload_type, *(pt for pt in (producer.red_payload_type,) if pt is not None)}
        rtx_pt = producer.rtx_payload_type if producer.rtx_payload_type is not None else _free_pt(used)
        sinks: list[PipeSink] = []
        layers: list[dict[str, Any]] = []
        for stream in producer.streams:
            ssrc, rtx_ssrc = self._new_ssrc(), self._new_ssrc()
            sink = PipeSink(self, stream, ssrc, rtx_ssrc)
            self.out_ssrc[ssrc] = sink
            sinks.append(sink)
            stream.attach(sink)  # type: ignore[arg-type]
            layers.append({"rid": stream.rid, "ssrc": ssrc, "rtx_ssrc": rtx_ssrc})
        description = {
            "producer_id": producer.producer_id, "kind": producer.kind, "mid": producer.mid,
            "source": producer.source, "mime": producer.mime, "clock_rate": producer.clock_rate,
            "payload_type": producer.payload_type, "rtx_payload_type": rtx_pt,
            "red_payload_type": producer.red_payload_type, "extmap": dict(producer.extmap), "layers": layers,
        }
        self.out[producer.producer_id] = _Out(producer, sinks, description)
        return description

    def producer_closed(self, producer: Producer) -> None:
        """The origin's producer is gone: its sinks leave the fan-out (the far end hears nothing more)."""
        out = self.out.get(producer.producer_id)
        if out is not None and out.producer is producer:
            self._detach(out)
            del self.out[producer.producer_id]

    def unconsume(self, producer_id: str) -> None:
        out = self.out.pop(producer_id, None)
        if out is not None:
            self._detach(out)

    def _detach(self, out: _Out) -> None:
        for sink in out.sinks:
            sink.stream.detach(sink)  # type: ignore[arg-type]
            self.out_ssrc.pop(sink.ssrc, None)

    def _new_ssrc(self) -> int:
        while True:
            ssrc = random.getrandbits(32)
            if ssrc and ssrc not in self.out_ssrc and ssrc != self.rtcp_ssrc:
                return ssrc

    def _on_nack(self, media_ssrc: int, lost: list[int], now: float) -> None:
        """The far end misses these packets of a piped layer: RTX from the origin stream's cache."""
        sink = self.out_ssrc.get(media_ssrc)
        if sink is None:
            return
        stream = sink.stream
        cache = stream.cache
        rtx_pt = self.out[stream.producer.producer_id].description["rtx_payload_type"] \
            if stream.producer.producer_id in self.out else None
        if cache is None or rtx_pt is None:
            return
        missed = False
        upstream = stream.nack
        for seq in lost:
            pkt = cache.get(seq, now)
            if pkt is None:
                if upstream is not None and upstream.is_missing(seq):
                    continue  # lost on the publisher's uplink too and being repaired: it follows when it comes
                self.nack_misses += 1
                missed = True
                continue
            try:
                data = rtx_wrap(pkt, rtx_pt, sink.rtx_ssrc, sink.rtx_seq)
            except ValueError:
                continue
            sink.rtx_seq = (sink.rtx_seq + 1) & 0xFFFF
            if self.writer.send_rtp(data):
                self.retransmitted += 1
        if missed:
            self.keyframe_requests += 1
            stream.request_keyframe(now)

    def _on_keyframe_request(self, media_ssrc: int, now: float) -> None:
        sink = self.out_ssrc.get(media_ssrc)
        if sink is not None:
            self.keyframe_requests += 1
            sink.stream.request_keyframe(now)

    async def _run_sr(self) -> None:
        """Once a second, each piped layer's publisher clock (for the far end's consumers' lip sync)."""
        try:
            while not self.closed:
                await asyncio.sleep(SR_INTERVAL_S)
                if not self.out or not self.writer.is_open:
                    continue
                now = time.monotonic()
                ntp = current_ntp_time()
                packets = []
                for out in self.out.values():
                    for sink in out.sinks:
                        stream = sink.stream
                        if not stream.sr_arrival:
                            continue
                        rtp = stream.rtp_now(now)
                        if rtp is None:
                            continue
                        packets.append(bytes(RtcpSrPacket(ssrc=sink.ssrc, sender_info=RtcpSenderInfo(
                            ntp_timestamp=ntp, rtp_timestamp=rtp, packet_count=sink.sink.packets & 0xFFFFFFFF,
                            octet_count=sink.sink.octets & 0xFFFFFFFF))))
                for i in range(0, len(packets), 8):
                    self.writer.send_rtcp(b"".join(packets[i:i + 8]))
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("pipe %s: sender reports failed", self.pipe_id)

    # ------------------------------------------------------------------ far side

    def produce(self, description: dict[str, Any]) -> tuple[Producer, Producer | None]:
        """The pipe producer for ``description`` (from the origin's ``consume``): the existing one when
        nothing changed, else a new one; returns (producer, the one it replaces or None)."""
        producer_id = str(description["producer_id"])
        layers = list(description["layers"])
        existing = self.producers.get(producer_id)
        if existing is not None and getattr(existing, "pipe_description", None) == description:
            return existing, None
        producer = Producer(
            producer_id, self,  # type: ignore[arg-type]
            kind=str(description["kind"]), mid=str(description.get("mid") or ""),
            source=str(description.get("source") or ""), mime=str(description["mime"]),
            clock_rate=int(description["clock_rate"]), payload_type=int(description["payload_type"]),
            rtx_payload_type=description.get("rtx_payload_type"),
            extmap={str(k): int(v) for k, v in dict(description["extmap"]).items()},
            layers=[(layer.get("rid"), int(layer["ssrc"])) for layer in layers],
            red_payload_type=description.get("red_payload_type"),
        )
        producer.pipe_description = description  # type: ignore[attr-defined]
        if existing is not None:
            self._forget(existing)
        self.producers[producer_id] = producer
        for stream, layer in zip(producer.streams, layers):
            self.ssrc_table[int(layer["ssrc"])] = stream
            self.ssrc_table[int(layer["rtx_ssrc"])] = stream
        return producer, existing

    def close_producer(self, producer_id: str) -> Producer | None:
        producer = self.producers.pop(producer_id, None)
        if producer is not None:
            self._forget(producer)
        return producer

    def _forget(self, producer: Producer) -> None:
        for ssrc, stream in list(self.ssrc_table.items()):
            if stream.producer is producer:
                del self.ssrc_table[ssrc]

    def streams(self) -> list[ProducerStream]:
        return [s for p in self.producers.values() for s in p.streams]

    def send_pli(self, media_ssrc: int) -> None:
        """A far-side stream wants a keyframe: ask the origin (``ProducerStream.request_keyframe``)."""
        if self.writer.is_open:
            self.writer.send_rtcp(bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=self.rtcp_ssrc,
                                                       media_ssrc=media_ssrc)))

    def nack_due(self, now: float) -> None:
        """A pipe producer's stream saw a gap on the pipe: NACK it to the origin after the reorder wait."""
        at = now + REORDER_WAIT_S
        if self.closed or (self._nack_timer is not None and self._nack_at <= at):
            return
        if self._nack_timer is not None:
            self._nack_timer.cancel()
        self._arm_nacks(at, now)

    def _arm_nacks(self, at: float, now: float) -> None:
        self._nack_at = at
        self._nack_timer = asyncio.get_running_loop().call_later(max(at - now, 0.0), self._send_nacks)

    def _send_nacks(self) -> None:
        self._nack_timer = None
        if self.closed or not self.writer.is_open:
            return
        now = time.monotonic()
        wake = float("inf")
        try:
            rtcp, wake = nack_round(self.streams(), self.rtcp_ssrc, now)
            if rtcp:
                self.writer.send_rtcp(rtcp)
        except Exception:
            log.exception("pipe %s: NACK tick failed", self.pipe_id)
        if wake < float("inf"):
            self._arm_nacks(max(wake, now + MIN_RETRY_S), now)

    # ------------------------------------------------------------------ datagrams

    def _datagram(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self._handle(data, addr)
        recvfrom = self._recvfrom
        if recvfrom is None:  # uvloop reads bursts itself
            return
        for _ in range(DRAIN_MAX):  # a keyframe's burst in one event-loop turn
            try:
                data, addr = recvfrom(RECV_SIZE)
            except OSError:
                return
            self._handle(data, addr)

    def _handle(self, data: bytes, addr: tuple[Any, ...]) -> None:
        remote = self.remote
        if remote is None or addr[1] != remote[1] or addr[0] != remote[0]:
            self.foreign += 1
            return
        reader = self.reader
        if not reader.is_open or len(data) < 12 or not 127 < data[0] < 192:
            self.foreign += 1
            return
        if 191 < data[1] < 224:  # RTCP
            rtcp = reader.unprotect_rtcp(data)
            if rtcp is not None:
                self._rtcp(rtcp)
            return
        now = time.monotonic()
        if self.drop_every:  # fault injection: every packet through Python
            plain = reader.unprotect(data)
            if plain is None or len(plain) < 12:
                return
        else:  # unprotected, and the in-order case of a known stream received whole, in C
            n = _receive_rtp(reader.c, self.ssrc_table.c, ffi.NULL, data, len(data), now)
            if n < 12:  # done (0), or refused by SRTP (counted by the reader)
                return
            plain = ffi.unpack(reader.buf, n)
        stream = self.ssrc_table.get(int.from_bytes(plain[8:12], "big"))
        if stream is None:
            self.unknown_ssrc += 1
            return
        if self.drop_every:
            producer = stream.producer
            if producer.kind == "video" and (plain[1] & 0x7F) != producer.rtx_payload_type:
                self._drop_count += 1
                if self._drop_count % self.drop_every == 0:
                    self.dropped_on_purpose += 1
                    return
        self._received_py += 1
        stream.receive(plain, now)

    def _rtcp(self, plain: bytes) -> None:
        try:
            packets = RtcpPacket.parse(plain)
        except ValueError:
            return
        now = time.monotonic()
        for packet in packets:
            if isinstance(packet, RtcpSrPacket):
                stream = self.ssrc_table.get(packet.ssrc)
                if stream is not None and stream.ssrc == packet.ssrc:
                    stream.on_sender_report(packet.sender_info.ntp_timestamp, packet.sender_info.rtp_timestamp, now)
            elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                self._on_keyframe_request(packet.media_ssrc, now)
            elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
                self._on_nack(packet.media_ssrc, list(packet.lost), now)

    # ------------------------------------------------------------------ counters

    def dump(self) -> dict[str, Any]:
        return {
            "remote": list(self.remote) if self.remote else None,
            "out": {pid: {"sent": [s.sent_packets for s in o.sinks]} for pid, o in self.out.items()},
            "in": {pid: {"received": [s.stats.received for s in p.streams],
                         "nacks_sent": [s.nack.nacks_sent if s.nack else 0 for s in p.streams],
                         "recovered": [s.nack.recovered if s.nack else 0 for s in p.streams]}
                   for pid, p in self.producers.items()},
            "sent_packets": self.writer.sent_packets if self.writer.is_open else 0,
            "received": self.received, "foreign": self.foreign, "srtp_errors": self.srtp_errors,
            "unknown_ssrc": self.unknown_ssrc, "retransmitted": self.retransmitted,
            "nack_misses": self.nack_misses, "keyframe_requests": self.keyframe_requests,
            "dropped_on_purpose": self.dropped_on_purpose,
        }
