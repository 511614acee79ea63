"""Janus (Debian package ``janus``, VideoRoom plugin) as a fan-out benchmark target.

The bench writes a trimmed config folder (only VideoRoom and the HTTP transport on 127.0.0.1,
admin API off, no event handlers or loggers, ICE on 127.0.0.2 only, IPv6 off, no STUN/TURN, mDNS
ignored) and starts ``janus -F <folder> -N -L <log>`` itself; it stops Janus by its PID.

Signalling is Janus's JSON API over plain HTTP (long-poll for events) with a tiny asyncio client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription

from bench.fanout_common import (
    BENCH_ADDRESS,
    RESULTS_DIR,
    CountingSubscriber,
    ice_policy,
)

JANUS_BIN = "/usr/bin/janus"
JANUS_LIB = Path("/usr/lib/x86_64-linux-gnu/janus")
HTTP_HOST = "127.0.0.1"
HTTP_PORT = 8088
ROOM = 4242


def ensure_janus_installed() -> None:
    """``apt-get install -y janus`` when ``/usr/bin/janus`` is missing (``apt-get update`` first if needed)."""
    if os.path.exists(JANUS_BIN):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    print("janus: /usr/bin/janus missing, installing the Debian package", flush=True)
    if (
        subprocess.run(
            ["apt-get", "install", "-y", "janus"], env=env, check=False
        ).returncode
        != 0
    ):
        subprocess.run(["apt-get", "update"], env=env, check=True)
        subprocess.run(["apt-get", "install", "-y", "janus"], env=env, check=True)


def _lib_dir(kind: str) -> Path:
    arch = Path("/usr/lib") / (os.uname().machine + "-linux-gnu") / "janus" / kind
    return arch if arch.exists() else JANUS_LIB / kind


def write_config(folder: Path, max_subscribers: int = 200) -> None:
    """A trimmed Janus config folder; plugins/transports folders hold only what we load."""
    plugins = folder / "plugins"
    transports = folder / "transports"
    empty = folder / "empty"
    for d in (plugins, transports, empty):
        d.mkdir(parents=True, exist_ok=True)
    (plugins / "libjanus_videoroom.so").symlink_to(
        _lib_dir("plugins") / "libjanus_videoroom.so"
    )
    (transports / "libjanus_http.so").symlink_to(
        _lib_dir("transports") / "libjanus_http.so"
    )
    (folder / "janus.jcfg").write_text(
        f"""general: {{
	configs_folder = "{folder}"
	plugins_folder = "{plugins}"
	transports_folder = "{transports}"
	events_folder = "{empty}"
	loggers_folder = "{empty}"
	debug_level = 3
	session_timeout = 60
}}
certificates: {{
}}
media: {{
	ipv6 = false
	ipv6_linklocal = false
}}
nat: {{
	nice_debug = false
	ice_enforce_list = "{BENCH_ADDRESS}"
	ignore_mdns = true
	full_trickle = false
}}
plugins: {{
}}
transports: {{
}}
loggers: {{
	disable = "*"
}}
events: {{
	broadcast = false
}}
"""
    )
    (folder / "janus.transport.http.jcfg").write_text(
        f"""general: {{
	json = "plain"
	base_path = "/janus"
	http = true
	port = {HTTP_PORT}
	ip = "{HTTP_HOST}"
	https = false
}}
admin: {{
	admin_http = false
	admin_https = false
}}
cors: {{
}}
"""
    )
    (folder / "janus.plugin.videoroom.jcfg").write_text(
        f"""general: {{
}}
room-{ROOM}: {{
	description = "SanKe fan-out bench"
	publishers = 4
	bitrate = 0
	fir_freq = 0
	videocodec = "vp8"
	audiocodec = "opus"
	record = false
	notify_joining = false
	require_pvtid = false
	max_subscribers = {max_subscribers}
}}
"""
    )


# ---------------------------------------------------------------------- minimal HTTP/JSON client


async def http_json(
    method: str, path: str, body: Any = None, timeout: float = 10.0
) -> Any:
    """One request to Janus's HTTP API (``Connection: close``); returns the decoded JSON body."""

    async def run() -> Any:
        reader, writer = await asyncio.open_connection(HTTP_HOST, HTTP_PORT)
        try:
            payload = b"" if body is None else json.dumps(body).encode()
            head = (
                f"{method} {path} HTTP/1.1\r\nHost: {HTTP_HOST}:{HTTP_PORT}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode() + payload)
            await writer.drain()
            raw = await reader.read()
        finally:
            writer.close()
        header, _, content = raw.partition(b"\r\n\r\n")
        lines = header.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {
            k.strip().lower(): v.strip()
            for k, _, v in (line.partition(":") for line in lines[1:])
        }
        if headers.get("transfer-encoding", "").lower() == "chunked":
            content = _dechunk(content)
        if status != 200:
            raise RuntimeError(f"janus HTTP {status}: {content[:200]!r}")
        return json.loads(content)

    return await asyncio.wait_for(run(), timeout)


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return bytes(out)


def _tx() -> str:
    return secrets.token_hex(8)


class JanusSession:
    """A Janus session with a long-poll event loop; events are dispatched by transaction."""

    def __init__(self) -> None:
        self.id: int | None = None
        self._waiters: dict[str, asyncio.Future] = {}
        self._poll_task: asyncio.Task | None = None
        self._keepalive_task: asyncio.Task | None = None
        self.trickles: dict[int, list[dict]] = {}

    async def create(self) -> None:
        reply = await http_json(
            "POST", "/janus", {"janus": "create", "transaction": _tx()}
        )
        if reply.get("janus") != "success":
            raise RuntimeError(f"janus create: {reply}")
        self.id = reply["data"]["id"]
        self._poll_task = asyncio.ensure_future(self._poll())
        self._keepalive_task = asyncio.ensure_future(self._keepalive())

    async def _poll(self) -> None:
        while True:
            try:
                events = await http_json(
                    "GET", f"/janus/{self.id}?maxev=20&rid={time.time_ns()}", timeout=40
                )
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - retry (bounded by the session's lifetime)
                await asyncio.sleep(0.2)
                continue
            if isinstance(events, dict):
                events = [events]
            for event in events:
                self._dispatch(event)

    def _dispatch(self, event: dict) -> None:
        kind = event.get("janus")
        if kind == "trickle":
            self.trickles.setdefault(event.get("sender", 0), []).append(
                event.get("candidate") or {}
            )
            return
        if kind in (
            "keepalive",
            "ack",
            "webrtcup",
            "media",
            "slowlink",
            "hangup",
            "detached",
        ):
            return
        tx = event.get("transaction")
        waiter = self._waiters.pop(tx, None) if tx else None
        if waiter is not None and not waiter.done():
            waiter.set_result(event)

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(25)
            with contextlib.suppress(Exception):
                await http_json(
                    "POST",
                    f"/janus/{self.id}",
                    {"janus": "keepalive", "transaction": _tx()},
                )

    async def attach(self) -> int:
        reply = await http_json(
            "POST",
            f"/janus/{self.id}",
            {
                "janus": "attach",
                "plugin": "janus.plugin.videoroom",
                "transaction": _tx(),
            },
        )
        if reply.get("janus") != "success":
            raise RuntimeError(f"janus attach: {reply}")
        return reply["data"]["id"]

    async def message(
        self, handle: int, body: dict, jsep: dict | None = None, timeout: float = 15.0
    ) -> dict:
        """Send a plugin message and return its (asynchronous) event, or the synchronous reply."""
        tx = _tx()
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[tx] = waiter
        request: dict[str, Any] = {"janus": "message", "body": body, "transaction": tx}
        if jsep is not None:
            request["jsep"] = jsep
        reply = await http_json("POST", f"/janus/{self.id}/{handle}", request)
        if reply.get("janus") == "success":  # synchronous plugin reply
            self._waiters.pop(tx, None)
            return reply
        if reply.get("janus") != "ack":
            self._waiters.pop(tx, None)
            raise RuntimeError(f"janus message: {reply}")
        try:
            return await asyncio.wait_for(waiter, timeout)
        finally:
            self._waiters.pop(tx, None)

    async def trickle_completed(self, handle: int) -> None:
        await http_json(
            "POST",
            f"/janus/{self.id}/{handle}",
            {
                "janus": "trickle",
                "candidate": {"completed": True},
                "transaction": _tx(),
            },
        )

    async def destroy(self) -> None:
        for task in (self._poll_task, self._keepalive_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self.id is not None:
            with contextlib.suppress(Exception):
                await http_json(
                    "POST",
                    f"/janus/{self.id}",
                    {"janus": "destroy", "transaction": _tx()},
                    timeout=3,
                )


def _plugin_data(event: dict) -> dict:
    data = event.get("plugindata", {}).get("data", {})
    if data.get("videoroom") == "event" and "error" in data:
        raise RuntimeError(f"janus videoroom: {data['error']}")
    return data


def _check_remote(sdp: str) -> str:
    from media.ice import check_remote_sdp

    return check_remote_sdp(sdp, ice_policy())


def _filter_local(sdp: str) -> str:
    from media.ice import filter_local_sdp

    return filter_local_sdp(sdp, ice_policy())


# ---------------------------------------------------------------------- the target


class JanusTarget:
    name = "janus"

    def __init__(self, spec: dict[str, Any] | None = None) -> None:
        self._spec = spec or {}
        self._proc: subprocess.Popen | None = None
        self._dir: Path | None = None
        self._session: JanusSession | None = None
        self._publisher_id: int | None = None
        self._session_lock = asyncio.Lock()
        self.log_path: Path | None = None

    # -------------------------------------------------------------- main process

    async def start(self) -> None:
        ensure_janus_installed()
        self._dir = Path(tempfile.mkdtemp(prefix="sanke-bench-janus-"))
        write_config(self._dir)
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = RESULTS_DIR / "janus.log"  # kept after the run (git-ignored)
        self._proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once
            [JANUS_BIN, "-F", str(self._dir), "-N", "-L", str(self.log_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"janus exited with {self._proc.returncode}; log: {self.log_path}"
                )
            try:
                info = await http_json("GET", "/janus/info", timeout=2)
                if info.get("janus") == "server_info":
                    break
            except Exception:  # noqa: BLE001, S110 - not up yet
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"janus HTTP API did not come up; log: {self.log_path}"
                )
            await asyncio.sleep(0.2)
        self._session = JanusSession()
        await self._session.create()

    async def publish(self, pc: RTCPeerConnection) -> None:
        assert self._session is not None
        handle = await self._session.attach()
        joined = _plugin_data(
            await self._session.message(
                handle,
                {
                    "request": "join",
                    "ptype": "publisher",
                    "room": ROOM,
                    "display": "bench",
                },
            )
        )
        if joined.get("videoroom") != "joined":
            raise RuntimeError(f"janus publisher join: {joined}")
        self._publisher_id = joined["id"]
        await pc.setLocalDescription(await pc.createOffer())
        offer = {"type": "offer", "sdp": _filter_local(pc.localDescription.sdp)}
        event = await self._session.message(
            handle, {"request": "configure", "audio": True, "video": True}, offer
        )
        _plugin_data(event)
        jsep = event.get("jsep")
        if not jsep or jsep.get("type") != "answer":
            raise RuntimeError(f"janus configure: no answer in {event}")
        await pc.setRemoteDescription(
            RTCSessionDescription(sdp=_check_remote(jsep["sdp"]), type="answer")
        )

    def spec(self) -> dict[str, Any]:
        return {"room": ROOM, "feed": self._publisher_id}

    def pids(self) -> list[int]:
        return (
            [self._proc.pid]
            if self._proc is not None and self._proc.poll() is None
            else []
        )

    async def stop(self) -> None:
        try:
            if self._session is not None:
                await self._session.destroy()
                self._session = None
        finally:
            proc = self._proc
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    await asyncio.to_thread(proc.wait, 5)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    await asyncio.to_thread(proc.wait, 5)
            self._proc = None
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None

    # -------------------------------------------------------------- subscriber processes

    @classmethod
    def attach(cls, spec: dict[str, Any]) -> JanusTarget:
        return cls(spec)

    async def subscribe(self, sub: CountingSubscriber) -> None:
        async with (
            self._session_lock
        ):  # subscribers join concurrently: one session per process
            if self._session is None:
                session = JanusSession()
                await session.create()
                self._session = session
        session = self._session
        handle = await session.attach()
        event = await session.message(
            handle,
            {
                "request": "join",
                "ptype": "subscriber",
                "room": self._spec["room"],
                "streams": [{"feed": self._spec["feed"]}],
            },
        )
        _plugin_data(event)
        jsep = event.get("jsep")
        if not jsep or jsep.get("type") != "offer":
            raise RuntimeError(f"janus subscriber join: no offer in {event}")
        await sub.pc.setRemoteDescription(
            RTCSessionDescription(sdp=_check_remote(jsep["sdp"]), type="offer")
        )
        await sub.pc.setLocalDescription(await sub.pc.createAnswer())
        answer = {"type": "answer", "sdp": _filter_local(sub.pc.localDescription.sdp)}
        started = _plugin_data(
            await session.message(handle, {"request": "start"}, answer)
        )
        if started.get("started") != "ok" and started.get("videoroom") != "event":
            raise RuntimeError(f"janus subscriber start: {started}")
        await session.trickle_completed(handle)

    async def detach(self) -> None:
        if self._session is not None:
            await self._session.destroy()
            self._session = None
