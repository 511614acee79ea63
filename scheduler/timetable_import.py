"""Timetable import (课表导入): one spreadsheet row books one weekly lesson series.

Clerks keep timetables in Excel, so a file is CSV (UTF-8 with or without BOM,
or GBK/GB18030 as Chinese Excel writes it) or XLSX (first sheet).  The first
non-empty row is the header; Chinese headers and English aliases are both
understood (see ``COLUMNS``).

Every row goes through ``bookings.create_series`` — the one way to book — so
an import obeys exactly the rules of the booking screen: pairing, bells,
holidays and conflicts, including conflicts between two rows of the same file.

Transactions: the whole import runs inside one savepoint, and each row inside
a savepoint of its own.  A row that fails rolls back only its own savepoint
and becomes a ``RowError``; a row that passes stays in the outer savepoint so
that later rows are checked against it.  At the end the outer savepoint is
rolled back on a dry run or when any row failed (all or nothing), and
released otherwise.  Committing the session is the caller's job.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler import clock
from scheduler.access import Scope, school_visible, scope_of
from scheduler.bookings import ReceiverSpec, SeriesSpec, create_series
from scheduler.errors import Conflict, Forbidden, Invalid, SchedulerError
from scheduler.models import (
    Classroom,
    LessonInstance,
    LessonKind,
    ReceiverMode,
    Region,
    Role,
    School,
    Term,
    User,
    WeekPattern,
)
from scheduler.terms import current_term

if TYPE_CHECKING:
    from server.core.config import Settings

MAX_ROWS = 2000
"""Largest number of lesson rows in one file; bigger timetables are imported in parts."""

SUFFIXES = (".csv", ".xlsx", ".xlsm")


# ---------------------------------------------------------------- file errors


class UnsupportedFile(Invalid):
    """The file is not CSV or XLSX."""

    code = "unsupported_file"


class UnreadableFile(Invalid):
    """The file claims to be CSV or XLSX but cannot be read as a table."""

    code = "unreadable_file"


# ---------------------------------------------------------------- columns


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    """The Chinese header, used in messages when the file lacks the column."""
    aliases: tuple[str, ...]
    required: bool = False


COLUMNS: tuple[Column, ...] = (
    Column("title", "课程名称", ("课程", "课程名", "title"), True),
    Column("kind", "类型", ("课堂类型", "课程类型", "kind", "type"), True),
    Column("subject", "学科", ("subject",), True),
    Column("grade", "年级", ("grade",), True),
    Column("term", "学期", ("term",), True),
    Column("main_classroom", "主讲教室", ("主讲课堂", "main_classroom"), True),
    Column("main_teacher", "主讲教师", ("授课教师", "main_teacher", "teacher"), True),
    Column("weekday", "星期", ("weekday",), True),
    Column("periods", "节次", ("periods", "period"), True),
    Column("weeks", "周次", ("weeks",)),
    Column("week_pattern", "单双周", ("week_pattern",)),
    Column("receivers", "接收教室", ("接收课堂", "receivers")),
    Column("recording", "录播", ("recording",)),
    Column("pairing_override_reason", "越过结对原因", ("pairing_override_reason",)),
    Column("note", "备注", ("note", "remark")),
)
_BY_KEY = {c.key: c for c in COLUMNS}


def _norm_header(text: str) -> str:
    return re.sub(r"[\s_\-]+", "", unicodedata.normalize("NFKC", text)).casefold()


_HEADER_INDEX = {_norm_header(name): c.key for c in COLUMNS for name in (c.header, *c.aliases)}


# ---------------------------------------------------------------- reading files


@dataclass(frozen=True)
class SheetRow:
    number: int
    """Spreadsheet row number as Excel shows it (the header is usually row 1)."""
    values: tuple[str, ...]


@dataclass(frozen=True)
class Sheet:
    header_row: int
    headers: tuple[str, ...]
    rows: tuple[SheetRow, ...]


def check_filename(filename: str | None) -> str:
    """The file's suffix if it is one we read, else ``UnsupportedFile``."""
    suffix = Path(filename or "").suffix.lower()
    if suffix not in SUFFIXES:
        hint = "，旧版 .xls 请在 Excel 中另存为 .xlsx" if suffix == ".xls" else ""
        raise UnsupportedFile(f"不支持的文件类型“{suffix or filename or ''}”：请上传 CSV 或 XLSX 文件{hint}")
    return suffix


