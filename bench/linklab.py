"""The weak-link lab: three network namespaces joined through an impairing user-space bridge.

``LinkLab`` (a context manager) owns the topology and its teardown::

    server ns  [lab0 10.77.0.1] ── veth ── [to-srv] middle ns [to-cls] ── veth ── [lab0 10.77.0.2]  classroom ns
                                           (no IP; bench/linkbridge.py;
                                            tbf on each egress for caps)

- the namespaces get unique names per run (``sklab-<pid>-<random>-srv|mid|cls``), so a crashed run
  never blocks the next; a lab whose creating process is gone is deleted by the next lab that starts;
- all four veth ends have their offloads off (``ethtool``), so the middle sees real-sized frames with
  finished checksums;
- ``set_condition(down=..., up=...)`` rewrites the bridge's JSON control file atomically (delay,
  jitter, Bernoulli loss, Gilbert–Elliott bursts, blackout per direction); ``set_cap(down_kbit,
  up_kbit)`` puts or removes ``tbf`` on the middle veths;
- ``popen(ns, argv)`` / ``run(ns, argv)`` start programs inside a namespace (``ip netns exec``);
  every process started with ``popen`` is stopped at teardown;
- teardown (on exit, on an exception, on KeyboardInterrupt) stops those processes and the bridge,
  keeps the bridge's counters in ``stats``, and deletes the namespaces (and so the veths).

Nothing is configured in the root namespace. This module must not impair packets itself (that is
``bench/linkbridge.py``) nor know about SanKe.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from bench.linkbridge import Impairment

REPO = Path(__file__).resolve().parent.parent
PREFIX = "sklab-"
SUBNET = "10.77.0.0/24"
SERVER_ADDRESS = "10.77.0.1"
CLASSROOM_ADDRESS = "10.77.0.2"
LAB_IF = "lab0"
MID_SERVER_IF = "to-srv"
MID_CLASSROOM_IF = "to-cls"

__all__ = ["Impairment", "LinkLab", "LabUnavailable", "netns_available", "stale_labs"]


class LabUnavailable(RuntimeError):
    """This machine cannot host the lab (not root, no ``ip netns``, no veth)."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def netns_available() -> str | None:
    """None when the lab can run here, else why not."""
    if os.geteuid() != 0:
        return "not root"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "iproute2 (ip, tc) missing"
    if shutil.which("ethtool") is None:
        return "ethtool missing (Debian package ethtool)"
    name = f"{PREFIX}{os.getpid()}-probe"
    done = _ip("netns", "add", name, check=False)
    if done.returncode != 0:
        return f"ip netns add failed: {done.stderr.strip()}"
    _ip("netns", "del", name, check=False)
    return None


def list_namespaces() -> list[str]:
    done = _ip("netns", "list", check=False)
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


