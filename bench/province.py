"""A synthetic province for the scheduler benchmark: regions, schools, bells, people,
one term, pairings and a conflict-free timetable of weekly lesson series.

Pure Python, no database: ``generate(Sizes.for_scale(1.0))`` returns every row
as plain tuples in the column order of ``COLUMNS``, ready for COPY or
``executemany``.  The big tables (lesson instances, occupancy) are generators
over a compact timetable, so a full province (500,000 lessons, ~1.8 million
occupancy rows) never sits in memory as row tuples.

The timetable is made conflict-free by construction: every teacher and
classroom has a weekly bitmap of (weekday, period) cells, and a series is only
placed in cells free for its teacher, its main classroom and every receiving
classroom.  All urban schools ring the same bells and every rural period
contains the urban period of the same number, so the receiving window of a
lesson is the main slot itself (see ``SeriesContext.place``) and disjoint cells
mean disjoint occupancy rows: the database's no-overlap rule accepts the load.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

# ---------------------------------------------------------------- the calendar

TERM_START = date(2026, 8, 31)
"""Monday of teaching week 1."""
TERM_WEEKS = 20
TERM_END = TERM_START + timedelta(weeks=TERM_WEEKS - 1, days=4)
"""Friday of week 20 (2027-01-15)."""
HOLIDAYS = tuple(date(2026, 10, 1) + timedelta(days=i) for i in range(7))
"""国庆节 1-7 October: Thursday of week 5 to Wednesday of week 6, so every weekday loses one date."""
TODAY = TERM_START + timedelta(weeks=11)
"""The benchmark's "now": Monday of week 12. Earlier lessons are held, missed or cancelled."""
WEEKDAYS = (1, 2, 3, 4, 5)

URBAN_BELLS = (("08:00", "08:40"), ("08:50", "09:30"), ("09:50", "10:30"), ("10:40", "11:20"),
               ("14:00", "14:40"), ("14:50", "15:30"), ("15:40", "16:20"), ("16:30", "17:10"))
RURAL_BELLS = (("07:55", "08:40"), ("08:45", "09:35"), ("09:45", "10:35"), ("10:35", "11:25"),
               ("13:50", "14:40"), ("14:45", "15:35"), ("15:40", "16:20"), ("16:25", "17:15"))
"""Every rural period contains the urban period of the same number (village schools start
earlier and ring longer breaks), so a rural classroom can receive any urban lesson."""
MAX_PERIODS = 8

KIND_SHARE = (("dedicated", 0.60), ("master", 0.15), ("famous_school", 0.25))
"""专递课堂 / 名师课堂 / 名校网络课堂."""
RECEIVERS_SHARE = ((1, 0.55), (2, 0.30), (3, 0.15))
DOUBLE_LESSON_SHARE = 0.05
PAST_OUTCOME = (("held", 0.92), ("missed", 0.05), ("cancelled", 0.03))
URBAN_SHARE = 0.4

SUBJECTS = ("语文", "数学", "英语", "音乐", "美术", "科学", "体育与健康", "道德与法治", "信息科技")
GRADES = ("一年级", "二年级", "三年级", "四年级", "五年级", "六年级", "七年级", "八年级", "九年级")
CITY_NAMES = ("江城", "云岭", "青川", "白河", "金沙", "石门", "玉溪", "松江", "临水", "凤阳",
              "清源", "安平", "长宁", "宝山", "南屏")
KIND_ZH = {"dedicated": "专递课堂", "master": "名师课堂", "famous_school": "名校网络课堂"}
NO_LOGIN = "!bench-account-no-login"
"""Not a password hash: benchmark users cannot log in."""

