"""The directory: regions, schools, classrooms, accounts, pairings, terms and bells.

Plain functions with keyword-only ``session=`` and ``scope=``.  Each one
checks who may do it and the business rules, then writes, and raises
``Invalid`` / ``Forbidden`` / ``NotFound`` from ``scheduler.errors``; nothing
here knows about HTTP.  The listing helpers return ``Select`` statements
already narrowed to what the caller may see, so the server only pages them.

Who manages what:

- regions, schools, education groups, researchers, bureau admins, terms:
  an admin whose region covers the target (bureau admin), or a system admin;
- classrooms, bell schedules, teachers, students, terminals, school admins:
  also the school's own admin;
- pairings: an admin who manages either of the two schools.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, time
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, exists, false, func, or_, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from scheduler import audit, bookings, logins
from scheduler.access import Scope, require_region, require_school, require_school_admin, school_clause
from scheduler.errors import Forbidden, Invalid, InvalidState, NotFound
from scheduler.models import (
    Classroom,
    DayKind,
    EducationGroup,
    Pairing,
    Period,
    PeriodScheme,
    Region,
    RegionLevel,
    Role,
    School,
    SchoolKind,
    Term,
    TermDay,
    User,
)

T = TypeVar("T")


class Duplicate(InvalidState):
    """The thing already exists (a username, a pairing, a term's day, a school's bells)."""

    code = "duplicate"


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()
"""Default of the optional arguments of the ``update_*`` functions: leave the field as it is."""


# --- shared helpers ---------------------------------------------------------------------------------------------


def paginate(session: Session, stmt: Select[tuple[T]], *, offset: int, limit: int) -> tuple[list[T], int]:
    """One page of ``stmt`` and the total number of rows it matches."""
    count = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    rows = list(session.scalars(stmt.offset(offset).limit(limit)).all())
    return rows, int(count)


def _name(value: str, what: str, max_len: int = 100, *, field: str = "name") -> str:
    value = (value or "").strip()
    if not value:
        raise Invalid(f"{what}不能为空", field=field)
    if len(value) > max_len:
        raise Invalid(f"{what}不能超过 {max_len} 个字", field=field)
    return value


def _require_admin(scope: Scope) -> None:
    if not scope.is_admin:
        raise Forbidden("只有管理员可以执行此操作")


def _require_region_admin(session: Session, scope: Scope, region_id: int) -> Region:
    """A bureau admin whose region covers ``region_id``, or a system admin."""
    _require_admin(scope)
    if not scope.everywhere and scope.region_path is None:
        raise Forbidden("只有区域或系统管理员可以执行此操作")
    return require_region(session, scope, region_id)


def _get(session: Session, cls: type[T], ident: int, what: str) -> T:
    row = session.get(cls, ident)
    if row is None:
        raise NotFound(f"{what} #{ident} 不存在")
    return row


def _record(session: Session, scope: Scope, entity: str, entity_id: int, action: str, **details: Any) -> None:
    audit.record(session, actor_id=scope.user_id, entity=entity, entity_id=entity_id, action=action,
                 details={k: v for k, v in details.items() if v is not None})


# --- regions ----------------------------------------------------------------------------------------------------

_LEVEL_DEPTH = {RegionLevel.province: 0, RegionLevel.city: 1, RegionLevel.district: 2}
LEVEL_LABEL = {RegionLevel.province: "省", RegionLevel.city: "市", RegionLevel.district: "区县"}


def region_query(session: Session, *, parent_id: int | None = None,
                 within_id: int | None = None) -> Select[tuple[Region]]:
    """Regions in tree order. The region tree is public to every signed-in user."""
    stmt = select(Region).order_by(Region.path)
    if parent_id is not None:
        stmt = stmt.where(Region.parent_id == parent_id)
    if within_id is not None:
        root = _get(session, Region, within_id, "区域")
        stmt = stmt.where(Region.path.startswith(root.path))
    return stmt


def get_region(session: Session, region_id: int) -> Region:
    return _get(session, Region, region_id, "区域")


def create_region(*, session: Session, scope: Scope, name: str, level: RegionLevel,
                  parent_id: int | None = None) -> Region:
    """A new region under ``parent_id``; its ``path`` is the parent's path plus its own id."""
    name = _name(name, "区域名称")
    parent: Region | None = None
    if parent_id is None:
        _require_admin(scope)
        if not scope.everywhere:
            raise Forbidden("只有系统管理员可以创建顶级区域")
    else:
        parent = _require_region_admin(session, scope, parent_id)
        if _LEVEL_DEPTH[level] <= _LEVEL_DEPTH[parent.level]:
            raise Invalid(f"{LEVEL_LABEL[level]}级区域不能隶属于{LEVEL_LABEL[parent.level]}级区域“{parent.name}”", field="level")
    region = Region(name=name, level=level, parent_id=parent_id, path="")
    session.add(region)
    session.flush()
    region.path = f"{parent.path if parent else '/'}{region.id}/"
    session.flush()
    _record(session, scope, "region", region.id, "create", name=name, parent_id=parent_id)
    return region


