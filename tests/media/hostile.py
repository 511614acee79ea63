"""Hostile datagrams for the media ports: one of each kind, and random mutations of them.

Empty and one-byte datagrams, random bytes of every length class, RTP and RTCP that look right
but carry an SSRC nobody announced (unencrypted), DTLS records of each content type (a plaintext
fatal alert among them), STUN messages that do not authenticate or whose attributes are broken;
and each of those cut short.  Deterministic for a seed.
"""

from __future__ import annotations

import random
import struct


def _stun(method_class: int, body: bytes, *, cookie: int = 0x2112A442, length: int | None = None,
          txid: bytes = b"\x01" * 12) -> bytes:
    return struct.pack("!HHI12s", method_class, len(body) if length is None else length, cookie, txid) + body


def _attr(kind: int, value: bytes, length: int | None = None) -> bytes:
    pad = b"\x00" * (-len(value) % 4)
    return struct.pack("!HH", kind, len(value) if length is None else length) + value + pad


def _dtls(content_type: int, epoch: int, body: bytes) -> bytes:
    return struct.pack("!BHH6sH", content_type, 0xFEFD, epoch, (7).to_bytes(6, "big"), len(body)) + body


def corpus(rng: random.Random) -> list[bytes]:
    """One of each kind of hostile datagram (bounded, deterministic for a seed)."""
    out: list[bytes] = [b"", b"\x00", b"\x01", b"\x14", b"\x16", b"\x17", b"\x40", b"\x80", b"\x90", b"\xc8", b"\xff"]
    out += [rng.randbytes(n) for n in (2, 3, 7, 11, 12, 13, 19, 20, 21, 64, 200, 1200, 1472)]
    # RTP that looks right, unencrypted, with an SSRC nobody announced; and cut short
    rtp = struct.pack("!BBHII", 0x80, 96, 4242, 90000, 0xDEADBEEF) + rng.randbytes(160)
    out += [rtp, rtp[:1], rtp[:2], rtp[:5], rtp[:11], rtp[:12], rtp[:13]]
    out.append(struct.pack("!BBHII", 0x90, 96, 1, 1, 0xDEADBEEF) + b"\xbe\xde\x00\x40")  # extension past the end
    # RTCP: a receiver report and a PLI for a foreign SSRC; cut short; length field past the end
    rr = struct.pack("!BBHI", 0x81, 201, 7, 0xDEADBEEF) + rng.randbytes(24)
    pli = struct.pack("!BBHII", 0x81, 206, 2, 0xDEADBEEF, 0xCAFEBABE)
    out += [rr, rr[:2], rr[:4], rr[:8], rr[:12], pli, struct.pack("!BBHI", 0x80, 200, 0xFFFF, 1)]
    # DTLS: handshake, change cipher spec, alert (a plaintext fatal one), application data; cut short
    hello = _dtls(22, 0, b"\x01\x00\x00\x2a" + rng.randbytes(42))
    alert = _dtls(21, 0, b"\x02\x28")
    close_notify = _dtls(21, 1, b"\x01\x00")
    appdata = _dtls(23, 1, rng.randbytes(48))
    out += [hello, hello[:5], hello[:12], hello[:13], hello[:20], alert, close_notify, appdata, appdata[:30],
            _dtls(20, 0, b"\x01"), _dtls(22, 0, b"")[:-2] + b"\xff\xff"]
    # STUN: binding requests that do not authenticate, with broken attributes, answers nobody asked for
    priority_short = _attr(0x0024, b"\x00\x01")  # PRIORITY must be 4 bytes
    controlling_short = _attr(0x802A, b"\x00" * 3)
    out += [
        _stun(0x0001, b""),
        _stun(0x0001, _attr(0x0006, b"nobody:nobody") + _attr(0x0008, rng.randbytes(20))),
        _stun(0x0001, _attr(0x0006, b"\xff\xfe\xfd")),  # USERNAME not UTF-8
        _stun(0x0001, priority_short),
        _stun(0x0001, controlling_short),
        _stun(0x0001, _attr(0x0006, b"abcd", length=400)),  # attribute longer than the message
        _stun(0x0001, _attr(0x8028, b"\x00\x00\x00\x00")),  # wrong FINGERPRINT
        _stun(0x0101, _attr(0x0020, b"\x00\x07\x00\x01")),  # response, XOR-MAPPED-ADDRESS of an unknown family
        _stun(0x0101, _attr(0x0020, b"\x00\x01\x00\x01\x02")),  # response, address cut short
        _stun(0x0111, _attr(0x0009, b"\x00\x00\x04\x01\xff")),  # error response, reason not UTF-8
        _stun(0x0011, b""),  # indication
        _stun(0x0FFF, b""),  # unknown method
        _stun(0x0001, b"", cookie=0),
        _stun(0x0001, b"", length=8),
        _stun(0x0001, b"")[:19],
        _stun(0x0001, _attr(0x0024, b"\x00\x00\x00\x01"))[:23],
    ]
    return out


def mutants(rng: random.Random, pool: list[bytes], count: int) -> list[bytes]:
    """Copies of datagrams in ``pool`` with a few random bytes flipped and a random end."""
    out = []
    for _ in range(count):
        data = bytearray(rng.choice([d for d in pool if d]))
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        out.append(bytes(data[:rng.randint(1, len(data))]))
    return out


def signed_garbage(rng: random.Random, count: int, seq: int) -> list[tuple[bytes, bool]]:
    """``(plain packet, is_rtcp)``: RTP and RTCP a participant could protect with its own SRTP keys and
    send (a malicious or broken client): eight SSRCs nobody announced, random payload types, random
    header-extension bits, RTCP of every packet type with random bodies and lengths."""
    out: list[tuple[bytes, bool]] = []
    for i in range(count):
        ssrc = 0x5A5A0000 + rng.randrange(8)
        if rng.random() < 0.5:
            first = 0x80 | (rng.random() < 0.3) << 4 | rng.randrange(4)
            header = struct.pack("!BBHII", first, rng.randrange(256), (seq + i) & 0xFFFF, rng.getrandbits(32), ssrc)
            csrcs = rng.randbytes(4 * (first & 0x0F))
            extension = struct.pack("!HH", 0xBEDE, rng.randrange(4)) + rng.randbytes(rng.randrange(0, 20)) \
                if first & 0x10 else b""
            out.append((header + csrcs + extension + rng.randbytes(rng.randrange(0, 300)), False))
        else:
            body = rng.randbytes(rng.randrange(0, 80))
            length = rng.choice([len(body) // 4 + 1, rng.randrange(0, 40)])
            pt = rng.choice([200, 201, 202, 203, 204, 205, 206, 207, rng.randrange(192, 224)])
            out.append((struct.pack("!BBHI", 0x80 | rng.randrange(32), pt, length, ssrc) + body, True))
    return out
