"""The SFU end to end: aiortc clients against a server the test starts, on 127.0.0.1 only.

A main classroom films a red wall and plays a 440 Hz tone; two receiving
classrooms film green and blue walls; a researcher watches silently.  Every
check is on what the clients decode, as a person in the classroom would see
and hear it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from signaling.client import LessonClient, LessonError
from tests.media.sfu_harness import (  # noqa: F401 - fixtures: a live lesson on 127.0.0.1
    POLICY,
    Lesson,
    db_url,
    lesson,
    loopback_clients,
    media_workers,
    router_dump,
    settings,
)
from tests.media.sfu_helpers import BLUE, GREEN, RED, ColorTrack, ToneTrack, close_to, frames, rtp_tap, tone
from tests.utils.wait import until


@pytest.mark.parametrize("media_workers", [0, 1], ids=["in-process", "worker-process"])
def test_a_lesson_flows_both_ways_and_the_observer_only_watches(lesson: Lesson, media_workers: int, app: Any) -> None:
    w = lesson.world
    samples: list[dict[str, Any]] = []  # the link samples the records are made from (the topic has others too)
    app.state.bus.subscribe("media", lambda topic, event: event.get("type") == "link_quality" and samples.append(event))

    async def scenario() -> None:
        main = await lesson.join(w.teacher)
        recv_a = await lesson.join(w.terminal_recv)
        recv_b = await lesson.join(w.assistant)
        observer = await lesson.join(w.researcher_a)
        assert observer.participant_id not in {p["participant_id"] for p in main.joined["participants"]}

        await main.publish({"camera": ColorTrack(RED), "microphone": ToneTrack()})
        await recv_a.publish({"camera": ColorTrack(GREEN)})
        await recv_b.publish({"camera": ColorTrack(BLUE)})
        m = main.participant_id
        for c in (recv_a, recv_b):
            await c.subscribe([{"participant_id": m, "source": "camera"},
                               {"participant_id": m, "source": "microphone"}])
        await observer.subscribe([{"participant_id": m, "source": "camera"}])
        await main.subscribe([{"participant_id": recv_a.participant_id, "source": "camera"},
                              {"participant_id": recv_b.participant_id, "source": "camera"}])

        # the teacher's red wall reaches both receiving classrooms and the observer
        for c in (recv_a, recv_b, observer):
            seen = await frames(await c.track(m, "camera"), 15)
            assert all(close_to(rgb, RED) for rgb in seen[-10:]), seen
        # the teacher sees each receiving classroom (隔空交流)
        assert all(close_to(x, GREEN) for x in (await frames(await main.track(recv_a.participant_id, "camera"), 10))[-5:])
        assert all(close_to(x, BLUE) for x in (await frames(await main.track(recv_b.participant_id, "camera"), 10))[-5:])
        # and the teacher's voice is heard: a 440 Hz tone, not silence
        rms, hz = await tone(await recv_a.track(m, "microphone"), 1.0)
        assert rms > 1000 and 400 < hz < 480, (rms, hz)

        # the observer is refused publishing, by the server
        with pytest.raises(LessonError) as refused:
            await observer.request({"type": "publish", "source": "camera", "track_id": "x"})
        assert refused.value.code == "not_allowed"
        # a receiving classroom may not share a screen, nor watch another classroom that is not on stage
        with pytest.raises(LessonError):
            await recv_a.request({"type": "publish", "source": "screen", "track_id": "s"})
        with pytest.raises(LessonError) as refused:
            await recv_a.subscribe([{"participant_id": recv_b.participant_id, "source": "camera"}])
        assert refused.value.code == "not_allowed"

        # link quality measured by the SFU reaches the main classroom's grid
        update = await main.next_message("link_quality_update", timeout=8)
        assert update["participant_id"] in {recv_a.participant_id, recv_b.participant_id,
                                            main.participant_id}
        await until("a link sample of the receiving classroom",
                    lambda: any(e["participant_id"] == recv_a.participant_id for e in samples), 8, interval=0.2)
        sample = next(e for e in samples if e["participant_id"] == recv_a.participant_id)
        assert sample["type"] == "link_quality" and sample["instance_id"] == lesson.lid
        assert sample["user_id"] == w.terminal_recv.id and sample["down_kbps"] > 0 and sample["up_kbps"] > 0
        assert not any(e["participant_id"] == observer.participant_id for e in samples)
        # the publications are announced in the roster
        info = next(x for x in recv_a.messages if x["type"] == "participant_updated"
                    and x["participant"]["participant_id"] == m)
        assert {p["source"] for p in info["participant"]["publications"]} >= {"camera"}

    lesson.play(scenario)


def test_a_late_subscriber_gets_a_keyframe_within_a_second(lesson: Lesson) -> None:
    w = lesson.world

    async def scenario() -> None:
        main = await lesson.join(w.teacher)
        await main.publish({"camera": ColorTrack(RED)})
        await asyncio.sleep(3)  # the publisher's first keyframe is long gone
        late = await lesson.join(w.terminal_recv)
        started = time.monotonic()
        await late.subscribe([{"participant_id": main.participant_id, "source": "camera"}])
        seen = await frames(await late.track(main.participant_id, "camera"), 1, timeout=5)
        elapsed = time.monotonic() - started
        assert close_to(seen[0], RED)
        assert elapsed < 1.0, f"first frame after {elapsed:.3f} s"

    lesson.play(scenario)


def test_on_stage_switches_classrooms_without_a_broken_frame(lesson: Lesson) -> None:
    w = lesson.world

    async def scenario() -> None:
        main = await lesson.join(w.teacher)
        recv_a = await lesson.join(w.terminal_recv)
        recv_b = await lesson.join(w.assistant)
        observer = await lesson.join(w.researcher_a)
        await recv_a.publish({"camera": ColorTrack(GREEN)})
        await recv_b.publish({"camera": ColorTrack(BLUE)})
        await observer.subscribe([{"participant_id": "stage", "source": "camera"}])
        await main.request({"type": "set_on_stage", "participant_id": recv_a.participant_id})
        stage = await observer.track("stage", "camera")
        first = await frames(stage, 10)
        assert all(close_to(x, GREEN) for x in first[-5:]), first
        await main.request({"type": "set_on_stage", "participant_id": recv_b.participant_id})
        after = await frames(stage, 40)
        # every frame is a clean picture of one classroom or the other: no garbage from a
        # delta frame decoded against the wrong keyframe, and once blue, it stays blue
        assert all(close_to(x, GREEN) or close_to(x, BLUE) for x in after), after
        first_blue = next(i for i, x in enumerate(after) if close_to(x, BLUE))
        assert all(close_to(x, BLUE) for x in after[first_blue:]), after
        assert first_blue < 30

    lesson.play(scenario)


def test_loss_towards_one_subscriber_is_repaired_by_nack(lesson: Lesson) -> None:
    w = lesson.world

    async def scenario() -> None:
        main = await lesson.join(w.teacher)
        lossy = await lesson.join(w.terminal_recv)
        clean = await lesson.join(w.assistant)
        camera = ColorTrack(RED)
        await main.publish({"camera": camera})
        for c in (lossy, clean):
            await c.subscribe([{"participant_id": main.participant_id, "source": "camera"}])
        track = await lossy.track(main.participant_id, "camera")
        await frames(track, 3)
        tap = rtp_tap(lossy.subscriber, drop_every=8)  # 12.5 % of video packets never arrive
        clean_track = await clean.track(main.participant_id, "camera")
        await frames(clean_track, 3)
        got = await frames(track, 90, timeout=15)
        assert tap["dropped"] >= 10, tap
        assert tap["rtx"] >= tap["dropped"] * 0.7, tap  # retransmitted by the SFU (RTX)
        assert all(close_to(x, RED) for x in got), got

    lesson.play(scenario)


def test_a_link_too_weak_for_video_keeps_the_audio_and_gets_the_video_back(lesson: Lesson) -> None:
    w = lesson.world

    async def scenario() -> None:
        main = await lesson.join(w.teacher)
        rural = await lesson.join(w.terminal_recv)
        await main.publish({"camera": ColorTrack(RED), "microphone": ToneTrack()})
        await rural.subscribe([{"participant_id": main.participant_id, "source": "camera"},
                               {"participant_id": main.participant_id, "source": "microphone"}])
        await frames(await rural.track(main.participant_id, "camera"), 3)
        await rural.track(main.participant_id, "microphone")
        tap = rtp_tap(rural.subscriber, drop_every=2)  # half the video is lost on the way...
        tap["remb_bps"] = 5_000  # ...and the receiver's estimate says the link is congested (the camera sends ~15-30k)

        async def video_rate(seconds: float) -> tuple[float, float]:
            v0, a0 = tap["video"], tap["audio"]
            await asyncio.sleep(seconds)
            return (tap["video"] - v0) / seconds, (tap["audio"] - a0) / seconds

        t0 = time.monotonic()
        deadline = t0 + 12
        while True:  # the SFU sees the loss and the low estimate in the receiver's reports and pauses the video
            video, audio = await video_rate(1.0)
            if video < 1:
                break
            assert time.monotonic() < deadline, "video was never paused"
        assert audio > 30, audio  # Opus at 50 packets/s goes on: the class still hears the teacher
        padding = tap["padding"]
        await video_rate(2.0)
        assert tap["padding"] > padding  # paused: the SFU probes the link with padding, not with video
        tap["drop_every"] = 0  # the link recovers: the receiver's estimate climbs again
        tap["remb_growth"] = 1.08
        deadline = time.monotonic() + 10
        while True:  # a probe passes, the SFU sends the video again, and it stays
            video, _ = await video_rate(1.0)
            if video > 15:
                break
            assert time.monotonic() < deadline, "video never came back"
        track = await rural.track(main.participant_id, "camera")
        assert all(close_to(x, RED) for x in await frames(track, 10))

    lesson.play(scenario)


def test_a_reloaded_page_gets_its_place_and_subscriptions_back(lesson: Lesson) -> None:
    w = lesson.world

    async def scenario() -> None:
        main = await lesson.join(w.teacher)
        rural = await lesson.join(w.terminal_recv)
        await main.publish({"camera": ColorTrack(RED)})
        await rural.publish({"camera": ColorTrack(GREEN)})
        await rural.subscribe([{"participant_id": main.participant_id, "source": "camera"}])
        await main.subscribe([{"participant_id": rural.participant_id, "source": "camera"}])
        await frames(await rural.track(main.participant_id, "camera"), 3)
        await frames(await main.track(rural.participant_id, "camera"), 3)

        # the rural classroom's page reloads: socket and peer connections are gone
        session, last_seq = rural.participant_id, rural.last_seq
        await rural.drop()
        again = LessonClient(lesson.base, lesson.lid, await asyncio.to_thread(lesson.token, w.terminal_recv),
                             policy=POLICY)
        lesson.clients.append(again)
        reply = await again.connect(resume=(session, last_seq))
        assert reply["type"] == "resumed" and again.participant_id == session
        # its subscription comes back on a new connection without asking...
        seen = await frames(await again.track(main.participant_id, "camera"), 5)
        assert all(close_to(x, RED) for x in seen[-3:]), seen
        # ...and once it publishes again the teacher sees it on the same subscription
        await again.publish({"camera": ColorTrack(GREEN)})
        seen = await frames(main.tracks[(session, "camera")], 30, timeout=15)
        assert close_to(seen[-1], GREEN), seen
        assert not [m for m in main.messages if m["type"] == "participant_left"]

    lesson.play(scenario)


def test_h264_is_forwarded_as_h264(lesson: Lesson) -> None:
    w = lesson.world

    async def scenario() -> None:
        main = await lesson.join(w.teacher)
        rural = await lesson.join(w.terminal_recv)
        await main.publish({"camera": ColorTrack(BLUE)}, video_codec="video/H264")
        await rural.subscribe([{"participant_id": main.participant_id, "source": "camera"}])
        seen = await frames(await rural.track(main.participant_id, "camera"), 10)
        assert all(close_to(x, BLUE) for x in seen[-5:]), seen
        codecs = {c.mimeType for t in rural.subscriber.getTransceivers() for c in t._codecs}
        assert "video/H264" in codecs and "video/VP8" not in codecs, codecs

    lesson.play(scenario)


def test_a_subscription_made_before_an_h264_camera_is_published_gets_it_as_h264(lesson: Lesson) -> None:
    """A receiving classroom that asked for the teacher's camera before it was published (a page that
    rejoined after a failover, subscribers offered again after a worker's death) had that m-line
    negotiated with the default VP8; the teacher then sends H.264.  The SFU offers a new m-line with
    H.264 of its own accord, and the classroom decodes the teacher's picture."""
    w = lesson.world

    async def scenario() -> None:
        main = await lesson.join(w.teacher)
        rural = await lesson.join(w.terminal_recv)
        await rural.publish({"camera": ColorTrack(GREEN)}, video_codec="video/VP8")
        await main.subscribe([{"participant_id": rural.participant_id, "source": "camera"}])
        assert all(close_to(x, GREEN) for x in await frames(await main.track(rural.participant_id, "camera"), 3))
        await rural.subscribe([{"participant_id": main.participant_id, "source": "camera"}])
        await until("the m-line of the camera not yet published",
                    lambda: (main.participant_id, "camera") in rural.mids.values(), 5)
        await main.publish({"camera": ColorTrack(BLUE)}, video_codec="video/H264")
        deadline = time.monotonic() + 10
        seen: list[tuple[int, int, int]] = []
        while not (seen and all(close_to(x, BLUE) for x in seen)):
            assert time.monotonic() < deadline, seen
            try:  # (the track of the m-line negotiated first never gets a packet)
                seen = await frames(await rural.track(main.participant_id, "camera", timeout=1), 3, timeout=1)
            except TimeoutError:
                pass
        codecs = {c.mimeType for t in rural.subscriber.getTransceivers() if t.currentDirection == "recvonly"
                  for c in t._codecs}
        assert "video/H264" in codecs, codecs

    lesson.play(scenario)