def rename_region(*, session: Session, scope: Scope, region_id: int, name: str) -> Region:
    region = _require_region_admin(session, scope, region_id)
    region.name = _name(name, "区域名称")
    session.flush()
    _record(session, scope, "region", region.id, "rename", name=region.name)
    return region


# --- education groups and schools --------------------------------------------------------------------------------


def group_query(scope: Scope) -> Select[tuple[EducationGroup]]:
    """Education groups registered in the caller's regions, or the group of the caller's school."""
    stmt = select(EducationGroup).join(Region, Region.id == EducationGroup.region_id).order_by(EducationGroup.id)
    if scope.everywhere:
        return stmt
    parts: list[ColumnElement[bool]] = []
    if scope.region_path is not None:
        parts.append(Region.path.startswith(scope.region_path))
    if scope.school_id is not None:
        parts.append(EducationGroup.id == select(School.group_id).where(School.id == scope.school_id).scalar_subquery())
    return stmt.where(or_(*parts) if parts else false())


def create_group(*, session: Session, scope: Scope, name: str, region_id: int) -> EducationGroup:
    _require_region_admin(session, scope, region_id)
    group = EducationGroup(name=_name(name, "教育集团名称"), region_id=region_id)
    session.add(group)
    session.flush()
    _record(session, scope, "education_group", group.id, "create", name=group.name, region_id=region_id)
    return group


def _check_group(session: Session, group_id: int, region: Region) -> None:
    group = _get(session, EducationGroup, group_id, "教育集团")
    group_region = _get(session, Region, group.region_id, "区域")
    if not region.path.startswith(group_region.path):
        raise Invalid(f"学校所在区域“{region.name}”不在教育集团“{group.name}”的范围（{group_region.name}）内", field="group_id")


def school_query(session: Session, scope: Scope, *, region_id: int | None = None, kind: SchoolKind | None = None,
                 group_id: int | None = None, q: str | None = None) -> Select[tuple[School]]:
    """Schools the caller may see; ``region_id`` narrows to that region's subtree (within what is visible)."""
    stmt = (select(School).join(Region, Region.id == School.region_id).where(school_clause(scope))
            .order_by(School.id))
    if region_id is not None:
        # a region outside the caller's scope is refused (403), not silently emptied
        stmt = stmt.where(Region.path.startswith(require_region(session, scope, region_id).path))
    if kind is not None:
        stmt = stmt.where(School.kind == kind)
    if group_id is not None:
        stmt = stmt.where(School.group_id == group_id)
    if q and q.strip():
        stmt = stmt.where(School.name.contains(q.strip(), autoescape=True))
    return stmt


def create_school(*, session: Session, scope: Scope, name: str, kind: SchoolKind, region_id: int,
                  group_id: int | None = None) -> School:
    region = _require_region_admin(session, scope, region_id)
    if group_id is not None:
        _check_group(session, group_id, region)
    school = School(name=_name(name, "学校名称"), kind=kind, region_id=region_id, group_id=group_id)
    session.add(school)
    session.flush()
    _record(session, scope, "school", school.id, "create", name=school.name, kind=kind.value, region_id=region_id)
    return school


def update_school(*, session: Session, scope: Scope, school_id: int, name: str = UNSET, kind: SchoolKind = UNSET,
                  region_id: int = UNSET, group_id: int | None = UNSET) -> School:
    school = _get(session, School, school_id, "学校")
    region = _require_region_admin(session, scope, school.region_id)
    changes: dict[str, Any] = {}
    if name is not UNSET:
        school.name = changes["name"] = _name(name, "学校名称")
    if region_id is not UNSET and region_id != school.region_id:
        region = _require_region_admin(session, scope, region_id)
        school.region_id = changes["region_id"] = region_id
    if kind is not UNSET and kind != school.kind:
        side = Pairing.urban_school_id if school.kind is SchoolKind.urban else Pairing.rural_school_id
        if session.scalar(select(func.count()).select_from(Pairing).where(side == school.id, Pairing.active.is_(True))):
            raise Invalid(f"“{school.name}”仍有有效的城乡结对，请先停用结对再更改城乡类型", field="kind")
        school.kind = kind
        changes["kind"] = kind.value
    if group_id is not UNSET:
        if group_id is not None:
            _check_group(session, group_id, region)
        school.group_id = changes["group_id"] = group_id
    elif "region_id" in changes and school.group_id is not None:
        _check_group(session, school.group_id, region)
    session.flush()
    _record(session, scope, "school", school.id, "update", **changes)
    return school


