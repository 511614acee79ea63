"""Demo data: one city, three districts and a term in progress, booked by the real rules.

``load_demo`` migrates the database and, in one transaction, builds 示例省 >
清河市 > 城关区 / 东川县 / 西岭县 with about twenty urban and forty rural
schools, their classrooms (one terminal each), bell schedules, a term that
contains today, 城乡结对 pairings, and a few hundred lesson series of all
three kinds.  Every series is booked through ``scheduler.bookings.create_series``
as the system admin, so pairings, bells, holidays and the no-double-booking
rule hold by construction.  An in-memory weekly grid proposes only slots that
look free, so the scheduler rarely has to refuse one; when it does, the
candidate is simply dropped.

Afterwards the lessons that already ended are marked held, missed or
cancelled, as a term in progress looks, and a few demand orders are posted.
Everything is drawn from ``random.Random(2026)``: the same date gives the same
data.
"""

from __future__ import annotations

import random
import time as _time
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from scheduler import clock, patrol, records, research
from scheduler.access import Scope, scope_of
from scheduler.bookings import ReceiverSpec, SeriesSpec, create_series
from scheduler.errors import Conflict, Invalid, SchedulerError
from scheduler.models import (
    AuditEntry,
    Classroom,
    DayKind,
    DemandOffer,
    DemandOrder,
    DemandStatus,
    EducationGroup,
    InstanceStatus,
    LessonInstance,
    LessonKind,
    LessonSeries,
    Occupancy,
    OfferStatus,
    Pairing,
    Period,
    PeriodScheme,
    ReceiverMode,
    Region,
    RegionLevel,
    Role,
    School,
    SchoolKind,
    SeriesStatus,
    Term,
    TermDay,
    User,
    WeekPattern,
)
from scheduler.patrol_models import (
    Evaluation,
    EvaluationMode,
    EvaluationNote,
    PatrolVisit,
    VisitEnd,
)
from scheduler.record_reports import last_days
from scheduler.recordings_models import Recording
from scheduler.records_models import (
    EventKind,
    RecordStatus,
    SessionEvent,
    TeachingRecord,
)
from scheduler.research_models import ActivityKind, ResearchComment
from scheduler.terms import TermCalendar, calendar_of, timetable_weekday
from server.core.config import Settings
from server.core.db import session_scope
from server.core.migrate import migrated_database
from server.core.security import hash_password
from server.demo_media import add_recordings

PASSWORD = "Sanke@2026"
"""The one password of every demo account (hashed once: argon2 is slow on purpose)."""

SEED = 2026

GRADE_ZH = {1: "一年级", 2: "二年级", 3: "三年级", 4: "四年级", 5: "五年级", 6: "六年级",
            7: "七年级", 8: "八年级", 9: "九年级"}
_NUM_ZH = {1: "一", 2: "二", 3: "三", 4: "四", 5: "五", 6: "六", 7: "七", 8: "八", 9: "九"}
_WEEKDAY_ZH = {1: "一", 2: "二", 3: "三", 4: "四", 5: "五", 6: "六", 7: "日"}

URBAN_BELLS = ["08:00-08:40", "08:50-09:30", "10:00-10:40", "10:50-11:30",
               "14:00-14:40", "14:50-15:30", "15:40-16:20", "16:30-17:10"]
"""Urban bells: eight periods, a long break after period 2 (大课间) and lunch after 4."""

RURAL_BELLS = [
    ["07:55-08:40", "08:50-09:35", "09:55-10:40", "10:50-11:35",
     "13:55-14:40", "14:50-15:35", "15:40-16:25", "16:30-17:10"],
    ["07:50-08:40", "08:50-09:30", "10:00-10:45", "10:50-11:35",
     "13:50-14:40", "14:50-15:30", "15:40-16:20", "16:30-17:15"],
]
"""Rural bells ring a little differently, but each period contains the urban one."""

MOUNTAIN_BELLS = ["08:30-09:10", "09:20-10:00", "10:20-11:00", "11:10-11:50",
                  "14:30-15:10", "15:20-16:00", "16:10-16:50"]
"""A mountain school's later day (pupils walk far): bookings need an explicit receiving period."""

SUBJECTS_PRIMARY = ["语文", "数学", "英语", "音乐", "美术", "科学", "体育", "道德与法治", "信息科技"]
SUBJECTS_JUNIOR = ["语文", "数学", "英语", "音乐", "美术", "体育", "道德与法治", "信息科技"]
_SUBJECT_WEIGHT = {"英语": 3.0, "音乐": 3.0, "美术": 3.0, "科学": 2.0, "信息科技": 2.0,
                   "语文": 1.5, "数学": 1.5, "道德与法治": 1.0, "体育": 0.6}
"""专递课堂 mostly fills the subjects rural schools lack teachers for (开齐开足)."""
_PERIOD_WEIGHT = {1: 1.0, 2: 1.5, 3: 2.0, 4: 1.5, 5: 1.5, 6: 1.5, 7: 1.0, 8: 0.5}

_SURNAMES = ("王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董程曹袁邓许傅沈曾彭吕苏卢蒋蔡"
             "贾丁魏薛叶余潘杜戴夏钟汪田任姜范方石姚谭廖邹熊金陆郝孔白崔康毛邱秦江史顾侯邵孟龙万段雷钱汤")
_ADULT_GIVEN = ["芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明", "超",
                "秀英", "霞", "平", "刚", "建华", "文静", "海燕", "晓燕", "红梅", "志强", "建国", "丽娟", "雪梅",
                "春燕", "玉兰", "立新", "晓明", "婷婷", "佳", "瑞", "慧", "欣", "亚楠", "思雨", "晓峰", "国华",
                "永红", "丹", "琳", "伟", "斌", "鹏", "晨", "蕾", "颖", "倩", "宁", "凯", "卫东", "小红"]
_CHILD_GIVEN = ["子轩", "浩然", "梓涵", "一诺", "欣怡", "雨桐", "宇航", "诗涵", "俊熙", "语桐", "沐宸", "若汐",
                "思远", "嘉怡", "天佑", "可馨", "梓萱", "晨曦", "佳怡", "明轩", "小雨", "小龙", "乐乐", "朵朵"]

_CANCEL_REASONS = ["主讲教师外出参加培训", "学校组织秋季运动会", "接收学校网络故障，线路抢修中",
                   "暴雨红色预警，全市停课一天", "期中考试统一安排", "接收学校组织研学活动"]


def _t(hhmm: str) -> time:
    return time.fromisoformat(hhmm)


def _bells(spec: Sequence[str]) -> list[tuple[time, time]]:
    return [(_t(p.split("-")[0]), _t(p.split("-")[1])) for p in spec]


# ---------------------------------------------------------------- the result


@dataclass(frozen=True)
class DemoAccount:
    role: str
    """Role as shown to people (zh-CN), e.g. 主讲教师."""
    username: str
    password: str
    name: str
    try_this: str


@dataclass
class DemoSummary:
    loaded: bool
    """False when the database already had users and nothing was loaded."""
    districts: int = 0
    regions: int = 0
    education_groups: int = 0
    urban_schools: int = 0
    rural_schools: int = 0
    classrooms: int = 0
    pairings: int = 0
    series: int = 0
    series_by_kind: dict[str, int] = field(default_factory=dict)
    pending_series: int = 0
    instances: int = 0
    instances_by_status: dict[str, int] = field(default_factory=dict)
    now: datetime | None = None
    """The local time the data was built around (lessons ending before it are held, missed or cancelled)."""
    today: date | None = None
    today_lessons: int = 0
    users: int = 0
    users_by_role: dict[str, int] = field(default_factory=dict)
    demand_orders: int = 0
    rejected_candidates: int = 0
    """Candidates the scheduler refused (conflict or invalid) and the loader skipped."""
    seconds: float = 0.0
    accounts: list[DemoAccount] = field(default_factory=list)


# ---------------------------------------------------------------- the term


@dataclass(frozen=True)
class TermPlan:
    name: str
    start: date
    end: date
    holidays: tuple[tuple[date, str], ...]
    makeup: tuple[tuple[date, int, str], ...]
    """(day, ISO weekday whose timetable runs, name)."""
    note: str = ""
    """What was bent so the demo has lessons today (zh-CN), or empty."""


