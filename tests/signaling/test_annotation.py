"""The teacher's annotation over the shared screen (同屏批注) over the lesson socket, through a real server on
127.0.0.1 and Python lesson clients: the main classroom's strokes, undo and clear reach every page; other
roles and malformed strokes are refused; a page that joins again (a reload) gets what is on the screen; the
event log keeps every change with its time, for the replay."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from scheduler.records_models import SessionEvent
from signaling.annotation import MAX_STROKES
from signaling.client import LessonClient, LessonError
from tests.media.sfu_harness import (  # noqa: F401 - a live lesson on 127.0.0.1
    Lesson,
    db_url,
    lesson,
    loopback_clients,
    media_workers,
    settings,
)
from tests.utils.wait import until

PEN = {"id": "s1", "tool": "pen", "color": "#ff0000", "width": 0.004, "points": [[0.1, 0.1], [0.2, 0.25], [0.3, 0.2]]}
ARROW = {"id": "s2", "tool": "arrow", "color": "#2563eb", "width": 0.006, "points": [[0.5, 0.5], [0.7, 0.4]]}
TEXT = {"id": "s3", "tool": "text", "color": "#000000", "width": 0.02, "points": [[0.6, 0.8]], "text": "重点：勾股定理"}


def marks(client: LessonClient) -> list[dict[str, Any]]:
    return [m for m in client.messages if m["type"] == "annotation"]


def board(client: LessonClient) -> list[str]:
    """The stroke ids on the page's screen, as a page applies the messages (``state`` replaces the board)."""
    ids: list[str] = []
    for m in marks(client):
        if m["action"] == "state":
            ids = [x["id"] for x in m["strokes"]]
        elif m["action"] == "stroke":
            ids.append(m["stroke"]["id"])
        elif m["action"] == "undo":
            ids.remove(m["stroke"]["id"])
        else:
            ids = []
    return ids


def test_the_teachers_strokes_reach_every_page_and_a_reload_gets_them_back(lesson: Lesson, app: Any,
                                                                           session_factory: Any) -> None:
    w = lesson.world

    async def scenario() -> None:
        main = await lesson.join(w.teacher)
        rural = await lesson.join(w.terminal_recv)
        student = await lesson.join(w.student)
        for stroke in (PEN, ARROW, TEXT):
            await main.request({"type": "annotate", "action": "stroke", "stroke": stroke})
        await until("three strokes on each page", lambda: all(board(c) == ["s1", "s2", "s3"]
                                                              for c in (main, rural, student)), 10)
        strokes = {m["stroke"]["id"]: m["stroke"] for m in marks(rural) if m["action"] == "stroke"}
        assert strokes["s3"]["text"] == "重点：勾股定理" and strokes["s1"]["points"][1] == [0.2, 0.25]

        # only the main classroom annotates; malformed strokes get a zh-CN error and change nothing
        with pytest.raises(LessonError) as refused:
            await rural.request({"type": "annotate", "action": "clear"})
        assert refused.value.reply["code"] == "not_allowed"
        for bad in ({**PEN, "points": [[1.5, 0.2]]}, {**PEN, "color": "red"}, {**ARROW, "points": [[0.1, 0.1]]},
                    {**TEXT, "text": None}, {**PEN, "points": [[0.1, 0.1]] * 2001}):
            with pytest.raises(LessonError) as refused:
                await main.request({"type": "annotate", "action": "stroke", "stroke": bad})
            assert refused.value.reply["code"] == "bad_message", bad

        # undo takes the last stroke away; a page that joins again gets what is left
        await main.request({"type": "annotate", "action": "undo"})
        await until("the undo", lambda: board(rural) == ["s1", "s2"], 10)
        assert marks(rural)[-1]["action"] == "undo" and marks(rural)[-1]["stroke"]["id"] == "s3"
        await rural.close()
        again = await lesson.join(w.terminal_recv)
        await until("the screen's strokes after joining", lambda: marks(again), 10)
        assert marks(again)[0]["action"] == "state" and board(again) == ["s1", "s2"]

        await main.request({"type": "annotate", "action": "clear"})
        await until("the clear", lambda: marks(again)[-1]["action"] == "clear" and board(again) == [], 10)
        with pytest.raises(LessonError):  # nothing left to undo
            await main.request({"type": "annotate", "action": "undo"})
        late = await lesson.join(w.researcher_a)  # an empty screen: no state (unless the stroke below beat it)
        await main.request({"type": "annotate", "action": "stroke", "stroke": PEN})
        await until("the observer's stroke", lambda: board(late) == ["s1"], 10)
        assert [m["action"] for m in marks(late)][0] in ("stroke", "state")

    lesson.play(scenario)

    def logged() -> list[Any] | None:
        with session_factory() as s:
            rows = [(e.role, (e.data or {}).get("action"), ((e.data or {}).get("stroke") or {}).get("id"))
                    for e in s.scalars(select(SessionEvent).where(SessionEvent.instance_id == lesson.lid,
                                                                  SessionEvent.kind == "annotation")
                                       .order_by(SessionEvent.id))]
        return rows if len(rows) == 6 else None

    rows = until_sync(logged)
    assert rows == [("main", "stroke", "s1"), ("main", "stroke", "s2"), ("main", "stroke", "s3"),
                    ("main", "undo", "s3"), ("main", "clear", None), ("main", "stroke", "s1")]


def until_sync(check: Any) -> Any:
    from tests.utils.wait import wait_until
    return wait_until("the annotation events in the log", check, 15, interval=0.2)


def test_the_screen_holds_at_most_max_strokes(lesson: Lesson) -> None:
    w = lesson.world

    async def scenario() -> None:
        main = await lesson.join(w.teacher)
        for i in range(MAX_STROKES):
            await main.send({"type": "annotate", "action": "stroke", "stroke": {**PEN, "id": f"m{i}"}})
        with pytest.raises(LessonError) as refused:
            await main.request({"type": "annotate", "action": "stroke", "stroke": PEN})
        assert refused.value.reply["code"] == "not_allowed" and "请先清屏" in refused.value.reply["message"]

    lesson.play(scenario)


def test_a_room_that_opens_again_on_a_node_starts_with_the_board_its_log_holds(lesson: Lesson, app: Any,
                                                                                 session_factory: Any) -> None:
    """The room moves out (a failover or a drain takes it to another node, or the node restarts): when it opens
    again, the shared screen shows what the teacher had drawn, rebuilt from the lesson's event log."""
    w = lesson.world

    def logged(n: int) -> Any:
        with session_factory() as s:
            return len(s.scalars(select(SessionEvent.id).where(SessionEvent.instance_id == lesson.lid,
                                                               SessionEvent.kind == "annotation")).all()) >= n or None

    async def scenario() -> None:
        main = await lesson.join(w.teacher)
        for stroke in (PEN, ARROW, TEXT):
            await main.request({"type": "annotate", "action": "stroke", "stroke": stroke})
        await main.request({"type": "annotate", "action": "undo"})
        await main.close()
        await until("the four changes in the log", lambda: logged(4), 15)
        assert app.state.rooms.move_out([lesson.lid]) == [lesson.lid]
        rural = await lesson.join(w.terminal_recv)
        await until("the board after the room opened again", lambda: marks(rural), 10)
        assert marks(rural)[0]["action"] == "state" and board(rural) == ["s1", "s2"]
        assert marks(rural)[0]["strokes"][1] == {**ARROW, "text": None}

    lesson.play(scenario)