def parse_file(source: bytes | str | Path, filename: str | None = None) -> Sheet:
    """Read a CSV or XLSX timetable into text cells (blank rows dropped).

    ``source`` is the file's bytes (then ``filename`` gives the type) or a path.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        filename = filename or path.name
        data = path.read_bytes()
    else:
        data = source
    suffix = check_filename(filename)
    raw = _read_xlsx(data) if suffix in (".xlsx", ".xlsm") else _read_csv(data)
    rows = [(n, tuple(v.strip() for v in values)) for n, values in raw]
    rows = [(n, values) for n, values in rows if any(values)]
    if not rows:
        raise UnreadableFile("文件是空的：第一行应为表头（课程名称、类型、学科……）")
    (header_row, headers), body = rows[0], rows[1:]
    if len(body) > MAX_ROWS:
        raise UnreadableFile(f"文件共有 {len(body)} 行课程，超过单次导入上限 {MAX_ROWS} 行，请分批导入")
    width = len(headers)
    return Sheet(header_row, headers, tuple(SheetRow(n, (v + ("",) * width)[:width]) for n, v in body))


def _decode(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")  # Excel's "Unicode text"
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        # What Excel on a Chinese Windows writes as "CSV"; GB18030 is a superset of GBK.
        return data.decode("gb18030")
    except UnicodeDecodeError as exc:
        raise UnreadableFile("无法识别文件编码：请另存为 UTF-8 或 GBK 编码的 CSV") from exc


def _read_csv(data: bytes) -> list[tuple[int, tuple[str, ...]]]:
    text = _decode(data)
    first = text.split("\n", 1)[0]
    delimiter = "\t" if first.count("\t") > first.count(",") else ","
    try:
        return [(n, tuple(r)) for n, r in enumerate(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter),
                                                     start=1)]
    except csv.Error as exc:
        raise UnreadableFile(f"CSV 文件格式有误：{exc}") from exc


def _read_xlsx(data: bytes) -> list[tuple[int, tuple[str, ...]]]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - zip, XML and openpyxl errors all mean "not a readable workbook"
        raise UnreadableFile("无法读取 Excel 文件：请确认是 .xlsx 格式且未加密") from exc
    try:
        if not book.worksheets:
            raise UnreadableFile("Excel 文件中没有工作表")
        sheet = book.worksheets[0]
        rows: list[tuple[int, tuple[str, ...]]] = []
        for n, values in enumerate(sheet.iter_rows(values_only=True), start=1):
            rows.append((n, tuple(_cell_text(v) for v in values)))
            if len(rows) > MAX_ROWS + 200 and any(rows[-1][1]):
                break  # parse_file reports the oversize; no need to read a huge sheet to the end
        return rows
    finally:
        book.close()


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (datetime, date)):
        # Excel turns a typed "3-4" (periods) or "1-18" (weeks) into 4 March / 18 January.
        return f"{value.month}-{value.day}"
    return str(value)


# ---------------------------------------------------------------- cell values


class _CellError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip()


_KINDS = {
    "专递课堂": LessonKind.dedicated, "专递": LessonKind.dedicated, "dedicated": LessonKind.dedicated,
    "名师课堂": LessonKind.master, "名师": LessonKind.master, "master": LessonKind.master,
    "名校网络课堂": LessonKind.famous_school, "名校网络": LessonKind.famous_school,
    "名校课堂": LessonKind.famous_school, "famous_school": LessonKind.famous_school,
    "famousschool": LessonKind.famous_school, "famous school": LessonKind.famous_school,
}


def parse_kind(text: str) -> LessonKind:
    kind = _KINDS.get(_nfkc(text).casefold())
    if kind is None:
        raise _CellError(f"类型“{text}”无法识别，应为 专递课堂、名师课堂 或 名校网络课堂")
    return kind


_ZH_DAYS = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "日": 7, "天": 7, "七": 7}
_EN_DAYS = {name: i + 1 for i, names in enumerate(
    (("mon", "monday"), ("tue", "tues", "tuesday"), ("wed", "wednesday"), ("thu", "thur", "thurs", "thursday"),
     ("fri", "friday"), ("sat", "saturday"), ("sun", "sunday"))) for name in names}


def parse_weekday(text: str) -> int:
    """1-7, 周一..周日, 星期一..星期日/天, 礼拜一.., Mon..Sun."""
    t = _nfkc(text).casefold()
    m = re.fullmatch(r"(?:周|星期|礼拜)?([一二三四五六日天七])", t)
    if m:
        return _ZH_DAYS[m.group(1)]
    if t.isdigit() and 1 <= int(t) <= 7:
        return int(t)
    if t.rstrip(".") in _EN_DAYS:
        return _EN_DAYS[t.rstrip(".")]
    raise _CellError(f"星期“{text}”有误，应为 1–7 或 周一…周日")


_RANGE = re.compile(r"第?\s*(\d+)\s*(?:[-~至到]\s*(\d+))?\s*[节周]?")


def _parse_range(text: str, what: str, unit: str) -> tuple[int, int]:
    t = _nfkc(text).replace("–", "-").replace("—", "-")
    m = _RANGE.fullmatch(t)
    if not m:
        raise _CellError(f"{what}“{text}”格式有误，应为如 3 或 3-4")
    first = int(m.group(1))
    last = int(m.group(2)) if m.group(2) else first
    if first < 1:
        raise _CellError(f"{what}“{text}”有误：{unit}从 1 开始")
    if last < first:
        raise _CellError(f"{what}“{text}”有误：结束{unit}不能早于开始{unit}")
    return first, last


def parse_periods(text: str) -> tuple[int, int]:
    return _parse_range(text, "节次", "节")


def parse_weeks(text: str) -> tuple[int, int]:
    """Empty means the whole term."""
    if not text.strip():
        return 1, 99
    return _parse_range(text, "周次", "周")


_PATTERNS = {
    "每周": WeekPattern.every, "全部": WeekPattern.every, "every": WeekPattern.every, "all": WeekPattern.every,
    "单周": WeekPattern.odd, "单": WeekPattern.odd, "odd": WeekPattern.odd,
    "双周": WeekPattern.even, "双": WeekPattern.even, "even": WeekPattern.even,
}


def parse_week_pattern(text: str) -> WeekPattern:
    if not text.strip():
        return WeekPattern.every
    pattern = _PATTERNS.get(_nfkc(text).casefold())
    if pattern is None:
        raise _CellError(f"单双周“{text}”有误，应为 每周、单周 或 双周")
    return pattern


_YES = {"是", "有", "录", "录播", "y", "yes", "true", "1", "√", "✓"}
_NO = {"否", "无", "不", "不录", "n", "no", "false", "0", "×"}


def parse_recording(text: str) -> bool | None:
    """Empty: the kind's default (on for famous-school lessons)."""
    t = _nfkc(text).casefold()
    if not t:
        return None
    if t in _YES:
        return True
    if t in _NO:
        return False
    raise _CellError(f"录播“{text}”有误，应为 是 或 否")


