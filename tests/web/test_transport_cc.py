"""Transport-wide congestion control with real Chromium on both ends of the SFU (127.0.0.1 only).

The teacher's page publishes, a receiving classroom's page subscribes.  Chromium accepts the
SFU's transport-cc offer on its subscriber connection and sends feedback that the SFU matches
with the transport-wide numbers it stamped; the teacher's Chromium offers transport-cc, the
SFU's answer accepts it, and the SFU sends the publisher feedback (instead of REMB) from the
arrival times of its packets.  The SFU side is read from its in-process worker's transports.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from media.transport import WebRtcTransport
from media.twcc import URI_TRANSPORT_CC
from tests.utils.wait import wait_until
from tests.web.test_lesson_pages import assert_video_flows, start_lesson


def _transports(participant_id: str, direction: str) -> list[WebRtcTransport]:
    # type(), not isinstance(): a dead weak proxy among the objects raises on any attribute access
    return [o for o in gc.get_objects() if type(o) is WebRtcTransport
            and o.participant_id == participant_id and o.direction == direction and not o.closed]


def test_chromium_negotiates_transport_cc_both_ways_and_feedback_flows(web_server: Any, open_page: Any,
                                                                       js_poll: Any) -> None:
    started = start_lesson(web_server, open_page, js_poll, classrooms=1)
    teacher, recv, main, pa = started["teacher"], started["a"], started["main"], started["pa"]
    assert_video_flows(recv, [f"{main}/camera"], js_poll)

    # SDP: Chromium's subscriber answer and the SFU's publisher answer both carry transport-cc
    sub_answer = str(recv.evaluate("window.sankeLesson.subscriber.currentLocalDescription.sdp"))
    assert URI_TRANSPORT_CC in sub_answer and "transport-cc" in sub_answer.replace(URI_TRANSPORT_CC, "")
    pub_answer = str(teacher.evaluate("window.sankeLesson.publisher.currentRemoteDescription.sdp"))
    assert URI_TRANSPORT_CC in pub_answer and "a=rtcp-fb:" in pub_answer

    # subscriber side: every packet is stamped, Chromium's feedback arrives and is matched
    (sub,) = wait_until("the receiving classroom's subscriber transport", lambda: _transports(pa, "recv"))
    assert sub.writer.twcc_id == 5
    wait_until("feedback from the subscribing Chromium", lambda: sub.twcc_feedbacks >= 5)
    assert sub.twcc_bad == 0
    stamped = int(sub.writer.c.twcc_seq)
    assert stamped > 50
    now = time.monotonic()
    # (the newest few may be mid-send on the server's thread: look a little further back)
    recent = [sub.writer.sent_record((stamped - 1 - i) & 0xFFFF, now) for i in range(10, 30)]
    assert all(r is not None and now - r[0] < 10 for r in recent), recent
    # the send-side estimator gets the matched packets and drives the video gates (not REMB)
    assert sub.estimator is not None
    wait_until("the transport-cc estimate in charge", lambda: sub.twcc_active(time.monotonic()))
    # what the receiver acknowledges is the video and audio it gets (hundreds of kbit/s of fake camera)
    wait_until("the estimator's acknowledged bitrate", lambda: sub.estimator.acked_bps > 50_000)
    assert sub.estimator.target_bps >= 50_000

    # publisher side: the teacher's Chromium numbers its packets and gets the SFU's feedback
    (pub,) = wait_until("the teacher's publisher transport", lambda: _transports(main, "send"))
    wait_until("transport-wide numbers from the publishing Chromium", lambda: pub.arrivals.active)
    wait_until("feedback to the publishing Chromium", lambda: pub.arrivals.sent_feedback >= 20)
    # Chromium's send-side estimate runs on that feedback: its outbound video has a target bitrate above
    # 100 kbit/s (waited for: on a loaded machine the feedback's arrival times jitter and the estimate
    # may dip at first, as it would on a real link, before it climbs)
    wait_until("the publisher's estimate above 100 kbit/s", lambda: teacher.evaluate("""async () => {
        const stats = await window.sankeLesson.publisher.getStats();
        let pair = 0;
        stats.forEach((s) => { if (s.type === 'candidate-pair' && s.nominated && s.availableOutgoingBitrate)
                                 pair = s.availableOutgoingBitrate; });
        return pair;
    }""") > 100_000, timeout=40.0)
