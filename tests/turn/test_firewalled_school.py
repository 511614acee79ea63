"""A school whose firewall lets only TCP out still gets its lesson, relayed by a real coturn.

The lab (``tests/turn/lab.py``): SanKe's SFU and coturn in a server namespace, the receiving
classroom — Debian's Chromium with its fake devices, opening the real ``receiving.html`` — in a
classroom namespace whose firewall drops every UDP datagram and lets out only TCP to SanKe's HTTP
port and to one coturn port.  SanKe is configured as an operator would: ``SANKE_ICE_SERVERS`` with
the three TURN URLs (UDP, TCP, TLS on 443) and ``SANKE_TURN_SECRET``; the page keeps the default
``iceTransportPolicy`` ("all") and must find the relay itself.  The teacher publishes from an aiortc
client on the server side.

First the school lets out TCP to 3478: the video must be decoded over a relay candidate whose
relay protocol is TCP.  Then only TLS on 443: over a relay with relay protocol TLS, through 443.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import uvicorn

from media.ice import IcePolicy
from scheduler.models import LessonInstance
from server.core.config import Settings
from server.serving import uvicorn_config
from signaling.client import LessonClient
from tests.conftest import TEST_SECRET
from tests.media.sfu_helpers import RED, ColorTrack, close_to, frames
from tests.turn.lab import (
    SFU_IP,
    SUBNET,
    TURN_IP,
    Coturn,
    Lab,
    NsThread,
    require_lab,
    run_in_netns,
    wait_tcp,
)
from tests.utils.factory import World, token_for
from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS, LESSON_DAY, NOW, js_poll_impl

pytestmark = pytest.mark.timeout(300)

HTTP_PORT = 8080
TURN_SECRET = "lab-shared-secret-0123456789abcdef"
ICE_SERVERS = (f"turn:{TURN_IP}:3478?transport=udp,turn:{TURN_IP}:3478?transport=tcp,"
               f"turns:{TURN_IP}:443?transport=tcp")
BASE = f"http://{SFU_IP}:{HTTP_PORT}"
TEACHER_POLICY = IcePolicy.from_strings(None, SFU_IP, SUBNET, None)

PATH_JS = """async () => {
  const lc = window.sankeLesson;
  if (!lc || !lc.subscriber) return null;
  const stats = await lc.subscriber.getStats();
  const byId = new Map();
  stats.forEach((s) => byId.set(s.id, s));
  let frames = 0, pair = null;
  stats.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') frames += s.framesDecoded || 0;
    if (s.type === 'transport' && s.selectedCandidatePairId) pair = byId.get(s.selectedCandidatePairId);
  });
  const local = pair ? byId.get(pair.localCandidateId) : null;
  const remote = pair ? byId.get(pair.remoteCandidateId) : null;
  return {
    frames, policy: lc.subscriber.getConfiguration().iceTransportPolicy,
    local: local ? {type: local.candidateType, relayProtocol: local.relayProtocol || null, url: local.url || null,
                    address: local.address} : null,
    remote: remote ? {type: remote.candidateType, address: remote.address, protocol: remote.protocol} : null,
  };
}"""


def _chromium_args() -> list[str]:
    """The web tests' flags, with the lab's addresses exempt from the resolver rule."""
    args = []
    for arg in CHROMIUM_ARGS:
        if arg.startswith("--host-resolver-rules="):
            arg = f"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE {SFU_IP}, EXCLUDE {TURN_IP}"
        args.append(arg)
    # Chromium checks the certificate of a turns: server (without this flag, TLS on 443 fails with
    # the lab's self-signed one): an operator's coturn needs a certificate the classrooms trust
    return [*args, "--ignore-certificate-errors"]


@pytest.fixture
def lab() -> Iterator[Lab]:
    require_lab()
    if shutil.which(CHROMIUM) is None:
        if os.environ.get("SANKE_TEST_REQUIRE_BROWSER") == "1" or os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is not installed")
        pytest.skip(f"{CHROMIUM} is not installed")
    lab = Lab()
    try:
        yield lab.open()
    finally:
        lab.close()


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    """SQLite only: the database is not what these tests are about."""
    return sqlite_url


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=db_url, secret_key=TEST_SECRET, host=SFU_IP,
                    ice_host_addresses=SFU_IP, ice_allowed_networks=SUBNET, ice_servers=ICE_SERVERS,
                    turn_secret=TURN_SECRET, media_workers=0)


class School:
    """SanKe in the server namespace (uvicorn in a thread there), and a booked, open lesson."""

    def __init__(self, lab: Lab, app: Any, world: World) -> None:
        self.lab, self.app, self.world = lab, app, world
        self.server_ns = NsThread(lab.server)
        self.coturn: Coturn | None = None
        self.uvicorn: uvicorn.Server | None = None
        self._served: Any = None
        self.teacher: LessonClient | None = None
        self.lesson_id = 0

    def start(self, session_factory: Any, folder: Path) -> None:
        self.server_ns.start_loop()
        self.coturn = Coturn(self.lab, folder / "coturn", TURN_SECRET)
        config = uvicorn_config(self.app, host=SFU_IP, port=HTTP_PORT, log_level="warning", lifespan="on")
        self.uvicorn = uvicorn.Server(config)
        self._served = run_in_netns(self.lab.server, self.uvicorn.run, "uvicorn-in-server-ns")
        wait_tcp(self.server_ns, SFU_IP, HTTP_PORT, timeout=30)
        wait_tcp(self.server_ns, TURN_IP, 3478)
        wait_tcp(self.server_ns, TURN_IP, 443)
        self.lesson_id = self._book()
        with session_factory() as s:
            s.get(LessonInstance, self.lesson_id).room_opened_at = NOW
            s.commit()

    def http(self, method: str, path: str, user: Any, **kwargs: Any) -> Any:
        def go() -> Any:
            headers = {"Authorization": f"Bearer {token_for(user, TEST_SECRET)}"}
            r = httpx.request(method, BASE + path, headers=headers, timeout=20, **kwargs)
            assert r.status_code < 300, r.text
            return r.json()

        return self.server_ns.call(go)

    def _book(self) -> int:
        w = self.world
        self.http("POST", "/api/v1/series", w.urban_admin, json={
            "kind": "dedicated", "title": "三年级数学", "subject": "数学", "grade": "三年级", "term_id": w.term.id,
            "main_classroom_id": w.main_room.id, "main_teacher_id": w.teacher.id,
            "weekday": LESSON_DAY.isoweekday(), "period_from": 1, "receivers": [{"classroom_id": w.recv_room.id}]})
        day = LESSON_DAY.isoformat()
        lessons = self.http("GET", "/api/v1/lessons", w.urban_admin, params={"date_from": day, "date_to": day})
        assert len(lessons["data"]) == 1, lessons
        return int(lessons["data"][0]["id"])

    def teacher_publishes(self) -> None:
        token = self.http("POST", f"/api/v1/lessons/{self.lesson_id}/join-token", self.world.teacher)["token"]

        async def publish() -> None:
            self.teacher = LessonClient(BASE, self.lesson_id, token, policy=TEACHER_POLICY)
            await self.teacher.connect()
            await self.teacher.publish({"camera": ColorTrack(RED)})

        self.server_ns.run(publish())

    def close(self) -> None:
        """Stop everything that was started, in reverse order, whatever failed."""
        try:
            if self.teacher is not None:
                self.server_ns.run(self.teacher.close(), timeout=20)
        finally:
            try:
                if self.uvicorn is not None:
                    self.uvicorn.should_exit = True
                    self._served.join(30)
                    assert not self._served.is_alive(), "uvicorn did not stop"
            finally:
                self.server_ns.close()
                if self.coturn is not None:
                    self.coturn.stop()


@pytest.fixture
def school(lab: Lab, app: Any, world: World, session_factory: Any, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[School]:
    monkeypatch.setattr("scheduler.clock.now", lambda: NOW)
    school = School(lab, app, world)
    try:
        school.start(session_factory, tmp_path)
        yield school
    finally:
        school.close()


@pytest.fixture
def classroom_browser(lab: Lab, tmp_path: Path) -> Iterator[Any]:
    """Chromium inside the classroom namespace (a wrapper enters it), driven from here over a pipe."""
    from playwright.sync_api import sync_playwright

    wrapper = tmp_path / "chromium-in-classroom"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {lab.classroom} {CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    pw = sync_playwright().start()
    try:
        browser = pw.chromium.launch(executable_path=str(wrapper), headless=True, args=_chromium_args())
        try:
            yield browser
        finally:
            browser.close()
    finally:
        pw.stop()


def open_receiving_page(browser: Any, school: School) -> tuple[Any, Any]:
    """The receiving classroom's kiosk page, signed in as its terminal; ``(context, page)``."""
    w = school.world
    user = school.http("GET", "/api/v1/auth/me", w.terminal_recv)
    ctx = browser.new_context(base_url=BASE, locale="zh-CN", timezone_id="Asia/Shanghai")
    ctx.clock.install(time=NOW.replace(tzinfo=ZoneInfo("Asia/Shanghai")))
    stored = json.dumps({"token": token_for(w.terminal_recv, TEST_SECRET), "user": user})
    ctx.add_init_script(f"localStorage.setItem('sanke.session', {json.dumps(stored)});")
    page = ctx.new_page()
    page.console_log = []  # type: ignore[attr-defined]
    page.on("console", lambda msg: page.console_log.append(f"{msg.type}: {msg.text}"))
    page.goto("/lesson/receiving.html")
    return ctx, page


