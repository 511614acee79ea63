"""Patrol (巡课) and lesson evaluation (评课): the rules of the patrol record.

- **Rubric templates** (评课量表) are defined by an admin for a region (a bureau
  admin for its region or one below it, a system admin anywhere) and apply to
  lessons given or received in that region's subtree.  The total of an
  evaluation is the weighted share of the maximum, on 100:
  ``100 · Σ wᵢ·sᵢ/maxᵢ / Σ wᵢ``, and exists once every item is scored.
- **Visits**: a researcher with an observer seat (a researcher of the lesson's
  region, or anyone invited to evaluate it) opens a visit when they start
  watching a lesson whose room is open, the watching page heartbeats, and
  closes it on leave.  A visit left open (page killed, network gone) is closed
  at its last heartbeat once it has been silent for ``VISIT_TIMEOUT`` or once
  its lesson's room has closed (``close_stale_visits``, run on every visit
  request and by anyone who wants fresh figures).
- **Evaluations**: one per evaluator and lesson.  Evaluators are the
  researchers of the lesson's region and anyone invited to it (a researcher or
  a teacher, never the lesson's own teacher).  A ``live`` evaluation needs a
  visit of the evaluator to that lesson; a ``replay`` one (评课 on the
  recording) needs the lesson to have been held.  Only its evaluator edits an
  evaluation; admins who see the lesson and the lesson's teacher read it, and
  the teacher may reply to it.
- **Invitations**: an admin or a researcher who sees the lesson invites other
  evaluators to it.

Nothing here knows about HTTP; errors are ``scheduler.errors`` with zh-CN messages.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import ColumnElement, false, func, or_, select, true
from sqlalchemy.orm import Session

from scheduler import webhooks
from scheduler.access import Scope, instance_clause, require_instance
from scheduler.errors import Forbidden, Invalid, InvalidState, NotFound
from scheduler.joining import seat_for
from scheduler.lifecycle import room_is_open
from scheduler.models import (
    Classroom,
    InstanceStatus,
    LessonInstance,
    LessonKind,
    LessonSeries,
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
    RubricItem,
    RubricTemplate,
    VisitEnd,
)
from scheduler.queries import InstanceFilter, instance_query

VISIT_TIMEOUT = timedelta(seconds=90)
"""An open visit without a heartbeat this long is closed at its last heartbeat."""
HEARTBEAT_INTERVAL_S = 30
"""How often a watching page says it is still there (a third of the timeout)."""
MAX_SNAPSHOT_BYTES = 2 * 1024 * 1024
"""Largest snapshot JPEG kept."""
MAX_SNAPSHOTS_PER_EVALUATION = 50
SNAPSHOT_DIR = Path("patrol") / "snapshots"
"""Under the data dir."""


# ---------------------------------------------------------------------------- helpers


def _lesson_region_paths(session: Session, inst: LessonInstance) -> set[str]:
    """Region paths of the main school and of every receiving school of a lesson."""
    rooms = [inst.main_classroom_id, *(r.classroom_id for r in inst.series.receivers)]
    return set(session.scalars(
        select(Region.path).join(School, School.region_id == Region.id)
        .join(Classroom, Classroom.school_id == School.id).where(Classroom.id.in_(rooms))
    ).all())


def _get_instance(session: Session, instance_id: int) -> LessonInstance:
    inst = session.get(LessonInstance, instance_id)
    if inst is None:
        raise NotFound(f"课次 #{instance_id} 不存在")
    return inst


def is_lesson_teacher(user: User, inst: LessonInstance) -> bool:
    return user.role is Role.teacher and user.id in (inst.teacher_id, inst.series.main_teacher_id)


def _sees(session: Session, scope: Scope, instance_id: int) -> bool:
    try:
        require_instance(session, scope, instance_id)
    except Forbidden:
        return False
    return True


def _region_admin(session: Session, scope: Scope, region_id: int) -> Region:
    """The admin manages ``region_id``: a system admin, or a bureau admin of it or a region above it."""
    if not scope.is_admin:
        raise Forbidden("只有管理员可以管理评课量表")
    region = session.get(Region, region_id)
    if region is None:
        raise NotFound(f"区域 #{region_id} 不存在")
    if scope.everywhere or (scope.region_path is not None and region.path.startswith(scope.region_path)):
        return region
    raise Forbidden("无权管理该区域的评课量表")


# ---------------------------------------------------------------------------- rubric templates


@dataclass(frozen=True)
class ItemSpec:
    name: str
    max_score: float
    weight: float = 1.0
    description: str = ""


def total_score(items: Sequence[RubricItem], scores: dict[str, float]) -> float | None:
    """Weighted total on 100, or None while an item is unscored."""
    if not items or any(str(i.id) not in scores for i in items):
        return None
    weights = sum(i.weight for i in items)
    value = sum(i.weight * float(scores[str(i.id)]) / i.max_score for i in items) / weights * 100
    return round(value, 1)


def _items(specs: Sequence[ItemSpec]) -> list[RubricItem]:
    if not specs:
        raise Invalid("评课量表至少需要一个评分项", field="items")
    names = [s.name.strip() for s in specs]
    if any(not n for n in names):
        raise Invalid("评分项名称不能为空", field="items")
    if len(set(names)) != len(names):
        raise Invalid("评分项名称不能重复", field="items")
    for s in specs:
        if not (s.max_score > 0 and math.isfinite(s.max_score)) or not (s.weight > 0 and math.isfinite(s.weight)):
            raise Invalid(f"评分项“{s.name}”的满分和权重必须大于 0", field="items")
    return [RubricItem(position=i + 1, name=n, description=s.description, max_score=float(s.max_score),
                       weight=float(s.weight)) for i, (n, s) in enumerate(zip(names, specs, strict=True))]


def rubric_name(name: str, region: Region) -> str:
    """A rubric's own name: every list shows the region beside it (``名称（区域）``), so a name that already
    ends with its region in brackets would read twice (``专递课堂评课表（清河市）（清河市）``); that suffix goes."""
    name = name.strip()
    for suffix in (f"（{region.name}）", f"({region.name})"):
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)].rstrip()
    if not name:
        raise Invalid("评课量表名称不能为空", field="name")
    return name


def create_rubric(session: Session, scope: Scope, *, region_id: int, name: str, items: Sequence[ItemSpec],
                  description: str = "", now: datetime) -> RubricTemplate:
    region = _region_admin(session, scope, region_id)
    template = RubricTemplate(region_id=region_id, name=rubric_name(name, region), description=description, active=True,
                              created_by_id=scope.user_id, created_at=now)
    template.items = _items(items)
    session.add(template)
    session.flush()
    return template


def require_rubric(session: Session, template_id: int) -> RubricTemplate:
    template = session.get(RubricTemplate, template_id)
    if template is None:
        raise NotFound(f"评课量表 #{template_id} 不存在")
    return template


def update_rubric(session: Session, scope: Scope, template_id: int, *, name: str | None = None,
                  description: str | None = None, active: bool | None = None,
                  items: Sequence[ItemSpec] | None = None) -> RubricTemplate:
    """Rename, describe, (de)activate; the items only while no evaluation uses the template."""
    template = require_rubric(session, template_id)
    region = _region_admin(session, scope, template.region_id)
    if items is not None:
        used = session.scalar(select(func.count()).select_from(Evaluation)
                              .where(Evaluation.template_id == template.id))
        if used:
            raise InvalidState("已有评课记录使用该量表，不能修改评分项；请停用它并新建一份")
        template.items = _items(items)
    if name is not None:
        template.name = rubric_name(name, region)
    if description is not None:
        template.description = description
    if active is not None:
        template.active = active
    session.flush()
    return template


def _visible_rubric_clause(session: Session, scope: Scope) -> ColumnElement[bool]:
    """Templates of the caller's region, of regions above it (they apply there) and below it."""
    if scope.everywhere:
        return true()
    path = scope.region_path
    if path is None and scope.school_id is not None:
        path = session.scalar(select(Region.path).join(School, School.region_id == Region.id)
                              .where(School.id == scope.school_id))
    if path is None:
        return false()
    ancestors = [p for p in _prefixes(path)]
    parts: list[ColumnElement[bool]] = [Region.path.in_(ancestors)]
    if scope.region_path is not None:
        parts.append(Region.path.startswith(scope.region_path))
    return or_(*parts)


