"""LL-HLS blocking playlist reloads and blocking hinted-part requests, against a folder a writer extends.

Each request runs as a task on the test's loop (the app in-process, httpx's ASGI transport); the test
writes parts as the media worker would and waits on state (the playlist's watcher holding the request,
the watcher having read a change) with deadlines, never for a number of sleeps.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import m3u8
import pytest

from server.api.routes.hls import unix_now
from server.core import hls_sign
from server.core.hls_reload import Decision, decide, parse
from tests.conftest import TEST_SECRET, TODAY
from tests.utils.hls_live import LiveRendition, live_lesson
from tests.utils.loops import LOOPS, run_on
from tests.utils.wait import until

LESSON = 41


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    return sqlite_url  # nothing here reads the database


def prefix() -> str:
    return hls_sign.sign(LESSON, hls_sign.expiry(unix_now(), 3600), hls_sign.link_secret(TEST_SECRET)).prefix


def started(settings: Any, **kw: Any) -> LiveRendition:
    """The lesson's camera with one full segment and two parts of segment 1 (s1.2.m4s hinted)."""
    camera = live_lesson(settings.data_dir, LESSON, 7, TODAY)["camera"]
    if kw:
        camera = LiveRendition(camera.folder, TODAY, **kw)
    for _ in range(camera.per_segment + 2):
        camera.add_part()
    return camera


def watcher_of(app: Any, camera: LiveRendition) -> Any:
    watchers = app.state.hls_watchers
    return watchers._by_path.get(camera.playlist.resolve())


@LOOPS
def test_a_blocking_reload_answers_once_the_part_is_written_and_not_before(app: Any, settings: Any,
                                                                           loop: str) -> None:
    camera = started(settings)
    url = prefix() + "camera/index.m3u8"

    async def scenario() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sanke") as http:
            ask = asyncio.create_task(http.get(url, params={"_HLS_msn": 1, "_HLS_part": 2}))
            watcher = await until("the request waiting on the playlist",
                                  lambda: (w := watcher_of(app, camera)) is not None and w.waiting == 1 and w, 5)
            before = watcher.seen
            camera.write_playlist()  # rewritten, still without s1.2: read, and the request still waits
            await until("the watcher reading the rewritten playlist", lambda: watcher.seen is not before, 5)
            assert not ask.done() and watcher.waiting == 1
            written = time.monotonic()
            assert camera.add_part() == "s1.2.m4s"
            r = await asyncio.wait_for(ask, 5)
            took = time.monotonic() - written
            assert r.status_code == 200, r.text
            playlist = m3u8.loads(r.text)
            assert [p.uri for p in playlist.segments[-1].parts] == ["s1.0.m4s", "s1.1.m4s", "s1.2.m4s"]
            assert playlist.preload_hint.uri == "s1.3.m4s"
            assert took < 1.0, f"answered {took:.3f} s after the part was written (the watcher polls every 25 ms)"
            await until("the idle watcher forgotten", lambda: watcher_of(app, camera) is None, 5)

            # a whole segment: held through its remaining parts, answered when it is complete
            ask = asyncio.create_task(http.get(url, params={"_HLS_msn": 1}))
            watcher = await until("the segment request waiting",
                                  lambda: (w := watcher_of(app, camera)) is not None and w.waiting == 1 and w, 5)
            for _ in range(2):
                before = watcher.seen
                camera.add_part()
                await until("the watcher reading the new part", lambda: watcher.seen is not before, 5)
                assert not ask.done() and watcher.waiting == 1
            camera.add_part()  # s1.5: segment 1 is complete
            r = await asyncio.wait_for(ask, 5)
            assert r.status_code == 200 and [s.uri for s in m3u8.loads(r.text).segments][-2:] == ["s0.m4s", "s1.m4s"]

    run_on(loop, scenario)


def test_a_request_for_the_hinted_part_waits_until_it_is_written(app: Any, settings: Any) -> None:
    camera = started(settings)
    base = prefix() + "camera/"

    async def scenario() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sanke") as http:
            r = await http.get(base + "s1.5.m4s")  # neither written nor hinted
            assert r.status_code == 404
            ask = asyncio.create_task(http.get(base + camera.hint))
            await until("the part request waiting",
                        lambda: (w := watcher_of(app, camera)) is not None and w.waiting == 1, 5)
            assert not ask.done()
            camera.add_part()
            r = await asyncio.wait_for(ask, 5)
            assert r.status_code == 200 and r.content == camera.part_bytes(1, 2)
            assert r.headers["content-type"] == "video/iso.segment"

    asyncio.run(scenario())