# --- classrooms -------------------------------------------------------------------------------------------------


def classroom_query(session: Session, scope: Scope, *, school_id: int | None = None) -> Select[tuple[Classroom]]:
    """Classrooms of the schools the caller may see; asking for a school out of reach is refused."""
    stmt = (select(Classroom).join(School, School.id == Classroom.school_id)
            .join(Region, Region.id == School.region_id).where(school_clause(scope)).order_by(Classroom.id))
    if school_id is not None:
        require_school(session, scope, school_id)
        stmt = stmt.where(Classroom.school_id == school_id)
    return stmt


def require_classroom(session: Session, scope: Scope, classroom_id: int) -> Classroom:
    room = _get(session, Classroom, classroom_id, "教室")
    require_school(session, scope, room.school_id)
    return room


def _capacity(value: int) -> int:
    if not 1 <= value <= 1000:
        raise Invalid("教室容量应为 1–1000 人", field="capacity")
    return value


def create_classroom(*, session: Session, scope: Scope, school_id: int, name: str, capacity: int = 45) -> Classroom:
    require_school_admin(session, scope, school_id)
    room = Classroom(school_id=school_id, name=_name(name, "教室名称"), capacity=_capacity(capacity))
    session.add(room)
    session.flush()
    _record(session, scope, "classroom", room.id, "create", name=room.name, school_id=school_id)
    return room


def update_classroom(*, session: Session, scope: Scope, classroom_id: int, name: str = UNSET,
                     capacity: int = UNSET) -> Classroom:
    room = _get(session, Classroom, classroom_id, "教室")
    require_school_admin(session, scope, room.school_id)
    if name is not UNSET:
        room.name = _name(name, "教室名称")
    if capacity is not UNSET:
        room.capacity = _capacity(capacity)
    session.flush()
    _record(session, scope, "classroom", room.id, "update", name=room.name, capacity=room.capacity)
    return room


# --- user accounts ------------------------------------------------------------------------------------------------

_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{3,64}$")
MIN_PASSWORD = 8

ACCOUNT_TOPIC = "account"
"""Bus topic of account changes live lessons must act on: ``{"type": "user_deactivated", "user_id": n}``
(published once the change is committed; the signaling layer ends that user's sessions)."""


def user_clause(scope: Scope) -> ColumnElement[bool]:
    """WHERE clause over ``User``: the accounts an admin manages.

    A school admin manages the accounts of their school; a bureau admin those
    of every school in their regions plus the researchers and admins of those
    regions; a system admin everyone.
    """
    if not scope.is_admin:
        return false()
    if scope.everywhere:
        return true()
    parts: list[ColumnElement[bool]] = []
    if scope.region_path is not None:
        regions = select(Region.id).where(Region.path.startswith(scope.region_path))
        schools = select(School.id).join(Region, Region.id == School.region_id).where(
            Region.path.startswith(scope.region_path))
        parts += [User.region_id.in_(regions), User.school_id.in_(schools)]
    if scope.school_id is not None:
        parts.append(User.school_id == scope.school_id)
    return or_(*parts) if parts else false()


def user_query(scope: Scope, *, role: Role | None = None, school_id: int | None = None,
               is_active: bool | None = None, q: str | None = None) -> Select[tuple[User]]:
    stmt = select(User).where(user_clause(scope)).order_by(User.id)
    if role is not None:
        stmt = stmt.where(User.role == role)
    if school_id is not None:
        stmt = stmt.where(User.school_id == school_id)
    if is_active is not None:
        stmt = stmt.where(User.is_active.is_(is_active))
    if q and q.strip():
        needle = q.strip()
        stmt = stmt.where(or_(User.username.icontains(needle, autoescape=True),
                              User.display_name.contains(needle, autoescape=True)))
    return stmt