def _prefixes(path: str) -> list[str]:
    """"/1/4/9/" → ["/1/", "/1/4/", "/1/4/9/"]."""
    ids = [p for p in path.strip("/").split("/") if p]
    return ["/" + "/".join(ids[: i + 1]) + "/" for i in range(len(ids))]


def list_rubrics(session: Session, scope: Scope, *, include_inactive: bool = False) -> Sequence[RubricTemplate]:
    if scope.role not in (Role.admin, Role.researcher, Role.teacher):
        raise Forbidden("当前角色无权查看评课量表")
    stmt = (select(RubricTemplate).join(Region, Region.id == RubricTemplate.region_id)
            .where(_visible_rubric_clause(session, scope)).order_by(RubricTemplate.id))
    if not include_inactive:
        stmt = stmt.where(RubricTemplate.active.is_(True))
    return session.scalars(stmt).all()


def rubrics_for_lesson(session: Session, inst: LessonInstance) -> Sequence[RubricTemplate]:
    """Active templates of a region that holds the lesson's main or a receiving school."""
    ancestors = sorted({p for path in _lesson_region_paths(session, inst) for p in _prefixes(path)})
    return session.scalars(
        select(RubricTemplate).join(Region, Region.id == RubricTemplate.region_id)
        .where(RubricTemplate.active.is_(True), Region.path.in_(ancestors)).order_by(RubricTemplate.id)
    ).all()


