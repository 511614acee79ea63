"""RED audio between Chromium pages through the SFU (127.0.0.1 only).

The teacher's page publishes its microphone with RED of Opus preferred (``lesson-client.js``), the
SFU answers RED first, so Chromium sends RED; a receiving classroom's page answers the SFU's offer
with RED too and gets RED.  Checked on what the pages negotiate (SDP), what the SFU counts (RED
packets from the teacher's page, the receiving page's consumer in RED) and what the receiving page
reports (``getStats``: samples received, concealment).  Chromium's ``getStats`` names the primary
codec (``audio/opus``) as the ``codecId`` of RED streams, so the codec is not read there.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from typing import Any

from tests.media.sfu_harness import router_dump
from tests.utils.wait import wait_until
from tests.web.test_lesson_pages import start_lesson

AUDIO_JS = """async ({pc, kind}) => {
  const lc = window.sankeLesson;
  const conn = pc === 'publisher' ? lc.publisher : lc.subscriber;
  if (!conn) return null;
  const stats = await conn.getStats();
  const codecs = {};
  stats.forEach((s) => { if (s.type === 'codec') codecs[s.id] = s.mimeType; });
  const out = [];
  stats.forEach((s) => {
    if (s.type !== kind || s.kind !== 'audio') return;
    out.push({mime: codecs[s.codecId] || '', samples: s.totalSamplesReceived || 0,
              concealed: s.concealedSamples || 0, packets: s.packetsReceived || s.packetsSent || 0});
  });
  return out;
}"""


def audio(page: Any, pc: str, kind: str) -> list[dict[str, Any]]:
    return list(page.evaluate(AUDIO_JS, {"pc": pc, "kind": kind}) or [])


def audio_mline(sdp: str) -> tuple[list[str], dict[str, str]]:
    """Payload types of the first audio m-line, and payload type → codec name."""
    formats = re.search(r"^m=audio \d+ \S+ ([\d ]+)", sdp, re.M)
    names = dict(re.findall(r"^a=rtpmap:(\d+) ([\w-]+)/", sdp, re.M))
    return (formats.group(1).split() if formats else []), names


def test_chromium_sends_and_receives_red_audio_through_the_sfu(app: Any, web_server: Any, open_page: Any,
                                                              js_poll: Any) -> None:
    started = start_lesson(web_server, open_page, js_poll, classrooms=1)
    teacher, recv, main = started["teacher"], started["a"], started["main"]

    # publisher: RED offered first and answered first, so Chromium sends RED
    js_poll(teacher, "window.sankeLesson.publisher && window.sankeLesson.publisher.remoteDescription"
                     " && window.sankeLesson.publisher.remoteDescription.sdp.includes('m=audio')")
    formats, names = audio_mline(teacher.evaluate("window.sankeLesson.publisher.localDescription.sdp"))
    assert names[formats[0]].lower() == "red", (formats, names)
    formats, names = audio_mline(teacher.evaluate("window.sankeLesson.publisher.remoteDescription.sdp"))
    assert names[formats[0]].lower() == "red" and "opus" in {names[f].lower() for f in formats}, (formats, names)
    # Chromium's getStats names the primary codec (Opus) for RED too: what it sends is read at the SFU
    def mic() -> dict[str, Any] | None:
        return router_dump(app, web_server.lesson_id)["producers"].get(f"{main}:microphone")

    wait_until(lambda: f"RED from the teacher's page at the SFU: {mic()}",
               lambda: (m := mic()) is not None and m["red_received"][0] > 50, 20, interval=0.3)

    # subscriber: the SFU offers RED, the page takes it and decodes the teacher's audio from it
    js_poll(recv, "window.sankeLesson.subscriber && window.sankeLesson.subscriber.remoteDescription"
                  " && window.sankeLesson.subscriber.remoteDescription.sdp.includes('red/48000/2')")
    sdp = recv.evaluate("window.sankeLesson.subscriber.localDescription.sdp")
    assert re.search(r"^a=rtpmap:\d+ red/48000/2", sdp, re.M), "the receiving page's answer dropped RED"
    assert "useinbandfec=1" in sdp
    inbound = wait_until(lambda: f"50 audio packets received: {audio(recv, 'subscriber', 'inbound-rtp')}",
                         lambda: [s for s in audio(recv, "subscriber", "inbound-rtp") if s["packets"] > 50], 20,
                         interval=0.3)
    reds = [c for cid, c in router_dump(app, web_server.lesson_id)["consumers"].items()
            if c["producer_id"] == f"{main}:microphone"]
    assert reds and all(c["red"] for c in reds), reds
    assert (m := mic()) is not None and m["fast"][0] > 0, m  # RED passed on as RED, in C

    # audio flows on a clean link with little concealment: a 4 s stretch of samples with < 5 % concealed,
    # waited for with a deadline (two cores shared with other work can starve the pages for a moment)
    deadline = time.monotonic() + 40
    before = inbound[0]
    windows = []
    while True:
        now = audio(recv, "subscriber", "inbound-rtp")[0]
        if now["samples"] - before["samples"] >= 4 * 48000:
            concealed = (now["concealed"] - before["concealed"]) / (now["samples"] - before["samples"])
            windows.append(round(concealed, 3))
            if concealed < 0.05:
                break
            before = now
        assert time.monotonic() < deadline, f"audio samples not rising, or concealed: {windows} {before} -> {now}"
        time.sleep(0.3)
    assert main


def test_red_keeps_chromium_audio_whole_when_a_fifth_of_the_teachers_packets_are_lost(
        app: Any, web_server: Any, open_page: Any, js_poll: Any, monkeypatch: Any) -> None:
    """20 % of the teacher's audio packets are dropped where they reach the SFU (a datagram filter in
    front of the publisher's transport, on the SSRC in the clear SRTP header; Bernoulli, seeded): the
    receiving page conceals < 5 % of its samples, because every packet it misses is carried by the
    next one (RED from the teacher's page)."""
    from media.transport import WebRtcTransport

    rng = random.Random(2198)
    counts = {"audio": 0, "dropped": 0}
    install = WebRtcTransport._install

    def lossy_install(self: WebRtcTransport, protocol: Any, remote: tuple[Any, ...]) -> None:
        install(self, protocol, remote)
        inner = protocol.datagram_received

        def lossy(data: bytes, addr: tuple[Any, ...]) -> None:
            if len(data) >= 12 and 127 < data[0] < 192 and not 191 < data[1] < 224:
                stream = self.ssrc_table.get(int.from_bytes(data[8:12], "big"))
                producer = getattr(stream, "producer", None)
                if producer is not None and producer.source == "microphone":
                    counts["audio"] += 1
                    if rng.random() < 0.2:
                        counts["dropped"] += 1
                        return
            inner(data, addr)

        protocol.datagram_received = lossy

    monkeypatch.setattr(WebRtcTransport, "_install", lossy_install)
    started = start_lesson(web_server, open_page, js_poll, classrooms=1)
    teacher, recv, main = started["teacher"], started["a"], started["main"]
    wait_until(lambda: f"50 audio packets received: {audio(recv, 'subscriber', 'inbound-rtp')}",
               lambda: [s for s in audio(recv, "subscriber", "inbound-rtp") if s["packets"] > 50], 30, interval=0.3)
    assert router_dump(app, web_server.lesson_id)["producers"][f"{main}:microphone"]["red_received"][0] > 0

    # 8 s windows of samples until one has < 5 % concealed (without RED each has about 20 %), with a
    # deadline: two cores shared with other work can starve the pages for a moment, and that conceals too
    deadline = time.monotonic() + 90
    before = audio(recv, "subscriber", "inbound-rtp")[0]
    windows: list[float] = []
    while True:
        now = audio(recv, "subscriber", "inbound-rtp")[0]
        if now["samples"] - before["samples"] >= 8 * 48000:
            concealed = (now["concealed"] - before["concealed"]) / (now["samples"] - before["samples"])
            windows.append(round(concealed, 4))
            if concealed < 0.05:
                break
            before = now
        assert time.monotonic() < deadline, f"concealed per 8 s window: {windows} ({counts})"
        time.sleep(0.3)
    assert counts["dropped"] > 0.15 * counts["audio"], counts