def require_user(session: Session, scope: Scope, user_id: int) -> User:
    """An account the caller (an admin) manages."""
    _require_admin(scope)
    user = _get(session, User, user_id, "用户")
    if session.scalar(select(User.id).where(User.id == user_id, user_clause(scope))) is None:
        raise Forbidden("无权管理该用户")
    return user


def _password(password: str) -> str:
    if len(password or "") < MIN_PASSWORD:
        raise Invalid(f"密码至少 {MIN_PASSWORD} 位", field="password")
    if len(password) > 128:
        raise Invalid("密码不能超过 128 位", field="password")
    return password


def _placement(session: Session, scope: Scope, role: Role, school_id: int | None, region_id: int | None,
               classroom_id: int | None) -> tuple[int | None, int | None, int | None]:
    """Check where an account of ``role`` may sit and whether the caller may place it there."""
    if role is Role.terminal:
        if classroom_id is None:
            raise Invalid("教室终端账号必须指定所属教室", field="classroom_id")
        room = _get(session, Classroom, classroom_id, "教室")
        if school_id is not None and school_id != room.school_id:
            raise Invalid("教室终端账号的学校应与其教室所属学校一致", field="school_id")
        if region_id is not None:
            raise Invalid("教室终端账号不能指定区域", field="region_id")
        require_school_admin(session, scope, room.school_id)
        return room.school_id, None, room.id
    if classroom_id is not None:
        raise Invalid("只有教室终端账号可以指定教室", field="classroom_id")
    if role in (Role.teacher, Role.student):
        label = "教师" if role is Role.teacher else "学生"
        if school_id is None:
            raise Invalid(f"{label}账号必须指定所属学校", field="school_id")
        if region_id is not None:
            raise Invalid(f"{label}账号不能指定区域", field="region_id")
        require_school_admin(session, scope, school_id)
        return school_id, None, None
    if role is Role.researcher:
        if region_id is None:
            raise Invalid("教研员账号必须指定所属区域", field="region_id")
        if school_id is not None:
            raise Invalid("教研员账号不能指定学校", field="school_id")
        _require_region_admin(session, scope, region_id)
        return None, region_id, None
    # admin: of a school, of a region (bureau), or of everything (system)
    if school_id is not None and region_id is not None:
        raise Invalid("管理员只能属于一所学校或一个区域，不能同时指定", field="region_id")
    if school_id is not None:
        require_school_admin(session, scope, school_id)
    elif region_id is not None:
        _require_region_admin(session, scope, region_id)
    else:
        _require_admin(scope)
        if not scope.everywhere:
            raise Forbidden("只有系统管理员可以创建系统管理员")
    return school_id, region_id, None


def create_user(*, session: Session, scope: Scope, username: str, display_name: str, password: str, role: Role,
                hasher: Callable[[str], str], school_id: int | None = None, region_id: int | None = None,
                classroom_id: int | None = None) -> User:
    """A new account. ``hasher`` turns the password into the stored hash (argon2 in the server)."""
    _require_admin(scope)
    username = (username or "").strip()
    if not _USERNAME.match(username):
        raise Invalid("用户名应为 3–64 位字母、数字或 _ . @ -", field="username")
    school_id, region_id, classroom_id = _placement(session, scope, role, school_id, region_id, classroom_id)
    display_name = _name(display_name, "姓名", field="display_name")
    _password(password)
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Duplicate(f"用户名“{username}”已被使用", field="username")
    user = User(username=username, display_name=display_name, password_hash=hasher(password), role=role,
                school_id=school_id, region_id=region_id, classroom_id=classroom_id, is_active=True)
    session.add(user)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:  # a concurrent request took the name between our check and the insert
        raise Duplicate(f"用户名“{username}”已被使用", field="username") from exc
    _record(session, scope, "user", user.id, "create", username=username, role=role.value)
    return user


def update_user(*, session: Session, scope: Scope, user_id: int, display_name: str = UNSET,
                is_active: bool = UNSET, password: str = UNSET,
                hasher: Callable[[str], str] | None = None) -> User:
    """Rename, (de)activate or reset the password of an account the caller manages.

    Deactivating or resetting the password revokes the account's access and join tokens (its
    ``token_version`` goes up); the route tells live lessons of a deactivation (``ACCOUNT_TOPIC``)."""
    user = require_user(session, scope, user_id)
    changes: dict[str, Any] = {}
    if display_name is not UNSET:
        user.display_name = changes["display_name"] = _name(display_name, "姓名", field="display_name")
    if is_active is not UNSET:
        if not is_active and user.id == scope.user_id:
            raise Invalid("不能停用自己的账号", field="is_active")
        if user.is_active and not is_active:
            user.token_version += 1  # every access and join token issued so far is refused from now on
        user.is_active = changes["is_active"] = bool(is_active)
    if password is not UNSET:
        if hasher is None:
            raise ValueError("hasher is required to reset a password")
        user.password_hash = hasher(_password(password))
        user.token_version += 1
        logins.clear_account(session, user.username)  # a locked-out user can sign in with the new one at once
        changes["password_reset"] = True
    session.flush()
    _record(session, scope, "user", user.id, "update", **changes)
    return user


