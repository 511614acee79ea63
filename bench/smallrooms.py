"""How many 专递课堂 one media worker carries: k small lessons at once, stepped up.

    .venv/bin/python -m bench.smallrooms [--rooms 1,2,4,6,8] [--seconds 10] [--warmup 3] [--procs 2]
                                         [--busy-limit 90]

One 专递课堂 (``LessonKind.dedicated``, recording off) is a main classroom publishing camera
(640x360 VP8 ~500 kbit/s, 30 fps), screen (1280x720 VP8, 5 fps) and microphone (Opus), and three
receiving classrooms publishing camera and microphone. Each classroom subscribes as its page
does (``web/lesson/main.js``, ``web/lesson/listener.js``): the main classroom takes every receiving
classroom's camera and microphone, a receiving classroom takes the main classroom's camera,
microphone and screen. So a room forwards 15 streams (~0.7k packets/s).

The SanKe server runs with one media worker (``SANKE_MEDIA_WORKERS=1``, started as
``bench.fanout_sanke --serve``) on a database booked through ``scheduler.bookings`` (one main
classroom, teacher and three rural receiving classrooms per room, each with its terminal account);
every classroom joins with a fresh join token for its own seat (``scheduler.joining.seat_for``).
Classrooms are aiortc peers spread over ``--procs`` spawned processes (a room stays in one
process); their subscriber connections count RTP instead of decoding it
(:class:`bench.fanout_common.CountingSubscriber`). Runs as root in a private network namespace
(:func:`bench.fanout_common.ensure_netns`), every ICE candidate on 127.0.0.2.

Per step (k rooms, all joined anew) it prints the worker's CPU (% of one core; the idle spare
worker apart), the server process's, the worker CPU per room, loss per subscriber connection
(mean over all, worst one), forwarded packets/s and the machine's busy %; it stops stepping up
when the loss reaches 1 % or the machine is saturated (> 90 % busy). The capacity is reported
twice: measured (the most rooms run under both limits) and extrapolated from the worker's CPU per
room (a line through the steps) to one full core. JSON goes to ``bench/results/smallrooms.json``.

This module owns the benchmark's orchestration and its figures; it does not change the server,
the media worker or ``bench.fanout*`` (it only uses them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

LOSS_LIMIT_PCT = 1.0
"""A step whose loss (all subscriber connections together) reaches this ends the stepping up."""
BUSY_LIMIT_PCT = 90.0
"""A step with the machine busier than this (% of all cores) ends the stepping up: the clients,
not the worker, are then what limits."""
RECEIVERS = 3
CLASSROOMS = 1 + RECEIVERS

CAMERA = {"width": 640, "height": 360, "fps": 30, "bitrate": 500_000, "gop": 60}
"""A classroom camera as the bench sends it (a key frame every 2 s)."""
SCREEN = {"width": 1280, "height": 720, "fps": 5, "bitrate": 300_000, "gop": 25}
"""The main classroom's shared screen: large and slow (a key frame every 5 s)."""
CLIP_SECONDS = 10
SETTLE_S = 3.0
"""A join is over when every classroom receives and no new stream arrived for this long."""

MAIN_SOURCES = ("camera", "screen", "microphone")
RECEIVING_SOURCES = ("camera", "microphone")


def subscriptions(role: str, main: str, receiving: list[str]) -> list[dict[str, str]]:
    """What a classroom of ``role`` asks for, as its page does: the main classroom takes camera and
    microphone of each receiving classroom; a receiving classroom the main one's camera,
    microphone and screen (nobody is on stage in this benchmark)."""
    if role == "main":
        return [{"participant_id": pid, "source": s} for pid in receiving for s in ("camera", "microphone")]
    return [{"participant_id": main, "source": s} for s in ("camera", "microphone", "screen")]


def expected_streams(role: str) -> int:
    """Media streams (SSRCs) a classroom's subscriber connection receives."""
    return len(subscriptions(role, "m", ["r"] * RECEIVERS))


STREAMS_PER_ROOM = expected_streams("main") + RECEIVERS * expected_streams("receiving")