@dataclass(frozen=True)
class ReceiverEntry:
    """One item of the 接收教室 cell: ``学校名/教室名:听课@助教``."""

    classroom: str
    mode: ReceiverMode = ReceiverMode.interactive
    assistant: str | None = None


_MODES = {
    "听课": ReceiverMode.listen_only, "只听": ReceiverMode.listen_only, "仅听课": ReceiverMode.listen_only,
    "listen": ReceiverMode.listen_only, "listen_only": ReceiverMode.listen_only,
    "互动": ReceiverMode.interactive, "interactive": ReceiverMode.interactive,
}


def parse_receivers(text: str) -> list[ReceiverEntry]:
    entries: list[ReceiverEntry] = []
    for item in re.split(r"[;；、，,\n]", text):
        item = item.strip()
        if not item:
            continue
        assistant = None
        at = re.search(r"[@＠]([^:：]*)", item)
        if at:
            assistant = at.group(1).strip()
            item = (item[: at.start()] + item[at.end():]).strip()
            if not assistant:
                raise _CellError("“@”后应写助教的用户名")
        mode = ReceiverMode.interactive
        colon = re.search(r"[:：]([^:：]*)$", item)
        if colon:
            word = colon.group(1).strip()
            if _nfkc(word).casefold() not in _MODES:
                raise _CellError(f"接收方式“{word}”无法识别，应为 听课 或 互动")
            mode = _MODES[_nfkc(word).casefold()]
            item = item[: colon.start()].strip()
        if not item:
            raise _CellError("接收教室名称不能为空")
        entries.append(ReceiverEntry(item, mode, assistant))
    return entries


