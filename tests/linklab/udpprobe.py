"""A UDP probe run inside a lab namespace (``python -m tests.linklab.udpprobe MODE ...``).

Modes (each bounded in time, each prints one JSON line on stdout at the end):

``echo --port P --seconds S``
    answers every datagram with the same bytes.
``ping --to HOST:PORT --count N --interval-ms I --wait-s W``
    sends N numbered probes, collects the answers; prints the sequence numbers in arrival order and
    each answer's round-trip time in ms.
``sink --port P --seconds S``
    counts datagrams; prints (arrival time since the first, bytes) pairs.
``blast --to HOST:PORT --kbit R --seconds S --size B``
    sends B-byte datagrams at R kbit/s.

It must not send anywhere but the address it is given (inside the lab).
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import time

HEADER = struct.Struct("!Id")
SO_RCVBUFFORCE = 33


def _big_buffer(sock: socket.socket) -> None:
    """4 MiB of receive buffer (past rmem_max as root), so a loaded machine does not drop probes here."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 4 << 20)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)


def _addr(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host, int(port)


def echo(port: int, seconds: float) -> dict:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    _big_buffer(sock)
    sock.bind(("0.0.0.0", port))
    sock.settimeout(0.2)
    end = time.monotonic() + seconds
    count = 0
    while time.monotonic() < end:
        try:
            data, peer = sock.recvfrom(65535)
        except TimeoutError:
            continue
        sock.sendto(data, peer)
        count += 1
    return {"echoed": count}


def ping(to: tuple[str, int], count: int, interval_ms: float, wait_s: float, size: int) -> dict:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    _big_buffer(sock)
    sock.setblocking(False)
    order: list[int] = []
    rtts: list[float] = []
    pad = b"\0" * max(0, size - HEADER.size)
    start = time.monotonic()
    sent = 0

    def receive() -> None:
        while True:
            try:
                data = sock.recv(65535)
            except BlockingIOError:
                return
            seq, t = HEADER.unpack_from(data)
            order.append(seq)
            rtts.append((time.monotonic() - t) * 1000.0)

    while sent < count:
        due = start + sent * interval_ms / 1000.0
        now = time.monotonic()
        if now >= due:
            sock.sendto(HEADER.pack(sent, now) + pad, to)
            sent += 1
        else:
            time.sleep(min(due - now, 0.001))
        receive()
    end = time.monotonic() + wait_s
    while time.monotonic() < end and len(order) < count:
        time.sleep(0.005)
        receive()
    return {"sent": sent, "order": order, "rtt_ms": rtts}


def sink(port: int, seconds: float) -> dict:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    _big_buffer(sock)
    sock.bind(("0.0.0.0", port))
    sock.settimeout(0.2)
    end = time.monotonic() + seconds
    arrivals: list[tuple[float, int]] = []
    first = None
    while time.monotonic() < end:
        try:
            data = sock.recv(65535)
        except TimeoutError:
            continue
        now = time.monotonic()
        first = now if first is None else first
        arrivals.append((now - first, len(data)))
    return {"arrivals": arrivals}


def blast(to: tuple[str, int], kbit: float, seconds: float, size: int) -> dict:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    interval = size * 8 / (kbit * 1000.0)
    start = time.monotonic()
    sent = 0
    payload = b"\0" * size
    while True:
        due = start + sent * interval
        if due - start >= seconds:
            break
        now = time.monotonic()
        if now < due:
            time.sleep(due - now)
        sock.sendto(payload, to)
        sent += 1
    return {"sent": sent}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["echo", "ping", "sink", "blast"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--to", type=_addr)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--interval-ms", type=float, default=10)
    parser.add_argument("--wait-s", type=float, default=2)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--kbit", type=float, default=1000)
    args = parser.parse_args()
    if args.mode == "echo":
        out = echo(args.port, args.seconds)
    elif args.mode == "ping":
        out = ping(args.to, args.count, args.interval_ms, args.wait_s, args.size)
    elif args.mode == "sink":
        out = sink(args.port, args.seconds)
    else:
        out = blast(args.to, args.kbit, args.seconds, args.size)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
