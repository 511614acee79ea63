"""The weak link's middle: a user-space Ethernet bridge that delays and drops frames.

Runs as its own process inside the lab's middle network namespace (``bench/linklab.py`` starts it
with ``ip netns exec``): one ``AF_PACKET`` socket on each of the two veths, every IPv4 frame read on
one side is written to the other after that direction's impairment; ARP and anything else pass at
once. This kernel has no ``sch_netem``, so this process is what makes a link "far" and "lossy";
bandwidth caps are the kernel's ``tbf`` on the same veths (set by the lab, not here).

Per direction (``down`` = server side → classroom side, ``up`` = classroom → server):

- delay = ``delay_ms`` ± uniform ``jitter_ms``, released in FIFO order (a frame never overtakes an
  earlier one: its release time is at least the previous frame's);
- Bernoulli loss ``loss``;
- Gilbert–Elliott bursts: a two-state chain stepped once per frame, ``p_gb`` (good → bad) and
  ``p_bg`` (bad → good), losing ``loss_bad`` in the bad state (on top of ``loss``);
- ``blackout``: every IPv4 frame is lost.

The condition is a small JSON file (``{"down": {...}, "up": {...}}``) that the lab rewrites
atomically while a test runs; it is re-read when its inode or mtime changes (checked every 20 ms).
On SIGUSR1 and on exit (SIGTERM/SIGINT) the counters (frames seen, dropped, forwarded, cap drops per
direction, and the dropped RTP packets by payload type, so a benchmark can tell lost video from lost
audio or retransmissions) are written to the statistics file as JSON.

This module must not log per packet, configure interfaces or touch any namespace but its own.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import signal
import socket
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23
SO_RCVBUFFORCE = 33
RCVBUF = 4 * 1024 * 1024
CONTROL_CHECK_S = 0.02
MAX_QUEUE = 20000
"""Frames held per direction at most (a 4 s queue at 5,000 frames/s); beyond that new frames drop."""


@dataclass
class Impairment:
    """One direction's condition (all probabilities in 0..1)."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    p_gb: float = 0.0
    p_bg: float = 1.0
    loss_bad: float = 1.0
    blackout: bool = False

    @classmethod
    def parse(cls, data: dict) -> Impairment:
        if not isinstance(data, dict):
            raise ValueError("an impairment is a JSON object")
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown impairment fields: {sorted(unknown)}")
        imp = cls(**{k: (bool(v) if k == "blackout" else float(v)) for k, v in data.items()})
        for name in ("loss", "p_gb", "p_bg", "loss_bad"):
            if not 0.0 <= getattr(imp, name) <= 1.0:
                raise ValueError(f"{name} must be within 0..1")
        if imp.delay_ms < 0 or imp.jitter_ms < 0 or imp.jitter_ms > imp.delay_ms:
            raise ValueError("need 0 <= jitter_ms <= delay_ms")
        return imp


@dataclass
class Counters:
    seen: int = 0
    forwarded: int = 0
    dropped_loss: int = 0
    dropped_burst: int = 0
    dropped_blackout: int = 0
    dropped_queue: int = 0
    dropped_cap: int = 0
    passed_other: int = 0
    dropped_rtp_pt: dict = field(default_factory=dict)
    """Dropped RTP packets by payload type (RTP over UDP over IPv4, RTCP excluded)."""


def rtp_payload_type(frame: bytes) -> int:
    """The RTP payload type of an Ethernet/IPv4/UDP frame carrying RTP, else -1 (RTCP, STUN, DTLS, ...)."""
    if len(frame) < 34 or frame[23] != 17:
        return -1
    off = 14 + (frame[14] & 0x0F) * 4 + 8
    if len(frame) < off + 2 or frame[off] & 0xC0 != 0x80:
        return -1
    pt = frame[off + 1] & 0x7F
    return -1 if 64 <= pt <= 95 else pt


@dataclass
class Direction:
    """One direction's state: its condition, Gilbert–Elliott state, FIFO queue, counters."""

    name: str
    imp: Impairment = field(default_factory=Impairment)
    bad: bool = False
    last_release: float = 0.0
    queue: deque = field(default_factory=deque)
    counters: Counters = field(default_factory=Counters)

    def _count_rtp_drop(self, frame: bytes) -> None:
        pt = rtp_payload_type(frame)
        if pt >= 0:
            drops = self.counters.dropped_rtp_pt
            drops[pt] = drops.get(pt, 0) + 1

    def admit(self, frame: bytes, now: float, rng: random.Random) -> None:
        """Decide the fate of one IPv4 frame: drop it, or queue it with its release time."""
        c = self.counters
        imp = self.imp
        c.seen += 1
        # the burst chain steps once per frame, even during a blackout, so bursts stay independent
        if self.bad:
            if rng.random() < imp.p_bg:
                self.bad = False
        elif imp.p_gb > 0.0 and rng.random() < imp.p_gb:
            self.bad = True
        if imp.blackout:
            c.dropped_blackout += 1
            self._count_rtp_drop(frame)
            return
        if self.bad and rng.random() < imp.loss_bad:
            c.dropped_burst += 1
            self._count_rtp_drop(frame)
            return
        if imp.loss > 0.0 and rng.random() < imp.loss:
            c.dropped_loss += 1
            self._count_rtp_drop(frame)
            return
        if len(self.queue) >= MAX_QUEUE:
            c.dropped_queue += 1
            return
        delay = imp.delay_ms
        if imp.jitter_ms > 0.0:
            delay += rng.uniform(-imp.jitter_ms, imp.jitter_ms)
        release = now + delay / 1000.0
        if release < self.last_release:
            release = self.last_release
        self.last_release = release
        self.queue.append((release, frame))


