"""Debian's nginx as the stream's origin, with the configuration ``docs/operations.md`` gives, in front of SanKe.

The ``nginx`` block of the LL-HLS section is read from the document and run as it is, with this test's
paths, port and link secret filled in (``tests/utils/hls_nginx.py``): nginx checks the links
SanKe signs, serves parts and segments from the disk, and passes playlists to SanKe, which holds blocking
reloads, one request for any number of viewers asking the same reload.  nginx checks expiries against the
real clock, so the links here are signed from it.  Without /usr/sbin/nginx the test is skipped, or fails
under ``SANKE_TEST_REQUIRE_NGINX=1`` (``scripts/test.sh`` installs it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import m3u8
import pytest

from server.core import hls_files, hls_sign
from tests.conftest import TEST_SECRET, TODAY
from tests.utils.hls_live import LiveRendition, live_lesson
from tests.utils.hls_nginx import nginx_origin, require_nginx
from tests.utils.live import live_server
from tests.utils.wait import until

LESSON = 41
SECRET = hls_sign.link_secret(TEST_SECRET)


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    return sqlite_url  # nothing here reads the database


@pytest.fixture
def nginx(app: Any, settings: Any, tmp_path: Path) -> Iterator[str]:
    require_nginx()
    with live_server(app) as sanke, nginx_origin(sanke, settings.data_dir, SECRET, tmp_path / "nginx") as base:
        yield base


def real_prefix(*, ttl: int = 3600, lesson: int = LESSON) -> str:
    """A link good for nginx's (real) clock and SanKe's (pinned, earlier) one."""
    return hls_sign.sign(lesson, hls_sign.expiry(int(time.time()), ttl), SECRET).prefix


def started(settings: Any) -> LiveRendition:
    camera = live_lesson(settings.data_dir, LESSON, 7, TODAY)["camera"]
    for _ in range(camera.per_segment + 2):  # segment 0, then s1.0 and s1.1; s1.2 hinted
        camera.add_part()
    return camera


def test_nginx_serves_the_stream_from_the_disk_behind_the_same_links(nginx: str, app: Any, settings: Any) -> None:
    camera = started(settings)
    base = nginx + real_prefix() + "camera/"
    r = httpx.get(base + "s1.1.m4s")
    assert r.status_code == 200 and r.content == camera.part_bytes(1, 1)
    assert r.headers["content-type"] == "video/iso.segment"
    assert r.headers["cache-control"] == hls_files.CACHE_MEDIA
    assert r.headers["access-control-allow-origin"] == "*"
    r = httpx.get(base + "init.mp4")
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4" and r.headers["cache-control"] == "no-cache"
    r = httpx.get(base + "index.m3u8")
    assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.apple.mpegurl"
    assert r.headers["access-control-allow-origin"] == "*"  # SanKe's header, passed on
    assert m3u8.loads(r.text).preload_hint.uri == "s1.2.m4s"

    good = real_prefix()
    _, _, lesson, expires, sig, _ = good.split("/")
    flipped = ("B" if sig[0] == "A" else "A") + sig[1:]
    expired = hls_sign.sign(LESSON, int(time.time()) - 5, SECRET).prefix  # SanKe's pinned clock would take it
    for refused in (f"/hls/{lesson}/{expires}/{flipped}/camera/s1.1.m4s", f"/hls/{lesson}/{expires}/{flipped}/main.m3u8",
                    expired + "camera/s1.1.m4s", expired + "main.m3u8",
                    real_prefix(lesson=LESSON + 1).replace(f"/{LESSON + 1}/", f"/{LESSON}/") + "camera/s1.1.m4s"):
        assert httpx.get(nginx + refused).status_code == 403, refused


def test_blocking_reloads_and_the_hinted_part_go_to_sanke_once_for_every_viewer(nginx: str, app: Any,
                                                                               settings: Any) -> None:
    camera = started(settings)
    base = nginx + real_prefix() + "camera/"
    watcher_path = camera.playlist.resolve()

    def waiting() -> int:
        watcher = app.state.hls_watchers._by_path.get(watcher_path)
        return watcher.waiting if watcher is not None else 0

    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=20) as http:
            reloads = [asyncio.create_task(http.get(base + "index.m3u8", params={"_HLS_msn": 1, "_HLS_part": 2}))
                       for _ in range(20)]
            part = asyncio.create_task(http.get(base + "s1.2.m4s"))  # hinted, not written: a miss on the disk
            await until("one reload and the part held by SanKe", lambda: waiting() == 2, 10)
            assert not any(t.done() for t in [*reloads, part])
            camera.add_part()
            answers = await asyncio.wait_for(asyncio.gather(*reloads), 10)
            for r in answers:
                assert r.status_code == 200
                assert [p.uri for p in m3u8.loads(r.text).segments[-1].parts][-1] == "s1.2.m4s"
            # nginx asked SanKe once; the others waited for that answer and read it from its cache
            assert sorted(r.headers.get("x-cache") for r in answers).count("MISS") == 1, \
                [r.headers.get("x-cache") for r in answers]
            r = await asyncio.wait_for(part, 10)
            assert r.status_code == 200 and r.content == camera.part_bytes(1, 2)

    asyncio.run(scenario())


def test_nginx_serves_the_ended_stream_at_the_lessons_link_and_a_recordings_stream_behind_its_own(
        nginx: str, app: Any, settings: Any) -> None:
    """After 下课 the lesson's link serves the whole lesson (main.m3u8 lists vod.m3u8); a recording's prefix
    serves that recording's stream from the disk, and no other recording's."""
    from tests.server.api.routes.test_recordings_stream import keep_stream

    recording = 7
    folder = hls_files.recording_folder(settings.data_dir, LESSON, recording)
    keep_stream(folder)
    hls_files.point_lesson(settings.data_dir, LESSON, folder.parent)
    for prefix in (real_prefix(), hls_sign.sign(LESSON, hls_sign.expiry(int(time.time()), 3600), SECRET,
                                                recording).prefix):
        main = httpx.get(nginx + prefix + "main.m3u8")
        assert main.status_code == 200 and main.headers["content-type"].startswith("application/vnd.apple.mpegurl")
        assert [v.uri for v in m3u8.loads(main.text).playlists] == ["camera/vod.m3u8"]
        vod = m3u8.loads(httpx.get(nginx + prefix + "camera/vod.m3u8").text)
        assert vod.is_endlist and [s.uri for s in vod.segments] == ["s0.m4s", "s1.m4s"]
        r = httpx.get(nginx + prefix + "camera/s1.m4s")
        assert r.status_code == 200 and r.content == b"camera 1" and r.headers["cache-control"] == hls_files.CACHE_MEDIA
        assert r.headers["access-control-allow-origin"] == "*"
    good = hls_sign.sign(LESSON, hls_sign.expiry(int(time.time()), 3600), SECRET, recording).prefix
    other = hls_sign.sign(LESSON, hls_sign.expiry(int(time.time()), 3600), SECRET, recording + 1).prefix
    expired = hls_sign.sign(LESSON, int(time.time()) - 5, SECRET, recording).prefix
    lesson_sig = real_prefix().split("/")[4]
    _, _, _, rpart, expires, _, _ = good.split("/")
    for refused in (other.replace(f"/r{recording + 1}/", f"/r{recording}/"), expired,
                    f"/hls/{LESSON}/{rpart}/{expires}/{lesson_sig}/"):
        for file in ("main.m3u8", "camera/s1.m4s"):
            assert httpx.get(nginx + refused + file).status_code == 403, refused + file