# Column order of every generated row, per table (the loader's COPY / INSERT column list).
COLUMNS: dict[str, tuple[str, ...]] = {
    "region": ("id", "name", "level", "parent_id", "path"),
    "school": ("id", "name", "kind", "region_id", "group_id"),
    "classroom": ("id", "school_id", "name", "capacity"),
    "term": ("id", "name", "region_id", "start_date", "end_date"),
    "term_day": ("id", "term_id", "day", "kind", "follows_weekday", "name"),
    "period_scheme": ("id", "school_id", "term_id", "name"),
    "period": ("id", "scheme_id", "number", "start_time", "end_time"),
    "user_account": ("id", "username", "display_name", "password_hash", "role", "school_id", "region_id",
                     "classroom_id", "is_active"),
    "pairing": ("id", "urban_school_id", "rural_school_id", "urban_classroom_id", "rural_classroom_id",
                "subjects", "term_id", "active"),
    "lesson_series": ("id", "kind", "title", "subject", "grade", "term_id", "main_classroom_id",
                      "main_teacher_id", "weekday", "period_from", "period_to", "week_from", "week_to",
                      "week_pattern", "status", "recording", "pairing_override_reason", "created_by_id",
                      "approved_by_id", "created_at"),
    "series_receiver": ("id", "series_id", "classroom_id", "mode", "assistant_id", "receiving_period"),
    "lesson_instance": ("id", "series_id", "day", "starts_at", "ends_at", "period_from", "period_to", "status",
                        "main_classroom_id", "teacher_id", "substitute", "rescheduled_from_id", "cancel_reason",
                        "room_opened_at", "started_at", "room_closed_at"),
    "occupancy": ("id", "instance_id", "resource_type", "resource_id", "starts_at", "ends_at"),
}
TABLES = tuple(COLUMNS)
"""Load order: parents before children."""


@dataclass(frozen=True)
class Sizes:
    """What to build. ``for_scale(1.0)`` is the province of the issue."""

    scale: float
    cities: int
    districts: int
    schools: int
    classrooms: int
    teachers: int
    pairings: int
    instances: int

    @classmethod
    def for_scale(cls, scale: float) -> Sizes:
        if scale <= 0:
            raise ValueError("scale must be positive")
        districts = max(2, round(150 * scale))
        classrooms = max(2 * districts, round(30_000 * scale))
        return cls(
            scale=scale,
            cities=min(districts, max(1, round(15 * scale))),
            districts=districts,
            schools=min(classrooms, max(2 * districts, round(6_000 * scale))),
            classrooms=classrooms,
            teachers=max(1, round(classrooms / 1.5)),
            pairings=max(1, round(15_000 * scale)),
            instances=max(1, round(500_000 * scale)),
        )


@dataclass(slots=True)
class Series:
    """One weekly lesson of the generated timetable."""

    id: int
    kind: str
    subject: str
    grade: str
    school: int
    """Main (urban) school."""
    main: int
    """Main classroom."""
    teacher: int
    receivers: tuple[int, ...]
    weekday: int
    period_from: int
    period_to: int
    days: Sequence[date]
    first_instance: int
    """Instance ids are ``first_instance .. first_instance + len(days) - 1``, in date order."""

    @property
    def week_to(self) -> int:
        return (self.days[-1] - TERM_START).days // 7 + 1


