"""Login and bearer tokens: what gets in and what is turned away."""

from __future__ import annotations

import jwt

from scheduler.models import User
from server.core.security import create_access_token
from tests.conftest import TEST_SECRET
from tests.utils.factory import PASSWORD

API = "/api/v1"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_login_with_factory_password_returns_a_token_that_works_on_me(client, world):
    r = client.post(f"{API}/auth/login", json={"username": "teacher", "password": PASSWORD})
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "bearer" and body["user"]["role"] == "teacher"
    me = client.get(f"{API}/auth/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["id"] == world.teacher.id


def test_wrong_password_is_401_bad_credentials(client, world):
    r = client.post(f"{API}/auth/login", json={"username": "teacher", "password": "not-the-password"})
    assert r.status_code == 401
    assert r.json()["code"] == "bad_credentials"
    assert r.json()["message"] == "用户名或密码错误"


def test_unknown_user_is_401_bad_credentials(client, world):
    r = client.post(f"{API}/auth/login", json={"username": "nobody", "password": PASSWORD})
    assert (r.status_code, r.json()["code"]) == (401, "bad_credentials")


def test_me_without_token_is_401(client, world):
    r = client.get(f"{API}/auth/me")
    assert (r.status_code, r.json()["code"]) == (401, "not_authenticated")


def test_expired_token_is_401_token_expired(client, world):
    token = create_access_token(world.teacher.id, "teacher", TEST_SECRET, -10)
    r = client.get(f"{API}/auth/me", headers=bearer(token))
    assert (r.status_code, r.json()["code"]) == (401, "token_expired")


def test_token_signed_with_another_key_is_401(client, world):
    token = create_access_token(world.sysadmin.id, "admin", "another-secret-key-0123456789abcdef", 3600)
    r = client.get(f"{API}/auth/me", headers=bearer(token))
    assert (r.status_code, r.json()["code"]) == (401, "token_invalid")


def test_unsigned_token_is_401(client, world):
    token = jwt.encode({"sub": str(world.sysadmin.id), "typ": "access", "exp": 4102444800}, key=None,
                       algorithm="none")
    r = client.get(f"{API}/auth/me", headers=bearer(token))
    assert (r.status_code, r.json()["code"]) == (401, "token_invalid")


def test_token_of_a_deactivated_user_is_401(client, world, auth, session_factory):
    headers = auth(world.teacher)
    assert client.get(f"{API}/auth/me", headers=headers).status_code == 200
    with session_factory() as s:
        s.get(User, world.teacher.id).is_active = False
        s.commit()
    r = client.get(f"{API}/auth/me", headers=headers)
    assert (r.status_code, r.json()["code"]) == (401, "token_invalid")
    login = client.post(f"{API}/auth/login", json={"username": "teacher", "password": PASSWORD})
    assert (login.status_code, login.json()["code"]) == (401, "bad_credentials")
