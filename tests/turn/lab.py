"""A firewalled-school lab for TURN tests: network namespaces, a real coturn, threads inside a namespace.

Two namespaces the test creates and deletes (nothing is configured in the root namespace):

* ``server`` — SanKe's SFU on ``SFU_IP`` and coturn on ``TURN_IP`` (a second address: coturn
  usually runs on a host of its own), coturn listening on 3478 (UDP and TCP) and TLS on 443 with
  a self-signed certificate made here with ``openssl``;
* ``classroom`` — a school whose firewall (``nft``, inside that namespace only) lets out nothing
  but TCP to the ports it is told (coturn's, and SanKe's HTTP for the signaling).

The two are joined by one veth pair created inside them.  Code of the test process reaches a
namespace through :class:`NsThread` (a thread that entered it with ``setns``: sockets it creates
live there); programs run in it with ``ip netns exec``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

SUBNET = "10.78.0.0/24"
SFU_IP = "10.78.0.1"
CLASSROOM_IP = "10.78.0.2"
TURN_IP = "10.78.0.3"
CLONE_NEWNET = 0x40000000


def lab_missing() -> str | None:
    """Why the lab cannot run here (not root, a program missing), or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for program in ("ip", "nft", "turnserver", "openssl"):
        if shutil.which(program) is None:
            return f"{program} is not installed (scripts/test.sh installs coturn, nftables, openssl)"
    return None


def require_lab() -> None:
    """Skip the test when the lab cannot run here; fail instead under ``SANKE_TEST_REQUIRE_TURN=1``
    (``scripts/test.sh`` sets it and installs what is needed) or ``CI``."""
    import pytest

    missing = lab_missing()
    if missing is None:
        return
    if os.environ.get("SANKE_TEST_REQUIRE_TURN") == "1" or os.environ.get("CI"):
        pytest.fail(missing)
    pytest.skip(missing)