@dataclass
class Province:
    """Every generated row plus the lookups the benchmark needs to pick candidates."""

    sizes: Sizes
    rows: dict[str, list[tuple]] = field(default_factory=dict)  # type: ignore[type-arg]
    """Small tables, as row tuples in ``COLUMNS`` order."""
    series: list[Series] = field(default_factory=list)
    statuses: bytearray = field(default_factory=bytearray)
    """Instance id -> index into ``STATUSES``."""
    occupancy_count: int = 0
    province_id: int = 0
    term_id: int = 1
    city_ids: list[int] = field(default_factory=list)
    district_ids: list[int] = field(default_factory=list)
    region_path: dict[int, str] = field(default_factory=dict)
    city_of_district: dict[int, int] = field(default_factory=dict)
    researcher_of_region: dict[int, int] = field(default_factory=dict)
    admin_id: int = 0
    school_kind: dict[int, str] = field(default_factory=dict)
    school_district: dict[int, int] = field(default_factory=dict)
    school_periods: dict[int, int] = field(default_factory=dict)
    rooms_of_school: dict[int, list[int]] = field(default_factory=dict)
    teachers_of_school: dict[int, list[int]] = field(default_factory=dict)
    school_of_room: dict[int, int] = field(default_factory=dict)
    pairings: list[tuple[int, int]] = field(default_factory=list)
    """(urban school, rural school)."""
    rural_partners: dict[int, list[int]] = field(default_factory=dict)
    urban_partners: dict[int, list[int]] = field(default_factory=dict)
    busy: dict[int, int] = field(default_factory=dict)
    """Resource key (teacher id, or -classroom id) -> weekly bitmap of occupied (weekday, period) cells."""
    teaching_days: list[date] = field(default_factory=list)

    @property
    def instance_count(self) -> int:
        return len(self.statuses) - 1

    def counts(self) -> dict[str, int]:
        """Rows per table, as generated."""
        out = {t: len(r) for t, r in self.rows.items()}
        out["lesson_instance"] = self.instance_count
        out["occupancy"] = self.occupancy_count
        return out

    def table_rows(self, table: str) -> Iterator[tuple]:  # type: ignore[type-arg]
        if table == "lesson_instance":
            return self.instance_rows()
        if table == "occupancy":
            return self.occupancy_rows()
        return iter(self.rows[table])

    def instance_rows(self) -> Iterator[tuple]:  # type: ignore[type-arg]
        for s in self.series:
            start_t, end_t = _urban_span(s.period_from, s.period_to)
            for k, day in enumerate(s.days):
                iid = s.first_instance + k
                status = STATUSES[self.statuses[iid]]
                starts, ends = _at(day, start_t), _at(day, end_t)
                held = status == "held"
                yield (iid, s.id, day, starts, ends, s.period_from, s.period_to, status, s.main, s.teacher,
                       False, None, "天气原因停课" if status == "cancelled" else None,
                       starts - _TEN_MIN if held else None, starts if held else None,
                       ends if held else None)

    def occupancy_rows(self) -> Iterator[tuple]:  # type: ignore[type-arg]
        """Teacher, main classroom and each receiving classroom of every lesson not cancelled
        (cancelling a lesson frees its slots, as ``cancel_instance`` does)."""
        oid = 0
        for s in self.series:
            start_t, end_t = _urban_span(s.period_from, s.period_to)
            rooms = (s.main, *s.receivers)
            for k, day in enumerate(s.days):
                iid = s.first_instance + k
                if self.statuses[iid] == _CANCELLED:
                    continue
                starts, ends = _at(day, start_t), _at(day, end_t)
                oid += 1
                yield (oid, iid, "teacher", s.teacher, starts, ends)
                for room in rooms:
                    oid += 1
                    yield (oid, iid, "classroom", room, starts, ends)

    def free_cells(self, keys: Sequence[int], max_period: int) -> list[tuple[int, int]]:
        """(weekday, period) cells free for every resource key, single periods."""
        taken = 0
        for k in keys:
            taken |= self.busy.get(k, 0)
        return [(wd, p) for wd in WEEKDAYS for p in range(1, max_period + 1) if not taken >> _bit(wd, p) & 1]


STATUSES = ("scheduled", "live", "held", "missed", "cancelled")
_CANCELLED = STATUSES.index("cancelled")
_TEN_MIN = timedelta(minutes=10)


def _bit(weekday: int, period: int) -> int:
    return (weekday - 1) * MAX_PERIODS + period - 1


def _cells(weekday: int, period_from: int, period_to: int) -> int:
    mask = 0
    for p in range(period_from, period_to + 1):
        mask |= 1 << _bit(weekday, p)
    return mask


def _urban_span(period_from: int, period_to: int) -> tuple[time, time]:
    return time.fromisoformat(URBAN_BELLS[period_from - 1][0]), time.fromisoformat(URBAN_BELLS[period_to - 1][1])


_AT_CACHE: dict[tuple[date, time], datetime] = {}


def _at(day: date, t: time) -> datetime:
    key = (day, t)
    found = _AT_CACHE.get(key)
    if found is None:
        found = _AT_CACHE[key] = datetime.combine(day, t)
    return found


def meeting_days() -> dict[int, list[date]]:
    """Weekday -> its teaching dates in the term (the holiday week removes one of each)."""
    out: dict[int, list[date]] = {wd: [] for wd in WEEKDAYS}
    day = TERM_START
    while day <= TERM_END:
        if day.isoweekday() in out and day not in HOLIDAYS:
            out[day.isoweekday()].append(day)
        day += timedelta(days=1)
    return out


