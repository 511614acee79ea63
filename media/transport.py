"""A participant's WebRTC transport in the SFU: one RTCPeerConnection whose media bypasses aiortc.

aiortc does what it is good at: ICE, DTLS, SRTP key export and SDP.  Once
DTLS is up the transport puts itself in front of aioice's datagram protocol
for the selected candidate pair: SRTP and SRTCP from that remote address are
unprotected here and handed to producer streams (publisher side) or to the
feedback handlers of consumers (subscriber side); everything else (STUN, DTLS)
goes on to aioice and aiortc as before.  aiortc's ``RTCRtpReceiver.receive`` and
``RTCRtpSender.send`` are replaced on each transceiver by functions that only
record the negotiated parameters, so no jitter buffer, depacketizer, decoder,
encoder or second RTCP loop runs for forwarded media.

A participant has two transports, as in mediasoup: ``send`` (the client offers
its camera/microphone/screen; producers) and ``recv`` (the server offers the
tracks the client subscribed to; consumers).  One side offers per connection,
so offers never collide, and the server drives renegotiation of ``recv`` itself
(aiortc has no ``negotiationneeded``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiortc import RTCIceCandidate, RTCPeerConnection, RTCRtpTransceiver, RTCSessionDescription
from aiortc.codecs import get_capabilities
from aiortc.rtcrtpparameters import RTCRtpReceiveParameters, RTCRtpSendParameters
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpByePacket,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSdesPacket,
    RtcpSourceInfo,
    RtcpSrPacket,
    pack_remb_fci,
    unpack_remb_fci,
)
from aiortc.clock import current_ntp_time

from media import demux
from media.bwe import PROBE_DELIVERED, PROBE_GRACE_S
from media.candidate import Candidate
from media.eventloop import burst_reader, raw_socket
from media.gcc import PacketResult, SendSideEstimator, probe_delivery, probe_queue_growth
from media.ice import IcePolicy, SdpRejected, check_remote_sdp, filter_local_sdp, rtc_configuration
from media.nack_generator import MIN_RETRY_S, REORDER_WAIT_S, nack_round
from media.producer import SsrcTable
from media.retransmit import FeedbackWatch, RetransmitBudget
from media.sdp import accept_transport_cc, offer_transport_cc, transport_cc_id
from media._fastpath import ffi, lib
from media.srtp import SrtpReader, SrtpWriter
from media.transportcc import FEEDBACK_INTERVAL_S, ArrivalRecorder, match_feedback, split_estimate
from media.twcc import URI_TRANSPORT_CC, feedback_packets
from media.twcc import parse as parse_twcc

if TYPE_CHECKING:
    from media.consumer import Consumer
    from media.producer import ProducerStream

log = logging.getLogger(__name__)

RTCP_INTERVAL_S = 1.0
RTCP_PSFB_FIR = 4
PUBLISHER_REMB_BPS = 2_500_000
"""What the SFU tells publishers it can take: enough for a 720p camera plus a screen,
low enough that a classroom PC does not flood a school's uplink."""
MAX_UNKNOWN_SSRCS = 32
TWCC_START_BPS = 2_000_000
TWCC_MIN_BPS = 50_000
TWCC_MAX_BPS = 10_000_000
"""The send-side estimate of a subscriber's link starts, and stays, in these bounds."""
TWCC_FRESH_S = 2.0
"""Transport-cc feedback this recent makes its estimate, not the subscriber's REMB, drive the video gates."""
CONGESTED_CHECK_S = 0.2
"""While the send-side estimator says the path is full, the video gates decide this often (on feedback)."""
PROBE_PROGRESS_PACKETS = 15
"""A running probe is judged from its feedback so far only once this many of its window's packets are in."""


class _Ignored:
    """An SSRC the transport knows to drop (publisher RTX, FEC, or unknown after discovery)."""

    __slots__ = ()

    def receive(self, plain: bytes, now: float) -> None:
        return None


_IGNORED = _Ignored()


DRAIN_MAX = 64
"""Datagrams read in one go from a publisher's socket after the event loop reported it readable."""
RECV_SIZE = 4096


