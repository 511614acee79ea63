"""The teacher's annotation over the shared screen (同屏批注) on the lesson socket: ``annotate`` in,
``annotation`` out.

The main classroom's page draws strokes (pen, highlighter, arrow, text) over its shared screen in the
screen picture's own coordinates (0..1), and sends each finished stroke, an undo or a clear.  Here a room's
board — the strokes on the screen now, at most ``MAX_STROKES`` — is kept beside the room (never in it),
every change goes to everyone in the room as ``annotation`` (the pages draw it over their screen video, so
nothing is re-encoded), and to the session event log as an ``annotation`` event with its time, from which a
replay draws the strokes over the recording at the moment they were made.  A page that joins (a reload)
gets the board as ``annotation`` ``state``; a page that resumes gets the messages it missed.  A room that
opens on a node — moved there by a failover or a drain, or after a restart — starts from the board its log
holds (``replayed``; a killed node may have lost its last unflushed changes, ``server.core.eventlog``).

Roles are checked by ``signaling.messages.allowed`` (the main classroom only); the shape of a stroke by the
message model.  Must not: touch media, or keep anything but the board (the log is the history).
"""

from __future__ import annotations

import logging
import weakref

from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from signaling.messages import Annotate, Annotation, ErrorCode, Stroke, allowed
from signaling.room import NOT_ALLOWED_ZH, Participant, Room, now_ms

log = logging.getLogger(__name__)

ANNOTATION_MESSAGES = (Annotate,)
MAX_STROKES = 500
"""Strokes on the screen at once; the teacher clears (or undoes) before drawing more."""
FULL_ZH = f"屏幕上的批注已达 {MAX_STROKES} 笔，请先清屏"
NOTHING_ZH = "没有可撤销的批注"

_boards: weakref.WeakKeyDictionary[Room, list[Stroke]] = weakref.WeakKeyDictionary()


def board(room: Room) -> list[Stroke]:
    """The strokes on the room's shared screen now, oldest first."""
    strokes = _boards.get(room)
    if strokes is None:
        strokes = _boards[room] = []
    return strokes


def replayed(changes: Iterable[dict[str, Any]]) -> list[Stroke]:
    """The board the logged changes (``annotation`` events' data, oldest first) leave; a change that does not
    read as one is skipped."""
    strokes: list[Stroke] = []
    for change in changes:
        action = change.get("action")
        if action == "clear":
            strokes.clear()
        elif action == "undo":
            if strokes:
                strokes.pop()
        elif action == "stroke" and len(strokes) < MAX_STROKES:
            try:
                strokes.append(Stroke.model_validate(change.get("stroke")))
            except ValidationError:
                log.warning("annotation: a logged stroke does not read as one; skipped")
    return strokes


def seed(room: Room, strokes: list[Stroke]) -> None:
    """A room just opened here starts with ``strokes`` (unless someone drew on it meanwhile)."""
    current = board(room)
    if not current:
        current.extend(strokes)


def handle(room: Room, p: Participant, msg: Annotate) -> None:
    """Apply the main classroom's ``annotate``; told to everyone, logged, acknowledged."""
    rid = msg.request_id
    code = allowed(p.role, msg, p.on_stage, p.listen_only)
    if code is not None:
        room.error(p, code, NOT_ALLOWED_ZH, rid)
        return
    strokes = board(room)
    told = Annotation(action=msg.action, stroke=msg.stroke, ts=now_ms())
    if msg.action == "stroke":
        if len(strokes) >= MAX_STROKES:
            room.error(p, ErrorCode.not_allowed, FULL_ZH, rid)
            return
        strokes.append(msg.stroke)
    elif msg.action == "undo":
        if not strokes:
            room.error(p, ErrorCode.not_allowed, NOTHING_ZH, rid)
            return
        told = Annotation(action="undo", stroke=strokes.pop(), ts=told.ts)
    else:
        strokes.clear()
    for q in list(room.participants.values()):
        q.send(told)
    room.ack(p, rid)
    if room.journal is not None:
        try:
            room.journal.record(room.instance_id, "annotation", p,
                                {"action": told.action, **({"stroke": told.stroke.model_dump(mode="json")}
                                                           if told.stroke is not None else {})})
        except Exception:
            log.exception("annotation: logging lesson %s's mark failed", room.instance_id)


def send_current(room: Room, p: Participant) -> None:
    """After ``joined``: what is on the shared screen now, if anything."""
    strokes = board(room)
    if strokes and room.participants.get(p.participant_id) is p:
        p.send(Annotation(action="state", strokes=list(strokes), ts=now_ms()))
