"""media.codecs: keyframe and frame-start detection on real aiortc-encoded packets and hand-built payloads."""

from __future__ import annotations

import fractions
import os

import av
import pytest
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from media.codecs import is_frame_start, is_keyframe


def _frame(i: int) -> av.VideoFrame:
    f = av.VideoFrame(width=320, height=240, format="yuv420p")
    rnd = os.urandom  # noise: many packets per frame
    for plane in f.planes:
        plane.update(rnd(plane.buffer_size))
    f.pts = i * 3000
    f.time_base = fractions.Fraction(1, 90000)
    return f


def _encode(mime: str, frames: int, forced: set[int]) -> list[list[bytes]]:
    enc = get_encoder(RTCRtpCodecParameters(mimeType=mime, clockRate=90000, payloadType=96))
    return [enc.encode(_frame(i), force_keyframe=i in forced)[0] for i in range(frames)]


def test_vp8_real_packets() -> None:
    frames = _encode("video/VP8", 4, forced={3})
    for i, packets in enumerate(frames):
        assert len(packets) > 1
        key = [is_keyframe("video/VP8", p) for p in packets]
        starts = [is_frame_start("video/VP8", p) for p in packets]
        expected_key = i in (0, 3)
        assert key == [expected_key] + [False] * (len(packets) - 1), i
        assert starts == [True] + [False] * (len(packets) - 1), i
        # memoryview works too
        assert is_keyframe("video/vp8", memoryview(packets[0])) is expected_key


def test_h264_real_packets() -> None:
    frames = _encode("video/H264", 4, forced={3})
    for i, packets in enumerate(frames):
        key = [is_keyframe("video/H264", p) for p in packets]
        starts = [is_frame_start("video/h264", p) for p in packets]
        if i in (0, 3):
            # STAP-A with SPS/PPS, then FU-A fragments of IDR slices: every NAL start is key
            assert packets[0][0] & 0x1F == 24 and packets[1][0] & 0x1F == 28
            assert key[:3] == [True, True, False], i
            assert key == starts, i
            assert sum(key) >= 2
        else:
            assert key == [False] * len(packets), i
            # x264 may cut a frame into several slices: each starts with an FU-A S bit
            assert starts[0] and starts[1:2] == [False]
            for p, start in zip(packets, starts):
                assert start == bool(p[1] & 0x80), i


def test_vp8_descriptor_variants() -> None:
    # no extension: S=1 PID=0, VP8 header byte with P=0 (key) / P=1 (delta)
    assert is_keyframe("video/VP8", bytes([0x10, 0x00, 0x00]))
    assert not is_keyframe("video/VP8", bytes([0x10, 0x01, 0x00]))
    # X, I with 7-bit picture id, L, T: header at offset 5
    assert is_keyframe("video/VP8", bytes([0x90, 0xE0, 0x05, 0x01, 0x40, 0x10]))
    assert not is_keyframe("video/VP8", bytes([0x90, 0xE0, 0x05, 0x01, 0x40, 0x11]))
    # X, I with 15-bit picture id, K only: header at offset 5
    assert is_keyframe("video/VP8", bytes([0x90, 0x90, 0x81, 0x02, 0x00, 0x10]))
    # S=1 but PID=1: not a partition-0 start
    assert not is_keyframe("video/VP8", bytes([0x11, 0x00]))
    assert not is_frame_start("video/VP8", bytes([0x11, 0x00]))
    # continuation packet
    assert not is_keyframe("video/VP8", bytes([0x00, 0x00]))


def test_h264_hand_built() -> None:
    assert is_keyframe("video/H264", bytes([0x65, 0x88]))  # IDR
    assert is_keyframe("video/H264", bytes([0x67, 0x42]))  # SPS
    assert not is_keyframe("video/H264", bytes([0x68, 0xCE]))  # PPS alone
    assert not is_keyframe("video/H264", bytes([0x41, 0x9A]))  # non-IDR slice
    # STAP-A: PPS (2 bytes) then IDR (2 bytes)
    assert is_keyframe("video/H264", bytes([0x78, 0, 2, 0x68, 0xCE, 0, 2, 0x65, 0x88]))
    assert not is_keyframe("video/H264", bytes([0x78, 0, 2, 0x68, 0xCE, 0, 2, 0x41, 0x9A]))
    # FU-A: start of IDR / middle of IDR / start of non-IDR
    assert is_keyframe("video/H264", bytes([0x7C, 0x85, 0xAA]))
    assert not is_keyframe("video/H264", bytes([0x7C, 0x05, 0xAA]))
    assert not is_keyframe("video/H264", bytes([0x5C, 0x81, 0xAA]))
    assert is_frame_start("video/H264", bytes([0x5C, 0x81, 0xAA]))
    assert not is_frame_start("video/H264", bytes([0x5C, 0x41, 0xAA]))


def test_vp9_descriptor() -> None:
    assert is_keyframe("video/VP9", bytes([0x08, 0x00]))  # P=0 B=1
    assert not is_keyframe("video/VP9", bytes([0x48, 0x00]))  # P=1
    assert not is_keyframe("video/VP9", bytes([0x04, 0x00]))  # B=0
    assert is_frame_start("video/VP9", bytes([0x88]))
    assert not is_frame_start("video/VP9", bytes([0x84]))


def test_audio_and_unknown() -> None:
    assert not is_keyframe("audio/opus", b"\x78\x00")
    assert is_frame_start("audio/opus", b"")
    assert not is_keyframe("video/AV1", b"\x10")
    assert not is_frame_start("video/AV1", b"\x10")


@pytest.mark.parametrize(
    "mime,payload",
    [
        ("video/VP8", b""),
        ("video/VP8", bytes([0x90])),  # X without extension byte
        ("video/VP8", bytes([0x90, 0x80])),  # I without picture id
        ("video/VP8", bytes([0x90, 0x80, 0x81])),  # 15-bit picture id truncated
        ("video/VP8", bytes([0x10])),  # no VP8 payload header
        ("video/H264", b""),
        ("video/H264", bytes([0x7C])),  # FU-A without FU header
        ("video/H264", bytes([0x78, 0x00])),  # STAP-A size truncated
        ("video/H264", bytes([0x78, 0x00, 0x05, 0x41])),  # STAP-A NAL overruns
        ("video/VP9", b""),
    ],
)
def test_malformed_raise_value_error(mime: str, payload: bytes) -> None:
    with pytest.raises(ValueError):
        is_keyframe(mime, payload)