# ---------------------------------------------------------------- names


class _Directory:
    """Looks names up in the database, once per distinct name."""

    def __init__(self, session: Session, scope: Scope) -> None:
        self.session = session
        self.scope = scope
        self._rooms: dict[str, list[Classroom]] = {}
        self._region_paths: dict[int, str] = {}
        self._schools: dict[int, School] = {}

    def school(self, school_id: int) -> School:
        if school_id not in self._schools:
            school = self.session.get(School, school_id)
            assert school is not None
            self._schools[school_id] = school
        return self._schools[school_id]

    def region_path(self, region_id: int) -> str:
        if region_id not in self._region_paths:
            region = self.session.get(Region, region_id)
            self._region_paths[region_id] = region.path if region else ""
        return self._region_paths[region_id]

    def _visible(self, room: Classroom) -> bool:
        school = self.school(room.school_id)
        return school_visible(self.scope, school, self.region_path(school.region_id))

    def _rooms_named(self, text: str) -> list[Classroom]:
        if text in self._rooms:
            return self._rooms[text]
        rooms = list(self.session.scalars(select(Classroom).where(Classroom.name == text).order_by(Classroom.id)))
        parts = re.split(r"[/／]", text, maxsplit=1)
        if not rooms and len(parts) == 2:
            school_name, room_name = parts[0].strip(), parts[1].strip()
            rooms = list(self.session.scalars(
                select(Classroom).join(School, School.id == Classroom.school_id)
                .where(School.name == school_name, Classroom.name == room_name).order_by(Classroom.id)))
        self._rooms[text] = rooms
        return rooms

    def classroom(self, text: str, what: str) -> Classroom:
        """A classroom by ``教室名`` or ``学校名/教室名``; ambiguity is settled by the caller's scope."""
        rooms = self._rooms_named(text)
        if not rooms:
            raise _CellError(f"找不到{what}“{text}”，请核对教室名称，或写成“学校名/教室名”")
        if len(rooms) > 1:
            mine = [r for r in rooms if self._visible(r)]
            if len(mine) == 1:
                return mine[0]
            schools = "、".join(dict.fromkeys(self.school(r.school_id).name for r in rooms))
            raise _CellError(f"{what}“{text}”不唯一（{schools} 都有），请写成“学校名/教室名”")
        return rooms[0]

    def teacher(self, text: str, school: School | None, what: str) -> User | None:
        """A user by username, else by display name among the school's teachers.

        ``None`` when only a display name was given and the school is unknown
        (its own column already carries the error).
        """
        user = self.session.scalar(select(User).where(User.username == text))
        if user is not None:
            return user
        if school is None:
            return None
        named = list(self.session.scalars(
            select(User).where(User.display_name == text, User.school_id == school.id, User.role == Role.teacher,
                               User.is_active.is_(True)).order_by(User.id)))
        if len(named) == 1:
            return named[0]
        if len(named) > 1:
            raise _CellError(f"“{school.name}”有 {len(named)} 位教师名为“{text}”，请填写{what}的用户名")
        raise _CellError(f"“{school.name}”中找不到{what}“{text}”，请填写用户名或本校教师姓名")

    def term(self, text: str, school: School | None) -> Term:
        terms = list(self.session.scalars(select(Term).where(Term.name == text).order_by(Term.id)))
        if not terms and text.isdigit():
            by_id = self.session.get(Term, int(text))
            terms = [by_id] if by_id else []
        if not terms:
            raise _CellError(f"找不到学期“{text}”，请填写学期名称或编号")
        if len(terms) > 1 and school is not None:
            path = self.region_path(school.region_id)
            terms = [t for t in terms if t.region_id is None or path.startswith(self.region_path(t.region_id))]
        if len(terms) != 1:
            raise _CellError(f"学期名称“{text}”不唯一，请填写学期编号")
        return terms[0]


