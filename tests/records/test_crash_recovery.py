"""What a ``kill -9`` of the server leaves behind is recovered when it starts again.

The server is a separate process (``tests.records.server_process``) on 127.0.0.1 that the test
starts, kills with SIGKILL in the middle of a lesson, and starts again on the same data folder:

- sessions cut by the kill end at their last event (the event log marks open sessions every
  ``SANKE_PRESENCE_MARK_INTERVAL_SECONDS``), not at the room's close, and the teaching record
  says how much of the time is uncertain;
- the recording being written is finalized from its files (readable, of the duration that was
  published, within a second), marked partial, and a lesson recorded across the restart replays
  as one lesson: both recordings on one time axis, with the gap between them.
"""

from __future__ import annotations

import asyncio
import csv
import io
import signal
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import av
import httpx
import pytest

from scheduler import clock, records
from server.core.db import make_engine, make_session_factory
from signaling.client import LessonClient
from tests.media.sfu_harness import loopback_clients  # noqa: F401 - the test's aiortc clients gather on 127.0.0.1
from tests.media.sfu_helpers import RED, ColorTrack, ToneTrack
from tests.records.killable import POLICY, Server, prepare, rows
from tests.records.server_process import settings as server_settings
from tests.utils.wait import wait_until

MARK_S = 3.0
"""The killed server's presence-mark interval."""
FLUSH_S = 0.2


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path, flush_interval_s=FLUSH_S)
    s.env["SANKE_PRESENCE_MARK_INTERVAL_SECONDS"] = str(MARK_S)
    yield s
    s.kill()


async def _close_all(*clients: LessonClient) -> None:
    for c in clients:
        try:
            await asyncio.wait_for(c.close(), 5)
        except Exception:  # noqa: BLE001 - the server under them was killed
            pass


def test_sessions_cut_by_a_kill_end_at_their_last_mark(server: Server) -> None:
    info = prepare(server.data_dir, recorded=False)
    lid = info["lesson"]
    server.start()

    clients: list[LessonClient] = []

    async def lesson() -> tuple[str, str]:
        main = LessonClient(server.base, lid, info["main_token"](), policy=POLICY)
        recv = LessonClient(server.base, lid, info["recv"], policy=POLICY)
        clients.extend((main, recv))
        await main.connect()
        await recv.connect()
        return main.participant_id, recv.participant_id

    loop = asyncio.new_event_loop()
    try:
        main_id, recv_id = loop.run_until_complete(lesson())
        time.sleep(2.5 * MARK_S)  # the lesson goes on (two presence marks each), then the server is killed
        server.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        assert server.proc.wait(timeout=30) == -signal.SIGKILL  # type: ignore[union-attr]
        killed = clock.now_precise()
        assert not rows(server.data_dir, "SELECT * FROM session_event WHERE kind IN ('leave', 'disconnect')")
        time.sleep(3.0)  # the server stays down a while: a session still counted as open would grow by this
    finally:
        loop.run_until_complete(_close_all(*clients))
        loop.close()
    joined = {pid: at(t) for pid, t in rows(server.data_dir, "SELECT participant_id, at FROM session_event "
                                            "WHERE kind = 'join'")}
    last = {pid: at(t) for pid, t in rows(server.data_dir, "SELECT participant_id, max(at) FROM session_event "
                                          "GROUP BY participant_id")}

    server.start()  # recovery runs before the server answers
    r = httpx.get(f"{server.base}/api/v1/records/lessons/{lid}", headers={"Authorization": f"Bearer {info['admin']}"},
                  timeout=10)
    assert r.status_code == 200, r.text
    record = r.json()
    recv_row = next(a for a in record["attendance"] if a["role"] == "receiving" and a["classroom_id"] == info["recv_room"])
    expected = (last[recv_id] - joined[recv_id]).total_seconds()
    assert abs(recv_row["present_s"] - expected) <= 1, (recv_row, expected)  # not the time the server was down
    assert recv_row["present_s"] <= (killed - joined[recv_id]).total_seconds()
    assert (last[recv_id] - joined[recv_id]).total_seconds() >= 2 * MARK_S - 0.5  # marked while it lasted
    assert recv_row["uncertain_s"] == round(MARK_S + FLUSH_S)
    assert recv_row["last_leave"] is not None

    ends = rows(server.data_dir, "SELECT participant_id, at, json_extract(data, '$.reason'), "
                "json_extract(data, '$.uncertain_s') FROM session_event WHERE kind = 'leave' ORDER BY participant_id")
    assert {e[0] for e in ends} == {main_id, recv_id}
    for pid, end, reason, uncertain in ends:
        assert at(end) == last[pid]  # at its last event (a presence mark), before the kill
        assert reason == "server_lost"
        assert uncertain == pytest.approx(MARK_S + FLUSH_S)

    # the lesson ends: its record is stored (as on the room's close) and exported with the uncertain minutes
    engine = make_engine(server_settings(server.data_dir).effective_database_url)
    try:
        with make_session_factory(engine)() as session:
            records.refresh(session, lid, now=clock.now())
            session.commit()
    finally:
        engine.dispose()
    r = httpx.get(f"{server.base}/api/v1/reports/lessons/{lid}", params={"format": "csv"},
                  headers={"Authorization": f"Bearer {info['admin']}"}, timeout=10)
    assert r.status_code == 200, r.text
    table = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    line = next(x for x in table if x["参与方"] == "接收教室")
    assert abs(float(line["在线分钟"]) - expected / 60) <= 0.05
    assert float(line["不确定分钟(服务器中断)"]) == round(round(MARK_S + FLUSH_S) / 60, 1)
    server.stop(signal.SIGTERM)