def relayed_video(page: Any, relay_protocol: str, timeout: float = 40) -> dict[str, Any]:
    """Wait until the page decodes video over a relay candidate with ``relay_protocol``, then until
    10 more frames are decoded; returns the path seen."""
    deadline = time.monotonic() + timeout
    path: Any = None
    while True:
        path = page.evaluate(PATH_JS)
        if path and path["frames"] > 0 and path["local"] and path["local"]["type"] == "relay" \
                and path["local"]["relayProtocol"] == relay_protocol:
            break
        if time.monotonic() > deadline:
            log = "\n".join(page.console_log[-15:])
            raise AssertionError(f"no video relayed over {relay_protocol} within {timeout} s: {path}\n{log}")
        time.sleep(0.25)
    before = path["frames"]
    js_poll_impl(page, f"(async () => {{ const p = await ({PATH_JS})(); return p && p.frames >= {before + 10}; }})()",
                 timeout=20)
    return dict(path)


def test_a_school_that_lets_out_only_tcp_gets_its_lesson_through_coturn(
        lab: Lab, school: School, classroom_browser: Any) -> None:
    w = school.world
    school.teacher_publishes()

    # 1. The school lets out TCP to coturn's 3478 (and SanKe's HTTP): TURN over TCP.
    lab.firewall([(SFU_IP, HTTP_PORT), (TURN_IP, 3478)])
    ctx, page = open_receiving_page(classroom_browser, school)
    js_poll_impl(page, "window.sankeLesson && window.sankeLesson.state === 'joined'", timeout=20)
    joined = page.evaluate("JSON.stringify(window.sankeLesson.joined)")
    assert TURN_SECRET not in joined
    servers = json.loads(joined)["ice_servers"]
    assert [s["urls"] for s in servers] == [[u] for u in ICE_SERVERS.split(",")]
    for s in servers:  # minted for this terminal, valid for the 6 h default from now
        expiry, _, user = s["username"].partition(":")
        assert user == str(w.terminal_recv.id), s
        assert 6 * 3600 - 120 <= int(expiry) - time.time() <= 6 * 3600 + 5, s
    path = relayed_video(page, "tcp")
    assert path["policy"] == "all", path  # the page found the relay itself
    assert path["remote"]["address"] == SFU_IP and path["remote"]["protocol"] == "udp", path
    assert ":3478" in (path["local"]["url"] or ""), path
    assert lab.udp_dropped() > 0  # it did try UDP (host candidates, TURN over UDP): the firewall refused
    ctx.close()

    # 2. A stricter school: only TLS to 443 gets out (what looks like HTTPS).
    lab.firewall([(SFU_IP, HTTP_PORT), (TURN_IP, 443)])
    ctx, page = open_receiving_page(classroom_browser, school)
    path = relayed_video(page, "tls")
    assert path["policy"] == "all", path
    assert path["remote"]["address"] == SFU_IP, path
    assert re.search(r"^turns:.*:443\b", path["local"]["url"] or ""), path
    ctx.close()

    log = school.coturn.text()
    assert TURN_SECRET not in log
    assert re.search(r"TCP|TLS", log), log[-2000:]


