"""Pieces of the SFU fan-out benchmark that need neither root, a network namespace nor Janus."""

from __future__ import annotations

import asyncio
import math
import time

import av
import pytest
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from bench import fanout
from bench.fanout_common import (
    Clip,
    ClipTrack,
    CountingSubscriber,
    SendLog,
    encode_clip,
    is_rtcp,
    payload_key,
    percentile,
    rtp_payload,
    vp8_is_keyframe,
)

SECONDS = 3
KEYFRAME_INTERVAL = 30  # 1 s at 30 fps


@pytest.fixture(scope="module")
def clip() -> Clip:
    return encode_clip(seconds=SECONDS, keyframe_interval=KEYFRAME_INTERVAL)


def test_clip_has_periodic_keyframes_and_the_bitrate_asked_for(clip: Clip) -> None:
    assert len(clip.video) == SECONDS * 30
    assert clip.duration == pytest.approx(SECONDS)
    # a key frame every KEYFRAME_INTERVAL frames, nothing else is one
    assert clip.video_keyframes == list(range(0, SECONDS * 30, KEYFRAME_INTERVAL))
    assert [
        i for i, (p, _) in enumerate(clip.video) if vp8_is_keyframe(p)
    ] == clip.video_keyframes
    assert [pts for _, pts in clip.video] == list(range(SECONDS * 30))
    # ~1.5 Mbps video (a short clip has proportionally more key frames), ~50 kbps Opus at 50 packets/s
    assert 0.7e6 < clip.video_bitrate() < 3e6
    assert 20e3 < clip.audio_bitrate() < 120e3
    assert abs(len(clip.audio) - SECONDS * 50) <= 2
    assert [pts for _, pts in clip.audio[:3]] == [0, 960, 1920]
    # Opus packets differ (the tone carries a little noise), so payload keys stay distinct
    assert len({payload_key(p) for p, _ in clip.audio}) == len(clip.audio)


def test_clip_track_gives_paced_packets_that_aiortc_packs_without_encoding(
    clip: Clip,
) -> None:
    track = ClipTrack("audio", clip.audio, Clip.audio_time_base, clip.duration)

    async def take(n: int) -> list[av.Packet]:
        return [await track.recv() for _ in range(n)]

    t = time.monotonic()
    packets = asyncio.run(take(6))
    elapsed = time.monotonic() - t
    assert 0.08 <= elapsed < 0.5  # 6 packets of 20 ms: the 6th is due at 100 ms
    assert all(isinstance(p, av.Packet) for p in packets)
    assert [p.pts for p in packets] == [0, 960, 1920, 2880, 3840, 4800]
    assert packets[0].time_base == Clip.audio_time_base

    opus = get_encoder(
        RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2)
    )
    payloads, timestamp = opus.pack(packets[2])
    assert payloads == [clip.audio[2][0]] and timestamp == 1920

    # video: a key frame becomes several VP8 RTP payloads; looping continues the timestamps
    vtrack = ClipTrack("video", clip.video[:2], Clip.video_time_base, 2 / 30)
    vp8 = get_encoder(RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000))
    frames = asyncio.run(_take(vtrack, 3))
    payloads, timestamp = vp8.pack(frames[0])
    assert len(payloads) >= 2 and all(len(p) <= 1300 for p in payloads)
    assert [f.pts for f in frames] == [0, 1, 2]
    assert vp8.pack(frames[2])[1] == 6000  # 2/30 s at 90 kHz


async def _take(track: ClipTrack, n: int) -> list[av.Packet]:
    return [await track.recv() for _ in range(n)]


def _rtp(
    payload: bytes, seq: int, ssrc: int, ts: int, pt: int = 96, mid: str | None = None
) -> bytes:
    packet = RtpPacket(payload_type=pt, sequence_number=seq, timestamp=ts, ssrc=ssrc)
    packet.payload = payload
    packet.csrc = [1, 2] if mid else []
    if mid:
        packet.extensions.mid = mid
        packet.extensions.abs_send_time = 12345
    from aiortc.rtcrtpparameters import (
        RTCRtpHeaderExtensionParameters,
        RTCRtpParameters,
    )
    from aiortc.rtp import HeaderExtensionsMap

    extensions = HeaderExtensionsMap()
    extensions.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(
                    id=1, uri="urn:ietf:params:rtp-hdrext:sdes:mid"
                ),
                RTCRtpHeaderExtensionParameters(
                    id=3,
                    uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
                ),
            ]
        )
    )
    return packet.serialize(extensions)


def test_payload_key_survives_header_rewriting_and_matches_send_times() -> None:
    payload = bytes(range(200)) * 3
    sent = _rtp(payload, seq=10, ssrc=1111, ts=90000)
    forwarded = _rtp(payload, seq=54321, ssrc=2222, ts=123, pt=100, mid="video0")
    assert not is_rtcp(sent)
    assert rtp_payload(sent) == rtp_payload(forwarded) == payload
    assert payload_key(rtp_payload(sent)) == payload_key(rtp_payload(forwarded))
    assert payload_key(payload) != payload_key(payload[:-1] + b"\x00")

    log = SendLog()
    key = payload_key(payload)
    log.record(key, 100.0)
    log.record(key, 110.0)  # the clip looped: the same payload sent again
    log.record(payload_key(b"other"), 100.5)
    delays, unmatched = log.delays(
        [
            (key, 100.002),
            (key, 110.0015),
            (payload_key(b"other"), 100.501),
            (key, 99.0),
            (payload_key(b"x"), 1.0),
        ]
    )
    assert [round(d * 1000, 3) for d in delays] == [2.0, 1.5, 1.0]
    assert unmatched == 2  # arrived before any send; never sent

    assert percentile([1, 2, 3, 4], 50) == 2
    assert percentile(list(range(1, 101)), 99) == 99
    assert math.isnan(percentile([], 50))


