"""Hostile datagrams at the SFU's media ports do not take a lesson's media down.

Anyone who can reach a media port can send it anything: nothing, one byte, random bytes,
truncated RTP/RTCP/DTLS records, STUN with bad attributes, RTP with an SSRC nobody announced;
from an address ICE never checked, or from the very address of the selected pair.  While
that goes on, a receiving classroom keeps decoding the teacher's camera and the teacher
keeps decoding the classroom's, at the rate they are filmed, and the SFU counts what it
dropped.  aiortc clients against a server the test starts, on 127.0.0.1 only; the foreign
sender is 127.0.0.2.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from typing import Any

import pylibsrtp
import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError

from tests.media.hostile import corpus, mutants, signed_garbage
from tests.media.sfu_harness import (  # noqa: F401 - the fixtures of the SFU tests
    Lesson,
    db_url,
    lesson,
    loopback_clients,
    media_workers,
    settings,
)
from tests.media.sfu_helpers import GREEN, RED, ColorTrack, close_to, mean_rgb
from tests.media.test_teardown import play
from tests.utils.wait import until

FOREIGN = "127.0.0.2"
"""A loopback address ICE never saw: a host on the path, or anywhere when the allowed networks are "any"."""
ROUNDS = 10
ROUND_S = 0.4
"""The fuzz window: ROUNDS rounds, one every ROUND_S (bounded: a few thousand datagrams in all)."""
MUTANTS = 12
"""Random bit-flipped copies of corpus datagrams per round, per port and sender."""
SIGNED = 40
"""SRTP-protected garbage per round from each client's selected pair."""


def server_ports(pc: RTCPeerConnection) -> set[tuple[str, int]]:
    """Every address the SFU offered for this connection (its candidates in the remote description)."""
    ports = set()
    for line in pc.remoteDescription.sdp.splitlines():
        if line.startswith("a=candidate:"):
            fields = line.split()
            ports.add((fields[4], int(fields[5])))
    return ports


def selected_pair(pc: RTCPeerConnection) -> tuple[Any, Any]:
    """The client's selected ICE pair of ``pc`` (aioice's: its socket sends from the address the SFU
    accepted) and the client's SRTP session that protects what it sends."""
    dtls = pc.getTransceivers()[0].sender.transport
    return dtls.transport._connection._nominated[1], dtls._tx_srtp


class Watch:
    """Decodes a track without pause and notes when each frame came and what colour it was."""

    def __init__(self, track: MediaStreamTrack) -> None:
        self.seen: list[tuple[float, tuple[int, int, int]]] = []
        self.task = asyncio.get_running_loop().create_task(self._run(track))

    async def _run(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return  # the track ended: no more frames (what the rates then show)
            self.seen.append((time.monotonic(), mean_rgb(frame)))

    async def started(self, count: int = 5, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.seen) < count:
            assert time.monotonic() < deadline, f"only {len(self.seen)} frames decoded"
            await asyncio.sleep(0.05)

    def between(self, t0: float, t1: float) -> list[tuple[int, int, int]]:
        return [rgb for t, rgb in self.seen if t0 <= t < t1]


class Fuzzer:
    """Sends the hostile datagrams: from 127.0.0.2 to every SFU port, and from the clients' selected pairs."""

    def __init__(self, targets: set[tuple[str, int]], pairs: list[Any]) -> None:
        self.rng = random.Random(12)
        self.corpus = corpus(self.rng)
        self.targets = sorted(targets)
        self.pairs = pairs
        self.foreign = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.foreign.bind((FOREIGN, 0))
        self.foreign.setblocking(False)
        self.sent = 0
        self.seq = 1

    def round(self) -> None:
        for target in self.targets:
            for data in self.corpus + mutants(self.rng, self.corpus, MUTANTS):
                self._send(lambda d, t=target: self.foreign.sendto(d, t), data)
        for pair, srtp in self.pairs:  # from the selected pair's address: the very socket it uses
            send = (lambda d, p=pair: p.protocol.transport.sendto(d, p.remote_addr))
            for data in self.corpus + mutants(self.rng, self.corpus, MUTANTS):
                self._send(send, data)
            # and what a broken or malicious participant sends, protected with its own SRTP keys
            for plain, rtcp in signed_garbage(self.rng, SIGNED, self.seq):
                try:
                    data = srtp.protect_rtcp(plain) if rtcp else srtp.protect(plain)
                except pylibsrtp.Error:
                    continue
                self._send(send, data)
            self.seq += SIGNED

    def _send(self, send: Any, data: bytes) -> None:
        try:
            send(data)
            self.sent += 1
        except BlockingIOError:
            pass  # the socket buffer is full: that one is not sent

    def close(self) -> None:
        self.foreign.close()


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING
            and r.name.split(".")[0] in ("asyncio", "aioice", "aiortc", "media", "signaling")]


