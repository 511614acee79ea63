"""A lesson's stream behind its signed prefix: what is served, with which type and caching, and what is refused.

The folder is written as the media worker writes it (``tests/utils/hls_live.py``); the served playlists are
read with the ``m3u8`` library.  The server's clock is the tests' pinned one (``scheduler.clock``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import m3u8
import pytest
from fastapi.testclient import TestClient

from server.api.routes.hls import unix_now
from server.core import hls_files, hls_sign
from tests.conftest import TEST_SECRET, TODAY
from tests.utils.hls_live import LiveRendition, live_lesson

LESSON = 41
SECRET = hls_sign.link_secret(TEST_SECRET)


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    return sqlite_url  # nothing here reads the database


@pytest.fixture
def live(settings: Any) -> dict[str, LiveRendition]:
    renditions = live_lesson(settings.data_dir, LESSON, 7, TODAY)
    for _ in range(8):  # one full segment and two parts of the next
        renditions["camera"].add_part()
        renditions["audio"].add_part()
    return renditions


@pytest.fixture
def http(client: TestClient) -> Iterator[TestClient]:
    yield client


def prefix(lesson: int = LESSON, *, ttl: int = 3600) -> str:
    return hls_sign.sign(lesson, hls_sign.expiry(unix_now(), ttl), SECRET).prefix


def test_the_signed_prefix_serves_the_stream_with_its_types_and_caching(http: TestClient, live: Any) -> None:
    base = prefix()
    r = http.get(base + "main.m3u8")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/vnd.apple.mpegurl"
    assert r.headers["cache-control"] == "no-cache"
    assert r.headers["access-control-allow-origin"] == "*"  # a page of another origin may play it
    main = m3u8.loads(r.text)
    assert main.is_variant and [p.uri for p in main.playlists] == ["camera/index.m3u8"]
    assert [m.uri for m in main.media] == ["audio/index.m3u8"]

    r = http.get(base + main.playlists[0].uri)  # relative URIs: under the same prefix
    assert r.status_code == 200 and r.headers["cache-control"] == "no-cache"
    camera = m3u8.loads(r.text)
    assert camera.media_sequence == 0 and camera.target_duration == 2
    assert camera.server_control.can_block_reload == "YES"
    assert [s.uri for s in camera.segments] == ["s0.m4s", None]  # one full segment, then the one being written
    assert [p.uri for p in camera.segments[-1].parts] == ["s1.0.m4s", "s1.1.m4s"]
    assert camera.preload_hint.uri == "s1.2.m4s"

    r = http.get(base + "camera/" + camera.segment_map[0].uri)
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
    assert r.headers["cache-control"] == "no-cache" and r.content.startswith(b"\x00\x00\x00\x18ftyp")
    for uri, body in (("s1.1.m4s", live["camera"].part_bytes(1, 1)),
                      ("s0.m4s", b"".join(live["camera"].part_bytes(0, p) for p in range(6)))):
        r = http.get(base + "camera/" + uri)
        assert r.status_code == 200 and r.content == body
        assert r.headers["content-type"] == "video/iso.segment"
        assert r.headers["cache-control"] == hls_files.CACHE_MEDIA
        assert r.headers["access-control-allow-origin"] == "*"
    r = http.get(base + "audio/s1.0.m4s")
    assert r.status_code == 200 and r.content == live["audio"].part_bytes(1, 0)


def test_missing_altered_expired_and_other_lessons_signatures_are_refused(
        http: TestClient, live: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    good = prefix()
    assert http.get(good + "camera/index.m3u8").status_code == 200
    _, _, lesson, expires, sig, _ = good.split("/")

    def refused(url: str, code: str) -> None:
        r = http.get(url)
        assert r.status_code == 403, (url, r.status_code, r.text)
        body = r.json()
        assert body["code"] == code and "直播链接" in body["message"], (url, body)

    refused(f"/hls/{LESSON}/camera/index.m3u8", "link_invalid")  # no signature at all
    refused(f"/hls/{LESSON}/{expires}/camera/index.m3u8", "link_invalid")
    flipped = ("B" if sig[0] == "A" else "A") + sig[1:]
    refused(f"/hls/{lesson}/{expires}/{flipped}/camera/index.m3u8", "link_invalid")  # altered signature
    refused(f"/hls/{lesson}/{int(expires) + 300}/{sig}/camera/index.m3u8", "link_invalid")  # a longer life
    refused(f"/hls/0{lesson}/{expires}/{sig}/camera/index.m3u8", "link_invalid")  # another spelling
    other = prefix(LESSON + 1)  # good for lesson 42, not for 41
    _, _, _, o_expires, o_sig, _ = other.split("/")
    refused(f"/hls/{LESSON}/{o_expires}/{o_sig}/camera/index.m3u8", "link_invalid")
    forged = hls_sign.sign(LESSON, int(expires), hls_sign.link_secret("another node's key 0123456789")).prefix
    refused(forged + "camera/index.m3u8", "link_invalid")

    # expiry: good up to its second, refused after (the server's clock, moved)
    at_expiry = TODAY + timedelta(seconds=int(expires) - unix_now())
    monkeypatch.setattr("scheduler.clock.now", lambda: at_expiry)
    assert http.get(good + "camera/index.m3u8").status_code == 200
    monkeypatch.setattr("scheduler.clock.now", lambda: at_expiry + timedelta(seconds=1))
    refused(good + "camera/index.m3u8", "link_expired")
    assert "过期" in http.get(good + "camera/s0.m4s").json()["message"]


def test_only_the_streams_own_files_are_served(http: TestClient, live: Any, settings: Any, tmp_path: Path) -> None:
    base = prefix()
    camera = live["camera"].folder
    outside = tmp_path / "secret.m4s"
    outside.write_bytes(b"not the stream")
    os.symlink(outside, camera / "link-out.m4s")  # a link leading out of the lesson's folder
    (camera / "notes.txt").write_text("x")
    other = settings.data_dir / "recordings" / "42" / "9" / "hls" / "camera"
    other.mkdir(parents=True)
    (other / "s0.m4s").write_bytes(b"another lesson")
    for rel in ("%2e%2e/%2e%2e/%2e%2e/42/9/hls/camera/s0.m4s", "camera/%2e%2e/%2e%2e/7/hls/main.m3u8",
                "camera/link-out.m4s", "camera/notes.txt", "camera/s0.m4s.txt", "%2Fetc%2Fpasswd",
                "camera//s0.m4s", "camera/.index.m3u8.tmp", "a/b/c/d/e.m4s"):
        r = http.get(base + rel)
        assert r.status_code == 400, (rel, r.status_code, r.text)
        assert r.json()["code"] == "bad_path" and "路径无效" in r.json()["message"]
    r = http.get(base + "camera/s99.m4s")
    assert r.status_code == 404 and r.json()["message"].startswith("直播文件不存在")
    r = http.get(prefix(43) + "main.m3u8")  # a lesson whose stream never began
    assert r.status_code == 404 and "直播" in r.json()["message"]