# ---------------------------------------------------------------- report


@dataclass(frozen=True)
class RowError:
    row: int
    """Spreadsheet row number (the header is row 1)."""
    column: str
    """The column's header as written in the file."""
    reason: str


@dataclass
class ImportReport:
    rows_total: int = 0
    rows_ok: int = 0
    errors: list[RowError] = field(default_factory=list)
    created_series_ids: list[int] = field(default_factory=list)
    dry_run: bool = True
    committed: bool = False
    """True when the series were booked (commit mode and no errors)."""

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


# ---------------------------------------------------------------- import


@dataclass
class _Row:
    number: int
    cells: dict[str, str]
    headers: dict[str, str]
    errors: list[RowError] = field(default_factory=list)

    def get(self, key: str) -> str:
        return self.cells.get(key, "")

    def error(self, key: str, reason: str) -> None:
        self.errors.append(RowError(self.number, self.headers.get(key, _BY_KEY[key].header), reason))

    def parse(self, key: str, fn: Callable[[str], Any]) -> Any:
        try:
            return fn(self.get(key))
        except _CellError as exc:
            self.error(key, exc.reason)
            return None


def _map_headers(sheet: Sheet) -> tuple[dict[int, str], dict[str, str], list[RowError]]:
    """Column index -> field key, field key -> header text, and header problems."""
    by_index: dict[int, str] = {}
    headers: dict[str, str] = {}
    errors: list[RowError] = []
    for i, text in enumerate(sheet.headers):
        if not text:
            continue
        key = _HEADER_INDEX.get(_norm_header(text))
        if key is None:
            errors.append(RowError(sheet.header_row, text, f"无法识别的列“{text}”"))
        elif key in headers:
            errors.append(RowError(sheet.header_row, text, f"列“{text}”与“{headers[key]}”重复"))
        else:
            by_index[i] = key
            headers[key] = text
    for c in COLUMNS:
        if c.required and c.key not in headers:
            errors.append(RowError(sheet.header_row, c.header, f"缺少必填列“{c.header}”"))
    return by_index, headers, errors


