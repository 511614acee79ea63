"""/patrol: the patrol wall, visits, rubric templates, evaluations, snapshots, invitations.

Who may do what is decided in ``scheduler.patrol``; this router maps bodies and
answers.  Snapshots are asked from the lesson's media worker (``producer.snapshot``:
the newest keyframe of the main camera) and decoded here, once, in a thread.
"""

from __future__ import annotations

import base64
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from media.channel import ChannelError
from media.snapshot import decode_jpeg
from scheduler import clock, patrol
from scheduler.access import require_school
from scheduler.models import (
    Classroom,
    InstanceStatus,
    LessonInstance,
    LessonKind,
    Region,
    Role,
    School,
    User,
)
from scheduler.patrol_models import (
    Evaluation,
    EvaluationMode,
    EvaluationNote,
    EvaluationReply,
    EvaluationSnapshot,
    EvaluatorInvitation,
    PatrolVisit,
    RubricTemplate,
    VisitEnd,
)
from scheduler.recordings_models import Recording, RecordingStatus
from server.api.common import PageDep
from server.api.deps import CurrentUser, ScopeDep, SessionDep, SettingsDep
from server.api.errors import ApiError
from server.api.routes.lessons import LessonOut, lesson_rows
from server.api.times import Timestamp

router = APIRouter(prefix="/patrol", tags=["patrol"])

API = "/api/v1"


def _names(session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return dict(session.execute(select(User.id, User.display_name).where(User.id.in_(ids))).all())  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- the wall


class SchoolFacet(BaseModel):
    id: int
    name: str


class LiveFacets(BaseModel):
    """What the wall's filters can choose from (over every live lesson the caller may patrol)."""

    schools: list[SchoolFacet]
    kinds: list[LessonKind]
    subjects: list[str]
    grades: list[str]


class LivePage(BaseModel):
    data: list[LessonOut]
    count: int
    facets: LiveFacets
    heartbeat_interval_s: int


@router.get("/live", response_model=LivePage)
def live(
    session: SessionDep,
    scope: ScopeDep,
    school_id: int | None = None,
    kind: LessonKind | None = None,
    subject: Annotated[str | None, Query(max_length=50)] = None,
    grade: Annotated[str | None, Query(max_length=50)] = None,
) -> LivePage:
    """The live lessons the caller may patrol (a researcher: their region), for the patrol wall."""
    if school_id is not None:
        require_school(session, scope, school_id)
    chosen, everything = patrol.live_lessons(session, scope, patrol.LiveFilter(school_id, kind, subject, grade))
    rooms = {i.main_classroom_id for i in everything} | {r.classroom_id for i in everything for r in i.series.receivers}
    schools = session.execute(
        select(School.id, School.name).join(Classroom, Classroom.school_id == School.id)
        .where(Classroom.id.in_(rooms)).distinct().order_by(School.name)
    ).all() if rooms else []
    facets = LiveFacets(
        schools=[SchoolFacet(id=i, name=n) for i, n in schools],
        kinds=sorted({i.series.kind for i in everything}, key=lambda k: k.value),
        subjects=sorted({i.series.subject for i in everything}),
        grades=sorted({i.series.grade for i in everything}),
    )
    return LivePage(data=lesson_rows(session, chosen), count=len(chosen), facets=facets,
                    heartbeat_interval_s=patrol.HEARTBEAT_INTERVAL_S)


# ---------------------------------------------------------------------------- rubric templates


class RubricItemIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    max_score: float = Field(gt=0, le=1000)
    weight: float = Field(default=1.0, gt=0, le=100)
    description: str = Field(default="", max_length=1000)


class RubricIn(BaseModel):
    region_id: int
    name: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=2000)
    items: list[RubricItemIn] = Field(min_length=1, max_length=50)


class RubricPatch(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=2000)
    active: bool | None = None
    items: list[RubricItemIn] | None = Field(default=None, min_length=1, max_length=50)


class RubricItemOut(BaseModel):
    id: int
    position: int
    name: str
    description: str
    max_score: float
    weight: float


class RubricOut(BaseModel):
    id: int
    region_id: int
    region_name: str
    name: str
    description: str
    active: bool
    items: list[RubricItemOut]


def _rubric_out(session: Session, t: RubricTemplate) -> RubricOut:
    region = session.get(Region, t.region_id)
    return RubricOut(id=t.id, region_id=t.region_id, region_name=region.name if region else "", name=t.name,
                     description=t.description, active=t.active,
                     items=[RubricItemOut(id=i.id, position=i.position, name=i.name, description=i.description,
                                          max_score=i.max_score, weight=i.weight) for i in t.items])