# --- pairings ---------------------------------------------------------------------------------------------------

def _school_visible_exists(scope: Scope, school_col: Any) -> ColumnElement[bool]:
    return exists(select(1).select_from(School).join(Region, Region.id == School.region_id)
                  .where(School.id == school_col, school_clause(scope)))


def pairing_query(session: Session, scope: Scope, *, term_id: int | None = None, school_id: int | None = None,
                  region_id: int | None = None, active: bool | None = None) -> Select[tuple[Pairing]]:
    """Pairings with at least one school the caller may see."""
    stmt = select(Pairing).order_by(Pairing.id)
    if not scope.everywhere:
        stmt = stmt.where(or_(_school_visible_exists(scope, Pairing.urban_school_id),
                              _school_visible_exists(scope, Pairing.rural_school_id)))
    if term_id is not None:
        stmt = stmt.where(Pairing.term_id == term_id)
    if school_id is not None:
        stmt = stmt.where(or_(Pairing.urban_school_id == school_id, Pairing.rural_school_id == school_id))
    if region_id is not None:
        path = require_region(session, scope, region_id).path
        in_region = select(School.id).join(Region, Region.id == School.region_id).where(Region.path.startswith(path))
        stmt = stmt.where(or_(Pairing.urban_school_id.in_(in_region), Pairing.rural_school_id.in_(in_region)))
    if active is not None:
        stmt = stmt.where(Pairing.active.is_(active))
    return stmt


def _school_reachable(session: Session, scope: Scope, school_id: int) -> bool:
    try:
        require_school(session, scope, school_id)
    except Forbidden:
        return False
    return True


def require_pairing(session: Session, scope: Scope, pairing_id: int, *, manage: bool = False) -> Pairing:
    """A pairing the caller may see (``manage``: may change, as an admin of either school)."""
    pairing = _get(session, Pairing, pairing_id, "城乡结对")
    if manage:
        _require_admin(scope)
    if not (_school_reachable(session, scope, pairing.urban_school_id)
            or _school_reachable(session, scope, pairing.rural_school_id)):
        raise Forbidden("无权管理该城乡结对" if manage else "无权访问该城乡结对")
    return pairing


def _subjects(subjects: Sequence[str]) -> list[str]:
    out: list[str] = []
    for s in subjects:
        s = (s or "").strip()
        if not s:
            raise Invalid("学科名称不能为空", field="subjects")
        if len(s) > 50:
            raise Invalid("学科名称不能超过 50 个字", field="subjects")
        if s not in out:
            out.append(s)
    return out


def _pairing_room(session: Session, classroom_id: int | None, school: School, field: str) -> int | None:
    if classroom_id is None:
        return None
    room = _get(session, Classroom, classroom_id, "教室")
    if room.school_id != school.id:
        raise Invalid(f"教室“{room.name}”不属于“{school.name}”", field=field)
    return room.id


def _check_duplicate_pairing(session: Session, p: Pairing) -> None:
    def same(col: Any, value: int | None) -> ColumnElement[bool]:
        return col.is_(None) if value is None else col == value

    clash = session.scalar(select(Pairing.id).where(
        Pairing.active.is_(True), Pairing.id != (p.id or 0),
        Pairing.urban_school_id == p.urban_school_id, Pairing.rural_school_id == p.rural_school_id,
        same(Pairing.urban_classroom_id, p.urban_classroom_id), same(Pairing.rural_classroom_id, p.rural_classroom_id),
        same(Pairing.term_id, p.term_id),
    ))
    if clash is not None:
        raise Duplicate(f"已有相同的有效城乡结对 #{clash}")