def _spec_of_row(row: _Row, names: _Directory) -> SeriesSpec | None:
    """Parse and resolve one row; ``None`` when its errors are already on ``row``."""
    for key in ("title", "subject", "grade"):
        if not row.get(key):
            row.error(key, f"{_BY_KEY[key].header}不能为空")
    kind = row.parse("kind", parse_kind)
    weekday = row.parse("weekday", parse_weekday)
    periods = row.parse("periods", parse_periods)
    weeks = row.parse("weeks", parse_weeks)
    pattern = row.parse("week_pattern", parse_week_pattern)
    recording = row.parse("recording", parse_recording)
    entries = row.parse("receivers", parse_receivers) or []

    main = row.parse("main_classroom", lambda t: names.classroom(t, "主讲教室") if t else _empty("主讲教室"))
    school = names.school(main.school_id) if main is not None else None
    teacher = row.parse("main_teacher",
                        lambda t: names.teacher(t, school, "主讲教师") if t else _empty("主讲教师"))
    term = row.parse("term", lambda t: names.term(t, school) if t else _empty("学期"))

    receivers: list[ReceiverSpec] = []
    for e in entries:
        try:
            room = names.classroom(e.classroom, "接收教室")
            assistant = names.teacher(e.assistant, names.school(room.school_id), "助教") if e.assistant else None
        except _CellError as exc:
            row.error("receivers", exc.reason)
            continue
        receivers.append(ReceiverSpec(room.id, e.mode, assistant.id if assistant else None))

    if row.errors or None in (kind, weekday, periods, weeks, pattern, main, teacher, term):
        return None
    return SeriesSpec(
        kind=kind, title=row.get("title"), subject=row.get("subject"), grade=row.get("grade"), term_id=term.id,
        main_classroom_id=main.id, main_teacher_id=teacher.id, weekday=weekday,
        period_from=periods[0], period_to=periods[1], week_from=weeks[0], week_to=weeks[1], week_pattern=pattern,
        receivers=tuple(receivers), recording=recording,
        pairing_override_reason=row.get("pairing_override_reason") or None,
    )


def _empty(what: str) -> Any:
    raise _CellError(f"{what}不能为空")


_UNQUOTED_RULES: tuple[tuple[str, str], ...] = (
    # Matched against the domain message with every “quoted name” removed, in this order.
    ("结对", "receivers"),
    ("主讲教师|只能为自己", "main_teacher"),
    ("助教|接收", "receivers"),
    ("课程名称", "title"),
    ("星期应为", "weekday"),
    ("上课日|开始周|结束周", "weeks"),
    (r"第 ?\d+ ?节|节次", "periods"),
    ("学期", "term"),
)


def _column_for(exc: SchedulerError, main_school_id: int) -> str:
    """The field most responsible for a booking error."""
    if isinstance(exc, Conflict):
        return "periods"
    no_bells = re.match(r"学校 #(\d+) 尚未设置作息时间", exc.message)
    if no_bells:  # whose bells are missing decides the column
        return "main_classroom" if int(no_bells.group(1)) == main_school_id else "receivers"
    if exc.field:
        return exc.field
    message = re.sub(r"“[^”]*”", "", exc.message)
    if isinstance(exc, Forbidden):
        return "main_teacher" if "只能为自己" in message else "main_classroom"
    for pattern, key in _UNQUOTED_RULES:
        if re.search(pattern, message):
            return key
    return "main_classroom"


def _conflict_reason(session: Session, exc: Conflict, series_rows: dict[int, int]) -> str:
    """The domain message, plus which earlier rows of this file it clashes with."""
    ids = {i.instance_id for i in exc.items if i.instance_id is not None}
    if not ids or not series_rows:
        return exc.message
    series_ids = session.scalars(select(LessonInstance.series_id).where(LessonInstance.id.in_(ids))).all()
    rows = sorted({series_rows[s] for s in series_ids if s in series_rows})
    if not rows:
        return exc.message
    return f"{exc.message}（与本文件第 {'、'.join(map(str, rows))} 行冲突）"