# ---------------------------------------------------------------------------- visits


def _close(visit: PatrolVisit, at: datetime, reason: VisitEnd) -> None:
    at = max(at, visit.started_at)
    visit.ended_at = at
    visit.end_reason = reason
    visit.duration_seconds = int((at - visit.started_at).total_seconds())


def close_stale_visits(session: Session, now: datetime) -> int:
    """Close every open visit silent for ``VISIT_TIMEOUT``, or whose lesson's room has closed, at its
    last heartbeat. Returns how many were closed."""
    rows = session.execute(
        select(PatrolVisit, LessonInstance.room_closed_at)
        .join(LessonInstance, LessonInstance.id == PatrolVisit.instance_id)
        .where(PatrolVisit.ended_at.is_(None),
               or_(PatrolVisit.last_seen_at < now - VISIT_TIMEOUT, LessonInstance.room_closed_at.is_not(None)))
    ).all()
    for visit, room_closed_at in rows:
        if room_closed_at is not None and visit.last_seen_at >= now - VISIT_TIMEOUT:
            _close(visit, min(visit.last_seen_at, room_closed_at), VisitEnd.room_closed)
        else:
            _close(visit, visit.last_seen_at, VisitEnd.timeout)
    session.flush()
    return len(rows)


def start_visit(session: Session, user: User, instance_id: int, now: datetime) -> PatrolVisit:
    """The researcher starts watching: their open visit of this lesson, or a new one."""
    close_stale_visits(session, now)
    if user.role not in (Role.researcher, Role.teacher):
        raise Forbidden("只有教研员和受邀评课人可以巡课")
    inst = _get_instance(session, instance_id)
    if seat_for(session, user, inst).lesson_role != "observer":
        raise Forbidden("只能巡查本区域或受邀评价的课堂")
    if not room_is_open(inst):
        raise InvalidState("该课堂尚未开放或已关闭，不能巡课")
    open_visit = session.scalar(select(PatrolVisit).where(
        PatrolVisit.researcher_id == user.id, PatrolVisit.instance_id == instance_id, PatrolVisit.ended_at.is_(None)))
    if open_visit is not None:
        open_visit.last_seen_at = now
        return open_visit
    visit = PatrolVisit(researcher_id=user.id, instance_id=instance_id, started_at=now, last_seen_at=now)
    session.add(visit)
    session.flush()
    return visit


