"""Test factories: a small but realistic world of regions, schools, bells and people.

``World.build(session)`` makes one city with two districts, an urban and a
rural school in each, classrooms, bell schedules that differ between the
urban and the rural school (as they do in life), a term with a holiday and a
make-up day, a pairing, and one user of every role.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, time
from functools import lru_cache

from sqlalchemy.orm import Session

from scheduler.models import (
    Classroom,
    DayKind,
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
from server.core.security import create_access_token, hash_password

PASSWORD = "Sanke-test-pw1"


@lru_cache
def password_hash() -> str:
    return hash_password(PASSWORD)


def add_region(session: Session, name: str, level: RegionLevel, parent: Region | None = None) -> Region:
    region = Region(name=name, level=level, parent_id=parent.id if parent else None)
    session.add(region)
    session.flush()
    region.path = f"{parent.path if parent else '/'}{region.id}/"
    session.flush()
    return region


def add_user(session: Session, username: str, role: Role, *, school: School | None = None,
             region: Region | None = None, classroom: Classroom | None = None, name: str | None = None) -> User:
    user = User(username=username, display_name=name or username, password_hash=password_hash(), role=role,
                school_id=school.id if school else (classroom.school_id if classroom else None),
                region_id=region.id if region else None, classroom_id=classroom.id if classroom else None)
    session.add(user)
    session.flush()
    return user


def add_scheme(session: Session, school: School, bells: list[tuple[str, str]], term: Term | None = None) -> PeriodScheme:
    scheme = PeriodScheme(school_id=school.id, term_id=term.id if term else None, name=f"{school.name}作息")
    scheme.periods = [
        Period(number=i + 1, start_time=time.fromisoformat(a), end_time=time.fromisoformat(b))
        for i, (a, b) in enumerate(bells)
    ]
    session.add(scheme)
    session.flush()
    return scheme


URBAN_BELLS = [("08:00", "08:40"), ("08:50", "09:30"), ("09:50", "10:30"), ("10:40", "11:20"),
               ("14:00", "14:40"), ("14:50", "15:30"), ("15:40", "16:20")]
RURAL_BELLS = [("07:55", "08:40"), ("08:45", "09:35"), ("09:45", "10:35"), ("10:35", "11:25"),
               ("13:50", "14:40"), ("14:45", "15:35"), ("15:40", "16:20")]
"""Rural periods 1-4 contain the urban ones; period 5 contains urban 5 too."""


@dataclass
class World:
    city: Region
    district_a: Region
    district_b: Region
    urban: School
    rural: School
    urban_b: School
    rural_b: School
    main_room: Classroom
    main_room2: Classroom
    recv_room: Classroom
    recv_room2: Classroom
    recv_room_b: Classroom
    term: Term
    pairing: Pairing
    sysadmin: User
    city_admin: User
    urban_admin: User
    rural_admin: User
    admin_b: User
    teacher: User
    teacher2: User
    teacher_b: User
    assistant: User
    terminal_main: User
    terminal_recv: User
    student: User
    researcher_a: User
    researcher_b: User
    researcher_city: User
    extra: dict[str, object] = field(default_factory=dict)

    @classmethod
    def build(cls, session: Session) -> "World":
        city = add_region(session, "示例市", RegionLevel.city)
        da = add_region(session, "东区", RegionLevel.district, city)
        db = add_region(session, "西区", RegionLevel.district, city)
        urban = School(name="东区实验小学", kind=SchoolKind.urban, region_id=da.id)
        rural = School(name="东区石桥村小", kind=SchoolKind.rural, region_id=da.id)
        urban_b = School(name="西区第一小学", kind=SchoolKind.urban, region_id=db.id)
        rural_b = School(name="西区山口村小", kind=SchoolKind.rural, region_id=db.id)
        session.add_all([urban, rural, urban_b, rural_b])
        session.flush()
        rooms = [
            Classroom(school_id=urban.id, name="实验小学 301 主讲教室", capacity=45),
            Classroom(school_id=urban.id, name="实验小学 302 主讲教室", capacity=45),
            Classroom(school_id=rural.id, name="石桥村小 一年级教室", capacity=30),
            Classroom(school_id=rural.id, name="石桥村小 二年级教室", capacity=30),
            Classroom(school_id=rural_b.id, name="山口村小 教室", capacity=25),
        ]
        session.add_all(rooms)
        session.flush()
        term = Term(name="2026-2027 学年第一学期", region_id=city.id,
                    start_date=date(2026, 9, 1), end_date=date(2027, 1, 22))
        term.days = [
            TermDay(day=date(2026, 10, d), kind=DayKind.holiday, name="国庆节") for d in range(1, 8)
        ] + [TermDay(day=date(2026, 10, 10), kind=DayKind.makeup, follows_weekday=5, name="国庆调休（周五课表）")]
        session.add(term)
        session.flush()
        for school in (urban, urban_b):
            add_scheme(session, school, URBAN_BELLS)
        for school in (rural, rural_b):
            add_scheme(session, school, RURAL_BELLS)
        pairing = Pairing(urban_school_id=urban.id, rural_school_id=rural.id, subjects=[], term_id=None)
        session.add(pairing)
        session.add(Pairing(urban_school_id=urban_b.id, rural_school_id=rural_b.id, subjects=["数学"]))
        session.flush()
        w = cls(
            city=city, district_a=da, district_b=db, urban=urban, rural=rural, urban_b=urban_b, rural_b=rural_b,
            main_room=rooms[0], main_room2=rooms[1], recv_room=rooms[2], recv_room2=rooms[3], recv_room_b=rooms[4],
            term=term, pairing=pairing,
            sysadmin=add_user(session, "sysadmin", Role.admin, name="系统管理员"),
            city_admin=add_user(session, "city_admin", Role.admin, region=city, name="市教育局管理员"),
            urban_admin=add_user(session, "urban_admin", Role.admin, school=urban, name="实验小学教务"),
            rural_admin=add_user(session, "rural_admin", Role.admin, school=rural, name="石桥村小教务"),
            admin_b=add_user(session, "admin_b", Role.admin, school=urban_b, name="西区一小教务"),
            teacher=add_user(session, "teacher", Role.teacher, school=urban, name="王老师"),
            teacher2=add_user(session, "teacher2", Role.teacher, school=urban, name="李老师"),
            teacher_b=add_user(session, "teacher_b", Role.teacher, school=urban_b, name="赵老师"),
            assistant=add_user(session, "assistant", Role.teacher, school=rural, name="刘助教"),
            terminal_main=add_user(session, "term_main", Role.terminal, classroom=rooms[0], name="301 终端"),
            terminal_recv=add_user(session, "term_recv", Role.terminal, classroom=rooms[2], name="石桥一年级终端"),
            student=add_user(session, "student", Role.student, school=rural, name="小明"),
            researcher_a=add_user(session, "researcher_a", Role.researcher, region=da, name="东区教研员"),
            researcher_b=add_user(session, "researcher_b", Role.researcher, region=db, name="西区教研员"),
            researcher_city=add_user(session, "researcher_city", Role.researcher, region=city, name="市教研员"),
        )
        return w


def token_for(user: User, secret: str) -> str:
    return create_access_token(user.id, user.role.value, secret, 3600)
