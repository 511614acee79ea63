"""A 名校网络课堂 streamed by LL-HLS end to end: an aiortc main classroom publishes an H.264 red camera, an
H.264 blue shared screen and a 440 Hz tone through the real SFU on 127.0.0.1; the worker writes the stream
in hls/ of the lesson's recording folder while the lesson is live, the publisher reconnects once (a
discontinuity), and the room's close ends it (ENDLIST).  A VP8 publisher gets no stream and a reason on the
bus.  Playlists are read with the ``m3u8`` library, media with PyAV.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from server.core.config import Settings
from tests.media.hls_checks import aac_tone, check_media_playlist, concat, decode_video, pdt, playlist
from tests.media.sfu_harness import (  # noqa: F401 - fixtures of the SFU tests: a live lesson on 127.0.0.1
    Lesson,
    db_url,
    lesson,
    loopback_clients,
    media_workers,
    settings,
)
from tests.media.sfu_helpers import BLUE, RED, ColorTrack, ToneTrack, close_to, mean_rgb
from tests.records.test_recording_e2e import close_room
from tests.utils.wait import until, wait_until


def hls_folder(settings: Settings, lid: int) -> Path | None:  # noqa: F811
    found = sorted((settings.data_dir / "recordings" / str(lid)).glob("*/hls"))
    return found[0] if found else None


def complete_segments(path: Path) -> int:
    return len([s for s in playlist(path).segments if s.uri]) if path.exists() else 0


def test_a_famous_school_lesson_is_streamed_by_ll_hls_while_live_and_kept_when_it_ends(
        lesson: Lesson, app: Any, settings: Settings) -> None:  # noqa: F811
    w, lid = lesson.world, lesson.lid
    loops: list[asyncio.AbstractEventLoop] = []
    app.state.bus.subscribe("media", lambda topic, event: loops.append(asyncio.get_running_loop()))
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        for round_ in range(2):  # the main classroom publishes, drops, comes back
            main = await lesson.join(w.teacher)
            tracks = {"camera": ColorTrack(RED), "screen": ColorTrack(BLUE), "microphone": ToneTrack()}
            await main.publish(tracks, video_codec="video/H264")
            hls = await until("the lesson's hls folder", lambda: hls_folder(settings, lid), 30)
            want = 2 if round_ == 0 else 4
            await until(f"{want} complete camera segments", lambda: complete_segments(
                hls / "camera" / "index.m3u8") >= want and complete_segments(hls / "screen" / "index.m3u8") >= 1, 40)
            if round_ == 0:
                seen["live"] = playlist(hls / "camera" / "index.m3u8")
                seen["live_at"] = time.time()
            await main.close()
            lesson.clients.remove(main)

    lesson.play(scenario)
    hls = hls_folder(settings, lid)
    assert hls is not None
    live = seen["live"]
    check_media_playlist(live, live=True)
    last = [s for s in live.segments if s.uri][-1]
    assert -10 < pdt(last) - seen["live_at"] < 0  # program date time: the wall clock of the frames
    wait_until("the server's event loop", lambda: loops, 10, interval=0.2)
    close_room(app, loops[-1], lid)
    # the stream ends with the recording, which is stored once every rendition is finished
    wait_until("the recording stored", lambda: [r for r in lesson.http.get(
        "/api/v1/recordings", headers=lesson.auth(w.urban_admin)).json()["data"] if r["status"] == "ready"], 30,
        interval=0.2)
    assert playlist(hls / "camera" / "index.m3u8").is_endlist

    camera, screen, audio = (playlist(hls / name / "vod.m3u8") for name in ("camera", "screen", "audio"))
    for name in ("camera", "screen", "audio"):
        check_media_playlist(playlist(hls / name / "index.m3u8"), live=False)
    assert sum(s.discontinuity for s in camera.segments) == 1  # the reconnect
    assert sum(s.discontinuity for s in audio.segments) == 1
    frames = decode_video(concat(hls / "camera", [s.uri for s in camera.segments]))
    assert frames and all(close_to(mean_rgb(f), RED) for _, f in frames[:: max(1, len(frames) // 10)])
    screen_frames = decode_video(concat(hls / "screen", [s.uri for s in screen.segments]))
    assert screen_frames and close_to(mean_rgb(screen_frames[-1][1]), BLUE)
    codec, rate, rms, hz = aac_tone(concat(hls / "audio", [s.uri for s in audio.segments]))
    assert (codec, rate) == ("aac", 48000) and rms > 1000 and 400 < hz < 480, (codec, rate, rms, hz)
    # one clock: the camera, the screen and the sound of a run start within a moment of each other
    assert abs(pdt(camera.segments[0]) - pdt(audio.segments[0])) < 1.0
    assert abs(pdt(camera.segments[0]) - pdt(screen.segments[0])) < 1.0

    main_pl, screen_pl = playlist(hls / "main.m3u8"), playlist(hls / "screen.m3u8")
    # ended: the multivariant playlists list the whole stream (each rendition's vod.m3u8)
    assert [v.uri for v in main_pl.playlists] == ["camera/vod.m3u8"]
    assert [v.uri for v in screen_pl.playlists] == ["screen/vod.m3u8"]
    assert main_pl.playlists[0].stream_info.resolution == (160, 120)
    assert [m.uri for m in main_pl.media] == ["audio/vod.m3u8"] == [m.uri for m in screen_pl.media]
    assert {p.suffix for p in hls.rglob("*") if p.is_file()} <= {".m3u8", ".mp4", ".m4s"}


def test_a_vp8_main_classroom_gets_no_stream_and_the_reason_is_published(
        lesson: Lesson, app: Any, settings: Settings) -> None:  # noqa: F811
    w, lid = lesson.world, lesson.lid
    events: list[dict[str, Any]] = []
    app.state.bus.subscribe("media", lambda topic, event: events.append(event))

    seen: dict[str, Any] = {}

    async def scenario() -> None:
        main = await lesson.join(w.teacher)
        await main.publish({"camera": ColorTrack(RED), "microphone": ToneTrack()}, video_codec="video/VP8")
        await until("hls_refused on the bus", lambda: [e for e in events if e.get("type") == "hls_refused"], 30)
        # the teacher's page is told in the room state, and so is everyone who joins later
        await until("the refusal in the teacher's room state", lambda: [
            m for m in main.messages if m.get("type") == "room_updated" and m["room"].get("stream_refused")], 10)
        seen["teacher"] = [m for m in main.messages if m.get("type") == "room_updated"][-1]["room"]["stream_refused"]
        student = await lesson.join(w.student)
        seen["student"] = student.joined["room"]["stream_refused"]
        await main.request({"type": "unpublish", "source": "camera"})
        await until("the refusal gone with the camera", lambda: [
            m for m in student.messages if m.get("type") == "room_updated" and m["room"]["stream_refused"] == {}], 10)

    lesson.play(scenario)
    assert seen["teacher"] == seen["student"] and list(seen["teacher"]) == ["camera"]
    assert "H.264" in seen["teacher"]["camera"]
    (event,) = [e for e in events if e.get("type") == "hls_refused"]
    assert event["instance_id"] == lid and event["source"] == "camera" and event["codec"] == "vp8"
    assert "H.264" in event["reason"] and "WebRTC" in event["reason"]
    hls = hls_folder(settings, lid)
    assert hls is not None and not (hls / "camera").exists() and not (hls / "main.m3u8").exists()