def plan_term(today: date) -> TermPlan:
    """The autumn term 2026—2027, with 国庆 and 元旦, made to contain ``today`` as a teaching day.

    Outside the term the whole calendar moves by whole weeks (weekdays stay) so
    that today falls in about week 10; on a weekend or holiday today becomes a
    make-up day (调休) running a weekday's timetable, so the demo shows lessons.
    """
    start, end = date(2026, 9, 1), date(2027, 1, 22)
    holidays = [(date(2026, 10, d), "国庆节") for d in (1, 2, 5, 6, 7)] + [(date(2027, 1, 1), "元旦")]
    makeup = [(date(2026, 9, 27), 3, "国庆调休（周日上周三的课）"), (date(2026, 10, 10), 5, "国庆调休（周六上周五的课）")]
    name = "2026—2027学年第一学期"
    notes = []
    if not start <= today <= end:
        shift = timedelta(weeks=(today - (start + timedelta(weeks=9))).days // 7)
        start, end = start + shift, end + shift
        holidays = [(d + shift, "假期（演示）") for d, _ in holidays]
        makeup = [(d + shift, w, f"调休（上周{_WEEKDAY_ZH[w]}的课）") for d, w, _ in makeup]
        year = start.year if start.month >= 7 else start.year - 1
        name = f"{year}—{year + 1}学年{'第一学期' if start.month >= 7 else '第二学期'}（演示）"
        notes.append(f"今天不在示例学期内，学期已整体平移 {shift.days} 天")
    cal = TermCalendar(start, end, frozenset(d for d, _ in holidays), {d: w for d, w, _ in makeup})
    weekday = timetable_weekday(cal, today)
    if weekday is None or weekday > 5:
        follows = {6: 5, 7: 1}.get(today.isoweekday(), today.isoweekday())
        holidays = [(d, n) for d, n in holidays if d != today]
        makeup = [m for m in makeup if m[0] != today] + [(today, follows, f"演示调课日（上周{_WEEKDAY_ZH[follows]}的课）")]
        notes.append(f"今天是休息日，已设为调课日（上周{_WEEKDAY_ZH[follows]}的课）")
    return TermPlan(name, start, end, tuple(holidays), tuple(makeup), "；".join(notes))


# ---------------------------------------------------------------- in-memory world


@dataclass(eq=False)
class _School:
    row: School
    district: Region
    level: str
    """``primary`` or ``junior``."""
    short: str
    bells: list[tuple[time, time]]
    strong: bool = False
    sort: str = "urban"
    """``urban``; rural: ``central`` (乡镇中心小学), ``village`` (村小), ``point`` (教学点), ``junior``."""
    rooms: list[_Room] = field(default_factory=list)
    teachers: list[_Teacher] = field(default_factory=list)
    admin: User | None = None

    @property
    def id(self) -> int:
        return self.row.id

    @property
    def urban(self) -> bool:
        return self.row.kind is SchoolKind.urban

    @property
    def grades(self) -> set[int]:
        return {g for r in self.rooms for g in r.grades}


@dataclass(eq=False)
class _Room:
    row: Classroom
    school: _School
    grades: frozenset[int]
    studio: bool = False
    homeroom: _Teacher | None = None
    terminal: User | None = None

    @property
    def id(self) -> int:
        return self.row.id


@dataclass(eq=False)
class _Teacher:
    user: User
    school: _School
    subjects: tuple[str, ...]
    master: bool = False

    @property
    def id(self) -> int:
        return self.user.id


@dataclass(eq=False)
class _Pair:
    row: Pairing
    urban: _School
    rural: _School
    urban_room: _Room | None
    rural_room: _Room | None
    subjects: tuple[str, ...]

    def covers(self, subject: str, main: _Room, recv: _Room) -> bool:
        """Mirror of the scheduler's pairing rule for one receiving classroom."""
        return (
            recv.school is self.rural and main.school is self.urban
            and (not self.subjects or subject in self.subjects)
            and (self.urban_room is None or self.urban_room is main)
            and (self.rural_room is None or self.rural_room is recv)
        )


Window = tuple[int, int]
"""Minutes since midnight, [start, end)."""


def _minutes(t: time) -> int:
    return t.hour * 60 + t.minute


class _Grid:
    """Weekly occupancy by resource: (weekday, window, week mask) per booked slot.

    Two series clash on some date exactly when they hold a resource on the
    same timetable weekday, in a common week, at overlapping times (a make-up
    day runs one weekday's timetable in its own week), so this mirrors the
    scheduler's check closely enough that it rarely has to refuse a booking.
    """

    def __init__(self) -> None:
        self._held: dict[tuple[str, int], list[tuple[int, int, int, int]]] = defaultdict(list)

    def free(self, key: tuple[str, int], weekday: int, w: Window, mask: int,
             extra: Iterable[tuple[tuple[str, int], Window]] = ()) -> bool:
        for wd, s, e, m in self._held.get(key, ()):
            if wd == weekday and m & mask and s < w[1] and w[0] < e:
                return False
        return all(not (k == key and s < w[1] and w[0] < e) for k, (s, e) in extra)

    def hold(self, key: tuple[str, int], weekday: int, w: Window, mask: int) -> None:
        self._held[key].append((weekday, w[0], w[1], mask))


@dataclass
class _Candidate:
    kind: LessonKind
    title: str
    subject: str
    grade: int
    main: _Room
    teacher: _Teacher
    weekday: int
    period_from: int
    period_to: int
    week_from: int = 1
    week_to: int = 99
    pattern: WeekPattern = WeekPattern.every
    receivers: list[tuple[_Room, ReceiverMode, _Teacher | None, int | None, Window]] = field(default_factory=list)
    participants: list[int] = field(default_factory=list)
    override: str | None = None


# ---------------------------------------------------------------- schools to build

_URBAN = [
    # name, short name, district index, level, strong (leads a group / streams famous-school lessons)
    ("清河市实验小学", "实验小学", 0, "primary", True),
    ("清河市第一小学", "一小", 0, "primary", False),
    ("清河市第二小学", "二小", 0, "primary", False),
    ("清河市育才小学", "育才小学", 0, "primary", False),
    ("清河师范附属小学", "师范附小", 0, "primary", True),
    ("清河市北关小学", "北关小学", 0, "primary", False),
    ("清河市南街小学", "南街小学", 0, "primary", False),
    ("清河市文昌路小学", "文昌路小学", 0, "primary", False),
    ("清河市滨河小学", "滨河小学", 0, "primary", False),
    ("清河市新华路小学", "新华路小学", 0, "primary", False),
    ("清河市第一中学", "一中", 0, "junior", True),
    ("清河市第二中学", "二中", 0, "junior", False),
    ("清河市实验中学", "实验中学", 0, "junior", True),
    ("清河市第四中学", "四中", 0, "junior", False),
    ("清河市外国语学校", "外国语学校", 0, "junior", False),
    ("东川县实验小学", "东川实小", 1, "primary", True),
    ("东川县城关小学", "东川城关小学", 1, "primary", False),
    ("东川县第一中学", "东川一中", 1, "junior", False),
    ("西岭县实验小学", "西岭实小", 2, "primary", True),
    ("西岭县城关中学", "西岭城关中学", 2, "junior", False),
]

_TOWNS = [
    # district index, town, villages ("村小" or "教学点" suffix included), has a junior middle school
    (1, "石门镇", ["柳树湾村小", "杏花村小", "青石沟教学点"], True),
    (1, "龙泉镇", ["大王庄村小", "双井村小", "龙头山教学点", "桃园村小"], True),
    (1, "双河乡", ["河口村小", "槐树坪教学点", "马鞍山村小"], False),
    (1, "白杨镇", ["沙坪村小", "三岔口教学点", "红旗村小", "枣林村小"], False),
    (2, "马家坪镇", ["上马村小", "下庄教学点", "石磨村小"], True),
    (2, "黄土岭乡", ["高家庄村小", "野猪岭教学点", "王家沟村小", "柿子园村小"], False),
    (2, "清水河镇", ["河湾村小", "柳沟教学点", "张家岭村小"], True),
    (2, "高山乡", ["云雾山教学点", "松树坪村小", "石板沟教学点", "鹰嘴岩村小"], False),
]
_MOUNTAIN = {"云雾山教学点", "石板沟教学点"}
"""Schools whose bells do not contain the urban periods."""

_GROUPS = [
    ("清河市实验小学教育集团", "清河市实验小学", ["清河市北关小学"]),
    ("清河师范附小教育集团", "清河师范附属小学", ["清河市滨河小学"]),
    ("清河一中教育集团", "清河市第一中学", ["清河市第四中学"]),
    ("东川县实验小学教育集团", "东川县实验小学", ["东川县城关小学"]),
    ("西岭县实验小学教育集团", "西岭县实验小学", []),
]

_DISTRICTS = [("城关区", "chengguan"), ("东川县", "dongchuan"), ("西岭县", "xiling")]


# ---------------------------------------------------------------- the builder


class _Builder:
    def __init__(self, session: Session, settings: Settings, now: datetime) -> None:
        self.s = session
        self.settings = settings
        self.now = now
        self.today = now.date()
        self.rng = random.Random(SEED)
        self.pw_hash = hash_password(PASSWORD)
        self.grid = _Grid()
        self.names: set[str] = set()
        self.schools: list[_School] = []
        self.rooms: list[_Room] = []
        self.teachers: list[_Teacher] = []
        self.pairs: list[_Pair] = []
        self.students: list[tuple[User, int]] = []
        self.researchers: dict[int, User] = {}
        self.rejected = 0
        self.booked: list[tuple[_Candidate, LessonSeries]] = []

    # ------------------------------------------------------------ helpers

    def _user(self, username: str, name: str, role: Role, *, school: _School | None = None,
              region: Region | None = None, room: _Room | None = None) -> User:
        user = User(username=username, display_name=name, password_hash=self.pw_hash, role=role,
                    school_id=school.id if school else (room.school.id if room else None),
                    region_id=region.id if region else None, classroom_id=room.id if room else None)
        self.s.add(user)
        return user

    def _person(self, child: bool = False) -> str:
        given = _CHILD_GIVEN if child else _ADULT_GIVEN
        for _ in range(50):
            name = self.rng.choice(_SURNAMES) + self.rng.choice(given)
            if name not in self.names:
                self.names.add(name)
                return name
        name = self.rng.choice(_SURNAMES) + self.rng.choice(given) + str(len(self.names))
        self.names.add(name)
        return name

    def _region(self, name: str, level: RegionLevel, parent: Region | None) -> Region:
        region = Region(name=name, level=level, parent_id=parent.id if parent else None, path="")
        self.s.add(region)
        self.s.flush()
        region.path = f"{parent.path if parent else '/'}{region.id}/"
        return region

    def _weighted(self, items: Sequence[str], weights: dict[str, float]) -> str:
        return self.rng.choices(list(items), [weights.get(i, 1.0) for i in items])[0]

    # ------------------------------------------------------------ places and people

    def build_regions(self) -> None:
        self.province = self._region("示例省", RegionLevel.province, None)
        self.city = self._region("清河市", RegionLevel.city, self.province)
        self.districts = [self._region(name, RegionLevel.district, self.city) for name, _ in _DISTRICTS]
        self.s.flush()

    def build_schools(self) -> None:
        groups: dict[str, EducationGroup] = {}
        for gname, leader, _ in _GROUPS:
            region = self.districts[1] if "东川" in leader else self.districts[2] if "西岭" in leader else self.city
            groups[leader] = EducationGroup(name=gname, region_id=region.id)
        self.s.add_all(groups.values())
        self.s.flush()
        member_of = {m: groups[leader] for _, leader, members in _GROUPS for m in [leader, *members]}
        self.groups = groups
        for name, short, d, level, strong in _URBAN:
            group = member_of.get(name)
            row = School(name=name, kind=SchoolKind.urban, region_id=self.districts[d].id,
                         group_id=group.id if group else None)
            self.schools.append(_School(row, self.districts[d], level, short, _bells(URBAN_BELLS), strong))
        for d, town, villages, has_junior in _TOWNS:
            county = _DISTRICTS[d][0]
            entries = [(f"{county}{town}中心小学", f"{town}中心小学", "central")]
            entries += [(f"{town}{v}", v, "point" if v.endswith("教学点") else "village") for v in villages]
            if has_junior:
                entries.append((f"{county}{town}初级中学", f"{town}中学", "junior"))
            for name, short, sort in entries:
                bells = _bells(MOUNTAIN_BELLS) if short in _MOUNTAIN else _bells(self.rng.choice(RURAL_BELLS))
                row = School(name=name, kind=SchoolKind.rural, region_id=self.districts[d].id)
                self.schools.append(_School(row, self.districts[d], "junior" if sort == "junior" else "primary",
                                            short, bells, sort=sort))
        self.s.add_all(sc.row for sc in self.schools)
        self.s.flush()

    def build_bells_and_rooms(self) -> None:
        for sc in self.schools:
            scheme = PeriodScheme(school_id=sc.id, term_id=None,
                                  name=f"{sc.short}作息时间" + ("（山区）" if sc.short in _MOUNTAIN else ""))
            scheme.periods = [Period(number=i + 1, start_time=a, end_time=b) for i, (a, b) in enumerate(sc.bells)]
            self.s.add(scheme)
            for grades, name, cap, studio in self._room_plan(sc):
                room = _Room(Classroom(school_id=sc.id, name=name, capacity=cap), sc, frozenset(grades), studio)
                sc.rooms.append(room)
                self.rooms.append(room)
        self.s.add_all(r.row for r in self.rooms)
        self.s.flush()

    def _room_plan(self, sc: _School) -> list[tuple[tuple[int, ...], str, int, bool]]:
        rng = self.rng
        if sc.urban:
            pool = [1, 2, 3, 4, 5, 6] if sc.level == "primary" else [7, 8, 9]
            count = min(rng.choice([2, 3, 3, 4]), len(pool) + sc.strong)
            plan: list[tuple[tuple[int, ...], str, int, bool]] = []
            if sc.strong:
                plan.append((tuple(pool), "名师工作室 录播教室", rng.choice([40, 50, 60]), True))
                count = max(count - 1, 2)
            for g in sorted(rng.sample(pool, count)):
                plan.append(((g,), f"{GRADE_ZH[g]}({rng.randint(1, 6)})班 录播教室", rng.randint(40, 50), False))
            return plan
        sort = sc.sort
        if sort == "junior":
            return [((g,), f"{GRADE_ZH[g]}(1)班 接收教室", rng.randint(28, 35), False) for g in (7, 8, 9)]
        if sort == "central":
            parts = rng.choice([[(1, 2), (3, 4), (5, 6)], [(1, 2), (3, 4), (5,), (6,)], [(1, 2, 3), (4,), (5, 6)]])
            low, high = 20, 35
        elif sort == "point":
            parts = rng.choice([[(1, 2), (3, 4)], [(1,), (2, 3)], [(1, 2), (3,)]])
            low, high = 15, 22
        else:
            parts = rng.choice([[(1, 2, 3), (4, 5, 6)], [(1, 2), (3, 4), (5, 6)], [(1, 2, 3), (4,), (5, 6)]])
            low, high = 15, 30
        plan = []
        for grades in parts:
            if len(grades) == 1:
                name = f"{GRADE_ZH[grades[0]]} 接收教室"
            elif len(grades) == 2:
                name = f"{_NUM_ZH[grades[0]]}{_NUM_ZH[grades[1]]}年级复式班 接收教室"
            else:
                name = f"{_NUM_ZH[grades[0]]}至{_NUM_ZH[grades[-1]]}年级复式班 接收教室"
            plan.append((grades, name, rng.randint(low, high), False))
        return plan

    def build_people(self) -> None:
        rng = self.rng
        self.sysadmin = self._user("admin", "系统管理员", Role.admin)
        self.city_admin = self._user("city_admin", "清河市教育局 电教馆管理员", Role.admin, region=self.city)
        self.district_admins = [
            self._user(f"{code}_admin", f"{name}教育局管理员", Role.admin, region=self.districts[i])
            for i, (name, code) in enumerate(_DISTRICTS)
        ]
        for i, (name, code) in enumerate(_DISTRICTS):
            self.researchers[self.districts[i].id] = self._user(
                f"researcher_{code}", self._person(), Role.researcher, region=self.districts[i])
        # a person's name only: every page shows the role and region beside it (张伟（教研员 · 城关区）)
        self.researcher_city = self._user("researcher_city", self._person(), Role.researcher,
                                          region=self.city)
        student_no = 0
        for sc in self.schools:
            sc.admin = self._user(f"sadmin{sc.id:02d}", f"{sc.short}教务处", Role.admin, school=sc)
            if sc.urban:
                bundles: list[tuple[str, ...]] = (
                    [("语文",), ("数学",), ("英语",), ("音乐", "美术"), ("科学", "信息科技"), ("体育", "道德与法治")]
                    if sc.level == "primary" else
                    [("语文",), ("数学",), ("英语",), ("道德与法治", "信息科技"), ("音乐", "美术"), ("体育",)]
                )
                extra = [("英语",), ("美术",), ("音乐",), ("语文",), ("数学",), ("信息科技",)]
                bundles += rng.sample(extra, max(0, len(sc.rooms) - 2))
            else:
                side = ["音乐", "美术", "体育", "科学", "道德与法治"]
                bundles = [(("语文", "数学")[i % 2], rng.choice(side)) for i in range(max(2, len(sc.rooms)))]
            for n, subjects in enumerate(bundles, 1):
                t = _Teacher(self._user(f"t{sc.id:02d}{n:02d}", self._person(), Role.teacher, school=sc), sc, subjects)
                sc.teachers.append(t)
                self.teachers.append(t)
            if sc.strong:
                for t in rng.sample(sc.teachers, 2):
                    t.master = True
            for room, t in zip(sc.rooms, sc.teachers if not sc.urban else []):
                room.homeroom = t
            for room in sc.rooms:
                room.terminal = self._user(f"room{room.id:03d}", f"{sc.short} {room.row.name} 终端", Role.terminal,
                                           room=room)
            if not sc.urban:
                grades = sorted(g for g in sc.grades if g >= 3) or sorted(sc.grades)
                for _ in range(2):
                    student_no += 1
                    user = self._user(f"s{student_no:03d}", self._person(child=True), Role.student, school=sc)
                    self.students.append((user, rng.choice(grades)))
        self.s.flush()

    # ------------------------------------------------------------ term

    def build_term(self) -> None:
        plan = plan_term(self.today)
        self.term_note = plan.note
        term = Term(name=plan.name, region_id=self.city.id, start_date=plan.start, end_date=plan.end)
        term.days = [TermDay(day=d, kind=DayKind.holiday, name=n) for d, n in plan.holidays] + [
            TermDay(day=d, kind=DayKind.makeup, follows_weekday=w, name=n) for d, w, n in plan.makeup]
        self.s.add(term)
        self.s.flush()
        self.term = term
        self.cal = calendar_of(term)
        self.weeks = self.cal.weeks
        self.today_weekday = timetable_weekday(self.cal, self.today)

    # ------------------------------------------------------------ pairings

    def build_pairings(self) -> None:
        rng = self.rng
        urban = [sc for sc in self.schools if sc.urban]
        rural = [sc for sc in self.schools if not sc.urban]
        for r in rural:
            same_level = [u for u in urban if u.level == r.level]
            county_town = [u for u in same_level if u.district is r.district]
            city = [u for u in same_level if u.district is self.districts[0]]
            first = rng.choice(county_town) if county_town and rng.random() < 0.45 else rng.choice(city)
            partners = [first]
            if rng.random() < 0.3:
                partners.append(rng.choice([u for u in same_level if u is not first]))
            for u in partners:
                self._pair(u, r)

    def _pair(self, u: _School, r: _School) -> None:
        rng = self.rng
        subjects_of = sorted({s for t in u.teachers for s in t.subjects})
        subjects: tuple[str, ...] = ()
        if rng.random() < 0.6:
            k = min(len(subjects_of), rng.choice([2, 3, 3, 4]))
            picked: list[str] = []
            while len(picked) < k:
                s = self._weighted(subjects_of, _SUBJECT_WEIGHT)
                if s not in picked:
                    picked.append(s)
            subjects = tuple(picked)
        urban_room = rural_room = None
        if rng.random() < 0.15:
            options = [(a, b) for a in u.rooms if not a.studio for b in r.rooms if a.grades & b.grades]
            if options:
                urban_room, rural_room = rng.choice(options)
        row = Pairing(urban_school_id=u.id, rural_school_id=r.id,
                      urban_classroom_id=urban_room.id if urban_room else None,
                      rural_classroom_id=rural_room.id if rural_room else None,
                      subjects=list(subjects), term_id=self.term.id if rng.random() < 0.3 else None, active=True)
        self.s.add(row)
        self.pairs.append(_Pair(row, u, r, urban_room, rural_room, subjects))
        leader = self.groups.get(u.row.name)
        if leader is not None and r.row.group_id is None and rng.random() < 0.7:
            r.row.group_id = leader.id

    # ------------------------------------------------------------ slots

    def _mask(self, week_from: int, week_to: int, pattern: WeekPattern) -> int:
        mask = 0
        for w in range(week_from, min(week_to, self.weeks) + 1):
            if pattern is WeekPattern.every or (w % 2 == 1) == (pattern is WeekPattern.odd):
                mask |= 1 << w
        return mask

    def _main_window(self, sc: _School, pf: int, pt: int) -> Window:
        return _minutes(sc.bells[pf - 1][0]), _minutes(sc.bells[pt - 1][1])

    def _receiving(self, main: _School, recv: _School, pf: int, pt: int) -> tuple[int | None, Window] | None:
        """The receiving period (None when the bells contain the main slot) and the receiver's window."""
        start, end = self._main_window(main, pf, pt)
        contained = all(any(a <= s and e <= b for a, b in recv.bells) for s, e in main.bells[pf - 1:pt])
        if contained:
            return None, (start, end)
        count = pt - pf
        best: tuple[int, int] | None = None
        for rp in range(1, len(recv.bells) - count + 1):
            rs, re = _minutes(recv.bells[rp - 1][0]), _minutes(recv.bells[rp - 1 + count][1])
            overlap = min(re, end) - max(rs, start)
            if overlap > 0 and (best is None or overlap > best[1]):
                best = (rp, overlap)
        if best is None:
            return None
        rp = best[0]
        rs, re = _minutes(recv.bells[rp - 1][0]), _minutes(recv.bells[rp - 1 + count][1])
        return rp, (min(rs, start), max(re, end))

    def _slot(self) -> tuple[int, int, int]:
        weekday = self.rng.randint(1, 5)
        if self.rng.random() < 0.12:
            pf = self.rng.choice([1, 3, 5, 7])
            return weekday, pf, pf + 1
        p = self.rng.choices(list(_PERIOD_WEIGHT), list(_PERIOD_WEIGHT.values()))[0]
        return weekday, p, p

    def _weeks(self) -> tuple[int, int, WeekPattern]:
        r = self.rng.random()
        if r < 0.08:
            return self.rng.choice([2, 3]), 99, WeekPattern.every
        if r < 0.13:
            return 1, self.rng.choice([16, 17, 18]), WeekPattern.every
        return 1, 99, WeekPattern.every

    # ------------------------------------------------------------ booking

    def _fits(self, c: _Candidate, weekday: int, mask: int) -> bool:
        """Whether the main slot, receivers and assistants of ``c`` are free in the grid."""
        w = self._main_window(c.main.school, c.period_from, c.period_to)
        tentative: list[tuple[tuple[str, int], Window]] = []
        for key, win in [(("t", c.teacher.id), w), (("c", c.main.id), w)] + [
            (("c", r.id), rw) for r, _, _, _, rw in c.receivers] + [
                (("t", a.id), rw) for _, _, a, _, rw in c.receivers if a is not None]:
            if not self.grid.free(key, weekday, win, mask, tentative):
                return False
            tentative.append((key, win))
        return True

    def _free_teacher(self, options: Sequence[_Teacher], weekday: int, w: Window, mask: int,
                      taken: Iterable[tuple[tuple[str, int], Window]] = ()) -> _Teacher | None:
        taken = list(taken)
        for t in options:
            if self.grid.free(("t", t.id), weekday, w, mask, taken):
                return t
        return None

    def _add_receiver(self, c: _Candidate, room: _Room, mode: ReceiverMode, mask: int,
                      assistant_required: bool) -> bool:
        got = self._receiving(c.main.school, room.school, c.period_from, c.period_to)
        if got is None:
            return False
        rp, rw = got
        taken = [(("c", r.id), w) for r, _, _, _, w in c.receivers] + [
            (("t", a.id), w) for _, _, a, _, w in c.receivers if a is not None] + [
            (("t", c.teacher.id), self._main_window(c.main.school, c.period_from, c.period_to))]
        if not self.grid.free(("c", room.id), c.weekday, rw, mask, taken):
            return False
        staff = sorted(room.school.teachers, key=lambda t: t is not room.homeroom)
        assistant = self._free_teacher(staff, c.weekday, rw, mask, taken)
        if assistant is None and assistant_required:
            return False
        c.receivers.append((room, mode, assistant, rp, rw))
        return True

    def _book(self, c: _Candidate) -> LessonSeries | None:
        mask = self._mask(c.week_from, c.week_to, c.pattern)
        if not self._fits(c, c.weekday, mask):
            return None
        spec = SeriesSpec(
            kind=c.kind, title=c.title, subject=c.subject, grade=GRADE_ZH[c.grade], term_id=self.term.id,
            main_classroom_id=c.main.id, main_teacher_id=c.teacher.id, weekday=c.weekday,
            period_from=c.period_from, period_to=c.period_to, week_from=c.week_from, week_to=c.week_to,
            week_pattern=c.pattern,
            receivers=tuple(ReceiverSpec(r.id, mode, a.id if a else None, rp) for r, mode, a, rp, _ in c.receivers),
            participant_ids=tuple(c.participants), pairing_override_reason=c.override,
        )
        try:
            series = create_series(self.s, spec, actor=self.sysadmin, scope=self.scope,
                                   not_before=self.term.start_date)  # the term so far is history
        except (Conflict, Invalid):
            self.rejected += 1
            return None
        w = self._main_window(c.main.school, c.period_from, c.period_to)
        self.grid.hold(("t", c.teacher.id), c.weekday, w, mask)
        self.grid.hold(("c", c.main.id), c.weekday, w, mask)
        for r, _, a, _, rw in c.receivers:
            self.grid.hold(("c", r.id), c.weekday, rw, mask)
            if a is not None:
                self.grid.hold(("t", a.id), c.weekday, rw, mask)
        self.booked.append((c, series))
        return series

    def _pairs_for(self, main: _Room, subject: str) -> list[tuple[_Pair, _Room]]:
        return [(p, r) for p in self.pairs if p.urban is main.school
                for r in p.rural.rooms if p.covers(subject, main, r)]

    def dedicated(self, *, weekday: int | None = None, periods: tuple[int, int] | None = None,
                  main_school: _School | None = None, whole_term: bool = False) -> LessonSeries | None:
        rng = self.rng
        pair = rng.choice([p for p in self.pairs if main_school is None or p.urban is main_school] or self.pairs)
        u = pair.urban
        subject = rng.choice(pair.subjects) if pair.subjects else self._weighted(
            sorted({s for t in u.teachers for s in t.subjects}), _SUBJECT_WEIGHT)
        rooms = [pair.urban_room] if pair.urban_room else [r for r in u.rooms if not r.studio]
        rooms = [r for r in rooms if r.grades & (pair.rural.grades if not pair.rural_room else pair.rural_room.grades)]
        if not rooms:
            return None
        main = rng.choice(rooms)
        grade = rng.choice(sorted(main.grades & pair.rural.grades)) if main.grades & pair.rural.grades else None
        if grade is None:
            return None
        takers = [t for t in u.teachers if subject in t.subjects]
        rng.shuffle(takers)
        first_recv = [r for r in (pair.rural.rooms if not pair.rural_room else [pair.rural_room])
                      if grade in r.grades and pair.covers(subject, main, r)]
        others = [r for p, r in self._pairs_for(main, subject) if grade in r.grades and r not in first_recv]
        if not takers or not first_recv:
            return None
        for _ in range(10):
            wd, pf, pt = self._slot()
            if weekday is not None:
                wd = weekday
            if periods is not None:
                pf, pt = periods
            week_from, week_to, pattern = (1, 99, WeekPattern.every) if whole_term else self._weeks()
            mask = self._mask(week_from, week_to, pattern)
            w = self._main_window(u, pf, pt)
            teacher = self._free_teacher(takers, wd, w, mask)
            if teacher is None or not self.grid.free(("c", main.id), wd, w, mask):
                continue
            c = _Candidate(LessonKind.dedicated, f"{GRADE_ZH[grade]}{subject} 专递课堂", subject, grade, main,
                           teacher, wd, pf, pt, week_from, week_to, pattern)
            if not self._add_receiver(c, rng.choice(first_recv), ReceiverMode.interactive, mask, True):
                continue
            extra = rng.choices([0, 1, 2], [0.5, 0.35, 0.15])[0]
            for room in rng.sample(others, min(len(others), extra * 2)):
                if len(c.receivers) > extra:
                    break
                if room.school in {r.school for r, *_ in c.receivers} and rng.random() < 0.7:
                    continue
                mode = ReceiverMode.listen_only if rng.random() < 0.2 else ReceiverMode.interactive
                self._add_receiver(c, room, mode, mask, True)
            series = self._book(c)
            if series is not None:
                return series
        return None

    def dedicated_override(self) -> LessonSeries | None:
        """A dedicated lesson to an unpaired school, booked by an admin with a reason."""
        rng = self.rng
        for _ in range(20):
            u = rng.choice([sc for sc in self.schools if sc.urban and sc.level == "primary"])
            r = rng.choice([sc for sc in self.schools if not sc.urban and sc.level == "primary"
                            and not any(p.urban is u and p.rural is sc for p in self.pairs)])
            main = rng.choice([m for m in u.rooms if not m.studio])
            grade = rng.choice(sorted(main.grades))
            recv = [x for x in r.rooms if grade in x.grades]
            takers = [t for t in u.teachers if "美术" in t.subjects or "音乐" in t.subjects]
            if not recv or not takers:
                continue
            subject = "美术" if "美术" in takers[0].subjects else "音乐"
            wd, pf, pt = self._slot()
            mask = self._mask(1, 99, WeekPattern.every)
            c = _Candidate(LessonKind.dedicated, f"{GRADE_ZH[grade]}{subject} 专递课堂（临时帮扶）", subject, grade,
                           main, takers[0], wd, pf, pf, override="教育局统筹：该校音体美教师空缺，结对学校无法安排，临时跨校帮扶")
            if not self._add_receiver(c, recv[0], ReceiverMode.interactive, mask, True):
                continue
            series = self._book(c)
            if series is not None:
                return series
        return None

    def _receivers_anywhere(self, c: _Candidate, count: int, mask: int, listen_share: float) -> None:
        rooms = [r for r in self.rooms if c.grade in r.grades and r.school is not c.main.school and not r.studio]
        self.rng.shuffle(rooms)
        rooms.sort(key=lambda r: r.school.urban)  # rural classrooms first
        for room in rooms:
            if len(c.receivers) >= count:
                break
            if room.school in {r.school for r, *_ in c.receivers}:
                continue
            mode = ReceiverMode.listen_only if self.rng.random() < listen_share else ReceiverMode.interactive
            self._add_receiver(c, room, mode, mask, not room.school.urban)

    def master(self, *, weekday: int | None = None, period: int | None = None) -> LessonSeries | None:
        rng = self.rng
        t = rng.choice([t for t in self.teachers if t.master])
        subject = rng.choice(t.subjects)
        sc = t.school
        research = rng.random() < 0.25
        for _ in range(8):
            main = rng.choice(sc.rooms)
            grade = rng.choice(sorted(main.grades))
            wd, pf, pt = self._slot()
            if weekday is not None:
                wd = weekday
            if period is not None:
                pf = pt = period
            pattern = rng.choice([WeekPattern.odd, WeekPattern.even]) if rng.random() < 0.45 else WeekPattern.every
            if weekday is not None:
                pattern = WeekPattern.every
            mask = self._mask(1, 99, pattern)
            w = self._main_window(sc, pf, pt)
            if not (self.grid.free(("t", t.id), wd, w, mask) and self.grid.free(("c", main.id), wd, w, mask)):
                continue
            if research:
                title = f"网络教研：{GRADE_ZH[grade]}{subject}同课异构研讨（{t.user.display_name}名师工作室）"
            else:
                title = f"名师课堂：{t.user.display_name} {GRADE_ZH[grade]}{subject}示范课"
            c = _Candidate(LessonKind.master, title, subject, grade, main, t, wd, pf, pt, 1, 99, pattern)
            if not research:
                self._receivers_anywhere(c, rng.randint(3, 8), mask, 0.3)
                if not c.receivers:
                    continue
            peers = [p for p in self.teachers if subject in p.subjects and p.school is not sc]
            c.participants = [p.id for p in rng.sample(peers, min(len(peers), rng.randint(3, 9)))]
            series = self._book(c)
            if series is not None:
                return series
        return None

    def famous(self, *, weekday: int | None = None, period: int | None = None) -> LessonSeries | None:
        rng = self.rng
        sc = rng.choice([s for s in self.schools if s.strong])
        for _ in range(8):
            main = rng.choice([r for r in sc.rooms if not r.studio])
            grade = rng.choice(sorted(main.grades))
            subject = rng.choice(sorted({s for t in sc.teachers for s in t.subjects} - {"体育"}))
            takers = [t for t in sc.teachers if subject in t.subjects]
            wd, pf, pt = self._slot()
            if weekday is not None:
                wd = weekday
            if period is not None:
                pf = pt = period
            mask = self._mask(1, 99, WeekPattern.every)
            w = self._main_window(sc, pf, pt)
            teacher = self._free_teacher(rng.sample(takers, len(takers)), wd, w, mask)
            if teacher is None or not self.grid.free(("c", main.id), wd, w, mask):
                continue
            c = _Candidate(LessonKind.famous_school, f"名校网络课堂·{sc.short} {GRADE_ZH[grade]}{subject}", subject,
                           grade, main, teacher, wd, pf, pt)
            self._receivers_anywhere(c, rng.randint(3, 10), mask, 0.6)
            kids = [u.id for u, g in self.students if g == grade]
            c.participants = rng.sample(kids, min(len(kids), rng.randint(4, 12)))
            if not c.receivers and not c.participants:
                continue
            series = self._book(c)
            if series is not None:
                return series
        return None

    def book_all(self) -> None:
        self.scope: Scope = scope_of(self.s, self.sysadmin)
        # Today first: several lessons around the next bell, so the demo has something live soon.
        wd = self.today_weekday
        if wd is not None:
            now_min = self.now.hour * 60 + self.now.minute
            urban_bells = [(_minutes(a), _minutes(b)) for a, b in _bells(URBAN_BELLS)]
            upcoming = [i + 1 for i, (a, _) in enumerate(urban_bells) if a > now_min]
            current = [i + 1 for i, (a, b) in enumerate(urban_bells) if a <= now_min < b]
            nxt = upcoming[0] if upcoming else len(urban_bells)
            paired_primary = [sc for sc in self.schools if sc.urban and sc.level == "primary" and
                              any(p.urban is sc for p in self.pairs)]
            self.rng.shuffle(paired_primary)
            for sc in paired_primary[:4]:
                for _ in range(5):
                    if self.dedicated(weekday=wd, periods=(nxt, nxt), main_school=sc, whole_term=True):
                        break
            for p in current + upcoming[1:3]:
                for _ in range(3):
                    self.dedicated(weekday=wd, periods=(p, p), whole_term=True)
            later = upcoming[1] if len(upcoming) > 1 else nxt
            self.famous(weekday=wd, period=later)
            self.master(weekday=wd, period=later)
        kinds = ["dedicated"] * 240 + ["master"] * 40 + ["famous"] * 35 + ["override"] * 2
        self.rng.shuffle(kinds)
        target = Counter(kinds)
        done: Counter[str] = Counter(c.kind.value if c.kind is not LessonKind.famous_school else "famous"
                                     for c, _ in self.booked)
        makers = {"dedicated": self.dedicated, "master": self.master, "famous": self.famous,
                  "override": self.dedicated_override}
        for _ in range(len(kinds) * 4):
            open_kinds = [k for k in kinds if done[k] < target[k]]
            if not open_kinds:
                break
            k = self.rng.choice(open_kinds)
            if makers[k]() is not None:
                done[k] += 1

    def pending_requests(self) -> None:
        """A few teachers' requests waiting for their school admin's approval."""
        for _ in range(30):
            if sum(1 for c, s in self.booked if s.status is SeriesStatus.pending) >= 3:
                return
            pair = self.rng.choice([p for p in self.pairs if not p.subjects and p.urban_room is None
                                    and p.rural_room is None])
            main = self.rng.choice([r for r in pair.urban.rooms if not r.studio])
            grades = sorted(main.grades & pair.rural.grades)
            if not grades:
                continue
            teacher = self.rng.choice(pair.urban.teachers)
            subject = teacher.subjects[0]
            wd, pf, pt = self._slot()
            mask = self._mask(3, 99, WeekPattern.every)
            c = _Candidate(LessonKind.dedicated, f"{GRADE_ZH[grades[0]]}{subject} 专递课堂（申请）", subject, grades[0],
                           main, teacher, wd, pf, pt, 3, 99)
            recv = [r for r in pair.rural.rooms if grades[0] in r.grades]
            if not recv or not self._add_receiver(c, recv[0], ReceiverMode.interactive, mask, True):
                continue
            if not self._fits(c, wd, mask):
                continue
            spec = SeriesSpec(
                kind=c.kind, title=c.title, subject=subject, grade=GRADE_ZH[c.grade], term_id=self.term.id,
                main_classroom_id=main.id, main_teacher_id=teacher.id, weekday=wd, period_from=pf, period_to=pt,
                week_from=3, week_to=99,
                receivers=tuple(ReceiverSpec(r.id, m, a.id if a else None, rp) for r, m, a, rp, _ in c.receivers))
            try:
                series = create_series(self.s, spec, actor=teacher.user, scope=scope_of(self.s, teacher.user),
                                       not_before=self.term.start_date)
            except (Conflict, Invalid):
                self.rejected += 1
                continue
            self.booked.append((c, series))

    # ------------------------------------------------------------ a term in progress

    def age_past_lessons(self) -> None:
        """Lessons that already ended: ~90% held, ~5% missed, ~5% cancelled (slots freed)."""
        rng = self.rng
        lead = timedelta(minutes=self.settings.room_open_lead_minutes)
        grace = timedelta(minutes=self.settings.room_close_grace_minutes)
        admin_of = {r.id: r.school.admin for r in self.rooms}
        rows = self.s.execute(
            select(LessonInstance.id, LessonInstance.starts_at, LessonInstance.ends_at,
                   LessonInstance.main_classroom_id)
            .where(LessonInstance.status == InstanceStatus.scheduled, LessonInstance.ends_at < self.now)
            .order_by(LessonInstance.id)
        ).all()
        updates, cancelled, audits = [], [], []
        for iid, starts, ends, room_id in rows:
            roll = rng.random()
            opened = starts - lead + timedelta(seconds=rng.randint(0, 15))
            closed = min(ends + grace + timedelta(seconds=rng.randint(0, 15)), self.now)
            row = {"id": iid, "status": InstanceStatus.held, "cancel_reason": None, "room_opened_at": opened,
                   "started_at": starts + timedelta(seconds=rng.randint(0, 4 * 60)), "room_closed_at": closed}
            if roll < 0.05:
                reason = rng.choice(_CANCEL_REASONS)
                row.update(status=InstanceStatus.cancelled, cancel_reason=reason, room_opened_at=None,
                           started_at=None, room_closed_at=None)
                cancelled.append(iid)
                admin = admin_of.get(room_id)
                audits.append(AuditEntry(
                    at=datetime.combine(starts.date() - timedelta(days=1), time(16, rng.randint(0, 59))),
                    actor_id=admin.id if admin else self.sysadmin.id, entity="instance", entity_id=iid,
                    action="cancel", reason=reason, details={}))
            elif roll < 0.10:
                row.update(status=InstanceStatus.missed, started_at=None)
            updates.append(row)
        if updates:
            self.s.execute(update(LessonInstance), updates)
        for i in range(0, len(cancelled), 500):
            self.s.execute(delete(Occupancy).where(Occupancy.instance_id.in_(cancelled[i:i + 500]))
                           .execution_options(synchronize_session=False))
        self.s.add_all(audits)
        self.s.flush()
        self.s.expire_all()  # the bulk statements bypassed the objects booked above

    # ------------------------------------------------------------ demand orders

    def demand_orders(self) -> None:
        rng = self.rng
        wishes = [("音乐", "我校没有专职音乐教师，希望城区学校每周开一节音乐专递课，孩子们很想学唱歌。"),
                  ("美术", "美术课一直由语文老师兼任，希望有专业美术老师带一带。"),
                  ("英语", "三年级起开设英语，缺少英语教师，希望结对学校帮助。"),
                  ("信息科技", "新建了计算机教室，但没有信息科技老师，希望城区学校开课。")]
        rural = [sc for sc in self.schools if not sc.urban and sc.level == "primary"]
        for subject, note in wishes:
            for _ in range(20):
                r = rng.choice(rural)
                rooms = [x for x in r.rooms if max(x.grades) >= 3]
                if not rooms:
                    continue
                room = rng.choice(rooms)
                grade = max(g for g in room.grades)
                slots = [{"weekday": wd, "period": p} for wd, p in
                         sorted({(rng.randint(1, 5), rng.choice([3, 5, 6])) for _ in range(2)})]
                # An urban school with a teacher of the subject and a free slot offers to help.
                offer = None
                for u in rng.sample([sc for sc in self.schools if sc.urban and sc.level == "primary"], 6):
                    mains = [m for m in u.rooms if not m.studio and grade in m.grades] or \
                        [m for m in u.rooms if not m.studio]
                    takers = [t for t in u.teachers if subject in t.subjects]
                    if not mains or not takers:
                        continue
                    slot = slots[0]
                    mask = self._mask(1, 99, WeekPattern.every)
                    w = self._main_window(u, slot["period"], slot["period"])
                    t = self._free_teacher(takers, slot["weekday"], w, mask)
                    m = next((m for m in mains if self.grid.free(("c", m.id), slot["weekday"], w, mask)), None)
                    if t is not None and m is not None:
                        offer = (u, t, m, slot)
                        break
                if offer is None:
                    continue
                order = DemandOrder(rural_school_id=r.id, receiving_classroom_id=room.id, term_id=self.term.id,
                                    subject=subject, grade=GRADE_ZH[grade], preferred_slots=slots, note=note,
                                    status=DemandStatus.open, created_by_id=r.admin.id,  # type: ignore[union-attr]
                                    created_at=self.now - timedelta(days=rng.randint(2, 9), hours=rng.randint(0, 6)))
                self.s.add(order)
                self.s.flush()
                u, t, m, slot = offer
                self.s.add(DemandOffer(
                    order_id=order.id, urban_school_id=u.id, teacher_id=t.id, main_classroom_id=m.id,
                    weekday=slot["weekday"], period_from=slot["period"], period_to=slot["period"],
                    note=f"{t.user.display_name}老师可以承担，每周{_WEEKDAY_ZH[slot['weekday']]}第{slot['period']}节",
                    status=OfferStatus.offered, created_by_id=u.admin.id,  # type: ignore[union-attr]
                    created_at=order.created_at + timedelta(days=1)))
                break
        self.s.flush()

    # ------------------------------------------------------------ the demo accounts

    def pick_accounts(self) -> list[DemoAccount]:
        """Rename the people of a lesson taught today into memorable demo accounts."""
        today_rows = self.s.scalars(
            select(LessonInstance).join(LessonSeries, LessonSeries.id == LessonInstance.series_id)
            .where(LessonInstance.day == self.today, LessonSeries.kind == LessonKind.dedicated,
                   LessonInstance.status != InstanceStatus.cancelled)
            .order_by(LessonInstance.starts_at, LessonInstance.id)
        ).all()
        with_assistant = [i for i in today_rows if any(r.assistant_id and r.mode is ReceiverMode.interactive
                                                       for r in i.series.receivers)]
        upcoming = [i for i in with_assistant if i.starts_at >= self.now]
        ongoing = [i for i in with_assistant if i.starts_at <= self.now < i.ends_at]
        chosen = (upcoming or ongoing or with_assistant or [None])[0]
        if chosen is None:  # no lessons today at all (cannot happen with the term above): fall back to any series
            series = next(s for c, s in self.booked if s.kind is LessonKind.dedicated and s.status is SeriesStatus.approved)
        else:
            series = chosen.series
        room_by_id = {r.id: r for r in self.rooms}
        teacher_by_id = {t.id: t for t in self.teachers}
        main = room_by_id[series.main_classroom_id]
        recv_row = next(r for r in series.receivers if r.assistant_id and r.mode is ReceiverMode.interactive) \
            if any(r.assistant_id and r.mode is ReceiverMode.interactive for r in series.receivers) else series.receivers[0]
        recv = room_by_id[recv_row.classroom_id]
        teacher = teacher_by_id[series.main_teacher_id]
        assistant = teacher_by_id.get(recv_row.assistant_id or -1)
        teacher.user.username = "teacher"
        assert main.terminal is not None and recv.terminal is not None
        main.terminal.username = "terminal_main"
        recv.terminal.username = "terminal_recv"
        if assistant is not None:
            assistant.user.username = "assistant"
        main.school.admin.username = "school_admin"  # type: ignore[union-attr]
        recv.school.admin.username = "rural_admin"  # type: ignore[union-attr]
        researcher = self.researchers[main.school.district.id]
        researcher.username = "researcher"
        student = self._pick_student()
        when = f"{chosen.starts_at:%H:%M}" if chosen is not None else f"周{_WEEKDAY_ZH[series.weekday]}"
        day_word = "今天" if chosen is not None else "每周"
        lesson = f"{day_word} {when}《{series.title}》"
        if chosen is not None:  # as listed again on later starts (saved_accounts)
            lead = timedelta(minutes=self.settings.room_open_lead_minutes)
            lesson += f"（{chosen.starts_at - lead:%H:%M} 开放课堂）"
        accounts = [
            DemoAccount("系统管理员", "admin", PASSWORD, "系统管理员", "全部区域、学校、学期、作息与排课；审批与审计"),
            DemoAccount("市教育局管理员", "city_admin", PASSWORD, self.city_admin.display_name,
                        "全市课表与开课率；城乡结对与需求订单"),
            DemoAccount("城区学校管理员", "school_admin", PASSWORD, main.school.row.name,
                        "本校排课、调课、停课、代课；审批教师的排课申请"),
            DemoAccount("乡村学校管理员", "rural_admin", PASSWORD, recv.school.row.name,
                        "本校接收课表；发布需求订单"),
            DemoAccount("主讲教师", "teacher", PASSWORD, f"{teacher.user.display_name}（{main.school.short}）",
                        f"{lesson}，主讲：开始上课、同屏、连麦"),
            DemoAccount("主讲教室终端", "terminal_main", PASSWORD, main.terminal.display_name,
                        f"在教室电脑上登录，{lesson}"),
            DemoAccount("接收教室终端", "terminal_recv", PASSWORD, recv.terminal.display_name,
                        "接收课堂：举手、上台发言"),
        ]
        if assistant is not None:
            accounts.append(DemoAccount("助教", "assistant", PASSWORD,
                                        f"{assistant.user.display_name}（{recv.school.short}）", "接收教室现场助教"))
        if student is not None:
            accounts.append(DemoAccount("学生", "student", PASSWORD, student[0], student[1]))
        accounts += [
            DemoAccount("教研员（区县）", "researcher", PASSWORD,
                        f"{researcher.display_name}（{main.school.district.name}）",
                        f"巡课{main.school.district.name}的课堂、评课"),
            DemoAccount("教研员（市）", "researcher_city", PASSWORD,
                        f"{self.researcher_city.display_name}（{self.city.name}）",
                        "全市巡课、教学记录与统计"),
        ]
        self.s.flush()
        return accounts

    def _pick_student(self) -> tuple[str, str] | None:
        famous = [(c, s) for c, s in self.booked if s.kind is LessonKind.famous_school and c.participants]
        if not famous:
            return None
        todays = [(c, s) for c, s in famous if c.weekday == self.today_weekday]
        c, s = (todays or famous)[0]
        user = next(u for u, _ in self.students if u.id == c.participants[0])
        user.username = "student"
        hint = f"在家收看《{s.title}》" + (f"（今天 第{c.period_from}节）" if todays else "") + "，可回看录播"
        return user.display_name, hint


# ---------------------------------------------------------------- teaching and patrol records

RECORD_DAYS = 30
"""The lessons of the last ``RECORD_DAYS`` days (``scheduler.record_reports.last_days``: today and the 29
before it, the reports' default range) have session logs and teaching records, and are patrolled.  Lessons
before that have neither (as if record keeping started a month ago): a report over earlier dates
counts them missed without a record (``未开课，其中无记录``), as it would any lesson without one."""
LINK_DAYS = 3
"""Lessons of the last ``LINK_DAYS`` days with lessons (school days: a Monday's are the Thursday, the
Friday and the Monday itself) also get link samples (the bulk of a real log: a sample per
connection every ``LINK_EVERY_S`` s); the others of the month get their joins, leaves, drops,
publishes, stage turns and hands, and simply have no link-quality figures.  Samples for the whole
month would make ``sanke demo`` take minutes (every record is computed from its log)."""
LINK_EVERY_S = 10
"""Link samples per connection, as the event log keeps them (``SANKE_EVENTLOG_LINK_INTERVAL``-like)."""

_EVAL_COMMENTS = [
    "教学目标明确，城乡两端互动充分，接收课堂学生参与积极。", "板书与同屏课件配合得当，节奏适中。",
    "建议多给接收课堂学生发言机会，关注远端学生的学习状态。", "导入新颖，小组活动组织有序；远端音量略小，可调整麦克风。",
    "重难点突出，练习设计有层次。", "连麦环节等待时间稍长，建议提前与助教约定上台顺序。",
]
_NOTES = ["开场问候两端学生，氛围好", "接收课堂举手上台回答", "同屏展示课件", "小组讨论", "课堂小结"]


class _RecordsBuilder:
    """Session events of the last month's lessons → ``scheduler.records.refresh`` → teaching and
    attendance records; then patrol visits and evaluations of those lessons.

    Held lessons: the main classroom joins before the bell and publishes camera and microphone
    (a few start late, a few stop halfway: 部分开课); receiving classrooms join (a few never do,
    a few drop and resume), some go on stage after raising a hand; home students join from home.
    Missed lessons: the receiving classrooms wait ten minutes and leave. Link samples every
    ``LINK_EVERY_S`` seconds per connection, worse for village schools and teaching points, with
    an occasional bad spell.  Drawn from its own ``random.Random`` so the timetable stays the same.
    """

    def __init__(self, b: _Builder) -> None:
        self.b = b
        self.s = b.s
        self.now = b.now
        self.rng = random.Random(SEED + 1)
        self.rooms = {r.id: r for r in b.rooms}
        self.events: list[dict[str, object]] = []
        self.recorded: list[int] = []

    # ------------------------------------------------------------ events

    def _ev(self, iid: int, at: datetime, kind: EventKind, pid: str, role: str, user_id: int | None,
            classroom_id: int | None, data: dict[str, object] | None = None) -> None:
        self.events.append({"instance_id": iid, "at": at, "kind": kind, "participant_id": pid, "user_id": user_id,
                            "classroom_id": classroom_id, "role": role, "data": data})

    def _quality(self, room: _Room | None) -> tuple[float, float]:
        """(base RTT ms, base loss) of a connection."""
        if room is None:
            return self.rng.uniform(30, 90), 0.004
        sort = room.school.sort
        if room.school.short in _MOUNTAIN or sort == "point":
            return self.rng.uniform(90, 170), 0.015
        if sort in ("village",):
            return self.rng.uniform(50, 110), 0.008
        return self.rng.uniform(15, 45), 0.002

    def _samples(self, iid: int, pid: str, role: str, uid: int | None, cid: int | None, room: _Room | None,
                 start: datetime, end: datetime) -> None:
        rng = self.rng
        rtt0, loss0 = self._quality(room)
        bad_from = bad_to = -1.0
        span = (end - start).total_seconds()
        if span > 120 and rng.random() < 0.2:
            bad_from = rng.uniform(0, span - 60)
            bad_to = bad_from + rng.uniform(20, 120)
        t = rng.uniform(2, LINK_EVERY_S)
        bitrate = 900 if role != "student" else 600
        while t < span:
            bad = bad_from <= t < bad_to
            loss = min(0.5, rng.expovariate(1 / loss0)) if not bad else rng.uniform(0.06, 0.18)
            rtt = rtt0 * rng.uniform(0.85, 1.3) * (rng.uniform(3, 6) if bad and rng.random() < 0.5 else 1)
            self._ev(iid, start + timedelta(seconds=t), EventKind.link_quality, pid, role, uid, cid,
                     {"loss": round(loss, 4), "rtt_ms": round(rtt, 1), "jitter_ms": round(rtt * 0.08, 1),
                      "bitrate_kbps": round(bitrate * (0.5 if bad else rng.uniform(0.9, 1.1)))})
            t += LINK_EVERY_S

    def _lesson(self, iid: int, inst: LessonInstance, status: InstanceStatus, full: bool) -> datetime | None:
        """Write one lesson's events; returns the first publish (the lesson's real start), if any."""
        rng = self.rng
        starts, ends = inst.starts_at, inst.ends_at
        series = inst.series
        main_room = self.rooms.get(inst.main_classroom_id)
        main_uid = main_room.terminal.id if main_room and main_room.terminal else inst.teacher_id
        n = 0

        def pid() -> str:
            nonlocal n
            n += 1
            return f"demo-{iid}-{n}"

        held = status is InstanceStatus.held
        first_publish: datetime | None = None
        if held:
            roll = rng.random()
            late = rng.uniform(320, 600) if roll < 0.07 else rng.uniform(0, 200)
            first_publish = starts + timedelta(seconds=late)
            stop = ends - timedelta(seconds=rng.uniform(0, 45))
            if rng.random() < 0.03:  # the main classroom lost its uplink for good: 部分开课
                stop = first_publish + (ends - starts) * rng.uniform(0.3, 0.6)
            m = pid()
            joined = starts - timedelta(seconds=rng.uniform(60, 420))
            self._ev(iid, joined, EventKind.join, m, "main", main_uid, inst.main_classroom_id)
            for source in ("camera", "microphone"):
                self._ev(iid, first_publish, EventKind.publish, m, "main", main_uid, inst.main_classroom_id,
                         {"source": source})
            if series.kind is not LessonKind.famous_school and rng.random() < 0.5:
                shown = first_publish + timedelta(seconds=rng.uniform(120, 600))
                self._ev(iid, shown, EventKind.publish, m, "main", main_uid, inst.main_classroom_id, {"source": "screen"})
                self._ev(iid, min(stop, shown + timedelta(seconds=rng.uniform(300, 900))), EventKind.unpublish, m,
                         "main", main_uid, inst.main_classroom_id, {"source": "screen"})
            for source in ("camera", "microphone"):
                self._ev(iid, stop, EventKind.unpublish, m, "main", main_uid, inst.main_classroom_id, {"source": source})
            self._ev(iid, stop + timedelta(seconds=2), EventKind.leave, m, "main", main_uid, inst.main_classroom_id,
                     {"reason": "client_left"})
            if full:
                self._samples(iid, m, "main", main_uid, inst.main_classroom_id, main_room, joined, stop)
        on_stage = 0
        for r in series.receivers:
            room = self.rooms.get(r.classroom_id)
            uid = room.terminal.id if room and room.terminal else None
            if rng.random() < (0.05 if held else 0.5):
                continue  # never came (or, for a missed lesson, did not bother to wait)
            p = pid()
            joined = starts - timedelta(seconds=rng.uniform(30, 400)) if rng.random() < 0.9 \
                else starts + timedelta(seconds=rng.uniform(60, 600))
            left = (ends + timedelta(seconds=rng.uniform(0, 90))) if held else starts + timedelta(minutes=10)
            self._ev(iid, joined, EventKind.join, p, "receiving", uid, r.classroom_id)
            if held and rng.random() < 0.08:  # dropped and came back
                drop = joined + (left - joined) * rng.uniform(0.2, 0.8)
                self._ev(iid, drop, EventKind.disconnect, p, "receiving", uid, r.classroom_id)
                self._ev(iid, drop + timedelta(seconds=rng.uniform(8, 120)), EventKind.resume, p, "receiving", uid,
                         r.classroom_id)
            if held and r.mode is ReceiverMode.interactive and on_stage < 2 and rng.random() < 0.5:
                on_stage += 1
                up = starts + timedelta(seconds=rng.uniform(600, 1800))
                self._ev(iid, up - timedelta(seconds=rng.uniform(5, 40)), EventKind.hand_raise, p, "receiving", uid,
                         r.classroom_id)
                self._ev(iid, up, EventKind.stage_on, p, "receiving", uid, r.classroom_id)
                self._ev(iid, up, EventKind.hand_lower, p, "receiving", uid, r.classroom_id)
                self._ev(iid, up + timedelta(seconds=rng.uniform(45, 240)), EventKind.stage_off, p, "receiving", uid,
                         r.classroom_id)
            self._ev(iid, left, EventKind.leave, p, "receiving", uid, r.classroom_id, {"reason": "client_left"})
            if full and held:
                self._samples(iid, p, "receiving", uid, r.classroom_id, room, joined, left)
        if held:
            for sp in series.participants:
                if rng.random() < 0.15:
                    continue
                p = pid()
                joined = starts + timedelta(seconds=rng.uniform(-300, 400))
                left = ends - timedelta(seconds=rng.uniform(0, 300)) if rng.random() < 0.3 else ends
                self._ev(iid, joined, EventKind.join, p, "student", sp.user_id, None)
                if rng.random() < 0.1:
                    self._ev(iid, joined + timedelta(seconds=rng.uniform(120, 900)), EventKind.chat, p, "student",
                             sp.user_id, None, {"text": "老师好，听得很清楚"})
                self._ev(iid, left, EventKind.leave, p, "student", sp.user_id, None, {"reason": "client_left"})
                if full:
                    self._samples(iid, p, "student", sp.user_id, None, None, joined, left)
        return first_publish

    def build(self) -> None:
        insts = self.s.scalars(
            select(LessonInstance)
            .where(LessonInstance.day >= last_days(RECORD_DAYS, self.now.date())[0],
                   LessonInstance.status.in_([InstanceStatus.held, InstanceStatus.missed]),
                   LessonInstance.room_closed_at.is_not(None), LessonInstance.room_closed_at <= self.now)
            .order_by(LessonInstance.starts_at, LessonInstance.id)
        ).all()
        school_days = sorted({i.day for i in insts})
        cutoff = school_days[-LINK_DAYS] if len(school_days) >= LINK_DAYS else date.min
        starts: list[dict[str, object]] = []
        for inst in insts:
            first = self._lesson(inst.id, inst, inst.status, inst.day >= cutoff)
            if first is not None:
                starts.append({"id": inst.id, "started_at": first})
            self.recorded.append(inst.id)
            if len(self.events) >= 20_000:
                self._flush()
        self._flush()
        if starts:
            self.s.execute(update(LessonInstance), starts)
        self.s.flush()
        # The records are computed in a session of their own on the same connection (the same
        # transaction): the builder's session holds thousands of objects, which every bulk delete and
        # autoflush of ``records.store`` would scan; this one is emptied every few hundred lessons.
        grace = timedelta(minutes=self.b.settings.record_late_grace_minutes)
        side = Session(bind=self.s.connection(), autoflush=False)
        for k, iid in enumerate(self.recorded, 1):
            records.refresh(side, iid, now=self.now, late_grace=grace)
            if k % 200 == 0:
                side.flush()
                side.expunge_all()
        side.flush()
        side.expunge_all()

    def _flush(self) -> None:
        if self.events:
            self.s.execute(insert(SessionEvent.__table__), self.events)
            self.events = []

    # ------------------------------------------------------------ patrol

    def patrol(self) -> int:
        """Researchers patrolled about a quarter of the last month's held lessons and evaluated most of those."""
        rng = self.rng
        b = self.b
        rubric = patrol.create_rubric(
            self.s, scope_of(self.s, b.sysadmin), region_id=b.city.id, name="专递课堂评课表",
            description="城乡同步课堂课堂教学评价", now=self.now - timedelta(days=60), items=[
                patrol.ItemSpec("教学目标", 10, 1.0), patrol.ItemSpec("教学过程与方法", 30, 2.0),
                patrol.ItemSpec("两端互动", 30, 2.0), patrol.ItemSpec("技术应用", 15, 1.0),
                patrol.ItemSpec("教学效果", 15, 1.5)])
        cutoff, _ = last_days(RECORD_DAYS, self.now.date())
        rows = self.s.execute(
            select(LessonInstance.id, LessonInstance.starts_at, LessonInstance.ends_at, TeachingRecord.actual_start,
                   Classroom.school_id)
            .join(TeachingRecord, TeachingRecord.instance_id == LessonInstance.id)
            .join(Classroom, Classroom.id == LessonInstance.main_classroom_id)
            .where(LessonInstance.day >= cutoff, TeachingRecord.status.in_([RecordStatus.held, RecordStatus.partly_held]))
            .order_by(LessonInstance.starts_at, LessonInstance.id)
        ).all()
        district_of = {sc.id: sc.district.id for sc in b.schools}
        visits = 0
        for iid, starts, ends, actual, school_id in rows:
            if rng.random() >= 0.25:
                continue
            who = b.researchers[district_of[school_id]] if rng.random() < 0.8 else b.researcher_city
            begin = (actual or starts) + timedelta(seconds=rng.uniform(0, 900))
            end = min(ends, begin + timedelta(seconds=rng.uniform(300, 1800)))
            self.s.add(PatrolVisit(researcher_id=who.id, instance_id=iid, started_at=begin, last_seen_at=end,
                                   ended_at=end, end_reason=VisitEnd.left,
                                   duration_seconds=int((end - begin).total_seconds())))
            visits += 1
            if rng.random() < 0.7:
                quality = rng.uniform(0.7, 0.98)
                scores = {str(i.id): round(min(i.max_score, i.max_score * quality * rng.uniform(0.9, 1.08)))
                          for i in rubric.items}
                ev = Evaluation(instance_id=iid, evaluator_id=who.id, mode=EvaluationMode.live, template_id=rubric.id,
                                scores=scores, total_score=patrol.total_score(rubric.items, scores),
                                comment=rng.choice(_EVAL_COMMENTS), created_at=begin, updated_at=end)
                ev.notes = [EvaluationNote(at=begin + timedelta(seconds=30 + 120 * k),
                                           lesson_offset_seconds=int((begin - starts).total_seconds()) + 30 + 120 * k,
                                           text=text) for k, text in enumerate(rng.sample(_NOTES, 2))]
                self.s.add(ev)
        self.s.flush()
        return visits


# ---------------------------------------------------------------- 网络教研


_RESEARCH_COMMENTS = (
    (0, 8.0, "导入环节用生活情境引出课题，学生兴趣高。"),
    (1, 12.0, "这里的提问更开放，可以留更多思考时间。"),
    (None, None, "两节课都关注了接收端学生的参与，下次可比较小组活动的组织方式。"),
)


def add_research(session: Session, recording_ids: Sequence[int], now: datetime) -> int | None:
    """One 网络教研 activity of the district researcher: the demo teacher's recorded lesson beside another
    teacher's recorded lesson (同课异构 when they share a subject, else 观课研讨), a short timestamped
    discussion; answers its id (None when the demo has no such pair)."""
    researcher = session.scalar(select(User).where(User.username == "researcher"))
    teacher = session.scalar(select(User).where(User.username == "teacher"))
    if researcher is None or teacher is None:
        return None
    lessons = [session.get(LessonInstance, r.instance_id) for r in session.scalars(
        select(Recording).where(Recording.id.in_(recording_ids)))]
    own = next((i for i in lessons if i is not None and i.teacher_id == teacher.id), None)
    other = next((i for i in lessons if i is not None and own is not None and i.teacher_id != own.teacher_id), None)
    if own is None or other is None:
        return None
    same = own.series.subject == other.series.subject
    scope = scope_of(session, researcher)
    try:
        act = research.create(session, researcher, scope, research.ActivityIn(
            kind=ActivityKind.same_topic if same else ActivityKind.observation,
            title=f"{own.series.subject}{'同课异构' if same else '观课研讨'}：{own.series.title}",
            topic=own.series.title, subject=own.series.subject, grade=own.series.grade,
            description="两位老师的课例并排观看，边看边研讨，按评课表为每节课打分。",
            instance_ids=(own.id, other.id)), now=now - timedelta(hours=2))
    except SchedulerError:  # the district researcher does not see both lessons: no activity
        return None
    linked = (own.id, other.id)
    for k, (lesson, offset, text) in enumerate(_RESEARCH_COMMENTS):
        session.add(ResearchComment(activity_id=act.id, author_id=researcher.id if k != 1 else teacher.id,
                                    instance_id=None if lesson is None else linked[lesson], offset_s=offset,
                                    text=text, created_at=now - timedelta(minutes=90 - 10 * k)))
    session.flush()
    return act.id


# ---------------------------------------------------------------- entry point


def _counts(session: Session, now: datetime) -> DemoSummary:
    def n(stmt) -> int:  # type: ignore[no-untyped-def]
        return int(session.scalar(stmt) or 0)

    today = now.date()
    summary = DemoSummary(loaded=False, now=now, today=today)
    summary.regions = n(select(func.count(Region.id)))
    summary.districts = n(select(func.count(Region.id)).where(Region.level == RegionLevel.district))
    summary.education_groups = n(select(func.count(EducationGroup.id)))
    summary.urban_schools = n(select(func.count(School.id)).where(School.kind == SchoolKind.urban))
    summary.rural_schools = n(select(func.count(School.id)).where(School.kind == SchoolKind.rural))
    summary.classrooms = n(select(func.count(Classroom.id)))
    summary.pairings = n(select(func.count(Pairing.id)))
    summary.series = n(select(func.count(LessonSeries.id)))
    summary.series_by_kind = {k.value: v for k, v in session.execute(
        select(LessonSeries.kind, func.count(LessonSeries.id)).group_by(LessonSeries.kind))}
    summary.pending_series = n(select(func.count(LessonSeries.id)).where(LessonSeries.status == SeriesStatus.pending))
    summary.instances = n(select(func.count(LessonInstance.id)))
    summary.instances_by_status = {k.value: v for k, v in session.execute(
        select(LessonInstance.status, func.count(LessonInstance.id)).group_by(LessonInstance.status))}
    summary.today_lessons = n(select(func.count(LessonInstance.id)).where(
        LessonInstance.day == today, LessonInstance.status != InstanceStatus.cancelled))
    summary.users = n(select(func.count(User.id)))
    summary.users_by_role = {k.value: v for k, v in session.execute(
        select(User.role, func.count(User.id)).group_by(User.role))}
    summary.demand_orders = n(select(func.count(DemandOrder.id)))
    return summary


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - _width(text))