def apportion(total: int, weights: Sequence[float], minimum: int = 0) -> list[int]:
    """Split ``total`` into integers proportional to ``weights`` (largest remainder),
    each at least ``minimum``."""
    n = len(weights)
    if total < minimum * n:
        raise ValueError(f"cannot give {n} parts at least {minimum} each out of {total}")
    spare = total - minimum * n
    w = sum(weights)
    exact = [spare * x / w for x in weights]
    parts = [math.floor(e) for e in exact]
    order = sorted(range(n), key=lambda i: exact[i] - parts[i], reverse=True)
    for i in order[: spare - sum(parts)]:
        parts[i] += 1
    return [p + minimum for p in parts]


def _pick(rng: random.Random, table: Sequence[tuple[object, float]]) -> object:
    r = rng.random()
    for value, share in table:
        r -= share
        if r < 0:
            return value
    return table[-1][0]


def generate(sizes: Sizes, seed: int = 20261116) -> Province:
    """Build the province. Deterministic for a given ``sizes`` and ``seed``."""
    rng = random.Random(seed)
    pv = Province(sizes)
    _regions(pv)
    _schools(pv, rng)
    _term(pv)
    _people(pv)
    _pairings(pv, rng)
    _timetable(pv, rng)
    return pv


def _regions(pv: Province) -> None:
    rows: list[tuple] = []  # type: ignore[type-arg]
    pv.province_id = 1
    pv.region_path[1] = "/1/"
    rows.append((1, "示范省", "province", None, "/1/"))
    next_id = 2
    for c in range(pv.sizes.cities):
        cid = next_id
        next_id += 1
        pv.city_ids.append(cid)
        pv.region_path[cid] = f"/1/{cid}/"
        rows.append((cid, f"{CITY_NAMES[c % len(CITY_NAMES)]}市{'' if c < len(CITY_NAMES) else c}", "city", 1,
                     pv.region_path[cid]))
    for d in range(pv.sizes.districts):
        city = pv.city_ids[d % len(pv.city_ids)]
        did = next_id
        next_id += 1
        pv.district_ids.append(did)
        pv.city_of_district[did] = city
        pv.region_path[did] = f"{pv.region_path[city]}{did}/"
        rows.append((did, f"第{d // len(pv.city_ids) + 1}区（{city}）", "district", city, pv.region_path[did]))
    pv.rows["region"] = rows


def _schools(pv: Province, rng: random.Random) -> None:
    schools: list[tuple] = []  # type: ignore[type-arg]
    per_district = apportion(pv.sizes.schools, [1.0] * len(pv.district_ids), minimum=2)
    sid = 0
    for did, n in zip(pv.district_ids, per_district):
        urban = min(n - 1, max(1, round(URBAN_SHARE * n)))
        for i in range(n):
            sid += 1
            kind = "urban" if i < urban else "rural"
            name = f"{did}区第{i + 1}{'实验小学' if kind == 'urban' else '村小'}"
            schools.append((sid, name, kind, did, None))
            pv.school_kind[sid] = kind
            pv.school_district[sid] = did
    pv.rows["school"] = schools

    rooms_per_school = apportion(pv.sizes.classrooms, [1.0] * len(schools), minimum=1)
    classrooms: list[tuple] = []  # type: ignore[type-arg]
    rid = 0
    for (sid, *_), n in zip(schools, rooms_per_school):
        pv.rooms_of_school[sid] = []
        for i in range(n):
            rid += 1
            classrooms.append((rid, sid, f"{i + 1}号教室", 45 if pv.school_kind[sid] == "urban" else 30))
            pv.rooms_of_school[sid].append(rid)
            pv.school_of_room[rid] = sid
    pv.rows["classroom"] = classrooms

    schemes: list[tuple] = []  # type: ignore[type-arg]
    periods: list[tuple] = []  # type: ignore[type-arg]
    pid = 0
    for sid, name, kind, *_ in schools:
        n = rng.choice((7, 8))
        pv.school_periods[sid] = n
        schemes.append((sid, sid, None, f"{name}作息"))
        bells = URBAN_BELLS if kind == "urban" else RURAL_BELLS
        for number, (a, b) in enumerate(bells[:n], start=1):
            pid += 1
            periods.append((pid, sid, number, time.fromisoformat(a), time.fromisoformat(b)))
    pv.rows["period_scheme"] = schemes
    pv.rows["period"] = periods