def _own_visit(session: Session, user: User, visit_id: int) -> PatrolVisit:
    visit = session.get(PatrolVisit, visit_id)
    if visit is None:
        raise NotFound(f"巡课记录 #{visit_id} 不存在")
    if visit.researcher_id != user.id:
        raise Forbidden("只能操作自己的巡课记录")
    return visit


def heartbeat(session: Session, user: User, visit_id: int, now: datetime) -> PatrolVisit:
    visit = _own_visit(session, user, visit_id)
    close_stale_visits(session, now)
    if visit.ended_at is not None:
        raise InvalidState("该巡课记录已结束，请重新开始巡课")
    visit.last_seen_at = now
    return visit


def end_visit(session: Session, user: User, visit_id: int, now: datetime) -> PatrolVisit:
    """The researcher left. Ending an ended visit changes nothing."""
    visit = _own_visit(session, user, visit_id)
    if visit.ended_at is None:
        visit.last_seen_at = now
        _close(visit, now, VisitEnd.left)
    session.flush()
    return visit


def list_visits(session: Session, scope: Scope, *, now: datetime, instance_id: int | None = None,
                researcher_id: int | None = None, date_from: datetime | None = None,
                date_to: datetime | None = None, offset: int = 0,
                limit: int = 100) -> tuple[Sequence[PatrolVisit], int]:
    """A researcher's own visits; an admin's: visits of lessons they see."""
    close_stale_visits(session, now)
    stmt = select(PatrolVisit)
    if scope.role is Role.researcher:
        if researcher_id is not None and researcher_id != scope.user_id:
            raise Forbidden("教研员只能查看自己的巡课记录")
        stmt = stmt.where(PatrolVisit.researcher_id == scope.user_id)
    elif scope.is_admin:
        stmt = (stmt.join(LessonInstance, LessonInstance.id == PatrolVisit.instance_id)
                .join(LessonSeries, LessonSeries.id == LessonInstance.series_id).where(instance_clause(scope)))
    else:
        raise Forbidden("当前角色无权查看巡课记录")
    if instance_id is not None:
        stmt = stmt.where(PatrolVisit.instance_id == instance_id)
    if researcher_id is not None:
        stmt = stmt.where(PatrolVisit.researcher_id == researcher_id)
    if date_from is not None:
        stmt = stmt.where(PatrolVisit.started_at >= date_from)
    if date_to is not None:
        stmt = stmt.where(PatrolVisit.started_at < date_to)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.scalars(stmt.order_by(PatrolVisit.started_at.desc(), PatrolVisit.id.desc())
                           .offset(offset).limit(limit)).all()
    return rows, int(total)


# ---------------------------------------------------------------------------- live lessons for the wall


@dataclass(frozen=True)
class LiveFilter:
    school_id: int | None = None
    kind: LessonKind | None = None
    subject: str | None = None
    grade: str | None = None


def live_lessons(session: Session, scope: Scope, f: LiveFilter) -> tuple[list[LessonInstance], list[LessonInstance]]:
    """(live lessons the caller may patrol that pass the filter, all of them): the wall and its facets."""
    if scope.role not in (Role.researcher, Role.admin):
        raise Forbidden("只有教研员和管理员可以查看巡课墙")
    stmt = instance_query(session, scope, InstanceFilter(status=InstanceStatus.live))
    everything = list(session.scalars(stmt.order_by(LessonInstance.starts_at, LessonInstance.id)).unique())
    if f.school_id is not None:
        schools = _schools_of(session, everything)
        everything_f = [i for i in everything if f.school_id in schools.get(i.id, set())]
    else:
        everything_f = everything
    chosen = [i for i in everything_f
              if (f.kind is None or i.series.kind == f.kind)
              and (f.subject is None or i.series.subject == f.subject)
              and (f.grade is None or i.series.grade == f.grade)]
    return chosen, everything


