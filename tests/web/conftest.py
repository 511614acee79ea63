"""Browser tests: Debian's Chromium driven by Playwright (sync API), against a SanKe server the test starts.

Everything runs on 127.0.0.1: the server gathers ICE candidates on loopback only and refuses
others (``SANKE_ICE_*``), and Chromium is launched with the flags of the verified loopback recipe
(``../shared/notes/webrtc-loopback.md``): fake camera and microphone, permission prompts
auto-accepted, loopback candidates allowed, mDNS candidates off and every host name unresolvable.
Pages create ``new RTCPeerConnection({iceServers: joined.ice_servers})``, and ``ice_servers`` is empty
here.

Fixtures
--------
``chromium_path`` (session)
    ``/usr/bin/chromium`` (or ``SANKE_CHROMIUM``). Missing (or the playwright package): the test is
    skipped with the reason, except with ``SANKE_TEST_REQUIRE_BROWSER=1`` (``scripts/test.sh`` sets it
    and installs Chromium with apt) or ``CI``, where it fails.
``browser`` (session)
    One headless Chromium (``CHROMIUM_ARGS``), closed at the end of the session.
``web_server``
    A SanKe app on a real uvicorn (``tests.utils.live.live_server``) with the ``World`` test data,
    one more receiving classroom terminal (``site.terminal_recv2``), and one dedicated lesson
    booked for today: ``site.lesson_id``, 08:00-08:40 on ``LESSON_DAY``, main classroom
    ``world.main_room`` (teacher ``world.teacher``, terminal ``world.terminal_main``), receiving
    classrooms ``world.recv_room`` (``world.terminal_recv``) and ``world.recv_room2``
    (``site.terminal_recv2``). The server's clock stands at ``NOW`` (07:55, room open: the lesson
    starts in 5 minutes); the room of the dedicated lesson is open. ``site.open_room(id)`` opens
    another lesson's room, ``site.headers(user)`` gives API headers, ``site.book(**series)``
    books another series. SQLite only; the media worker runs in the server process.
``open_page``
    ``open_page(user, path, *, viewport=(1920, 1080), allow_console=(regex, ...), phone=False)`` → a Playwright
    ``Page`` in a new browser context of its own (so each role/user has its own localStorage and
    sessionStorage), signed in as ``user`` (``None``: signed out), with the browser clock set to
    the server's ``NOW`` (time runs from there) and the time zone Asia/Shanghai. Every console
    error and uncaught exception is collected in ``page.console_errors``; at teardown the test
    fails if any is left that does not match one of ``allow_console``. ``phone=True``: a phone's
    context (``PHONE``: touch, mobile, device scale 3; ``viewport`` gives its size and orientation).
    Contexts are closed at teardown.
``screenshot``
    ``screenshot(page, name)`` saves ``tests/artifacts/<test>/<name>.png`` (git-ignored) and fails
    if the picture is blank (fewer than ``MIN_COLOURS`` distinct colours).
``js_poll``
    ``js_poll(page, expression, timeout=10)``: evaluate a JS expression (it may be async) until
    it is truthy; returns its value or fails with the last value.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from scheduler.models import LessonInstance, Role
from server.core.config import Settings
from tests.conftest import TEST_SECRET
from tests.utils.factory import World, add_user, token_for
from tests.utils.live import live_server

CHROMIUM = os.environ.get("SANKE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu",
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
    "--disable-quic",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    # Chromium honours only the last --disable-features: every feature in this one flag.
    "--disable-features=WebRtcHideLocalIpsWithMdns,MediaRouter",
    # getDisplayMedia without a picker: the fake UI picks the whole (virtual) screen.
    "--auto-select-desktop-capture-source=Entire screen",
    "--autoplay-policy=no-user-gesture-required",
]
LESSON_DAY = date(2026, 9, 7)  # a Monday of the factory's term
NOW = datetime(2026, 9, 7, 7, 55)
"""The server's (and the browsers') clock: five minutes before the dedicated lesson."""
PHONE = {"is_mobile": True, "has_touch": True, "device_scale_factor": 3}
"""A phone's context options (with ``viewport=(390, 844)`` portrait or ``(844, 390)`` landscape)."""
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
MIN_COLOURS = 8
ALWAYS_ALLOWED = (r"/favicon\.ico\]$",)
"""Console errors no test cares about: the browser's own favicon request."""
SESSION_KEY = "sanke.session"
"""localStorage key of ``web/assets/api.js``'s session (``{token, user}``)."""