def _specs(items: list[RubricItemIn]) -> list[patrol.ItemSpec]:
    return [patrol.ItemSpec(i.name, i.max_score, i.weight, i.description) for i in items]


@router.get("/rubrics", response_model=list[RubricOut])
def list_rubrics(session: SessionDep, scope: ScopeDep, include_inactive: bool = False) -> list[RubricOut]:
    """Rubric templates of the caller's region, the regions above it and (admins, researchers) below it."""
    return [_rubric_out(session, t) for t in patrol.list_rubrics(session, scope, include_inactive=include_inactive)]


@router.post("/rubrics", response_model=RubricOut, status_code=201)
def create_rubric(body: RubricIn, session: SessionDep, scope: ScopeDep) -> RubricOut:
    """An admin defines a rubric for a region it manages."""
    t = patrol.create_rubric(session, scope, region_id=body.region_id, name=body.name,
                             description=body.description, items=_specs(body.items), now=clock.now())
    return _rubric_out(session, t)


@router.get("/rubrics/{template_id}", response_model=RubricOut)
def get_rubric(template_id: int, session: SessionDep, scope: ScopeDep) -> RubricOut:
    visible = {t.id for t in patrol.list_rubrics(session, scope, include_inactive=True)}
    t = patrol.require_rubric(session, template_id)
    if t.id not in visible:
        raise ApiError(403, "forbidden", "无权查看该评课量表")
    return _rubric_out(session, t)


@router.patch("/rubrics/{template_id}", response_model=RubricOut)
def update_rubric(template_id: int, body: RubricPatch, session: SessionDep, scope: ScopeDep) -> RubricOut:
    """Rename, (de)activate, or replace the items while no evaluation uses the template."""
    t = patrol.update_rubric(session, scope, template_id, name=body.name, description=body.description,
                             active=body.active, items=_specs(body.items) if body.items is not None else None)
    return _rubric_out(session, t)


@router.get("/lessons/{instance_id}/rubrics", response_model=list[RubricOut])
def lesson_rubrics(instance_id: int, session: SessionDep, user: CurrentUser, scope: ScopeDep) -> list[RubricOut]:
    """The rubrics an evaluator of this lesson may use."""
    inst = session.get(LessonInstance, instance_id)
    if inst is None:
        raise ApiError(404, "not_found", f"课次 #{instance_id} 不存在")
    patrol.require_evaluator(session, user, scope, inst)
    return [_rubric_out(session, t) for t in patrol.rubrics_for_lesson(session, inst)]


# ---------------------------------------------------------------------------- visits


class VisitOut(BaseModel):
    id: int
    researcher_id: int
    researcher_name: str
    instance_id: int
    started_at: Timestamp
    last_seen_at: Timestamp
    ended_at: Timestamp | None
    end_reason: VisitEnd | None
    duration_seconds: int | None
    """Set when the visit ended."""
    heartbeat_interval_s: int


class VisitPage(BaseModel):
    data: list[VisitOut]
    count: int


def _visit_out(session: Session, v: PatrolVisit, names: dict[int, str] | None = None) -> VisitOut:
    names = names if names is not None else _names(session, {v.researcher_id})
    return VisitOut(id=v.id, researcher_id=v.researcher_id, researcher_name=names.get(v.researcher_id, ""),
                    instance_id=v.instance_id, started_at=v.started_at, last_seen_at=v.last_seen_at,
                    ended_at=v.ended_at, end_reason=v.end_reason, duration_seconds=v.duration_seconds,
                    heartbeat_interval_s=patrol.HEARTBEAT_INTERVAL_S)


@router.post("/lessons/{instance_id}/visits", response_model=VisitOut, status_code=201)
def start_visit(instance_id: int, session: SessionDep, user: CurrentUser) -> VisitOut:
    """The researcher starts watching this lesson (their open visit of it if there is one)."""
    return _visit_out(session, patrol.start_visit(session, user, instance_id, clock.now()))


@router.post("/visits/{visit_id}/heartbeat", response_model=VisitOut)
def visit_heartbeat(visit_id: int, session: SessionDep, user: CurrentUser) -> VisitOut:
    """Still watching (every ``heartbeat_interval_s``); 409 once the visit was closed."""
    return _visit_out(session, patrol.heartbeat(session, user, visit_id, clock.now()))


@router.post("/visits/{visit_id}/end", response_model=VisitOut)
def end_visit(visit_id: int, session: SessionDep, user: CurrentUser) -> VisitOut:
    return _visit_out(session, patrol.end_visit(session, user, visit_id, clock.now()))


