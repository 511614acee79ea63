"""A media Worker: the routers of the lessons placed on it, behind a request/notification channel.

A worker runs in its own process (``media.worker_process``; ``sanke serve``
starts one per core) or, for tests and small machines, in the server process
over the same channel code.  Signaling never touches media objects: it sends
requests naming a router, transport, producer or consumer by id, and gets
notifications (``offer``, ``transport_state``, ``consumer_state``, ``stats``,
``producer_added``, ``producer_closed``, ``recording_stopped``, ``hls_refused``, ``speech``: the audio
producers speaking, ``media.speech``) back.  That keeps a lesson's media
movable to another process or node.

Requests (``method``: params → result):

- ``router.create``: ``router_id`` → {}
- ``router.close``: ``router_id`` → {}
- ``transport.create``: ``router_id, transport_id, participant_id, direction`` (``send``|``recv``) → {}
- ``transport.close``: ``router_id, transport_id`` → {}
- ``transport.publish``: ``router_id, transport_id, sdp, publications`` → ``{sdp, producers}``
- ``transport.set_consumers``: ``router_id, transport_id, consumers`` → ``{offer}`` (the offer or null)
- ``transport.answer``: ``router_id, transport_id, sdp`` → ``{offer}`` (a follow-up offer or null)
- ``transport.add_candidate``: ``router_id, transport_id, candidate, sdp_mid, sdp_mline_index`` → {}
- ``producer.pause``: ``router_id, producer_id, paused`` → {}
- ``producer.snapshot``: ``router_id, producer_id`` → ``{mime, layer, frame}``: the newest keyframe, encoded,
  base64 (``media.snapshot``; the caller decodes it)
- ``router.record``: ``router_id, directory, producer_ids, hls`` → {}: record these producers (now and when
  re-created) into files under ``directory`` (``media.recorder``); called again, adds producers; ``hls``
  (first call): also write the LL-HLS stream in ``directory``/hls (``media.hls``); a camera or screen it
  cannot stream (VP8) is notified as ``hls_refused`` ``{source, codec, reason}``
- ``router.record_stop``: ``router_id`` → the recording's summary ``{directory, started_at, files,
  duration_s, size}`` (with ``hls``: ``{directory, renditions, refused, playlists}`` too) or ``{}`` when
  none ran (``router.close`` ends a recording too and notifies
  ``recording_stopped`` with the summary)
- ``router.stats``: ``router_id`` → ``{transports: [sample, ...]}``
- ``router.dump``: ``router_id`` → counters for tests and operators
- ``pipe.create``: ``router_id, pipe_id, host`` → ``{host, port, key}``: one end of a pipe to the lesson's
  router on another worker or node (``media.pipe``), its UDP socket bound on ``host``, ``key`` the SRTP
  key it sends with
- ``pipe.connect``: ``router_id, pipe_id, host, port, key`` → {}: the other end's address and key
- ``pipe.consume``: ``router_id, pipe_id, producer_ids`` → ``{producers: [description, ...]}``: pipe these
  producers out (origin side)
- ``pipe.produce``: ``router_id, pipe_id, producers`` (descriptions from ``pipe.consume``) → {}: the pipe
  producers on the far side, bound to the consumers that want their ids
- ``pipe.close_producers``: ``router_id, pipe_id, producer_ids`` → {}
- ``pipe.close``: ``router_id, pipe_id`` → {}
- ``pipe.drop``: ``router_id, pipe_id, every`` → {}: fault injection for tests, every n-th video packet
  arriving at this end is dropped (0: none)
- ``worker.load``: {} → this worker's load and counters (:mod:`media.load`: routers, transports,
  producers, consumers, CPU time, forwarded packets and bytes, losses), for the node's heartbeat
  and ``/metrics``
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from media.channel import ChannelError
from media.ice import IcePolicy
from media.load import LoadMeter
from media.router import Router, RouterError
from media.snapshot import capture

log = logging.getLogger(__name__)

STATS_INTERVAL_S = 2.0
SPEECH_INTERVAL_S = 1.0
"""Speech activity is judged per second (``media.speech``)."""


class Worker:
    def __init__(self, *, policy: IcePolicy, emit: Callable[[str, dict[str, Any]], None]) -> None:
        self.policy = policy
        self._emit = emit
        self.routers: dict[str, Router] = {}
        self.meter = LoadMeter()
        self._stats_task: asyncio.Task[None] | None = None
        self._speech_task: asyncio.Task[None] | None = None
        self.closed = False

    def load(self) -> int:
        return sum(len(r.transports) for r in self.routers.values())

    def _router(self, params: dict[str, Any]) -> Router:
        router = self.routers.get(str(params.get("router_id")))
        if router is None:
            raise ChannelError("not_found", f"no router {params.get('router_id')}")
        return router

    async def handle(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if self.closed:
            raise ChannelError("closed", "worker is closing")
        if self._stats_task is None:
            self._stats_task = asyncio.get_running_loop().create_task(self._run_stats())
            self._speech_task = asyncio.get_running_loop().create_task(self._run_speech())
        try:
            return await self._dispatch(method, params)
        except RouterError as exc:
            raise ChannelError(exc.code, exc.message) from None
        except (KeyError, TypeError) as exc:
            raise ChannelError("bad_request", f"{method}: missing or bad parameter {exc}") from None

    async def _dispatch(self, method: str, p: dict[str, Any]) -> dict[str, Any]:
        if method == "worker.load":
            return self.meter.read(self.routers.values())
        if method == "router.create":
            router_id = str(p["router_id"])
            if router_id not in self.routers:
                self.routers[router_id] = Router(router_id, self.policy, self._emit)
            return {}
        if method == "router.close":
            router = self.routers.pop(str(p["router_id"]), None)
            if router is not None:
                self.meter.retire(router.transports.values())
                await router.close()
            return {}
        router = self._router(p)
        if method == "transport.create":
            router.create_transport(str(p["transport_id"]), str(p["participant_id"]), str(p["direction"]))
            return {}
        if method == "transport.close":
            transport = router.transports.get(str(p["transport_id"]))
            if transport is not None:
                self.meter.retire([transport])
            await router.close_transport(str(p["transport_id"]))
            return {}
        if method == "transport.publish":
            return await router.publish(str(p["transport_id"]), str(p["sdp"]), list(p.get("publications") or []))
        if method == "transport.set_consumers":
            transport_id = str(p["transport_id"])
            changed = router.set_consumers(transport_id, list(p.get("consumers") or []))
            return {"offer": await router.offer(transport_id) if changed else None}
        if method == "transport.answer":
            return {"offer": await router.answer(str(p["transport_id"]), str(p["sdp"]))}
        if method == "transport.add_candidate":
            await router.add_candidate(str(p["transport_id"]), p.get("candidate"), p.get("sdp_mid"),
                                       p.get("sdp_mline_index"))
            return {}
        if method == "producer.pause":
            router.pause_producer(str(p["producer_id"]), bool(p["paused"]))
            return {}
        if method == "producer.snapshot":
            return await capture(router, str(p["producer_id"]))
        if method == "router.record":
            router.record(str(p["directory"]), [str(x) for x in p.get("producer_ids") or []], hls=bool(p.get("hls")))
            return {}
        if method == "router.record_stop":
            return await router.stop_recording() or {}
        if method.startswith("pipe."):
            return await self._pipe(router, method, p)
        if method == "router.stats":
            return {"transports": router.samples()}
        if method == "router.dump":
            return router.dump()
        raise ChannelError("unknown_method", f"unknown method {method}")

    async def _pipe(self, router: Router, method: str, p: dict[str, Any]) -> dict[str, Any]:
        pipe_id = str(p["pipe_id"])
        if method == "pipe.create":
            return await router.create_pipe(pipe_id, str(p.get("host") or "127.0.0.1"))
        if method == "pipe.connect":
            router.connect_pipe(pipe_id, str(p["host"]), int(p["port"]), str(p["key"]))
            return {}
        if method == "pipe.consume":
            return {"producers": router.pipe_consume(pipe_id, [str(x) for x in p.get("producer_ids") or []])}
        if method == "pipe.produce":
            router.pipe_produce(pipe_id, [dict(d) for d in p.get("producers") or []])
            return {}
        if method == "pipe.close_producers":
            router.pipe_close_producers(pipe_id, [str(x) for x in p.get("producer_ids") or []])
            return {}
        if method == "pipe.close":
            await router.close_pipe(pipe_id)
            return {}
        if method == "pipe.drop":
            router._pipe(pipe_id).drop_every = max(0, int(p.get("every") or 0))
            return {}
        raise ChannelError("unknown_method", f"unknown method {method}")

    async def _run_stats(self) -> None:
        """Link-quality samples of every transport, every couple of seconds (for the grid and the records)."""
        try:
            while not self.closed:
                await asyncio.sleep(STATS_INTERVAL_S)
                for router in list(self.routers.values()):
                    try:
                        samples = router.samples()
                    except Exception:
                        log.exception("worker: sampling router %s failed", router.router_id)
                        continue
                    if samples:
                        self._emit("stats", {"router_id": router.router_id, "transports": samples})
        except asyncio.CancelledError:
            pass

    async def _run_speech(self) -> None:
        """Every second, which audio producers of each router spoke (``media.speech``): a ``speech`` event
        when that changed, and every ``SPEECH_REPEAT_S`` while it did not."""
        try:
            while not self.closed:
                await asyncio.sleep(SPEECH_INTERVAL_S)
                now = time.monotonic()
                for router in list(self.routers.values()):
                    try:
                        speaking = router.speech(now)
                    except Exception:
                        log.exception("worker: speech of router %s failed", router.router_id)
                        continue
                    if speaking is not None:
                        self._emit("speech", {"router_id": router.router_id, "speaking": speaking})
        except asyncio.CancelledError:
            pass

    async def close(self) -> None:
        self.closed = True
        if self._stats_task is not None:
            self._stats_task.cancel()
        if self._speech_task is not None:
            self._speech_task.cancel()
        for router in list(self.routers.values()):
            try:
                await router.close()
            except Exception:
                log.exception("worker: closing router %s failed", router.router_id)
        self.routers.clear()