def _schools_of(session: Session, insts: Sequence[LessonInstance]) -> dict[int, set[int]]:
    """Instance id → ids of the schools that give or receive it."""
    out: dict[int, set[int]] = {}
    rooms = {i.main_classroom_id for i in insts} | {r.classroom_id for i in insts for r in i.series.receivers}
    school_of = dict(session.execute(select(Classroom.id, Classroom.school_id)
                                     .where(Classroom.id.in_(rooms))).all()) if rooms else {}
    for i in insts:
        ids = {i.main_classroom_id, *(r.classroom_id for r in i.series.receivers)}
        out[i.id] = {school_of[c] for c in ids if c in school_of}
    return out


# ---------------------------------------------------------------------------- evaluations


def _invited(session: Session, user_id: int, instance_id: int) -> bool:
    return session.scalar(select(EvaluatorInvitation.id).where(
        EvaluatorInvitation.instance_id == instance_id, EvaluatorInvitation.invitee_id == user_id)) is not None


def require_evaluator(session: Session, user: User, scope: Scope, inst: LessonInstance) -> None:
    """The user may evaluate this lesson: a researcher of its region, or someone invited to it."""
    if is_lesson_teacher(user, inst):
        raise Forbidden("授课教师不能评价自己的课")
    if user.role is Role.researcher and _sees(session, scope, inst.id):
        return
    if user.role in (Role.researcher, Role.teacher) and _invited(session, user.id, inst.id):
        return
    raise Forbidden("只有本区域教研员或受邀评课人可以评价该课")


def _check_mode(session: Session, user: User, inst: LessonInstance, mode: EvaluationMode) -> None:
    if mode is EvaluationMode.live:
        visited = session.scalar(select(PatrolVisit.id).where(
            PatrolVisit.instance_id == inst.id, PatrolVisit.researcher_id == user.id).limit(1))
        if visited is None:
            raise InvalidState("现场评课需要先进入该课堂巡课；课后可在录像回放中评课")
    elif inst.status is not InstanceStatus.held:
        raise InvalidState("该课尚未完成授课，不能回放评课")


def _offset(inst: LessonInstance, at: datetime) -> int:
    start = inst.started_at or inst.starts_at
    return max(0, int((at - start).total_seconds()))


def own_evaluation(session: Session, user: User, instance_id: int) -> Evaluation | None:
    return session.scalar(select(Evaluation).where(Evaluation.instance_id == instance_id,
                                                   Evaluation.evaluator_id == user.id))


def open_evaluation(session: Session, user: User, scope: Scope, instance_id: int, *, mode: EvaluationMode,
                    now: datetime) -> Evaluation:
    """The user's evaluation of this lesson, created (in ``mode``) when there is none yet."""
    inst = _get_instance(session, instance_id)
    require_evaluator(session, user, scope, inst)
    evaluation = own_evaluation(session, user, instance_id)
    if evaluation is not None:
        return evaluation
    _check_mode(session, user, inst, mode)
    evaluation = Evaluation(instance_id=instance_id, evaluator_id=user.id, mode=mode, scores={}, comment="",
                            created_at=now, updated_at=now)
    session.add(evaluation)
    session.flush()
    return evaluation


def save_evaluation(session: Session, user: User, scope: Scope, instance_id: int, *, mode: EvaluationMode,
                    template_id: int | None, scores: dict[str, float], comment: str | None,
                    now: datetime) -> Evaluation:
    """Create or update the user's evaluation of a lesson: rubric, scores (item id → score), comment."""
    evaluation = open_evaluation(session, user, scope, instance_id, mode=mode, now=now)
    inst = _get_instance(session, instance_id)
    if template_id is not None:
        template = require_rubric(session, template_id)
        if template.id != evaluation.template_id:
            if not template.active:
                raise Invalid("该评课量表已停用", field="template_id")
            if template not in rubrics_for_lesson(session, inst):
                raise Invalid("该评课量表不适用于本课所在区域", field="template_id")
        items = {str(i.id): i for i in template.items}
        clean: dict[str, float] = {}
        for key, value in scores.items():
            item = items.get(str(key))
            if item is None:
                raise Invalid(f"评分项 #{key} 不属于量表“{template.name}”", field="scores")
            if not (0 <= float(value) <= item.max_score):
                raise Invalid(f"“{item.name}”的得分须在 0–{item.max_score:g} 之间", field="scores")
            clean[str(key)] = float(value)
        evaluation.template_id = template.id
        evaluation.scores = clean
        evaluation.total_score = total_score(template.items, clean)
    elif scores:
        raise Invalid("打分前请先选择评课量表", field="template_id")
    if comment is not None:
        evaluation.comment = comment
    evaluation.updated_at = now
    session.flush()
    if template_id is not None or comment is not None:  # a save, not the empty evaluation notes start
        webhooks.evaluation_submitted(session, evaluation, now)
    return evaluation