@router.get("/visits", response_model=VisitPage)
def list_visits(session: SessionDep, scope: ScopeDep, page: PageDep, instance_id: int | None = None,
                researcher_id: int | None = None, date_from: date | None = None,
                date_to: date | None = None) -> VisitPage:
    """A researcher's own visits; an admin's: the visits of lessons in scope."""
    rows, total = patrol.list_visits(
        session, scope, now=clock.now(), instance_id=instance_id, researcher_id=researcher_id,
        date_from=datetime.combine(date_from, time()) if date_from else None,
        date_to=datetime.combine(date_to, time()) + timedelta(days=1) if date_to else None,
        offset=page.offset, limit=page.limit)
    names = _names(session, {v.researcher_id for v in rows})
    return VisitPage(data=[_visit_out(session, v, names) for v in rows], count=total)


# ---------------------------------------------------------------------------- evaluations


class EvaluationIn(BaseModel):
    mode: EvaluationMode = EvaluationMode.live
    """Only used when the evaluation is created: ``live`` (needs a visit) or ``replay`` (a held lesson)."""
    template_id: int | None = None
    scores: dict[str, float] = Field(default_factory=dict)
    """Rubric item id → score."""
    comment: str | None = Field(default=None, max_length=5000)


class NoteIn(BaseModel):
    text: str = Field(min_length=1, max_length=2000)
    lesson_offset_seconds: int | None = Field(default=None, ge=0, le=86400)
    """Where in the lesson (replay position); unset for live: now minus the lesson's start."""


class NoteOut(BaseModel):
    id: int
    at: Timestamp
    lesson_offset_seconds: int | None
    text: str


class SnapshotOut(BaseModel):
    id: int
    taken_at: Timestamp
    lesson_offset_seconds: int | None
    width: int
    height: int
    size_bytes: int
    url: str


class ReplyIn(BaseModel):
    text: str = Field(min_length=1, max_length=2000)


class ReplyOut(BaseModel):
    id: int
    author_id: int
    author_name: str
    text: str
    created_at: Timestamp


class EvaluationOut(BaseModel):
    id: int
    instance_id: int
    lesson_title: str
    teacher_id: int
    evaluator_id: int
    evaluator_name: str
    mode: EvaluationMode
    template_id: int | None
    template_name: str | None
    scores: dict[str, float]
    total_score: float | None
    """Weighted total on 100, once every item is scored."""
    comment: str
    created_at: Timestamp
    updated_at: Timestamp
    notes: list[NoteOut]
    snapshots: list[SnapshotOut]
    replies: list[ReplyOut]


class EvaluationPage(BaseModel):
    data: list[EvaluationOut]
    count: int


def _snapshot_out(s: EvaluationSnapshot) -> SnapshotOut:
    return SnapshotOut(id=s.id, taken_at=s.taken_at, lesson_offset_seconds=s.lesson_offset_seconds, width=s.width,
                       height=s.height, size_bytes=s.size_bytes, url=f"{API}/patrol/snapshots/{s.id}")


def _evaluation_out(session: Session, e: Evaluation) -> EvaluationOut:
    inst = session.get(LessonInstance, e.instance_id)
    assert inst is not None
    names = _names(session, {e.evaluator_id, *(r.author_id for r in e.replies)})
    template = session.get(RubricTemplate, e.template_id) if e.template_id is not None else None
    return EvaluationOut(
        id=e.id, instance_id=e.instance_id, lesson_title=inst.series.title, teacher_id=inst.teacher_id,
        evaluator_id=e.evaluator_id, evaluator_name=names.get(e.evaluator_id, ""), mode=e.mode,
        template_id=e.template_id, template_name=template.name if template else None, scores=dict(e.scores or {}),
        total_score=e.total_score, comment=e.comment, created_at=e.created_at, updated_at=e.updated_at,
        notes=[NoteOut(id=n.id, at=n.at, lesson_offset_seconds=n.lesson_offset_seconds, text=n.text) for n in e.notes],
        snapshots=[_snapshot_out(s) for s in e.snapshots],
        replies=[ReplyOut(id=r.id, author_id=r.author_id, author_name=names.get(r.author_id, ""), text=r.text,
                          created_at=r.created_at) for r in e.replies],
    )


@router.get("/lessons/{instance_id}/evaluation", response_model=EvaluationOut | None)
def my_evaluation(instance_id: int, session: SessionDep, user: CurrentUser, scope: ScopeDep) -> EvaluationOut | None:
    """The caller's own evaluation of this lesson, or null while there is none."""
    inst = session.get(LessonInstance, instance_id)
    if inst is None:
        raise ApiError(404, "not_found", f"课次 #{instance_id} 不存在")
    patrol.require_evaluator(session, user, scope, inst)
    e = patrol.own_evaluation(session, user, instance_id)
    return _evaluation_out(session, e) if e is not None else None


