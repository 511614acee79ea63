"""The quick quiz (随堂测) over the lesson socket: ``quiz_start``, ``quiz_answer`` and ``quiz_close`` in,
``quiz`` and ``quiz_results`` out.

The database is the quiz's state (``scheduler.quizzes``): each message is applied there, committed, and only
then answered (``ack``) and told to the room, so an acknowledged answer survives a restart of the server or a
move of the room to another node; a page that joins or resumes while a question is open gets it back
(``send_current``) with its own answer.  The endpoint (``signaling.endpoint``) awaits ``handle`` for these
messages instead of ``Room.handle``; one room's quiz messages are applied one at a time (a lock per room),
so the results a main classroom receives never go back in time.  An answer costs one row: its results are
read by a task of the room that reads again only once the previous read is sent, so a thousand students
answering at once cause a few reads, not a thousand (``_push_results``).

Who gets what: receiving classrooms and home students get ``quiz`` (the question, its right options once it
closed, their own answer); the main classroom and observers get ``quiz_results`` (everything).  Roles are
checked by ``signaling.messages.allowed``; input by ``scheduler.quizzes.validate`` (zh-CN ``error``).

Must not: hold quiz state in the room (the room knows nothing of the quiz) or block the event loop (the
database work runs in the thread pool).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from scheduler import clock, quizzes
from scheduler.errors import Invalid, InvalidState, NotFound
from scheduler.models import Classroom
from signaling.messages import (
    ErrorCode,
    LessonRole,
    Quiz,
    QuizAnswer,
    QuizAnswerLine,
    QuizClose,
    QuizQuestionInfo,
    QuizResults,
    QuizStart,
    allowed,
)
from signaling.room import NOT_ALLOWED_ZH, Participant, Room

log = logging.getLogger(__name__)

QUIZ_MESSAGES = (QuizStart, QuizAnswer, QuizClose)
DATABASE_AWAY_ZH = "随堂测暂时无法保存，请稍后重试"
SessionFactory = Callable[[], Session]

LIVE_ANSWERS = 1000
"""``quiz_results.answers`` lists the last this many answers (``answered`` and ``counts`` count them all; the
record has every one)."""


class _Desk:
    """A room's quiz work: ``lock`` orders its database steps and what they send; ``pusher`` sends the
    watchers the results of answers, one read for every answer that came while the previous read ran."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.dirty = False
        self.pusher: asyncio.Task[None] | None = None


_desks: weakref.WeakKeyDictionary[Room, _Desk] = weakref.WeakKeyDictionary()


def _desk(room: Room) -> _Desk:
    desk = _desks.get(room)
    if desk is None:
        desk = _desks[room] = _Desk()
    return desk


def _epoch_ms(t: datetime) -> int:
    return int(t.replace(tzinfo=clock.zone()).timestamp() * 1000)


def _answerer(p: Participant) -> str | None:
    role = LessonRole(p.role).value
    if role not in quizzes.ANSWERING_ROLES:
        return None
    return quizzes.answerer_of(role, p.user_id, p.classroom_id)


def _watches(p: Participant) -> bool:
    return p.role in (LessonRole.main, LessonRole.observer)


def _info(r: quizzes.Results, *, reveal: bool) -> QuizQuestionInfo:
    q = r.question
    return QuizQuestionInfo(question_id=q.id, kind=q.kind.value, text=q.text, options=list(q.options),
                            correct=list(q.correct) if reveal or not r.open else None, open=r.open)


def results_message(r: quizzes.Results) -> QuizResults:
    return QuizResults(
        question=_info(r, reveal=True), counts=r.counts, answered=r.answered, correct_share=r.correct_share,
        answers=[QuizAnswerLine(name=a.name, role=a.role, user_id=a.user_id, classroom_id=a.classroom_id,
                                choices=a.choices, right=a.right, ts=_epoch_ms(a.answered_at))
                 for a in r.answers[-LIVE_ANSWERS:]])


def _mine(r: quizzes.Results, answerer: str) -> list[int] | None:
    for a in r.answers:
        if a.answerer == answerer:
            return a.choices
    return None


def _to_watchers(room: Room, r: quizzes.Results) -> None:
    if room.closed:
        return
    watched = results_message(r)
    for p in list(room.participants.values()):
        if _watches(p):
            p.send(watched)


def _tell(room: Room, r: quizzes.Results) -> None:
    """``quiz_results`` to the main classroom and observers; ``quiz`` to everyone who answers."""
    if room.closed:
        return
    _to_watchers(room, r)
    info = _info(r, reveal=False)
    shared: Quiz | None = None
    for p in list(room.participants.values()):
        who = _answerer(p)
        if who is None:
            continue
        mine = _mine(r, who)
        if mine is None:  # one object for everyone without an answer: serialised once
            shared = shared or Quiz(question=info)
            p.send(shared)
        else:
            p.send(Quiz(question=info, my_choices=mine))


# ---------------------------------------------------------------- database work (in the thread pool)


def _name_of(s: Session, p: Participant) -> str:
    if LessonRole(p.role) is LessonRole.receiving and p.classroom_id is not None:
        room = s.get(Classroom, p.classroom_id)
        if room is not None:
            return room.name
    return p.display_name


