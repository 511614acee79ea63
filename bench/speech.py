"""CPU of classroom insight's speech metering: what counting RFC 6464 levels adds to forwarding audio.

Two figures, in this process, with the C extension the SFU uses:

1. **per packet**: ``sk_stream_receive`` (the in-order receive path in C: statistics, the cache, no
   consumers) on Opus packets that carry an ``ssrc-audio-level`` extension, with the stream's level id
   unset (no metering) and set (the level counted in its bin): the difference is the metering's cost per
   audio packet;
2. **per second**: ``SpeechMeter.sample`` over a lesson's audio producers (the worker calls it once a
   second per router): reading and clearing every microphone's bins.

Then the cost of one lesson with ``--mics`` microphones at 50 packets/s each, as a share of one core.

    nice -n 19 .venv/bin/python -m bench.speech [--packets 2000000] [--mics 4]

Prints one line per figure.  Run it when the machine is quiet.
"""

from __future__ import annotations

import argparse
import struct
import time

from media._fastpath import ffi, lib
from media.producer import Producer
from media.speech import SpeechMeter

PACKETS_PER_S = 50
"""Opus in 20 ms frames."""


def opus_packet(seq: int, level: int) -> bytes:
    """An RTP packet (PT 111) with a one-byte-header extension: mid (id 1, "0") and the audio level (id 2)."""
    ext = struct.pack("!HH", 0xBEDE, 1) + bytes([0x10, ord("0"), 0x20, 0x80 | level])
    header = struct.pack("!BBHII", 0x90, 111, seq & 0xFFFF, seq * 960 & 0xFFFFFFFF, 0x1234)
    return header + ext + b"\xfc" + bytes(80)


def per_packet(packets: int, level_id: int) -> float:
    """Nanoseconds per packet through ``sk_stream_receive``."""
    c = ffi.new("sk_stream *")
    c.pt = 111
    c.red_pt = -1
    c.level_id = level_id
    c.stats.clock_rate = 48000
    pkts = [opus_packet(i, (i * 7) % 128) for i in range(1024)]
    now = 1000.0
    receive = lib.sk_stream_receive
    t0 = time.process_time()
    for i in range(packets):
        receive(c, pkts[i & 1023], 95, now)
        now += 0.02
    elapsed = time.process_time() - t0
    counted = sum(c.level_bins[i] for i in range(16))
    assert c.fast_packets == packets and counted == (packets if level_id else 0), (c.fast_packets, counted)
    return elapsed / packets * 1e9


def per_sample(mics: int, rounds: int) -> float:
    """Microseconds per ``SpeechMeter.sample`` of ``mics`` producers."""
    producers = [Producer(f"p{i}:microphone", None, kind="audio", mid=str(i), source="microphone",  # type: ignore[arg-type]
                          mime="audio/opus", clock_rate=48000, payload_type=111, rtx_payload_type=None,
                          extmap={"urn:ietf:params:rtp-hdrext:ssrc-audio-level": 2}, layers=[(None, 1000 + i)])
                 for i in range(mics)]
    meter = SpeechMeter()
    t0 = time.process_time()
    for _ in range(rounds):
        for p in producers:
            p.streams[0].c.level_bins[1] += 40
            p.streams[0].c.level_bins[15] += 10
        meter.sample(producers)
    return (time.process_time() - t0) / rounds * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--packets", type=int, default=2_000_000)
    ap.add_argument("--mics", type=int, default=4)
    args = ap.parse_args()
    plain = per_packet(args.packets, 0)
    metered = per_packet(args.packets, 2)
    sample_us = per_sample(args.mics, 20_000)
    added_ns = max(0.0, metered - plain)
    lesson = (added_ns * 1e-9 * PACKETS_PER_S * args.mics + sample_us * 1e-6) * 100
    print(f"speech: sk_stream_receive per audio packet: {plain:.0f} ns without metering, {metered:.0f} ns with "
          f"(+{added_ns:.0f} ns)")
    print(f"speech: SpeechMeter.sample of {args.mics} microphones: {sample_us:.1f} us (once a second per lesson)")
    print(f"speech: one lesson of {args.mics} microphones at {PACKETS_PER_S} packets/s: {lesson:.4f} % of one core")


if __name__ == "__main__":
    main()
