"""media.rtp: byte-level RTP helpers, checked on hand-built packets and against aiortc's parser."""

from __future__ import annotations

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket, unwrap_rtx, wrap_rtx

from media import rtp

# V=2 P=0 X=1 CC=1 | M=1 PT=96 | seq 0x1234 | ts 0x01020304 | ssrc 0xAABBCCDD | csrc 0x11223344
# extension 0xBEDE, length 2 words:
#   id 1 len 2 "ab" ; 0x00 padding ; id 3 len 3 = 0x0A0B0C
# payload "hello"
HAND = bytes.fromhex(
    "9" "1" "e0" "1234" "01020304" "aabbccdd" "11223344"
    "bede" "0002" "11" "6162" "00" "32" "0a0b0c"
) + b"hello"


def test_constants_match_aiortc_uris() -> None:
    assert rtp.ONE_BYTE_PROFILE == 0xBEDE
    assert rtp.URI_MID == "urn:ietf:params:rtp-hdrext:sdes:mid"
    assert rtp.URI_ABS_SEND_TIME == "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
    assert rtp.URI_RID == "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
    assert rtp.URI_REPAIRED_RID == "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
    assert rtp.URI_AUDIO_LEVEL == "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
    assert rtp.URI_TOFFSET == "urn:ietf:params:rtp-hdrext:toffset"


def test_hand_built_packet() -> None:
    assert rtp.header_size(HAND) == 12 + 4 + 4 + 8
    assert rtp.payload_range(HAND) == (28, 33)
    assert HAND[28:33] == b"hello"
    assert rtp.extension_offsets(HAND) == {1: (21, 2), 3: (25, 3)}
    assert rtp.find_extension(HAND, 1) == 21
    assert rtp.find_extension(HAND, 3) == 25
    assert rtp.find_extension(HAND, 2) == -1
    assert rtp.read_extension_str(HAND, 1) == "ab"
    assert rtp.read_extension_str(HAND, 5) is None


def test_plain_header_without_extension() -> None:
    pkt = bytes.fromhex("80 6f 0001 00000010 00000020") + b"xy"
    assert rtp.header_size(pkt) == 12
    assert rtp.payload_range(pkt) == (12, 14)
    assert rtp.extension_offsets(pkt) == {}
    assert rtp.find_extension(pkt, 1) == -1
    assert rtp.read_extension_str(pkt, 1) is None


def test_padding_removed() -> None:
    pkt = bytes.fromhex("a0 60 0001 00000000 00000001") + b"abc" + b"\x00\x00\x03"
    assert rtp.payload_range(pkt) == (12, 15)
    # padding-only packet (bandwidth probe): empty payload
    probe = bytes.fromhex("a0 60 0001 00000000 00000001") + b"\x00" * 3 + b"\x04"
    assert rtp.payload_range(probe) == (12, 12)


def test_two_byte_profile() -> None:
    # profile 0x1001 (app bits 1), 3 words: id 20 len 0 ; id 1 len 3 "mid"; 0 pad ; id 200 len 2 "xy"
    # bytes: 14 00 | 01 03 6d 69 64 | 00 | c8 02 78 79 -> 12 bytes
    pkt = bytes.fromhex("90 60 0001 00000000 00000001 1001 0003 1400 01036d6964 00 c8027879") + b"P"
    assert rtp.header_size(pkt) == 12 + 4 + 12
    offs = rtp.extension_offsets(pkt)
    assert offs == {20: (18, 0), 1: (20, 3), 200: (26, 2)}
    assert rtp.find_extension(pkt, 200) == 26
    assert rtp.find_extension(pkt, 20) == 18
    assert rtp.find_extension(pkt, 7) == -1
    assert rtp.read_extension_str(pkt, 1) == "mid"
    assert rtp.payload_range(pkt) == (28, 29)


