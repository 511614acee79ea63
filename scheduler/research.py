"""网络教研: teaching-research activities (教研活动), 同课异构 among them — the rules.

- **Who organizes**: a researcher (the activity belongs to their region) or a teacher — a master teacher
  leading a 教研 (the activity belongs to their school's region).  The organizer must see every lesson
  linked (``scheduler.access.require_instance``).  A 同课异构 (``same_topic``) links two to
  ``MAX_LESSONS`` lessons of one topic taught by *different* teachers; a 观课研讨 (``observation``) one or
  more.  Cancelled and missed lessons cannot be linked.
- **Members**: the organizer, the linked lessons' teachers (part ``teacher``) and the people the organizer
  adds (teachers and researchers).  Every member is invited to evaluate each linked lesson they do not
  teach (``EvaluatorInvitation``): that is what gives them the silent observer seat while it is live
  (``scheduler.joining``), its recording in the resource pool, and the 评课 panel with the region's rubric.
  Scores are those evaluations: the activity shows, per lesson, the scored totals of its members.
- **Watching**: each lesson on its own clock — live, or its recordings on the lesson's replay axis
  (``recordings.lesson_timeline``: zero at the first recording's start).  A comment is on one lesson at a
  time on that axis (``offset_s``), stamped by the server for a live lesson, or on the whole activity.
- **Taking part**: a member took part once they opened the activity (``attend``), commented or scored.
- **Closing**: the organizer (or an admin over its region) closes it with the outcome (研讨结论); scores
  and participation are kept as they were (``summary``), and a closed activity takes no new comments
  or members.
- **Reading**: members, and the admins and researchers whose region holds the activity's region.

Nothing here knows about HTTP; errors are ``scheduler.errors`` with zh-CN messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, false, func, or_, select, true
from sqlalchemy.orm import Session

from scheduler.access import Scope, require_instance
from scheduler.errors import Forbidden, Invalid, InvalidState, NotFound
from scheduler.lifecycle import room_is_open
from scheduler.models import Classroom, InstanceStatus, LessonInstance, Region, Role, School, User
from scheduler.patrol import is_lesson_teacher
from scheduler.patrol_models import Evaluation, EvaluatorInvitation
from scheduler.recordings import PLAYABLE
from scheduler.recordings_models import Recording
from scheduler.research_models import (
    ActivityKind,
    ActivityStatus,
    MemberPart,
    ResearchActivity,
    ResearchComment,
    ResearchLesson,
    ResearchMember,
)

MAX_LESSONS = 6
MAX_MEMBERS = 200
MAX_OFFSET_S = 6 * 3600.0
"""A comment's place in a lesson: at most six hours in."""
KIND_ZH = {ActivityKind.same_topic: "同课异构", ActivityKind.observation: "观课研讨"}
PART_ZH = {MemberPart.organizer: "组织者", MemberPart.teacher: "授课教师", MemberPart.participant: "参与者"}
UNLINKABLE = (InstanceStatus.cancelled, InstanceStatus.missed)


# ---------------------------------------------------------------------------- who

def _region_path(session: Session, region_id: int | None) -> str | None:
    if region_id is None:
        return None
    region = session.get(Region, region_id)
    return region.path if region else None


def _home_region(session: Session, user: User) -> int | None:
    if user.role is Role.researcher:
        return user.region_id
    if user.school_id is not None:
        school = session.get(School, user.school_id)
        return school.region_id if school else None
    return user.region_id


def _oversees(session: Session, scope: Scope, act: ResearchActivity) -> bool:
    """An admin or researcher whose region holds the activity's region (a system admin: every activity)."""
    if scope.everywhere:
        return True
    if scope.role not in (Role.admin, Role.researcher) or scope.region_path is None:
        return False
    path = _region_path(session, act.region_id)
    return path is not None and path.startswith(scope.region_path)


def _member(act: ResearchActivity, user_id: int) -> ResearchMember | None:
    return next((m for m in act.members if m.user_id == user_id), None)


