"""Login under attack and tokens that mean what they say (issue 12, items 10 and 11).

Backoff per account and per client address with a growing wait, the same password-hash
work for an unknown name, failed logins in the audit trail, and access tokens revoked by a
password reset or a deactivation.  The clock is pinned (``scheduler.clock.now``), so no
test waits for a real backoff delay.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from scheduler import logins
from tests.conftest import TODAY
from tests.server.api.routes.helpers import API, assert_error
from tests.utils.factory import PASSWORD


class Clock:
    """``scheduler.clock.now`` under the test's hand."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = TODAY
        monkeypatch.setattr("scheduler.clock.now", lambda: self.now)

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


def login(client: TestClient, username: str, password: str):  # type: ignore[no-untyped-def]
    return client.post(f"{API}/auth/login", json={"username": username, "password": password})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_an_account_is_locked_after_five_failures_for_a_growing_wait(client, world, clock):
    for _ in range(logins.ACCOUNT.free):
        assert_error(login(client, "teacher", "wrong-password"), 401, "bad_credentials")
    # even the right password is refused now, without being checked, and says when to come back
    r = login(client, "teacher", PASSWORD)
    body = assert_error(r, 429, "too_many_attempts")
    assert r.headers["Retry-After"] == "30" and body["retry_after"] == 30
    assert "30 秒" in body["message"] and "09:00:30" in body["message"]
    clock.advance(29)
    assert_error(login(client, "TEACHER", PASSWORD), 429, "too_many_attempts")  # the name's case does not help
    # the wait doubles with every failure after it
    clock.advance(2)
    assert_error(login(client, "teacher", "wrong-again"), 401, "bad_credentials")
    r = login(client, "teacher", PASSWORD)
    assert_error(r, 429, "too_many_attempts")
    assert r.headers["Retry-After"] == "60"
    clock.advance(61)
    assert_error(login(client, "teacher", "wrong-again"), 401, "bad_credentials")
    r = login(client, "teacher", PASSWORD)
    assert r.headers["Retry-After"] == "120" and "2 分钟" in r.json()["message"]
    # once the wait is over the right password works and clears the count
    clock.advance(121)
    ok = login(client, "teacher", PASSWORD)
    assert ok.status_code == 200, ok.text
    for _ in range(logins.ACCOUNT.free - 1):
        assert_error(login(client, "teacher", "wrong-password"), 401, "bad_credentials")
    assert login(client, "teacher", PASSWORD).status_code == 200
    # another account was never held up
    assert login(client, "teacher2", PASSWORD).status_code == 200


def test_a_password_reset_by_an_admin_lets_a_locked_out_user_in_at_once(client, world, auth, clock):
    for _ in range(logins.ACCOUNT.free):
        assert_error(login(client, "teacher", "forgotten-password"), 401, "bad_credentials")
    assert_error(login(client, "teacher", "forgotten-password"), 429, "too_many_attempts")
    r = client.patch(f"{API}/users/{world.teacher.id}", json={"password": "New-password-3"},
                     headers=auth(world.urban_admin))
    assert r.status_code == 200, r.text
    assert login(client, "teacher", "New-password-3").status_code == 200


def test_an_unknown_name_is_locked_like_a_real_one(client, world, clock):
    for _ in range(logins.ACCOUNT.free):
        assert_error(login(client, "no-such-user", "wrong-password"), 401, "bad_credentials")
    r = login(client, "no-such-user", "wrong-password")
    assert_error(r, 429, "too_many_attempts")
    assert r.headers["Retry-After"] == "30"


def test_an_address_that_tries_many_accounts_is_held_up(app, world, clock, monkeypatch):
    # the address allows fewer failures here so that the test stays short; the rule is the same
    monkeypatch.setattr(logins, "ADDRESS", logins.Backoff(
        free=4, first_wait=timedelta(seconds=30), max_wait=timedelta(minutes=15), forget_after=timedelta(hours=1)))
    school = TestClient(app, client=("203.0.113.9", 40000))  # the app is started by the other client
    with TestClient(app, client=("198.51.100.7", 40000)) as attacker:
        for name in ("teacher", "teacher2", "student", "nobody"):  # one try each: no account is locked
            assert_error(login(attacker, name, "guess-1234"), 401, "bad_credentials")
        assert_error(login(attacker, "assistant", PASSWORD), 429, "too_many_attempts")
        # the same accounts from another address are not held up
        assert login(school, "teacher", PASSWORD).status_code == 200
        # a successful login does not clear the address
        clock.advance(31)
        assert login(attacker, "assistant", PASSWORD).status_code == 200
        assert_error(login(attacker, "teacher", "guess-5678"), 401, "bad_credentials")
        r = login(attacker, "teacher2", PASSWORD)
        assert_error(r, 429, "too_many_attempts")
        assert r.headers["Retry-After"] == "60"