def _draft(msg: QuizStart) -> quizzes.NewQuestion | None:
    d = msg.question
    if d is None:
        return None
    return quizzes.NewQuestion(kind=quizzes.QuizKind(d.kind.value), text=d.text, options=list(d.options),
                               correct=list(d.correct))


def _start_or_close(factory: SessionFactory, instance_id: int, p: Participant,
                    msg: QuizStart | QuizClose) -> quizzes.Results:
    with factory() as s:
        now = clock.now_precise()
        if isinstance(msg, QuizStart):
            q = quizzes.open_question(s, instance_id, question_id=msg.question_id, new=_draft(msg),
                                      by_user_id=p.user_id, now=now)
        else:
            q = quizzes.close(s, instance_id, msg.question_id, now=now)
        s.commit()  # durable before anyone hears of it
        return quizzes.results(s, q)


def _answer(factory: SessionFactory, instance_id: int, p: Participant, msg: QuizAnswer) -> Quiz:
    """Store ``p``'s answer; the ``quiz`` its sessions get (not the whole results: an answer costs one row)."""
    for attempt in range(2):
        with factory() as s:
            try:
                row = quizzes.answer(s, instance_id, msg.question_id, msg.choices, role=LessonRole(p.role).value,
                                     user_id=p.user_id, classroom_id=p.classroom_id, name=_name_of(s, p),
                                     now=clock.now_precise())
                s.commit()  # durable before anyone hears of it
            except IntegrityError:  # two sessions of one classroom answered at once: the second replaces
                s.rollback()
                if attempt:
                    raise
                continue
            q = s.get(quizzes.QuizQuestion, row.question_id)
            assert q is not None
            info = QuizQuestionInfo(question_id=q.id, kind=q.kind.value, text=q.text, options=list(q.options),
                                    correct=None, open=True)
            return Quiz(question=info, my_choices=list(row.choices))
    raise AssertionError("unreachable")


def _current(factory: SessionFactory, instance_id: int) -> quizzes.Results | None:
    with factory() as s:
        q = quizzes.current(s, instance_id)
        return None if q is None else quizzes.results(s, q)


# ---------------------------------------------------------------- the socket side


async def handle(factory: SessionFactory, room: Room, p: Participant, msg: Any) -> None:
    """Apply one quiz message of ``p``: refused with ``error``, or stored, acked and told to the room."""
    if room.participants.get(p.participant_id) is not p:
        return
    rid = msg.request_id
    code = allowed(p.role, msg, p.on_stage, p.listen_only)
    if code is not None:
        room.error(p, code, NOT_ALLOWED_ZH, rid)
        return
    desk = _desk(room)
    async with desk.lock:
        try:
            if isinstance(msg, QuizAnswer):
                mine = await run_in_threadpool(_answer, factory, room.instance_id, p, msg)
            else:
                r = await run_in_threadpool(_start_or_close, factory, room.instance_id, p, msg)
        except (Invalid, NotFound) as exc:
            room.error(p, ErrorCode.bad_message, exc.message, rid)
            return
        except InvalidState as exc:
            room.error(p, ErrorCode.not_allowed, exc.message, rid)
            return
        except SQLAlchemyError as exc:  # the database is away: nothing stored, nothing acked
            log.warning("quiz: lesson %s: %s not stored (%s)", room.instance_id, msg.type, exc.__class__.__name__)
            room.error(p, ErrorCode.internal, DATABASE_AWAY_ZH, rid)
            return
        room.ack(p, rid)
        if not isinstance(msg, QuizAnswer):
            _tell(room, r)
            return
        who = _answerer(p)  # the classroom's other session (its terminal and its assistant) too
        for q in list(room.participants.values()):
            if _answerer(q) == who:
                q.send(mine)
    desk.dirty = True
    if desk.pusher is None or desk.pusher.done():
        desk.pusher = asyncio.get_running_loop().create_task(_push_results(factory, room, desk),
                                                             name=f"sanke-quiz-results-{room.instance_id}")


async def _push_results(factory: SessionFactory, room: Room, desk: _Desk) -> None:
    """The open question's results to the watchers, read again while answers keep coming: under load one
    read covers every answer stored meanwhile.  Ends by itself (a closed question: its close said it all)."""
    try:
        while desk.dirty and not room.closed:
            desk.dirty = False
            if not any(_watches(q) for q in room.participants.values()):
                return  # nobody watches now; one who joins gets the results then (``send_current``)
            async with desk.lock:  # after the answers before it; never after a close's final results
                r = await run_in_threadpool(_current, factory, room.instance_id)
                if r is not None:
                    _to_watchers(room, r)
    except Exception:  # the answers are stored; the next one tries again
        log.exception("quiz: sending lesson %s's results failed", room.instance_id)


async def send_current(factory: SessionFactory, room: Room, p: Participant) -> None:
    """After ``joined``/``resumed``: the open question, if any, to ``p`` (with its own answer)."""
    try:
        async with _desk(room).lock:
            r = await run_in_threadpool(_current, factory, room.instance_id)
            if r is None or room.participants.get(p.participant_id) is not p:
                return
            if _watches(p):
                p.send(results_message(r))
                return
            who = _answerer(p)
            if who is not None:
                p.send(Quiz(question=_info(r, reveal=False), my_choices=_mine(r, who)))
    except Exception:  # the quiz is not worth the session: it is logged and the lesson goes on
        log.exception("quiz: sending lesson %s's open question failed", room.instance_id)