def _run(*cmd: str, input_: str | None = None) -> None:
    done = subprocess.run(cmd, input=input_, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")


def enter_netns(name: str) -> None:
    """Move the calling thread (only it) into the network namespace ``name``."""
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


class Lab:
    """The two namespaces and the veth between them; :meth:`close` deletes them (idempotent)."""

    def __init__(self) -> None:
        tag = f"{os.getpid()}-{threading.get_ident() % 10000}"
        self.server = f"sanke-turn-srv-{tag}"
        self.classroom = f"sanke-turn-cls-{tag}"
        self._made: list[str] = []

    def open(self) -> Lab:
        for ns in (self.server, self.classroom):
            _run("ip", "netns", "add", ns)
            self._made.append(ns)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        _run("ip", "-n", self.server, "link", "add", "v-srv", "type", "veth", "peer", "name", "v-cls",
             "netns", self.classroom)
        _run("ip", "-n", self.server, "addr", "add", f"{SFU_IP}/24", "dev", "v-srv")
        _run("ip", "-n", self.server, "addr", "add", f"{TURN_IP}/24", "dev", "v-srv")
        _run("ip", "-n", self.classroom, "addr", "add", f"{CLASSROOM_IP}/24", "dev", "v-cls")
        _run("ip", "-n", self.server, "link", "set", "v-srv", "up")
        _run("ip", "-n", self.classroom, "link", "set", "v-cls", "up")
        return self

    def firewall(self, allowed: Iterable[tuple[str, int]]) -> None:
        """The classroom's firewall: only TCP to the ``(address, port)`` pairs gets out (and its answers
        in); every UDP datagram and anything else is dropped both ways.  Replaces an earlier one."""
        out = "\n".join(f"    ip daddr {a} tcp dport {p} accept" for a, p in allowed)
        back = "\n".join(f"    ip saddr {a} tcp sport {p} accept" for a, p in allowed)
        rules = f"""
table inet school
delete table inet school
table inet school {{
  chain out {{
    type filter hook output priority 0; policy drop;
    oif "lo" accept
{out}
    meta l4proto udp counter name udp_out drop
  }}
  chain in {{
    type filter hook input priority 0; policy drop;
    iif "lo" accept
{back}
  }}
  counter udp_out {{ }}
}}
"""
        _run("ip", "netns", "exec", self.classroom, "nft", "-f", "-", input_=rules)

    def udp_dropped(self) -> int:
        """Datagrams the classroom's firewall refused to let out (its ``udp_out`` counter)."""
        done = subprocess.run(["ip", "netns", "exec", self.classroom, "nft", "list", "counter", "inet", "school",
                               "udp_out"], capture_output=True, text=True, timeout=10)
        for word, value in zip(done.stdout.split(), done.stdout.split()[1:]):
            if word == "packets":
                return int(value)
        raise AssertionError(f"no udp_out counter: {done.stdout} {done.stderr}")

    def close(self) -> None:
        while self._made:
            ns = self._made.pop()
            subprocess.run(["ip", "netns", "pids", ns], capture_output=True, timeout=10)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


class NsThread:
    """Threads inside a namespace for the test: one running calls (``call``), and on demand one
    running an asyncio loop (``start_loop``, ``run``) for aiortc clients."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"ns-{ns}",
                                                           initializer=enter_netns, initargs=(ns,))
        self.loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None

    def call(self, fn: Callable[..., T], *args: Any, timeout: float = 60) -> T:
        return self._pool.submit(fn, *args).result(timeout)

    def start_loop(self) -> None:
        ready = threading.Event()
        failed: list[BaseException] = []

        def serve() -> None:
            try:
                enter_netns(self.ns)
            except BaseException as exc:  # noqa: BLE001 - reported to the starter
                failed.append(exc)
                ready.set()
                return
            loop = self.loop = asyncio.new_event_loop()
            loop.call_soon(ready.set)
            loop.run_forever()
            loop.close()

        self._loop_thread = threading.Thread(target=serve, name=f"ns-loop-{self.ns}", daemon=True)
        self._loop_thread.start()
        if not ready.wait(10) or failed:
            raise RuntimeError(f"the namespace's event loop did not start: {failed}")

    def run(self, coro: Awaitable[T], timeout: float = 60) -> T:
        assert self.loop is not None, "start_loop() first"
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def close(self) -> None:
        if self.loop is not None and self._loop_thread is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._loop_thread.join(10)
        self._pool.shutdown(wait=True, cancel_futures=True)


def run_in_netns(ns: str, fn: Callable[[], None], name: str) -> threading.Thread:
    """Start ``fn`` in a daemon thread that first enters ``ns`` (a server's ``run``)."""

    def target() -> None:
        enter_netns(ns)
        fn()

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread


def wait_tcp(ns_thread: NsThread, address: str, port: int, timeout: float = 15) -> None:
    """Wait until something accepts TCP connections on ``address:port`` (seen from the thread's namespace)."""

    def probe() -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((address, port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"nothing listens on {address}:{port} after {timeout} s") from None
                time.sleep(0.05)

    ns_thread.call(probe, timeout=timeout + 5)


# ----------------------------------------------------------------------------------------- coturn

TURNSERVER_CONF = """\
# written by tests/turn/lab.py — the turnserver.conf of docs/operations.md, on the lab's addresses
listening-ip={turn_ip}
relay-ip={turn_ip}
listening-port=3478
tls-listening-port=443
min-port=49152
max-port=49407
realm=turn.sanke.test
use-auth-secret
static-auth-secret={secret}
cert={cert}
pkey={key}
no-tlsv1
no-tlsv1_1
fingerprint
no-multicast-peers
no-cli
no-software-attribute
denied-peer-ip=0.0.0.0-255.255.255.255
allowed-peer-ip={sfu_ip}
userdb={folder}/turndb
pidfile={folder}/turnserver.pid
log-file=stdout
simple-log
verbose
"""


def self_signed_certificate(folder: Path, ip: str) -> tuple[Path, Path]:
    """A self-signed certificate for ``ip`` (2 days), made with ``openssl``: ``(cert, key)``."""
    cert, key = folder / "turn-cert.pem", folder / "turn-key.pem"
    _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=turn.sanke.test",
         "-addext", f"subjectAltName=IP:{ip}", "-keyout", str(key), "-out", str(cert))
    return cert, key


class Coturn:
    """coturn in the server namespace on ``TURN_IP``: 3478 UDP/TCP, TLS on 443; ``stop`` ends it."""

    def __init__(self, lab: Lab, folder: Path, secret: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        cert, key = self_signed_certificate(folder, TURN_IP)
        self.conf = folder / "turnserver.conf"
        self.conf.write_text(TURNSERVER_CONF.format(turn_ip=TURN_IP, sfu_ip=SFU_IP, secret=secret, cert=cert,
                                                    key=key, folder=folder))
        self.log = folder / "turnserver.log"
        self._out = self.log.open("w")
        self.process = subprocess.Popen(["ip", "netns", "exec", lab.server, "turnserver", "-c", str(self.conf)],
                                        stdout=self._out, stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._out.close()