def test_an_unknown_name_costs_the_same_password_hash_work(client, world, monkeypatch):
    checked: list[str] = []
    real_verify = PasswordHasher.verify

    def spy(self, hash, password):  # type: ignore[no-untyped-def]
        checked.append(hash.rsplit("$", 2)[0])  # $argon2id$v=19$m=...,t=...,p=...
        return real_verify(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", spy)
    assert_error(login(client, "teacher", "wrong-password"), 401, "bad_credentials")
    assert_error(login(client, "nobody-here", "wrong-password"), 401, "bad_credentials")
    assert len(checked) == 2 and checked[0] == checked[1], checked


def test_failed_logins_are_in_the_audit_trail(client, world, auth):
    assert_error(login(client, "teacher", "wrong-password"), 401, "bad_credentials")
    assert_error(login(client, "ghost", "wrong-password"), 401, "bad_credentials")
    assert login(client, "teacher", PASSWORD).status_code == 200

    r = client.get(f"{API}/audit", params={"entity": "user", "entity_id": world.teacher.id},
                   headers=auth(world.urban_admin))
    assert r.status_code == 200, r.text
    failed = [e for e in r.json() if e["action"] == "login_failed"]
    assert len(failed) == 1
    details = failed[0]["details"]
    assert (details["username"], details["address"], details["reason"]) == ("teacher", "testclient", "bad_password")
    assert "wrong-password" not in str(failed[0])

    unknown = client.get(f"{API}/audit", params={"entity": "user", "entity_id": 0}, headers=auth(world.sysadmin))
    assert [(e["action"], e["details"]["username"], e["details"]["reason"]) for e in unknown.json()] == [
        ("login_failed", "ghost", "unknown_user")]
    # a school admin reads the trail of the accounts it manages only
    assert_error(client.get(f"{API}/audit", params={"entity": "user", "entity_id": 0},
                            headers=auth(world.urban_admin)), 403, "forbidden")
    assert_error(client.get(f"{API}/audit", params={"entity": "user", "entity_id": world.teacher_b.id},
                            headers=auth(world.urban_admin)), 403, "forbidden")


def test_a_password_reset_revokes_the_access_tokens(client, world, auth):
    old = login(client, "teacher", PASSWORD).json()["access_token"]
    assert client.get(f"{API}/auth/me", headers=bearer(old)).status_code == 200
    r = client.patch(f"{API}/users/{world.teacher.id}", json={"password": "New-password-2"},
                     headers=auth(world.urban_admin))
    assert r.status_code == 200, r.text
    assert_error(client.get(f"{API}/auth/me", headers=bearer(old)), 401, "token_revoked")
    assert_error(login(client, "teacher", PASSWORD), 401, "bad_credentials")
    new = login(client, "teacher", "New-password-2").json()["access_token"]
    assert client.get(f"{API}/auth/me", headers=bearer(new)).status_code == 200


def test_a_deactivation_revokes_the_access_tokens_for_good(client, world, auth):
    old = login(client, "teacher", PASSWORD).json()["access_token"]
    admin = auth(world.urban_admin)
    assert client.patch(f"{API}/users/{world.teacher.id}", json={"is_active": False}, headers=admin).status_code == 200
    assert_error(client.get(f"{API}/auth/me", headers=bearer(old)), 401, "token_invalid")
    # switched on again: a token issued before the deactivation stays dead, a new login works
    assert client.patch(f"{API}/users/{world.teacher.id}", json={"is_active": True}, headers=admin).status_code == 200
    assert_error(client.get(f"{API}/auth/me", headers=bearer(old)), 401, "token_revoked")
    new = login(client, "teacher", PASSWORD).json()["access_token"]
    assert client.get(f"{API}/auth/me", headers=bearer(new)).status_code == 200