# ---------------------------------------------------------------------- figures


@dataclass
class Row:
    rooms: int
    classrooms_ok: int = 0
    """Classrooms that joined, published and received every stream they asked for."""
    window_s: float = math.nan
    worker_cpu_pct: float = math.nan  # % of one core: the media worker carrying the rooms
    spare_cpu_pct: float = math.nan  # the idle spare worker (and any other worker process)
    server_cpu_pct: float = math.nan  # the server process alone (signaling, HTTP, pool)
    machine_busy_pct: float = math.nan  # % of all cores
    bench_busy_pct: float = math.nan  # % of all cores used by the bench itself (server, workers, clients)
    client_cpu_pct: list[float] = field(default_factory=list)  # per client process
    forwarded_pkts_per_s: float = math.nan  # received by all subscriber connections
    forwarded_kbps: float = math.nan
    loss_pct: float = math.nan  # all subscriber connections together
    loss_pct_mean: float = math.nan  # mean of the per-connection losses
    loss_pct_max: float = math.nan  # worst subscriber connection
    streams_ok: int = 0  # subscriber streams that carried packets in the window (expected: 15 per room)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # classrooms that receive some of their streams only

    @property
    def worker_cpu_per_room(self) -> float:
        return self.worker_cpu_pct / self.rooms if self.rooms else math.nan

    @property
    def complete(self) -> bool:
        return self.classrooms_ok == self.rooms * CLASSROOMS and not math.isnan(self.worker_cpu_pct)


def stop_reason(row: Row, busy_limit: float | None = None) -> str | None:
    """Why stepping up ends after ``row`` (None: go on); ``busy_limit`` replaces BUSY_LIMIT_PCT."""
    limit = BUSY_LIMIT_PCT if busy_limit is None else busy_limit
    if not row.complete:
        return f"only {row.classrooms_ok}/{row.rooms * CLASSROOMS} classrooms joined and received"
    if not row.loss_pct < LOSS_LIMIT_PCT:
        return f"loss {row.loss_pct:.2f} % >= {LOSS_LIMIT_PCT:g} %"
    if row.machine_busy_pct > limit:
        return (f"machine saturated ({row.machine_busy_pct:.0f} % > {limit:g} % busy, "
                f"{_f(row.bench_busy_pct, '.0f')} % of it the bench's own)")
    return None


@dataclass
class Capacity:
    measured_rooms: int
    """The most rooms of a step under both limits (complete, loss < 1 %, machine <= 90 % busy)."""
    base_pct: float
    """Worker CPU with no room (the line's intercept), % of one core."""
    per_room_pct: float
    """Worker CPU per additional room (the line's slope), % of one core."""
    extrapolated_rooms: int
    """Rooms at which the line reaches 100 % of one core."""


def capacity(rows: list[Row], busy_limit: float | None = None) -> Capacity | None:
    """Measured and extrapolated capacity from the steps under the limits (None: no such step).

    The extrapolation is a least-squares line worker CPU = base + per_room·k through those steps
    (one step: through the origin, base 0), solved for 100 % of one core."""
    good = [r for r in rows if stop_reason(r, busy_limit) is None]
    if not good:
        return None
    xs = [float(r.rooms) for r in good]
    ys = [r.worker_cpu_pct for r in good]
    base, slope = 0.0, ys[0] / xs[0]
    if len(set(xs)) >= 2:
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
        base = my - slope * mx
        if slope <= 0 or base < 0:  # noise on a flat line: fall back to the busiest step's ratio
            top = max(good, key=lambda r: r.rooms)
            base, slope = 0.0, top.worker_cpu_pct / top.rooms
    rooms = math.floor((100.0 - base) / slope + 1e-9) if slope > 0 else 0  # (the line's rounding)
    return Capacity(measured_rooms=max(r.rooms for r in good), base_pct=base, per_room_pct=slope,
                    extrapolated_rooms=rooms)