def import_timetable(session: Session, data: bytes, filename: str, *, actor: User, scope: Scope,
                     commit: bool) -> ImportReport:
    """Check every row of a timetable file and, when ``commit`` and all rows pass, book them all.

    Raises ``UnsupportedFile``/``UnreadableFile`` for a file that is not a
    table; every problem inside the table is a ``RowError`` in the report.
    Writes nothing on a dry run or when any row fails; otherwise the series
    are flushed and the caller commits.
    """
    sheet = parse_file(data, filename)
    by_index, headers, header_errors = _map_headers(sheet)
    report = ImportReport(rows_total=len(sheet.rows), dry_run=not commit, errors=list(header_errors))
    if header_errors:
        return report

    names = _Directory(session, scope)
    series_rows: dict[int, int] = {}
    outer = session.begin_nested()
    try:
        for sheet_row in sheet.rows:
            cells = {by_index[i]: v for i, v in enumerate(sheet_row.values) if i in by_index}
            row = _Row(sheet_row.number, cells, headers)
            spec = _spec_of_row(row, names)
            if spec is not None:
                try:
                    with session.begin_nested():
                        series = create_series(session, spec, actor=actor, scope=scope)
                    series_rows[series.id] = row.number
                except Conflict as exc:
                    row.error("periods", _conflict_reason(session, exc, series_rows))
                except SchedulerError as exc:
                    main = session.get(Classroom, spec.main_classroom_id)
                    row.error(_column_for(exc, main.school_id if main else -1), exc.message)
            report.errors.extend(row.errors)
            if not row.errors:
                report.rows_ok += 1
        if commit and not report.errors:
            outer.commit()
            report.committed = True
            report.created_series_ids = list(series_rows)
        else:
            outer.rollback()
    except BaseException:
        if outer.is_active:
            outer.rollback()
        raise
    return report


# ---------------------------------------------------------------- sample file

_WEEKDAY_ZH = ("周一", "周二", "周三", "周四", "周五")


def sample_rows(session: Session, *, actor: User, scope: Scope, tries: int = 60) -> list[dict[str, str]]:
    """A timetable row that imports cleanly for this caller, from their own data: a paired urban and rural
    school in their scope, a teacher and classrooms of those schools, the current term and a free slot.

    Each candidate slot goes through ``prepare_series`` (every booking rule, nothing written), so the row
    passes a dry run as long as nobody books that slot first.  Empty when the caller's schools have no
    pairing, teacher or bells yet.
    """
    from scheduler.bookings import prepare_series
    from scheduler.models import Pairing, PeriodScheme

    term = current_term(session, clock.now().date())
    if term is None:
        return []
    same_name = session.scalars(select(Term.id).where(Term.name == term.name)).all()
    term_text = term.name if len(same_name) == 1 else str(term.id)
    pairings = session.scalars(select(Pairing).where(Pairing.active.is_(True)).order_by(Pairing.id)).all()
    candidates = []
    for pairing in pairings:
        if pairing.term_id not in (None, term.id):
            continue
        urban, rural = session.get(School, pairing.urban_school_id), session.get(School, pairing.rural_school_id)
        if urban is None or rural is None:
            continue
        # the caller books in a school they manage: the urban side gives the lesson, else the rural side
        if _manages(session, scope, urban):
            candidates.append((pairing, urban, pairing.urban_classroom_id, rural, pairing.rural_classroom_id))
        elif _manages(session, scope, rural):
            candidates.append((pairing, rural, pairing.rural_classroom_id, urban, pairing.urban_classroom_id))
    for pairing, main_school, main_id, recv_school, room_id in candidates:
        main = session.get(Classroom, main_id) if main_id else \
            session.scalars(select(Classroom).where(Classroom.school_id == main_school.id).order_by(Classroom.id)).first()
        room = session.get(Classroom, room_id) if room_id else \
            session.scalars(select(Classroom).where(Classroom.school_id == recv_school.id).order_by(Classroom.id)).first()
        teacher = session.scalars(select(User).where(User.school_id == main_school.id, User.role == Role.teacher,
                                                     User.is_active.is_(True)).order_by(User.id)).first()
        if main is None or room is None or teacher is None:
            continue
        subject = pairing.subjects[0] if pairing.subjects else "数学"
        schemes = session.scalars(select(PeriodScheme).where(PeriodScheme.school_id == main_school.id)).all()
        numbers = sorted({p.number for sc in schemes for p in sc.periods}) or [1]
        for period in numbers[::-1]:  # the afternoon is freer than the morning
            for weekday in range(1, 6):
                if tries <= 0:
                    return []
                tries -= 1
                spec = SeriesSpec(kind=LessonKind.dedicated, title=f"示例{subject}", subject=subject, grade="四年级",
                                  term_id=term.id, main_classroom_id=main.id, main_teacher_id=teacher.id,
                                  weekday=weekday, period_from=period, period_to=period,
                                  receivers=(ReceiverSpec(room.id),))
                try:
                    prepare_series(session, spec, actor=actor, scope=scope)
                except SchedulerError:
                    continue
                return [{
                    "课程名称": spec.title, "类型": "专递课堂", "学科": subject, "年级": spec.grade, "学期": term_text,
                    "主讲教室": f"{main_school.name}/{main.name}", "主讲教师": teacher.username,
                    "星期": _WEEKDAY_ZH[weekday - 1], "节次": str(period), "周次": "", "单双周": "每周",
                    "接收教室": f"{recv_school.name}/{room.name}", "录播": "否", "越过结对原因": "",
                    "备注": "示例：可直接预检；导入后请在课表中停课或修改",
                }]
    return []