def _evaluation(session: Session, evaluation_id: int) -> Evaluation:
    evaluation = session.get(Evaluation, evaluation_id)
    if evaluation is None:
        raise NotFound(f"评课记录 #{evaluation_id} 不存在")
    return evaluation


def require_own_evaluation(session: Session, user: User, evaluation_id: int) -> Evaluation:
    evaluation = _evaluation(session, evaluation_id)
    if evaluation.evaluator_id != user.id:
        raise Forbidden("只能修改自己的评课记录")
    return evaluation


def require_readable_evaluation(session: Session, user: User, scope: Scope, evaluation_id: int) -> Evaluation:
    """Its evaluator, an admin who sees the lesson, or the lesson's teacher."""
    evaluation = _evaluation(session, evaluation_id)
    if evaluation.evaluator_id == user.id:
        return evaluation
    inst = _get_instance(session, evaluation.instance_id)
    if is_lesson_teacher(user, inst):
        return evaluation
    if scope.is_admin and _sees(session, scope, inst.id):
        return evaluation
    raise Forbidden("无权查看该评课记录")


def readable_evaluations(session: Session, user: User, scope: Scope, *, instance_id: int | None = None,
                         offset: int = 0, limit: int = 100) -> tuple[Sequence[Evaluation], int]:
    mine = Evaluation.evaluator_id == user.id
    taught = or_(LessonInstance.teacher_id == user.id, LessonSeries.main_teacher_id == user.id)
    if scope.is_admin:
        who: ColumnElement[bool] = or_(mine, instance_clause(scope))
    elif user.role is Role.teacher:
        who = or_(mine, taught)
    elif user.role is Role.researcher:
        who = mine
    else:
        raise Forbidden("当前角色无权查看评课记录")
    stmt = (select(Evaluation).join(LessonInstance, LessonInstance.id == Evaluation.instance_id)
            .join(LessonSeries, LessonSeries.id == LessonInstance.series_id).where(who))
    if instance_id is not None:
        stmt = stmt.where(Evaluation.instance_id == instance_id)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.scalars(stmt.order_by(Evaluation.updated_at.desc(), Evaluation.id.desc())
                           .offset(offset).limit(limit)).all()
    return rows, int(total)


def add_note(session: Session, user: User, evaluation_id: int, *, text: str, now: datetime,
             lesson_offset_seconds: int | None = None) -> EvaluationNote:
    evaluation = require_own_evaluation(session, user, evaluation_id)
    text = text.strip()
    if not text:
        raise Invalid("记录内容不能为空", field="text")
    inst = _get_instance(session, evaluation.instance_id)
    note = EvaluationNote(at=now, text=text,
                          lesson_offset_seconds=lesson_offset_seconds if lesson_offset_seconds is not None
                          else (_offset(inst, now) if evaluation.mode is EvaluationMode.live else None))
    evaluation.notes.append(note)
    evaluation.updated_at = now
    session.flush()
    return note


def delete_note(session: Session, user: User, note_id: int) -> None:
    note = session.get(EvaluationNote, note_id)
    if note is None:
        raise NotFound(f"评课记录条目 #{note_id} 不存在")
    evaluation = require_own_evaluation(session, user, note.evaluation_id)
    evaluation.notes.remove(note)
    session.flush()