def test_a_student_is_heard_only_while_on_stage(lesson: Lesson) -> None:
    w = lesson.world

    async def scenario() -> None:
        main = await lesson.join(w.teacher)
        observer = await lesson.join(w.researcher_a)
        student = await lesson.join(w.student)
        with pytest.raises(LessonError) as refused:  # not on stage: may not publish
            await student.request({"type": "publish", "source": "camera", "track_id": "c"})
        assert refused.value.code == "not_allowed"
        await main.request({"type": "set_on_stage", "participant_id": student.participant_id})
        await student.publish({"camera": ColorTrack(GREEN)})
        await observer.subscribe([{"participant_id": "stage", "source": "camera"}])
        stage = await observer.track("stage", "camera")
        assert all(close_to(x, GREEN) for x in (await frames(stage, 8))[-4:])
        await main.request({"type": "set_on_stage", "participant_id": None})
        tap = rtp_tap(observer.subscriber)
        await asyncio.sleep(1.0)
        before = tap["video"]
        await asyncio.sleep(1.0)
        assert tap["video"] == before  # off stage: the server stops the student's camera

    lesson.play(scenario)


def test_the_main_classroom_hears_every_receiving_classroom(lesson: Lesson) -> None:
    """A 专递课堂's main classroom takes the camera and the microphone of each receiving classroom: all of
    them arrive on its one subscriber connection, every microphone with its own classroom's sound."""
    w = lesson.world

    async def scenario() -> None:
        main = await lesson.join(w.teacher)
        recv_a = await lesson.join(w.terminal_recv)
        recv_b = await lesson.join(w.assistant)
        await recv_a.publish({"camera": ColorTrack(GREEN), "microphone": ToneTrack(330.0)})
        await recv_b.publish({"camera": ColorTrack(BLUE), "microphone": ToneTrack(660.0)})
        a, b = recv_a.participant_id, recv_b.participant_id
        await main.subscribe([{"participant_id": p, "source": s} for p in (a, b) for s in ("camera", "microphone")])
        for pid, colour in ((a, GREEN), (b, BLUE)):
            seen = await frames(await main.track(pid, "camera"), 8)
            assert all(close_to(x, colour) for x in seen[-4:]), (pid, seen)
        for pid, hz in ((a, 330.0), (b, 660.0)):
            level, heard = await tone(await main.track(pid, "microphone"), 1.0, timeout=15.0)
            assert level > 1000 and abs(heard - hz) < hz * 0.05, (pid, level, heard)

    lesson.play(scenario)


def test_trickled_candidates_are_checked_against_the_allowed_networks(lesson: Lesson) -> None:
    w = lesson.world

    async def scenario() -> None:
        main = await lesson.join(w.teacher)
        await main.publish({"camera": ColorTrack(RED)})
        lan = "candidate:1 1 udp 2122260223 192.168.1.20 54400 typ host"
        with pytest.raises(LessonError) as refused:
            await main.request({"type": "ice_candidate", "target": "publisher", "candidate": lan,
                                "sdp_mid": "0", "sdp_mline_index": 0})
        assert refused.value.code == "bad_sdp"
        loopback = "candidate:2 1 udp 2122260223 127.0.0.1 54401 typ host"
        reply = await main.request({"type": "ice_candidate", "target": "publisher", "candidate": loopback,
                                    "sdp_mid": "0", "sdp_mline_index": 0})
        assert reply["type"] == "ack"
        with pytest.raises(LessonError) as refused:  # nothing to add it to yet
            await main.request({"type": "ice_candidate", "target": "subscriber", "candidate": loopback,
                                "sdp_mid": "0"})
        assert refused.value.code == "bad_sdp"

    lesson.play(scenario)