@router.put("/lessons/{instance_id}/evaluation", response_model=EvaluationOut)
def save_evaluation(instance_id: int, body: EvaluationIn, session: SessionDep, user: CurrentUser,
                    scope: ScopeDep) -> EvaluationOut:
    """Create or update the caller's evaluation: rubric, scores, comment."""
    e = patrol.save_evaluation(session, user, scope, instance_id, mode=body.mode, template_id=body.template_id,
                               scores=body.scores, comment=body.comment, now=clock.now())
    return _evaluation_out(session, e)


@router.get("/evaluations", response_model=EvaluationPage)
def list_evaluations(session: SessionDep, user: CurrentUser, scope: ScopeDep, page: PageDep,
                     instance_id: int | None = None) -> EvaluationPage:
    """What the caller may read: their own; a teacher's lessons'; an admin's lessons in scope."""
    rows, total = patrol.readable_evaluations(session, user, scope, instance_id=instance_id, offset=page.offset,
                                              limit=page.limit)
    return EvaluationPage(data=[_evaluation_out(session, e) for e in rows], count=total)


@router.get("/evaluations/{evaluation_id}", response_model=EvaluationOut)
def get_evaluation(evaluation_id: int, session: SessionDep, user: CurrentUser, scope: ScopeDep) -> EvaluationOut:
    return _evaluation_out(session, patrol.require_readable_evaluation(session, user, scope, evaluation_id))


@router.post("/evaluations/{evaluation_id}/notes", response_model=NoteOut, status_code=201)
def add_note(evaluation_id: int, body: NoteIn, session: SessionDep, user: CurrentUser) -> NoteOut:
    n: EvaluationNote = patrol.add_note(session, user, evaluation_id, text=body.text, now=clock.now(),
                                        lesson_offset_seconds=body.lesson_offset_seconds)
    return NoteOut(id=n.id, at=n.at, lesson_offset_seconds=n.lesson_offset_seconds, text=n.text)


@router.delete("/notes/{note_id}", status_code=204)
def delete_note(note_id: int, session: SessionDep, user: CurrentUser) -> Response:
    patrol.delete_note(session, user, note_id)
    return Response(status_code=204)


@router.post("/evaluations/{evaluation_id}/replies", response_model=ReplyOut, status_code=201)
def add_reply(evaluation_id: int, body: ReplyIn, session: SessionDep, user: CurrentUser) -> ReplyOut:
    """The lesson's teacher answers an evaluation."""
    r: EvaluationReply = patrol.reply(session, user, evaluation_id, text=body.text, now=clock.now())
    return ReplyOut(id=r.id, author_id=r.author_id, author_name=user.display_name, text=r.text,
                    created_at=r.created_at)


# ---------------------------------------------------------------------------- snapshots


@router.post("/lessons/{instance_id}/snapshots", response_model=SnapshotOut, status_code=201)
def take_snapshot(instance_id: int, request: Request, session: SessionDep, user: CurrentUser, scope: ScopeDep,
                  settings: SettingsDep) -> SnapshotOut:
    """A JPEG of the main classroom's camera now, kept in the caller's evaluation of the lesson.

    Made from the newest keyframe the SFU forwarded (one frame decoded, no running decoder).
    """
    patrol.require_snapshot_taker(session, user, scope, instance_id)
    rooms = getattr(request.app.state, "rooms", None)
    room = rooms.get(instance_id) if rooms is not None else None
    media: Any = getattr(room, "media", None)
    if room is None or not hasattr(media, "snapshot"):
        raise ApiError(409, "no_media", "该课堂的音视频尚未接通，无法截图")
    try:
        got = anyio.from_thread.run(media.snapshot)
    except ChannelError as exc:
        messages = {"not_found": "主讲课堂尚未发布摄像头画面", "paused": "主讲课堂的摄像头已关闭",
                    "timeout": "暂时取不到画面，请稍后再试"}
        raise ApiError(409, "no_picture", messages.get(exc.code, "截图失败，请稍后再试")) from None
    try:
        jpeg, width, height = decode_jpeg(got["mime"], base64.b64decode(got["frame"]))
    except ValueError:
        raise ApiError(409, "no_picture", "画面解码失败，请稍后再试") from None
    snap = patrol.add_snapshot(session, user, scope, instance_id, jpeg=jpeg, width=width, height=height,
                               data_dir=settings.ensure_data_dir(), now=clock.now())
    return _snapshot_out(snap)