def stale_labs() -> list[str]:
    """Lab namespaces whose creating process is gone (a crashed run's)."""
    stale = []
    for name in list_namespaces():
        if not name.startswith(PREFIX):
            continue
        pid = name[len(PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            stale.append(name)
    return stale


class LinkLab:
    """The lab's topology, condition and processes; see the module docstring."""

    def __init__(self, *, seed: int | None = None, workdir: Path | None = None) -> None:
        tag = f"{os.getpid()}-{secrets.token_hex(2)}"
        self.server_ns = f"{PREFIX}{tag}-srv"
        self.middle_ns = f"{PREFIX}{tag}-mid"
        self.classroom_ns = f"{PREFIX}{tag}-cls"
        self.server_address = SERVER_ADDRESS
        self.classroom_address = CLASSROOM_ADDRESS
        self.subnet = SUBNET
        self.seed = seed
        self._own_dir = workdir is None
        self.dir = Path(tempfile.mkdtemp(prefix="sklab-")) if workdir is None else workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.control = self.dir / "condition.json"
        self.stats_file = self.dir / "bridge-stats.json"
        self.bridge_log = self.dir / "bridge.log"
        self.bridge: subprocess.Popen[bytes] | None = None
        self.processes: list[subprocess.Popen[Any]] = []
        self.stats: dict[str, Any] = {}
        self.down = Impairment()
        self.up = Impairment()
        self._created: list[str] = []

    # --- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> LinkLab:
        why = netns_available()
        if why:
            raise LabUnavailable(why)
        for name in stale_labs():
            _ip("netns", "del", name, check=False)
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _build(self) -> None:
        for ns in (self.server_ns, self.middle_ns, self.classroom_ns):
            _ip("netns", "add", ns)
            self._created.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        # veths are created inside the middle namespace with their peer placed straight into the end
        # namespace: no interface ever exists in the root namespace
        _ip("-n", self.middle_ns, "link", "add", MID_SERVER_IF, "type", "veth", "peer", "name", LAB_IF,
            "netns", self.server_ns)
        _ip("-n", self.middle_ns, "link", "add", MID_CLASSROOM_IF, "type", "veth", "peer", "name", LAB_IF,
            "netns", self.classroom_ns)
        for ns, dev in ((self.middle_ns, MID_SERVER_IF), (self.middle_ns, MID_CLASSROOM_IF),
                        (self.server_ns, LAB_IF), (self.classroom_ns, LAB_IF)):
            self.run(ns, ["ethtool", "-K", dev, "tx", "off", "rx", "off", "tso", "off", "gso", "off",
                          "gro", "off"])
            _ip("-n", ns, "link", "set", dev, "up")
        _ip("-n", self.server_ns, "addr", "add", f"{self.server_address}/24", "dev", LAB_IF)
        _ip("-n", self.classroom_ns, "addr", "add", f"{self.classroom_address}/24", "dev", LAB_IF)
        self._write_condition()
        ready = self.dir / "bridge.ready"
        log = self.bridge_log.open("wb")
        self.bridge = subprocess.Popen(
            ["ip", "netns", "exec", self.middle_ns, sys.executable, "-m", "bench.linkbridge",
             "--server-if", MID_SERVER_IF, "--classroom-if", MID_CLASSROOM_IF, "--control", str(self.control),
             "--stats", str(self.stats_file), "--ready", str(ready),
             *(["--seed", str(self.seed)] if self.seed is not None else [])],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 20
        while not ready.exists():
            if self.bridge.poll() is not None:
                raise RuntimeError(f"the bridge exited: {self.bridge_log.read_text(errors='replace')}")
            if time.monotonic() > deadline:
                raise RuntimeError("the bridge did not start within 20 s")
            time.sleep(0.05)

    def close(self) -> None:
        """Stop every process the lab started, keep the bridge's counters, delete the namespaces."""
        for proc in reversed(self.processes):
            _stop(proc)
        self.processes.clear()
        if self.bridge is not None:
            _stop(self.bridge, timeout=5)
            try:
                self.stats = json.loads(self.stats_file.read_text())
            except (OSError, ValueError):
                pass
            self.bridge = None
        for ns in reversed(self._created):
            # processes left in a namespace would keep it alive past `ip netns del`: kill them first
            pids = _ip("netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            _ip("netns", "del", ns, check=False)
        self._created.clear()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    # --- processes -------------------------------------------------------------------------------

    def command(self, ns: str, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", ns, *argv]

    def popen(self, ns: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside ``ns``, in its own process group; stopped at teardown."""
        kwargs.setdefault("start_new_session", True)
        kwargs.setdefault("cwd", REPO)
        proc = subprocess.Popen(self.command(ns, argv), **kwargs)
        self.processes.append(proc)
        return proc

    def run(self, ns: str, argv: Sequence[str], *, timeout: float = 60,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self.command(ns, argv), capture_output=True, text=True, timeout=timeout, cwd=REPO)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} in {ns}: exit {done.returncode}: {done.stderr.strip()}")
        return done

    def stop(self, proc: subprocess.Popen[Any], timeout: float = 10) -> None:
        _stop(proc, timeout)
        if proc in self.processes:
            self.processes.remove(proc)

    # --- condition -------------------------------------------------------------------------------

    def set_condition(self, down: Impairment | None = None, up: Impairment | None = None) -> None:
        """Replace the condition of either direction (None keeps it); applied within ~20 ms."""
        if down is not None:
            self.down = down
        if up is not None:
            self.up = up
        self._write_condition()

    def set_both(self, imp: Impairment) -> None:
        """The same condition both ways (e.g. half the RTT as ``delay_ms``)."""
        self.set_condition(down=imp, up=imp)

    def blackout(self, on: bool = True) -> None:
        """All IPv4 lost both ways (or back to the conditions before)."""
        self.down = replace(self.down, blackout=on)
        self.up = replace(self.up, blackout=on)
        self._write_condition()

    def _write_condition(self) -> None:
        tmp = self.control.with_suffix(".tmp")
        tmp.write_text(json.dumps({"down": asdict(self.down), "up": asdict(self.up)}))
        os.replace(tmp, self.control)

    def wait_applied(self) -> None:
        """Sleep past the bridge's control-file check interval, so the condition is in force."""
        time.sleep(0.06)

    def bridge_stats(self, timeout: float = 5) -> dict[str, Any]:
        """The bridge's counters now (asks it with SIGUSR1 and waits for the file to change)."""
        if self.bridge is None:
            return self.stats
        before = self.stats_file.stat().st_mtime_ns if self.stats_file.exists() else 0
        os.kill(self.bridge.pid, signal.SIGUSR1)  # `ip netns exec` execs: its pid is the bridge's
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stats_file.exists() and self.stats_file.stat().st_mtime_ns != before:
                try:
                    return json.loads(self.stats_file.read_text())
                except ValueError:
                    pass
            time.sleep(0.02)
        raise RuntimeError("the bridge did not write its counters")

    # --- bandwidth caps --------------------------------------------------------------------------

    def set_cap(self, down_kbit: int | None = None, up_kbit: int | None = None) -> None:
        """Cap each direction with ``tbf`` on the middle veth's egress (None: no cap)."""
        for dev, kbit in ((MID_CLASSROOM_IF, down_kbit), (MID_SERVER_IF, up_kbit)):
            self.run(self.middle_ns, ["tc", "qdisc", "del", "dev", dev, "root"], check=False)
            if kbit:
                # burst: at least a few full frames, else ~20 ms at the rate; queue: 250 ms at the rate
                burst = max(4500, kbit * 1000 // 8 // 50)
                self.run(self.middle_ns, ["tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", f"{kbit}kbit",
                                          "burst", str(burst), "latency", "250ms"])


def _stop(proc: subprocess.Popen[Any], timeout: float = 10) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)
