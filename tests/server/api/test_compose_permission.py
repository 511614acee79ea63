"""Composing a recording's one-MP4 download (H.264 encoding in the API process) is for those who may manage it.

Students and researchers who may watch a recording got 202 and started an encode; only admins in scope
and the lesson's teacher may (``scheduler.recordings.may_manage``), and every reader gets the file once
it has been composed.
"""

from __future__ import annotations

from typing import Any

from scheduler.recordings_models import Recording
from tests.server.api.routes.test_recordings_api import setup


def test_only_managers_start_a_composition_and_every_reader_downloads_it(
        app: Any, client: Any, world: Any, auth: Any, session_factory: Any, settings: Any,
        monkeypatch: Any) -> None:
    rec = setup(client, world, auth, session_factory, settings)
    started: list[int] = []
    monkeypatch.setattr(app.state.recordings, "compose", lambda row: started.append(row.id))
    famous, dedicated = rec["famous"], rec["dedicated"]

    # readers who may not manage: they see the recording, and a 403 with a reason to compose
    for user, rid in ((world.student, famous), (world.researcher_a, famous), (world.researcher_a, dedicated),
                      (world.researcher_city, dedicated), (world.teacher2, dedicated)):
        assert client.get(f"/api/v1/recordings/{rid}", headers=auth(user)).status_code == 200, user.username
        r = client.post(f"/api/v1/recordings/{rid}/compose", headers=auth(user))
        assert r.status_code == 403 and "合成" in r.json()["message"], (user.username, r.status_code, r.text)
    assert started == []

    # managers: the lesson's teacher, admins of its school and above
    for user in (world.teacher, world.urban_admin, world.city_admin):
        r = client.post(f"/api/v1/recordings/{dedicated}/compose", headers=auth(user))
        assert r.status_code == 202, (user.username, r.text)
    assert started == [dedicated] * 3

    # composed: the student gets the download without starting anything
    with session_factory() as s:
        row = s.get(Recording, famous)
        row.composed_name = "lesson.mp4"
        (settings.data_dir / row.directory / "lesson.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" * 8)
        s.commit()
    r = client.post(f"/api/v1/recordings/{famous}/compose", headers=auth(world.student))
    assert r.status_code == 202 and r.json()["status"] == "done", r.text
    assert started == [dedicated] * 3
    url = client.get(f"/api/v1/recordings/{famous}/compose", headers=auth(world.student)).json()["url"]
    download = client.get(url)
    assert download.status_code == 200 and download.content == b"\x00\x00\x00\x18ftypmp42" * 8
    assert download.headers["content-disposition"].startswith("attachment")