def decoded_seconds(data: bytes) -> tuple[float, int]:
    """The time span of the frames PyAV decodes from a file, and how many there are."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams[0]
        times = [float(f.time) for f in container.decode(stream) if f.time is not None]
    return (max(times) - min(times) if times else 0.0), len(times)


@pytest.mark.parametrize(("codec", "ext"), [("video/VP8", "webm"), ("video/H264", "mp4")])
def test_a_recording_cut_by_a_kill_is_recovered_and_the_lesson_replays_as_one(server: Server, codec: str, ext: str,
                                                                          loopback_clients: None) -> None:  # noqa: F811
    """A VP8 camera is written to WebM, an H.264 one to fragmented MP4; the microphone to WebM."""
    info = prepare(server.data_dir, recorded=True)
    lid = info["lesson"]
    admin = {"Authorization": f"Bearer {info['admin']}"}

    def publish_then_kill(seconds: float) -> tuple[float, float]:
        """The main classroom publishes a red camera and a tone; ``seconds`` after the recording's new files
        appeared on disk the server is killed.  Answers the camera's and the microphone's recorded seconds."""
        loop = asyncio.new_event_loop()
        tracks = {"camera": ColorTrack(RED), "microphone": ToneTrack()}
        clients: list[LessonClient] = []

        def files(source: str) -> int:
            return len(list(server.data_dir.glob(f"recordings/{lid}/*/{source}-*.{ext if source == 'camera' else 'webm'}")))

        async def scenario() -> tuple[float, float]:
            before = {source: files(source) for source in tracks}
            main = LessonClient(server.base, lid, info["main_token"](), policy=POLICY)
            clients.append(main)
            await main.connect()
            await main.publish(dict(tracks), video_codec=codec)
            deadline = time.monotonic() + 30
            seen: dict[str, float] = {}
            while len(seen) < len(tracks):  # each file is created at its first frame
                assert time.monotonic() < deadline, f"the recording's files never appeared: {seen}"
                for source in tracks:
                    if source not in seen and files(source) > before[source]:
                        seen[source] = time.monotonic()
                await asyncio.sleep(0.02)
            await asyncio.sleep(seconds)  # the lesson goes on...
            server.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]  # ...until the server is killed
            t_kill = time.monotonic()
            return t_kill - seen["camera"], t_kill - seen["microphone"]

        try:
            return loop.run_until_complete(scenario())
        finally:
            assert server.proc is not None and server.proc.wait(timeout=30) == -signal.SIGKILL
            loop.run_until_complete(_close_all(*clients))
            loop.close()

    server.start()
    first_camera_s, first_mic_s = publish_then_kill(6.0)
    assert rows(server.data_dir, "SELECT status FROM recording") == [("recording",)]
    server.start()  # recovery runs before the server answers

    def recording(rid: int) -> dict[str, Any]:
        r = httpx.get(f"{server.base}/api/v1/recordings/{rid}", headers=admin, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    (rid1,) = [r[0] for r in rows(server.data_dir, "SELECT id FROM recording")]
    rec = recording(rid1)
    assert rec["status"] == "partial", rec
    assert rec["error"] and "服务器意外中断" in rec["error"]
    by_source = {f["source"]: f for f in rec["files"]}
    assert set(by_source) == {"camera", "microphone"}
    assert by_source["camera"]["name"].endswith(f".{ext}") and by_source["camera"]["codec"] == codec.split("/")[1].lower()
    for source, published in (("camera", first_camera_s), ("microphone", first_mic_s)):
        f = by_source[source]
        data = httpx.get(server.base + f["url"], timeout=30).content
        span, frames = decoded_seconds(data)
        assert frames > 0
        # readable to within a second of the kill, and the stored duration says so
        assert published - 1.0 <= span <= published + 0.3, (source, span, published)
        assert abs(f["duration_s"] - span) <= 0.1, (source, f["duration_s"], span)
        with av.open(io.BytesIO(data)) as container:
            assert container.duration and abs(container.duration / 1e6 - span) <= 0.2  # finalized: it has a duration
    assert abs(rec["duration_s"] - max(first_camera_s, first_mic_s)) <= 1.0

    # the lesson goes on after the restart, is cut again, and replays as one lesson
    second_camera_s, _ = publish_then_kill(3.0)
    server.start()
    rid1_again, rid2 = [r[0] for r in rows(server.data_dir, "SELECT id FROM recording ORDER BY id")]
    assert rid1_again == rid1
    lesson = recording(rid2)
    assert [s["id"] for s in lesson["segments"]] == [rid1, rid2]
    def unsigned(files: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in f.items() if k != "url"} for f in files]

    assert unsigned(recording(rid1)["files"]) == unsigned(lesson["files"])  # either one opens the whole lesson
    second = lesson["segments"][1]
    assert second["offset_s"] >= lesson["segments"][0]["duration_s"]
    (gap,) = lesson["gaps"]
    assert gap["start_s"] == pytest.approx(lesson["segments"][0]["duration_s"], abs=0.01)
    assert gap["end_s"] == pytest.approx(second["offset_s"], abs=0.01)
    assert gap["end_s"] - gap["start_s"] >= 1.0  # the restart shows as a gap
    cameras = sorted((f for f in lesson["files"] if f["source"] == "camera"), key=lambda f: f["start_s"])
    assert len(cameras) == 2 and cameras[1]["start_s"] >= gap["end_s"] - 0.01
    assert second_camera_s - 1.0 <= cameras[1]["duration_s"] <= second_camera_s + 0.3
    assert lesson["duration_s"] == pytest.approx(second["offset_s"] + second["duration_s"], abs=0.01)
    assert lesson["duration_s"] >= first_camera_s + second_camera_s + gap["end_s"] - gap["start_s"] - 2.0

    # its one-MP4 download is the whole lesson too, the gap black
    r = httpx.post(f"{server.base}/api/v1/recordings/{rid2}/compose", headers=admin, timeout=10)
    assert r.status_code == 202, r.text

    def composed() -> dict[str, Any] | None:
        job = httpx.get(f"{server.base}/api/v1/recordings/{rid2}/compose", headers=admin, timeout=10).json()
        assert job["status"] != "failed", job
        return job if job["status"] == "done" else None

    job = wait_until("the composed MP4", composed, timeout=180)
    with av.open(io.BytesIO(httpx.get(server.base + job["url"], timeout=60).content)) as container:
        assert abs(container.duration / 1e6 - lesson["duration_s"]) <= 1.0, (container.duration, lesson["duration_s"])

    # the library lists the lesson once, with the whole lesson's duration
    r = httpx.get(f"{server.base}/api/v1/recordings", headers=admin, timeout=10)
    assert r.status_code == 200, r.text
    listed = [x for x in r.json()["data"] if x["instance_id"] == lid]
    assert [x["id"] for x in listed] == [rid2] and listed[0]["duration_s"] == lesson["duration_s"]
    server.stop(signal.SIGTERM)
