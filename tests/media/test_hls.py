"""The LL-HLS egress (``media.hls``) fed by the recorder: aiortc's H.264 and Opus encoders → RTP packets →
a real ``ProducerStream`` → CMAF parts, segments and playlists, without re-encoding the video.

The publisher sends a keyframe only when asked (a PLI), as a browser does, so the segment cuts come from the
egress's own keyframe requests.  Wall-clock time is pinned (``HlsEgress.wall_offset``); arrivals are the
test's own clock.  Playlists are read with the ``m3u8`` library, media with PyAV.
"""

from __future__ import annotations

import asyncio
import fractions
from pathlib import Path
from typing import Any

import av
import pytest

from media.cmaf import init_segment
from media.hls import HlsEgress, OpusToAac, Rendition
from media.producer import Producer
from media.recorder import RoomRecorder
from media.salvage import salvage_folder
from tests.media.hls_checks import aac_tone, check_media_playlist, concat, decode_video, pdt, playlist
from tests.media.sfu_helpers import BLUE, RED, close_to, mean_rgb
from tests.media.test_recorder import CODECS, FakeTransport, ToneSource, VideoSource, producer, rtp
from tests.utils.wait import until

WALL_AT_ZERO = 1_804_500_000.0
"""The pinned wall-clock time of arrival time 0 (2027-03-08 ~10:00 UTC)."""
FRAME_S = 1 / 30