def _selected_local_candidate(pc: Any) -> Any:
    """The local candidate of the pair ICE nominated on ``pc``'s (one, bundled) transport."""
    [transport] = {t.receiver.transport.transport for t in pc.getTransceivers()}
    pair = transport._connection._nominated.get(1)
    return pair.local_candidate if pair is not None else None


def test_a_python_client_behind_the_firewall_gets_its_lesson_through_coturn_over_tcp(
        lab: Lab, school: School) -> None:
    """The Python lesson client (tools, benches) takes the TURN servers of ``joined.ice_servers``
    like the pages: in the classroom that lets out only TCP to 3478 it is relayed over TCP."""
    w = school.world
    school.teacher_publishes()
    lab.firewall([(SFU_IP, HTTP_PORT), (TURN_IP, 3478)])
    token = school.http("POST", f"/api/v1/lessons/{school.lesson_id}/join-token", w.terminal_recv)["token"]
    classroom = NsThread(lab.classroom)
    classroom.start_loop()
    client = LessonClient(BASE, school.lesson_id, token, policy=IcePolicy.from_strings(None, None, SUBNET, None))

    async def watch() -> tuple[list[Any], Any, Any]:
        await client.connect()
        assert school.teacher is not None
        teacher = school.teacher.participant_id
        await client.subscribe([{"participant_id": teacher, "source": "camera"}])
        seen = await frames(await client.track(teacher, "camera", timeout=40), 10, timeout=40)
        assert client.subscriber is not None
        return seen, _selected_local_candidate(client.subscriber), await client.ice_configuration()

    try:
        seen, local, configuration = classroom.run(watch(), timeout=90)
    finally:
        try:
            classroom.run(client.close(), timeout=20)
        finally:
            classroom.close()
    assert all(close_to(x, RED) for x in seen[-5:]), seen
    servers = json.loads(json.dumps(client.joined["ice_servers"]))
    assert [s["urls"] for s in servers] == [[u] for u in ICE_SERVERS.split(",")]
    assert all(s["username"].endswith(f":{w.terminal_recv.id}") for s in servers), servers
    # aiortc relays through one TURN server: the one that answered from behind the firewall
    assert configuration.iceServers[0].urls == f"turn:{TURN_IP}:3478?transport=tcp", configuration.iceServers
    assert local is not None and local.type == "relay" and local.host == TURN_IP, local
    assert lab.udp_dropped() > 0  # UDP was tried (host candidates, the probe of TURN over UDP) and refused
