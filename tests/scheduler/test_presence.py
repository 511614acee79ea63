"""scheduler.presence: which open sessions a (re)starting node ends, where, and what the record says of them."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from scheduler import presence, records
from scheduler.records_models import EventKind, SessionEvent
from tests.scheduler.test_records import Log, _first_lesson


def test_a_node_ends_its_own_cut_sessions_at_start_and_another_nodes_once_silent(session, client, world,
                                                                                   auth) -> None:
    inst = _first_lesson(session, client, world, auth)
    inst.room_opened_at = inst.starts_at - timedelta(minutes=5)
    log = Log(session, inst)
    main, recv = world.main_room.id, world.recv_room.id
    t = world.teacher.id
    log(0, "join", "m1", "main", user_id=t, classroom_id=main, node="a")
    log(10, "publish", "m1", "main", user_id=t, classroom_id=main, source="camera")
    log(60, "link_quality", "m1", "main", user_id=t, classroom_id=main, loss=0.0)
    log(90, "presence", "m1", "main", user_id=t, classroom_id=main)  # node a is killed after this
    log(5, "join", "r1", "receiving", user_id=world.terminal_recv.id, classroom_id=recv, node="b")
    log(100, "presence", "r1", "receiving", user_id=world.terminal_recv.id, classroom_id=recv)
    log(6, "join", "r2", "receiving", user_id=world.assistant.id, classroom_id=recv, node="a")
    log(50, "leave", "r2", "receiving", user_id=world.assistant.id, classroom_id=recv, reason="client_left")
    at = inst.starts_at
    common = {"node": "a", "uncertain_s": 30.5, "stale_s": 92.0}

    # a pass of a running node a: its own sessions are the room's business; b's is fresh
    assert presence.close_orphans(session, starting=False, live=set(), now=at + timedelta(seconds=110),
                                  **common) == []
    # node a starts again: its cut session ends at its last event; b's is still alive (10 s silent)
    closed = presence.close_orphans(session, starting=True, live=set(), now=at + timedelta(seconds=110), **common)
    assert [(s.participant_id, s.last_at) for s in closed] == [("m1", at + timedelta(seconds=90))]
    # b never comes back: after stale_s of silence its session ends too, at its last mark
    assert presence.close_orphans(session, starting=False, live={(inst.id, "x")}, now=at + timedelta(seconds=191),
                                  **common) == []
    closed = presence.close_orphans(session, starting=False, live=set(), now=at + timedelta(seconds=193), **common)
    assert [(s.participant_id, s.last_at) for s in closed] == [("r1", at + timedelta(seconds=100))]
    ends = session.scalars(select(SessionEvent).where(SessionEvent.kind == EventKind.leave,
                                                      SessionEvent.participant_id != "r2")
                           .order_by(SessionEvent.participant_id)).all()
    assert [(e.participant_id, e.data) for e in ends] == [
        ("m1", {"reason": "server_lost", "uncertain_s": 20.0}),  # node a came back 20 s after the last mark
        ("r1", {"reason": "server_lost", "uncertain_s": 30.5})]
    assert presence.open_sessions(session, now=at + timedelta(seconds=200)) == []

    rec = records.compute(session, inst.id, now=at + timedelta(hours=2))
    assert rec.duration_s == 80 and rec.uncertain_s == 20  # published 10 s .. 90 s, then unknown
    by_role = {a.role: a for a in rec.attendance if a.classroom_id in (main, recv)}
    assert by_role["main"].present_s == 90 and by_role["main"].uncertain_s == 20
    assert by_role["receiving"].present_s == 95 and by_role["receiving"].uncertain_s == 30  # not 2 hours