def may_manage(session: Session, scope: Scope, act: ResearchActivity) -> bool:
    """Its organizer, or an admin over its region."""
    return act.organizer_id == scope.user_id or (scope.is_admin and _oversees(session, scope, act))


def require_activity(session: Session, scope: Scope, activity_id: int) -> ResearchActivity:
    act = session.get(ResearchActivity, activity_id)
    if act is None:
        raise NotFound(f"教研活动 #{activity_id} 不存在")
    if _member(act, scope.user_id) is None and not _oversees(session, scope, act):
        raise Forbidden("您不是该教研活动的成员")
    return act


def _require_manager(session: Session, scope: Scope, act: ResearchActivity) -> None:
    if not may_manage(session, scope, act):
        raise Forbidden("只有活动组织者或管理员可以执行此操作")


def _require_open(act: ResearchActivity) -> None:
    if act.status is ActivityStatus.closed:
        raise InvalidState("该教研活动已结束")


def _listing_clause(session: Session, scope: Scope) -> ColumnElement[bool]:
    mine = ResearchActivity.id.in_(select(ResearchMember.activity_id).where(ResearchMember.user_id == scope.user_id))
    if scope.everywhere:
        return true()
    if scope.role in (Role.admin, Role.researcher) and scope.region_path is not None:
        region_ids = select(Region.id).where(Region.path.startswith(scope.region_path))
        return or_(mine, ResearchActivity.region_id.in_(region_ids))
    return mine


def activities(session: Session, scope: Scope, status: ActivityStatus | None = None) -> list[ResearchActivity]:
    """What the caller organizes or is a member of, and (admins, researchers) their region's; newest first."""
    q = select(ResearchActivity).where(_listing_clause(session, scope))
    if status is not None:
        q = q.where(ResearchActivity.status == status)
    return list(session.scalars(q.order_by(ResearchActivity.created_at.desc(), ResearchActivity.id.desc()).limit(500)))


# ---------------------------------------------------------------------------- who may be added

def _addable_clause(session: Session, scope: Scope) -> ColumnElement[bool]:
    """Teachers and researchers the caller may add: teachers of schools in the caller's region (a researcher,
    an admin) or school (a teacher), researchers of regions inside the caller's or holding the caller's school."""
    if scope.everywhere:
        return User.role.in_((Role.teacher, Role.researcher))
    parts: list[ColumnElement[bool]] = []
    if scope.region_path is not None:
        inside = select(Region.id).where(Region.path.startswith(scope.region_path))
        parts.append((User.role == Role.teacher) & User.school_id.in_(select(School.id).where(School.region_id.in_(inside))))
        parts.append((User.role == Role.researcher) & User.region_id.in_(inside))
    if scope.school_id is not None:
        parts.append((User.role == Role.teacher) & (User.school_id == scope.school_id))
        own = session.scalar(select(Region.path).join(School, School.region_id == Region.id)
                             .where(School.id == scope.school_id))
        if own is not None:
            holding = select(Region.id).where(func.substr(own, 1, func.length(Region.path)) == Region.path)
            parts.append((User.role == Role.researcher) & User.region_id.in_(holding))
    return or_(*parts) if parts else false()


def candidates(session: Session, scope: Scope, q: str | None = None, *, limit: int = 20) -> list[User]:
    if scope.role not in (Role.admin, Role.researcher, Role.teacher):
        raise Forbidden("当前角色不能组织教研活动")
    query = select(User).where(User.is_active.is_(True), User.id != scope.user_id, _addable_clause(session, scope))
    if q:
        like = f"%{q.strip()}%"
        query = query.where(or_(User.display_name.like(like), User.username.like(like)))
    return list(session.scalars(query.order_by(User.display_name, User.id).limit(limit)))