def test_one_byte_id_15_stops_parsing() -> None:
    pkt = bytes.fromhex("90 60 0001 00000000 00000001 bede 0001 f0 10 41 00")
    assert rtp.extension_offsets(pkt) == {}
    assert rtp.find_extension(pkt, 1) == -1


def _aiortc_packet(ids: dict[str, int], **values: object) -> bytes:
    params = RTCRtpParameters(
        headerExtensions=[RTCRtpHeaderExtensionParameters(id=i, uri=u) for u, i in ids.items()]
    )
    m = HeaderExtensionsMap()
    m.configure(params)
    p = RtpPacket(payload_type=100, marker=1, sequence_number=65535, timestamp=4_000_000_000,
                  ssrc=0x01020304, payload=b"payload!")
    for k, v in values.items():
        setattr(p.extensions, k, v)
    return p.serialize(m)


def test_against_aiortc_serializer() -> None:
    ids = {rtp.URI_MID: 1, rtp.URI_ABS_SEND_TIME: 3, rtp.URI_RID: 10}
    pkt = _aiortc_packet(ids, mid="0", abs_send_time=0x123456, rtp_stream_id="hi")
    off = rtp.find_extension(pkt, 3)
    assert pkt[off : off + 3] == b"\x12\x34\x56"
    assert rtp.read_extension_str(pkt, 1) == "0"
    assert rtp.read_extension_str(pkt, 10) == "hi"
    start, end = rtp.payload_range(pkt)
    assert pkt[start:end] == b"payload!"


def test_write_abs_send_time() -> None:
    buf = bytearray(HAND)
    off = rtp.find_extension(buf, 3)
    rtp.write_abs_send_time(buf, off, 1.5)
    assert buf[off : off + 3] == bytes.fromhex("060000")  # 1.5 * 2**18 = 0x060000
    rtp.write_abs_send_time(buf, off, 64.0 + 0.25)  # wraps every 64 s
    assert buf[off : off + 3] == bytes.fromhex("010000")
    with pytest.raises(ValueError):
        rtp.write_abs_send_time(buf, len(buf) - 2, 1.0)
    # parsed back by aiortc
    ids = {rtp.URI_ABS_SEND_TIME: 3}
    m = HeaderExtensionsMap()
    m.configure(RTCRtpParameters(headerExtensions=[RTCRtpHeaderExtensionParameters(id=3, uri=rtp.URI_ABS_SEND_TIME)]))
    pkt = bytearray(_aiortc_packet(ids, abs_send_time=1))
    rtp.write_abs_send_time(pkt, rtp.find_extension(pkt, 3), 10.0)
    assert RtpPacket.parse(bytes(pkt), m).extensions.abs_send_time == 10 << 18


def test_rewrite_header_keeps_marker_and_rest() -> None:
    buf = bytearray(HAND)
    rtp.rewrite_header(buf, 111, 70000, 2**32 + 5, 0x01020304)
    assert buf[:12] == bytes.fromhex("91 ef 1170 00000005 01020304")
    assert buf[12:] == HAND[12:]
    buf[1] &= 0x7F  # marker off
    rtp.rewrite_header(buf, 96, 1, 2, 3)
    assert buf[1] == 96
    with pytest.raises(ValueError):
        rtp.rewrite_header(bytearray(5), 96, 1, 2, 3)


def test_remap_one_byte() -> None:
    buf = bytearray(HAND)
    table = bytearray(range(16))
    table[1] = 4
    table[3] = 9
    rtp.remap_extension_ids(buf, bytes(table))
    assert rtp.extension_offsets(buf) == {4: (21, 2), 9: (25, 3)}
    assert buf[20] == 0x41 and buf[24] == 0x92
    bad = bytearray(range(16))
    bad[4] = 15
    with pytest.raises(ValueError):
        rtp.remap_extension_ids(buf, bytes(bad))