def create_pairing(*, session: Session, scope: Scope, urban_school_id: int, rural_school_id: int,
                   urban_classroom_id: int | None = None, rural_classroom_id: int | None = None,
                   subjects: Sequence[str] = (), term_id: int | None = None) -> Pairing:
    """城乡结对 between an urban and a rural school, by an admin who manages either of them."""
    _require_admin(scope)
    urban = _get(session, School, urban_school_id, "学校")
    rural = _get(session, School, rural_school_id, "学校")
    if not (_school_reachable(session, scope, urban.id) or _school_reachable(session, scope, rural.id)):
        raise Forbidden("只能为本人管理范围内的学校建立结对")
    if urban.kind is not SchoolKind.urban:
        raise Invalid(f"“{urban.name}”不是城镇学校，不能作为结对的城镇一方", field="urban_school_id")
    if rural.kind is not SchoolKind.rural:
        raise Invalid(f"“{rural.name}”不是乡村学校，不能作为结对的乡村一方", field="rural_school_id")
    if term_id is not None:
        _get(session, Term, term_id, "学期")
    pairing = Pairing(
        urban_school_id=urban.id, rural_school_id=rural.id,
        urban_classroom_id=_pairing_room(session, urban_classroom_id, urban, "urban_classroom_id"),
        rural_classroom_id=_pairing_room(session, rural_classroom_id, rural, "rural_classroom_id"),
        subjects=_subjects(subjects), term_id=term_id, active=True,
    )
    _check_duplicate_pairing(session, pairing)
    session.add(pairing)
    session.flush()
    _record(session, scope, "pairing", pairing.id, "create", urban_school_id=urban.id, rural_school_id=rural.id)
    return pairing


def update_pairing(*, session: Session, scope: Scope, pairing_id: int, subjects: Sequence[str] = UNSET,
                   term_id: int | None = UNSET, active: bool = UNSET, urban_classroom_id: int | None = UNSET,
                   rural_classroom_id: int | None = UNSET) -> Pairing:
    pairing = require_pairing(session, scope, pairing_id, manage=True)
    changes: dict[str, Any] = {}
    if subjects is not UNSET:
        pairing.subjects = changes["subjects"] = _subjects(subjects)
    if term_id is not UNSET:
        if term_id is not None:
            _get(session, Term, term_id, "学期")
        pairing.term_id = changes["term_id"] = term_id
    if urban_classroom_id is not UNSET:
        urban = _get(session, School, pairing.urban_school_id, "学校")
        pairing.urban_classroom_id = changes["urban_classroom_id"] = _pairing_room(
            session, urban_classroom_id, urban, "urban_classroom_id")
    if rural_classroom_id is not UNSET:
        rural = _get(session, School, pairing.rural_school_id, "学校")
        pairing.rural_classroom_id = changes["rural_classroom_id"] = _pairing_room(
            session, rural_classroom_id, rural, "rural_classroom_id")
    if active is not UNSET:
        pairing.active = changes["active"] = bool(active)
    if pairing.active:
        _check_duplicate_pairing(session, pairing)
    session.flush()
    _record(session, scope, "pairing", pairing.id, "update", **changes)
    return pairing


# --- terms ------------------------------------------------------------------------------------------------------

MAX_TERM_DAYS = 366


def term_query(session: Session, *, region_id: int | None = None) -> Select[tuple[Term]]:
    """Terms, newest first; ``region_id``: the terms that apply there (its own, its ancestors' and global ones)."""
    stmt = select(Term).order_by(Term.start_date.desc(), Term.id.desc())
    if region_id is not None:
        path = _get(session, Region, region_id, "区域").path
        ancestors = [int(part) for part in path.strip("/").split("/") if part]
        stmt = stmt.where(or_(Term.region_id.is_(None), Term.region_id.in_(ancestors)))
    return stmt


def get_term(session: Session, term_id: int) -> Term:
    return _get(session, Term, term_id, "学期")


def _require_term_admin(session: Session, scope: Scope, region_id: int | None) -> None:
    if region_id is None:
        _require_admin(scope)
        if not scope.everywhere:
            raise Forbidden("只有系统管理员可以管理全局学期")
        return
    _require_region_admin(session, scope, region_id)


def create_term(*, session: Session, scope: Scope, name: str, start_date: date, end_date: date,
                region_id: int | None = None) -> Term:
    """A term of a region (or a global one, for a system admin)."""
    _require_term_admin(session, scope, region_id)
    name = _name(name, "学期名称")
    if end_date < start_date:
        raise Invalid("学期结束日期不能早于开始日期", field="end_date")
    if (end_date - start_date).days + 1 > MAX_TERM_DAYS:
        raise Invalid("学期不能超过一年", field="end_date")
    term = Term(name=name, start_date=start_date, end_date=end_date, region_id=region_id)
    session.add(term)
    session.flush()
    _record(session, scope, "term", term.id, "create", name=name, start=start_date.isoformat(),
            end=end_date.isoformat(), region_id=region_id)
    return term