def reply(session: Session, user: User, evaluation_id: int, *, text: str, now: datetime) -> EvaluationReply:
    """The lesson's teacher answers an evaluation."""
    evaluation = _evaluation(session, evaluation_id)
    inst = _get_instance(session, evaluation.instance_id)
    if not is_lesson_teacher(user, inst):
        raise Forbidden("只有授课教师可以回复评课意见")
    text = text.strip()
    if not text:
        raise Invalid("回复内容不能为空", field="text")
    answer = EvaluationReply(author_id=user.id, text=text, created_at=now)
    evaluation.replies.append(answer)
    session.flush()
    return answer


# ---------------------------------------------------------------------------- snapshots


def require_snapshot_taker(session: Session, user: User, scope: Scope, instance_id: int) -> LessonInstance:
    """Who may take a snapshot now: an evaluator watching the live lesson (an open visit)."""
    inst = _get_instance(session, instance_id)
    require_evaluator(session, user, scope, inst)
    if inst.status is not InstanceStatus.live:
        raise InvalidState("只有正在上课的课堂可以截图")
    return inst


def add_snapshot(session: Session, user: User, scope: Scope, instance_id: int, *, jpeg: bytes, width: int,
                 height: int, data_dir: Path, now: datetime, note: str = "") -> EvaluationSnapshot:
    """Keep a JPEG of the lesson in the user's (live) evaluation of it."""
    if not jpeg.startswith(b"\xff\xd8"):
        raise Invalid("截图不是 JPEG 图像")
    if len(jpeg) > MAX_SNAPSHOT_BYTES:
        raise Invalid(f"截图超过 {MAX_SNAPSHOT_BYTES // 1024} KB 上限")
    inst = require_snapshot_taker(session, user, scope, instance_id)
    evaluation = open_evaluation(session, user, scope, instance_id, mode=EvaluationMode.live, now=now)
    if len(evaluation.snapshots) >= MAX_SNAPSHOTS_PER_EVALUATION:
        raise InvalidState(f"每份评课记录最多保存 {MAX_SNAPSHOTS_PER_EVALUATION} 张截图")
    rel = SNAPSHOT_DIR / str(instance_id) / f"{evaluation.id}-{uuid.uuid4().hex}.jpg"
    target = data_dir / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(jpeg)
    snap = EvaluationSnapshot(taken_at=now, lesson_offset_seconds=_offset(inst, now), path=rel.as_posix(),
                              size_bytes=len(jpeg), width=width, height=height, note=note)
    evaluation.snapshots.append(snap)
    evaluation.updated_at = now
    session.flush()
    return snap


def readable_snapshot(session: Session, user: User, scope: Scope, snapshot_id: int,
                      data_dir: Path) -> tuple[EvaluationSnapshot, Path]:
    snap = session.get(EvaluationSnapshot, snapshot_id)
    if snap is None:
        raise NotFound(f"截图 #{snapshot_id} 不存在")
    require_readable_evaluation(session, user, scope, snap.evaluation_id)
    path = (data_dir / snap.path).resolve()
    if not path.is_relative_to((data_dir / SNAPSHOT_DIR).resolve()) or not path.is_file():
        raise NotFound("截图文件已不存在")
    return snap, path


# ---------------------------------------------------------------------------- invitations


def invite(session: Session, user: User, scope: Scope, instance_id: int, *, invitee_id: int, note: str = "",
           now: datetime) -> EvaluatorInvitation:
    """An admin or researcher who sees the lesson invites a researcher or teacher to evaluate it."""
    if user.role not in (Role.admin, Role.researcher):
        raise Forbidden("只有管理员和教研员可以邀请评课人")
    inst = require_instance(session, scope, instance_id)
    invitee = session.get(User, invitee_id)
    if invitee is None or not invitee.is_active:
        raise NotFound(f"用户 #{invitee_id} 不存在或已停用")
    if invitee.role not in (Role.researcher, Role.teacher):
        raise Invalid("只能邀请教研员或教师评课", field="invitee_id")
    if invitee.id == user.id:
        raise Invalid("不能邀请自己", field="invitee_id")
    if is_lesson_teacher(invitee, inst):
        raise Invalid("不能邀请授课教师评价自己的课", field="invitee_id")
    if _invited(session, invitee.id, instance_id):
        raise InvalidState(f"已邀请“{invitee.display_name}”评价该课")
    invitation = EvaluatorInvitation(instance_id=instance_id, invitee_id=invitee.id, invited_by_id=user.id,
                                     note=note, created_at=now)
    session.add(invitation)
    session.flush()
    return invitation


