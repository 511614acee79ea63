"""A recorded lesson end to end: an aiortc main classroom publishes a red camera, a blue shared screen and
a 440 Hz tone through the real SFU on 127.0.0.1 (VP8 from a worker process, H.264 in-process); the
room closes; the recording plays back.

Checks are on what PyAV decodes from the files the API serves: the duration matches the time the
tracks were published, from each one's first frame (within 1 s), the pictures show the colours that were sent, the sound is the
tone; the composed one-MP4 download has both pictures (screen full, camera in the corner) and audio.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import math
import os
import signal
import struct
import time
from typing import Any

import av
import httpx
import pytest

from scheduler.recordings_models import Recording
from scheduler.records_models import TeachingRecord
from tests.media.sfu_harness import (  # noqa: F401 - fixtures of the SFU tests: a live lesson on 127.0.0.1
    Lesson,
    db_url,
    lesson,
    loopback_clients,
    media_workers,
    settings,
)
from tests.media.sfu_helpers import BLUE, RED, ColorTrack, ToneTrack, close_to, mean_rgb
from tests.utils.wait import wait_until

PUBLISH_S = 5.0


def close_room(app: Any, loop: asyncio.AbstractEventLoop, lid: int) -> None:
    """What the lifecycle does after the lesson's end: ``room_closed`` on the bus, on the server's loop."""
    event = {"type": "room_closed", "instance_id": lid, "at": "2026-08-24T09:50:00", "status": "held"}
    asyncio.run_coroutine_threadsafe(app.state.bus.publish("lesson", event), loop).result(20)


def decode(data: bytes) -> tuple[list[tuple[float, av.VideoFrame]], float]:
    """Video frames with their times, and the container's duration in seconds."""
    with av.open(io.BytesIO(data)) as container:
        frames = [(float(f.time or 0.0), f) for f in container.decode(video=0)]
        return frames, (container.duration or 0) / 1_000_000