def format_summary(summary: DemoSummary, term_note: str = "") -> str:
    kinds = summary.series_by_kind
    status = summary.instances_by_status
    lines = [
        "演示数据已载入（用时 {:.1f} 秒）".format(summary.seconds),
        f"  区域 {summary.regions} 个（示例省 > 清河市 > {summary.districts} 个区县），教育集团 {summary.education_groups} 个",
        f"  学校 {summary.urban_schools + summary.rural_schools} 所：城区 {summary.urban_schools} 所，"
        f"乡村 {summary.rural_schools} 所；教室终端 {summary.classrooms} 个；城乡结对 {summary.pairings} 对",
        f"  课程 {summary.series} 门：专递课堂 {kinds.get('dedicated', 0)}，名师课堂 {kinds.get('master', 0)}，"
        f"名校网络课堂 {kinds.get('famous_school', 0)}（其中待审批 {summary.pending_series}）",
        f"  课次 {summary.instances} 节：已上课 {status.get('held', 0)}，未开课 {status.get('missed', 0)}，"
        f"已停课 {status.get('cancelled', 0)}，待上课 {status.get('scheduled', 0)}",
        f"  今天（{summary.today}）全市共 {summary.today_lessons} 节课；用户 {summary.users} 个；"
        f"需求订单 {summary.demand_orders} 个",
    ]
    if term_note:
        lines.append(f"  注意：{term_note}")
    if summary.accounts:
        lines.append("")
        lines.append(format_accounts(summary.accounts))
    return "\n".join(lines)