def invitation_candidates(session: Session, user: User, scope: Scope, instance_id: int, *, q: str | None = None,
                          limit: int = 50) -> Sequence[tuple[User, str]]:
    """Whom the caller (an admin or researcher who sees the lesson) may invite, with where each sits.

    The active researchers and teachers of the lesson's province (the top region above its schools),
    minus the caller, the lesson's teachers and those invited already; ``q`` matches name or username.
    """
    if user.role not in (Role.admin, Role.researcher):
        raise Forbidden("只有管理员和教研员可以邀请评课人")
    inst = require_instance(session, scope, instance_id)
    roots = {"/" + p.strip("/").split("/")[0] + "/" for p in _lesson_region_paths(session, inst)}
    if not roots:
        return []
    under = [Region.path.startswith(r) for r in roots]
    invited = select(EvaluatorInvitation.invitee_id).where(EvaluatorInvitation.instance_id == instance_id)
    excluded = {user.id, inst.teacher_id, inst.series.main_teacher_id}
    researcher_region = select(Region.id).where(or_(*under))
    teacher_school = select(School.id).join(Region, Region.id == School.region_id).where(or_(*under))
    stmt = (select(User).where(
        User.is_active.is_(True), User.id.not_in(excluded), User.id.not_in(invited),
        or_((User.role == Role.researcher) & User.region_id.in_(researcher_region),
            (User.role == Role.teacher) & User.school_id.in_(teacher_school)))
        .order_by(User.role, User.display_name, User.id).limit(limit))
    if q and q.strip():
        needle = q.strip()
        stmt = stmt.where(or_(User.username.icontains(needle, autoescape=True),
                              User.display_name.contains(needle, autoescape=True)))
    users = session.scalars(stmt).all()
    regions = dict(session.execute(select(Region.id, Region.name).where(
        Region.id.in_({u.region_id for u in users if u.region_id is not None}))).all())
    schools = dict(session.execute(select(School.id, School.name).where(
        School.id.in_({u.school_id for u in users if u.school_id is not None}))).all())
    return [(u, regions.get(u.region_id, "") if u.role is Role.researcher else schools.get(u.school_id, ""))
            for u in users]


def list_invitations(session: Session, user: User, scope: Scope, *,
                     instance_id: int | None = None) -> Sequence[EvaluatorInvitation]:
    """Invitations of a lesson (for admins and researchers who see it); without a lesson, one's own."""
    stmt = select(EvaluatorInvitation).order_by(EvaluatorInvitation.id)
    if instance_id is None:
        return session.scalars(stmt.where(EvaluatorInvitation.invitee_id == user.id)).all()
    if user.role in (Role.admin, Role.researcher) and _sees(session, scope, instance_id):
        return session.scalars(stmt.where(EvaluatorInvitation.instance_id == instance_id)).all()
    if _invited(session, user.id, instance_id):
        return session.scalars(stmt.where(EvaluatorInvitation.instance_id == instance_id,
                                          EvaluatorInvitation.invitee_id == user.id)).all()
    raise Forbidden("无权查看该课的评课邀请")


def revoke_invitation(session: Session, user: User, scope: Scope, invitation_id: int) -> None:
    invitation = session.get(EvaluatorInvitation, invitation_id)
    if invitation is None:
        raise NotFound(f"评课邀请 #{invitation_id} 不存在")
    if invitation.invited_by_id != user.id and not (scope.is_admin and _sees(session, scope, invitation.instance_id)):
        raise Forbidden("只有邀请人或管理员可以撤销邀请")
    session.delete(invitation)
    session.flush()