def _term(pv: Province) -> None:
    pv.rows["term"] = [(pv.term_id, "2026-2027 学年第一学期", pv.province_id, TERM_START, TERM_END)]
    pv.rows["term_day"] = [(i + 1, pv.term_id, d, "holiday", None, "国庆节") for i, d in enumerate(HOLIDAYS)]
    pv.teaching_days = sorted(d for days in meeting_days().values() for d in days)


def _people(pv: Province) -> None:
    users: list[tuple] = []  # type: ignore[type-arg]

    def add(role: str, *, school: int | None = None, region: int | None = None, name: str = "") -> int:
        uid = len(users) + 1
        users.append((uid, f"{role[0]}{uid}", name or f"{role}{uid}", NO_LOGIN, role, school, region, None, True))
        return uid

    pv.admin_id = add("admin", name="系统管理员")
    for region_id in (pv.province_id, *pv.city_ids, *pv.district_ids):
        first = add("researcher", region=region_id, name=f"教研员{region_id}-1")
        add("researcher", region=region_id, name=f"教研员{region_id}-2")
        pv.researcher_of_region[region_id] = first
    schools = pv.rows["school"]
    per_school = apportion(pv.sizes.teachers, [len(pv.rooms_of_school[s[0]]) for s in schools], minimum=1) \
        if pv.sizes.teachers >= len(schools) else [1] * len(schools)
    for (sid, *_), n in zip(schools, per_school):
        pv.teachers_of_school[sid] = [add("teacher", school=sid, name=f"教师{sid}-{i + 1}") for i in range(n)]
    pv.rows["user_account"] = users


def _pairings(pv: Province, rng: random.Random) -> None:
    """Urban-rural pairs within a district first, then (random, bounded) within a city, then anywhere."""
    urban_in: dict[int, list[int]] = {}
    rural_in: dict[int, list[int]] = {}
    for sid, kind in pv.school_kind.items():
        (urban_in if kind == "urban" else rural_in).setdefault(pv.school_district[sid], []).append(sid)
    wanted = pv.sizes.pairings
    near = [(u, r) for d in pv.district_ids for u in urban_in.get(d, []) for r in rural_in.get(d, [])]
    rng.shuffle(near)
    chosen: dict[tuple[int, int], None] = dict.fromkeys(near[:wanted])
    urban_all = [s for s, k in pv.school_kind.items() if k == "urban"]
    rural_all = [s for s, k in pv.school_kind.items() if k == "rural"]
    if wanted > len(urban_all) * len(rural_all):
        raise ValueError(f"{wanted} pairings asked of {len(urban_all)} urban and {len(rural_all)} rural schools")
    rural_of_city: dict[int, list[int]] = {}
    for r in rural_all:
        rural_of_city.setdefault(pv.city_of_district[pv.school_district[r]], []).append(r)
    for _ in range(20 * wanted):  # bounded
        if len(chosen) >= wanted:
            break
        u = rng.choice(urban_all)
        same_city = rural_of_city.get(pv.city_of_district[pv.school_district[u]])
        r = rng.choice(same_city if same_city and rng.random() < 0.8 else rural_all)
        chosen.setdefault((u, r), None)
    if len(chosen) < wanted:
        raise RuntimeError("could not find enough distinct school pairs")
    rows = []
    for i, (u, r) in enumerate(chosen, start=1):
        subjects: list[str] = [] if rng.random() < 0.7 else rng.sample(SUBJECTS, rng.randint(1, 3))
        rows.append((i, u, r, None, None, json.dumps(subjects, ensure_ascii=False),
                     None if rng.random() < 0.6 else pv.term_id, True))
        pv.pairings.append((u, r))
        pv.rural_partners.setdefault(u, []).append(r)
        pv.urban_partners.setdefault(r, []).append(u)
    pv.rows["pairing"] = rows