class WebRtcTransport:
    """One RTCPeerConnection of one participant, direction ``send`` (publish) or ``recv`` (subscribe)."""

    def __init__(
        self,
        transport_id: str,
        participant_id: str,
        direction: str,
        policy: IcePolicy,
        *,
        on_state: Callable[[WebRtcTransport, str], None],
        on_discover: Callable[[WebRtcTransport, bytes, int], Any] | None = None,
        on_consumer_ready: Callable[[Consumer], None] | None = None,
        on_consumer_change: Callable[[Consumer, str], None] | None = None,
    ) -> None:
        if direction not in ("send", "recv"):
            raise ValueError(f"direction must be send or recv, not {direction!r}")
        self.transport_id = transport_id
        self.participant_id = participant_id
        self.direction = direction
        self.policy = policy
        self.pc = RTCPeerConnection(rtc_configuration(policy))
        self.writer = SrtpWriter()
        """Every consumer of this transport sends through it; open once DTLS is up, closed with us."""
        self.reader = SrtpReader()
        """Unprotects what the selected pair receives; open once DTLS is up."""
        self._dtls: Any = None
        self.rtcp_ssrc = random.getrandbits(32) or 1
        self.cname = f"sanke-{transport_id}"
        self.ssrc_table = SsrcTable()
        """Publisher side: SSRC → ProducerStream (or a drop marker)."""
        self.consumers_by_ssrc: dict[int, Consumer] = {}
        """Subscriber side: the SSRC the consumer sends with → consumer (for RTCP feedback)."""
        self.consumers: dict[str, Consumer] = {}
        self.extension_ids: set[int] = set()
        """Every header extension id negotiated on this connection (all m-lines share them under BUNDLE)."""
        self._transceiver_of: dict[str, RTCRtpTransceiver] = {}
        self.red_answered: dict[str, tuple[int, int]] = {}
        """Subscriber side: per mid, (RED, Opus) payload types where the answer took RED (aiortc drops it)."""
        self._free: dict[str, list[RTCRtpTransceiver]] = {"audio": [], "video": []}
        self._configure: dict[int, Callable[[RTCRtpSendParameters], None]] = {}
        self._on_state = on_state
        self._on_discover = on_discover
        self._on_consumer_ready = on_consumer_ready
        self._on_consumer_change = on_consumer_change
        self.state = "new"
        self.closed = False
        self.remb_bps: int | None = None
        self.rtx_budget = RetransmitBudget()
        """Subscriber side: room for retransmissions on this link (set from the estimate each RTCP tick)."""
        self._probe_timers: set[str] = set()
        self._probe_judging: set[str] = set()
        """Consumers whose probe's feedback is complete and whose judgment is queued (``_follow_probe``)."""
        """Consumers whose probe result is awaited on a timer (``_schedule_probe_result``)."""
        self._budget_sample: tuple[int, int, float] | None = None
        """(bytes sent, retransmitted bytes, when) at the previous budget update."""
        self.feedback = FeedbackWatch()
        """Subscriber side: when its RTCP resumes after an outage, its video consumers ask for keyframes."""
        self.malformed_rtp = 0
        """Publisher side: packets that passed SRTP but whose header the SFU could not read (dropped)."""
        self.created = time.monotonic()
        self._last_sample = (0, self.created)
        """(bytes sent, when) at the previous ``sample``: the recv side's bitrate is the difference."""
        self.negotiating = False
        """An offer is out and its answer not back (recv side)."""
        self.renegotiate = False
        """Consumers changed while an offer was out: offer again once the answer arrives."""
        self._rtcp_task: asyncio.Task[None] | None = None
        self.arrivals = ArrivalRecorder()
        """Publisher side: arrival times of the publisher's transport-wide sequence numbers."""
        self.estimator: Any = None
        """Subscriber side: the send-side estimate of this link, from transport-cc feedback."""
        self.packet_result: Any = PacketResult
        """What the estimator takes per packet (``media.gcc.PacketResult``)."""
        self.twcc_feedback_at = -1e9
        self._congested_check_at = -1e9
        self.twcc_feedbacks = 0
        self.twcc_bad = 0
        self._nack_timer: asyncio.TimerHandle | None = None
        self._nack_at = 0.0
        """Publisher side: the next batch of NACKs (armed only while packets are missing)."""
        self._twcc_timer: asyncio.TimerHandle | None = None
        """Publisher side: the next transport-cc feedback (armed while transport-cc is negotiated)."""
        self.pc.on("connectionstatechange", self._connection_state)

    # ------------------------------------------------------------------ state

    @property
    def pc_closed(self) -> bool:
        """Nothing can be negotiated any more: we closed the peer connection, or aiortc closed it
        by itself when the remote end closed DTLS (a participant leaving closes its connections
        before the server has processed its ``leave``)."""
        return self.closed or self.pc.signalingState == "closed"

    def _connection_state(self) -> None:
        state = self.pc.connectionState
        if state == self.state:
            return
        self.state = state
        try:
            self._on_state(self, state)
        except Exception:
            log.exception("transport %s: state listener failed", self.transport_id)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._rtcp_task is not None:
            self._rtcp_task.cancel()
        if self._nack_timer is not None:
            self._nack_timer.cancel()
            self._nack_timer = None
        if self._twcc_timer is not None:
            self._twcc_timer.cancel()
            self._twcc_timer = None
        if self.writer.is_open:
            try:
                ssrcs = [c.ssrc for c in self.consumers.values() if c.ready] or [self.rtcp_ssrc]
                self.writer.send_rtcp(bytes(RtcpByePacket(sources=ssrcs)))
            except Exception:
                pass
        self.writer.close()
        self.reader.close()
        for consumer in list(self.consumers.values()):
            consumer.close()
        self.consumers.clear()
        self.consumers_by_ssrc.clear()
        try:
            await self.pc.close()
        except Exception:
            log.debug("transport %s: close failed", self.transport_id, exc_info=True)

    # ------------------------------------------------------------------ aiortc hooks

    def _hook(self, transceiver: RTCRtpTransceiver) -> None:
        """Replace aiortc's media start by parameter capture (once per transceiver)."""
        if getattr(transceiver, "_sanke_hooked", False):
            return
        transceiver._sanke_hooked = True  # type: ignore[attr-defined]
        transport = self

        async def receive(parameters: RTCRtpReceiveParameters) -> None:
            transport._attach(transceiver.receiver.transport)

        async def send(parameters: RTCRtpSendParameters) -> None:
            transport._attach(transceiver.sender.transport)
            configure = transport._configure.get(id(transceiver))
            if configure is not None:
                configure(parameters)

        transceiver.receiver.receive = receive  # type: ignore[method-assign]
        transceiver.sender.send = send  # type: ignore[method-assign]

    def _attach(self, dtls: Any) -> None:
        """DTLS is connected: take over the selected pair's socket for SRTP."""
        if self.closed or (self._dtls is dtls and self.writer.is_open):
            return
        connection = dtls.transport._connection
        pair = connection._nominated.get(1)
        if pair is None or dtls._rx_srtp is None or dtls._tx_srtp is None:
            log.warning("transport %s: DTLS up without a selected pair", self.transport_id)
            return
        self._dtls = dtls
        self.reader.open(dtls._rx_srtp)
        protocol = pair.protocol
        remote = pair.remote_addr
        self.writer.open(dtls._tx_srtp, raw_socket(protocol.transport), remote)
        self._install(protocol, remote)
        if self._rtcp_task is None:
            self._rtcp_task = asyncio.get_running_loop().create_task(self._run_rtcp())
        self.arm_twcc_feedback()

    def _install(self, protocol: Any, remote: tuple[Any, ...]) -> None:
        """Put the SRTP fast path in front of aioice for datagrams from ``remote``.

        Only the selected remote address takes the fast path (it passed ICE and the
        address policy); any other source goes through aioice and its policy guard.
        """
        original = protocol.datagram_received
        rhost, rport = remote[0], remote[1]
        reader = self.reader
        unprotect = lib.sk_unprotect
        receive_rtp = lib.sk_receive_rtp
        reader_c = reader.c
        plain_buf = reader.buf
        unpack = ffi.unpack
        table = self.ssrc_table
        demux = table.c
        discover = self._discover
        handle_rtcp = self._handle_rtcp
        transport = self
        monotonic = time.monotonic
        from_bytes = int.from_bytes
        recvfrom = burst_reader(protocol.transport)
        arrivals_c = self.arrivals.c

        def handle(data: bytes, addr: tuple[Any, ...]) -> None:
            if len(data) < 12 or not 127 < data[0] < 192 or addr[1] != rport or addr[0] != rhost:
                original(data, addr)
                return
            if 191 < data[1] < 224:  # RTCP (RFC 5761 demultiplexing)
                n = unprotect(reader_c, data, len(data), 1)
                if n > 0:
                    handle_rtcp(unpack(plain_buf, n))
                return
            now = monotonic()
            # unprotected, its arrival noted (transport-cc), and the in-order case of a known stream
            # received whole, in C; the rest comes back in the reader's buffer
            n = receive_rtp(reader_c, demux, arrivals_c, data, len(data), now)
            if n < 12:  # done (0), refused by SRTP (counted by the reader), or no RTP header left
                return
            plain = unpack(plain_buf, n)
            ssrc = from_bytes(plain[8:12], "big")
            stream = table.get(ssrc)
            if stream is None:
                stream = discover(plain, ssrc)
            stream.receive(plain, now)

        def datagram_received(data: bytes, addr: tuple[Any, ...]) -> None:
            handle(data, addr)
            # A burst (a keyframe is dozens of packets) is read here in one go, not one event-loop
            # turn (epoll_wait, callbacks) per packet; bounded, so other sockets get their turn.
            # (uvloop reads bursts itself: no reader.)
            if recvfrom is None:
                return
            for _ in range(DRAIN_MAX):
                try:
                    data, addr = recvfrom(RECV_SIZE)
                except OSError:  # BlockingIOError: drained
                    return
                handle(data, addr)

        protocol.datagram_received = datagram_received

    def _discover(self, plain: bytes, ssrc: int) -> Any:
        """An SSRC not announced in SDP (simulcast by RID): ask the router which stream it is."""
        found = None
        if self._on_discover is not None and len(self.ssrc_table) < MAX_UNKNOWN_SSRCS + 16:
            try:
                found = self._on_discover(self, plain, ssrc)
            except ValueError:  # malformed header extensions (it passed SRTP: the participant sent it)
                self.malformed_rtp += 1
                return _IGNORED  # (not remembered: a well-formed packet of that SSRC may follow)
            except Exception:
                log.exception("transport %s: SSRC discovery failed", self.transport_id)
        if found is None:
            found = _IGNORED
        if len(self.ssrc_table) < MAX_UNKNOWN_SSRCS + 16:
            self.ssrc_table[ssrc] = found
        return found

    # ------------------------------------------------------------------ publisher side (direction send)

    async def accept_offer(self, sdp: str) -> str:
        """Apply a publisher's offer; returns the policy-filtered answer (raises ``SdpRejected``/``ValueError``)."""
        checked = check_remote_sdp(sdp, self.policy)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=checked, type="offer"))
        for transceiver in self.pc.getTransceivers():
            self._hook(transceiver)
            if transceiver.direction == "sendrecv":
                transceiver.direction = "recvonly"  # the SFU never sends on a publisher's connection
        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)
        sdp_answer, self.arrivals.ext_id = accept_transport_cc(checked, filter_local_sdp(
            self.pc.localDescription.sdp, self.policy))
        self.arm_twcc_feedback()
        return sdp_answer

    def arm_twcc_feedback(self) -> None:
        """Publisher side, once transport-cc is negotiated and SRTP is up: feedback every
        ``FEEDBACK_INTERVAL_S`` from now on, whether packets arrive or not (until closed)."""
        if (self.direction != "send" or self.closed or not self.arrivals.ext_id or not self.writer.is_open
                or self._twcc_timer is not None):
            return
        self._twcc_timer = asyncio.get_running_loop().call_later(FEEDBACK_INTERVAL_S, self._twcc_tick)

    def _twcc_tick(self) -> None:
        self._twcc_timer = None
        if self.closed:
            return
        try:
            self.send_twcc_feedback(time.monotonic())
        except Exception:
            log.exception("transport %s: transport-cc feedback failed", self.transport_id)
        self.arm_twcc_feedback()

    def send_twcc_feedback(self, now: float) -> int:
        """Transport-cc feedback on what arrived from the publisher since the last one; packets sent."""
        writer = self.writer
        if not writer.is_open:
            return 0
        media_ssrc = next((s.ssrc for s in self.ssrc_table.values() if getattr(s, "ssrc", None)), 0)
        packets = self.arrivals.feedback(self.rtcp_ssrc, media_ssrc, now)
        for packet in packets:
            writer.send_rtcp(packet)
        return len(packets)

    def send_pli(self, media_ssrc: int) -> None:
        writer = self.writer
        if writer.is_open:
            writer.send_rtcp(bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=self.rtcp_ssrc, media_ssrc=media_ssrc)))

    def nack_due(self, now: float) -> None:
        """A producer stream saw a gap: send its NACKs (and those of every stream of this publisher)
        once its reorder wait is over, then again while packets stay missing."""
        at = now + REORDER_WAIT_S
        if self.closed or (self._nack_timer is not None and self._nack_at <= at):
            return
        if self._nack_timer is not None:  # armed for a later retry: the new gap goes first
            self._nack_timer.cancel()
        self._arm_nacks(at, now)

    def _arm_nacks(self, at: float, now: float) -> None:
        self._nack_at = at
        self._nack_timer = asyncio.get_running_loop().call_later(max(at - now, 0.0), self._send_nacks)

    def _send_nacks(self) -> None:
        """One RTCP packet with the NACKs due on every stream (and a PLI where a gap was too large)."""
        self._nack_timer = None
        if self.closed or not self.writer.is_open:
            return
        try:
            self._nack_tick(time.monotonic())
        except Exception:
            log.exception("transport %s: NACK tick failed", self.transport_id)

    def _nack_tick(self, now: float) -> None:
        rtcp, wake = nack_round(self.streams(), self.rtcp_ssrc, now)
        if rtcp:
            self.writer.send_rtcp(rtcp)
        if wake < float("inf"):
            self._arm_nacks(max(wake, now + MIN_RETRY_S), now)

    # ------------------------------------------------------------------ subscriber side (direction recv)

    def add_consumer(self, consumer: Consumer, mime: str | None) -> None:
        """Give ``consumer`` a sendonly transceiver (a free one of its kind if any); needs an offer after."""
        pool = self._free[consumer.kind]
        transceiver = pool.pop() if pool else None
        if transceiver is None:
            transceiver = self.pc.addTransceiver(consumer.kind, direction="sendonly")
            self._hook(transceiver)
        else:
            transceiver.direction = "sendonly"
        if mime:
            prefs = [c for c in get_capabilities(consumer.kind).codecs
                     if c.mimeType.lower() == mime.lower() or c.mimeType.lower().endswith("/rtx")]
            if prefs:
                transceiver.setCodecPreferences(prefs)
        transceiver.sender._stream_id = consumer.producer_id.split(":")[0] if consumer.producer_id else "sanke"
        consumer.transceiver = transceiver
        consumer.ssrc = transceiver.sender._ssrc
        consumer.rtx_ssrc = transceiver.sender._rtx_ssrc
        self.consumers[consumer.consumer_id] = consumer
        self.consumers_by_ssrc[consumer.ssrc] = consumer
        self._transceiver_of[consumer.consumer_id] = transceiver

        def configure(parameters: RTCRtpSendParameters, consumer: Consumer = consumer) -> None:
            self._configure_consumer(consumer, parameters)

        self._configure[id(transceiver)] = configure

    def _configure_consumer(self, consumer: Consumer, parameters: RTCRtpSendParameters) -> None:
        if consumer.closed or not parameters.codecs:
            return
        main = next((c for c in parameters.codecs if not c.mimeType.lower().endswith("/rtx")), None)
        if main is None:
            return
        rtx = next((c for c in parameters.codecs if c.mimeType.lower().endswith("/rtx")
                    and c.parameters.get("apt") == main.payloadType), None)
        extmap = {e.uri: e.id for e in parameters.headerExtensions}
        if self.writer.twcc_id:  # negotiated outside aiortc (media/sdp.py)
            extmap[URI_TRANSPORT_CC] = self.writer.twcc_id
        self.extension_ids.update(extmap.values())
        was_ready = consumer.ready
        red = self.red_answered.get(getattr(consumer.transceiver, "mid", None) or "")
        consumer.configure(ssrc=consumer.ssrc, rtx_ssrc=consumer.rtx_ssrc, payload_type=main.payloadType,
                           rtx_payload_type=rtx.payloadType if rtx else None, clock_rate=main.clockRate,
                           mime=main.mimeType, extmap=extmap,
                           red_payload_type=red[0] if red is not None and red[1] == main.payloadType else None)
        if not was_ready and self._on_consumer_ready is not None:
            self._on_consumer_ready(consumer)

    def remove_consumer(self, consumer_id: str, *, reuse: bool = True) -> bool:
        """Stop a consumer; its transceiver goes inactive and is kept for reuse (``reuse``: its m-line's
        codec may serve the next consumer of its kind). Needs an offer after."""
        consumer = self.consumers.pop(consumer_id, None)
        if consumer is None:
            return False
        consumer.close()
        self.consumers_by_ssrc.pop(consumer.ssrc, None)
        transceiver = self._transceiver_of.pop(consumer_id, None)
        if transceiver is not None:
            transceiver.direction = "inactive"
            self._configure.pop(id(transceiver), None)
            if reuse:
                self._free[consumer.kind].append(transceiver)
        return True

    def mid_of(self, consumer_id: str) -> str | None:
        transceiver = self._transceiver_of.get(consumer_id)
        return transceiver.mid if transceiver is not None else None

    async def create_offer(self) -> str:
        offer = await self.pc.createOffer()
        await self.pc.setLocalDescription(offer)
        for transceiver in self.pc.getTransceivers():
            self._hook(transceiver)
        return offer_transport_cc(filter_local_sdp(self.pc.localDescription.sdp, self.policy))

    async def accept_answer(self, sdp: str) -> None:
        checked = check_remote_sdp(sdp, self.policy)
        try:
            twcc_id = transport_cc_id(checked)
        except ValueError:
            twcc_id = 0
        self.writer.twcc_id = twcc_id  # before the consumers are configured: their id tables include it
        if twcc_id and self.estimator is None:
            self.estimator = SendSideEstimator(start_bps=TWCC_START_BPS, min_bps=TWCC_MIN_BPS,
                                               max_bps=TWCC_MAX_BPS)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=checked, type="answer"))

    async def add_candidate(self, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None) -> None:
        """A trickled candidate line; a malformed one raises ``ValueError`` (``media.candidate``), one outside
        the policy ``SdpRejected``."""
        c = Candidate.parse(candidate)
        if not self.policy.address_allowed(c.address):
            raise SdpRejected(f"candidate address {c.address} is not allowed")
        await self.pc.addIceCandidate(RTCIceCandidate(
            component=c.component, foundation=c.foundation, ip=c.address, port=c.port, priority=c.priority,
            protocol=c.transport, type=c.type, relatedAddress=c.related_address, relatedPort=c.related_port,
            sdpMid=sdp_mid, sdpMLineIndex=sdp_mline_index, tcpType=c.tcp_type))

    # ------------------------------------------------------------------ RTCP

    def _handle_rtcp(self, plain: bytes) -> None:
        now = time.monotonic()
        if self.writer.twcc_id:
            for raw in feedback_packets(plain):
                try:
                    self.on_twcc_feedback(parse_twcc(raw), now)
                except ValueError:
                    self.twcc_bad += 1
        try:
            packets = RtcpPacket.parse(plain)
        except ValueError:
            return
        if self.direction == "recv" and self.feedback.heard(now):
            for consumer in self.consumers.values():
                consumer.on_outage(now)
        for packet in packets:
            if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
                if isinstance(packet, RtcpSrPacket):
                    stream = self.ssrc_table.get(packet.ssrc)
                    if stream is not None and stream is not _IGNORED and stream.ssrc == packet.ssrc:  # not its RTX
                        stream.on_sender_report(packet.sender_info.ntp_timestamp,
                                                packet.sender_info.rtp_timestamp, now)
                for report in packet.reports:
                    consumer = self.consumers_by_ssrc.get(report.ssrc)
                    if consumer is not None:
                        consumer.on_receiver_report(report, now)
            elif isinstance(packet, RtcpPsfbPacket):
                if packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                    targets = [packet.media_ssrc]
                    if packet.fmt == RTCP_PSFB_FIR and len(packet.fci) >= 4:
                        targets = [int.from_bytes(packet.fci[i:i + 4], "big") for i in range(0, len(packet.fci) - 3, 8)]
                    for ssrc in targets:
                        consumer = self.consumers_by_ssrc.get(ssrc)
                        if consumer is not None:
                            consumer.on_keyframe_request(now)
                elif packet.fmt == RTCP_PSFB_APP:
                    try:
                        bitrate, _ = unpack_remb_fci(packet.fci)
                    except ValueError:
                        continue
                    self.remb_bps = bitrate
                    if self.twcc_active(now):
                        continue  # the send-side estimate drives the gates
                    # the estimate is the receiver's for the whole connection, and it lists only the
                    # SSRCs it heard lately (not a paused video's): every consumer gets it
                    for consumer in list(self.consumers.values()):
                        consumer.on_remb(bitrate, now)
            elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
                consumer = self.consumers_by_ssrc.get(packet.media_ssrc)
                if consumer is not None:
                    consumer.on_nack(packet.lost, now)

    def on_twcc_feedback(self, fb: Any, now: float) -> None:
        """A subscriber's transport-cc feedback: match it with what was sent, feed the estimator."""
        self.twcc_feedbacks += 1
        self.twcc_feedback_at = now
        estimator = self.estimator
        if estimator is None:
            return
        results = match_feedback(fb, lambda seq: self.writer.sent_record(seq, now), self.packet_result)
        if results:
            estimator.on_feedback(results, now)
            for consumer in self.consumers.values():
                if consumer.probe_window is not None:
                    consumer.on_probe_feedback(results, now)
                    self._follow_probe(consumer, now)
            if estimator.congested and now - self._congested_check_at >= CONGESTED_CHECK_S:
                self._congested_check_at = now
                self._react_to_congestion(now)

    def _follow_probe(self, consumer: Consumer, now: float) -> None:
        """A measured probe, as its feedback comes in: cut it short when its first packets already show it
        failing; judge it as soon as the feedback covers its whole window (not after a fixed grace)."""
        gate, window = consumer.gate, consumer.probe_window
        if gate is None or window is None or not gate.measured:
            return
        if not consumer.probe_covered:
            if now < window[1] and len(consumer.probe_results) >= PROBE_PROGRESS_PACKETS:
                so_far = probe_delivery(consumer.probe_results, self.estimator.inherent_loss)
                if so_far is not None and gate.on_probe_progress(so_far[0], now):
                    consumer.cut_probe(now)
                    log.debug("transport %s: %s: probe cut after %.2f s (%.2f delivered)", self.transport_id,
                              consumer.consumer_id, now - window[0], so_far[0])
            return
        if consumer.consumer_id not in self._probe_judging:
            self._probe_judging.add(consumer.consumer_id)
            try:
                asyncio.get_running_loop().call_soon(self._judge_covered_probe, consumer)
            except RuntimeError:
                self._probe_judging.discard(consumer.consumer_id)  # driven by hand: the tick judges it

    def _judge_covered_probe(self, consumer: Consumer) -> None:
        self._probe_judging.discard(consumer.consumer_id)
        if consumer.probe_covered and consumer.probe_window is not None:
            self._judge_probe(consumer)

    def _react_to_congestion(self, now: float) -> None:
        """The path is full: the gates decide now, not at the next once-a-second tick (a layer too big
        for a capped link loses the audio behind it meanwhile)."""
        try:
            self._share_estimate(now)
            for consumer in list(self.consumers.values()):
                if consumer.gate is None:
                    continue
                change = consumer.tick(now)
                if change and self._on_consumer_change is not None:
                    self._on_consumer_change(consumer, change)
        except Exception:
            log.exception("transport %s: a congestion decision failed", self.transport_id)

    def twcc_active(self, now: float) -> bool:
        """The subscriber's transport-cc feedback is recent and there is an estimator to use it."""
        return self.estimator is not None and now - self.twcc_feedback_at < TWCC_FRESH_S

    def _share_estimate(self, now: float) -> None:
        """Give each video consumer its share of the transport's send-side estimate (audio first)."""
        estimator = self.estimator
        rtts = [c.stats.rtt_ms for c in self.consumers.values() if c.stats.rtt_ms is not None]
        if rtts:
            estimator.on_rtt(sum(rtts) / len(rtts) / 1000.0, now)
        consumers = [c for c in self.consumers.values() if c.ready and not c.closed]
        audio = sum(1 for c in consumers if c.kind == "audio" and c.producer is not None)
        video = [c for c in consumers if c.kind == "video" and c.gate is not None]
        needs = []
        for c in video:
            rates = c.producer.layer_bitrates(now) if c.producer is not None else []
            if c.max_layer is not None:
                rates = rates[:c.max_layer + 1]
            needs.append(max(rates, default=0))
        congested = estimator.congested
        for c, share in zip(video, split_estimate(int(estimator.target_bps), audio, needs), strict=True):
            c.on_remb(share, now)
            c.on_congestion(congested, now)
            c.on_path_loss(estimator.loss_fraction, now)

    def _measure_probes(self, now: float) -> None:
        """Tell each video gate what its finished probe delivered (transport-cc feedback about every packet
        sent in the probe's window); a probe that got through lifts the estimate to the rate it carried."""
        estimator = self.estimator
        for consumer in self.consumers.values():
            gate = consumer.gate
            if gate is None:
                continue
            gate.measured = True
            window = consumer.probe_window
            if window is None or (now < window[1] + PROBE_GRACE_S and not consumer.probe_covered):
                continue
            delivered = probe_delivery(consumer.probe_results, estimator.inherent_loss)
            growth = probe_queue_growth(consumer.probe_results)
            consumer.probe_window, consumer.probe_results = None, []
            gate.on_probe_measured(*(delivered if delivered is not None else (None, None)), growth,
                                   estimator.standing_queue_s)
            log.debug("transport %s: %s: probe of %.2f s judged %.2f s after it (%s delivered, delay %s)",
                      self.transport_id, consumer.consumer_id, window[1] - window[0], now - window[1],
                      "?" if delivered is None else f"{delivered[0]:.2f}",
                      "?" if growth is None else f"{growth * 1000:+.0f} ms")
            if delivered is not None and delivered[0] >= PROBE_DELIVERED:
                estimator.on_probe(delivered[1], now, delivered=delivered[0])

    def _schedule_probe_result(self, consumer: Consumer, now: float) -> None:
        """Judge a measured probe as soon as its feedback is in, and start the next one when it is due,
        not at the next RTCP tick (up to ~1 s later): each step of a paused video's probes, and each
        layer up, then costs about a second."""
        window, gate = consumer.probe_window, consumer.gate
        if gate is None or consumer.consumer_id in self._probe_timers:
            return
        if window is not None:
            due = window[1] + PROBE_GRACE_S
        elif now < gate.next_probe_at < now + RTCP_INTERVAL_S * 0.75:
            due = gate.next_probe_at
        else:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # driven by hand (tests call rtcp_tick themselves)
        self._probe_timers.add(consumer.consumer_id)
        loop.call_later(max(0.0, due - now) + 0.01, self._probe_result_due, consumer)

    def _probe_result_due(self, consumer: Consumer) -> None:
        self._probe_timers.discard(consumer.consumer_id)
        self._judge_probe(consumer)

    def _judge_probe(self, consumer: Consumer) -> None:
        now = time.monotonic()
        if (self.closed or consumer.closed or self.consumers.get(consumer.consumer_id) is not consumer
                or not self.twcc_active(now)):
            return
        try:
            self._measure_probes(now)
            self._share_estimate(now)  # (a passed probe lifted the estimate: the gate sees it now)
            change = consumer.tick(now)
            if change and self._on_consumer_change is not None:
                self._on_consumer_change(consumer, change)
        except Exception:
            log.exception("transport %s: judging a probe failed", self.transport_id)
            return
        self._schedule_probe_result(consumer, now)

    def _update_rtx_budget(self, twcc: bool, now: float) -> None:
        """While the path is congested (a queue: ``SendSideEstimator.congested``), retransmissions get what
        the send-side estimate leaves above the media sent since the last tick; resending into a full
        queue only multiplies the loss.  Otherwise they are not limited: a link that loses packets at
        random without a queue has room for its repairs, whatever its loss-based rate says.  (A
        receiver's REMB is no limit either: aiortc's starts far below what a link carries.)"""
        sent, spent = self.writer.sent_bytes, self.rtx_budget.spent_bytes
        last, self._budget_sample = self._budget_sample, (sent, spent, now)
        if last is None or now <= last[2]:
            return
        media_bps = ((sent - last[0]) - (spent - last[1])) * 8 / (now - last[2])
        congested = twcc and self.estimator.congested
        self.rtx_budget.set_rate(self.estimator.target_bps if congested else None, media_bps, now)

    def streams(self) -> list[ProducerStream]:
        from media.producer import ProducerStream

        # (an RTX SSRC maps to the stream it repairs: each stream once, under its own SSRC)
        return [s for ssrc, s in self.ssrc_table.items() if isinstance(s, ProducerStream) and s.ssrc == ssrc]

    async def _run_rtcp(self) -> None:
        """Receiver reports (+REMB) to a publisher, sender reports to a subscriber, once a second."""
        try:
            while not self.closed:
                await asyncio.sleep(RTCP_INTERVAL_S * (0.75 + random.random() / 2))
                try:
                    for consumer, change in self.rtcp_tick(time.monotonic()):
                        if self._on_consumer_change is not None:
                            self._on_consumer_change(consumer, change)
                except Exception:
                    log.exception("transport %s: RTCP tick failed", self.transport_id)
        except asyncio.CancelledError:
            pass

    def rtcp_tick(self, now: float) -> list[tuple[Consumer, str]]:
        """Send this second's RTCP; returns consumer state changes ``(consumer, change)``."""
        writer = self.writer
        changes: list[tuple[Consumer, str]] = []
        if not writer.is_open:
            return changes
        packets: list[Any] = []
        if self.direction == "send":
            streams = [s for s in self.streams() if s.ssrc is not None and s.stats.received]
            if streams:
                reports = [s.stats.report_block(now) for s in streams]
                packets.append(RtcpRrPacket(ssrc=self.rtcp_ssrc, reports=reports[:31]))
                if not self.arrivals.active:  # a publisher on transport-cc gets its feedback instead
                    packets.append(RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=self.rtcp_ssrc, media_ssrc=0,
                                                  fci=pack_remb_fci(PUBLISHER_REMB_BPS, [s.ssrc for s in streams])))
        else:
            twcc = self.twcc_active(now)
            if twcc:
                self._measure_probes(now)
                self._share_estimate(now)
            else:
                for consumer in self.consumers.values():
                    consumer.on_congestion(False, now)
                    if consumer.gate is not None:
                        consumer.gate.measured = False
            self._update_rtx_budget(twcc, now)
            ntp = current_ntp_time()
            for consumer in list(self.consumers.values()):
                change = consumer.tick(now)
                if change:
                    changes.append((consumer, change))
                if twcc:
                    self._schedule_probe_result(consumer, now)
                sr = consumer.sender_report(ntp, now)
                if sr is not None:
                    packets.append(sr)
            if packets:
                packets.append(RtcpSdesPacket(chunks=[RtcpSourceInfo(
                    ssrc=packets[0].ssrc, items=[(1, self.cname.encode())])]))
        if packets:
            writer.send_rtcp(b"".join(bytes(p) for p in packets))
        return changes

    # ------------------------------------------------------------------ link quality

    def sample(self, now: float) -> dict[str, Any]:
        """Loss, RTT, jitter and bitrate of this transport now (for the main classroom's grid and the records)."""
        loss = 0.0
        jitter_ms = 0.0
        rtt: list[float] = []
        bitrate = 0
        repair = {"retransmitted": 0, "rtx_suppressed": 0, "nack_misses": 0, "lost": 0}
        uplink = {"nacks_sent": 0, "recovered": 0, "nack_given_up": 0}
        if self.direction == "send":
            for s in self.streams():
                if s.ssrc is None:
                    continue
                if s.nack is not None:
                    uplink["nacks_sent"] += s.nack.nacks_sent
                    uplink["recovered"] += s.nack.recovered
                    uplink["nack_given_up"] += s.nack.given_up
                loss = max(loss, s.stats.loss_fraction)
                jitter_ms = max(jitter_ms, s.stats.jitter_ms)
                bitrate += s.stats.bitrate_bps(now)
        else:
            for c in self.consumers.values():
                loss = max(loss, c.stats.loss_fraction)
                jitter_ms = max(jitter_ms, c.stats.jitter_ms)
                if c.stats.rtt_ms is not None:
                    rtt.append(c.stats.rtt_ms)
                repair["retransmitted"] += c.retransmitted
                repair["rtx_suppressed"] += c.rtx_suppressed
                repair["nack_misses"] += c.nack_misses
                repair["lost"] += max(0, c.stats.cumulative_lost)
            writer = self.writer
            sent = writer.sent_bytes
            last_bytes, last_t = self._last_sample
            if now > last_t:
                bitrate = int((sent - last_bytes) * 8 / (now - last_t))
            self._last_sample = (sent, now)
        return {
            "transport_id": self.transport_id, "participant_id": self.participant_id,
            "direction": self.direction, "state": self.state,
            "loss": round(min(1.0, max(0.0, loss)), 4), "rtt_ms": int(sum(rtt) / len(rtt)) if rtt else 0,
            "jitter_ms": int(jitter_ms), "bitrate_kbps": max(0, bitrate // 1000),
            "paused_video": sum(1 for c in self.consumers.values() if c.paused),
            **repair, **uplink,
            "estimate_kbps": (int(self.estimator.target_bps) // 1000
                              if self.direction == "recv" and self.twcc_active(now) else None),
            "dropped_datagrams": self.dropped_datagrams(),
        }

    def dropped_datagrams(self) -> int:
        """Datagrams dropped at this transport's sockets: by the door (:mod:`media.demux`), failing
        SRTP authentication, or with a header the SFU could not read."""
        dtls = self._dtls
        door = sum(demux.dropped(dtls.transport._connection).values()) if dtls is not None else 0
        return door + self.reader.failed + self.malformed_rtp

    @property
    def srtp_errors(self) -> int:
        """Datagrams from the selected pair that SRTP refused (authentication, replay, length)."""
        return self.reader.failed
