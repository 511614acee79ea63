"""What the SFU reads from a publisher's offer, and the simulcast it accepts in the answer."""

from __future__ import annotations

from media.rtp import URI_MID, URI_RID
from media.sdp import accept_simulcast, parse_offer

CHROME_OFFER = "\r\n".join([
    "v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0 1", "a=msid-semantic: WMS s",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111", "c=IN IP4 0.0.0.0", "a=mid:0", "a=sendonly", "a=msid:s mic-1",
    "a=rtpmap:111 opus/48000/2", "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=ssrc:1111 cname:x", "a=ice-ufrag:abcd", "a=ice-pwd:abcdefghijklmnopqrstuvwx", "a=setup:actpass",
    "a=fingerprint:sha-256 " + ":".join(["AA"] * 32), "a=rtcp-mux",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97", "c=IN IP4 0.0.0.0", "a=mid:1", "a=sendonly", "a=msid:s cam-1",
    "a=rtpmap:96 VP8/90000", "a=rtpmap:97 rtx/90000", "a=fmtp:97 apt=96",
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
    "a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
    "a=rid:q send", "a=rid:h send", "a=rid:f send", "a=simulcast:send q;h;f",
    "a=ice-ufrag:abcd", "a=ice-pwd:abcdefghijklmnopqrstuvwx", "a=setup:actpass",
    "a=fingerprint:sha-256 " + ":".join(["AA"] * 32), "a=rtcp-mux", "",
])

ANSWER = "\r\n".join([
    "v=0", "o=- 3 3 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0 1",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=mid:0", "a=recvonly", "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97", "a=mid:1", "a=recvonly", "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=rtpmap:96 VP8/90000", "",
])


def test_the_offer_gives_mids_tracks_ssrcs_and_rids() -> None:
    audio, video = parse_offer(CHROME_OFFER)
    assert (audio.mid, audio.kind, audio.sends, audio.msid_track, audio.ssrcs) == ("0", "audio", True, "mic-1", [1111])
    assert video.rids == ["q", "h", "f"] and video.ssrcs == []
    assert video.extmap[URI_RID] == 10 and video.extmap[URI_MID] == 4


def test_the_answer_accepts_the_offered_layers_with_the_offers_extension_ids() -> None:
    answer = accept_simulcast(parse_offer(CHROME_OFFER), ANSWER)
    audio, video = answer.split("m=video")
    assert "a=simulcast" not in audio and "a=rid" not in audio
    assert "a=rid:q recv" in video and "a=rid:f recv" in video
    assert "a=simulcast:recv q;h;f" in video
    assert "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id" in video
    assert video.count("urn:ietf:params:rtp-hdrext:sdes:mid") == 1  # not added twice
    assert accept_simulcast(parse_offer(ANSWER.replace("recvonly", "sendonly")), ANSWER) == ANSWER