def tone_of(data: bytes) -> tuple[float, float]:
    """RMS and dominant frequency of the decoded sound."""
    pcm: list[int] = []
    resampler = av.AudioResampler(format="s16", layout="mono", rate=48000)
    with av.open(io.BytesIO(data)) as container:
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                raw = bytes(out.planes[0])[: out.samples * 2]
                pcm.extend(struct.unpack(f"<{len(raw) // 2}h", raw))
    pcm = pcm[len(pcm) // 4:]
    rms = math.sqrt(sum(s * s for s in pcm) / max(1, len(pcm)))
    crossings = sum(1 for a, b in itertools.pairwise(pcm) if (a < 0) != (b < 0))
    return rms, crossings / 2 / (len(pcm) / 48000)


def corner_and_centre(frame: av.VideoFrame) -> tuple[tuple[int, ...], tuple[int, ...]]:
    small = frame.reformat(width=64, height=36, format="rgb24")
    data, line = bytes(small.planes[0]), small.planes[0].line_size

    def px(x: int, y: int) -> tuple[int, ...]:
        return tuple(data[y * line + 3 * x: y * line + 3 * x + 3])

    return px(56, 30), px(20, 10)


@pytest.mark.parametrize(("media_workers", "codec"), [(1, "video/VP8"), (0, "video/H264")],
                         ids=["worker-process-vp8-webm", "in-process-h264-mp4"])
def test_a_recorded_lesson_plays_back_what_was_sent(lesson: Lesson, app: Any, session_factory: Any,  # noqa: F811
                                                    media_workers: int, codec: str) -> None:  # noqa: F811
    w, http, auth, lid = lesson.world, lesson.http, lesson.auth, lesson.lid
    loops: list[asyncio.AbstractEventLoop] = []
    app.state.bus.subscribe("media", lambda topic, event: loops.append(asyncio.get_running_loop()))
    marks: dict[str, float] = {}

    tracks = {"camera": ColorTrack(RED), "screen": ColorTrack(BLUE), "microphone": ToneTrack()}

    async def scenario() -> None:
        main = await lesson.join(w.teacher)
        await main.publish(dict(tracks), video_codec=codec)
        deadline = time.monotonic() + 30
        while tracks["camera"].sent < 1 and time.monotonic() < deadline:  # the camera is live
            await asyncio.sleep(0.05)
        await asyncio.sleep(PUBLISH_S)
        await main.close()  # the producers go: their files end
        marks["closed"] = time.monotonic()

    lesson.play(scenario)
    # what was published is measured from the first frame each track sent (a loaded machine may take a
    # while between the negotiation and the encoder's first frame), to the close
    starts = [t.first_at for t in tracks.values()]
    assert None not in starts, starts
    published_s = marks["closed"] - min(starts)
    camera_s = marks["closed"] - tracks["camera"].first_at
    wait_until("the server's event loop", lambda: loops, 10, interval=0.2)
    close_room(app, loops[-1], lid)

    def ready() -> dict[str, Any] | None:
        r = http.get("/api/v1/recordings", headers=auth(w.urban_admin))
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        return data[0] if data else None

    item = wait_until("the recording listed", ready, 30, interval=0.2)
    assert item["instance_id"] == lid and item["status"] == "ready" and item["kind"] == "famous_school"
    video, container = ("vp8", "video/webm") if codec == "video/VP8" else ("h264", "video/mp4")
    assert set(item["codecs"].split(",")) == {video, "opus"}
    rid = item["id"]
    r = http.get(f"/api/v1/recordings/{rid}", headers=auth(w.teacher))
    assert r.status_code == 200, r.text
    rec = r.json()
    files = {f["source"]: f for f in rec["files"]}
    assert set(files) == {"camera", "screen", "microphone"}, rec["files"]
    assert abs(rec["duration_s"] - published_s) <= 1.0, (rec["duration_s"], published_s)

    with httpx.Client(base_url=lesson.base, timeout=20) as anon:  # a <video> sends no bearer: the URL is signed
        camera = anon.get(files["camera"]["url"])
        assert camera.status_code == 200 and camera.headers["content-type"] == container
        part = anon.get(files["camera"]["url"], headers={"Range": "bytes=0-99"})
        assert part.status_code == 206 and len(part.content) == 100  # seeking needs ranges
        assert anon.get(files["camera"]["url"].split("?")[0]).status_code == 401
        screen = anon.get(files["screen"]["url"]).content
        sound = anon.get(files["microphone"]["url"]).content

    frames, duration = decode(camera.content)
    assert abs(duration - camera_s) <= 1.0, (duration, camera_s)
    assert frames[0][0] == 0.0 and abs(frames[-1][0] - camera_s) <= 1.0
    assert close_to(mean_rgb(frames[len(frames) // 2][1]), RED), mean_rgb(frames[len(frames) // 2][1])
    screen_frames, _ = decode(screen)
    assert close_to(mean_rgb(screen_frames[-1][1]), BLUE)
    rms, hz = tone_of(sound)
    assert rms > 1000 and 400 < hz < 480, (rms, hz)

    with session_factory() as s:  # the teaching record links its recording
        row = s.get(Recording, rid)
        assert row.status.value == "ready" and row.size_bytes > 0
        record = s.get(TeachingRecord, lid)
        assert record is not None and record.recording_id == rid

    # the one-MP4 download: composed offline, progress polled
    r = http.post(f"/api/v1/recordings/{rid}/compose", headers=auth(w.teacher))
    assert r.status_code == 202, r.text
    assert r.json()["status"] in ("queued", "running", "done")

    def composed() -> dict[str, Any] | None:
        job = http.get(f"/api/v1/recordings/{rid}/compose", headers=auth(w.teacher)).json()
        assert job["status"] != "failed", job
        return job if job["status"] == "done" else None

    job = wait_until("the composed MP4", composed, 120, interval=0.2)
    assert job["progress"] == 1.0 and job["url"]
    mp4 = httpx.get(lesson.base + job["url"], timeout=30)
    assert mp4.status_code == 200 and mp4.headers["content-type"] == "video/mp4"
    assert "attachment" in mp4.headers.get("content-disposition", "")
    with av.open(io.BytesIO(mp4.content)) as container:
        kinds = {s.type: s.codec_context.name for s in container.streams}
        assert kinds == {"video": "h264", "audio": "aac"}, kinds
        pictures = list(container.decode(video=0))
    corner, centre = corner_and_centre(pictures[len(pictures) // 2])
    assert close_to(centre, BLUE, 50) and close_to(corner, RED, 50), (centre, corner)  # screen, camera in the corner
    rms, hz = tone_of(mp4.content)
    assert rms > 1000 and 400 < hz < 480, (rms, hz)


@pytest.mark.parametrize("media_workers", [1], ids=["worker-process"])
def test_a_recording_whose_worker_died_keeps_what_the_dead_worker_wrote(lesson: Lesson, app: Any,  # noqa: F811
                                                                        settings: Any,  # noqa: F811
                                                                        media_workers: int) -> None:  # noqa: F811
    """The teacher's H.264 camera and microphone are recorded; the media worker is killed (SIGKILL) mid-lesson,
    the server replaces it and the teacher publishes again.  The recording keeps both parts: the files the
    dead worker was writing (finalized as after a crash) and the new worker's, on one time axis."""
    w, http, auth, lid = lesson.world, lesson.http, lesson.auth, lesson.lid
    loops: list[asyncio.AbstractEventLoop] = []
    app.state.bus.subscribe("media", lambda topic, event: loops.append(asyncio.get_running_loop()))
    marks: dict[str, float] = {}
    camera = ColorTrack(RED)

    async def scenario() -> None:
        main = await lesson.join(w.teacher)
        await main.publish({"camera": camera, "microphone": ToneTrack()}, video_codec="video/H264")
        await asyncio.to_thread(wait_until, "the camera's first file", lambda: list(
            settings.data_dir.glob(f"recordings/{lid}/*/camera-1.mp4")), 30)
        marks["first"] = time.monotonic()
        await asyncio.sleep(PUBLISH_S)
        told = asyncio.ensure_future(main.next_message("media_restart", 20))
        [pid] = await asyncio.to_thread(app.state.media.pids)
        os.kill(pid, signal.SIGKILL)
        marks["killed"] = time.monotonic()
        await told
        await asyncio.to_thread(wait_until, "the camera's second file", lambda: list(
            settings.data_dir.glob(f"recordings/{lid}/*/camera-2.mp4")), 30)
        marks["second"] = time.monotonic()
        await asyncio.sleep(PUBLISH_S)
        await main.close()
        marks["closed"] = time.monotonic()

    lesson.play(scenario)
    wait_until("the server's event loop", lambda: loops, 10, interval=0.2)
    close_room(app, loops[-1], lid)

    def ready() -> dict[str, Any] | None:
        data = http.get("/api/v1/recordings", headers=auth(w.urban_admin)).json()["data"]
        return data[0] if data and data[0]["status"] == "ready" else None

    rid = wait_until("the recording listed", ready, 30, interval=0.2)["id"]
    rec = http.get(f"/api/v1/recordings/{rid}", headers=auth(w.teacher)).json()
    cameras = sorted((f for f in rec["files"] if f["source"] == "camera"), key=lambda f: f["start_s"])
    assert [f["name"] for f in cameras] == ["camera-1.mp4", "camera-2.mp4"], rec["files"]
    assert sorted(f["name"] for f in rec["files"] if f["source"] == "microphone") == ["microphone-1.webm",
                                                                                     "microphone-2.webm"]
    first, second = cameras
    # the dead worker's part: up to (within a second of) the kill, readable, the teacher's picture
    assert marks["killed"] - marks["first"] - 1.0 <= first["duration_s"] <= marks["killed"] - marks["first"] + 1.0, first
    # the new worker's part after it, on the same axis: the outage is a gap between them
    assert second["start_s"] >= first["start_s"] + first["duration_s"], cameras
    assert abs(second["start_s"] - first["start_s"] - (marks["second"] - marks["first"])) <= 1.0, cameras
    assert rec["duration_s"] >= second["start_s"] + second["duration_s"] - 0.01
    with httpx.Client(base_url=lesson.base, timeout=20) as anon:
        for f in cameras:
            frames, _ = decode(anon.get(f["url"]).content)
            assert len(frames) > 10 and close_to(mean_rgb(frames[-1][1]), RED), f