def _timetable(pv: Province, rng: random.Random) -> None:
    """Series until the lesson count is reached; the last one may run fewer weeks."""
    days_of = meeting_days()
    per_series = len(days_of[1])
    n_full, rest = divmod(pv.sizes.instances, per_series)
    lengths = [per_series] * n_full + ([rest] if rest else [])
    schools_of_city: dict[int, list[int]] = {}
    for sid, did in pv.school_district.items():
        schools_of_city.setdefault(pv.city_of_district[did], []).append(sid)
    urban_of_city = {c: [s for s in ss if pv.school_kind[s] == "urban"] for c, ss in schools_of_city.items()}
    statuses = bytearray([0])  # ids start at 1
    receivers_rows: list[tuple] = []  # type: ignore[type-arg]
    series_rows: list[tuple] = []  # type: ignore[type-arg]
    created = datetime.combine(TERM_START - timedelta(days=14), time(9, 0))
    occupancy = 0
    for length in lengths:
        for _attempt in range(50):  # bounded: another draw of school, rooms and people
            kind = str(_pick(rng, KIND_SHARE))
            if kind == "dedicated":
                school, first_rural = rng.choice(pv.pairings)
                pool = [first_rural] * 2 + pv.rural_partners[school]
            else:
                city = rng.choice(pv.city_ids)
                if not urban_of_city.get(city):
                    continue
                school = rng.choice(urban_of_city[city])
                pool = [s for s in rng.sample(schools_of_city[city], min(8, len(schools_of_city[city])))
                        if s != school]
                if not pool:
                    continue
                first_rural = None
            main = rng.choice(pv.rooms_of_school[school])
            teacher = rng.choice(pv.teachers_of_school[school])
            want = int(_pick(rng, RECEIVERS_SHARE))  # type: ignore[call-overload]
            receivers: list[int] = []
            if first_rural is not None:
                receivers.append(rng.choice(pv.rooms_of_school[first_rural]))
            for _ in range(4 * want):
                if len(receivers) >= want:
                    break
                room = rng.choice(pv.rooms_of_school[rng.choice(pool)])
                if room != main and room not in receivers:
                    receivers.append(room)
            if not receivers:
                continue
            max_period = min(pv.school_periods[pv.school_of_room[r]] for r in (main, *receivers))
            keys = (teacher, -main, *(-r for r in receivers))
            cell = _place(pv, rng, keys, max_period)
            if cell is not None:
                break
        else:
            raise RuntimeError("timetable too dense: no free cell after 50 draws")
        weekday, period_from, period_to = cell
        mask = _cells(weekday, period_from, period_to)
        for k in keys:
            pv.busy[k] = pv.busy.get(k, 0) | mask
        days = days_of[weekday][:length]
        sid = len(pv.series) + 1
        subject, grade = rng.choice(SUBJECTS), rng.choice(GRADES)
        s = Series(sid, kind, subject, grade, school, main, teacher, tuple(receivers), weekday, period_from,
                   period_to, days, len(statuses))
        pv.series.append(s)
        for day in days:
            statuses.append(STATUSES.index(str(_pick(rng, PAST_OUTCOME))) if day < TODAY else 0)
        kept = sum(1 for st in statuses[s.first_instance:] if st != _CANCELLED)
        occupancy += kept * (2 + len(receivers))
        series_rows.append((sid, kind, f"{grade}{subject}（{KIND_ZH[kind]}）", subject, grade, pv.term_id, main,
                            teacher, weekday, period_from, period_to, 1, s.week_to, "every", "approved",
                            kind == "famous_school", None, teacher, pv.admin_id, created))
        mode = "interactive" if kind == "dedicated" else "listen_only"
        for room in receivers:
            receivers_rows.append((len(receivers_rows) + 1, sid, room, mode, None, None))
    pv.statuses = statuses
    pv.occupancy_count = occupancy
    pv.rows["lesson_series"] = series_rows
    pv.rows["series_receiver"] = receivers_rows


def _place(pv: Province, rng: random.Random, keys: Sequence[int], max_period: int) -> tuple[int, int, int] | None:
    """A (weekday, period_from, period_to) free for every key, or None. Some lessons are doubles."""
    taken = 0
    for k in keys:
        taken |= pv.busy.get(k, 0)
    double = rng.random() < DOUBLE_LESSON_SHARE
    starts = [(wd, p) for wd in WEEKDAYS for p in ((1, 3, 5) if double else range(1, max_period + 1))
              if p + double <= max_period]
    offset = rng.randrange(len(starts))
    for i in range(len(starts)):
        wd, p = starts[(offset + i) % len(starts)]
        if not taken & _cells(wd, p, p + double):
            return wd, p, p + double
    return None