def _browser_required() -> bool:
    return os.environ.get("SANKE_TEST_REQUIRE_BROWSER") == "1" or bool(os.environ.get("CI"))


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists():
        reason = f"{CHROMIUM} is not installed (scripts/test.sh installs Debian's chromium)"
        if _browser_required():
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        import playwright  # noqa: F401
    except ImportError:
        reason = "the Python package playwright is not installed (pip install -e '.[test]')"
        if _browser_required():
            pytest.fail(reason)
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture(scope="session")
def browser(chromium_path: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


# --------------------------------------------------------------------------------------- server

@pytest.fixture
def db_url(sqlite_url: str) -> str:
    """SQLite only: the database is not what these tests are about."""
    return sqlite_url


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=db_url, secret_key=TEST_SECRET,
                    ice_host_addresses="127.0.0.1", ice_allowed_networks="127.0.0.0/8", media_workers=0)


@dataclass
class Site:
    base: str
    world: World
    http: httpx.Client
    session_factory: Any
    terminal_recv2: Any
    lesson_id: int = 0

    def headers(self, user: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {token_for(user, TEST_SECRET)}"}

    def book(self, **series: Any) -> int:
        w = self.world
        body = {"kind": "dedicated", "title": "三年级数学", "subject": "数学", "grade": "三年级",
                "term_id": w.term.id, "main_classroom_id": w.main_room.id, "main_teacher_id": w.teacher.id,
                "weekday": LESSON_DAY.isoweekday(), "period_from": 1,
                "receivers": [{"classroom_id": w.recv_room.id}, {"classroom_id": w.recv_room2.id}]}
        body.update(series)
        r = self.http.post("/api/v1/series", json=body, headers=self.headers(w.urban_admin))
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    def lessons(self, user: Any, **params: Any) -> list[dict[str, Any]]:
        r = self.http.get("/api/v1/lessons", params=params, headers=self.headers(user))
        assert r.status_code == 200, r.text
        return list(r.json()["data"])

    def open_room(self, lesson_id: int) -> None:
        """Open the lesson's room now (the lifecycle task would, ``SANKE_ROOM_OPEN_LEAD_MINUTES`` early)."""
        with self.session_factory() as s:
            s.get(LessonInstance, lesson_id).room_opened_at = NOW
            s.commit()


@pytest.fixture
def web_server(app: Any, world: World, session_factory: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.setattr("scheduler.clock.now", lambda: NOW)
    with session_factory() as s:
        recv2 = add_user(s, "term_recv2", Role.terminal, classroom=s.merge(world.recv_room2), name="石桥二年级终端")
        s.commit()
        s.refresh(recv2)
        s.expunge(recv2)
    with live_server(app) as base, httpx.Client(base_url=base, timeout=20) as http:
        site = Site(base=base, world=world, http=http, session_factory=session_factory, terminal_recv2=recv2)
        site.book()
        today = site.lessons(world.urban_admin, date_from=LESSON_DAY.isoformat(), date_to=LESSON_DAY.isoformat())
        assert len(today) == 1, today
        site.lesson_id = int(today[0]["id"])
        site.open_room(site.lesson_id)
        yield site


# --------------------------------------------------------------------------------------- pages

def _user_json(site: Site, user: Any) -> dict[str, Any]:
    r = site.http.get("/api/v1/auth/me", headers=site.headers(user))
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.fixture
def open_page(browser: Any, web_server: Site) -> Iterator[Callable[..., Any]]:
    contexts: list[Any] = []
    pages: list[tuple[Any, tuple[str, ...]]] = []

    def open_(user: Any, path: str, *, viewport: tuple[int, int] = (1920, 1080),
              allow_console: tuple[str, ...] = (), wait_until: str = "load", phone: bool = False) -> Any:
        ctx = browser.new_context(base_url=web_server.base, viewport={"width": viewport[0], "height": viewport[1]},
                                  locale="zh-CN", timezone_id="Asia/Shanghai", **(PHONE if phone else {}))
        contexts.append(ctx)
        ctx.clock.install(time=NOW.replace(tzinfo=ZoneInfo("Asia/Shanghai")))  # NOW is wall-clock time there
        if user is not None:
            stored = {"token": token_for(user, TEST_SECRET), "user": _user_json(web_server, user)}
            ctx.add_init_script(
                f"if (!localStorage.getItem({json.dumps(SESSION_KEY)})) "
                f"localStorage.setItem({json.dumps(SESSION_KEY)}, {json.dumps(json.dumps(stored))});")
        page = ctx.new_page()
        page.console_errors = []  # type: ignore[attr-defined]
        page.console_log = []  # type: ignore[attr-defined]

        def on_console(msg: Any) -> None:
            page.console_log.append(f"{msg.type}: {msg.text}")
            if msg.type == "error":
                url = (msg.location or {}).get("url") or ""
                page.console_errors.append(f"{msg.text} [{url}]" if url else msg.text)

        page.on("console", on_console)
        page.on("pageerror", lambda exc: page.console_errors.append(f"uncaught: {exc}"))
        pages.append((page, allow_console))
        page.set_default_navigation_timeout(60_000)  # a loaded CI machine takes its time to load a page
        page.goto(path, wait_until=wait_until)
        return page

    yield open_
    problems = []
    for page, allowed in pages:
        left = [e for e in page.console_errors if not any(re.search(a, e) for a in allowed + ALWAYS_ALLOWED)]
        if left:
            problems.append(f"{page.url}: {left}")
    for ctx in contexts:
        try:
            ctx.close()
        except Exception:  # noqa: BLE001 - the browser may be gone already
            pass
    assert not problems, "console errors:\n" + "\n".join(problems)


def js_poll_impl(page: Any, expression: str, timeout: float = 10.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    value: Any = None
    while True:
        value = page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            log = "\n".join(getattr(page, "console_log", [])[-15:])
            raise AssertionError(f"not true within {timeout} s: {expression!r} (last: {value!r}) on {page.url}\n"
                                 f"console:\n{log}")
        time.sleep(interval)


@pytest.fixture
def js_poll() -> Callable[..., Any]:
    return js_poll_impl


# --------------------------------------------------------------------------------------- screenshots

def png_colours(data: bytes, limit: int = 4096) -> int:
    """Distinct pixel values of an 8-bit, non-interlaced PNG (what Chromium writes), up to ``limit``."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    assert header is not None
    width, height, depth, colour_type, _, _, interlace = header
    assert depth == 8 and interlace == 0, header
    bpp = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev = bytearray(stride)
    seen: set[bytes] = set()
    for y in range(height):
        line = raw[y * (stride + 1):(y + 1) * (stride + 1)]
        kind, cur = line[0], bytearray(line[1:])
        for i in range(stride):
            a = cur[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                cur[i] = (cur[i] + a) & 0xFF
            elif kind == 2:
                cur[i] = (cur[i] + b) & 0xFF
            elif kind == 3:
                cur[i] = (cur[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                cur[i] = (cur[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        if y % 4 == 0:  # every 4th row is plenty to tell a page from a blank one
            for x in range(0, stride, bpp * 4):
                seen.add(bytes(cur[x:x + bpp]))
            if len(seen) >= limit:
                return len(seen)
        prev = cur
    return len(seen)


@pytest.fixture
def screenshot(request: pytest.FixtureRequest) -> Callable[[Any, str], Path]:
    folder = ARTIFACTS / re.sub(r"[^\w.-]+", "_", request.node.name)

    def shoot(page: Any, name: str) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.png"
        data = page.screenshot(path=str(path))
        colours = png_colours(data)
        assert colours >= MIN_COLOURS, f"{path} looks blank ({colours} colours)"
        return path

    return shoot
