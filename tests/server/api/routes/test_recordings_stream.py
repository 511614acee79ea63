"""A famous-school recording's stream in its details answer: a signed prefix per recording, good for that
recording's ended stream alone, handed to exactly those who may open the recording."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import m3u8

from media.hls_playlist import MediaPlaylist, Segment, Variant, multivariant, write_atomic
from scheduler.recordings_models import Recording
from server.api.routes.hls import unix_now
from server.core import hls_files, hls_sign
from tests.conftest import TEST_SECRET
from tests.server.api.routes.test_recordings_api import setup

SECRET = hls_sign.link_secret(TEST_SECRET)
PDT = datetime(2027, 3, 8, 2, 0, 5, 250000, tzinfo=UTC).timestamp()
"""The stream's clock at the camera's first picture."""


def keep_stream(folder: Path, *, ended: bool = True, screen: bool = False) -> None:
    """The hls/ folder a recording keeps: camera (and screen) and audio, two segments each, ended or not."""
    for name in ("camera", "audio", *(("screen",) if screen else ())):
        d = folder / name
        d.mkdir(parents=True)
        (d / "init.mp4").write_bytes(f"init {name}".encode())
        pl = MediaPlaylist(3, 0.334, 6, ended=ended)
        for msn in range(2):
            pl.segments.append(Segment(msn, f"s{msn}.m4s", "init.mp4", PDT + 2.0 * msn, duration=2.0))
            (d / f"s{msn}.m4s").write_bytes(f"{name} {msn}".encode())
        write_atomic(d / "vod.m3u8", pl.render(full=True))
        write_atomic(d / "index.m3u8", pl.render())
    media = "vod.m3u8" if ended else "index.m3u8"
    for source, file in (("camera", "main.m3u8"), *((("screen", "screen.m3u8"),) if screen else ())):
        write_atomic(folder / file, multivariant([Variant(f"{source}/{media}", 500_000, "avc1.42e01f", 160, 120, True)],
                                                 f"audio/{media}"))


def details(client: Any, auth: Any, user: Any, rid: int) -> Any:
    r = client.get(f"/api/v1/recordings/{rid}", headers=auth(user))
    assert r.status_code == 200, r.text
    return r.json()


def test_a_recording_that_keeps_its_ended_stream_hands_out_a_prefix_for_it_alone(
        client, world, auth, session_factory, settings) -> None:
    rec = setup(client, world, auth, session_factory, settings)
    with session_factory() as s:
        famous = s.get(Recording, rec["famous"])
        lesson = famous.instance_id
        files = famous.files
    folder = hls_files.recording_folder(settings.data_dir, lesson, rec["famous"])
    assert details(client, auth, world.student, rec["famous"])["segments"][0]["stream"] is None  # no stream: files
    keep_stream(folder, ended=False)
    assert details(client, auth, world.student, rec["famous"])["segments"][0]["stream"] is None  # never ended
    for f in folder.rglob("*"):
        if f.is_file():
            f.unlink()
    for d in sorted(folder.rglob("*"), reverse=True):
        d.rmdir()
    keep_stream(folder, screen=True)

    body = details(client, auth, world.student, rec["famous"])
    (segment,) = body["segments"]
    stream = segment["stream"]
    prefix = stream["main_url"].removesuffix("main.m3u8")
    assert prefix.startswith(f"/hls/{lesson}/r{rec['famous']}/") and stream["screen_url"] == prefix + "screen.m3u8"
    now = unix_now()
    assert now + 6 * 3600 <= stream["expires_at"] < now + 6 * 3600 + hls_sign.ROUND_S
    camera_start = next(f["start_s"] for f in files if f["source"] == "camera")
    assert abs(stream["program_date_time"] - (PDT - camera_start)) < 0.001  # the files' axis on the stream's clock
    assert body["files"]  # the files stay listed (a segment without a stream plays them)

    r = client.get(stream["main_url"])  # no bearer header, as a player asks
    assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.apple.mpegurl"
    main = m3u8.loads(r.text)
    assert [v.uri for v in main.playlists] == ["camera/vod.m3u8"] and [m.uri for m in main.media] == ["audio/vod.m3u8"]
    vod = m3u8.loads(client.get(prefix + "camera/vod.m3u8").text)  # relative URIs: under the same prefix
    assert vod.is_endlist and [s.uri for s in vod.segments] == ["s0.m4s", "s1.m4s"]
    r = client.get(prefix + "camera/s1.m4s")
    assert r.status_code == 200 and r.content == b"camera 1" and r.headers["content-type"] == "video/iso.segment"
    assert client.get(stream["screen_url"]).status_code == 200

    # refused: altered, expired, another recording's or the lesson's own signature, a path out of the folder
    _, _, _, rpart, expires, sig, _ = prefix.split("/")
    flipped = ("B" if sig[0] == "A" else "A") + sig[1:]
    expired = hls_sign.sign(lesson, now - 5, SECRET, rec["famous"]).prefix
    other = hls_sign.sign(lesson, int(expires), SECRET, rec["live"]).prefix  # the other recording of the lesson
    lesson_sig = hls_sign.sign(lesson, int(expires), SECRET).prefix.split("/")[4]
    for refused, code in [(f"/hls/{lesson}/{rpart}/{expires}/{flipped}/main.m3u8", "link_invalid"),
                          (expired + "main.m3u8", "link_expired"),
                          (other.replace(f"/r{rec['live']}/", f"/{rpart}/") + "main.m3u8", "link_invalid"),
                          (f"/hls/{lesson}/{rpart}/{expires}/{lesson_sig}/main.m3u8", "link_invalid"),
                          (f"/hls/{lesson}/{expires}/{sig}/main.m3u8", "link_invalid"),  # as the lesson's prefix
                          (prefix.replace(f"/{lesson}/", f"/{lesson + 1}/") + "main.m3u8", "link_invalid")]:
        r = client.get(refused)
        assert r.status_code == 403 and r.json()["code"] == code, (refused, r.text)
    assert "回放链接" in client.get(expired + "main.m3u8").json()["message"]
    assert client.get(prefix + "../../main.m3u8").status_code in (400, 403, 404)
    assert client.get(prefix + "camera/vod.webm").status_code == 400

    # exactly who may open the recording gets the prefix
    for user in (world.urban_admin, world.researcher_a, world.teacher):
        assert details(client, auth, user, rec["famous"])["segments"][0]["stream"]["main_url"].startswith(
            f"/hls/{lesson}/r{rec['famous']}/"), user.username
    for user in (world.researcher_b, world.admin_b, world.terminal_recv):
        r = client.get(f"/api/v1/recordings/{rec['famous']}", headers=auth(user))
        assert r.status_code == 403 and "/hls/" not in r.text, user.username
    # another lesson's recording (no stream) plays its files
    assert details(client, auth, world.urban_admin, rec["dedicated"])["segments"][0]["stream"] is None


def test_with_an_origin_for_the_streams_a_recordings_stream_is_served_from_it(
        client, world, auth, session_factory, settings, monkeypatch) -> None:
    rec = setup(client, world, auth, session_factory, settings)
    with session_factory() as s:
        lesson = s.get(Recording, rec["famous"]).instance_id
    keep_stream(hls_files.recording_folder(settings.data_dir, lesson, rec["famous"]))
    monkeypatch.setattr(settings, "hls_base_url", "https://live.example.edu.cn/")
    stream = details(client, auth, world.student, rec["famous"])["segments"][0]["stream"]
    assert stream["main_url"].startswith(f"https://live.example.edu.cn/hls/{lesson}/r{rec['famous']}/")
