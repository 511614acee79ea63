"""/research: 网络教研 activities (同课异构, 观课研讨) — set up, members, the discussion, closing, the file.

Who may do what is decided in ``scheduler.research``; this router maps bodies and answers.  Scores are the
members' evaluations (``/patrol/lessons/{id}/evaluation``), watched live through the observer seat and
replayed through ``/recordings`` — both opened to members by the evaluator invitations the activity makes.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler import clock, research
from scheduler.access import Scope
from scheduler.exports import csv_bytes
from scheduler.models import InstanceStatus, Role, School, User
from scheduler.research_models import ActivityKind, ActivityStatus, MemberPart, ResearchActivity, ResearchComment
from server.api.deps import CurrentUser, SessionDep, StaffScope
from server.api.times import Timestamp

router = APIRouter(prefix="/research", tags=["research"])


class ActivityIn(BaseModel):
    kind: ActivityKind
    title: str = Field(min_length=1, max_length=100)
    topic: str = Field(min_length=1, max_length=100, description="课题")
    subject: str = Field(default="", max_length=50)
    grade: str = Field(default="", max_length=50)
    description: str = Field(default="", max_length=4000)
    instance_ids: list[int] = Field(min_length=1, max_length=research.MAX_LESSONS)
    member_ids: list[int] = Field(default_factory=list, max_length=research.MAX_MEMBERS)


class MembersIn(BaseModel):
    user_ids: list[int] = Field(min_length=1, max_length=research.MAX_MEMBERS)


class CommentIn(BaseModel):
    text: str = Field(min_length=1, max_length=2000)
    instance_id: int | None = None
    offset_s: float | None = Field(default=None, description="该课回放时间轴上的秒数；直播中的课省略，由服务器记时")


class CloseIn(BaseModel):
    outcome: str = Field(min_length=1, max_length=8000, description="研讨结论")


class _ActivityHead(BaseModel):
    id: int
    title: str
    topic: str
    kind: ActivityKind
    subject: str
    grade: str
    status: ActivityStatus
    organizer_id: int
    organizer_name: str
    created_at: Timestamp
    closed_at: Timestamp | None


class ActivityBrief(_ActivityHead):
    lessons: int
    members: int


class ActivityList(BaseModel):
    data: list[ActivityBrief]
    count: int


class LessonPaneOut(BaseModel):
    instance_id: int
    position: int
    title: str
    teacher_id: int
    teacher_name: str
    school_name: str
    day: date
    starts_at: Timestamp
    ends_at: Timestamp
    status: InstanceStatus
    live: bool
    recording_id: int | None
    may_evaluate: bool
    evaluations: int
    average_score: float | None


class MemberOut(BaseModel):
    user_id: int
    name: str
    role: Role
    part: MemberPart
    school_name: str
    took_part: bool
    comments: int
    scores: int


class CommentOut(BaseModel):
    id: int
    author_id: int
    author_name: str
    instance_id: int | None
    offset_s: float | None
    text: str
    created_at: Timestamp


class ActivityOut(_ActivityHead):
    description: str
    outcome: str
    may_manage: bool
    lessons: list[LessonPaneOut]
    members: list[MemberOut]
    comments: list[CommentOut]


class CandidateOut(BaseModel):
    id: int
    name: str
    role: Role
    school_name: str


def _names(session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return dict(session.execute(select(User.id, User.display_name).where(User.id.in_(ids))).all())  # type: ignore[arg-type]


def _brief(a: ResearchActivity, organizer_name: str) -> ActivityBrief:
    return ActivityBrief(id=a.id, title=a.title, topic=a.topic, kind=a.kind, subject=a.subject, grade=a.grade,
                         status=a.status, organizer_id=a.organizer_id, organizer_name=organizer_name,
                         lessons=len(a.lessons), members=len(a.members), created_at=a.created_at, closed_at=a.closed_at)


def _comment(c: ResearchComment, names: dict[int, str]) -> CommentOut:
    return CommentOut(id=c.id, author_id=c.author_id, author_name=names.get(c.author_id, f"#{c.author_id}"),
                      instance_id=c.instance_id, offset_s=c.offset_s, text=c.text, created_at=c.created_at)


def _out(session: Session, scope: Scope, act: ResearchActivity) -> ActivityOut:
    v = research.view(session, scope, act)
    a = v.activity
    return ActivityOut(
        id=a.id, title=a.title, topic=a.topic, kind=a.kind, subject=a.subject, grade=a.grade, status=a.status,
        organizer_id=a.organizer_id, organizer_name=v.organizer_name, created_at=a.created_at, closed_at=a.closed_at,
        description=a.description, outcome=a.outcome, may_manage=v.may_manage,
        lessons=[LessonPaneOut(**p.__dict__) for p in v.lessons],
        members=[MemberOut(**m.__dict__) for m in v.members],
        comments=[_comment(c, v.names) for c in v.comments])


@router.get("/activities", response_model=ActivityList)
def list_activities(session: SessionDep, scope: StaffScope, status: ActivityStatus | None = None) -> ActivityList:
    """The activities the caller organizes or is a member of; admins and researchers also their region's."""
    rows = research.activities(session, scope, status)
    names = _names(session, {a.organizer_id for a in rows})
    return ActivityList(data=[_brief(a, names.get(a.organizer_id, "")) for a in rows], count=len(rows))