@router.get("/snapshots/{snapshot_id}", response_class=FileResponse,
            responses={200: {"content": {"image/jpeg": {}}}})
def get_snapshot(snapshot_id: int, session: SessionDep, user: CurrentUser, scope: ScopeDep,
                 settings: SettingsDep) -> FileResponse:
    """The JPEG, for whoever may read its evaluation."""
    _, path = patrol.readable_snapshot(session, user, scope, snapshot_id, settings.data_dir)
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


# ---------------------------------------------------------------------------- invitations


class InvitationIn(BaseModel):
    invitee_id: int
    note: str = Field(default="", max_length=500)


class InvitationOut(BaseModel):
    id: int
    instance_id: int
    lesson_title: str
    invitee_id: int
    invitee_name: str
    invited_by_id: int
    invited_by_name: str
    note: str
    created_at: Timestamp
    lesson_starts_at: Timestamp | None
    lesson_status: InstanceStatus | None
    recording_id: int | None
    """The lesson's ready recording, to evaluate it on replay (null: none, or not yet ready)."""


def _invitation_out(session: Session, inv: EvaluatorInvitation, names: dict[int, str]) -> InvitationOut:
    inst = session.get(LessonInstance, inv.instance_id)
    recording = session.scalar(select(Recording.id).where(
        Recording.instance_id == inv.instance_id, Recording.status == RecordingStatus.ready)
        .order_by(Recording.id.desc()).limit(1))
    return InvitationOut(id=inv.id, instance_id=inv.instance_id, lesson_title=inst.series.title if inst else "",
                         invitee_id=inv.invitee_id, invitee_name=names.get(inv.invitee_id, ""),
                         invited_by_id=inv.invited_by_id, invited_by_name=names.get(inv.invited_by_id, ""),
                         note=inv.note, created_at=inv.created_at, lesson_starts_at=inst.starts_at if inst else None,
                         lesson_status=inst.status if inst else None, recording_id=recording)


@router.post("/lessons/{instance_id}/invitations", response_model=InvitationOut, status_code=201)
def invite(instance_id: int, body: InvitationIn, session: SessionDep, user: CurrentUser,
           scope: ScopeDep) -> InvitationOut:
    """An admin or researcher who sees the lesson invites a researcher or a teacher to evaluate it."""
    inv = patrol.invite(session, user, scope, instance_id, invitee_id=body.invitee_id, note=body.note,
                        now=clock.now())
    return _invitation_out(session, inv, _names(session, {inv.invitee_id, inv.invited_by_id}))


class CandidateOut(BaseModel):
    """Someone the caller may invite to evaluate the lesson."""

    id: int
    display_name: str
    role: Role
    place: str
    """A researcher's region or a teacher's school."""


@router.get("/lessons/{instance_id}/invitation-candidates", response_model=list[CandidateOut])
def invitation_candidates(instance_id: int, session: SessionDep, user: CurrentUser, scope: ScopeDep,
                          q: Annotated[str | None, Query(max_length=50)] = None) -> list[CandidateOut]:
    """Researchers and teachers of the lesson's province the caller may invite (admins and researchers who see it)."""
    rows = patrol.invitation_candidates(session, user, scope, instance_id, q=q)
    return [CandidateOut(id=u.id, display_name=u.display_name, role=u.role, place=place) for u, place in rows]


@router.get("/lessons/{instance_id}/invitations", response_model=list[InvitationOut])
def lesson_invitations(instance_id: int, session: SessionDep, user: CurrentUser,
                       scope: ScopeDep) -> list[InvitationOut]:
    rows = patrol.list_invitations(session, user, scope, instance_id=instance_id)
    names = _names(session, {x for r in rows for x in (r.invitee_id, r.invited_by_id)})
    return [_invitation_out(session, r, names) for r in rows]


@router.get("/invitations", response_model=list[InvitationOut])
def my_invitations(session: SessionDep, user: CurrentUser, scope: ScopeDep) -> list[InvitationOut]:
    """The lessons the caller was invited to evaluate."""
    rows = patrol.list_invitations(session, user, scope)
    names = _names(session, {x for r in rows for x in (r.invitee_id, r.invited_by_id)})
    return [_invitation_out(session, r, names) for r in rows]


@router.delete("/invitations/{invitation_id}", status_code=204)
def revoke_invitation(invitation_id: int, session: SessionDep, user: CurrentUser, scope: ScopeDep) -> Response:
    patrol.revoke_invitation(session, user, scope, invitation_id)
    return Response(status_code=204)