def add_term_day(*, session: Session, scope: Scope, term_id: int, day: date, kind: DayKind,
                 follows_weekday: int | None = None, name: str = "") -> TermDay:
    """A holiday, or a make-up day (调休) that runs ``follows_weekday``'s timetable.

    Lessons already booked on that date follow (``bookings.apply_term_day``): a
    holiday cancels them; a make-up day cancels the date's own lessons and adds
    those of the followed weekday.  What changed is on ``entry.change``.
    """
    term = get_term(session, term_id)
    _require_term_admin(session, scope, term.region_id)
    if not term.start_date <= day <= term.end_date:
        raise Invalid(f"日期 {day.isoformat()} 不在学期（{term.start_date.isoformat()} 至 "
                      f"{term.end_date.isoformat()}）范围内", field="day")
    if kind is DayKind.makeup:
        if follows_weekday is None:
            raise Invalid("调休上课日必须指定按星期几的课表上课（follows_weekday）", field="follows_weekday")
        if not 1 <= follows_weekday <= 7:
            raise Invalid("follows_weekday 应为 1（周一）到 7（周日）", field="follows_weekday")
    elif follows_weekday is not None:
        raise Invalid("节假日不需要指定 follows_weekday", field="follows_weekday")
    name = (name or "").strip()
    if len(name) > 100:
        raise Invalid("名称不能超过 100 个字", field="name")
    if any(d.day == day for d in term.days):
        raise Duplicate(f"{day.isoformat()} 已设置为节假日或调休日，请先删除原设置", field="day")
    entry = TermDay(day=day, kind=kind, follows_weekday=follows_weekday, name=name)
    term.days.append(entry)
    session.flush()
    session.expire(term, ["days"])
    change = bookings.apply_term_day(session, term.id, day, actor_id=scope.user_id, name=name)
    _record(session, scope, "term", term.id, "add_day", day=day.isoformat(), kind=kind.value,
            follows_weekday=follows_weekday, cancelled=len(change.cancelled), added=len(change.added),
            not_added=len(change.not_added))
    entry.change = change  # type: ignore[attr-defined]
    return entry


def remove_term_day(*, session: Session, scope: Scope, term_id: int, day_id: int) -> None:
    term = get_term(session, term_id)
    _require_term_admin(session, scope, term.region_id)
    entry = next((d for d in term.days if d.id == day_id), None)
    if entry is None:
        raise NotFound(f"学期 #{term_id} 中没有日期设置 #{day_id}")
    term.days.remove(entry)
    session.flush()
    _record(session, scope, "term", term.id, "remove_day", day=entry.day.isoformat(), kind=entry.kind.value)


# --- bell schedules ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PeriodSpec:
    """One 节次 of a bell schedule as asked for."""

    number: int
    start_time: time
    end_time: time


def _hm(t: time) -> str:
    return t.strftime("%H:%M")


def check_periods(periods: Sequence[PeriodSpec]) -> list[PeriodSpec]:
    """The periods in number order, or ``Invalid`` naming the first problem.

    Numbers are positive and unique, each period ends after it starts, and a
    later number starts no earlier than the previous one ends (touching is fine:
    10:35–11:25 may follow 09:45–10:35).
    """
    if not periods:
        raise Invalid("作息时间至少需要一节课", field="periods")
    seen: set[int] = set()
    for p in periods:
        if p.number < 1:
            raise Invalid(f"节次编号应从 1 开始，收到 {p.number}", field="periods")
        if p.number in seen:
            raise Invalid(f"第 {p.number} 节重复", field="periods")
        seen.add(p.number)
        if p.end_time <= p.start_time:
            raise Invalid(f"第 {p.number} 节的结束时间（{_hm(p.end_time)}）应晚于开始时间（{_hm(p.start_time)}）", field="periods")
    ordered = sorted(periods, key=lambda p: p.number)
    for prev, cur in zip(ordered, ordered[1:]):
        if cur.start_time < prev.start_time:
            raise Invalid(f"节次应按时间先后排列：第 {cur.number} 节（{_hm(cur.start_time)}）"
                          f"早于第 {prev.number} 节（{_hm(prev.start_time)}）", field="periods")
        if cur.start_time < prev.end_time:
            raise Invalid(f"第 {prev.number} 节（{_hm(prev.start_time)}–{_hm(prev.end_time)}）与第 {cur.number} 节"
                          f"（{_hm(cur.start_time)}–{_hm(cur.end_time)}）时间重叠", field="periods")
    return ordered