def test_remap_two_byte_with_short_table() -> None:
    pkt = bytearray.fromhex("90 60 0001 00000000 00000001 1000 0003 1400 01036d6964 00 c8027879")
    table = bytearray(range(16))
    table[1] = 5
    rtp.remap_extension_ids(pkt, bytes(table))
    assert rtp.extension_offsets(pkt) == {20: (18, 0), 5: (20, 3), 200: (26, 2)}
    full = bytearray(range(256))
    full[200] = 30
    rtp.remap_extension_ids(pkt, bytes(full))
    assert rtp.extension_offsets(pkt) == {20: (18, 0), 5: (20, 3), 30: (26, 2)}


def test_rtx_round_trip_matches_aiortc() -> None:
    m = HeaderExtensionsMap()
    m.configure(RTCRtpParameters(headerExtensions=[RTCRtpHeaderExtensionParameters(id=1, uri=rtp.URI_MID)]))
    orig = RtpPacket(payload_type=96, marker=1, sequence_number=4321, timestamp=99, ssrc=7, payload=b"data")
    orig.csrc = [0xCAFE]
    orig.extensions.mid = "a"
    orig.padding_size = 4
    raw = orig.serialize(m)
    wrapped = rtp.rtx_wrap(raw, 97, 8, 17)

    expected = wrap_rtx(RtpPacket.parse(raw, m), payload_type=97, sequence_number=17, ssrc=8)
    assert wrapped == expected.serialize(m)
    parsed = RtpPacket.parse(wrapped, m)
    assert (parsed.payload_type, parsed.sequence_number, parsed.ssrc, parsed.marker) == (97, 17, 8, 1)
    assert parsed.payload == b"\x10\xe1data"
    assert parsed.csrc == [0xCAFE] and parsed.extensions.mid == "a"
    assert parsed.padding_size == 0

    back = rtp.rtx_unwrap(wrapped, 96, 7)
    un = unwrap_rtx(parsed, payload_type=96, ssrc=7)
    assert back == un.serialize(m)
    orig.padding_size = 0
    assert back == orig.serialize(m)


@pytest.mark.parametrize(
    "pkt",
    [
        b"",
        b"\x80" * 11,
        bytes.fromhex("40 60 0001 00000000 00000001"),  # version 1
        bytes.fromhex("82 60 0001 00000000 00000001 00000001"),  # CC=2, one CSRC
        bytes.fromhex("90 60 0001 00000000 00000001 bede"),  # truncated ext header
        bytes.fromhex("90 60 0001 00000000 00000001 bede 0002 10 41 00 00"),  # block too short
        bytes.fromhex("a0 60 0001 00000000 00000001 61 62 05"),  # padding > payload
        bytes.fromhex("a0 60 0001 00000000 00000001 61 62 00"),  # padding count 0
    ],
)
def test_malformed_raise_value_error(pkt: bytes) -> None:
    with pytest.raises(ValueError):
        rtp.payload_range(pkt)
    if len(pkt) >= 12 and pkt[0] >> 6 == 2 and pkt[0] & 0x10:
        with pytest.raises(ValueError):
            rtp.find_extension(pkt, 1)


@pytest.mark.parametrize(
    "pkt",
    [
        bytes.fromhex("90 60 0001 00000000 00000001 bede 0001 13 41 00 00"),  # len 4 > block
        bytes.fromhex("90 60 0001 00000000 00000001 1000 0001 01 09 00 00"),  # two-byte len 9
        bytes.fromhex("90 60 0001 00000000 00000001 1000 0001 00 00 00 05"),  # id at last byte
    ],
)
def test_truncated_elements_raise(pkt: bytes) -> None:
    with pytest.raises(ValueError):
        rtp.extension_offsets(pkt)
    with pytest.raises(ValueError):
        rtp.find_extension(pkt, 9)
    with pytest.raises(ValueError):
        rtp.remap_extension_ids(bytearray(pkt), bytes(range(256)))


def test_rtx_unwrap_needs_osn() -> None:
    probe = bytes.fromhex("a0 61 0001 00000000 00000001 00 00 00 04")
    with pytest.raises(ValueError):
        rtp.rtx_unwrap(probe, 96, 1)