def format_accounts(accounts: Sequence[DemoAccount], title: str = f"演示账号（密码均为 {PASSWORD}）：") -> str:
    """The demo accounts as a table (the title line first)."""
    lines = [title]
    header = ("角色", "用户名", "密码", "姓名 / 所属", "可以试试")
    rows = [header] + [(a.role, a.username, a.password, a.name, a.try_this) for a in accounts]
    widths = [max(_width(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        lines.append("  " + "  ".join(_pad(r[i], widths[i]) for i in range(4)) + "  " + r[4])
    return "\n".join(lines)


_SAVED_ACCOUNTS = (
    ("admin", "系统管理员", "全部区域、学校、学期、作息与排课；审批与审计"),
    ("city_admin", "市教育局管理员", "全市课表与开课率；城乡结对与需求订单"),
    ("school_admin", "城区学校管理员", "本校排课、调课、停课、代课；审批教师的排课申请"),
    ("rural_admin", "乡村学校管理员", "本校接收课表；发布需求订单"),
    ("teacher", "主讲教师", "主讲：开始上课、同屏、连麦、下课"),
    ("terminal_main", "主讲教室终端", "在主讲教室电脑上登录"),
    ("terminal_recv", "接收教室终端", "接收课堂：举手、上台发言"),
    ("assistant", "助教", "接收教室现场助教"),
    ("student", "学生", "在家收看名校网络课堂，可回看录播"),
    ("researcher", "教研员（区县）", "巡课本区县的课堂、评课"),
    ("researcher_city", "教研员（市）", "全市巡课、教学记录与统计"),
)
"""The demo accounts ``pick_accounts`` names, as listed again on every later start."""


def saved_accounts(session: Session, now: datetime, lead: timedelta | None = None) -> list[DemoAccount]:
    """The demo accounts found in the database, with the next lesson still to come today of the
    teacher and of the main classroom's terminal (and when its room opens, ``lead`` before it).

    The password is the demo's, unless someone changed it since.
    """
    users = {u.username: u for u in session.scalars(
        select(User).where(User.username.in_([name for name, _, _ in _SAVED_ACCOUNTS])))}

    def next_lesson(condition) -> str:  # type: ignore[no-untyped-def]
        inst = session.scalars(
            select(LessonInstance).where(condition, LessonInstance.day == now.date(),
                                         LessonInstance.status == InstanceStatus.scheduled,
                                         LessonInstance.ends_at > now)
            .order_by(LessonInstance.starts_at, LessonInstance.id)).first()
        if inst is None:
            return ""
        opens = f"（{inst.starts_at - lead:%H:%M} 开放课堂）" if lead is not None else ""
        return f"今天 {inst.starts_at:%H:%M}《{inst.series.title}》{opens}，"

    accounts = []
    for username, role, hint in _SAVED_ACCOUNTS:
        user = users.get(username)
        if user is None:
            continue
        if username == "teacher":
            hint = next_lesson(LessonInstance.teacher_id == user.id) + hint
        elif username == "terminal_main" and user.classroom_id is not None:
            hint = next_lesson(LessonInstance.main_classroom_id == user.classroom_id) + hint
        accounts.append(DemoAccount(role, username, PASSWORD, user.display_name, hint))
    return accounts


def load_demo(settings: Settings, *, if_empty: bool = True, now: datetime | None = None) -> DemoSummary:
    """Migrate the database and load the demo data (see the module docstring).

    With ``if_empty`` a database that already has users is left alone.
    ``now`` (local wall-clock time) is for tests; it defaults to the clock.
    """
    began = _time.perf_counter()
    clock.configure(settings.timezone)
    now = now or clock.now()
    with migrated_database(settings) as factory:
        with factory() as session:
            users = int(session.scalar(select(func.count(User.id))) or 0)
            clash = session.scalar(select(User.username).where(User.username.in_(["admin", "teacher", "city_admin"])))
        if users and if_empty:
            print(f"数据库中已有 {users} 个用户，演示数据已经在了，不再重复载入。")
            with factory() as session:
                summary = _counts(session, now)
                summary.accounts = saved_accounts(session, now, timedelta(minutes=settings.room_open_lead_minutes))
            if summary.accounts:
                print(format_accounts(summary.accounts, f"演示账号（密码均为 {PASSWORD}，除非已修改）："))
            return summary
        if clash:
            print(f"数据库中已有用户“{clash}”，无法再次载入演示数据；请换一个空的数据目录（SANKE_DATA_DIR）。")
            with factory() as session:
                return _counts(session, now)
        with session_scope(factory) as session:
            b = _Builder(session, settings, now)
            b.build_regions()
            b.build_schools()
            b.build_bells_and_rooms()
            b.build_people()
            b.build_term()
            b.build_pairings()
            session.flush()
            b.book_all()
            b.pending_requests()
            b.age_past_lessons()
            rb = _RecordsBuilder(b)
            rb.build()
            rb.patrol()
            b.demand_orders()
            accounts = b.pick_accounts()
            recorded = add_recordings(session, settings.data_dir, now)  # after the accounts: their lessons
            add_research(session, recorded, now)
            summary = _counts(session, now)
        summary.loaded = True
        summary.accounts = accounts
        summary.rejected_candidates = b.rejected
        summary.seconds = _time.perf_counter() - began
        print(format_summary(summary, b.term_note))
        return summary