def _f(value: float, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        width = fmt.split(".")[0].rstrip("df")
        return "-".rjust(int(width)) if width.isdigit() else "-"
    return format(value, fmt)


HEADER = (
    f"{'rooms':>5} {'ok':>5} {'streams':>7} {'worker%':>7} {'/room':>6} {'spare%':>6} {'server%':>7} {'mach%':>6} {'bench%':>6} "
    f"{'fwd pkt/s':>9} {'fwd Mbps':>8} {'loss%':>6} {'mean%':>6} {'max%':>6} {'clients cpu%':>13}"
)


def format_row(row: Row) -> str:
    clients = "/".join(f"{c:.0f}" for c in row.client_cpu_pct) or "-"
    return (
        f"{row.rooms:>5} {f'{row.classrooms_ok}/{row.rooms * CLASSROOMS}':>5} "
        f"{f'{row.streams_ok}/{row.rooms * STREAMS_PER_ROOM}':>7} {_f(row.worker_cpu_pct, '7.1f')} "
        f"{_f(row.worker_cpu_per_room, '6.2f')} {_f(row.spare_cpu_pct, '6.1f')} {_f(row.server_cpu_pct, '7.1f')} "
        f"{_f(row.machine_busy_pct, '6.1f')} {_f(row.bench_busy_pct, '6.1f')} {_f(row.forwarded_pkts_per_s, '9.0f')} "
        f"{_f(row.forwarded_kbps / 1000, '8.2f')} {_f(row.loss_pct, '6.2f')} {_f(row.loss_pct_mean, '6.2f')} "
        f"{_f(row.loss_pct_max, '6.2f')} {clients:>13}"
    )


def format_table(rows: list[Row]) -> str:
    return "\n".join([HEADER, "-" * len(HEADER), *(format_row(r) for r in rows)])


def summary(rows: list[Row], stopped: str | None, busy_limit: float | None = None) -> list[str]:
    """The reading of a run: why it stopped, measured and extrapolated capacity."""
    lines = []
    if stopped:
        lines.append(f"stopped stepping up: {stopped}")
    short = [r for r in rows if r.complete and r.streams_ok < r.rooms * STREAMS_PER_ROOM]
    if short:
        lines.append("streams missing (not counted as loss, not forwarded at all): " + ", ".join(
            f"{r.rooms} room(s): {r.rooms * STREAMS_PER_ROOM - r.streams_ok} of {r.rooms * STREAMS_PER_ROOM}"
            for r in short))
    limit = BUSY_LIMIT_PCT if busy_limit is None else busy_limit
    cap = capacity(rows, busy_limit)
    if cap is None:
        lines.append(f"capacity: no step met the limits (complete, loss < 1 %, machine <= {limit:g} % busy)")
        return lines
    top = max((r for r in rows if stop_reason(r, busy_limit) is None), key=lambda r: r.rooms)
    lines.append(
        f"measured: {cap.measured_rooms} room(s) on one worker at {top.worker_cpu_pct:.1f} % of a core, "
        f"loss {top.loss_pct:.2f} % (worst connection {top.loss_pct_max:.2f} %), machine {top.machine_busy_pct:.0f} % busy "
        f"({_f(top.bench_busy_pct, '.0f')} % the bench's own)")
    lines.append(
        f"extrapolated: worker CPU ~ {cap.base_pct:.1f} % + {cap.per_room_pct:.2f} % per room "
        f"-> ~{cap.extrapolated_rooms} rooms at 100 % of one core (if loss stays < {LOSS_LIMIT_PCT:g} %)")
    return lines


def window_stats(stat: dict[str, Any]) -> dict[str, float]:
    """Packets, bytes, expected and received media packets, and streams, of one subscriber
    connection in the window (snapshots as :meth:`CountingSubscriber.snapshot` gives them)."""
    a, b = stat["start"], stat["end"]
    out = {"packets": sum(b["packets"].values()) - sum(a["packets"].values()),
           "bytes": sum(b["bytes"].values()) - sum(a["bytes"].values()),
           "expected": 0, "received": 0, "streams": 0}
    for ssrc, (recv_end, max_end, first_seq, kind) in b["ssrcs"].items():
        if kind not in ("audio", "video"):
            continue
        recv_start, max_start, _, _ = a["ssrcs"].get(ssrc, (0, first_seq - 1, first_seq, kind))
        if max_end > max_start:
            out["streams"] += 1
        out["expected"] += max_end - max_start
        out["received"] += recv_end - recv_start
    return out


def fill_row(row: Row, stats: list[dict[str, Any]]) -> None:
    """Loss and forwarded traffic of a step from every subscriber connection's window."""
    live = [s for s in stats if s["error"] is None]
    losses = []
    packets = nbytes = expected = received = streams = 0
    span = 0.0
    for s in live:
        w = window_stats(s)
        packets += w["packets"]
        nbytes += w["bytes"]
        expected += w["expected"]
        received += w["received"]
        streams += w["streams"]
        span += s["t1"] - s["t0"]
        losses.append(100 * (1 - w["received"] / w["expected"]) if w["expected"] > 0 else 100.0)
    row.streams_ok = streams
    if not live:
        return
    span /= len(live)
    row.forwarded_pkts_per_s = packets / span
    row.forwarded_kbps = nbytes * 8 / span / 1000
    row.loss_pct = 100 * (1 - received / expected) if expected > 0 else 100.0
    row.loss_pct_mean = sum(losses) / len(losses)
    row.loss_pct_max = max(losses)


# ---------------------------------------------------------------------- clips


def load_clips() -> tuple[Any, Any]:
    """(camera clip with the microphone's Opus, screen clip), encoded once and cached in
    ``bench/results/`` (git-ignored)."""
    import pickle

    from bench import fanout_common as common

    out = []
    for name, c in (("camera", CAMERA), ("screen", SCREEN)):
        path = common.RESULTS_DIR / (f"smallrooms-{name}-{c['width']}x{c['height']}-{c['fps']}fps-"
                                     f"{c['bitrate'] // 1000}k-gop{c['gop']}-{CLIP_SECONDS}s.pkl")
        clip = None
        if path.exists():
            with contextlib.suppress(Exception), path.open("rb") as f:
                clip = pickle.load(f)
        if not isinstance(clip, common.Clip):
            clip = common.encode_clip(seconds=CLIP_SECONDS, width=c["width"], height=c["height"], fps=c["fps"],
                                      video_bitrate=c["bitrate"], keyframe_interval=c["gop"])
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            with tmp.open("wb") as f:
                pickle.dump(clip, f)
            tmp.replace(path)
        out.append(clip)
    return out[0], out[1]


# ---------------------------------------------------------------------- the server and its database


def prepare(data_dir: Path, rooms: int) -> list[dict[str, Any]]:
    """Book ``rooms`` 专递课堂 in the same period and open their rooms.

    Per room: a main classroom (urban school) with its teacher and terminal, three receiving
    classrooms (the paired rural school), each with its terminal. Returns per room the lesson and
    its four seats ``(user_id, lesson_role, classroom_id, token_version)``, main first."""
    from datetime import datetime

    from sqlalchemy import select

    from bench.fanout_sanke import _settings
    from scheduler.access import scope_of
    from scheduler.bookings import ReceiverSpec, SeriesSpec, create_series
    from scheduler.joining import seat_for
    from scheduler.models import Classroom, LessonInstance, LessonKind, Role
    from server.core.migrate import migrated_database
    from tests.utils.factory import World, add_user

    out = []
    with migrated_database(_settings(data_dir)) as factory, factory() as s:
        w = World.build(s)
        for i in range(rooms):
            main_room = Classroom(school_id=w.urban.id, name=f"压测主讲教室 {i + 1}", capacity=45)
            receiving = [Classroom(school_id=w.rural.id, name=f"压测接收教室 {i + 1}-{j + 1}", capacity=30)
                         for j in range(RECEIVERS)]
            s.add_all([main_room, *receiving])
            s.flush()
            teacher = add_user(s, f"bench_teacher{i}", Role.teacher, school=w.urban, name=f"压测老师{i + 1}")
            terminals = [add_user(s, f"bench_term{i}_{j}", Role.terminal, classroom=room, name=f"{room.name}终端")
                         for j, room in enumerate([main_room, *receiving])]
            series = create_series(s, SeriesSpec(
                kind=LessonKind.dedicated, recording=False, title=f"专递课堂（压测 {i + 1}）", subject="数学",
                grade="三年级", term_id=w.term.id, main_classroom_id=main_room.id, main_teacher_id=teacher.id,
                weekday=1, period_from=1, period_to=1,
                receivers=tuple(ReceiverSpec(r.id) for r in receiving),
            ), actor=w.urban_admin, scope=scope_of(s, w.urban_admin))
            inst = s.scalars(select(LessonInstance).where(LessonInstance.series_id == series.id)
                             .order_by(LessonInstance.starts_at)).first()
            inst.room_opened_at = datetime.now()
            seats = []
            for user in terminals:
                seat = seat_for(s, user, inst)
                seats.append((user.id, seat.lesson_role, seat.classroom_id, user.token_version or 0))
            out.append({"lesson": inst.id, "seats": seats})
        s.commit()
    return out


def join_tokens(room: dict[str, Any], expires: int) -> list[str]:
    """Fresh join tokens for a room's four classrooms (a token is good for one join)."""
    from bench.fanout_sanke import SECRET
    from server.core.security import JoinClaims, create_join_token

    return [create_join_token(JoinClaims(uid, room["lesson"], role, cid, expires, version), SECRET)
            for uid, role, cid, version in room["seats"]]


class Server:
    """The SanKe server (``bench.fanout_sanke --serve``) with one media worker."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="sanke-smallrooms-")
        self.proc: asyncio.subprocess.Process | None = None
        self.base = ""

    async def start(self) -> None:
        from bench.fanout_sanke import start_server

        self.proc, self.base = await start_server(Path(self.dir))

    def worker_pids(self) -> list[int]:
        """The media worker processes (children of the server running ``media.worker_process``)."""
        from bench.fanout_common import process_tree

        assert self.proc is not None
        pids = []
        for pid in process_tree([self.proc.pid]):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"media.worker_process" in f.read():
                        pids.append(pid)
            except OSError:
                continue
        return pids

    async def stop(self) -> None:
        from bench.fanout_sanke import stop_server

        await stop_server(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------------- client processes


async def _recv(conn: Any, timeout: float) -> Any:
    def get() -> Any:
        if conn.poll(timeout):
            return conn.recv()
        raise TimeoutError(f"no message within {timeout:.0f} s")

    return await asyncio.to_thread(get)


def _client_process(conn: Any, base: str, rooms: list[dict[str, Any]]) -> None:
    """Entry point of a client process (spawned): hosts whole rooms, four classrooms each."""
    try:
        asyncio.run(_client_main(conn, base, rooms))
    except Exception:  # noqa: BLE001 - reported to the orchestrator
        with contextlib.suppress(Exception):
            conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def rotated(packets: list[tuple[bytes, int]], shift: int) -> list[tuple[bytes, int]]:
    """The packet list started ``shift`` packets later (wrapping), on the original time stamps."""
    if not packets:
        return packets
    shift %= len(packets)
    payloads = [p for p, _ in packets[shift:] + packets[:shift]]
    return [(p, pts) for p, (_, pts) in zip(payloads, packets)]


class Terminal:
    """One classroom terminal: a lesson client, its publisher connection and a counting subscriber."""

    def __init__(self, index: int, role: str, token: str, lesson: int, base: str, sources: tuple[str, ...],
                 clips: tuple[Any, Any]) -> None:
        import fractions

        from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCRtpSender

        from bench import fanout_common as common
        from signaling.client import LessonClient

        self.role = role
        self.sub = common.CountingSubscriber(index)
        # one transport for every m-line, as a browser answers the server's BUNDLE offer: aiortc's
        # default (balanced) answer puts the second and later audio m-lines on a transport of their
        # own that never gathers (port 9), and those streams never arrive
        self.sub.pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        common.register_subscriber(self.sub)
        self.publisher = RTCPeerConnection(common.rtc_configuration())
        camera, screen = clips
        clock: dict[str, float] = {}
        tracks = {
            "camera": common.ClipTrack("video", camera.video, fractions.Fraction(1, CAMERA["fps"]),
                                       camera.duration, clock),
            "microphone": common.ClipTrack("audio", rotated(camera.audio, index * 37), common.Clip.audio_time_base,
                                           camera.duration, clock),
            "screen": common.ClipTrack("video", screen.video, fractions.Fraction(1, SCREEN["fps"]),
                                       screen.duration, clock),
        }
        opus = [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType == "audio/opus"]
        vp8 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType in ("video/VP8", "video/rtx")]
        self.transceivers = {}
        for source in sources:
            t = self.publisher.addTransceiver(tracks[source], direction="sendonly")
            t.setCodecPreferences(opus if source == "microphone" else vp8)
            self.transceivers[source] = t
        self.client = LessonClient(base, lesson, token, policy=common.ice_policy(), publisher=self.publisher,
                                   subscriber=self.sub.pc)

    async def join_and_publish(self) -> None:
        await self.client.connect()
        await self.client.negotiate_publisher(self.transceivers)

    def streams(self) -> int:
        return sum(1 for st in self.sub.ssrcs.values() if st.kind in ("audio", "video"))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.close(), 5)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.sub.close(), 5)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.publisher.close(), 5)


async def _client_main(conn: Any, base: str, rooms: list[dict[str, Any]]) -> None:
    from bench import fanout_common as common

    common.apply_ice_policy()
    common.install_counting_hooks()
    clips = load_clips()
    classrooms: list[Terminal] = []
    errors: list[str] = []
    failed: set[int] = set()
    try:
        msg = await _recv(conn, 60)
        assert msg[0] == "join", msg
        deadline = msg[1]
        sem = asyncio.Semaphore(4)
        ok_rooms: list[list[Terminal]] = []

        async def join_room(room: dict[str, Any]) -> None:
            members = [Terminal(room["index"] * CLASSROOMS + j, role, token, room["lesson"], base,
                                 MAIN_SOURCES if role == "main" else RECEIVING_SOURCES, clips)
                       for j, (role, token) in enumerate(zip(room["roles"], room["tokens"]))]
            classrooms.extend(members)

            async def join(c: Terminal) -> None:
                async with sem:
                    await asyncio.wait_for(c.join_and_publish(), max(1.0, deadline - time.monotonic()))

            try:
                await asyncio.gather(*(join(c) for c in members))
                main = next(c for c in members if c.role == "main")
                receiving = [c.client.participant_id for c in members if c.role != "main"]
                for c in members:
                    await c.client.subscribe(subscriptions(c.role, main.client.participant_id, receiving))
                ok_rooms.append(members)
            except Exception as exc:  # noqa: BLE001 - the room counts as not joined
                errors.append(f"room {room['index']}: {type(exc).__name__}: {exc}")
                failed.update(id(c) for c in members)

        await asyncio.gather(*(join_room(r) for r in rooms))
        live = [c for members in ok_rooms for c in members]
        seen, settled = -1, time.monotonic()
        while time.monotonic() < deadline and any(c.streams() < expected_streams(c.role) for c in live):
            total = sum(c.streams() for c in live)
            if total != seen:
                seen, settled = total, time.monotonic()
            elif all(c.streams() for c in live) and time.monotonic() - settled > SETTLE_S:
                break  # every classroom receives; what is still missing does not come
            await asyncio.sleep(0.05)
        notes = []
        for c in classrooms:
            if c not in live or not c.streams():
                c.sub.error = c.sub.error or f"classroom {c.sub.index} ({c.role}): nothing received"
            elif c.streams() < expected_streams(c.role):
                kinds = sorted(st.kind for st in c.sub.ssrcs.values() if st.kind in ("audio", "video"))
                notes.append(f"classroom {c.sub.index} ({c.role}) receives {c.streams()} of "
                             f"{expected_streams(c.role)} streams: {', '.join(kinds)}")
        ok = [c for c in classrooms if c.sub.error is None]
        conn.send(("joined", len(ok), errors + [c.sub.error for c in classrooms if c.sub.error and id(c) not in failed],
                   notes))

        msg = await _recv(conn, 120)
        assert msg[0] == "window", msg
        t0, t1 = msg[1], msg[2]
        await asyncio.sleep(max(0.0, t0 - time.monotonic()))
        start = [c.sub.snapshot() for c in classrooms]
        await asyncio.sleep(max(0.0, t1 - time.monotonic()))
        end = [c.sub.snapshot() for c in classrooms]
        conn.send(("stats", [{"index": c.sub.index, "role": c.role, "error": c.sub.error, "t0": a.t, "t1": b.t,
                              "start": asdict(a), "end": asdict(b)}
                             for c, a, b in zip(classrooms, start, end)]))
        await _recv(conn, 60)
    finally:
        await asyncio.gather(*(c.close() for c in classrooms))


# ---------------------------------------------------------------------- one step


async def run_step(server: Server, booked: list[dict[str, Any]], k: int, args: argparse.Namespace) -> Row:
    from bench import fanout_common as common

    row = Row(rooms=k)
    expires = int(time.time()) + 3600
    rooms = [{"index": i, "lesson": booked[i]["lesson"], "roles": [seat[1] for seat in booked[i]["seats"]],
              "tokens": join_tokens(booked[i], expires)} for i in range(k)]
    n_procs = max(1, min(args.procs, k))
    groups = [rooms[i::n_procs] for i in range(n_procs)]
    ctx = multiprocessing.get_context("spawn")
    procs, conns = [], []
    try:
        for group in groups:
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_client_process, args=(child, server.base, group), daemon=True)
            p.start()
            child.close()
            procs.append(p)
            conns.append(parent)
        deadline = time.monotonic() + args.join_timeout
        for c in conns:
            c.send(("join", deadline))
        for c in conns:
            msg = await _recv(c, args.join_timeout + 60)
            if msg[0] == "error":
                raise RuntimeError(f"client process failed:\n{msg[1]}")
            row.classrooms_ok += msg[1]
            row.errors += msg[2]
            row.notes += msg[3]

        t0 = time.monotonic() + args.warmup
        t1 = t0 + args.seconds
        for c in conns:
            c.send(("window", t0, t1))
        await asyncio.sleep(max(0.0, t0 - time.monotonic()))
        workers = server.worker_pids()
        assert server.proc is not None
        me = [server.proc.pid]
        clients = [p.pid for p in procs]

        def sample() -> tuple[list[float], float, list[float], float, tuple[float, float], float]:
            return ([common.process_cpu_seconds([pid], descendants=False) for pid in workers],
                    common.process_cpu_seconds(me, descendants=False),
                    [common.process_cpu_seconds([pid]) for pid in clients],
                    common.process_cpu_seconds([os.getpid()], descendants=False),
                    common.machine_times(), time.monotonic())

        w0, s0, c0, o0, m0, at0 = sample()
        await asyncio.sleep(max(0.0, t1 - time.monotonic()))
        w1, s1, c1, o1, m1, at1 = sample()
        span = at1 - at0
        row.window_s = span
        per_worker = sorted(((b - a) / span * 100 for a, b in zip(w0, w1)), reverse=True)
        row.worker_cpu_pct = per_worker[0] if per_worker else math.nan
        row.spare_cpu_pct = sum(per_worker[1:])
        row.server_cpu_pct = (s1 - s0) / span * 100
        row.client_cpu_pct = [(b - a) / span * 100 for a, b in zip(c0, c1)]
        row.machine_busy_pct = common.machine_busy(m0, m1) * 100
        row.bench_busy_pct = (sum(b - a for a, b in zip(w0, w1)) + s1 - s0 + sum(b - a for a, b in zip(c0, c1))
                              + o1 - o0) / span * 100 / (os.cpu_count() or 1)

        stats: list[dict[str, Any]] = []
        for c in conns:
            msg = await _recv(c, 60)
            if msg[0] == "error":
                raise RuntimeError(f"client process failed:\n{msg[1]}")
            stats += msg[1]
        for c in conns:
            c.send(("stop",))
        fill_row(row, stats)
    finally:
        for p in procs:
            p.join(timeout=20)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
        for c in conns:
            c.close()
    return row


# ---------------------------------------------------------------------- main


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.smallrooms", description=__doc__.split("\n\n")[0])
    p.add_argument("--rooms", default="1,2,4,6,8", help="room counts to step through, comma-separated")
    p.add_argument("--seconds", type=float, default=10.0, help="measurement window per step")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds between all joined and the window")
    p.add_argument("--procs", type=int, default=2, help="client processes (each hosts whole rooms)")
    p.add_argument("--join-timeout", type=float, default=60.0)
    p.add_argument("--busy-limit", type=float, default=BUSY_LIMIT_PCT,
                   help="machine busy %% that ends the stepping up (a machine shared with other work: "
                        "raise it and read the bench%% column)")
    args = p.parse_args(argv)
    args.rooms = sorted({int(x) for x in args.rooms.split(",") if x.strip()})
    if not args.rooms or args.rooms[0] < 1:
        p.error("--rooms: positive counts")
    return args


async def amain(args: argparse.Namespace) -> int:
    from bench import fanout_common as common

    common.apply_ice_policy()
    camera, screen = load_clips()
    print(f"camera {CAMERA['width']}x{CAMERA['height']} {CAMERA['fps']} fps VP8 {camera.video_bitrate() / 1e3:.0f} kbit/s, "
          f"screen {SCREEN['width']}x{SCREEN['height']} {SCREEN['fps']} fps VP8 {screen.video_bitrate() / 1e3:.0f} kbit/s, "
          f"microphone Opus {camera.audio_bitrate() / 1e3:.0f} kbit/s; window {args.seconds:.0f} s after "
          f"{args.warmup:.0f} s warm-up; {args.procs} client processes; {os.cpu_count()} cores", flush=True)
    server = Server()
    rows: list[Row] = []
    stopped: str | None = None
    try:
        booked = await asyncio.to_thread(prepare, Path(server.dir), max(args.rooms))
        await server.start()
        await asyncio.sleep(1.0)
        for k in args.rooms:
            print(f"  {k} room(s) ...", file=sys.stderr, flush=True)
            try:
                row = await run_step(server, booked, k, args)
            except Exception as exc:  # noqa: BLE001 - the step is reported as failed
                row = Row(rooms=k, errors=[f"{type(exc).__name__}: {exc}"])
            rows.append(row)
            print(format_row(row), file=sys.stderr, flush=True)
            for e in row.errors[:3] + row.notes[:3]:
                print(f"  {k} room(s): {e}", file=sys.stderr, flush=True)
            stopped = stop_reason(row, args.busy_limit)
            if stopped:
                stopped = f"at {k} room(s): {stopped}"
                break
            await asyncio.sleep(2.0)  # the rooms' sessions end before the next step joins anew
    finally:
        await server.stop()
    print()
    print(format_table(rows))
    lines = summary(rows, stopped, args.busy_limit)
    for line in lines:
        print(line)
    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = common.RESULTS_DIR / "smallrooms.json"
    out.write_text(json.dumps({
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "args": vars(args), "camera": CAMERA, "screen": SCREEN,
        "rows": [{**asdict(r), "worker_cpu_per_room": r.worker_cpu_per_room} for r in rows],
        "capacity": asdict(c) if (c := capacity(rows, args.busy_limit)) else None, "summary": lines,
    }, indent=2, default=str))
    print(f"JSON: {out}")
    return 0 if rows and rows[0].complete else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    from bench import fanout_common as common

    common.ensure_netns("bench.smallrooms", argv)
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
