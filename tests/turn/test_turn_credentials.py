"""Time-limited TURN credentials (coturn's REST-API shared secret) and their settings.

What is checked: the credential is coturn's (a known answer, ``openssl``'s HMAC, and a real coturn
that accepts it and refuses an expired or foreign one); the expiry; each ``joined`` and
``resumed`` carries credentials minted for that user; the SFU itself never relays; bad settings
stop the start with a zh-CN / English message; the secret appears in no message, repr or log.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from media import ice
from media.ice import IcePolicy, browser_ice_servers, rtc_configuration
from media.turn import DEFAULT_TTL_S, TurnSecret, rest_api_credential
from server.core.config import Settings
from tests.conftest import TEST_SECRET
from tests.signaling.test_endpoint import join_msg, join_token, open_lesson, recv, recv_until
from tests.signaling.test_resume import resume_msg
from tests.turn.lab import TURN_IP, Coturn, Lab, NsThread, require_lab, wait_tcp

SECRET = "north-county-bureau-secret-2026"
URLS = "turn:turn.example.edu.cn:3478?transport=udp,turn:turn.example.edu.cn:3478?transport=tcp," \
       "turns:turn.example.edu.cn:443?transport=tcp"
CJK = re.compile(r"[\u4e00-\u9fff]")


# ----------------------------------------------------------------------------- the credential


def test_the_password_is_base64_of_hmac_sha1_of_the_username_keyed_by_the_secret() -> None:
    # known answer: printf '%s' 1790000000:42 | openssl dgst -sha1 -hmac "$SECRET" -binary | base64
    assert rest_api_credential(SECRET, "1790000000:42") == "E8Uox+Dn4h/qzJqyPNZxwVfX5RU="
    minted = TurnSecret(SECRET, 7200).mint(42, now=1789992800.7)
    assert (minted.username, minted.credential, minted.expires_at) == (
        "1790000000:42", "E8Uox+Dn4h/qzJqyPNZxwVfX5RU=", 1790000000)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
@pytest.mark.parametrize("username", ["1790000000:42", "1800000000:7", "1790021600:100000"])
def test_the_password_matches_openssl(username: str) -> None:
    done = subprocess.run(f"printf '%s' '{username}' | openssl dgst -sha1 -hmac '{SECRET}' -binary | base64",
                          shell=True, capture_output=True, text=True, check=True)
    assert rest_api_credential(SECRET, username) == done.stdout.strip()


def test_a_credential_expires_after_the_lifetime_6_hours_by_default() -> None:
    now = time.time()
    default = TurnSecret.from_strings(SECRET, None)
    assert default is not None and default.ttl_s == DEFAULT_TTL_S == 6 * 3600
    minted = default.mint(42, now)
    assert minted.expires_at == int(now) + 6 * 3600
    assert minted.username == f"{int(now) + 6 * 3600}:42"
    short = TurnSecret.from_strings(SECRET, "3600")
    assert short is not None and short.mint("42", now).expires_at == int(now) + 3600
    # another user, another moment: another credential
    assert default.mint(43, now).credential != minted.credential
    assert default.mint(42, now + 1).credential != minted.credential
    with pytest.raises(ValueError, match="without ':'"):
        default.mint("4:2", now)


def test_the_secret_is_in_no_repr() -> None:
    secret = TurnSecret(SECRET)
    policy = IcePolicy.from_strings(URLS, turn_secret=SECRET)
    settings = Settings(ice_servers=URLS, turn_secret=SECRET)
    for shown in (repr(secret), str(secret), repr(policy), str(policy), repr(settings), str(settings),
                  repr(settings.ice_policy()), repr(settings.model_dump())):
        assert SECRET not in shown


# ----------------------------------------------------------------------------- who gets what


def test_browsers_get_minted_credentials_and_the_sfu_never_relays() -> None:
    policy = IcePolicy.from_strings("stun:turn.example.edu.cn:3478," + URLS, turn_secret=SECRET)
    servers = browser_ice_servers(policy, 42, now=1789992800)
    assert servers[0] == {"urls": ["stun:turn.example.edu.cn:3478"]}
    assert [s["urls"] for s in servers[1:]] == [[u] for u in URLS.split(",")]
    for s in servers[1:]:
        assert s["username"] == "1790014400:42"
        assert s["credential"] == rest_api_credential(SECRET, "1790014400:42")
    assert SECRET not in repr(servers)
    # the SFU (and a media worker, which is not given the secret) uses only the STUN server
    config = rtc_configuration(policy)
    assert [s.urls for s in config.iceServers] == [["stun:turn.example.edu.cn:3478"]]
    worker = IcePolicy.from_strings("stun:turn.example.edu.cn:3478," + URLS)
    assert rtc_configuration(worker).iceServers == config.iceServers
    with pytest.raises(ValueError, match="SANKE_TURN_SECRET"):
        browser_ice_servers(worker, 42)


def test_media_workers_are_not_handed_the_secret_and_do_not_relay(tmp_path: Path) -> None:
    from media.worker_process import policy_from_strings

    settings = Settings(data_dir=tmp_path, host="203.0.113.10", ice_servers=URLS, turn_secret=SECRET)
    strings = settings.ice_strings()  # what the pool hands its worker processes
    assert SECRET not in repr(strings)
    worker = policy_from_strings(strings)
    assert worker.turn is None and rtc_configuration(worker).iceServers == []


def test_static_turn_credentials_still_work_beside_minted_ones() -> None:
    policy = IcePolicy.from_strings(f"turn:school:pw@turn.old.example:3478,{URLS}", turn_secret=SECRET)
    servers = browser_ice_servers(policy, 5, now=1000)
    assert servers[0] == {"urls": ["turn:turn.old.example:3478"], "username": "school", "credential": "pw"}
    assert servers[1]["username"] == f"{1000 + DEFAULT_TTL_S}:5"
    assert [s.urls for s in rtc_configuration(policy).iceServers] == [["turn:turn.old.example:3478"]]


def test_a_turn_server_outside_the_allowed_networks_is_pointed_out() -> None:
    policy = IcePolicy.from_strings("turn:203.0.113.5:3478?transport=tcp,turns:turn.example.edu.cn:443",
                                    allowed_networks="10.0.0.0/8", turn_secret=SECRET)
    assert policy.relay_outside_allowed_networks() == ["203.0.113.5"]
    inside = IcePolicy.from_strings("turn:10.1.2.3:3478", allowed_networks="10.0.0.0/8", turn_secret=SECRET)
    assert inside.relay_outside_allowed_networks() == []


# ----------------------------------------------------------------------------- bad settings


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"SANKE_ICE_SERVERS": URLS}, "SANKE_TURN_SECRET"),
        ({"SANKE_ICE_SERVERS": "turn:u:p@turn.example.edu.cn", "SANKE_TURN_SECRET": SECRET}, "SANKE_TURN_SECRET"),
        ({"SANKE_TURN_SECRET": SECRET}, "SANKE_TURN_SECRET"),
        ({"SANKE_ICE_SERVERS": URLS, "SANKE_TURN_SECRET": "short-secret"}, "SANKE_TURN_SECRET"),
        ({"SANKE_ICE_SERVERS": URLS, "SANKE_TURN_SECRET": "changeme"}, "SANKE_TURN_SECRET"),
        ({"SANKE_ICE_SERVERS": URLS, "SANKE_TURN_SECRET": SECRET + " x"}, "SANKE_TURN_SECRET"),
        ({"SANKE_ICE_SERVERS": URLS, "SANKE_TURN_SECRET": SECRET, "SANKE_TURN_TTL_SECONDS": "6h"},
         "SANKE_TURN_TTL_SECONDS"),
        ({"SANKE_ICE_SERVERS": URLS, "SANKE_TURN_SECRET": SECRET, "SANKE_TURN_TTL_SECONDS": "600"},
         "SANKE_TURN_TTL_SECONDS"),
        ({"SANKE_ICE_SERVERS": URLS, "SANKE_TURN_SECRET": SECRET, "SANKE_TURN_TTL_SECONDS": "9999999"},
         "SANKE_TURN_TTL_SECONDS"),
    ],
    ids=["no-secret", "secret-unused", "secret-without-servers", "short", "placeholder", "white-space",
         "ttl-not-a-number", "ttl-shorter-than-a-lesson", "ttl-too-long"],
)
def test_a_bad_turn_setting_stops_the_start_with_a_clear_message(
        env: dict[str, str], names: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("SANKE_ICE_SERVERS", "SANKE_TURN_SECRET", "SANKE_TURN_TTL_SECONDS", "SANKE_HOST",
                 "SANKE_ICE_HOST_ADDRESSES", "SANKE_ICE_ALLOWED_NETWORKS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings(data_dir=tmp_path)
    with pytest.raises(ValueError) as exc:
        from server.main import create_app

        create_app(settings, migrate=False, run_lifecycle=False)
    message = str(exc.value)
    assert names in message
    assert CJK.search(message) and re.search(r"[a-z]{3,} [a-z]{3,}", message), message  # zh-CN and English
    assert SECRET not in message


def test_sanke_serve_says_what_is_wrong_and_exits_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from server import cli
    from server.core.config import get_settings

    for name in [k for k in os.environ if k.startswith("SANKE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SANKE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SANKE_ICE_SERVERS", URLS)
    monkeypatch.setenv("SANKE_TURN_SECRET", SECRET)
    monkeypatch.setenv("SANKE_TURN_TTL_SECONDS", "600")
    get_settings.cache_clear()
    try:
        assert cli.main(["serve", "--port", "1"]) == 2
    finally:
        get_settings.cache_clear()
    out = capsys.readouterr()
    assert "配置错误 / configuration error: SANKE_TURN_TTL_SECONDS" in out.err, out
    assert "Traceback" not in out.err and SECRET not in out.err + out.out


# ----------------------------------------------------------------------------- joined / resumed


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    """SQLite only: the database is not what these tests are about."""
    return sqlite_url


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=db_url, secret_key=TEST_SECRET,
                    ice_host_addresses="127.0.0.1", ice_allowed_networks="127.0.0.0/8",
                    ice_servers=URLS, turn_secret=SECRET, turn_ttl_seconds=7200, media_workers=0)


def _check_minted(servers: list[dict[str, Any]], user_id: int, now: float) -> int:
    """Every server's credential is coturn's for ``user_id``, expiring 2 h after ``now``; its expiry."""
    assert [s["urls"] for s in servers] == [[u] for u in URLS.split(",")]
    expiries = set()
    for s in servers:
        expiry, _, user = s["username"].partition(":")
        assert user == str(user_id)
        assert 7200 - 5 <= int(expiry) - now <= 7200 + 1, (s, now)
        digest = hmac.new(SECRET.encode(), s["username"].encode(), hashlib.sha1).digest()
        assert s["credential"] == base64.b64encode(digest).decode()
        expiries.add(int(expiry))
    assert len(expiries) == 1
    return expiries.pop()


def test_joined_and_resumed_carry_credentials_minted_for_that_user(
        client: Any, world: Any, auth: Any, session_factory: Any, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    lesson = open_lesson(client, world, auth, session_factory)
    url = f"/api/v1/lessons/{lesson}/ws"
    seen: list[dict[str, Any]] = []
    with client.websocket_connect(url) as mn:
        mn.send_json(join_msg(join_token(client, auth, world.teacher, lesson)))
        main = recv(mn)
        seen.append(main)
        _check_minted(main["ice_servers"], world.teacher.id, time.time())
        with client.websocket_connect(url) as rv:
            rv.send_json(join_msg(join_token(client, auth, world.terminal_recv, lesson)))
            joined = recv(rv)
            seen.append(joined)
            first = _check_minted(joined["ice_servers"], world.terminal_recv.id, time.time())
            rv.send_json({"type": "raise_hand", "request_id": "h1", "raised": True})
            last_seq = recv_until(rv, "ack", seen)["seq"]
        # the socket dropped; it comes back 100 s later (the clock of the minting moves on)
        later = time.time() + 100
        monkeypatch.setattr(ice, "time", SimpleNamespace(time=lambda: later))
        with client.websocket_connect(url) as rv:
            rv.send_json(resume_msg(join_token(client, auth, world.terminal_recv, lesson), joined["session_id"],
                                    last_seq, keep_media=True))
            resumed = recv(rv)
            seen.append(resumed)
            assert resumed["type"] == "resumed", resumed
            assert _check_minted(resumed["ice_servers"], world.terminal_recv.id, later) >= first + 99
    for message in seen:
        assert SECRET not in str(message)
    assert not [r for r in caplog.records if SECRET in r.getMessage()]


# ----------------------------------------------------------------------------- a real coturn


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[NsThread]:
    """coturn (the lab's configuration) in a namespace of its own; a thread there with a loop."""
    require_lab()
    lab = Lab().open()
    server: Coturn | None = None
    inside = NsThread(lab.server)
    try:
        inside.start_loop()
        server = Coturn(lab, tmp_path / "coturn", SECRET)
        wait_tcp(inside, TURN_IP, 3478)
        yield inside
    finally:
        inside.close()
        if server is not None:
            server.stop()
        lab.close()


async def _allocate(username: str, password: str, transport: str) -> tuple[str, int]:
    """A TURN allocation on the lab's coturn; the relayed address it gave."""
    from aioice.turn import create_turn_endpoint

    turn, _ = await asyncio.wait_for(create_turn_endpoint(
        asyncio.DatagramProtocol, (TURN_IP, 3478), username, password, transport=transport), 10)
    try:
        return turn.get_extra_info("sockname")  # type: ignore[no-any-return]
    finally:
        turn.close()
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_coturn_accepts_a_minted_credential_and_refuses_an_expired_or_foreign_one(
        coturn: NsThread, transport: str) -> None:
    now = time.time()
    good = TurnSecret(SECRET, 3600).mint(42, now)
    relayed = coturn.run(_allocate(good.username, good.credential, transport))
    assert relayed[0] == TURN_IP
    expired = TurnSecret(SECRET, 3600).mint(42, now - 3600 - 60)
    with pytest.raises(Exception, match="401"):
        coturn.run(_allocate(expired.username, expired.credential, transport))
    foreign = TurnSecret("another-bureau-secret-0123456789", 3600).mint(42, now)
    with pytest.raises(Exception, match="401"):
        coturn.run(_allocate(foreign.username, foreign.credential, transport))
