"""The demo's replay library (录播资源库) has lessons to watch, and the demo's records read right.

The demo is loaded once for the module at the tests' fixed "now" (``tests.conftest.TODAY``), so what is
checked does not depend on the day the suite runs.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.models import LessonInstance, LessonKind, Region, Role, User
from scheduler.patrol_models import RubricTemplate
from scheduler.recordings_models import Recording, RecordingStatus
from scheduler.records_models import AttendanceRecord, TeachingRecord
from server.core.config import Settings
from server.core.db import make_engine, make_session_factory
from server.demo import DemoSummary, load_demo
from server.demo_media import CLIP_SECONDS, FPS, write_clip
from tests.conftest import TEST_SECRET, TODAY
from tests.utils.factory import token_for


@dataclass
class Demo:
    settings: Settings
    summary: DemoSummary


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    settings = Settings(data_dir=tmp_path_factory.mktemp("demo-replay"), secret_key=TEST_SECRET)
    with contextlib.redirect_stdout(io.StringIO()):
        summary = load_demo(settings, now=TODAY)
    return Demo(settings, summary)


@pytest.fixture
def session(demo: Demo) -> Iterator[Session]:
    engine = make_engine(demo.settings.effective_database_url)
    with make_session_factory(engine)() as s:
        yield s
    engine.dispose()


@pytest.fixture
def client(demo: Demo) -> Iterator[TestClient]:
    from server.main import create_app

    with TestClient(create_app(demo.settings, migrate=False, run_lifecycle=False)) as c:
        yield c


def _headers(session: Session, username: str) -> dict[str, str]:
    user = session.scalar(select(User).where(User.username == username))
    assert user is not None, username
    session.commit()  # on SQLite an open transaction holds the write lock the request needs
    return {"Authorization": f"Bearer {token_for(user, TEST_SECRET)}"}


def _library(client: TestClient, session: Session, username: str) -> list[dict[str, Any]]:
    r = client.get("/api/v1/recordings", headers=_headers(session, username))
    assert r.status_code == 200, r.text
    assert r.json()["count"] == len(r.json()["data"])
    return list(r.json()["data"])


def test_the_library_has_recorded_lessons_for_the_student_the_teacher_and_staff(
        demo: Demo, session: Session, client: TestClient) -> None:
    student = _library(client, session, "student")  # the home page promises 可回看录播
    assert len(student) == 2 and {r["kind"] for r in student} == {LessonKind.famous_school.value}
    teacher = _library(client, session, "teacher")
    teacher_id = session.scalar(select(User.id).where(User.username == "teacher"))
    session.commit()
    assert any(r["teacher_id"] == teacher_id for r in teacher)
    everything = _library(client, session, "admin")
    assert len(everything) == len(CLIP_SECONDS) == 3
    assert sorted(r["duration_s"] for r in everything) == sorted(float(s) for s in CLIP_SECONDS)

    # the player's answer hands out file URLs the browser can fetch (signed, with ranges)
    r = client.get(f"/api/v1/recordings/{student[0]['id']}", headers=_headers(session, "student"))
    assert r.status_code == 200, r.text
    files = {f["source"]: f for f in r.json()["files"]}
    assert set(files) == {"camera", "microphone"}
    camera = client.get(files["camera"]["url"], headers={"Range": "bytes=0-1023"})
    assert camera.status_code == 206 and len(camera.content) == 1024
    assert client.get(files["microphone"]["url"]).content == Path(
        demo.settings.data_dir, session.get(Recording, student[0]["id"]).directory, "microphone-1.webm").read_bytes()


def test_the_recordings_decode_with_their_durations_and_the_lessons_link_them(demo: Demo, session: Session) -> None:
    rows = session.scalars(select(Recording).order_by(Recording.id)).all()
    assert len(rows) == 3
    for row in rows:
        assert row.status is RecordingStatus.ready and 20 <= row.duration_s <= 60
        assert row.directory == f"recordings/{row.instance_id}/{row.id}"  # where the recorder writes
        inst = session.get(LessonInstance, row.instance_id)
        assert inst.room_closed_at is not None and inst.room_closed_at <= TODAY  # a lesson that took place
        assert session.get(TeachingRecord, row.instance_id).recording_id == row.id
        for f in row.files or []:
            path = demo.settings.data_dir / row.directory / f["name"]
            assert path.stat().st_size == f["size"] > 0
            with av.open(str(path)) as container:
                stream = container.streams[0]
                frames = list(container.decode(stream))
            last = frames[-1]
            end = float(last.pts * last.time_base)
            if f["kind"] == "video":
                assert (stream.codec_context.name, last.width, last.height) == ("vp8", 640, 360)
                assert len(frames) == row.duration_s * FPS and abs(end + 1 / FPS - row.duration_s) < 0.1
            else:
                assert stream.codec_context.name in ("opus", "libopus")
                assert abs(end - row.duration_s) < 0.1
    assert sum(r.size_bytes for r in rows) < 3_000_000  # small


def test_making_the_clips_is_quick() -> None:
    """``sanke demo`` stays fast: the three clips cost about 2 s of CPU (measured 1.9 s)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        began = time.process_time()
        for k, seconds in enumerate(CLIP_SECONDS):
            write_clip(Path(tmp) / str(k), seconds, k)
        assert time.process_time() - began < 10