@pytest.mark.parametrize("media_workers", [0, 1], ids=["in-process", "worker-process"])
def test_hostile_datagrams_at_every_media_port_do_not_stop_the_media(
        lesson: Lesson, media_workers: int, app: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    w = lesson.world
    dropped: dict[str, int] = {}

    def on_event(index: int, event: str, data: dict[str, Any]) -> None:
        if event == "stats":
            for sample in data.get("transports") or []:
                dropped[sample["transport_id"]] = sample.get("dropped_datagrams", 0)

    app.state.media.add_listener(on_event)

    async def scenario() -> None:
        main = await lesson.join(w.teacher)
        rural = await lesson.join(w.terminal_recv)
        teacher_camera, rural_camera = ColorTrack(RED), ColorTrack(GREEN)
        await main.publish({"camera": teacher_camera})
        await rural.publish({"camera": rural_camera})
        await rural.subscribe([{"participant_id": main.participant_id, "source": "camera"}])
        await main.subscribe([{"participant_id": rural.participant_id, "source": "camera"}])
        at_rural = Watch(await rural.track(main.participant_id, "camera"))
        at_main = Watch(await main.track(rural.participant_id, "camera"))
        await at_rural.started()
        await at_main.started()
        pcs = [main.publisher, main.subscriber, rural.publisher, rural.subscriber]
        targets = set().union(*(server_ports(pc) for pc in pcs))
        assert len(targets) == 4, targets  # each participant's send and recv transport
        fuzzer = Fuzzer(targets, [selected_pair(pc) for pc in pcs])

        before = time.monotonic()
        await asyncio.sleep(2.0)
        filmed = teacher_camera.sent
        start = time.monotonic()
        try:
            for _ in range(ROUNDS):
                fuzzer.round()
                await asyncio.sleep(ROUND_S)
        finally:
            fuzzer.close()
        end = time.monotonic()
        filmed = (teacher_camera.sent - filmed) / (end - start)
        await asyncio.sleep(2.0)
        after = time.monotonic()

        assert fuzzer.sent > ROUNDS * len(targets) * len(fuzzer.corpus), fuzzer.sent
        for name, watch, colour in (("receiving classroom", at_rural, RED), ("teacher", at_main, GREEN)):
            rate_before = len(watch.between(before, start)) / (start - before)
            during = watch.between(start, end)
            rate_during = len(during) / (end - start)
            rate_after = len(watch.between(end, after)) / (after - end)
            rates = f"{name}: {rate_before:.1f} fps before, {rate_during:.1f} during, {rate_after:.1f} after" \
                    f" (filmed {filmed:.1f} fps, {fuzzer.sent} datagrams)"
            assert rate_before > 0.6 * filmed, rates
            assert rate_during > 0.75 * rate_before, rates
            assert rate_after > 0.75 * rate_before, rates
            assert all(close_to(rgb, colour) for rgb in during + watch.between(end, after)), rates
        for pc in pcs:
            assert pc.connectionState == "connected", pc.connectionState

        # the SFU says what it dropped, on each participant's transports
        await until(lambda: f"drops reported on all four transports: {dropped}",
                    lambda: sum(1 for n in dropped.values() if n > 0) >= 4, 8, interval=0.1)
        for watch in (at_rural, at_main):
            watch.task.cancel()

    play(lesson, scenario)
    assert not errors(caplog), errors(caplog)[:20]
