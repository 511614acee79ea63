"""A recording whose node died while another node took its lesson over (scheduler.recordings, media.salvage).

The writing node checkpoints what its files hold (``written_so_far`` → ``checkpoint``); the node that takes
the lesson over ends the dead node's row with that (``take_over``: partial, the lesson's replay lists it
before the new recording); the dead node, started again, finalizes the same row from its files
(``orphans`` + ``recover``).  A row its own node ended meanwhile, or another node's, is left alone.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from media.recorder import INDEX_NAME
from media.salvage import written_so_far
from scheduler import recordings
from scheduler.recordings_models import RecordingStatus
from tests.scheduler.test_records import _first_lesson


def _write(folder: Path, name: str, source: str, wall: float, last_write: float, size: int) -> None:
    """A file the recorder is writing: its index line (first frame at ``wall``) and ``size`` bytes last
    written at ``last_write``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(b"\x1a" * size)
    os.utime(folder / name, (last_write, last_write))
    kind = "audio" if source == "microphone" else "video"
    with open(folder / INDEX_NAME, "a", encoding="utf-8") as index:
        index.write(json.dumps({"name": name, "source": source, "kind": kind,
                                "codec": "opus" if kind == "audio" else "vp8", "wall": wall}) + "\n")


def test_the_dead_nodes_recording_ends_at_its_checkpoint_then_its_node_finalizes_it(
        session: Any, client: Any, world: Any, auth: Any, tmp_path: Path) -> None:
    inst = _first_lesson(session, client, world, auth)
    inst.series.recording = True
    at = inst.starts_at
    first = recordings.begin(session, inst.id, now=at, node="node-a")
    assert first is not None
    session.commit()
    folder = tmp_path / first.directory
    t0 = 1_700_000_000.0
    _write(folder, "camera-1.webm", "camera", t0, t0 + 12.5, 40_000)
    _write(folder, "microphone-1.webm", "microphone", t0 + 0.5, t0 + 12.4, 9_000)
    (folder / INDEX_NAME).open("a").write('{"name": "screen-1.webm", "sour')  # the line being written
    files = written_so_far(folder)
    assert [(f["name"], f["start_s"], f["duration_s"], f["size"]) for f in files] == [
        ("camera-1.webm", 0.0, 12.5, 40_000), ("microphone-1.webm", 0.5, 11.9, 9_000)]

    assert recordings.checkpoint(session, first.id, files)
    assert not recordings.checkpoint(session, first.id, files)  # nothing new: no write
    assert first.status is RecordingStatus.recording and first.duration_s == 12.5 and first.size_bytes == 49_000
    # another node's death, or a lesson that is not this one: nothing to end
    assert recordings.take_over(session, inst.id, "node-c", now=at + timedelta(seconds=20)) == []
    assert recordings.take_over(session, inst.id + 1000, "node-a", now=at + timedelta(seconds=20)) == []

    # node-a dies; node-b takes the lesson over and records on
    [ended] = recordings.take_over(session, inst.id, "node-a", now=at + timedelta(seconds=20))
    second = recordings.begin(session, inst.id, now=at + timedelta(seconds=18), node="node-b")
    assert second is not None
    session.commit()
    assert ended.id == first.id and ended.status is RecordingStatus.partial
    assert ended.error == recordings.TAKEN_OVER_ZH and ended.ended_at == at + timedelta(seconds=12)
    assert [f["name"] for f in ended.files or []] == ["camera-1.webm", "microphone-1.webm"]
    recordings.finish(session, second.id, {"duration_s": 30.0, "files": [
        {"name": "camera-1.webm", "source": "camera", "kind": "video", "codec": "vp8", "start_s": 0.0,
         "duration_s": 30.0, "size": 90_000, "frames": 900, "width": 640, "height": 360}]},
        now=at + timedelta(seconds=48))
    session.commit()
    timeline = recordings.lesson_timeline(session, inst.id)
    assert [(s.recording.id, s.offset_s) for s in timeline.segments] == [(first.id, 0.0), (second.id, 18.0)]
    assert timeline.gaps == [(12.5, 18.0)] and timeline.duration_s == 48.0
    # a second take-over (another node, later) changes nothing
    assert recordings.take_over(session, inst.id, "node-a", now=at + timedelta(seconds=60)) == []

    # node-a starts again: the row is among what it finalizes, and then no more
    assert [r.id for r in recordings.orphans(session, "node-a")] == [first.id]
    assert recordings.orphans(session, "node-b") == []
    salvaged = [f | {"duration_s": 12.0, "frames": 360, "width": 640, "height": 360} for f in files]
    row = recordings.recover(session, first.id, salvaged, now=at + timedelta(minutes=10))
    session.commit()
    assert row is not None and row.status is RecordingStatus.partial and row.error == recordings.RECOVERED_ZH
    assert row.duration_s == 12.5 and all(f["frames"] == 360 for f in row.files or [])
    assert recordings.orphans(session, "node-a") == []


def test_a_recording_its_node_ended_is_not_taken_over(session: Any, client: Any, world: Any, auth: Any) -> None:
    """A node cut off from Redis stops its rooms and ends its own recording (ready): the node that takes
    the lesson over leaves it so; one that had nothing yet at its last checkpoint ends failed."""
    inst = _first_lesson(session, client, world, auth)
    inst.series.recording = True
    at = inst.starts_at
    done = recordings.begin(session, inst.id, now=at, node="node-a")
    empty = recordings.begin(session, inst.id, now=at + timedelta(seconds=5), node="node-a")
    assert done is not None and empty is not None
    recordings.finish(session, done.id, {"duration_s": 3.0, "files": [
        {"name": "camera-1.webm", "source": "camera", "kind": "video", "codec": "vp8", "start_s": 0.0,
         "duration_s": 3.0, "size": 900, "frames": 90, "width": 640, "height": 360}]}, now=at + timedelta(seconds=4))
    session.commit()
    [ended] = recordings.take_over(session, inst.id, "node-a", now=at + timedelta(seconds=9))
    assert ended.id == empty.id and ended.status is RecordingStatus.failed
    assert done.status is RecordingStatus.ready and done.error is None