def open_socket(ifname: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:  # root: past net.core.rmem_max, so a loaded machine's scheduling gaps do not overflow it
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, RCVBUF)
    try:  # Linux >= 4.20: our own writes never come back to us
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    except OSError:
        pass
    sock.bind((ifname, ETH_P_ALL))
    sock.setblocking(False)
    return sock


class Bridge:
    def __init__(self, if_server: str, if_classroom: str, control: Path, stats: Path, seed: int | None) -> None:
        self.control = control
        self.stats = stats
        self.rng = random.Random(seed)
        self.server = open_socket(if_server)
        self.classroom = open_socket(if_classroom)
        self.down = Direction("down")  # read on the server side, written to the classroom side
        self.up = Direction("up")
        self.control_key: tuple[int, int] | None = None
        self.control_errors = 0
        self.running = True
        self.dump_requested = False
        self.read_control()

    def read_control(self) -> None:
        try:
            st = os.stat(self.control)
        except FileNotFoundError:
            return
        key = (st.st_ino, st.st_mtime_ns)
        if key == self.control_key:
            return
        self.control_key = key
        try:
            data = json.loads(self.control.read_text())
            down = Impairment.parse(data.get("down", {}))
            up = Impairment.parse(data.get("up", {}))
        except (OSError, ValueError) as exc:
            self.control_errors += 1
            print(f"linkbridge: control file ignored: {exc}", file=sys.stderr, flush=True)
            return
        self.down.imp, self.up.imp = down, up

    def write_stats(self) -> None:
        out = {
            "down": asdict(self.down.counters),
            "up": asdict(self.up.counters),
            "queued": {"down": len(self.down.queue), "up": len(self.up.queue)},
            "control_errors": self.control_errors,
        }
        tmp = self.stats.with_suffix(".tmp")
        tmp.write_text(json.dumps(out))
        os.replace(tmp, self.stats)

    def _drain(self, sock: socket.socket, direction: Direction, out: socket.socket, now: float) -> None:
        admit = direction.admit
        rng = self.rng
        for _ in range(256):  # bounded: the other side and the timers get their turn
            try:
                frame, addr = sock.recvfrom(65535)
            except BlockingIOError:
                return
            if addr[2] == PACKET_OUTGOING:
                continue
            if len(frame) >= 14 and frame[12] == 0x08 and frame[13] == 0x00:
                admit(frame, now, rng)
            else:  # ARP and the rest: through at once
                direction.counters.passed_other += 1
                try:
                    out.send(frame)
                except OSError:
                    pass

    @staticmethod
    def _release(direction: Direction, out: socket.socket, now: float) -> None:
        queue = direction.queue
        c = direction.counters
        while queue and queue[0][0] <= now:
            _, frame = queue.popleft()
            try:
                out.send(frame)
                c.forwarded += 1
            except OSError:  # ENOBUFS: the tbf queue behind this veth is full (the cap's drop)
                c.dropped_cap += 1
                direction._count_rtp_drop(frame)

    def run(self) -> None:
        poller = select.epoll()
        poller.register(self.server.fileno(), select.EPOLLIN)
        poller.register(self.classroom.fileno(), select.EPOLLIN)
        server_fd = self.server.fileno()
        next_control = time.monotonic() + CONTROL_CHECK_S
        while self.running:
            now = time.monotonic()
            wake = next_control
            for d in (self.down, self.up):
                if d.queue and d.queue[0][0] < wake:
                    wake = d.queue[0][0]
            timeout = max(0.0, wake - now)
            try:
                events = poller.poll(timeout)
            except InterruptedError:
                events = []
            now = time.monotonic()
            for fd, _ in events:
                if fd == server_fd:
                    self._drain(self.server, self.down, self.classroom, now)
                else:
                    self._drain(self.classroom, self.up, self.server, now)
            self._release(self.down, self.classroom, now)
            self._release(self.up, self.server, now)
            if now >= next_control:
                next_control = now + CONTROL_CHECK_S
                self.read_control()
            if self.dump_requested:
                self.dump_requested = False
                self.write_stats()
        self.write_stats()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server-if", required=True, help="the veth towards the server namespace")
    parser.add_argument("--classroom-if", required=True, help="the veth towards the classroom namespace")
    parser.add_argument("--control", type=Path, required=True, help="the JSON condition file")
    parser.add_argument("--stats", type=Path, required=True, help="where the counters are written")
    parser.add_argument("--ready", type=Path, help="a file created once both sockets are open")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    bridge = Bridge(args.server_if, args.classroom_if, args.control, args.stats, args.seed)

    def stop(_sig: int, _frame: object) -> None:
        bridge.running = False

    def dump(_sig: int, _frame: object) -> None:
        bridge.dump_requested = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGUSR1, dump)
    if args.ready:
        args.ready.write_text(str(os.getpid()))
    bridge.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