def _manages(session: Session, scope: Scope, school: School) -> bool:
    from scheduler.access import require_school_admin

    try:
        require_school_admin(session, scope, school.id)
    except SchedulerError:
        return False
    return True


def sample_csv(session: Session, *, actor: User, scope: Scope) -> bytes:
    """The sample file offered on the import page: the header and ``sample_rows``, UTF-8 with BOM for Excel."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([c.header for c in COLUMNS])
    for row in sample_rows(session, actor=actor, scope=scope):
        writer.writerow([row.get(c.header, "") for c in COLUMNS])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


# ---------------------------------------------------------------- command line


def format_report(report: ImportReport) -> str:
    """The zh-CN text the command line prints."""
    lines = [f"共 {report.rows_total} 行课程，检查通过 {report.rows_ok} 行，错误 {len(report.errors)} 处"]
    lines += [f"第 {e.row} 行 [{e.column}]: {e.reason}" for e in report.errors]
    if report.committed:
        lines.append(f"导入成功：已排课 {len(report.created_series_ids)} 门课程")
    elif report.errors:
        lines.append("存在错误，未写入任何数据" + ("" if report.dry_run else "（导入已全部取消）"))
    else:
        lines.append("试运行通过，未写入任何数据；去掉 --dry-run 即可正式导入")
    return "\n".join(lines)


def _pick_actor(session: Session, username: str | None) -> User:
    if username:
        user = session.scalar(select(User).where(User.username == username))
        if user is None or not user.is_active:
            raise Invalid(f"账号“{username}”不存在或已停用")
        if user.role is not Role.admin:
            raise Invalid(f"账号“{username}”不是管理员，不能导入课表")
        return user
    user = session.scalar(select(User).where(User.role == Role.admin, User.is_active.is_(True),
                                             User.school_id.is_(None), User.region_id.is_(None)).order_by(User.id))
    if user is None:
        raise Invalid("没有系统管理员账号，请用 --as-user 指定管理员")
    return user


def run_cli_import(settings: Settings, path: Path | str, *, commit: bool, actor_username: str | None,
                   out: Callable[[str], None] = print) -> int:
    """``sanke import-timetable``: 0 when the file is clean (and booked unless dry run), 1 otherwise."""
    from server.core.db import make_engine, make_session_factory

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        out(f"无法读取文件 {path}：{exc.strerror or exc}")
        return 1
    engine = make_engine(settings.effective_database_url)
    try:
        with make_session_factory(engine)() as session:
            try:
                actor = _pick_actor(session, actor_username)
                report = import_timetable(session, data, path.name, actor=actor, scope=scope_of(session, actor),
                                          commit=commit)
            except SchedulerError as exc:
                session.rollback()
                out(f"导入失败：{exc.message}")
                return 1
            if report.committed:
                session.commit()
            else:
                session.rollback()
            out(format_report(report))
            return 0 if report.ok else 1
    finally:
        engine.dispose()