def test_counting_subscriber_counts_loss_and_arrivals_in_the_window() -> None:
    async def run() -> tuple[CountingSubscriber, object, object]:
        sub = CountingSubscriber(0)
        sub.pt_kinds = {96: "video", 111: "audio", 97: "other"}
        sub.window = (10.0, 20.0)
        sub.on_rtp(_rtp(b"v0", 65534, 5, 0), 9.0)  # before the window
        a = sub.snapshot()
        for seq, t in [(65535, 10.1), (1, 10.2), (2, 10.3)]:  # seq 0 lost, wraps around
            sub.on_rtp(_rtp(b"v%d" % seq, seq, 5, 0), t)
        sub.on_rtp(
            _rtp(b"a", 7, 6, 0, pt=111), 10.4
        )  # audio SSRC first seen in the window
        sub.on_rtp(_rtp(b"r", 1, 7, 0, pt=97), 10.5)  # rtx: counted, not in loss
        b = sub.snapshot()
        await sub.close()
        return sub, a, b

    sub, a, b = asyncio.run(run())
    assert sub.first_packet == 9.0 and sub.first_video == 9.0
    assert sub.packets == {"audio": 1, "video": 4, "other": 1}
    assert len(sub.arrivals) == 5 and sub.arrivals[0] == (payload_key(b"v65535"), 10.1)
    from dataclasses import asdict

    stat = {"start": asdict(a), "end": asdict(b)}
    w = fanout.subscriber_window_stats(stat)
    assert w["packets"] == 5
    assert (w["expected"], w["received"]) == (5, 4)  # video 65535..2 (4) + audio 1


def test_fill_row_aggregates_subscribers() -> None:
    log = SendLog()
    log.record(1, 0.0)
    log.record(2, 0.0)
    base = {
        "packets": {"audio": 0, "video": 0, "other": 0},
        "bytes": {"audio": 0, "video": 0, "other": 0},
    }
    stats = []
    for i, lost in enumerate([0, 10]):
        end = {
            "packets": {"audio": 50, "video": 150 - lost, "other": 0},
            "bytes": {"audio": 5000, "video": 125000, "other": 0},
            "ssrcs": {
                1: (50, 1049, 1000, "audio"),
                2: (150 - lost, 2149, 2000, "video"),
            },
        }
        start = dict(
            base, ssrcs={1: (0, 999, 1000, "audio"), 2: (0, 1999, 2000, "video")}
        )
        stats.append(
            {
                "index": i,
                "error": None,
                "t0": 0.0,
                "t1": 1.0,
                "start": start,
                "end": end,
                "join_to_first_ms": 100.0 + i,
                "arrivals": [(1, 0.001), (2, 0.004)],
            }
        )
    row = fanout.Row(target="janus", n=2, subscribers_ok=2)
    fanout.fill_row(row, stats, log, sfu_cpu_s=0.1)
    assert row.forwarded_pkts_per_s == 390
    assert row.pkts_per_cpu_s == pytest.approx(3900)
    assert row.sub_kbps_mean == pytest.approx(1040)
    assert row.loss_pct == pytest.approx(100 * 10 / 400)
    assert row.loss_pct_max == pytest.approx(5.0)
    assert (row.delay_p50_ms, row.delay_p99_ms) == (
        pytest.approx(1.0),
        pytest.approx(4.0),
    )
    assert row.join_p50_ms == 100.0 and row.join_max_ms == 101.0


def test_table_is_fixed_width_and_prints_the_ratio() -> None:
    rows = [
        fanout.Row(
            target="janus",
            n=20,
            subscribers_ok=20,
            sfu_cpu_pct=17.2,
            pkts_per_cpu_s=24000.0,
            loss_pct=0.0,
            delay_p99_ms=6.4,
            subscriber_cpu_pct=[13.0, 12.0],
        ),
        fanout.Row(
            target="sanke",
            n=20,
            subscribers_ok=20,
            sfu_cpu_pct=15.0,
            pkts_per_cpu_s=30000.0,
            loss_pct=0.1,
            delay_p99_ms=3.0,
            subscriber_cpu_pct=[95.0, 12.0],
        ),
        fanout.Row(target="janus", n=40, errors=["x"]),  # all figures missing
    ]
    table = fanout.format_table(rows).splitlines()
    assert len({len(line) for line in table}) == 1, table
    assert table[0].split()[:3] == ["target", "N", "ok"]
    assert (
        "24000" in table[2] and "!" in table[3]
    )  # saturated subscriber process flagged
    assert " - " in table[4]
    ratios = fanout.format_ratios(rows)
    assert ratios[0] == "SanKe/Janus packets per CPU-second: N=20: 1.25x"
    assert ratios[1].startswith(
        "goals at N=20: ratio 1.25 (>= 1.0x): met; loss 0.10 (< 0.5%): met"
    )
    assert ratios[1].endswith("delay p99 3.00 (< 5.0 ms): met")
    assert fanout.format_ratios(rows[:1]) == [
        "SanKe/Janus ratio: n/a (needs both targets at the same N)"
    ]


def test_missing_sanke_target_is_reported_as_unavailable() -> None:
    with pytest.raises(fanout.TargetUnavailable):
        fanout.load_target_class("bench.fanout_does_not_exist:X")
    assert fanout.load_target_class("bench.fanout_janus:JanusTarget").name == "janus"
