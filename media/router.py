"""A Router: the media of one lesson inside a worker.

It owns the lesson's transports, producers and consumers and does the wiring
between them.  A consumer names the producer it wants by id
(``"<participant_id>:<source>"``); the router binds it whenever that producer
exists and the consumer is negotiated, in whichever order those happen, and
re-binds it when the producer is replaced (publisher reconnected) or the
consumer is re-pointed (the on-stage slot moved).  Signaling never handles
producer or consumer objects, only ids, so a router can live in another process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiortc import sdp as aiortc_sdp
from aiortc.exceptions import InvalidStateError

from media.consumer import Consumer
from media.ice import IcePolicy, SdpRejected
from media.pipe import PipeTransport
from media.producer import Producer, ProducerStream
from media.recorder import RoomRecorder
from media.salvage import with_earlier
from media.speech import SpeechMeter
from media.rtp import URI_MID, URI_REPAIRED_RID, URI_RID, read_extension_str
from media.sdp import OfferedMedia, accept_red, accept_simulcast, offer_red, parse_offer, red_payload_types
from media.transport import _IGNORED, WebRtcTransport

log = logging.getLogger(__name__)

Emit = Callable[[str, dict[str, Any]], None]

DEFAULT_MIME = {"audio": "audio/opus", "video": "video/VP8"}
LAYER_ORDER = {"low": 0, "medium": 1, "high": 2}


class RouterError(Exception):
    """A refused request; ``code`` is the signaling error code to answer with."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


SPEECH_REPEAT_S = 10.0
"""The speaking set is told again this often while it does not change (signaling cuts long turns there)."""