def scheme_query(session: Session, scope: Scope, *, school_id: int | None = None) -> Select[tuple[PeriodScheme]]:
    stmt = (select(PeriodScheme).join(School, School.id == PeriodScheme.school_id)
            .join(Region, Region.id == School.region_id).where(school_clause(scope)).order_by(PeriodScheme.id))
    if school_id is not None:
        require_school(session, scope, school_id)
        stmt = stmt.where(PeriodScheme.school_id == school_id)
    return stmt


def require_scheme(session: Session, scope: Scope, scheme_id: int) -> PeriodScheme:
    scheme = _get(session, PeriodScheme, scheme_id, "作息时间")
    require_school(session, scope, scheme.school_id)
    return scheme


def _check_scheme_slot(session: Session, school_id: int, term_id: int | None, scheme_id: int | None) -> None:
    """One scheme per school and term (and one standing scheme): which bells apply must be unambiguous."""
    if term_id is not None:
        _get(session, Term, term_id, "学期")
    same_term = PeriodScheme.term_id.is_(None) if term_id is None else PeriodScheme.term_id == term_id
    clash = session.scalar(select(PeriodScheme.id).where(
        PeriodScheme.school_id == school_id, same_term, PeriodScheme.id != (scheme_id or 0)))
    if clash is not None:
        which = "常用" if term_id is None else "该学期的"
        raise Duplicate(f"该学校已有{which}作息时间 #{clash}，请修改原作息时间", field="term_id")


def _period_rows(periods: Sequence[PeriodSpec]) -> list[Period]:
    return [Period(number=p.number, start_time=p.start_time, end_time=p.end_time) for p in check_periods(periods)]


def create_scheme(*, session: Session, scope: Scope, school_id: int, periods: Sequence[PeriodSpec], name: str = "",
                  term_id: int | None = None) -> PeriodScheme:
    """A school's bell schedule, standing or for one term."""
    school = require_school_admin(session, scope, school_id)
    rows = _period_rows(periods)
    _check_scheme_slot(session, school_id, term_id, None)
    scheme = PeriodScheme(school_id=school_id, term_id=term_id,
                          name=_name(name, "作息名称") if (name or "").strip() else f"{school.name}作息")
    scheme.periods = rows
    session.add(scheme)
    session.flush()
    _record(session, scope, "period_scheme", scheme.id, "create", school_id=school_id, term_id=term_id,
            periods=len(rows))
    return scheme


def update_scheme(*, session: Session, scope: Scope, scheme_id: int, name: str = UNSET, term_id: int | None = UNSET,
                  periods: Sequence[PeriodSpec] = UNSET) -> PeriodScheme:
    """Rename, re-target or replace the periods of a scheme.

    Lessons already booked keep the times they were booked with.
    """
    scheme = _get(session, PeriodScheme, scheme_id, "作息时间")
    require_school_admin(session, scope, scheme.school_id)
    changes: dict[str, Any] = {}
    if name is not UNSET:
        scheme.name = changes["name"] = _name(name, "作息名称")
    if term_id is not UNSET and term_id != scheme.term_id:
        _check_scheme_slot(session, scheme.school_id, term_id, scheme.id)
        scheme.term_id = changes["term_id"] = term_id
    if periods is not UNSET:
        rows = _period_rows(periods)
        # Delete the old rows first: the unit of work would insert before deleting and trip period_number_once.
        scheme.periods.clear()
        session.flush()
        scheme.periods.extend(rows)
        changes["periods"] = len(rows)
    session.flush()
    _record(session, scope, "period_scheme", scheme.id, "update", **changes)
    return scheme


__all__ = [
    "UNSET", "Duplicate", "PeriodSpec", "LEVEL_LABEL", "MIN_PASSWORD", "paginate",
    "region_query", "get_region", "create_region", "rename_region",
    "group_query", "create_group", "school_query", "create_school", "update_school",
    "classroom_query", "require_classroom", "create_classroom", "update_classroom",
    "user_clause", "user_query", "require_user", "create_user", "update_user",
    "pairing_query", "require_pairing", "create_pairing", "update_pairing",
    "term_query", "get_term", "create_term", "add_term_day", "remove_term_day",
    "check_periods", "scheme_query", "require_scheme", "create_scheme", "update_scheme",
]