def test_an_ended_stream_answers_at_once_and_a_stalled_one_with_503(app: Any, settings: Any) -> None:
    camera = started(settings, parts_per_segment=3)  # segments of 1 s: three target durations are 3 s
    url = prefix() + "camera/index.m3u8"

    async def scenario() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sanke") as http:
            t0 = time.monotonic()
            r = await http.get(url, params={"_HLS_msn": 1, "_HLS_part": 2})  # the hinted part, never written
            waited = time.monotonic() - t0
            assert r.status_code == 503 and r.json()["code"] == "stream_stalled", r.text
            assert "暂时没有新内容" in r.json()["message"]
            assert 2.9 < waited < 6, waited
            r = await http.get(prefix() + "camera/" + camera.hint)
            assert r.status_code == 503

            camera.end()  # 下课
            for params in ({"_HLS_msn": 1, "_HLS_part": 2}, {"_HLS_msn": 40, "_HLS_part": 9}, {}):
                t0 = time.monotonic()
                r = await http.get(url, params=params)
                assert r.status_code == 200 and time.monotonic() - t0 < 1, params
                assert m3u8.loads(r.text).is_endlist

    asyncio.run(scenario())


def test_bad_delivery_directives_are_refused_with_400(app: Any, settings: Any) -> None:
    started(settings)  # last full segment 0; segment 1 has parts 0 and 1; part target 0.334 s
    url = prefix() + "camera/index.m3u8"

    async def scenario() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sanke") as http:
            for params, why in (({"_HLS_msn": "abc"}, "_HLS_msn 必须是非负整数"),
                                ({"_HLS_msn": "-1"}, "_HLS_msn 必须是非负整数"),
                                ({"_HLS_msn": "1", "_HLS_part": "x"}, "_HLS_part 必须是非负整数"),
                                ({"_HLS_part": "1"}, "_HLS_part 须与 _HLS_msn 一起使用"),
                                ({"_HLS_msn": "3"}, "超出直播进度"),  # last full segment + 3
                                ({"_HLS_msn": "1", "_HLS_part": "10"}, "超出直播进度")):  # 9 parts ahead
                r = await http.get(url, params=params)
                assert r.status_code == 400, (params, r.text)
                assert why in r.json()["message"], (params, r.json())
            for params in ({"_HLS_msn": "0"}, {"_HLS_msn": "1", "_HLS_part": "1"}):  # there already: at once
                r = await http.get(url, params=params)
                assert r.status_code == 200

    asyncio.run(scenario())


def test_a_thousand_waiting_viewers_share_one_watcher(app: Any, settings: Any) -> None:
    camera = started(settings)
    url = prefix() + "camera/index.m3u8"

    async def scenario() -> None:
        limits = httpx.Limits(max_connections=None)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sanke",
                                     limits=limits) as http:
            asks = [asyncio.create_task(http.get(url, params={"_HLS_msn": 1, "_HLS_part": 2})) for _ in range(1000)]
            await until("a thousand requests waiting on one watcher",
                        lambda: len(app.state.hls_watchers) == 1
                        and (w := watcher_of(app, camera)) is not None and w.waiting == 1000, 30)
            camera.add_part()
            answers = await asyncio.wait_for(asyncio.gather(*asks), 30)
            assert {r.status_code for r in answers} == {200}
            assert all("s1.2.m4s" in r.text.split("PRELOAD-HINT")[0] for r in answers)
            await until("the watcher forgotten", lambda: len(app.state.hls_watchers) == 0, 5)

    asyncio.run(scenario())


def test_the_rules_of_rfc8216bis_6_2_5_2() -> None:
    camera_text = (b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PART-INF:PART-TARGET=0.5\n#EXT-X-MEDIA-SEQUENCE:10\n"
                   + b"".join(b'#EXT-X-PART:DURATION=0.5,URI="s10.%d.m4s"\n' % p for p in range(4))
                   + b"#EXTINF:2,\ns10.m4s\n#EXTINF:2,\ns11.m4s\n")
    # s10's parts are listed, s11's not: a request past s11's last part cannot be told from part 0 of s12
    state = parse(camera_text)
    assert (state.last_msn, state.last_segment_parts, state.live_parts, state.advance_part_limit) == (11, 0, 0, 6)
    assert decide(state, 11, None) is Decision.ready
    assert decide(state, 9, 3) is Decision.ready  # left the window: the whole playlist
    assert decide(state, 12, None) is Decision.wait
    assert decide(state, 12, 0) is Decision.wait
    assert decide(state, 13, None) is Decision.wait  # last + 2
    assert decide(state, 14, None) is Decision.too_far
    # the Advance Part Limit: 3 / 0.5 = 6 parts beyond the last one listed
    assert decide(state, 12, 5) is Decision.wait and decide(state, 12, 6) is Decision.too_far
    live = parse(camera_text + b'#EXT-X-PART:DURATION=0.5,URI="s12.0.m4s"\n')
    assert decide(live, 12, 0) is Decision.ready and decide(live, 12, 1) is Decision.wait
    whole = parse(b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:5\n"
                  + b"".join(b'#EXT-X-PART:DURATION=0.5,URI="s5.%d.m4s"\n' % p for p in range(4))
                  + b"#EXTINF:2,\ns5.m4s\n")
    assert decide(whole, 5, 3) is Decision.ready
    assert decide(whole, 5, 4) is Decision.wait  # past segment 5's last part: part 0 of segment 6
    ended = parse(b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\ns0.m4s\n#EXT-X-ENDLIST\n")
    assert decide(ended, 99, 99) is Decision.ready