class Router:
    def __init__(self, router_id: str, policy: IcePolicy, emit: Emit) -> None:
        self.router_id = router_id
        self.policy = policy
        self._emit = emit
        self.transports: dict[str, WebRtcTransport] = {}
        self.producers: dict[str, Producer] = {}
        self.consumers: dict[str, Consumer] = {}
        self._publications: dict[str, dict[str, dict[str, Any]]] = {}
        """Per send transport: producer_id → publication (source, mid, track_id, rids)."""
        self._offers: dict[str, list[OfferedMedia]] = {}
        self.recorder: RoomRecorder | None = None
        """The lesson's recording (``media.recorder``), while one runs."""
        self.pipes: dict[str, PipeTransport] = {}
        """Pipes to the lesson's routers on other workers (``media.pipe``): this router's producers
        piped out (origin side), or producers piped in as pipe producers (far side)."""
        self._meter = SpeechMeter()
        self._speaking: set[str] = set()
        self._speech_sent = 0.0
        self._offering: set[asyncio.Task[None]] = set()
        """Offers the router makes of its own accord (``_recodec``), kept until sent."""
        self.closed = False

    def emit(self, event: str, data: dict[str, Any]) -> None:
        data = {"router_id": self.router_id, **data}
        try:
            self._emit(event, data)
        except Exception:
            log.exception("router %s: emitting %s failed", self.router_id, event)

    # ------------------------------------------------------------------ transports

    def create_transport(self, transport_id: str, participant_id: str, direction: str) -> WebRtcTransport:
        if transport_id in self.transports:
            raise RouterError("conflict", f"transport {transport_id} exists")
        transport = WebRtcTransport(
            transport_id, participant_id, direction, self.policy,
            on_state=self._transport_state, on_discover=self._discover,
            on_consumer_ready=self._consumer_ready, on_consumer_change=self._consumer_change,
        )
        self.transports[transport_id] = transport
        return transport

    def transport(self, transport_id: str) -> WebRtcTransport:
        transport = self.transports.get(transport_id)
        if transport is None:
            raise RouterError("not_found", f"no transport {transport_id}")
        return transport

    async def close_transport(self, transport_id: str) -> None:
        transport = self.transports.pop(transport_id, None)
        if transport is None:
            return
        for producer in [p for p in self.producers.values() if p.transport is transport]:
            self._close_producer(producer)
        for consumer_id in list(transport.consumers):
            self.consumers.pop(consumer_id, None)
        self._publications.pop(transport_id, None)
        self._offers.pop(transport_id, None)
        await transport.close()

    def _transport_state(self, transport: WebRtcTransport, state: str) -> None:
        log.info("router %s: transport %s (%s) %s", self.router_id, transport.transport_id, transport.direction, state)
        self.emit("transport_state", {"transport_id": transport.transport_id,
                                      "participant_id": transport.participant_id, "state": state})

    # ------------------------------------------------------------------ publishing

    async def publish(self, transport_id: str, sdp: str, publications: list[dict[str, Any]]) -> dict[str, Any]:
        """Apply a publisher's offer; create, keep or close its producers; return the answer."""
        transport = self.transport(transport_id)
        if transport.direction != "send":
            raise RouterError("bad_sdp", "offers are accepted on a send transport only")
        if transport.pc_closed:
            raise RouterError("bad_sdp", "this connection is closed; join again with a new one")
        try:
            offered = parse_offer(sdp)
            answer = await transport.accept_offer(sdp)
        except ValueError as exc:  # SdpRejected is a ValueError
            raise RouterError("bad_sdp", str(exc)[:200]) from None
        except Exception as exc:  # aiortc raises assorted errors on SDP it cannot apply
            log.info("router %s: offer of %s not applied", self.router_id, transport_id, exc_info=True)
            raise RouterError("bad_sdp", f"SDP could not be applied: {type(exc).__name__}") from None
        self._offers[transport_id] = offered
        negotiated = _negotiated(transport.pc.localDescription.sdp)
        answer = accept_red(sdp, accept_simulcast(offered, answer))
        for mid, (red_pt, opus_pt) in red_payload_types(answer).items():
            codecs = negotiated.get(mid)
            if codecs is not None and codecs["pt"] == opus_pt:
                codecs["red_pt"] = red_pt
        pubs = {p["producer_id"]: p for p in publications}
        self._publications[transport_id] = pubs
        by_mid = {m.mid: m for m in offered}
        by_track = {m.msid_track: m for m in offered if m.msid_track}
        live: set[str] = set()
        result: list[dict[str, Any]] = []
        for producer_id, pub in pubs.items():
            media = by_mid.get(pub.get("mid") or "") or by_track.get(pub.get("track_id") or "")
            if media is None or not media.sends or media.mid not in negotiated:
                continue
            codecs = negotiated[media.mid]
            if codecs is None:
                continue
            live.add(producer_id)
            existing = self.producers.get(producer_id)
            if existing is not None and existing.transport is transport and existing.mid == media.mid:
                result.append(_describe(existing))
                continue
            if existing is not None:
                self._close_producer(existing)
            producer = self._create_producer(transport, producer_id, pub, media, codecs)
            result.append(_describe(producer))
        for producer in [p for p in self.producers.values() if p.transport is transport]:
            if producer.producer_id not in live:
                self._close_producer(producer)
        return {"sdp": answer, "producers": result}

    def _create_producer(self, transport: WebRtcTransport, producer_id: str, pub: dict[str, Any],
                         media: OfferedMedia, codecs: dict[str, Any]) -> Producer:
        rids = list(media.rids)
        if rids and pub.get("simulcast"):
            order = {layer["rid"]: LAYER_ORDER.get(layer.get("layer", ""), i)
                     for i, layer in enumerate(pub["simulcast"])}
            rids.sort(key=lambda r: order.get(r, 99))
        layers: list[tuple[str | None, int | None]]
        if rids and media.kind == "video":
            layers = [(rid, None) for rid in rids]
        else:
            layers = [(None, media.ssrcs[0] if media.ssrcs else None)]
        extmap = dict(codecs["extmap"])
        if media.rids:  # accepted by ``accept_simulcast``, unknown to aiortc
            extmap.update({uri: media.extmap[uri] for uri in (URI_RID, URI_REPAIRED_RID) if uri in media.extmap})
        producer = Producer(
            producer_id, transport, kind=media.kind, mid=media.mid, source=str(pub.get("source", "")),
            mime=codecs["mime"], clock_rate=codecs["clock_rate"], payload_type=codecs["pt"],
            rtx_payload_type=codecs["rtx_pt"], extmap=extmap, layers=layers,
            red_payload_type=codecs.get("red_pt") if media.kind == "audio" else None,
        )
        for stream in producer.streams:
            if stream.ssrc is not None:
                transport.ssrc_table[stream.ssrc] = stream
        for rtx, primary in media.rtx_of.items():  # RTX is unwrapped by the stream it repairs
            repaired = next((s for s in producer.streams if s.ssrc == primary), None)
            transport.ssrc_table[rtx] = repaired if repaired is not None else _IGNORED
        self.producers[producer_id] = producer
        self.emit("producer_added", {"producer_id": producer_id, "participant_id": transport.participant_id,
                                     "kind": producer.kind, "layers": len(producer.streams)})
        self._bind_waiting(producer)
        if self.recorder is not None:
            self.recorder.producer_added(producer)
        return producer

    def _bind_waiting(self, producer: Producer) -> None:
        """Bind the negotiated consumers that want ``producer``'s id."""
        now = time.monotonic()
        for consumer in self.consumers.values():
            if consumer.producer_id == producer.producer_id and consumer.ready:
                self._bind(consumer, producer, now)

    def _close_producer(self, producer: Producer) -> None:
        for pipe in self.pipes.values():
            pipe.producer_closed(producer)
        if self.recorder is not None:
            self.recorder.producer_closed(producer)
        for consumer in self.consumers.values():
            if consumer.producer is producer:
                consumer.unbind()
        transport = producer.transport
        for ssrc, stream in list(transport.ssrc_table.items()):
            if isinstance(stream, ProducerStream) and stream.producer is producer:
                del transport.ssrc_table[ssrc]
        producer.close()
        if self.producers.get(producer.producer_id) is producer:
            del self.producers[producer.producer_id]
        self.emit("producer_closed", {"producer_id": producer.producer_id})

    def _discover(self, transport: WebRtcTransport, plain: bytes, ssrc: int) -> ProducerStream | None:
        """An SSRC not in the SDP: find its producer by MID and its layer by RID (RFC 8852)."""
        offered = self._offers.get(transport.transport_id) or []
        if not offered:
            return None
        extmap = offered[0].extmap
        mid_id, rid_id, rrid_id = extmap.get(URI_MID, 0), extmap.get(URI_RID, 0), extmap.get(URI_REPAIRED_RID, 0)
        mid = read_extension_str(plain, mid_id) if mid_id else None
        repaired = read_extension_str(plain, rrid_id) if rrid_id else None
        if repaired is not None:  # the RTX stream of a layer: the layer's stream unwraps it
            for producer in self.producers.values():
                if producer.transport is transport and (mid is None or producer.mid == mid):
                    for stream in producer.streams:
                        if stream.rid == repaired and stream.ssrc is not None:
                            return stream
            return None
        rid = read_extension_str(plain, rid_id) if rid_id else None
        for producer in self.producers.values():
            if producer.transport is not transport or (mid is not None and producer.mid != mid):
                continue
            for stream in producer.streams:
                if stream.ssrc is None and (rid is None or stream.rid == rid):
                    stream.ssrc = ssrc
                    stream.stats.ssrc = ssrc
                    return stream
        return None

    async def add_candidate(self, transport_id: str, candidate: str | None, sdp_mid: str | None,
                            sdp_mline_index: int | None) -> None:
        """A trickled remote candidate; one outside the ICE policy is refused like in SDP."""
        transport = self.transport(transport_id)
        if not candidate or transport.pc_closed:
            return
        try:
            await transport.add_candidate(candidate, sdp_mid, sdp_mline_index)
        except SdpRejected as exc:  # outside the allowed networks: refused like in SDP
            raise RouterError("bad_sdp", str(exc)[:200]) from None
        except ValueError as exc:  # not a candidate line, or aiortc refused it
            raise RouterError("bad_candidate", str(exc)[:200]) from None

    def pause_producer(self, producer_id: str, paused: bool) -> None:
        producer = self.producers.get(producer_id)
        if producer is not None:
            producer.paused = paused

    # ------------------------------------------------------------------ consuming

    def set_consumers(self, transport_id: str, specs: list[dict[str, Any]]) -> bool:
        """Make the transport's consumers exactly ``specs``; True if an offer is needed."""
        transport = self.transport(transport_id)
        if transport.direction != "recv":
            raise RouterError("not_allowed", "consumers live on a recv transport")
        wanted = {s["consumer_id"]: s for s in specs}
        if transport.pc_closed:
            # The subscriber's connection is gone (it is leaving, or will rejoin with a new one): keep
            # the wanted set for the bookkeeping, add nothing to the closed connection, offer nothing.
            wanted = {cid: s for cid, s in wanted.items() if cid in transport.consumers}
        changed = False
        now = time.monotonic()
        for consumer_id in [c for c in transport.consumers if c not in wanted]:
            transport.remove_consumer(consumer_id)
            self.consumers.pop(consumer_id, None)
            changed = True
        for consumer_id, spec in wanted.items():
            producer_id = spec.get("producer_id")
            consumer = transport.consumers.get(consumer_id)
            if consumer is not None:
                consumer.max_layer = spec.get("max_layer")
                consumer.preferred_layer = spec.get("preferred_layer")
                if consumer.gate is not None:
                    consumer.gate.max_layer = consumer.max_layer
                if consumer.producer_id != producer_id:
                    consumer.producer_id = producer_id
                    consumer.unbind()
                    producer = self.producers.get(producer_id) if producer_id else None
                    if producer is not None and consumer.ready:
                        self._bind(consumer, producer, now)
                continue
            kind = spec["kind"]
            consumer = Consumer(consumer_id, transport, kind=kind, producer_id=producer_id,
                                max_layer=spec.get("max_layer"), preferred_layer=spec.get("preferred_layer"))
            producer = self.producers.get(producer_id) if producer_id else None
            transport.add_consumer(consumer, producer.mime if producer is not None else DEFAULT_MIME[kind])
            self.consumers[consumer_id] = consumer
            changed = True
        return changed and not transport.pc_closed

    def _consumer_ready(self, consumer: Consumer) -> None:
        producer = self.producers.get(consumer.producer_id) if consumer.producer_id else None
        if producer is not None:
            self._bind(consumer, producer, time.monotonic())

    def _bind(self, consumer: Consumer, producer: Producer, now: float) -> None:
        if consumer.mime and consumer.mime.lower() != producer.mime.lower():
            self._recodec(consumer, producer)
            return
        consumer.bind(producer, now)

    def _recodec(self, consumer: Consumer, producer: Producer) -> None:
        """A consumer negotiated before its producer existed (a subscription made first, a worker replaced
        before the publisher came back) with another codec than the producer sends (H.264 where VP8 was
        assumed): a new m-line with the producer's codec takes its place, offered to the subscriber at once
        (or after the answer it owes).  Packets are never forwarded under a codec the subscriber did not
        negotiate."""
        log.info("router %s: %s negotiated %s, producer %s sends %s; offered again with %s", self.router_id,
                 consumer.consumer_id, consumer.mime, producer.producer_id, producer.mime, producer.mime)
        transport = consumer.transport
        transport.remove_consumer(consumer.consumer_id, reuse=False)
        fresh = Consumer(consumer.consumer_id, transport, kind=consumer.kind, producer_id=consumer.producer_id,
                         max_layer=consumer.max_layer, preferred_layer=consumer.preferred_layer)
        transport.add_consumer(fresh, producer.mime)
        self.consumers[fresh.consumer_id] = fresh
        task = asyncio.get_running_loop().create_task(self._offer_again(transport.transport_id))
        self._offering.add(task)
        task.add_done_callback(self._offering.discard)

    async def _offer_again(self, transport_id: str) -> None:
        """An offer the router makes of its own accord goes to the subscriber as the ``offer`` event."""
        try:
            offer = await self.offer(transport_id)
        except (RouterError, InvalidStateError) as exc:  # the transport closed meanwhile
            log.info("router %s: no new offer for %s: %s", self.router_id, transport_id, exc)
            return
        if offer is not None:
            self.emit("offer", offer)

    def _consumer_change(self, consumer: Consumer, change: str) -> None:
        gate = consumer.gate
        est = consumer.transport.estimator
        log.info("router %s: consumer %s %s (estimate %s bps, loss %s; path: congested %s, queue %.0f ms, "
                 "loss %.2f, inherent %.2f)", self.router_id, consumer.consumer_id,
                 change, getattr(gate, "estimate_bps", None), getattr(gate, "loss", None),
                 est is not None and est.congested, 1000 * est.standing_queue_s if est is not None else 0.0,
                 est.loss_fraction if est is not None else 0.0, est.inherent_loss if est is not None else 0.0)
        self.emit("consumer_state", {"consumer_id": consumer.consumer_id, "change": change,
                                     "participant_id": consumer.transport.participant_id,
                                     "layer": consumer.stream.layer if consumer.stream is not None else -1})

    async def offer(self, transport_id: str) -> dict[str, Any] | None:
        """Create the subscriber offer now, unless one is out (then once its answer is back)."""
        transport = self.transport(transport_id)
        if transport.pc_closed:
            return None  # the subscriber left or lost its connection: there is nobody to offer to
        if transport.negotiating:
            transport.renegotiate = True
            return None
        transport.negotiating = True
        transport.renegotiate = False
        try:
            sdp = offer_red(await transport.create_offer())
        except InvalidStateError:
            transport.negotiating = False
            if transport.pc_closed:  # closed by the remote end while the offer was being made
                return None
            raise
        tracks = []
        for consumer in transport.consumers.values():
            mid = transport.mid_of(consumer.consumer_id)
            if mid is not None:
                tracks.append({"mid": mid, "consumer_id": consumer.consumer_id,
                               "producer_id": consumer.producer_id, "kind": consumer.kind})
        return {"transport_id": transport_id, "sdp": sdp, "tracks": tracks}

    async def answer(self, transport_id: str, sdp: str) -> dict[str, Any] | None:
        """Apply the subscriber's answer; returns the next offer if consumers changed meanwhile."""
        transport = self.transport(transport_id)
        if transport.pc_closed:
            transport.negotiating = False
            return None  # an answer that crossed the subscriber's own leaving: nothing to apply it to
        if not transport.negotiating:
            raise RouterError("bad_sdp", "no offer is waiting for an answer")
        try:
            transport.red_answered = red_payload_types(sdp)
            await transport.accept_answer(sdp)
        except ValueError as exc:
            raise RouterError("bad_sdp", str(exc)[:200]) from None
        except Exception as exc:
            raise RouterError("bad_sdp", f"SDP could not be applied: {type(exc).__name__}") from None
        finally:
            # An answer that could not be applied leaves the offer waiting: the client may send a
            # corrected one (otherwise its subscriber connection would stay without media).
            transport.negotiating = transport.pc.signalingState == "have-local-offer"
        if transport.renegotiate:
            return await self.offer(transport_id)
        return None

    # ------------------------------------------------------------------ pipes (a lesson on several workers)

    def _pipe(self, pipe_id: str) -> PipeTransport:
        pipe = self.pipes.get(pipe_id)
        if pipe is None:
            raise RouterError("not_found", f"no pipe {pipe_id}")
        return pipe

    async def create_pipe(self, pipe_id: str, host: str) -> dict[str, Any]:
        """A pipe end on ``host`` (an address of this machine): ``{host, port, key}`` for the other end."""
        pipe = self.pipes.get(pipe_id)
        if pipe is None:
            pipe = PipeTransport(pipe_id, self.router_id, host)
            try:
                await pipe.open()
            except OSError as exc:
                raise RouterError("bad_request", f"pipe socket on {host}: {exc}") from None
            self.pipes[pipe_id] = pipe
        assert pipe._sock is not None
        bound_host, port = pipe._sock.getsockname()[:2]
        return {"host": bound_host, "port": port, "key": pipe.key}

    def connect_pipe(self, pipe_id: str, host: str, port: int, key: str) -> None:
        try:
            self._pipe(pipe_id).connect(host, port, key)
        except ValueError as exc:
            raise RouterError("bad_request", str(exc)) from None

    def pipe_consume(self, pipe_id: str, producer_ids: list[str]) -> list[dict[str, Any]]:
        """Pipe these producers of this router out (those that exist); their descriptions for the far end."""
        pipe = self._pipe(pipe_id)
        return [pipe.consume(self.producers[pid]) for pid in producer_ids
                if pid in self.producers and self.producers[pid].transport is not pipe]

    def pipe_produce(self, pipe_id: str, descriptions: list[dict[str, Any]]) -> None:
        """Producers piped in: made (or kept, or replaced) and bound to the consumers that want them."""
        pipe = self._pipe(pipe_id)
        for description in descriptions:
            try:
                producer, replaced = pipe.produce(description)
            except (KeyError, TypeError, ValueError) as exc:
                raise RouterError("bad_request", f"pipe producer: {exc}") from None
            if self.producers.get(producer.producer_id) is producer:
                continue
            old = self.producers.get(producer.producer_id)
            if old is not None:
                self._close_producer(old)
            elif replaced is not None:
                replaced.close()
            self.producers[producer.producer_id] = producer
            self._bind_waiting(producer)

    def pipe_close_producers(self, pipe_id: str, producer_ids: list[str]) -> None:
        pipe = self._pipe(pipe_id)
        for pid in producer_ids:
            pipe.unconsume(pid)
            producer = pipe.close_producer(pid)
            if producer is not None and self.producers.get(pid) is producer:
                self._close_producer(producer)

    async def close_pipe(self, pipe_id: str) -> None:
        pipe = self.pipes.pop(pipe_id, None)
        if pipe is None:
            return
        for producer in list(pipe.producers.values()):
            if self.producers.get(producer.producer_id) is producer:
                self._close_producer(producer)
        await pipe.close()

    # ------------------------------------------------------------------ recording

    def record(self, directory: str, producer_ids: list[str], *, hls: bool = False) -> None:
        """Record these producers (now, and whenever one with such an id is created) into ``directory``;
        ``hls``: the recording is also the lesson's LL-HLS stream (``media.hls``, in ``directory``/hls)."""
        if self.recorder is None or self.recorder.stopped:
            self.recorder = RoomRecorder(self.router_id, Path(directory), asyncio.get_running_loop(), hls=hls,
                                         on_event=self.emit)
        self.recorder.wanted.update(producer_ids)
        self.recorder.want([p for pid, p in self.producers.items() if pid in producer_ids])

    async def stop_recording(self) -> dict[str, Any] | None:
        """End the recording; its summary (``media.recorder.RoomRecorder.stop``), or None if none ran."""
        recorder, self.recorder = self.recorder, None
        if recorder is None:
            return None
        summary = await asyncio.to_thread(with_earlier, recorder.directory, await recorder.stop())
        self.emit("recording_stopped", summary)
        return summary

    def speech(self, now: float) -> list[str] | None:
        """The audio producers that spoke in the last second (``media.speech``), when that set changed or
        ``SPEECH_REPEAT_S`` after it was last told; None otherwise."""
        speaking = self._meter.sample([p for p in self.producers.values() if p.kind == "audio"])
        if speaking == self._speaking and now - self._speech_sent < SPEECH_REPEAT_S:
            return None
        self._speaking = speaking
        self._speech_sent = now
        return sorted(speaking)

    # ------------------------------------------------------------------ stats / close

    def samples(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [t.sample(now) for t in self.transports.values()]

    def dump(self) -> dict[str, Any]:
        return {
            "transports": len(self.transports),
            "producers": {pid: {"layers": [s.ssrc for s in p.streams], "paused": p.paused,
                                "rids": [s.rid for s in p.streams],
                                "received": [s.stats.received for s in p.streams],
                                "fast": [s.fast_packets for s in p.streams],
                                "bitrates": p.layer_bitrates(time.monotonic()),
                                "red_received": [s.red_received for s in p.streams],
                                "nacks_sent": [s.nack.nacks_sent if s.nack else 0 for s in p.streams],
                                "recovered": [s.nack.recovered if s.nack else 0 for s in p.streams]}
                          for pid, p in self.producers.items()},
            "consumers": {cid: {"producer_id": c.producer_id, "bound": c.stream is not None,
                                "paused": c.paused, "sent": c.sent_packets, "red": c.red,
                                "retransmitted": c.retransmitted, "keyframe_requests": c.keyframe_requests,
                                "rtx_suppressed": c.rtx_suppressed, "rtx_over_budget": c.rtx_over_budget,
                                "nack_misses": c.nack_misses,
                                "nack_keyframes": c.nack_keyframes, "outage_keyframes": c.outage_keyframes,
                                "lost": c.stats.cumulative_lost,
                                "layer": c.stream.layer if c.stream is not None else -1,
                                "estimate": c.gate.estimate_bps if c.gate is not None else None,
                                "probes": c.gate.probes if c.gate is not None else 0,
                                "probes_passed": c.gate.probes_passed if c.gate is not None else 0,
                                "probe_packets": c.probe_packets}
                          for cid, c in self.consumers.items()},
            "pipes": {pid: pipe.dump() for pid, pipe in self.pipes.items()},
        }

    async def close(self) -> None:
        self.closed = True
        if self.recorder is not None:
            try:
                await self.stop_recording()
            except Exception:
                log.exception("router %s: ending the recording failed", self.router_id)
        for transport_id in list(self.transports):
            await self.close_transport(transport_id)
        for pipe_id in list(self.pipes):
            await self.close_pipe(pipe_id)


def _describe(producer: Producer) -> dict[str, Any]:
    return {"producer_id": producer.producer_id, "mid": producer.mid, "kind": producer.kind,
            "source": producer.source, "layers": [s.rid for s in producer.streams]}


def _negotiated(answer_sdp: str) -> dict[str, dict[str, Any] | None]:
    """Per mid of our answer: the codec the publisher will send and the header extension ids."""
    result: dict[str, dict[str, Any] | None] = {}
    parsed = aiortc_sdp.SessionDescription.parse(answer_sdp)
    for media in parsed.media:
        mid = media.rtp.muxId
        if not mid or media.kind not in ("audio", "video"):
            continue
        if media.port == 0 or media.direction not in ("recvonly", "sendrecv"):
            result[mid] = None
            continue
        main = next((c for c in media.rtp.codecs if not c.mimeType.lower().endswith("/rtx")), None)
        if main is None:
            result[mid] = None
            continue
        rtx = next((c for c in media.rtp.codecs if c.mimeType.lower().endswith("/rtx")
                    and c.parameters.get("apt") == main.payloadType), None)
        result[mid] = {"mime": main.mimeType, "clock_rate": main.clockRate, "pt": main.payloadType,
                       "rtx_pt": rtx.payloadType if rtx else None,
                       "extmap": {e.uri: e.id for e in media.rtp.headerExtensions}}
    return result