@router.post("/activities", response_model=ActivityOut, status_code=201)
def create_activity(body: ActivityIn, session: SessionDep, scope: StaffScope, user: CurrentUser) -> ActivityOut:
    """A researcher or a (master) teacher sets up an activity linking lessons they may see; the lessons'
    teachers and ``member_ids`` become members, each invited to evaluate the lessons they do not teach."""
    act = research.create(session, user, scope, research.ActivityIn(
        kind=body.kind, title=body.title, topic=body.topic, subject=body.subject, grade=body.grade,
        description=body.description, instance_ids=body.instance_ids, member_ids=body.member_ids), now=clock.now())
    return _out(session, scope, act)


@router.get("/activities/{activity_id}", response_model=ActivityOut)
def get_activity(activity_id: int, session: SessionDep, scope: StaffScope) -> ActivityOut:
    return _out(session, scope, research.require_activity(session, scope, activity_id))


@router.post("/activities/{activity_id}/members", response_model=ActivityOut)
def add_members(activity_id: int, body: MembersIn, session: SessionDep, scope: StaffScope) -> ActivityOut:
    act = research.add_members(session, scope, activity_id, body.user_ids, now=clock.now())
    return _out(session, scope, act)


@router.post("/activities/{activity_id}/attend", status_code=204)
def attend(activity_id: int, session: SessionDep, scope: StaffScope) -> Response:
    """The caller opened the activity (a member: took part)."""
    research.attend(session, scope, activity_id, now=clock.now())
    return Response(status_code=204)


@router.get("/activities/{activity_id}/comments", response_model=list[CommentOut])
def list_comments(activity_id: int, session: SessionDep, scope: StaffScope,
                  after: Annotated[int, Query(ge=0, description="只返回此 id 之后的研讨")] = 0) -> list[CommentOut]:
    act = research.require_activity(session, scope, activity_id)
    rows = research.comments(session, act, after)
    names = _names(session, {c.author_id for c in rows})
    return [_comment(c, names) for c in rows]


@router.post("/activities/{activity_id}/comments", response_model=CommentOut, status_code=201)
def add_comment(activity_id: int, body: CommentIn, session: SessionDep, scope: StaffScope) -> CommentOut:
    row = research.comment(session, scope, activity_id, body.text, instance_id=body.instance_id,
                           offset_s=body.offset_s, now=clock.now())
    return _comment(row, _names(session, {row.author_id}))


@router.post("/activities/{activity_id}/close", response_model=ActivityOut)
def close_activity(activity_id: int, body: CloseIn, session: SessionDep, scope: StaffScope) -> ActivityOut:
    """The organizer (or an admin over its region) ends it with the outcome; scores and participation are kept."""
    act = research.close(session, scope, activity_id, body.outcome, now=clock.now())
    return _out(session, scope, act)


@router.get("/activities/{activity_id}/export", responses={200: {"content": {"text/csv": {}}}})
def export_activity(activity_id: int, session: SessionDep, scope: StaffScope) -> Response:
    """The activity as CSV: lessons with their scores, members with what they did, the discussion."""
    act = research.require_activity(session, scope, activity_id)
    headers, rows = research.export_rows(research.view(session, scope, act))
    return Response(csv_bytes(headers, rows), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="sanke-research-{activity_id}.csv"', "Cache-Control": "private"})


@router.get("/candidates", response_model=list[CandidateOut])
def list_candidates(session: SessionDep, scope: StaffScope,
                    q: Annotated[str | None, Query(max_length=50)] = None) -> list[CandidateOut]:
    """Teachers and researchers the caller may add to an activity."""
    users = research.candidates(session, scope, q)
    schools = dict(session.execute(select(School.id, School.name).where(
        School.id.in_({u.school_id for u in users if u.school_id is not None}))).all()) if users else {}
    return [CandidateOut(id=u.id, name=u.display_name, role=u.role, school_name=schools.get(u.school_id, "") if u.school_id
                         else "") for u in users]
