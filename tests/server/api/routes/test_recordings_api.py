"""/api/v1/recordings: who may list, watch and download which recording; filters; signed file URLs; retention."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from scheduler import clock
from scheduler.recordings_models import Recording, RecordingStatus
from tests.server.api.routes.test_lessons import book, lessons


def add_recording(session_factory: Any, data_dir: Path, instance_id: int, *, ended_days_ago: float = 1,
                  status: RecordingStatus = RecordingStatus.ready) -> int:
    now = clock.now()
    with session_factory() as s:
        row = Recording(instance_id=instance_id, status=status, directory="", started_at=now, duration_s=61.5,
                        size_bytes=4000, codecs="opus,vp8", ended_at=now - timedelta(days=ended_days_ago),
                        files=[{"name": "camera-1.webm", "source": "camera", "kind": "video", "codec": "vp8",
                                "start_s": 0.0, "duration_s": 61.5, "size": 3000, "width": 160, "height": 120},
                               {"name": "microphone-1.webm", "source": "microphone", "kind": "audio",
                                "codec": "opus", "start_s": 0.2, "duration_s": 61.0, "size": 1000}])
        s.add(row)
        s.flush()
        row.directory = f"recordings/{instance_id}/{row.id}"
        folder = data_dir / row.directory
        folder.mkdir(parents=True)
        (folder / "camera-1.webm").write_bytes(bytes(range(256)) * 12)
        (folder / "microphone-1.webm").write_bytes(b"\x1a\x45\xdf\xa3" * 250)
        s.commit()
        return row.id


def setup(client: Any, world: Any, auth: Any, session_factory: Any, settings: Any) -> dict[str, int]:
    book(client, world, auth, kind="famous_school", title="名校语文", subject="语文", grade="五年级",
         participant_ids=[world.student.id])
    famous = lessons(client, world.urban_admin, auth, kind="famous_school", limit=1)["data"][0]["id"]
    book(client, world, auth, weekday=2)  # a dedicated 三年级数学, recorded by its series flag
    dedicated, earlier = [x["id"] for x in lessons(client, world.urban_admin, auth, kind="dedicated", limit=2)["data"]]
    return {
        "famous": add_recording(session_factory, settings.data_dir, famous),
        "dedicated": add_recording(session_factory, settings.data_dir, dedicated),
        "old": add_recording(session_factory, settings.data_dir, earlier, ended_days_ago=400),
        "live": add_recording(session_factory, settings.data_dir, famous, status=RecordingStatus.recording),
    }


def ids(client: Any, user: Any, auth: Any, **params: Any) -> set[int]:
    r = client.get("/api/v1/recordings", headers=auth(user), params=params)
    assert r.status_code == 200, r.text
    return {x["id"] for x in r.json()["data"]}


def test_each_role_lists_and_opens_only_the_recordings_it_may_see(client, world, auth, session_factory, settings):
    rec = setup(client, world, auth, session_factory, settings)
    playable = {rec["famous"], rec["dedicated"], rec["old"]}  # the one being written is not listed
    assert client.get("/api/v1/recordings").status_code == 401
    assert client.get(f"/api/v1/recordings/{rec['famous']}").status_code == 401
    assert client.get("/api/v1/recordings", headers={"Authorization": "Bearer forged"}).status_code == 401
    for user in (world.urban_admin, world.city_admin, world.sysadmin, world.researcher_a, world.teacher):
        assert ids(client, user, auth) == playable, user.username
    assert ids(client, world.student, auth) == {rec["famous"]}  # enrolled famous-school lessons only
    assert ids(client, world.researcher_b, auth) == set()  # another district
    assert ids(client, world.admin_b, auth) == set()
    r = client.get("/api/v1/recordings", headers=auth(world.terminal_main))
    assert r.status_code == 403 and r.json()["message"]

    for user, rid, code in [(world.student, rec["famous"], 200), (world.student, rec["dedicated"], 403),
                            (world.researcher_b, rec["famous"], 403), (world.teacher_b, rec["dedicated"], 403),
                            (world.terminal_recv, rec["famous"], 403), (world.researcher_a, rec["dedicated"], 200),
                            (world.teacher, 99999, 404)]:
        r = client.get(f"/api/v1/recordings/{rid}", headers=auth(user))
        assert r.status_code == code, (user.username, rid, r.text)
    for method in ("post", "get"):
        r = getattr(client, method)(f"/api/v1/recordings/{rec['dedicated']}/compose", headers=auth(world.student))
        assert r.status_code == 403


def test_the_library_filters_by_subject_grade_teacher_and_school(client, world, auth, session_factory, settings):
    rec = setup(client, world, auth, session_factory, settings)
    admin = world.urban_admin
    assert ids(client, admin, auth, subject="语文") == {rec["famous"]}
    assert ids(client, admin, auth, grade="三年级") == {rec["dedicated"], rec["old"]}
    assert ids(client, admin, auth, teacher_id=world.teacher.id, kind="famous_school") == {rec["famous"]}
    assert ids(client, admin, auth, teacher_id=world.teacher2.id) == set()
    assert ids(client, admin, auth, school_id=world.urban.id) == {rec["famous"], rec["dedicated"], rec["old"]}
    assert ids(client, admin, auth, school_id=world.rural.id) == set()
    assert ids(client, admin, auth, q="名校") == {rec["famous"]}
    page = client.get("/api/v1/recordings", headers=auth(admin), params={"limit": 1}).json()
    assert page["count"] == 3 and len(page["data"]) == 1
    item = page["data"][0]
    assert item["teacher_name"] == world.teacher.display_name and item["school_name"] == world.urban.name
    assert item["status_label"] == "可回放"
    facets = client.get("/api/v1/recordings/facets", headers=auth(world.student)).json()
    assert facets["subjects"] == ["语文"] and facets["grades"] == ["五年级"]
    assert facets["teachers"] == [{"id": world.teacher.id, "name": world.teacher.display_name}]
    assert facets["schools"] == [{"id": world.urban.id, "name": world.urban.name}]


def test_files_are_served_to_their_signed_url_with_ranges(client, world, auth, session_factory, settings):
    rec = setup(client, world, auth, session_factory, settings)
    r = client.get(f"/api/v1/recordings/{rec['famous']}", headers=auth(world.student))
    assert r.status_code == 200, r.text
    body = r.json()
    files = {f["source"]: f for f in body["files"]}
    assert files["camera"]["mime"] == "video/webm" and files["microphone"]["mime"] == "audio/webm"
    assert files["camera"]["source_label"] == "教师画面" and body["expires_on"]
    url = files["camera"]["url"]
    r = client.get(url)  # no bearer header, as a <video> element asks
    assert r.status_code == 200 and r.content == bytes(range(256)) * 12
    assert r.headers["content-type"] == "video/webm" and r.headers.get("accept-ranges") == "bytes"
    r = client.get(url, headers={"Range": "bytes=256-511"})
    assert r.status_code == 206 and r.content == bytes(range(256))
    base, token = url.split("?token=")
    assert client.get(base).status_code == 401
    assert client.get(base + "?token=forged").status_code == 401
    other = files["microphone"]["url"].split("?token=")[1]
    assert client.get(f"{base}?token={other}").status_code == 403  # a token is for one file
    dedicated = f"/api/v1/recordings/{rec['dedicated']}/files/camera-1.webm?token={token}"
    assert client.get(dedicated).status_code == 403  # ...of one recording
    r = client.post(f"/api/v1/recordings/{rec['live']}/compose", headers=auth(world.urban_admin))
    assert r.status_code == 409  # still being written
    r = client.get(f"/api/v1/recordings/{rec['famous']}/compose", headers=auth(world.student))
    assert r.status_code == 200 and r.json()["status"] == "none"


def test_the_retention_deletes_expired_files_and_marks_the_rows(client, world, auth, session_factory, settings):
    rec = setup(client, world, auth, session_factory, settings)
    assert settings.recording_retention_days == 180
    old_dir = settings.data_dir / "recordings"
    assert client.post("/api/v1/recordings/cleanup").status_code == 401
    assert client.post("/api/v1/recordings/cleanup", headers=auth(world.urban_admin)).status_code == 403
    assert client.post("/api/v1/recordings/cleanup", headers=auth(world.teacher)).status_code == 403
    r = client.post("/api/v1/recordings/cleanup", headers=auth(world.sysadmin))
    assert r.status_code == 200 and r.json() == {"expired": [rec["old"]]}
    with session_factory() as s:
        old = s.get(Recording, rec["old"])
        assert old.status is RecordingStatus.expired and old.expired_at is not None
        assert not (settings.data_dir / old.directory).exists()
        assert (settings.data_dir / s.get(Recording, rec["dedicated"]).directory / "camera-1.webm").exists()
    assert old_dir.exists()
    assert rec["old"] not in ids(client, world.urban_admin, auth)
    body = client.get(f"/api/v1/recordings/{rec['old']}", headers=auth(world.urban_admin)).json()
    assert body["status"] == "expired" and body["files"] == [] and body["status_label"] == "已过期删除"


def test_recording_is_on_for_famous_school_lessons_and_switchable_for_the_others(client, world, auth, session_factory):
    from scheduler import recordings

    famous_series = book(client, world, auth, kind="famous_school", participant_ids=[world.student.id])
    dedicated_series = book(client, world, auth, weekday=2)
    famous = lessons(client, world.urban_admin, auth, series_id=famous_series, limit=1)["data"][0]["id"]
    dedicated = lessons(client, world.urban_admin, auth, series_id=dedicated_series, limit=1)["data"][0]["id"]
    with session_factory() as s:
        assert recordings.should_record(s, famous) and not recordings.should_record(s, dedicated)
    url = f"/api/v1/recordings/series/{dedicated_series}"
    assert client.put(url, json={"recording": True}).status_code == 401
    for user in (world.teacher, world.researcher_a, world.admin_b, world.rural_admin):
        assert client.put(url, json={"recording": True}, headers=auth(user)).status_code == 403, user.username
    r = client.put(url, json={"recording": True}, headers=auth(world.urban_admin))
    assert r.status_code == 200 and r.json() == {"series_id": dedicated_series, "kind": "dedicated", "recording": True}
    with session_factory() as s:
        assert recordings.should_record(s, dedicated)
    r = client.put(f"/api/v1/recordings/series/{famous_series}", json={"recording": False}, headers=auth(world.city_admin))
    assert r.status_code == 422 and "始终录制" in r.json()["message"]
    assert client.put("/api/v1/recordings/series/99999", json={"recording": True},
                      headers=auth(world.sysadmin)).status_code == 404