def _addable(session: Session, scope: Scope, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None or not user.is_active:
        raise NotFound(f"用户 #{user_id} 不存在或已停用")
    if user.role not in (Role.teacher, Role.researcher):
        raise Invalid("只能邀请教师或教研员参加教研活动", field="member_ids")
    ok = session.scalar(select(User.id).where(User.id == user_id, _addable_clause(session, scope)))
    if ok is None:
        raise Forbidden(f"无权邀请“{user.display_name}”")
    return user


# ---------------------------------------------------------------------------- setting up

@dataclass(frozen=True)
class ActivityIn:
    kind: ActivityKind
    title: str
    topic: str
    subject: str = ""
    grade: str = ""
    description: str = ""
    instance_ids: Sequence[int] = ()
    member_ids: Sequence[int] = ()


def _invite(session: Session, act: ResearchActivity, user: User, lessons: Sequence[LessonInstance], now: datetime) -> None:
    """Invite ``user`` to evaluate each lesson they do not teach (the observer seat, the replay, 评课)."""
    for inst in lessons:
        if is_lesson_teacher(user, inst):
            continue
        exists = session.scalar(select(EvaluatorInvitation.id).where(
            EvaluatorInvitation.instance_id == inst.id, EvaluatorInvitation.invitee_id == user.id))
        if exists is None:
            session.add(EvaluatorInvitation(instance_id=inst.id, invitee_id=user.id, invited_by_id=act.organizer_id,
                                            note=f"教研活动：{act.title}", created_at=now))


def _add_member(session: Session, act: ResearchActivity, user: User, part: MemberPart, lessons: Sequence[LessonInstance],
                now: datetime) -> ResearchMember:
    member = _member(act, user.id)
    if member is None:
        member = ResearchMember(user_id=user.id, part=part, added_at=now)
        act.members.append(member)
    elif part is MemberPart.teacher and member.part is MemberPart.participant:
        member.part = part
    _invite(session, act, user, lessons, now)
    return member


def create(session: Session, user: User, scope: Scope, data: ActivityIn, *, now: datetime) -> ResearchActivity:
    if user.role not in (Role.researcher, Role.teacher):
        raise Forbidden("只有教研员和教师（名师）可以组织教研活动")
    ids = list(data.instance_ids)
    if len(set(ids)) != len(ids):
        raise Invalid("同一课次不能重复加入", field="instance_ids")
    least = 2 if data.kind is ActivityKind.same_topic else 1
    if not least <= len(ids) <= MAX_LESSONS:
        raise Invalid(f"{KIND_ZH[data.kind]}需要 {least}–{MAX_LESSONS} 节课", field="instance_ids")
    lessons = [require_instance(session, scope, i) for i in ids]
    for inst in lessons:
        if inst.status in UNLINKABLE:
            raise Invalid(f"课次 #{inst.id} 已停课或未开课，不能加入教研活动", field="instance_ids")
    if data.kind is ActivityKind.same_topic and len({i.teacher_id for i in lessons}) < len(lessons):
        raise Invalid("同课异构的每节课须由不同教师执教", field="instance_ids")
    if len(set(data.member_ids)) > MAX_MEMBERS:
        raise Invalid(f"参与者最多 {MAX_MEMBERS} 人", field="member_ids")
    added = [_addable(session, scope, uid) for uid in dict.fromkeys(data.member_ids) if uid != user.id]
    act = ResearchActivity(kind=data.kind, title=data.title.strip(), topic=data.topic.strip(), subject=data.subject.strip(),
                           grade=data.grade.strip(), description=data.description, region_id=_home_region(session, user),
                           organizer_id=user.id, status=ActivityStatus.open, outcome="", created_at=now)
    for pos, inst in enumerate(lessons):
        act.lessons.append(ResearchLesson(instance_id=inst.id, position=pos))
    session.add(act)
    _add_member(session, act, user, MemberPart.organizer, lessons, now)
    for inst in lessons:
        teacher = session.get(User, inst.teacher_id)
        if teacher is not None and teacher.id != user.id:
            _add_member(session, act, teacher, MemberPart.teacher, lessons, now)
    for other in added:
        _add_member(session, act, other, MemberPart.participant, lessons, now)
    session.flush()
    return act


def _lessons(session: Session, act: ResearchActivity) -> list[LessonInstance]:
    return [session.get(LessonInstance, link.instance_id) for link in act.lessons]  # type: ignore[misc]


def add_members(session: Session, scope: Scope, activity_id: int, user_ids: Sequence[int], *,
                now: datetime) -> ResearchActivity:
    act = require_activity(session, scope, activity_id)
    _require_manager(session, scope, act)
    _require_open(act)
    if len(act.members) + len(set(user_ids)) > MAX_MEMBERS:
        raise Invalid(f"参与者最多 {MAX_MEMBERS} 人", field="user_ids")
    lessons = _lessons(session, act)
    for uid in dict.fromkeys(user_ids):
        if _member(act, uid) is None:
            _add_member(session, act, _addable(session, scope, uid), MemberPart.participant, lessons, now)
    session.flush()
    return act


def attend(session: Session, scope: Scope, activity_id: int, *, now: datetime) -> None:
    """The caller opened the activity: a member took part (first and last time seen)."""
    act = require_activity(session, scope, activity_id)
    member = _member(act, scope.user_id)
    if member is None:
        return  # an admin or researcher overseeing it reads it without taking part
    if member.first_seen_at is None:
        member.first_seen_at = now
    member.last_seen_at = now


# ---------------------------------------------------------------------------- the discussion

def axis_zero(session: Session, inst: LessonInstance) -> datetime:
    """Zero of a lesson's clock: its first recording's start (the replay axis), else its start."""
    first = session.scalar(select(func.min(Recording.started_at)).where(Recording.instance_id == inst.id))
    return first or inst.started_at or inst.room_opened_at or inst.starts_at


def comment(session: Session, scope: Scope, activity_id: int, text: str, *, instance_id: int | None = None,
            offset_s: float | None = None, now: datetime) -> ResearchComment:
    act = require_activity(session, scope, activity_id)
    _require_open(act)
    member = _member(act, scope.user_id)
    if member is None and not may_manage(session, scope, act):
        raise Forbidden("只有活动成员可以参与研讨")
    body = text.strip()
    if not body:
        raise Invalid("研讨内容不能为空", field="text")
    if instance_id is None:
        if offset_s is not None:
            raise Invalid("时间点须对应某节课", field="offset_s")
    else:
        if instance_id not in {link.instance_id for link in act.lessons}:
            raise Invalid(f"课次 #{instance_id} 不在该教研活动中", field="instance_id")
        if offset_s is None:
            inst = session.get(LessonInstance, instance_id)
            if inst is not None and room_is_open(inst):
                offset_s = max(0.0, (now - axis_zero(session, inst)).total_seconds())
        elif not 0 <= offset_s <= MAX_OFFSET_S:
            raise Invalid("时间点超出课堂时长", field="offset_s")
    row = ResearchComment(activity_id=act.id, author_id=scope.user_id, instance_id=instance_id,
                          offset_s=None if offset_s is None else round(offset_s, 1), text=body, created_at=now)
    session.add(row)
    if member is not None:
        member.first_seen_at = member.first_seen_at or now
        member.last_seen_at = now
    session.flush()
    return row


def comments(session: Session, act: ResearchActivity, after: int = 0) -> list[ResearchComment]:
    return list(session.scalars(select(ResearchComment).where(
        ResearchComment.activity_id == act.id, ResearchComment.id > after).order_by(ResearchComment.id).limit(1000)))


# ---------------------------------------------------------------------------- what it shows

@dataclass
class LessonPane:
    instance_id: int
    position: int
    title: str
    teacher_id: int
    teacher_name: str
    school_name: str
    day: date
    starts_at: datetime
    ends_at: datetime
    status: InstanceStatus
    live: bool
    recording_id: int | None
    may_evaluate: bool
    evaluations: int
    """Scored evaluations of the lesson by the activity's members."""
    average_score: float | None


@dataclass
class MemberLine:
    user_id: int
    name: str
    role: Role
    part: MemberPart
    school_name: str
    took_part: bool
    comments: int
    scores: int


@dataclass
class ActivityView:
    activity: ResearchActivity
    organizer_name: str
    lessons: list[LessonPane]
    members: list[MemberLine]
    comments: list[ResearchComment]
    names: dict[int, str] = field(default_factory=dict)
    may_manage: bool = False


def _names(session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return dict(session.execute(select(User.id, User.display_name).where(User.id.in_(ids))).all())  # type: ignore[arg-type]


def view(session: Session, scope: Scope, act: ResearchActivity) -> ActivityView:
    """The activity as its page shows it: lessons with their scores, members with what they did, the discussion."""
    member_ids = [m.user_id for m in act.members]
    lessons = _lessons(session, act)
    evals = list(session.scalars(select(Evaluation).where(
        Evaluation.instance_id.in_([i.id for i in lessons]), Evaluation.evaluator_id.in_(member_ids)))) if lessons else []
    said = comments(session, act)
    users = {u.id: u for u in session.scalars(select(User).where(
        User.id.in_(set(member_ids) | {i.teacher_id for i in lessons} | {c.author_id for c in said})))}
    main_school = {i.id: _classroom_school(session, i.main_classroom_id) for i in lessons}
    wanted = {u.school_id for u in users.values() if u.school_id is not None} | {x for x in main_school.values() if x}
    schools = dict(session.execute(select(School.id, School.name).where(School.id.in_(wanted))).all()) if wanted else {}
    newest = {}
    for inst_id, rec_id in session.execute(
            select(Recording.instance_id, func.max(Recording.id)).where(
                Recording.instance_id.in_([i.id for i in lessons]),
                Recording.status.in_(PLAYABLE)).group_by(Recording.instance_id)).all():
        newest[inst_id] = rec_id
    me = users.get(scope.user_id) or session.get(User, scope.user_id)
    invited = set(session.scalars(select(EvaluatorInvitation.instance_id).where(
        EvaluatorInvitation.invitee_id == scope.user_id,
        EvaluatorInvitation.instance_id.in_([i.id for i in lessons])))) if lessons else set()
    panes: list[LessonPane] = []
    for pos, inst in enumerate(lessons):
        scored = [e.total_score for e in evals if e.instance_id == inst.id and e.total_score is not None]
        teacher = users.get(inst.teacher_id)
        teaches = me is not None and is_lesson_teacher(me, inst)
        panes.append(LessonPane(
            inst.id, pos, inst.series.title, inst.teacher_id, teacher.display_name if teacher else f"#{inst.teacher_id}",
            schools.get(main_school[inst.id], ""), inst.day, inst.starts_at, inst.ends_at, inst.status, room_is_open(inst),
            newest.get(inst.id), not teaches and (inst.id in invited or scope.role is Role.researcher),
            len(scored), round(sum(scored) / len(scored), 1) if scored else None))
    lines: list[MemberLine] = []
    for m in act.members:
        u = users.get(m.user_id)
        n_comments = sum(1 for c in said if c.author_id == m.user_id)
        n_scores = sum(1 for e in evals if e.evaluator_id == m.user_id and e.total_score is not None)
        lines.append(MemberLine(
            m.user_id, u.display_name if u else f"#{m.user_id}", u.role if u else Role.teacher, m.part,
            schools.get(u.school_id, "") if u and u.school_id else "",
            m.first_seen_at is not None or n_comments > 0 or n_scores > 0, n_comments, n_scores))
    names = {uid: u.display_name for uid, u in users.items()}
    organizer = users.get(act.organizer_id)
    return ActivityView(act, organizer.display_name if organizer else f"#{act.organizer_id}", panes, lines, said,
                        names, may_manage(session, scope, act))


def _classroom_school(session: Session, classroom_id: int) -> int | None:
    room = session.get(Classroom, classroom_id)
    return room.school_id if room else None


def summary(v: ActivityView) -> dict[str, Any]:
    """What is kept when the activity closes: each lesson's scores, who took part, how much was said."""
    return {
        "lessons": [{"instance_id": p.instance_id, "teacher_id": p.teacher_id, "teacher_name": p.teacher_name,
                     "evaluations": p.evaluations, "average_score": p.average_score} for p in v.lessons],
        "took_part": [m.user_id for m in v.members if m.took_part],
        "comments": len(v.comments),
    }


def close(session: Session, scope: Scope, activity_id: int, outcome: str, *, now: datetime) -> ResearchActivity:
    act = require_activity(session, scope, activity_id)
    _require_manager(session, scope, act)
    _require_open(act)
    if not outcome.strip():
        raise Invalid("请填写研讨结论", field="outcome")
    act.summary = summary(view(session, scope, act))
    act.outcome = outcome.strip()
    act.status = ActivityStatus.closed
    act.closed_at = now
    session.flush()
    return act


# ---------------------------------------------------------------------------- the file

def export_rows(v: ActivityView) -> tuple[list[str], list[list[Any]]]:
    """One CSV: the activity, then its lessons with scores, its members, its discussion (cells escaped by
    ``exports.csv_bytes``)."""
    a = v.activity
    rows: list[list[Any]] = [
        ["活动", a.title, KIND_ZH[a.kind], a.topic, f"{a.subject} {a.grade}".strip(), v.organizer_name,
         a.created_at.strftime("%Y-%m-%d %H:%M"), "已结束" if a.status is ActivityStatus.closed else "进行中", a.outcome],
    ]
    for p in v.lessons:
        rows.append(["课例", p.title, p.teacher_name, p.school_name, p.starts_at.strftime("%Y-%m-%d %H:%M"),
                     p.evaluations, p.average_score, p.recording_id, ""])
    for m in v.members:
        rows.append(["成员", m.name, PART_ZH[m.part], m.school_name, "是" if m.took_part else "否", m.comments, m.scores,
                     "", ""])
    titles = {p.instance_id: f"{p.teacher_name}《{p.title}》" for p in v.lessons}
    for c in v.comments:
        at = "" if c.offset_s is None else f"{int(c.offset_s) // 60:02d}:{int(c.offset_s) % 60:02d}"
        rows.append(["研讨", v.names.get(c.author_id, f"#{c.author_id}"), titles.get(c.instance_id or -1, "整体"), at,
                     c.created_at.strftime("%Y-%m-%d %H:%M"), c.text, "", "", ""])
    headers = ["类别", "名称/姓名", "类型/教师/身份", "课题/学校/课例", "学科/时间", "组织者/评分数/发言数",
               "时间/平均分/评分数", "状态/录播ID", "研讨结论"]
    return headers, rows


# ---------------------------------------------------------------------------- for the teacher's record

@dataclass
class TeacherActivity:
    id: int
    title: str
    kind: ActivityKind
    part: MemberPart
    status: ActivityStatus
    created_at: datetime
    took_part: bool


def teacher_activities(session: Session, teacher_id: int, date_from: date, date_to: date) -> list[TeacherActivity]:
    """The activities ``teacher_id`` was in, set up within the range (both days inclusive)."""
    start = datetime.combine(date_from, time.min)
    end = datetime.combine(date_to + timedelta(days=1), time.min)
    rows = session.execute(
        select(ResearchActivity, ResearchMember).join(ResearchMember, ResearchMember.activity_id == ResearchActivity.id)
        .where(ResearchMember.user_id == teacher_id, ResearchActivity.created_at >= start,
               ResearchActivity.created_at < end)
        .order_by(ResearchActivity.created_at, ResearchActivity.id)).all()
    spoke = set(session.scalars(select(ResearchComment.activity_id).where(
        ResearchComment.author_id == teacher_id,
        ResearchComment.activity_id.in_([a.id for a, _ in rows])))) if rows else set()
    return [TeacherActivity(a.id, a.title, a.kind, m.part, a.status, a.created_at,
                            m.first_seen_at is not None or a.id in spoke) for a, m in rows]