def test_no_rubric_repeats_its_region_in_its_name(session: Session) -> None:
    rubrics = session.scalars(select(RubricTemplate)).all()
    assert rubrics
    for t in rubrics:
        region = session.get(Region, t.region_id)
        assert not t.name.endswith(f"（{region.name}）"), t.name  # the lists add it: 专递课堂评课表（清河市）


def test_no_classroom_is_on_stage_longer_than_it_was_present(session: Session) -> None:
    rows = session.execute(select(AttendanceRecord.instance_id, AttendanceRecord.stage_s, AttendanceRecord.present_s)
                           .where(AttendanceRecord.stage_s > 0)).all()
    assert rows  # some classrooms went on stage
    assert [r for r in rows if r.stage_s > r.present_s] == []


def test_no_researcher_carries_a_role_or_region_in_the_name(demo: Demo, session: Session) -> None:
    """Pages show a researcher as 名字（教研员 · 区域）; a name that already said 城关区教研员 would read twice."""
    researchers = session.scalars(select(User).where(User.role == Role.researcher)).all()
    assert len(researchers) == 4
    for u in researchers:
        region = session.get(Region, u.region_id)
        assert "教研员" not in u.display_name and region.name not in u.display_name, u.display_name
    printed = {a.username: a.name for a in demo.summary.accounts}
    assert printed["researcher"].endswith("区）") or printed["researcher"].endswith("县）")  # the table says where
    assert printed["researcher_city"].endswith("（清河市）")


def test_the_demo_has_a_research_activity_on_two_recorded_lessons(session: Session, client: TestClient) -> None:
    """网络教研: the district researcher's activity puts the demo teacher's recorded lesson beside another
    teacher's; the teacher finds it in their list, with both recordings and the discussion."""
    mine = client.get("/api/v1/research/activities", headers=_headers(session, "teacher")).json()["data"]
    assert len(mine) == 1 and mine[0]["lessons"] == 2
    act = client.get(f"/api/v1/research/activities/{mine[0]['id']}", headers=_headers(session, "teacher")).json()
    assert act["organizer_name"] and act["status"] == "open"
    assert all(p["recording_id"] is not None for p in act["lessons"])
    assert len({p["teacher_id"] for p in act["lessons"]}) == 2
    assert [p["may_evaluate"] for p in act["lessons"]] == [False, True]  # the teacher's own lesson comes first
    assert len(act["comments"]) == 3 and act["comments"][0]["offset_s"] == 8.0