class Publisher:
    """A main classroom's H.264 camera (keyframes only on PLI) and Opus microphone, 30 fps / 20 ms packets."""

    def __init__(self, transport: FakeTransport, ssrc: int = 1111, size: tuple[int, int] = (160, 120)) -> None:
        self.transport = transport
        self.cam = producer("video/H264", "camera", transport, ssrc)
        self.mic = producer("audio/opus", "microphone", transport, ssrc + 1)
        self.video = VideoSource("video/H264", ssrc=ssrc)
        self.tone = ToneSource(ssrc=ssrc + 1)
        self.size = size
        self.answered = 0
        self.keyframes: list[int] = []
        """Frame numbers sent as keyframes."""

    def frame(self, rgb: tuple[int, int, int], now: float) -> None:
        key = len(self.transport.plis) > self.answered
        self.answered = len(self.transport.plis)
        if key:
            self.keyframes.append(self.video.n)
        for pkt in self._encode(rgb, key):
            self.cam.streams[0].receive(pkt, now)
        while self.tone.n < self.video.n * 1600:  # audio up to the video's media time (48 kHz vs 30 fps)
            self.mic.streams[0].receive(self.tone.packet(), now)

    def _encode(self, rgb: tuple[int, int, int], key: bool) -> list[bytes]:
        width, height = self.size
        picture = av.VideoFrame(width, height, "rgb24")
        picture.planes[0].update(bytes(rgb) * (picture.planes[0].line_size // 3 * height))
        picture = picture.reformat(format="yuv420p")
        picture.pts = self.video.n * 3000
        picture.time_base = fractions.Fraction(1, 90000)
        ts = self.video.ts0 + picture.pts  # (the encoder rewrites the picture's pts)
        self.video.n += 1
        payloads, _ = self.video.encoder.encode(picture, force_keyframe=key)
        out = []
        for i, p in enumerate(payloads):
            out.append(rtp(self.video.seq, ts, p, i == len(payloads) - 1,
                           CODECS["video/H264"].payloadType, self.video.ssrc))
            self.video.seq += 1
        return out


async def publish(pub: Publisher, seconds: float, now: float, colour: Any) -> float:
    """``seconds`` of media in real time (the recorder's keyframe requests reach the publisher as a PLI does)."""
    for _ in range(round(seconds * 30)):
        pub.frame(colour(now), now)
        now += FRAME_S
        await asyncio.sleep(FRAME_S)
    return now


def recorder(directory: Path, events: list[tuple[str, dict[str, Any]]] | None = None) -> RoomRecorder:
    rec = RoomRecorder("lesson-1", directory, asyncio.get_running_loop(), hls=True,
                       on_event=lambda e, d: events.append((e, d)) if events is not None else None)
    assert rec.hls is not None
    rec.hls.wall_offset = WALL_AT_ZERO
    return rec


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_an_h264_camera_and_a_tone_become_ll_hls_without_reencoding(tmp_path: Path) -> None:
    hls = tmp_path / "hls"
    seen: dict[str, Any] = {}

    async def main() -> dict[str, Any]:
        transport = FakeTransport()
        pub = Publisher(transport)
        rec = recorder(tmp_path)
        rec.want([pub.cam, pub.mic])
        now = await publish(pub, 4.5, 10.0, lambda t: RED)
        # the publisher's first sender report: its RTP time of frame n arrived 40 ms after that frame
        n = pub.video.n - 1
        pub.cam.streams[0].on_sender_report(0, (pub.video.ts0 + n * 3000) & 0xFFFFFFFF, now - FRAME_S + 0.04)
        now = await publish(pub, 3.5, now, lambda t: BLUE)
        seen["live"] = await until("a live playlist with 3 segments", lambda: (
            (hls / "camera" / "index.m3u8").exists() and len(playlist(hls / "camera" / "index.m3u8").segments) >= 3
            and playlist(hls / "camera" / "index.m3u8")), 10)
        seen["live_main"] = playlist(hls / "main.m3u8")
        seen["keyframes"] = list(pub.keyframes)
        return await rec.stop()

    summary = run(main())
    live = seen["live"]
    check_media_playlist(live, live=True)
    current = live.segments[-1]  # being written: parts only
    assert current.uri is None and current.parts
    msn = live.media_sequence + len(live.segments) - 1
    assert [p.uri for p in current.parts] == [f"s{msn}.{i}.m4s" for i in range(len(current.parts))]
    assert live.preload_hint.uri == f"s{msn}.{len(current.parts)}.m4s"  # the next part

    camera = playlist(hls / "camera" / "index.m3u8")
    check_media_playlist(camera, live=False)
    segments = camera.segments
    assert [s.uri for s in segments] == [f"s{i}.m4s" for i in range(camera.media_sequence,
                                                                     camera.media_sequence + len(segments))]
    for seg in segments[:-1]:  # cut at the first keyframe after 2 s (asked for at 2 s)
        assert 2.0 <= seg.duration <= 2.3, (seg.uri, seg.duration)
    for seg in segments:
        if seg.parts:
            assert seg.parts[0].independent == "YES"
    # program date time: from the first frame's arrival, then from the sender report (40 ms later)
    vod = playlist(hls / "camera" / "vod.m3u8")
    assert vod.is_endlist and vod.playlist_type == "vod" and vod.segments[0].uri == "s0.m4s"
    first_key = seen["keyframes"][0]
    assert abs(pdt(vod.segments[0]) - (WALL_AT_ZERO + 10.0 + first_key * FRAME_S)) < 0.001
    after_sr = [s for s in vod.segments if pdt(s) > WALL_AT_ZERO + 14.5]
    assert after_sr, [pdt(s) for s in vod.segments]
    for prev, seg in zip(vod.segments, vod.segments[1:], strict=False):
        step = pdt(seg) - pdt(prev) - prev.duration
        assert abs(step - (0.04 if seg is after_sr[0] else 0.0)) < 0.002, (seg.uri, step)

    # the segments decode to what was published: red, then blue; parts decode alone with their init
    frames = decode_video(concat(hls / "camera", [s.uri for s in vod.segments]))
    assert len(frames) == 240 - first_key
    assert close_to(mean_rgb(frames[0][1]), RED) and close_to(mean_rgb(frames[-1][1]), BLUE)
    assert abs(frames[-1][0] - frames[0][0] - (239 - first_key) * FRAME_S) < 0.002
    last = segments[-1]
    part_frames = decode_video(concat(hls / "camera", [p.uri for p in last.parts]))
    assert len(part_frames) == round(last.duration * 30) and close_to(mean_rgb(part_frames[0][1]), BLUE)
    assert (hls / "camera" / "s0.m4s").exists() and not (hls / "camera" / "s0.0.m4s").exists()  # kept: segments

    audio = playlist(hls / "audio" / "vod.m3u8")
    codec, rate, rms, hz = aac_tone(concat(hls / "audio", [s.uri for s in audio.segments]))
    assert (codec, rate) == ("aac", 48000) and rms > 1500 and abs(hz - 440) < 10, (codec, rate, rms, hz)
    assert abs(sum(s.duration for s in audio.segments) - 8.0) < 0.1
    # one clock with the video: the first AAC frame is the encoder's priming, 1024 samples before the tone
    assert abs(pdt(audio.segments[0]) - (WALL_AT_ZERO + 10.0 - 1024 / 48000)) < 0.001
    check_media_playlist(playlist(hls / "audio" / "index.m3u8"), live=False)

    # while live the multivariant playlist lists the live playlists; once ended, the whole stream (vod.m3u8)
    for main, media in ((seen["live_main"], "index.m3u8"), (playlist(hls / "main.m3u8"), "vod.m3u8")):
        (variant,) = main.playlists
        assert variant.uri == f"camera/{media}" and variant.stream_info.resolution == (160, 120)
        assert variant.stream_info.codecs.startswith("avc1.42") and variant.stream_info.codecs.endswith(",mp4a.40.2")
        assert variant.stream_info.bandwidth > 0 and variant.stream_info.audio == "audio"
        assert [(m.type, m.uri, m.default) for m in main.media] == [("AUDIO", f"audio/{media}", "YES")]
    assert not (hls / "screen.m3u8").exists()
    assert sorted(p.suffix for p in hls.rglob("*") if p.is_file()) == sorted(
        p.suffix for p in hls.rglob("*") if p.is_file() and p.suffix in (".m3u8", ".mp4", ".m4s"))

    assert summary["hls"]["renditions"]["camera"]["segments"] == len(vod.segments)
    assert summary["hls"]["refused"] == {}
    assert [f["name"] for f in summary["files"]] == ["camera-1.mp4", "microphone-1.webm"]  # the replay's files


def test_a_reconnect_and_a_new_picture_size_are_discontinuities(tmp_path: Path) -> None:
    hls = tmp_path / "hls"

    async def main() -> None:
        transport = FakeTransport()
        rec = recorder(tmp_path)
        rec.wanted.update({"p1:camera", "p1:microphone"})
        now = 10.0
        for ssrc, size in ((1111, (160, 120)), (3333, (160, 120)), (3333, (320, 240))):
            if size == (320, 240):  # the same stream changes its picture size (a keyframe with new SPS)
                pub.size = size
                transport.plis.append(ssrc)
            else:  # the publisher reconnects: new producers, new SSRCs
                pub = Publisher(transport, ssrc=ssrc)
                rec.producer_added(pub.cam)
                rec.producer_added(pub.mic)
            now = await publish(pub, 3.0, now, lambda t: RED)
            if ssrc == 1111:
                rec.producer_closed(pub.cam)
                rec.producer_closed(pub.mic)
                await until("the stream's last segment", lambda: len(playlist(hls / "camera" / "index.m3u8")
                                                                      .segments) >= 2 and playlist(
                    hls / "camera" / "index.m3u8").segments[-1].uri, 10)
                now += 5.0  # away for 5 s
        await rec.stop()

    run(main())
    camera = playlist(hls / "camera" / "vod.m3u8")
    flags = [s.discontinuity for s in camera.segments]
    assert flags[0] is False and flags.count(True) == 2, flags
    first_run = flags.index(True)
    gap = pdt(camera.segments[first_run]) - pdt(camera.segments[first_run - 1]) - camera.segments[first_run - 1].duration
    assert 4.9 < gap < 6.0, gap  # the time away shows in program date time, not in the media
    inits = [s.init_section.uri for s in camera.segments]
    assert inits[0] == "init.mp4" and inits[-1] == "init-2.mp4" and inits[first_run] == "init.mp4"
    big = [s.uri for s in camera.segments if s.init_section.uri == "init-2.mp4"]
    frames = decode_video(concat(hls / "camera", big, init="init-2.mp4"))
    assert (frames[0][1].width, frames[0][1].height) == (320, 240)
    main = playlist(hls / "main.m3u8")
    assert main.playlists[0].stream_info.resolution == (320, 240)
    live = playlist(hls / "camera" / "index.m3u8")
    assert live.is_endlist and live.discontinuity_sequence + sum(s.discontinuity for s in live.segments) == 2
    audio = playlist(hls / "audio" / "vod.m3u8")
    assert sum(s.discontinuity for s in audio.segments) == 1  # the reconnect; the picture size is not its business


@pytest.mark.parametrize("source", ["camera", "screen"])
def test_a_vp8_camera_or_screen_gets_no_stream_and_a_reason(tmp_path: Path, source: str) -> None:
    events: list[tuple[str, dict[str, Any]]] = []

    async def main() -> dict[str, Any]:
        transport = FakeTransport()
        rec = recorder(tmp_path, events)
        video = producer("video/VP8", source, transport, 1111)
        rec.want([video])
        src = VideoSource("video/VP8")
        for i in range(30):
            for pkt in src.frame(RED, key=i == 0):
                video.streams[0].receive(pkt, 10.0 + i * FRAME_S)
        return await rec.stop()

    summary = run(main())
    reason = summary["hls"]["refused"][source]
    assert "VP8" in reason and "H.264" in reason and "WebRTC" in reason
    assert events == [("hls_refused", {"source": source, "codec": "vp8", "reason": reason})]
    assert not (tmp_path / "hls" / source).exists() and not (tmp_path / "hls" / "main.m3u8").exists()
    assert summary["files"][0]["frames"] == 30  # the recording goes on as before


def test_a_simulcast_camera_offers_its_lower_layer_as_a_variant(tmp_path: Path) -> None:
    hls = tmp_path / "hls"

    async def main() -> dict[str, Any]:
        transport = FakeTransport()
        cam = Producer("p1:camera", transport, kind="video", mid="0", source="camera",  # type: ignore[arg-type]
                       mime="video/H264", clock_rate=90000, payload_type=102, rtx_payload_type=None, extmap={},
                       layers=[("q", 1111), ("f", 1112)])
        layers = {1111: Publisher(transport, ssrc=1111, size=(160, 120)),
                  1112: Publisher(transport, ssrc=1112, size=(320, 240))}
        for pub in layers.values():
            pub.cam = cam
        rec = recorder(tmp_path)
        rec.want([cam])
        now = 10.0
        for _ in range(150):  # 5 s; each layer answers the PLIs for its own SSRC
            for ssrc, pub in layers.items():
                key = transport.plis.count(ssrc) > pub.answered
                pub.answered = transport.plis.count(ssrc)
                for pkt in pub._encode(RED, key):
                    cam.streams[0 if ssrc == 1111 else 1].receive(pkt, now)
            now += FRAME_S
            await asyncio.sleep(FRAME_S)
        return await rec.stop()

    summary = run(main())
    assert [f["name"] for f in summary["files"]] == ["camera-1.mp4"]  # the recording keeps the best layer
    assert summary["files"][0]["width"] == 320
    main = playlist(hls / "main.m3u8")
    assert [(v.uri, v.stream_info.resolution) for v in main.playlists] == [
        ("camera/vod.m3u8", (320, 240)), ("camera-q/vod.m3u8", (160, 120))]  # ended: the whole stream
    assert main.playlists[0].stream_info.bandwidth > main.playlists[1].stream_info.bandwidth
    low = playlist(hls / "camera-q" / "vod.m3u8")
    check_media_playlist(playlist(hls / "camera-q" / "index.m3u8"), live=False)
    frames = decode_video(concat(hls / "camera-q", [s.uri for s in low.segments]))
    assert (frames[0][1].width, frames[0][1].height) == (160, 120) and close_to(mean_rgb(frames[-1][1]), RED)
    assert len(low.segments) >= 2 and all(2.0 <= s.duration <= 2.3 for s in low.segments[:-1])


def test_a_stream_made_again_in_the_same_folder_goes_on_after_its_segments(tmp_path: Path) -> None:
    """The lesson's worker died: the recording goes on in the same folder, and so does the stream."""
    hls = tmp_path / "hls"
    written: dict[str, bytes] = {}  # what the dead worker had written (a viewer or a cache may hold any of it)

    async def main() -> None:
        transport = FakeTransport()
        now = 10.0
        for colour, clean_end in ((RED, False), (BLUE, True)):
            pub = Publisher(transport, ssrc=1111 if colour == RED else 3333)
            rec = recorder(tmp_path)
            rec.want([pub.cam, pub.mic])
            now = await publish(pub, 4.5, now, lambda t, c=colour: c)
            if not clean_end:  # the worker dies: nothing ends the stream (the segment being written is lost)
                await until("two segments written", lambda: complete_segments(hls / "camera" / "vod.m3u8") >= 2, 10)
                rec.hls = None
                for writer in rec.writers.values():
                    writer.hls = writer._hls_track = None
                written.update((f.name, f.read_bytes()) for f in (hls / "camera").glob("*.m4s"))
            await rec.stop()
            now += 2.0

    run(main())
    camera = playlist(hls / "camera" / "vod.m3u8")
    assert camera.is_endlist and camera.playlist_type == "vod"
    msns = [int(s.uri[1:].split(".")[0]) for s in camera.segments]
    assert msns == list(range(len(msns))) and len(msns) >= 4  # numbering goes on, nothing overwritten
    restart = [s.discontinuity for s in camera.segments].index(True)
    assert restart >= 2 and sum(s.discontinuity for s in camera.segments) == 1
    assert camera.segments[0].init_section.uri == "init.mp4"
    assert camera.segments[restart].init_section.uri == "init-2.mp4"
    first = decode_video(concat(hls / "camera", [s.uri for s in camera.segments[:restart]]))
    second = decode_video(concat(hls / "camera", [s.uri for s in camera.segments[restart:]], init="init-2.mp4"))
    assert close_to(mean_rgb(first[-1][1]), RED) and close_to(mean_rgb(second[0][1]), BLUE)
    assert pdt(camera.segments[restart]) > pdt(camera.segments[restart - 1]) + camera.segments[restart - 1].duration
    live = playlist(hls / "camera" / "index.m3u8")
    assert live.media_sequence + len(live.segments) - 1 == msns[-1]
    # no name of the dead worker's was written again with other bytes (its unfinished segment's parts included)
    assert any(".0.m4s" in name for name in written)
    assert all(f.read_bytes() == written[f.name] for f in (hls / "camera").glob("*.m4s") if f.name in written)


def test_after_a_workers_death_the_ended_stream_lists_every_segment_of_every_rendition(tmp_path: Path) -> None:
    """The worker died with the camera and the sound streaming; after the resume only the camera came back.
    The ended stream is still the whole lesson: each rendition's vod.m3u8 lists every segment written before
    and after, with EXT-X-ENDLIST, and main.m3u8 lists them (the sound with the description it had)."""
    hls = tmp_path / "hls"
    seen: dict[str, Any] = {}

    async def main() -> None:
        transport = FakeTransport()
        pub = Publisher(transport)
        rec = recorder(tmp_path)
        rec.want([pub.cam, pub.mic])
        now = await publish(pub, 4.5, 10.0, lambda t: RED)
        await until("two segments of each written", lambda: complete_segments(hls / "camera" / "vod.m3u8") >= 2
                    and complete_segments(hls / "audio" / "vod.m3u8") >= 2, 10)
        rec.hls = None  # the worker dies: nothing ends the stream
        for writer in rec.writers.values():
            writer.hls = writer._hls_track = None
        seen["before"] = {name: [s.uri for s in playlist(hls / name / "vod.m3u8").segments]
                          for name in ("camera", "audio")}
        seen["live_audio"] = playlist(hls / "audio" / "index.m3u8")
        await rec.stop()
        pub = Publisher(transport, ssrc=3333)
        rec = recorder(tmp_path)
        rec.want([pub.cam])  # the sound is not published again
        await publish(pub, 4.5, now + 2.0, lambda t: BLUE)
        await rec.stop()

    run(main())
    before = seen["before"]
    camera, audio = playlist(hls / "camera" / "vod.m3u8"), playlist(hls / "audio" / "vod.m3u8")
    for pl in (camera, audio):
        assert pl.is_endlist and pl.playlist_type == "vod"
    uris = [s.uri for s in camera.segments]
    assert uris[:len(before["camera"])] == before["camera"] and len(uris) >= len(before["camera"]) + 2
    assert camera.segments[len(before["camera"])].discontinuity  # the resume
    assert close_to(mean_rgb(decode_video(concat(hls / "camera", [s.uri for s in camera.segments[-1:]],
                                                 init="init-2.mp4"))[-1][1]), BLUE)
    assert [s.uri for s in audio.segments] == before["audio"]  # every segment the dead worker completed
    assert all((hls / "audio" / uri).is_file() for uri in before["audio"])
    # the live playlist a player of the sound was polling ends too, its segments still listed
    live = playlist(hls / "audio" / "index.m3u8")
    check_media_playlist(live, live=False)
    old = [s.uri for s in seen["live_audio"].segments if s.uri]
    assert live.media_sequence == seen["live_audio"].media_sequence and [s.uri for s in live.segments] == old
    main = playlist(hls / "main.m3u8")
    (variant,) = main.playlists
    assert variant.uri == "camera/vod.m3u8" and variant.stream_info.codecs.endswith(",mp4a.40.2")
    assert [(m.type, m.uri) for m in main.media] == [("AUDIO", "audio/vod.m3u8")]


@pytest.mark.parametrize("ender", ["egress", "salvage"])
def test_a_stream_left_by_a_dead_worker_is_ended_by_an_egress_made_on_its_folder(tmp_path: Path, ender: str) -> None:
    """Nothing resumed the stream (the lesson ended with the worker): an ``HlsEgress`` made on the folder and
    finished at once ends every rendition the dead worker began and lists the whole stream; so does the
    salvage of a recording cut by a kill of its node (``media.salvage.salvage_folder``, on the next start)."""
    hls = tmp_path / "hls"

    async def main() -> None:
        pub = Publisher(FakeTransport())
        rec = recorder(tmp_path)
        rec.want([pub.cam, pub.mic])
        await publish(pub, 4.5, 10.0, lambda t: RED)
        await until("two segments of each written", lambda: complete_segments(hls / "camera" / "vod.m3u8") >= 2
                    and complete_segments(hls / "audio" / "vod.m3u8") >= 2, 10)
        rec.hls = None  # the worker dies
        for writer in rec.writers.values():
            writer.hls = writer._hls_track = None
        await rec.stop()

    run(main())
    before = {name: [s.uri for s in playlist(hls / name / "vod.m3u8").segments] for name in ("camera", "audio")}
    live_main = playlist(hls / "main.m3u8")
    if ender == "egress":
        summary = HlsEgress(hls).finish()
        assert set(summary["renditions"]) == {"camera", "audio"}
    else:
        files = salvage_folder(tmp_path)
        assert {f["source"] for f in files} == {"camera", "microphone"} and all(f["frames"] > 0 for f in files)
    for name in ("camera", "audio"):
        vod = playlist(hls / name / "vod.m3u8")
        assert vod.is_endlist and vod.playlist_type == "vod" and [s.uri for s in vod.segments] == before[name]
        assert playlist(hls / name / "index.m3u8").is_endlist
    main = playlist(hls / "main.m3u8")
    assert [v.uri for v in main.playlists] == ["camera/vod.m3u8"] and [m.uri for m in main.media] == ["audio/vod.m3u8"]
    (variant,) = main.playlists  # as the dead worker described it
    (was,) = live_main.playlists
    assert (variant.stream_info.codecs, variant.stream_info.resolution) == (was.stream_info.codecs,
                                                                            was.stream_info.resolution)


def complete_segments(path: Path) -> int:
    return len(playlist(path).segments) if path.exists() else 0


def test_a_gap_in_the_samples_ends_the_segment_and_the_next_is_a_discontinuity(tmp_path: Path) -> None:
    rendition = Rendition(tmp_path / "audio", "audio", 48000)
    rendition.start_run(init_segment(kind="audio", timescale=48000, asc=OpusToAac().config, channels=1,
                                     sample_rate=48000, bitrate=64000), codecs="mp4a.40.2")
    ts = 0
    for i in range(300):  # 6.4 s of AAC frames with a 3 s hole after the first 3.2 s
        rendition.add(b"\x21" * 20, ts, True, WALL_AT_ZERO + ts / 48000)
        ts += 1024 + (3 * 48000 if i == 149 else 0)
    rendition.finish()
    pl = playlist(tmp_path / "audio" / "vod.m3u8")
    check_media_playlist(playlist(tmp_path / "audio" / "index.m3u8"), live=False)
    assert [s.discontinuity for s in pl.segments].count(True) == 1
    after = [s.discontinuity for s in pl.segments].index(True)
    before = pl.segments[after - 1]
    assert abs(pdt(before) + before.duration + 3.0 - pdt(pl.segments[after])) < 0.001  # the hole is in the clock
    assert abs(sum(s.duration for s in pl.segments) - 300 * 1024 / 48000) < 0.001  # and in no segment


def test_a_video_segment_after_a_gap_starts_on_a_keyframe(tmp_path: Path) -> None:
    """A camera that paused longer than the gap (a lost stretch, a frozen sender) and comes back with
    frames that need the ones lost: the stream waits for the keyframe it asks for, and the next segment —
    a discontinuity — begins with it, so a player that joins there can decode it."""
    rendition = Rendition(tmp_path / "camera", "video", 90000)
    rendition.start_run(b"init", codecs="avc1.42c01f", width=320, height=240)
    ts = 0
    asked = []
    for i in range(150):  # 30 fps: 2 s, a 1.5 s pause, 15 frames that are not keyframes, then a keyframe
        key = i in (0, 90)
        rendition.add(bytes([i]) * 10, ts, key, WALL_AT_ZERO + ts / 90000)
        asked.append(rendition.keyframe_due(ts))
        ts += 3000 + (135000 if i == 59 else 0)
    rendition.finish()
    pl = playlist(tmp_path / "camera" / "vod.m3u8")
    after = [s.discontinuity for s in pl.segments].index(True)
    first = (tmp_path / "camera" / pl.segments[after].uri).read_bytes()
    assert bytes([90]) * 10 in first and bytes([60]) * 10 not in first and bytes([75]) * 10 not in first
    assert all(asked[60:90]) and not any(asked[91:100])  # asked for while waiting, not after
    frames_listed = sum(s.duration for s in pl.segments) * 30
    assert abs(frames_listed - (150 - 30)) <= 1  # the 30 frames that could not be decoded are not in it
